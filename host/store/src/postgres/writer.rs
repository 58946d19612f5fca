//! Group commit of deliveries on PostgreSQL.
//!
//! Every [`crate::MailStore::deliver`] of a node goes to one writer task
//! per node ([`Writer`]). The task waits for the first delivery, then
//! takes every delivery already waiting, up to [`MAX_BATCH`] of them and
//! no more once their bodies add up to [`MAX_BATCH_BYTES`] (a single
//! larger message still goes, alone), and stores the whole batch in ONE
//! transaction: one commit, so one WAL flush, for all of them. Each
//! caller is answered only after that commit has returned (with the
//! server's `synchronous_commit`, on by default, the WAL is on disk), so
//! the SMTP `250` still comes after the message is durable. While a batch
//! is being written and committed, the next deliveries queue up and form
//! the next batch: the busier the node, the larger the batches.
//!
//! # One transaction, a handful of statements
//! A batch costs the same few round trips whatever its size:
//! 1. the target mailboxes are looked up (one query for every
//!    `(account, name)` of the batch and each account's INBOX, the
//!    fallback of a folder that does not exist);
//! 2. their rows are locked, in mailbox id order, and their `uid_next`
//!    and `highest_modseq` read (`SELECT … ORDER BY id FOR UPDATE`);
//! 3. UIDs and MODSEQs are handed out in Rust, delivery after delivery
//!    in the order they arrived, exactly as one transaction per delivery
//!    would have (each entry takes the mailbox's next UID and next
//!    MODSEQ), and written back in one `UPDATE … FROM unnest(…)`;
//! 4. the bodies, one per distinct SHA-256 (an identical body delivered
//!    twice in the batch, or before by any node, is stored once), in one
//!    `INSERT … ON CONFLICT (hash)`, in hash order (two batches holding
//!    the same bodies lock them in the same order);
//! 5. the entries, in one `INSERT … SELECT … FROM unnest(…)`;
//! 6. the change log for the other nodes (one row per mailbox, all the
//!    batch's UIDs in it) and its `NOTIFY` ([`super::notify::record`]).
//!
//! Locks are taken as every other writer of the store takes them:
//! mailbox rows first, in id order, then bodies (`mailstore`'s module
//! docs); so a batch and another node's batch, an expunge or a MOVE
//! never wait for each other in a circle.
//!
//! # One delivery's failure fails only that delivery
//! What can be wrong with one delivery is found before anything is
//! written (pre-validation): an account without an INBOX
//! ([`StoreError::NotFound`]), a mailbox deleted meanwhile, a mailbox
//! whose UIDs are exhausted ([`StoreError::Invalid`]). Such a delivery is
//! answered with its error and left out of the batch; the others go on.
//! If a statement of the batch or its `COMMIT` fails anyway with an error
//! the server reports (so the transaction is rolled back and nothing of
//! the batch is stored), the writer stores the deliveries again one by
//! one, each in a transaction of its own: the one that fails alone gets
//! its error, the others are stored. If the connection breaks during the
//! `COMMIT`, whether it committed cannot be known: every caller of the
//! batch gets [`StoreError::Unavailable`] (SMTP answers `451`, the sender
//! tries again later), and nothing is tried again, so no delivery is
//! ever stored twice by the writer.
//!
//! # Bounds
//! At most [`MAX_BATCH`] deliveries per transaction, and a batch stops
//! growing once its bodies reach [`MAX_BATCH_BYTES`]. The queue in front
//! of the writer holds one entry per delivery in progress (its body is
//! the caller's buffer, not a copy), so it is bounded by the sessions the
//! node accepts. The writer takes one connection of the pool per batch.
//! Metrics: each batch is one `mailgate_store_commit_*` observation
//! (`host/metrics`), as on SQLite; a retried delivery is one more.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use deadpool_postgres::{Pool, Transaction};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::mailstore::canonical_set;
use crate::sqlite::mailstore::normalize_mailbox_name;
use crate::{
    AccountId, Delivered, DeliveryTarget, MailboxId, NewMessage, StoreError, StoreEvent,
    StoreResult, Uid,
};

