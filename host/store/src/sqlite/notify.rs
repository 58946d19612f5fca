//! Change notifications across processes.
//!
//! Open IMAP sessions learn of changes through [`crate::Store::subscribe`],
//! an in-process channel fed by the writer after each commit. A change
//! made by another process on the same database (the admin CLI, e.g.
//! `mailgate import` while the server runs) would never reach it; so a
//! store told to [`super::SqliteStore::announce_to_other_processes`]
//! also writes its events into `store_events`, in the same transaction
//! as the change, and a store that has subscribers polls that table every
//! [`POLL_INTERVAL`] and re-announces the rows other processes wrote.
//!
//! - `store_events(seq, origin, created, kind, account, mailbox, uids)`:
//!   `origin` names the writing store (process id and start time), so a
//!   store never re-announces its own rows; rows older than
//!   [`RETAIN_SECS`] are removed by the next writer that adds one.
//!
//! Polling was chosen over a signal or a socket because it needs nothing
//! but the database both processes already share, survives either side
//! restarting, and costs one indexed read of an empty range twice a
//! second.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection};
use tokio::sync::broadcast;

use crate::{StoreEvent, StoreResult, Uid};

/// How often a store with subscribers looks for other processes' events.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a row of `store_events` is kept (a server that was down longer
/// has no session to tell anyway).
pub const RETAIN_SECS: i64 = 600;
/// At most this many rows are read per poll (the rest on the next).
const MAX_ROWS_PER_POLL: i64 = 1000;

/// The table; additive and idempotent (no version).
pub(crate) const STORE_EVENTS: &str = r#"
CREATE TABLE IF NOT EXISTS store_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    created INTEGER NOT NULL,
    kind TEXT NOT NULL,
    account INTEGER NOT NULL,
    mailbox INTEGER,
    uids TEXT NOT NULL
);
"#;

/// A name for this store instance that no other process shares.
pub(super) fn origin() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Writes `events` for other processes (inside the writer's transaction).
pub(super) fn record(c: &Connection, origin: &str, events: &[StoreEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp();
    for ev in events {
        let (kind, account, mailbox, uids) = match ev {
            StoreEvent::Appended {
                account,
                mailbox,
                uids,
            } => ("appended", *account, Some(*mailbox), uids.as_slice()),
            StoreEvent::FlagsChanged {
                account,
                mailbox,
                uids,
            } => ("flags", *account, Some(*mailbox), uids.as_slice()),
            StoreEvent::Expunged {
                account,
                mailbox,
                uids,
            } => ("expunged", *account, Some(*mailbox), uids.as_slice()),
            StoreEvent::MailboxesChanged { account } => ("mailboxes", *account, None, &[][..]),
        };
        let uids = uids
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        c.prepare_cached(
            "INSERT INTO store_events (origin, created, kind, account, mailbox, uids) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![origin, now, kind, account, mailbox, uids])?;
    }
    c.prepare_cached("DELETE FROM store_events WHERE created < ?1")?
        .execute([now - RETAIN_SECS])?;
    Ok(())
}

fn decode(kind: &str, account: i64, mailbox: Option<i64>, uids: &str) -> Option<StoreEvent> {
    let uids: Vec<Uid> = uids
        .split(' ')
        .filter_map(|u| u.parse().ok().and_then(Uid::new))
        .collect();
    Some(match (kind, mailbox) {
        ("appended", Some(mailbox)) => StoreEvent::Appended {
            account,
            mailbox,
            uids,
        },
        ("flags", Some(mailbox)) => StoreEvent::FlagsChanged {
            account,
            mailbox,
            uids,
        },
        ("expunged", Some(mailbox)) => StoreEvent::Expunged {
            account,
            mailbox,
            uids,
        },
        ("mailboxes", _) => StoreEvent::MailboxesChanged { account },
        _ => return None,
    })
}

/// Starts the thread that re-announces other processes' events until
/// `stop` is set. Errors are logged and retried at the next poll.
pub(super) fn start_watcher(
    path: PathBuf,
    origin: String,
    events: broadcast::Sender<StoreEvent>,
    stop: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("store-events".into())
        .spawn(move || {
            let mut conn: Option<Connection> = None;
            let mut last: Option<i64> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    match super::open_connection(&path, true) {
                        Ok(c) => conn = Some(c),
                        Err(e) => tracing::warn!(error = %e, "store: cannot watch for other processes' changes"),
                    }
                }
                if let Some(c) = &conn {
                    if let Err(e) = poll(c, &origin, &mut last, &events) {
                        tracing::warn!(error = %e, "store: reading other processes' changes failed");
                        conn = None;
                    }
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "store: cannot start the watcher of other processes' changes");
    }
}

/// One look at the table: the first only notes where it ends.
fn poll(
    c: &Connection,
    origin: &str,
    last: &mut Option<i64>,
    events: &broadcast::Sender<StoreEvent>,
) -> StoreResult<()> {
    let Some(after) = *last else {
        let end: i64 = c.query_row("SELECT coalesce(max(seq), 0) FROM store_events", [], |r| {
            r.get(0)
        })?;
        *last = Some(end);
        return Ok(());
    };
    let mut st = c.prepare_cached(
        "SELECT seq, origin, kind, account, mailbox, uids FROM store_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![after, MAX_ROWS_PER_POLL], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<i64>>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (seq, from, kind, account, mailbox, uids) = row?;
        *last = Some(seq);
        if from == origin {
            continue;
        }
        if let Some(ev) = decode(&kind, account, mailbox, &uids) {
            let _ = events.send(ev);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_total() {
        assert_eq!(decode("bogus", 1, Some(2), ""), None);
        assert_eq!(decode("appended", 1, None, "1"), None);
        assert_eq!(
            decode("appended", 1, Some(2), "3 x 0 4"),
            Some(StoreEvent::Appended {
                account: 1,
                mailbox: 2,
                uids: vec![Uid::new(3).unwrap(), Uid::new(4).unwrap()],
            })
        );
    }
}
