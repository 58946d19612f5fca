//! The embedded backend: one SQLite database in the data directory.
//!
//! # Disk layout
//! `<data_dir>/mailgate.db` (plus SQLite's `-wal` and `-shm` files) holds
//! everything: domains, accounts, aliases, mailboxes, message entries and
//! message bodies (see [`schema`] for the tables). The directory is created
//! 0700 and the database 0600 whatever the umask; SQLite gives `-wal` and
//! `-shm` the database's mode. Bodies are stored once
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
//! # A full disk
//! Below `[limits] min_free_space` the store refuses new mail itself
//! (deliveries, APPEND, COPY, imports: [`StoreError::NoSpace`]) and keeps
//! a reserve file it releases when the disk is really full, so that
//! deleting still works; see [`crate::space`]. A write that fails for lack
//! of space is rolled back by SQLite (the WAL frames of an unfinished
//! transaction are ignored), so nothing committed before is harmed. The
//! WAL file is never truncated: after a checkpoint SQLite writes it again
//! from its start, in blocks the file system has already given it.
//!
//! # Other processes
//! The admin CLI opens the same database while the server runs; SQLite's
//! file locks and a busy timeout serialise the two writers. A CLI store
//! told to [`SqliteStore::announce_to_other_processes`] also leaves its
//! change notifications in the database, where the server's store finds
//! them ([`notify`]).

pub mod check;
pub(crate) mod directory;
mod health;
mod imap;
mod import;
mod kv;
mod logins;
pub(crate) mod mailstore;
pub mod notify;
mod queue;
pub mod schema;
mod sieve;
pub mod sieve_memory;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::broadcast;

use crate::space::{MinFreeSpace, SpaceGuard};
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
    /// Names this store's rows in `store_events` ([`notify`]).
    origin: String,
    /// Whether writes also leave their events for other processes.
    publish: AtomicBool,
    /// Starts the watcher of other processes' events at the first subscriber.
    watcher: Once,
    /// Stops that watcher when the store is dropped.
    watcher_stop: Arc<AtomicBool>,
    /// Free space in the data directory and the reserve file.
    space: SpaceGuard,
    /// The POP3 maildrop locks (one server per data directory: in memory).
    maildrop_locks: crate::maildrop_lock::InProcessLocks,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> StoreResult<Arc<SqliteStore>> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        create_private_file(&path)?;
        let conn = open_connection(&path, false)?;
        schema::migrate(&conn)?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let writer = Writer::start(conn, events.clone())?;
        Ok(Arc::new(SqliteStore {
            path,
            writer,
            readers: Mutex::new(Vec::new()),
            events,
            origin: notify::origin(),
            publish: AtomicBool::new(false),
            watcher: Once::new(),
            watcher_stop: Arc::new(AtomicBool::new(false)),
            space: SpaceGuard::new(data_dir),
            maildrop_locks: crate::maildrop_lock::InProcessLocks::new(),
        }))
    }

    /// The POP3 maildrop locks of this store ([`crate::MaildropLocks`]).
    pub(crate) fn maildrop_locks(&self) -> &crate::maildrop_lock::InProcessLocks {
        &self.maildrop_locks
    }

    /// Sets `[limits] min_free_space` (by default the smaller of 1 GiB and
    /// 5 % of the file system): below it new mail is refused.
    pub fn set_min_free_space(&self, min: MinFreeSpace) {
        self.space.set_min_free(min);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// From now on every change this store commits is also written to the
    /// database for other processes (the running server) to announce to
    /// their sessions; see [`notify`]. For the admin CLI.
    pub fn announce_to_other_processes(&self) {
        self.publish.store(true, Ordering::Relaxed);
    }

    /// The in-process change channel, with the watcher of other processes'
    /// changes started on first use.
    fn subscribe_events(&self) -> broadcast::Receiver<StoreEvent> {
        self.watcher.call_once(|| {
            notify::start_watcher(
                self.path.clone(),
                self.origin.clone(),
                self.events.clone(),
                Arc::clone(&self.watcher_stop),
            )
        });
        self.events.subscribe()
    }

    /// Runs `f` on a read connection on the calling thread: for the
    /// directory's point look-ups (an account, an alias, the domains) on
    /// every RCPT TO and login, which read a few index pages that are in
    /// the page cache and take a few microseconds. Handing them to the
    /// blocking pool (as [`SqliteStore::read`] does) cost more than the
    /// look-up: two thread wake-ups, about a tenth of the server's CPU
    /// per message in the SMTP benchmark (docs/performance.md). WAL
    /// readers never wait for the writer, so this does not block on
    /// deliveries; anything that may read much (mailbox listings with
    /// their counters, FETCH, SEARCH) goes through [`SqliteStore::read`].
    fn read_now<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T>,
    {
        let conn = {
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path, true)?,
        };
        let result = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
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
        self.space.before_write();
        let result = if !self.publish.load(Ordering::Relaxed) {
            self.writer.submit(f).await
        } else {
            let origin = self.origin.clone();
            self.writer
                .submit(move |c| {
                    let (value, events) = f(c)?;
                    notify::record(c, &origin, &events)?;
                    Ok((value, events))
                })
                .await
        };
        if matches!(result, Err(StoreError::NoSpace)) {
            self.space.on_full();
        }
        result
    }

    /// A write of new mail of `incoming` bytes: refused while free space
    /// is short (see [`crate::space`]), otherwise [`SqliteStore::write`].
    async fn write_new<T, F>(&self, incoming: u64, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<(T, Vec<StoreEvent>)> + Send + 'static,
    {
        self.space.check(incoming)?;
        self.write(f).await
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
        self.watcher_stop.store(true, Ordering::Relaxed);
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

/// Creates `dir` (and missing parents) readable by its owner only (0700),
/// whatever the umask. An existing directory is left as it is; the server
/// tightens its data directory at start (`mailgate serve`).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates the database file empty with mode 0600 if it does not exist,
/// so that SQLite (which would create it 0644 less the umask) opens ours;
/// SQLite gives its `-wal` and `-shm` files the database file's mode.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every check of `store check` on one connection (for a backup's copy,
/// which is not opened as a store); one line per problem.
pub(crate) fn check_connection(c: &Connection) -> StoreResult<Vec<String>> {
    check::run(c)
}

impl SqliteStore {
    /// `mailgate store check --repair`: repairs what can be repaired
    /// safely (rebuilt sizes and counters, unreferenced bodies, a missing
    /// INBOX, see [`check::repair`]) in one transaction, and returns what
    /// was done; with `dry_run`, changes nothing and returns what would
    /// be done.
    pub async fn repair(&self, dry_run: bool) -> StoreResult<Vec<check::Repair>> {
        if dry_run {
            self.read(move |c| check::repair(c, true)).await
        } else {
            self.write(move |c| Ok((check::repair(c, false)?, vec![])))
                .await
        }
    }
}

/// Lower-cases an address or domain for storage and lookup.
pub(crate) fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}
