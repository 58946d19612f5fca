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
}

impl From<rusqlite::Error> for StoreError {
    /// `SQLITE_FULL` (the unix VFS's name for `ENOSPC`) is
    /// [`StoreError::NoSpace`]; everything else is the engine's failure.
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return StoreError::NoSpace;
        }
        StoreError::Database(e.to_string())
    }
}

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
}

/// A result from the store.
pub type StoreResult<T> = Result<T, StoreError>;
