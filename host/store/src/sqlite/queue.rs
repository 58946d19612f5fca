//! [`QueueStore`] for the embedded store: the `queue` and `queue_rcpts`
//! tables (see [`super::schema`]). Every write goes through the group
//! commit, so `enqueue` returns only once the message is on disk.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::queue::{
    AttemptRecord, LocalTarget, NewQueued, NextHop, OutboundQueue, QueueEntry, QueueId, QueueStore,
    QueuedRecipient, RecipientStatus,
};
use crate::{StoreError, StoreResult};

const ENTRY_COLUMNS: &str = "id, sender, size, created, next_attempt, attempts, held, warned, \
     envid, ret_full, smtputf8, eight_bit, msg_id";

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueEntry> {
    let id: QueueId = r.get(0)?;
    Ok(QueueEntry {
        id,
        msg_id: r
            .get::<_, Option<String>>(12)?
            .unwrap_or_else(|| id.to_string()),
        sender: r.get(1)?,
        size: r.get::<_, i64>(2)?.max(0) as u64,
        created: r.get(3)?,
        next_attempt: r.get(4)?,
        attempts: r.get::<_, i64>(5)?.clamp(0, u32::MAX as i64) as u32,
        held: r.get(6)?,
        warned: r.get(7)?,
        envid: r.get(8)?,
        ret_full: r.get(9)?,
        smtputf8: r.get(10)?,
        eight_bit: r.get(11)?,
        recipients: Vec::new(),
    })
}

fn recipients_of(c: &Connection, id: QueueId) -> StoreResult<Vec<QueuedRecipient>> {
    let mut st = c.prepare_cached(
        "SELECT idx, address, domain, orcpt, notify, status, last_reply, remote_host, updated, \
         next_hop, local_folder, local_flags FROM queue_rcpts WHERE queue = ?1 ORDER BY idx",
    )?;
    let rows = st.query_map([id], |r| {
        Ok((
            QueuedRecipient {
                index: r.get::<_, i64>(0)?.clamp(0, u32::MAX as i64) as u32,
                address: r.get(1)?,
                domain: r.get(2)?,
                orcpt: r.get(3)?,
                notify: r.get(4)?,
                status: RecipientStatus::Pending,
                last_reply: r.get(6)?,
                remote_host: r.get(7)?,
                updated: r.get(8)?,
                next_hop: r.get(9)?,
                local: r.get::<_, Option<String>>(10)?.map(|folder| LocalTarget {
                    folder,
                    flags: r
                        .get::<_, Option<String>>(11)
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                }),
            },
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut rcpt, status) = row?;
        rcpt.status = RecipientStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("queue {id}: recipient status {status:?}"))
        })?;
        out.push(rcpt);
    }
    Ok(out)
}

/// Loads entries (with recipients) for the ids a query returns.
fn entries(c: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<QueueEntry>> {
    let mut st = c.prepare(sql)?;
    let list = st
        .query_map(args, entry_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    list.into_iter()
        .map(|mut e| {
            e.recipients = recipients_of(c, e.id)?;
            Ok(e)
        })
        .collect()
}

fn entry(c: &Connection, id: QueueId) -> StoreResult<Option<QueueEntry>> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM queue WHERE id = ?1");
    Ok(entries(c, &sql, [id])?.pop())
}

/// The domain part of an address, lower-case, without a trailing dot.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_lowercase())
        .unwrap_or_default()
}

/// Inserts a message and its recipients inside the current transaction.
fn insert(c: &Connection, m: &NewQueued) -> StoreResult<QueueId> {
    if m.recipients.is_empty() {
        return Err(StoreError::Invalid(
            "a queued message needs a recipient".into(),
        ));
    }
    let hops = m
        .recipients
        .iter()
        .map(|r| match &r.next_hop {
            None => Ok(None),
            Some(h) => NextHop::parse(h)
                .map(|h| Some(h.to_string()))
                .map_err(|e| StoreError::Invalid(format!("next hop of {}: {e}", r.address))),
        })
        .collect::<StoreResult<Vec<Option<String>>>>()?;
    c.execute(
        "INSERT INTO queue (sender, created, next_attempt, envid, ret_full, smtputf8, eight_bit, size, data, msg_id) \
         VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            m.sender,
            m.created,
            m.envid,
            m.ret_full,
            m.smtputf8,
            m.eight_bit,
            m.raw.len() as i64,
            m.raw.as_slice(),
            m.msg_id
                .clone()
                .unwrap_or_else(crate::queue::new_message_id)
        ],
    )?;
    let id = c.last_insert_rowid();
    let mut st = c.prepare_cached(
        "INSERT INTO queue_rcpts (queue, idx, address, domain, orcpt, notify, next_hop, \
         local_folder, local_flags) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (i, (r, hop)) in m.recipients.iter().zip(hops).enumerate() {
        st.execute(params![
            id,
            i as i64,
            r.address,
            domain_of(&r.address),
            r.orcpt,
            r.notify,
            hop,
            r.local.as_ref().map(|l| l.folder.as_str()),
            r.local.as_ref().map(|l| l.flags.join(" ")),
        ])?;
    }
    Ok(id)
}