/// At most this many deliveries share one transaction.
pub const MAX_BATCH: usize = 256;
/// A batch takes no more deliveries once its bodies add up to this many
/// bytes (one larger message still goes, alone).
pub const MAX_BATCH_BYTES: usize = 32 << 20;

/// What a delivery's caller gets back.
type Reply = oneshot::Sender<StoreResult<Vec<Delivered>>>;

/// One delivery waiting for the writer.
struct Job {
    message: NewMessage,
    /// The message structure as JSON (serialised by the caller).
    structure: String,
    targets: Vec<DeliveryTarget>,
    reply: Reply,
}

/// The handle of a node's delivery writer; the task stops when the
/// handle is dropped (with the store).
pub(super) struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the writer task (needs a tokio runtime).
    pub(super) fn start(
        pool: Pool,
        origin: String,
        events: broadcast::Sender<StoreEvent>,
    ) -> Writer {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, origin, events, rx));
        Writer { jobs }
    }

    /// Stores `message` for `targets` (not empty) in the next group
    /// commit; returns once it is committed.
    pub(super) async fn deliver(
        &self,
        message: NewMessage,
        structure: String,
        targets: Vec<DeliveryTarget>,
    ) -> StoreResult<Vec<Delivered>> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                message,
                structure,
                targets,
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    pool: Pool,
    origin: String,
    events: broadcast::Sender<StoreEvent>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.message.raw.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.message.raw.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        write_batch(&pool, &origin, &events, batch).await;
    }
    tracing::debug!("store: delivery writer stopped");
}

/// A delivery's result inside the batch: its answer and the events to
/// announce after the commit.
type Done = StoreResult<(Vec<Delivered>, Vec<StoreEvent>)>;

/// How a batch transaction failed.
enum BatchFailed {
    /// Rolled back for sure (an error the server reported, or one before
    /// the `COMMIT` was sent): the deliveries may be tried again.
    RolledBack(StoreError),
    /// The connection broke during the `COMMIT`: it may have committed.
    Unknown(StoreError),
}

async fn write_batch(
    pool: &Pool,
    origin: &str,
    events: &broadcast::Sender<StoreEvent>,
    batch: Vec<Job>,
) {
    let (started, count) = (Instant::now(), batch.len());
    let outcome = match pool.get().await {
        Ok(mut client) => together(&mut client, origin, &batch).await,
        Err(e) => Err(BatchFailed::Unknown(e.into())),
    };
    match outcome {
        Ok(done) => {
            mailgate_metrics::store_commit(started.elapsed(), count, true);
            for (job, result) in batch.into_iter().zip(done) {
                answer(job.reply, result, events);
            }
        }
        Err(BatchFailed::RolledBack(e)) => {
            mailgate_metrics::store_commit(started.elapsed(), count, false);
            if count > 1 {
                tracing::warn!(
                    deliveries = count,
                    error = %e,
                    "store: a group commit failed; its deliveries are stored one by one"
                );
            }
            for job in batch {
                let started = Instant::now();
                let result = alone(pool, origin, &job).await;
                if count > 1 {
                    mailgate_metrics::store_commit(started.elapsed(), 1, result.is_ok());
                }
                answer(job.reply, result, events);
            }
        }
        Err(BatchFailed::Unknown(e)) => {
            mailgate_metrics::store_commit(started.elapsed(), count, false);
            tracing::error!(deliveries = count, error = %e, "store: a group commit failed");
            for job in batch {
                let error = match &e {
                    StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                    other => StoreError::Unavailable(other.to_string()),
                };
                let _ = job.reply.send(Err(error));
            }
        }
    }
}

