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
            let result = f(conn).map_err(|e| e.no_space_if(|| file_system_full(conn)));
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
        let (started, count) = (std::time::Instant::now(), batch.len());
        let mut jobs = batch.into_iter();
        'transaction: loop {
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                // Dropping the jobs answers every caller with
                // StoreError::Closed; nothing of theirs was stored.
                tracing::error!(error = %e, "store: cannot begin a transaction");
                break 'transaction;
            }
            for job in jobs.by_ref() {
                if let Err(e) = run_cached(&conn, "SAVEPOINT job") {
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
                let ended = if ran == Ran::Ok {
                    run_cached(&conn, "RELEASE job")
                } else {
                    conn.execute_batch("ROLLBACK TO job; RELEASE job")
                };
                if let Err(e) = ended {
                    tracing::error!(error = %e, "store: ending a savepoint failed");
                }
                completions.push(completion);
            }
            let committed = conn
                .execute_batch("COMMIT")
                .map_err(|e| commit_error(e, &conn));
            mailgate_metrics::store_commit(started.elapsed(), count, committed.is_ok());
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
fn commit_error(e: rusqlite::Error, conn: &Connection) -> StoreError {
    match StoreError::from(e).no_space_if(|| file_system_full(conn)) {
        StoreError::NoSpace => StoreError::NoSpace,
        other => StoreError::Database(format!("commit failed: {other}")),
    }
}

/// Runs one statement from the connection's statement cache: the
/// savepoint of every job, not compiled again each time.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Whether the file system holding the database has no room left (less
/// than the store's reserve file free): asked right after a write-side
/// I/O error, to tell the `ENOSPC` behind an `SQLITE_IOERR_FSYNC` (and
/// the like) from a failing disk (`StoreError::no_space_if`). An
/// in-memory database, or one whose file system cannot be read, is never
/// full.
fn file_system_full(conn: &Connection) -> bool {
    let Some(dir) = conn
        .path()
        .filter(|p| !p.is_empty())
        .and_then(|p| std::path::Path::new(p).parent())
    else {
        return false;
    };
    crate::space::read_fs(dir).is_ok_and(|r| r.free < crate::space::RESERVE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that can grow by only a few pages: a large insert fails
    /// with SQLITE_FULL, which makes SQLite roll back the whole
    /// transaction, not only the statement.
    fn small_writer() -> (tempfile::TempDir, Writer, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB NOT NULL);")
            .unwrap();
        conn.pragma_update(None, "max_page_count", 16).unwrap();
        let (events, _) = broadcast::channel(16);
        (dir, Writer::start(conn, events).unwrap(), path)
    }

    fn insert(bytes: usize) -> impl FnOnce(&Connection) -> StoreResult<((), Vec<StoreEvent>)> {
        move |c| {
            c.execute("INSERT INTO t (v) VALUES (?1)", [vec![7u8; bytes]])?;
            Ok(((), vec![]))
        }
    }

    #[tokio::test]
    async fn a_full_disk_in_a_batch_answers_every_job_truthfully() {
        let (_dir, w, path) = small_writer();
        // Hold the writer so that the next three jobs share one batch.
        let hold = w.submit(|_| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(((), vec![]))
        });
        let (held, before, full, after) = tokio::join!(
            hold,
            async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                w.submit(insert(10)).await
            },
            async {
                tokio::time::sleep(std::time::Duration::from_millis(60)).await;
                w.submit(insert(1 << 20)).await
            },
            async {
                tokio::time::sleep(std::time::Duration::from_millis(70)).await;
                w.submit(insert(20)).await
            }
        );
        held.unwrap();
        assert!(matches!(full, Err(StoreError::NoSpace)), "{full:?}");
        // What each caller was told is what the database holds.
        let c = Connection::open(&path).unwrap();
        let stored: Vec<i64> = c
            .prepare("SELECT length(v) FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut expected = Vec::new();
        if before.is_ok() {
            expected.push(10);
        } else {
            assert!(matches!(before, Err(StoreError::NoSpace)), "{before:?}");
        }
        after.as_ref().unwrap();
        expected.push(20);
        assert_eq!(stored, expected);
        // The writer goes on.
        w.submit(insert(30)).await.unwrap();
    }
}
