//! Change notifications across nodes: the `changes` log and its listener.
//!
//! # Writing
//! Every transaction that changes mail writes one row per
//! [`StoreEvent`] to `changes` ([`record`]), with the node's `origin`
//! and the id of its transaction (`xid`, PostgreSQL's 64-bit
//! transaction id), and calls `pg_notify('mailgate_changes',
//! '<mailbox id>:<modseq>')`, which PostgreSQL delivers to listeners
//! only when (and if) the transaction commits. The node that made the
//! change announces it to its own sessions itself, right after the commit.
//!
//! # Reading
//! Each node keeps one connection of its own (outside the pool) that
//! `LISTEN`s on `mailgate_changes` ([`run_listener`]). A notification is
//! only the wake-up: the listener then reads the log past its cursor and
//! turns the other nodes' rows into [`StoreEvent`]s on the store's
//! channel ([`crate::MailStore::subscribe`]). It also reads every
//! [`POLL`] without being woken, and at once after (re)connecting, so a
//! node whose listener was disconnected catches up on what it missed.
//!
//! Rows are read in `(xid, seq)` order and only once their transaction
//! is older than every transaction still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`): a transaction that took
//! its `seq` earlier but commits later cannot be skipped, because the
//! cursor never passes a transaction that may still commit. The price:
//! while any write transaction on the database stays open (a long
//! `mailgate import`, a session left idle in a transaction by another
//! program), other nodes' notifications wait for it to end; the
//! listener reads again every 20 ms, slowing to every 500 ms. The node
//! that made a change announces it to its own sessions at once anyway.
//!
//! # Retention
//! Rows older than [`RETENTION`] are deleted by the listeners. A node
//! disconnected for longer misses those changes as notifications; its
//! IMAP sessions still see them at their next command (mailbox views are
//! brought up to date from the messages' MODSEQs, not from the log).

use std::time::Duration;

use deadpool_postgres::{GenericClient, Transaction};
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;

use crate::{AccountId, MailboxId, StoreEvent, StoreResult, Uid};

/// The channel of `LISTEN`/`NOTIFY`.
pub const CHANNEL: &str = "mailgate_changes";
/// How often the listener reads the log without a notification.
pub const POLL: Duration = Duration::from_secs(5);
/// How soon the listener reads again when rows of transactions still
/// running (or older ones) held it back.
const RETRY: Duration = Duration::from_millis(20);
/// The longest wait between reads while rows stay held back.
const MAX_HELD: Duration = Duration::from_millis(500);
/// The longest wait before reconnecting a lost listener connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long rows stay in the log.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How many rows one read takes at most.
const BATCH: i64 = 1000;

const APPENDED: i16 = 1;
const FLAGS: i16 = 2;
const EXPUNGED: i16 = 3;
const MAILBOXES: i16 = 4;

/// A name for this node's rows, unique per store opened.
pub(super) fn origin() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

fn parts(e: &StoreEvent) -> (i16, AccountId, Option<MailboxId>, Vec<i64>) {
    let list = |uids: &[Uid]| uids.iter().map(|u| i64::from(u.get())).collect();
    match e {
        StoreEvent::Appended {
            account,
            mailbox,
            uids,
        } => (APPENDED, *account, Some(*mailbox), list(uids)),
        StoreEvent::FlagsChanged {
            account,
            mailbox,
            uids,
        } => (FLAGS, *account, Some(*mailbox), list(uids)),
        StoreEvent::Expunged {
            account,
            mailbox,
            uids,
        } => (EXPUNGED, *account, Some(*mailbox), list(uids)),
        StoreEvent::MailboxesChanged { account } => (MAILBOXES, *account, None, vec![]),
    }
}

fn event_from(
    kind: i16,
    account: AccountId,
    mailbox: Option<MailboxId>,
    uids: Vec<i64>,
) -> Option<StoreEvent> {
    let uids: Vec<Uid> = uids
        .into_iter()
        .filter_map(|n| u32::try_from(n).ok().and_then(Uid::new))
        .collect();
    Some(match (kind, mailbox) {
        (APPENDED, Some(mailbox)) => StoreEvent::Appended {
            account,
            mailbox,
            uids,
        },
        (FLAGS, Some(mailbox)) => StoreEvent::FlagsChanged {
            account,
            mailbox,
            uids,
        },
        (EXPUNGED, Some(mailbox)) => StoreEvent::Expunged {
            account,
            mailbox,
            uids,
        },
        (MAILBOXES, _) => StoreEvent::MailboxesChanged { account },
        _ => return None,
    })
}

/// Writes `events` to the log and wakes the other nodes at commit
/// (inside the transaction of the change).
pub(super) async fn record(
    tx: &Transaction<'_>,
    origin: &str,
    events: &[StoreEvent],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO changes (origin, kind, account, mailbox, uids, modseq)
             VALUES ($1, $2, $3, $4, $5,
                     coalesce((SELECT highest_modseq FROM mailboxes WHERE id = $4), 0))
             RETURNING mailbox, modseq",
        )
        .await?;
    let mut wake = String::new();
    for e in events {
        let (kind, account, mailbox, uids) = parts(e);
        let row = tx
            .query_one(&st, &[&origin, &kind, &account, &mailbox, &uids])
            .await?;
        wake = format!(
            "{}:{}",
            row.get::<_, Option<i64>>(0).unwrap_or(0),
            row.get::<_, i64>(1)
        );
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &wake])
        .await?;
    Ok(())
}

