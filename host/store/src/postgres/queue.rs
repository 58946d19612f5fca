//! [`OutboundQueue`] and [`QueueStore`] for the PostgreSQL store: the
//! `queue` and `queue_rcpts` tables ([`SCHEMA`], migration 2), shared by
//! every node.
//!
//! # Claiming work across nodes
//! Several nodes run a queue runner on the same table. A runner takes
//! work with [`QueueStore::queue_claim`] (or `queue_due`, which claims for
//! [`QUEUE_LEASE_SECS`]): in one statement it picks the due messages with
//! `SELECT … FOR UPDATE SKIP LOCKED` (rows another node is claiming at
//! that instant are skipped, not waited for) and gives each a lease:
//! `leased_by` (this store's node id, one per process) and `leased_until`
//! (`now` + the lease, the relay's `[queue] lease`). A leased message is
//! not due for anyone until the lease runs out, so in the normal case
//! each message is tried by one node at a time and each recipient
//! delivered once.
//!
//! While an attempt runs, the runner renews its leases
//! ([`QueueStore::queue_renew`], every third of the lease, one statement
//! for all its messages), so an attempt may take longer than the lease
//! (a slow receiving server) without another node taking the message.
//! [`QueueStore::queue_record_attempt`] ends the lease (only if this node
//! still holds it) in the same transaction that records the outcomes.
//!
//! A node that dies in the middle of an attempt stops renewing; once
//! `leased_until` has passed, another node's runner claims the message
//! and tries the recipients still `pending`. Recipients the dead node had
//! delivered but not yet recorded are then sent twice, which RFC 5321
//! §6.1 prefers to a loss (docs/scaling.md, *The outbound queue*).
//!
//! Times are the callers' (seconds since the Unix epoch): the nodes'
//! clocks are assumed to agree to within a small part of the lease (NTP).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::{GenericClient, Row, Transaction};

use super::PgStore;
use crate::queue::{
    AttemptRecord, LocalTarget, NewQueued, NextHop, OutboundQueue, QueueEntry, QueueId, QueueStore,
    QueuedRecipient, RecipientStatus,
};
use crate::{StoreError, StoreResult};

/// How long a claim made by [`QueueStore::queue_due`] lasts, in seconds
/// ([`crate::queue::DEFAULT_LEASE`]); the relay claims with
/// [`QueueStore::queue_claim`] for its `[queue] lease`.
pub const QUEUE_LEASE_SECS: i64 = crate::queue::DEFAULT_LEASE.as_secs() as i64;

/// A lease in whole seconds (rounded up, at least 1).
fn lease_secs(lease: Duration) -> i64 {
    let secs = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// Migration 2: the outbound queue.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE queue (
    id bigserial PRIMARY KEY,
    msg_id text NOT NULL,
    sender text NOT NULL,
    size bigint NOT NULL,
    created bigint NOT NULL,
    next_attempt bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    held boolean NOT NULL DEFAULT false,
    warned boolean NOT NULL DEFAULT false,
    envid text,
    ret_full boolean,
    smtputf8 boolean NOT NULL,
    eight_bit boolean NOT NULL,
    data bytea NOT NULL,
    leased_until bigint,
    leased_by text
);
CREATE INDEX queue_due ON queue (next_attempt, id) WHERE NOT held;
CREATE INDEX queue_msg_id ON queue (msg_id);
CREATE TABLE queue_rcpts (
    queue bigint NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    idx integer NOT NULL,
    address text NOT NULL,
    domain text NOT NULL,
    orcpt text,
    notify text,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    last_reply text,
    remote_host text,
    updated bigint,
    next_hop text,
    local_folder text,
    local_flags text,
    PRIMARY KEY (queue, idx)
);
"#;

const ENTRY_COLUMNS: &str = "id, sender, size, created, next_attempt, attempts, held, warned, \
     envid, ret_full, smtputf8, eight_bit, msg_id";

