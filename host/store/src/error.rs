//! Errors of the store. Callers map them to protocol replies in one place:
//! everything except [`StoreError::Exists`], [`StoreError::NotFound`],
//! [`StoreError::Invalid`], [`StoreError::Active`] and
//! [`StoreError::NoSpace`] is the server's
//! fault (`451 4.3.0`, `-ERR`, `NO [SERVERBUG]`), with the detail only in
//! the log. [`StoreError::NoSpace`] is a temporary condition the client
//! is told about (`452 4.3.1`, `-ERR [SYS/TEMP]`, `NO [UNAVAILABLE]`).

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing to create exists already.
    #[error("{0} already exists")]
    Exists(String),
    /// The thing named does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The caller passed something the store cannot hold (a bad name).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The storage engine failed. Only its message is kept, so that no
    /// engine type leaks through the store's interface.
    #[error("database error: {0}")]
    Database(String),
    /// The file system failed.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// The store's writer dropped the request unanswered (it is shutting
    /// down, or could not begin a transaction: see the log).
    #[error("the store could not run the request")]
    Closed,
    /// The data directory's file system is (nearly) full: below `[limits]
    /// min_free_space` for new mail, or a write failed for lack of space
    /// (SQLite rolled it back; nothing stored before is harmed). Temporary:
    /// the same request succeeds once space returns.
    #[error("not enough disk space")]
    NoSpace,
    /// Saved data could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The Sieve script named is the account's active one and cannot be
    /// deleted (RFC 5804 §2.10: the client is told `NO (ACTIVE)`).
    #[error("{0} is the active script")]
    Active(String),
    /// The database server (PostgreSQL backend) cannot be reached now: no
    /// connection could be made or taken from the pool in time, or the
    /// connection broke. Temporary, and the server's fault: the client is
    /// told to try again later; the detail is only logged.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl From<tokio_postgres::Error> for StoreError {
    /// PostgreSQL's `disk_full` (SQLSTATE 53100) is
    /// [`StoreError::NoSpace`]; a broken or refused connection (class 08,
    /// `admin_shutdown` and the like, or no SQLSTATE at all: the socket
    /// failed) is [`StoreError::Unavailable`]; everything else is the
    /// engine's failure, kept as its SQLSTATE and message (never the
    /// statement's values) for the log.
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(code) = e.code() else {
            return StoreError::Unavailable(e.to_string());
        };
        if *code == SqlState::DISK_FULL {
            return StoreError::NoSpace;
        }
        let class = &code.code()[..2];
        if class == "08"
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            return StoreError::Unavailable(format!("SQLSTATE {}", code.code()));
        }
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        StoreError::Database(format!("SQLSTATE {}: {message}", code.code()))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    /// No connection from the pool: the database is unavailable (a
    /// timeout, a refused connection); an error of the connection made
    /// for the pool is mapped as any other PostgreSQL error.
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    /// `SQLITE_FULL` (the unix VFS's name for `ENOSPC` on a write) is
    /// [`StoreError::NoSpace`]. A write-side `SQLITE_IOERR_*` (an fsync,
    /// a file extension, the shared-memory file: see [`WriteIo`]) is kept
    /// apart as [`StoreError::Io`] holding a [`WriteIo`], because it may
    /// be `ENOSPC` too; the store's writer decides which
    /// ([`StoreError::no_space_if`]). Everything else is the engine's
    /// failure.
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return StoreError::NoSpace;
        }
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if WRITE_IO_CODES.contains(&f.extended_code) {
                return StoreError::Io(std::io::Error::other(WriteIo(e.to_string())));
            }
        }
        StoreError::Database(e.to_string())
    }
}

/// The extended result codes of SQLite's unix VFS for a write to the file
/// system that failed with an `errno` other than the one it turns into
/// `SQLITE_FULL`: `ENOSPC` from `fsync` (delayed allocation, network
/// file systems), from `fallocate`/`ftruncate` while a file grows, or
/// while the `-shm` file grows, comes back as one of these.
const WRITE_IO_CODES: [std::ffi::c_int; 6] = [
    rusqlite::ffi::SQLITE_IOERR_WRITE,
    rusqlite::ffi::SQLITE_IOERR_FSYNC,
    rusqlite::ffi::SQLITE_IOERR_DIR_FSYNC,
    rusqlite::ffi::SQLITE_IOERR_TRUNCATE,
    rusqlite::ffi::SQLITE_IOERR_SHMSIZE,
    rusqlite::ffi::SQLITE_IOERR_SHMMAP,
];

/// A write-side I/O error of SQLite (one of the `SQLITE_IOERR_*` codes
/// above), inside [`StoreError::Io`]. SQLite knows the `errno` behind it,
/// but rusqlite offers it only through the raw connection handle (unsafe
/// code, which this project does not write); so the writer asks the file
/// system instead, at once: a write that failed while the data
/// directory's file system has no room left failed for lack of space.
#[derive(Debug)]
pub struct WriteIo(pub String);

impl std::fmt::Display for WriteIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "write failed: {}", self.0)
    }
}

impl std::error::Error for WriteIo {}

impl From<std::io::Error> for StoreError {
    /// `ENOSPC` and `EDQUOT` are [`StoreError::NoSpace`].
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) {
            return StoreError::NoSpace;
        }
        StoreError::Io(e)
    }
}

impl StoreError {
    /// Whether this is [`StoreError::NoSpace`] (a temporary shortage of
    /// disk space the client may be told about).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::NoSpace)
    }

    /// Whether this is a write-side I/O error of SQLite ([`WriteIo`]).
    pub fn is_write_io(&self) -> bool {
        matches!(self, StoreError::Io(e) if e.get_ref().is_some_and(|i| i.is::<WriteIo>()))
    }

    /// [`StoreError::NoSpace`] if this is a write-side I/O error
    /// ([`WriteIo`]) and `full` says the file system is out of room (the
    /// `ENOSPC` SQLite saw); otherwise itself. `full` is asked only then.
    pub fn no_space_if(self, full: impl FnOnce() -> bool) -> StoreError {
        if self.is_write_io() && full() {
            return StoreError::NoSpace;
        }
        self
    }
}

/// A result from the store.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_full_disk_and_write_side_io_errors_are_told_apart() {
        assert!(StoreError::from(sqlite(rusqlite::ffi::SQLITE_FULL)).is_no_space());
        for code in WRITE_IO_CODES {
            let e = StoreError::from(sqlite(code));
            assert!(e.is_write_io(), "{code}: {e:?}");
            // ENOSPC behind it (the file system is full): no space.
            assert!(StoreError::from(sqlite(code))
                .no_space_if(|| true)
                .is_no_space());
            // Another errno (EIO with room left): the engine's failure.
            let other = StoreError::from(sqlite(code)).no_space_if(|| false);
            assert!(!other.is_no_space() && other.is_write_io(), "{other}");
        }
        // A read error or a corrupt file is never "no space".
        for code in [
            rusqlite::ffi::SQLITE_IOERR_READ,
            rusqlite::ffi::SQLITE_CORRUPT,
        ] {
            let e = StoreError::from(sqlite(code)).no_space_if(|| true);
            assert!(matches!(e, StoreError::Database(_)), "{code}: {e:?}");
        }
    }
}
