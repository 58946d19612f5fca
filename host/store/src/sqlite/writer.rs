//! The single writer thread and its group commit.
//!
//! Jobs arrive on a channel. The thread blocks for the first, then takes
//! every job already waiting (up to [`MAX_BATCH`]), runs each inside its
//! own savepoint within one `BEGIN IMMEDIATE` transaction (a failing job
//! rolls back only itself), commits once, and only then answers each
//! caller and sends the events. If the commit itself fails every caller in
//! the batch gets the error and nothing was stored.
//!
//! Some errors (a full disk, an I/O error) make SQLite roll back the whole
//! transaction, not only the failing statement. The writer notices (the
//! connection is back in autocommit mode), answers every job of the batch
//! that ran so far with the error, since their work is gone, and begins a
//! new transaction for the jobs still waiting; otherwise they would run
//! and commit one by one outside any transaction.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot};

use crate::{StoreError, StoreEvent, StoreResult};

/// At most this many jobs share one commit.
const MAX_BATCH: usize = 256;

/// What a job leaves for after the commit: answer its caller.
type Completion = Box<dyn FnOnce(StoreResult<()>, &broadcast::Sender<StoreEvent>) + Send>;
/// How a job ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Ok,
    Failed,
    /// Failed for lack of disk space.
    NoSpace,
}

/// A job: runs inside a savepoint; says how it went.
type Job = Box<dyn FnOnce(&Connection) -> (Ran, Completion) + Send>;

/// Handle to the writer thread.
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        events: broadcast::Sender<StoreEvent>,
    ) -> StoreResult<Writer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, events))?;
        Ok(Writer { jobs })
    }

    pub(super) async fn submit<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<(T, Vec<StoreEvent>)> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ran = match &result {
                Ok(_) => Ran::Ok,
                Err(StoreError::NoSpace) => Ran::NoSpace,
                Err(_) => Ran::Failed,
            };
            let completion: Completion = Box::new(move |commit, events| match (commit, result) {
                (Ok(()), Ok((value, evs))) => {
                    for e in evs {
                        let _ = events.send(e);
                    }
                    let _ = tx.send(Ok(value));
                }
                (Err(e), _) | (Ok(()), Err(e)) => {
                    let _ = tx.send(Err(e));
                }
            });
            (ran, completion)
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, events: broadcast::Sender<StoreEvent>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        'transaction: loop {
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                // Dropping the jobs answers every caller with
                // StoreError::Closed; nothing of theirs was stored.
                tracing::error!(error = %e, "store: cannot begin a transaction");
                break 'transaction;
            }
            for job in jobs.by_ref() {
                if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                    tracing::error!(error = %e, "store: savepoint failed");
                    continue;
                }
                let (ran, completion) = job(&conn);
                if conn.is_autocommit() {
                    // SQLite rolled back the whole transaction: the jobs
                    // before this one lost their work too.
                    let error = || match ran {
                        Ran::NoSpace => StoreError::NoSpace,
                        _ => StoreError::Database("the transaction was rolled back".into()),
                    };
                    tracing::warn!(
                        jobs = completions.len() + 1,
                        no_space = ran == Ran::NoSpace,
                        "store: a failed write rolled back its whole batch; its callers are told"
                    );
                    for c in completions.drain(..) {
                        c(Err(error()), &events);
                    }
                    // The failing job's own error is in its result (a job
                    // that says it succeeded lost its work all the same).
                    let own = if ran == Ran::Ok { Err(error()) } else { Ok(()) };
                    completion(own, &events);
                    continue 'transaction;
                }
                let end = if ran == Ran::Ok {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                };
                if let Err(e) = conn.execute_batch(end) {
                    tracing::error!(error = %e, "store: ending a savepoint failed");
                }
                completions.push(completion);
            }
            let committed = conn.execute_batch("COMMIT").map_err(commit_error);
            if committed.is_err() && !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            for completion in completions.drain(..) {
                let outcome = match &committed {
                    Ok(()) => Ok(()),
                    Err(StoreError::NoSpace) => Err(StoreError::NoSpace),
                    Err(e) => Err(StoreError::Database(e.to_string())),
                };
                completion(outcome, &events);
            }
            break 'transaction;
        }
    }
    tracing::debug!("store writer stopped");
}

/// The error of a failed COMMIT: a full disk is [`StoreError::NoSpace`]
/// (temporary; nothing was stored), anything else the engine's failure.
fn commit_error(e: rusqlite::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::NoSpace => StoreError::NoSpace,
        other => StoreError::Database(format!("commit failed: {other}")),
    }
}
