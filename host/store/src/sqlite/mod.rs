//! The embedded backend: one SQLite database in the data directory.
//!
//! # Disk layout
//! `<data_dir>/mailgate.db` (plus SQLite's `-wal` and `-shm` files) holds
//! everything: domains, accounts, aliases, mailboxes, message entries and
//! message bodies (see [`schema`] for the tables). Bodies are stored once
//! per delivery in `blobs`; each mailbox entry in `messages` points at one.
//! A blob that no entry points at any more is deleted in the same
//! transaction that removed its last entry.
//!
//! # Durability and group commit
//! The database runs in WAL mode with `synchronous = FULL`: a commit
//! returns only after the WAL is synced to disk. All writes go through one
//! writer thread ([`writer`]), which takes every write request waiting in
//! its queue, runs each in its own savepoint inside one transaction, and
//! commits once; so fifty concurrent deliveries cost one fsync, not fifty.
//! Each caller is answered only after that commit, and the change
//! notifications ([`crate::StoreEvent`]) are sent only then.
//!
//! Reads run on a small pool of read-only connections on tokio's blocking
//! threads; WAL lets them proceed while the writer commits.
//!
//! # Other processes
//! The admin CLI opens the same database while the server runs; SQLite's
//! file locks and a busy timeout serialise the two writers.

mod check;
mod directory;
mod imap;
mod mailstore;
mod queue;
pub mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::broadcast;

use crate::{StoreError, StoreEvent, StoreResult};
use writer::Writer;

/// The database file name inside the data directory.
pub const DB_FILE: &str = "mailgate.db";
/// How long a connection waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many change notifications a slow session may fall behind by before
/// it is told to resynchronise (broadcast lag).
const EVENT_BACKLOG: usize = 4096;

/// The embedded store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    events: broadcast::Sender<StoreEvent>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> StoreResult<Arc<SqliteStore>> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let conn = open_connection(&path, false)?;
        schema::migrate(&conn)?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let writer = Writer::start(conn, events.clone())?;
        Ok(Arc::new(SqliteStore {
            path,
            writer,
            readers: Mutex::new(Vec::new()),
            events,
        }))
    }

    /// Runs `f` on a read connection, off the async workers.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = {
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path, true)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (conn, r)
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }

    /// Runs `f` in the writer's next group transaction; returns once the
    /// transaction is durable. `f` returns its result and the events to
    /// announce after the commit.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<(T, Vec<StoreEvent>)> + Send + 'static,
    {
        self.writer.submit(f).await
    }
}

impl Drop for SqliteStore {
    /// Closing the last connection to a WAL database checkpoints the WAL
    /// into the main file, which can take seconds on a busy disk. Shutdown
    /// must not wait for it: everything is already committed, and an
    /// unfinished checkpoint is redone from the WAL at the next open. So
    /// the read connections are closed on a thread of their own (the
    /// writer thread closes its connection when its queue closes).
    fn drop(&mut self) {
        let readers = std::mem::take(self.readers.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !readers.is_empty() {
            let spawned = std::thread::Builder::new()
                .name("store-close".into())
                .spawn(move || drop(readers));
            if let Err(e) = spawned {
                tracing::debug!(error = %e, "store: closing read connections inline");
            }
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Lower-cases an address or domain for storage and lookup.
pub(crate) fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}