fn entry_from_row(r: &Row) -> QueueEntry {
    QueueEntry {
        id: r.get(0),
        msg_id: r.get(12),
        sender: r.get(1),
        size: r.get::<_, i64>(2).max(0) as u64,
        created: r.get(3),
        next_attempt: r.get(4),
        attempts: r.get::<_, i32>(5).max(0) as u32,
        held: r.get(6),
        warned: r.get(7),
        envid: r.get(8),
        ret_full: r.get(9),
        smtputf8: r.get(10),
        eight_bit: r.get(11),
        recipients: Vec::new(),
    }
}

/// Fills in the recipients of `list` (one query for all of them).
async fn with_recipients<C: GenericClient + Sync>(
    c: &C,
    mut list: Vec<QueueEntry>,
) -> StoreResult<Vec<QueueEntry>> {
    if list.is_empty() {
        return Ok(list);
    }
    let ids: Vec<i64> = list.iter().map(|e| e.id).collect();
    let rows = c
        .query(
            "SELECT queue, idx, address, domain, orcpt, notify, status, last_reply, remote_host, \
             updated, next_hop, local_folder, local_flags FROM queue_rcpts \
             WHERE queue = ANY($1) ORDER BY queue, idx",
            &[&ids],
        )
        .await?;
    let mut by_queue: HashMap<i64, Vec<QueuedRecipient>> = HashMap::new();
    for r in rows {
        let queue: i64 = r.get(0);
        let status: String = r.get(6);
        let status = RecipientStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("queue {queue}: recipient status {status:?}"))
        })?;
        let local = r.get::<_, Option<String>>(11).map(|folder| LocalTarget {
            folder,
            flags: r
                .get::<_, Option<String>>(12)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        });
        by_queue.entry(queue).or_default().push(QueuedRecipient {
            index: r.get::<_, i32>(1).max(0) as u32,
            address: r.get(2),
            domain: r.get(3),
            orcpt: r.get(4),
            notify: r.get(5),
            status,
            last_reply: r.get(7),
            remote_host: r.get(8),
            updated: r.get(9),
            next_hop: r.get(10),
            local,
        });
    }
    for e in &mut list {
        e.recipients = by_queue.remove(&e.id).unwrap_or_default();
    }
    Ok(list)
}

async fn entry<C: GenericClient + Sync>(c: &C, id: QueueId) -> StoreResult<Option<QueueEntry>> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM queue WHERE id = $1");
    let list: Vec<QueueEntry> = c
        .query(&sql, &[&id])
        .await?
        .iter()
        .map(entry_from_row)
        .collect();
    Ok(with_recipients(c, list).await?.pop())
}

/// The domain part of an address, lower-case, without a trailing dot.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_lowercase())
        .unwrap_or_default()
}

/// Inserts a message and its recipients inside the transaction `tx`.
async fn insert(tx: &Transaction<'_>, m: &NewQueued) -> StoreResult<QueueId> {
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
    let msg_id = m
        .msg_id
        .clone()
        .unwrap_or_else(crate::queue::new_message_id);
    let size = i64::try_from(m.raw.len()).unwrap_or(i64::MAX);
    let id: i64 = tx
        .query_one(
            "INSERT INTO queue (sender, created, next_attempt, envid, ret_full, smtputf8, \
             eight_bit, size, data, msg_id) VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING id",
            &[
                &m.sender,
                &m.created,
                &m.envid,
                &m.ret_full,
                &m.smtputf8,
                &m.eight_bit,
                &size,
                &m.raw.as_slice(),
                &msg_id,
            ],
        )
        .await?
        .get(0);
    let st = tx
        .prepare(
            "INSERT INTO queue_rcpts (queue, idx, address, domain, orcpt, notify, next_hop, \
             local_folder, local_flags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    for (i, (r, hop)) in m.recipients.iter().zip(hops).enumerate() {
        let idx = i32::try_from(i)
            .map_err(|_| StoreError::Invalid("too many recipients in one message".into()))?;
        tx.execute(
            &st,
            &[
                &id,
                &idx,
                &r.address,
                &domain_of(&r.address),
                &r.orcpt,
                &r.notify,
                &hop,
                &r.local.as_ref().map(|l| l.folder.as_str()),
                &r.local.as_ref().map(|l| l.flags.join(" ")),
            ],
        )
        .await?;
    }
    Ok(id)
}