/// Answers a caller; announces its events to this node's sessions first.
fn answer(reply: Reply, result: Done, events: &broadcast::Sender<StoreEvent>) {
    let _ = reply.send(result.map(|(delivered, evs)| {
        for e in evs {
            let _ = events.send(e);
        }
        delivered
    }));
}

/// One delivery in a transaction of its own (after a failed batch).
async fn alone(pool: &Pool, origin: &str, job: &Job) -> Done {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (delivered, events) =
        super::mailstore::deliver_in(&tx, &job.message, &job.structure, &job.targets).await?;
    super::notify::record(&tx, origin, &events).await?;
    tx.commit().await?;
    Ok((delivered, events))
}

/// One entry to insert.
struct Entry {
    job: usize,
    target: usize,
    mailbox: MailboxId,
    uid: i64,
    modseq: i64,
}

/// The whole batch in one transaction; per delivery its result.
async fn together(
    client: &mut deadpool_postgres::Object,
    origin: &str,
    batch: &[Job],
) -> Result<Vec<Done>, BatchFailed> {
    let rolled = |e: tokio_postgres::Error| BatchFailed::RolledBack(e.into());
    let tx = client.transaction().await.map_err(rolled)?;
    let mut results: Vec<Option<Done>> = (0..batch.len()).map(|_| None).collect();

    // 1. Where each target goes (unlocked: step 2 locks and re-checks).
    let wanted: Vec<Vec<(AccountId, String)>> = batch
        .iter()
        .map(|job| {
            job.targets
                .iter()
                .map(|t| {
                    let name =
                        normalize_mailbox_name(&t.mailbox).unwrap_or_else(|_| "INBOX".into());
                    (t.account, name)
                })
                .collect()
        })
        .collect();
    let mut names: Vec<(AccountId, String)> = wanted
        .iter()
        .flatten()
        .flat_map(|(a, n)| [(*a, n.clone()), (*a, "INBOX".to_string())])
        .collect();
    names.sort_unstable();
    names.dedup();
    let (accounts, mailbox_names): (Vec<i64>, Vec<String>) = names.into_iter().unzip();
    let st = tx
        .prepare_cached(
            "SELECT mb.account, mb.name, mb.id FROM mailboxes mb
               JOIN unnest($1::bigint[], $2::text[]) AS w(account, name)
                 ON mb.account = w.account AND mb.name = w.name",
        )
        .await
        .map_err(rolled)?;
    let found: HashMap<(AccountId, String), MailboxId> = tx
        .query(&st, &[&accounts, &mailbox_names])
        .await
        .map_err(rolled)?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let mut resolved: Vec<Vec<MailboxId>> = Vec::with_capacity(batch.len());
    for (i, targets) in wanted.iter().enumerate() {
        let mut ids = Vec::with_capacity(targets.len());
        for (account, name) in targets {
            let id = found
                .get(&(*account, name.clone()))
                .or_else(|| found.get(&(*account, "INBOX".to_string())));
            match id {
                Some(id) => ids.push(*id),
                None => {
                    results[i] = Some(Err(StoreError::NotFound(format!(
                        "INBOX of account {account}"
                    ))));
                    break;
                }
            }
        }
        resolved.push(ids);
    }

    // 2. Lock the mailboxes, in id order, and read their counters.
    let mut ids: Vec<MailboxId> = resolved
        .iter()
        .enumerate()
        .filter(|(i, _)| results[*i].is_none())
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let st = tx
        .prepare_cached(
            "SELECT id, uid_next, highest_modseq FROM mailboxes
              WHERE id = ANY ($1) ORDER BY id FOR UPDATE",
        )
        .await
        .map_err(rolled)?;
    let mut counters: BTreeMap<MailboxId, (i64, i64)> = tx
        .query(&st, &[&ids])
        .await
        .map_err(rolled)?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let before = counters.clone();

    // 3. UIDs and MODSEQs, delivery after delivery, each all or nothing.
    let mut entries: Vec<Entry> = Vec::new();
    for (i, ids) in resolved.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        // Within a delivery in mailbox id order, as `deliver_in` does.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&t| ids[t]);
        let mut tentative = counters.clone();
        let mut mine = Vec::with_capacity(ids.len());
        let mut failed = None;
        for t in order {
            let Some((uid_next, modseq)) = tentative.get_mut(&ids[t]) else {
                failed = Some(StoreError::NotFound(format!("mailbox {}", ids[t])));
                break;
            };
            if *uid_next > i64::from(u32::MAX) {
                failed = Some(StoreError::Invalid(
                    "UID space of the mailbox exhausted".into(),
                ));
                break;
            }
            *modseq += 1;
            mine.push(Entry {
                job: i,
                target: t,
                mailbox: ids[t],
                uid: *uid_next,
                modseq: *modseq,
            });
            *uid_next += 1;
        }
        match failed {
            Some(e) => results[i] = Some(Err(e)),
            None => {
                counters = tentative;
                entries.extend(mine);
            }
        }
    }
    if entries.is_empty() {
        // Nothing to write: every delivery failed its checks.
        drop(tx);
        return Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
            .collect());
    }
    let changed: Vec<(MailboxId, (i64, i64))> = counters
        .iter()
        .filter(|(id, c)| before.get(id) != Some(c))
        .map(|(id, c)| (*id, *c))
        .collect();
    let st = tx
        .prepare_cached(
            "UPDATE mailboxes mb SET uid_next = v.uid_next, highest_modseq = v.modseq
               FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, uid_next, modseq)
              WHERE mb.id = v.id",
        )
        .await
        .map_err(rolled)?;
    let mb_ids: Vec<i64> = changed.iter().map(|(id, _)| *id).collect();
    let uid_nexts: Vec<i64> = changed.iter().map(|(_, (u, _))| *u).collect();
    let modseqs: Vec<i64> = changed.iter().map(|(_, (_, m))| *m).collect();
    tx.execute(&st, &[&mb_ids, &uid_nexts, &modseqs])
        .await
        .map_err(rolled)?;

    // 4. The bodies, once each, in hash order.
    let mut hashes: Vec<Option<Vec<u8>>> = (0..batch.len()).map(|_| None).collect();
    let mut bodies: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for e in &entries {
        if hashes[e.job].is_none() {
            let hash = Sha256::digest(batch[e.job].message.raw.as_slice()).to_vec();
            bodies.entry(hash.clone()).or_insert(e.job);
            hashes[e.job] = Some(hash);
        }
    }
    let mut b_hash: Vec<&[u8]> = Vec::with_capacity(bodies.len());
    let mut b_size: Vec<i64> = Vec::with_capacity(bodies.len());
    let mut b_structure: Vec<&str> = Vec::with_capacity(bodies.len());
    let mut b_header: Vec<&[u8]> = Vec::with_capacity(bodies.len());
    let mut b_data: Vec<&[u8]> = Vec::with_capacity(bodies.len());
    for (hash, &job) in &bodies {
        let raw = batch[job].message.raw.as_slice();
        b_hash.push(hash);
        b_size.push(raw.len() as i64);
        b_structure.push(&batch[job].structure);
        b_header.push(&raw[..crate::structure::header_block_len(raw)]);
        b_data.push(raw);
    }
    // The arrays go in hash order (a BTreeMap), which unnest keeps, so
    // rows are inserted, and locked, in hash order (no ORDER BY: sorting
    // a large batch's bodies could spill to disk). DO UPDATE (a no-op)
    // rather than DO NOTHING: the id comes back for a body that exists,
    // and its row is locked against the deletion of its last entry until
    // the commit (as `insert_blob`).
    let st = tx
        .prepare_cached(
            "INSERT INTO blobs (hash, size, structure, header, data)
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[])
             ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash RETURNING hash, id",
        )
        .await
        .map_err(rolled)?;
    let blob_ids: HashMap<Vec<u8>, i64> = tx
        .query(&st, &[&b_hash, &b_size, &b_structure, &b_header, &b_data])
        .await
        .map_err(rolled)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    // 5. The entries.
    let n = entries.len();
    let (mut e_mailbox, mut e_uid, mut e_blob, mut e_flags) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut e_date, mut e_size, mut e_modseq) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in &entries {
        let job = &batch[e.job];
        let hash = hashes[e.job].as_ref().ok_or_else(|| {
            BatchFailed::RolledBack(StoreError::Corrupt("a body without its hash".into()))
        })?;
        let blob = *blob_ids.get(hash).ok_or_else(|| {
            BatchFailed::RolledBack(StoreError::Corrupt(
                "a body the database did not return".into(),
            ))
        })?;
        e_mailbox.push(e.mailbox);
        e_uid.push(e.uid);
        e_blob.push(blob);
        // Canonical flags never hold a space (`canonical_flag`).
        e_flags.push(canonical_set(&job.targets[e.target].flags).join(" "));
        e_date.push(job.message.internal_date);
        e_size.push(job.message.raw.len() as i64);
        e_modseq.push(e.modseq);
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq)
             SELECT m, u, b, string_to_array(f, ' '), d, s, q
               FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                           $5::bigint[], $6::bigint[], $7::bigint[]) AS v(m, u, b, f, d, s, q)",
        )
        .await
        .map_err(rolled)?;
    tx.execute(
        &st,
        &[
            &e_mailbox, &e_uid, &e_blob, &e_flags, &e_date, &e_size, &e_modseq,
        ],
    )
    .await
    .map_err(rolled)?;

    // The answers and events of each delivery, in target order.
    let mut per_job: BTreeMap<usize, Vec<&Entry>> = BTreeMap::new();
    for e in &entries {
        per_job.entry(e.job).or_default().push(e);
    }
    let mut logged: BTreeMap<(MailboxId, AccountId), Vec<Uid>> = BTreeMap::new();
    for (i, mut mine) in per_job {
        mine.sort_by_key(|e| e.target);
        let mut delivered = Vec::with_capacity(mine.len());
        let mut evs = Vec::with_capacity(mine.len());
        for e in mine {
            let account = batch[i].targets[e.target].account;
            let uid = u32::try_from(e.uid)
                .ok()
                .and_then(Uid::new)
                .ok_or_else(|| {
                    BatchFailed::RolledBack(StoreError::Corrupt(format!(
                        "UID {} out of range",
                        e.uid
                    )))
                })?;
            delivered.push(Delivered {
                account,
                mailbox: e.mailbox,
                uid,
            });
            evs.push(StoreEvent::Appended {
                account,
                mailbox: e.mailbox,
                uids: vec![uid],
            });
            logged.entry((e.mailbox, account)).or_default().push(uid);
        }
        results[i] = Some(Ok((delivered, evs)));
    }

    // 6. The change log: one row per mailbox for the other nodes.
    let log: Vec<StoreEvent> = logged
        .into_iter()
        .map(|((mailbox, account), mut uids)| {
            uids.sort_unstable();
            StoreEvent::Appended {
                account,
                mailbox,
                uids,
            }
        })
        .collect();
    super::notify::record(&tx, origin, &log)
        .await
        .map_err(BatchFailed::RolledBack)?;
    commit(tx).await?;
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(StoreError::Closed)))
        .collect())
}

/// Commits; tells an error the server reported (rolled back) from a
/// broken connection (unknown).
async fn commit(tx: Transaction<'_>) -> Result<(), BatchFailed> {
    tx.commit().await.map_err(|e| {
        if e.code().is_some() {
            BatchFailed::RolledBack(e.into())
        } else {
            BatchFailed::Unknown(e.into())
        }
    })
}