#[async_trait]
impl OutboundQueue for SqliteStore {
    async fn enqueue(&self, message: NewQueued) -> StoreResult<QueueId> {
        self.write(move |c| Ok((insert(c, &message)?, vec![])))
            .await
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn queue_due(&self, now: i64, limit: usize) -> StoreResult<Vec<QueueEntry>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(move |c| {
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM queue q WHERE held = 0 AND next_attempt <= ?1 \
                 AND EXISTS (SELECT 1 FROM queue_rcpts r WHERE r.queue = q.id AND r.status = 'pending') \
                 ORDER BY next_attempt, id LIMIT ?2"
            );
            entries(c, &sql, params![now, limit])
        })
        .await
    }

    /// [`QueueStore::queue_due`], and also the messages left with no
    /// pending recipient: a server stopped (a crash, SIGKILL) between
    /// recording a message's last outcomes and removing it leaves such a
    /// row behind, and the runner removes it. SQLite has one node: it
    /// claims nothing, so `lease` is not used.
    async fn queue_claim(
        &self,
        now: i64,
        limit: usize,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<QueueEntry>> {
        let _ = lease;
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(move |c| {
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM queue q WHERE held = 0 AND next_attempt <= ?1 \
                 ORDER BY next_attempt, id LIMIT ?2"
            );
            entries(c, &sql, params![now, limit])
        })
        .await
    }

    async fn queue_next_due(&self) -> StoreResult<Option<i64>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT min(next_attempt) FROM queue WHERE held = 0",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )?)
        })
        .await
    }

    async fn queue_find(&self, msg_id: &str) -> StoreResult<Option<QueueId>> {
        let msg_id = msg_id.to_string();
        self.read(move |c| {
            Ok(
                c.query_row("SELECT id FROM queue WHERE msg_id = ?1", [msg_id], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
        .await
    }

    async fn queue_entry(&self, id: QueueId) -> StoreResult<Option<QueueEntry>> {
        self.read(move |c| entry(c, id)).await
    }

    async fn queue_body(&self, id: QueueId) -> StoreResult<Option<Vec<u8>>> {
        self.read(move |c| {
            Ok(
                c.query_row("SELECT data FROM queue WHERE id = ?1", [id], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .optional()?,
            )
        })
        .await
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueEntry>> {
        self.read(|c| {
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM queue ORDER BY created, id");
            entries(c, &sql, [])
        })
        .await
    }

    async fn queue_record_attempt(
        &self,
        id: QueueId,
        attempt: AttemptRecord,
    ) -> StoreResult<Option<QueueEntry>> {
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE queue SET attempts = attempts + 1, next_attempt = ?2, \
                 warned = warned OR ?3 WHERE id = ?1",
                params![id, attempt.next_attempt, attempt.warned],
            )?;
            if changed == 0 {
                return Ok((None, vec![]));
            }
            let mut st = c.prepare_cached(
                "UPDATE queue_rcpts SET status = ?3, last_reply = ?4, remote_host = ?5, updated = ?6 \
                 WHERE queue = ?1 AND idx = ?2 AND status = 'pending'",
            )?;
            for u in &attempt.updates {
                st.execute(params![
                    id,
                    u.index as i64,
                    u.status.as_str(),
                    u.reply,
                    u.remote_host,
                    attempt.at
                ])?;
            }
            for notice in &attempt.notices {
                insert(c, notice)?;
            }
            Ok((entry(c, id)?, vec![]))
        })
        .await
    }

    async fn queue_complete(
        &self,
        id: QueueId,
        bounce: Option<NewQueued>,
    ) -> StoreResult<Option<QueueId>> {
        self.write(move |c| {
            let removed = c.execute("DELETE FROM queue WHERE id = ?1", [id])?;
            match bounce {
                Some(b) if removed > 0 => Ok((Some(insert(c, &b)?), vec![])),
                _ => Ok((None, vec![])),
            }
        })
        .await
    }

    async fn queue_set_held(&self, id: QueueId, held: bool) -> StoreResult<bool> {
        self.write(move |c| {
            let n = c.execute(
                "UPDATE queue SET held = ?2 WHERE id = ?1",
                params![id, held],
            )?;
            Ok((n > 0, vec![]))
        })
        .await
    }

    async fn queue_delete(&self, id: QueueId) -> StoreResult<bool> {
        self.write(move |c| {
            let n = c.execute("DELETE FROM queue WHERE id = ?1", [id])?;
            Ok((n > 0, vec![]))
        })
        .await
    }

    async fn queue_flush(&self, id: Option<QueueId>, now: i64) -> StoreResult<usize> {
        self.write(move |c| {
            let n = match id {
                Some(id) => c.execute(
                    "UPDATE queue SET next_attempt = min(next_attempt, ?2) WHERE id = ?1 AND held = 0",
                    params![id, now],
                )?,
                None => c.execute(
                    "UPDATE queue SET next_attempt = min(next_attempt, ?1) WHERE held = 0",
                    [now],
                )?,
            };
            Ok((n, vec![]))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::{NewQueuedRecipient, RecipientUpdate};

    fn message(sender: &str, rcpts: &[&str], created: i64) -> NewQueued {
        NewQueued {
            msg_id: None,
            sender: sender.into(),
            recipients: rcpts.iter().map(|r| NewQueuedRecipient::new(*r)).collect(),
            raw: Arc::new(b"Subject: hi\r\n\r\nbody\r\n".to_vec()),
            created,
            envid: Some("env-1".into()),
            ret_full: Some(false),
            smtputf8: false,
            eight_bit: true,
        }
    }

    #[tokio::test]
    async fn enqueue_survives_reopen_and_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = SqliteStore::open(dir.path()).unwrap();
            store
                .enqueue(message("a@a.test", &["x@B.test.", "y@c.test"], 100))
                .await
                .unwrap()
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(store.queue_due(99, 10).await.unwrap().is_empty());
        let due = store.queue_due(100, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        let e = &due[0];
        assert_eq!(e.id, id);
        assert_eq!(e.recipients[0].domain, "b.test");
        assert_eq!(e.recipients[1].index, 1);
        assert_eq!(e.envid.as_deref(), Some("env-1"));
        assert_eq!(e.ret_full, Some(false));
        assert!(e.eight_bit && !e.smtputf8);
        assert_eq!(
            store.queue_body(id).await.unwrap().unwrap(),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
        assert_eq!(store.queue_next_due().await.unwrap(), Some(100));
    }

    #[tokio::test]
    async fn attempts_are_per_recipient_and_final_states_stick() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let id = store
            .enqueue(message("a@a.test", &["x@b.test", "y@b.test"], 0))
            .await
            .unwrap();
        let e = store
            .queue_record_attempt(
                id,
                AttemptRecord {
                    at: 5,
                    updates: vec![
                        RecipientUpdate {
                            index: 0,
                            status: RecipientStatus::Delivered,
                            reply: Some("250 ok".into()),
                            remote_host: Some("mx.b.test".into()),
                        },
                        RecipientUpdate {
                            index: 1,
                            status: RecipientStatus::Pending,
                            reply: Some("451 later".into()),
                            remote_host: None,
                        },
                    ],
                    next_attempt: 60,
                    warned: false,
                    notices: Vec::new(),
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.attempts, 1);
        assert_eq!(e.next_attempt, 60);
        assert_eq!(e.pending().count(), 1);
        assert!(store.queue_due(59, 10).await.unwrap().is_empty());
        // A final state is never overwritten by a later update.
        let e = store
            .queue_record_attempt(
                id,
                AttemptRecord {
                    at: 61,
                    updates: vec![
                        RecipientUpdate {
                            index: 0,
                            status: RecipientStatus::Failed,
                            reply: None,
                            remote_host: None,
                        },
                        RecipientUpdate {
                            index: 1,
                            status: RecipientStatus::Failed,
                            reply: Some("550 no".into()),
                            remote_host: None,
                        },
                    ],
                    next_attempt: 120,
                    warned: true,
                    notices: vec![message("", &["a@a.test"], 125)],
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.recipients[0].status, RecipientStatus::Delivered);
        assert_eq!(e.recipients[1].status, RecipientStatus::Failed);
        assert!(e.is_finished() && e.warned);
        // The attempt's bounce entered the queue with it (due at once).
        let due = store.queue_due(1000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].sender.as_str(), due[0].created), ("", 125));
        let bounce = store
            .queue_complete(id, Some(message("", &["a@a.test"], 130)))
            .await
            .unwrap();
        let list = store.queue_list().await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(Some(list[1].id), bounce);
        assert_eq!(list[1].sender, "");
        // Completing again (already gone) enqueues nothing.
        assert_eq!(
            store
                .queue_complete(id, Some(message("", &["a@a.test"], 130)))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_local_copy_keeps_its_folder_and_flags_in_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut m = message("a@a.test", &["bob@example.org", "carol@example.org"], 1000);
        m.recipients[0].local = Some(LocalTarget {
            folder: "Lists/rust".into(),
            flags: vec!["\\Flagged".into(), "$Label1".into()],
        });
        store.enqueue(m).await.unwrap();
        let due = store.queue_due(5000, 10).await.unwrap();
        let local = &due[0].recipients[0].local;
        assert_eq!(
            local.as_ref().map(|l| (l.folder.as_str(), l.flags.clone())),
            Some(("Lists/rust", vec!["\\Flagged".into(), "$Label1".into()]))
        );
        assert_eq!(due[0].recipients[1].local, None, "INBOX: nothing kept");
    }

    #[tokio::test]
    async fn hold_release_flush_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let id = store
            .enqueue(message("a@a.test", &["x@b.test"], 1000))
            .await
            .unwrap();
        assert!(store.queue_set_held(id, true).await.unwrap());
        assert!(store.queue_due(5000, 10).await.unwrap().is_empty());
        assert_eq!(store.queue_next_due().await.unwrap(), None);
        assert_eq!(store.queue_flush(None, 10).await.unwrap(), 0);
        assert!(store.queue_set_held(id, false).await.unwrap());
        assert_eq!(store.queue_flush(Some(id), 10).await.unwrap(), 1);
        assert_eq!(store.queue_due(10, 10).await.unwrap().len(), 1);
        assert!(store.queue_delete(id).await.unwrap());
        assert!(!store.queue_delete(id).await.unwrap());
        assert!(!store.queue_set_held(id, true).await.unwrap());
        assert!(store.queue_entry(id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn empty_recipient_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let err = store.enqueue(message("a@a.test", &[], 0)).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))));
    }

    #[test]
    fn version_1_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::DB_FILE);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1');",
            )
            .unwrap();
        }
        drop(SqliteStore::open(dir.path()).unwrap());
        let c = Connection::open(&path).unwrap();
        let v: String = c
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, "3");
        c.query_row(
            "SELECT count(*) FROM queue_rcpts WHERE next_hop IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    }

    #[tokio::test]
    async fn version_2_queue_keeps_its_mail_and_gains_next_hops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::DB_FILE);
        {
            // A version 2 store with one queued message, as 0.x wrote it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(super::super::schema::SCHEMA_V1).unwrap();
            c.execute_batch(super::super::schema::SCHEMA_V2).unwrap();
            c.execute_batch(
                "INSERT INTO meta VALUES ('schema_version', '2');
                 INSERT INTO queue (sender, created, next_attempt, size, data)
                     VALUES ('a@a.test', 10, 10, 4, x'6869210a');
                 INSERT INTO queue_rcpts (queue, idx, address, domain)
                     VALUES (1, 0, 'x@b.test', 'b.test');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let due = store.queue_due(10, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].recipients[0].address, "x@b.test");
        assert_eq!(due[0].recipients[0].next_hop, None);
        assert_eq!(due[0].msg_id, "1", "an old row shows its queue id");
        let mut m = message("a@a.test", &["y@c.test", "z@d.test"], 20);
        m.msg_id = Some("0663A0B1C2D3E40001".into());
        m.recipients[0].next_hop = Some(" [MX.Relay.test]:2525 ".into());
        let id = store.enqueue(m).await.unwrap();
        let e = store.queue_entry(id).await.unwrap().unwrap();
        assert_eq!(
            e.recipients[0].next_hop.as_deref(),
            Some("[mx.relay.test]:2525")
        );
        assert_eq!(e.recipients[1].next_hop, None);
        assert_eq!(e.msg_id, "0663A0B1C2D3E40001");
        assert_eq!(
            store.queue_find("0663A0B1C2D3E40001").await.unwrap(),
            Some(id)
        );
        assert_eq!(store.queue_find("0663A0B1C2D3E40002").await.unwrap(), None);
        drop(store);
        // Opening again changes nothing.
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.queue_list().await.unwrap().len(), 2);
        let mut bad = message("a@a.test", &["y@c.test"], 20);
        bad.recipients[0].next_hop = Some("mx.test:0".into());
        assert!(matches!(
            store.enqueue(bad).await,
            Err(StoreError::Invalid(_))
        ));
    }
}
