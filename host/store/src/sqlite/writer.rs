//! The single writer thread and its group commit.
//!
//! Jobs arrive on a channel. The thread blocks for the first, then takes
//! every job already waiting (up to [`MAX_BATCH`]), runs each inside its
//! own savepoint within one `BEGIN IMMEDIATE` transaction (a failing job
//! rolls back only itself), commits once, and only then answers each
//! caller and sends the events. If the commit itself fails every caller in
//! the batch gets the error and nothing was stored.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot};

use crate::{StoreError, StoreEvent, StoreResult};

/// At most this many jobs share one commit.
const MAX_BATCH: usize = 256;

/// What a job leaves for after the commit: answer its caller.
type Completion = Box<dyn FnOnce(StoreResult<()>, &broadcast::Sender<StoreEvent>) + Send>;
/// A job: runs inside a savepoint; says whether it succeeded.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

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
            let ok = result.is_ok();
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
            (ok, completion)
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
        let mut completions = Vec::with_capacity(batch.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping the jobs answers every caller with StoreError::Closed;
            // nothing of theirs was stored.
            tracing::error!(error = %e, jobs = batch.len(), "store: cannot begin a transaction");
            continue;
        }
        for job in batch {
            let savepoint = conn.execute_batch("SAVEPOINT job");
            if let Err(e) = savepoint {
                tracing::error!(error = %e, "store: savepoint failed");
                continue;
            }
            let (ok, completion) = job(&conn);
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "store: ending a savepoint failed");
            }
            completions.push(completion);
        }
        let committed = conn.execute_batch("COMMIT");
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for completion in completions {
            let outcome = match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
            };
            completion(outcome, &events);
        }
    }
    tracing::debug!("store writer stopped");
}