/// Where a listener has read up to: the `(xid, seq)` of the last row.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cursor {
    xid: i64,
    seq: i64,
}

/// The cursor of a new listener: changes of transactions that finished
/// before now are not announced.
pub(super) async fn start_cursor(c: &impl GenericClient) -> StoreResult<Cursor> {
    let xmin: i64 = c
        .query_one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            &[],
        )
        .await?
        .get(0);
    Ok(Cursor { xid: xmin, seq: 0 })
}

/// What [`catch_up`] found beyond what it announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rest {
    /// Nothing: wait for a wake-up.
    Nothing,
    /// A full batch was read: read again at once.
    More,
    /// Rows are held back (their transaction, or an older one, is still
    /// running): read again soon.
    Held,
}

/// Reads the log past `cursor` and announces the other nodes' rows.
async fn catch_up(
    c: &tokio_postgres::Client,
    origin: &str,
    events: &broadcast::Sender<StoreEvent>,
    cursor: &mut Cursor,
) -> StoreResult<Rest> {
    // Only rows of transactions older than every running one: none that
    // sorts before them can still appear.
    let rows = c
        .query(
            "SELECT xid, seq, origin, kind, account, mailbox, uids FROM changes
              WHERE (xid, seq) > ($1, $2)
                AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
              ORDER BY xid, seq LIMIT $3",
            &[&cursor.xid, &cursor.seq, &BATCH],
        )
        .await?;
    for r in &rows {
        *cursor = Cursor {
            xid: r.get(0),
            seq: r.get(1),
        };
        if r.get::<_, &str>(2) == origin {
            continue;
        }
        if let Some(e) = event_from(r.get(3), r.get(4), r.get(5), r.get(6)) {
            let _ = events.send(e);
        }
    }
    if rows.len() as i64 == BATCH {
        return Ok(Rest::More);
    }
    let held: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM changes WHERE (xid, seq) > ($1, $2))",
            &[&cursor.xid, &cursor.seq],
        )
        .await?
        .get(0);
    Ok(if held { Rest::Held } else { Rest::Nothing })
}

/// The listener: keeps a `LISTEN` connection (reconnecting with backoff)
/// and announces other nodes' changes until the task is aborted.
pub(super) async fn run_listener(
    config: tokio_postgres::Config,
    connector: super::tls::Connector,
    origin: String,
    events: broadcast::Sender<StoreEvent>,
    mut cursor: Cursor,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(50);
    let mut backoff = FIRST_BACKOFF;
    let mut last_prune = tokio::time::Instant::now();
    loop {
        let mut listening = false;
        let e = listen_once(
            &config,
            &connector,
            &origin,
            &events,
            &mut cursor,
            &mut last_prune,
            &mut listening,
        )
        .await;
        if listening {
            // It was connected: a new loss starts the backoff again.
            backoff = FIRST_BACKOFF;
        }
        if let Err(e) = e {
            tracing::warn!(error = %e, "store: change listener lost its connection; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: LISTEN (then `listening` is set), catch up,
/// then read at each wake-up. Returns when the connection is lost.
async fn listen_once(
    config: &tokio_postgres::Config,
    connector: &super::tls::Connector,
    origin: &str,
    events: &broadcast::Sender<StoreEvent>,
    cursor: &mut Cursor,
    last_prune: &mut tokio::time::Instant,
    listening: &mut bool,
) -> StoreResult<()> {
    let (client, mut conn) = config.connect(connector.clone()).await?;
    let (wake_tx, mut wake) = mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match msg {
                Ok(AsyncMessage::Notification(_)) => {
                    let _ = wake_tx.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Dropping `wake_tx` tells the reader the connection is gone.
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        *listening = true;
        tracing::debug!("store: change listener connected");
        // While rows are held back, read again after RETRY, doubling up
        // to MAX_HELD (a long write transaction elsewhere must not make
        // the listener spin).
        let mut held_wait = RETRY;
        loop {
            let rest = catch_up(&client, origin, events, cursor).await?;
            if last_prune.elapsed() > Duration::from_secs(600) {
                *last_prune = tokio::time::Instant::now();
                let secs = RETENTION.as_secs() as f64;
                client
                    .execute(
                        "DELETE FROM changes WHERE created < now() - make_interval(secs => $1)",
                        &[&secs],
                    )
                    .await?;
            }
            let wait = match rest {
                Rest::More => Duration::ZERO,
                Rest::Held => {
                    let w = held_wait;
                    held_wait = (held_wait * 2).min(MAX_HELD);
                    w
                }
                Rest::Nothing => {
                    held_wait = RETRY;
                    POLL
                }
            };
            tokio::select! {
                woke = wake.recv() => {
                    if woke.is_none() {
                        return Err(crate::StoreError::Unavailable("listener connection closed".into()));
                    }
                    // Several notifications at once: one read.
                    while wake.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
    .await;
    driver.abort();
    result
}