#[async_trait]
impl OutboundQueue for PgStore {
    async fn enqueue(&self, message: NewQueued) -> StoreResult<QueueId> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let id = insert(&tx, &message).await?;
        tx.commit().await?;
        Ok(id)
    }
}

impl PgStore {
    /// [`QueueStore::queue_claim`]; with `finished_too` false, only
    /// messages with a pending recipient ([`QueueStore::queue_due`]).
    async fn claim(
        &self,
        now: i64,
        limit: usize,
        lease: Duration,
        finished_too: bool,
    ) -> StoreResult<Vec<QueueEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let until = now.saturating_add(lease_secs(lease));
        let c = self.client().await?;
        let sql = format!(
            "WITH claim AS ( \
                 SELECT id FROM queue q WHERE NOT held AND next_attempt <= $1 \
                 AND (leased_until IS NULL OR leased_until <= $1) \
                 AND ($5 OR EXISTS (SELECT 1 FROM queue_rcpts r \
                             WHERE r.queue = q.id AND r.status = 'pending')) \
                 ORDER BY next_attempt, id LIMIT $2 \
                 FOR UPDATE SKIP LOCKED) \
             UPDATE queue SET leased_until = $3, leased_by = $4 FROM claim \
             WHERE queue.id = claim.id RETURNING {}",
            ENTRY_COLUMNS
                .split(", ")
                .map(|col| format!("queue.{col}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut list: Vec<QueueEntry> = c
            .query(&sql, &[&now, &limit, &until, &self.origin, &finished_too])
            .await?
            .iter()
            .map(entry_from_row)
            .collect();
        list.sort_by_key(|e| (e.next_attempt, e.id));
        with_recipients(&**c, list).await
    }
}

#[async_trait]
impl QueueStore for PgStore {
    /// Claims the messages it returns (see the module doc): each for
    /// [`QUEUE_LEASE_SECS`] from `now`, for this node only.
    async fn queue_due(&self, now: i64, limit: usize) -> StoreResult<Vec<QueueEntry>> {
        self.claim(now, limit, crate::queue::DEFAULT_LEASE, false)
            .await
    }

    /// Claims the messages it returns (see the module doc): each for
    /// `lease` from `now`, for this node only. Also returns (and claims)
    /// messages left with no pending recipient: a node that died between
    /// recording their last outcomes and removing them leaves them behind,
    /// and the runner removes them.
    async fn queue_claim(
        &self,
        now: i64,
        limit: usize,
        lease: Duration,
    ) -> StoreResult<Vec<QueueEntry>> {
        self.claim(now, limit, lease, true).await
    }

    /// One statement for all of `ids`: only the rows this node still
    /// holds are renewed (a lease that ran out and was claimed by another
    /// node stays that node's).
    async fn queue_renew(
        &self,
        ids: &[QueueId],
        now: i64,
        lease: Duration,
    ) -> StoreResult<Vec<QueueId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let until = now.saturating_add(lease_secs(lease));
        let c = self.client().await?;
        Ok(c.query(
            "UPDATE queue SET leased_until = greatest(leased_until, $2) \
             WHERE id = ANY($1) AND leased_by = $3 RETURNING id",
            &[&ids, &until, &self.origin],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    /// The earliest moment a message not held may be tried: its next
    /// attempt, or the end of its lease if a node holds it.
    async fn queue_next_due(&self) -> StoreResult<Option<i64>> {
        let c = self.client().await?;
        Ok(c.query_one(
            "SELECT min(greatest(next_attempt, coalesce(leased_until, next_attempt))) \
             FROM queue WHERE NOT held",
            &[],
        )
        .await?
        .get(0))
    }

    async fn queue_find(&self, msg_id: &str) -> StoreResult<Option<QueueId>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT id FROM queue WHERE msg_id = $1 ORDER BY id LIMIT 1",
            &[&msg_id],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn queue_entry(&self, id: QueueId) -> StoreResult<Option<QueueEntry>> {
        let c = self.client().await?;
        entry(&**c, id).await
    }

    async fn queue_body(&self, id: QueueId) -> StoreResult<Option<Vec<u8>>> {
        let c = self.client().await?;
        Ok(c.query_opt("SELECT data FROM queue WHERE id = $1", &[&id])
            .await?
            .map(|r| r.get(0)))
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueEntry>> {
        let c = self.client().await?;
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM queue ORDER BY created, id");
        let list = c
            .query(&sql, &[])
            .await?
            .iter()
            .map(entry_from_row)
            .collect();
        with_recipients(&**c, list).await
    }

    async fn queue_record_attempt(
        &self,
        id: QueueId,
        attempt: AttemptRecord,
    ) -> StoreResult<Option<QueueEntry>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The lease ends here if this node still holds it (one that ran
        // out and was taken by another node stays that node's).
        let changed = tx
            .execute(
                "UPDATE queue SET attempts = attempts + 1, next_attempt = $2, \
                 warned = warned OR $3, \
                 leased_until = CASE WHEN leased_by = $4 THEN NULL ELSE leased_until END, \
                 leased_by = CASE WHEN leased_by = $4 THEN NULL ELSE leased_by END \
                 WHERE id = $1",
                &[&id, &attempt.next_attempt, &attempt.warned, &self.origin],
            )
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        let st = tx
            .prepare(
                "UPDATE queue_rcpts SET status = $3, last_reply = $4, remote_host = $5, \
                 updated = $6 WHERE queue = $1 AND idx = $2 AND status = 'pending'",
            )
            .await?;
        for u in &attempt.updates {
            let idx = i32::try_from(u.index).unwrap_or(i32::MAX);
            tx.execute(
                &st,
                &[
                    &id,
                    &idx,
                    &u.status.as_str(),
                    &u.reply,
                    &u.remote_host,
                    &attempt.at,
                ],
            )
            .await?;
        }
        for notice in &attempt.notices {
            insert(&tx, notice).await?;
        }
        let e = entry(&*tx, id).await?;
        tx.commit().await?;
        Ok(e)
    }

    async fn queue_complete(
        &self,
        id: QueueId,
        bounce: Option<NewQueued>,
    ) -> StoreResult<Option<QueueId>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let removed = tx
            .execute("DELETE FROM queue WHERE id = $1", &[&id])
            .await?;
        let bounce_id = match bounce {
            Some(b) if removed > 0 => Some(insert(&tx, &b).await?),
            _ => None,
        };
        tx.commit().await?;
        Ok(bounce_id)
    }

    async fn queue_set_held(&self, id: QueueId, held: bool) -> StoreResult<bool> {
        let c = self.client().await?;
        Ok(
            c.execute("UPDATE queue SET held = $2 WHERE id = $1", &[&id, &held])
                .await?
                > 0,
        )
    }

    async fn queue_delete(&self, id: QueueId) -> StoreResult<bool> {
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM queue WHERE id = $1", &[&id]).await? > 0)
    }

    async fn queue_flush(&self, id: Option<QueueId>, now: i64) -> StoreResult<usize> {
        let c = self.client().await?;
        let n = match id {
            Some(id) => {
                c.execute(
                    "UPDATE queue SET next_attempt = least(next_attempt, $2) \
                     WHERE id = $1 AND NOT held",
                    &[&id, &now],
                )
                .await?
            }
            None => {
                c.execute(
                    "UPDATE queue SET next_attempt = least(next_attempt, $1) WHERE NOT held",
                    &[&now],
                )
                .await?
            }
        };
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
