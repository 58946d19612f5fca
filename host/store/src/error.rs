//! Errors of the store. Callers map them to protocol replies in one place:
//! everything except [`StoreError::Exists`], [`StoreError::NotFound`] and
//! [`StoreError::Invalid`] is the server's fault (`451 4.3.0`, `-ERR`,
//! `NO [SERVERBUG]`), with the detail only in the log.

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
    Io(#[from] std::io::Error),
    /// The store's writer dropped the request unanswered (it is shutting
    /// down, or could not begin a transaction: see the log).
    #[error("the store could not run the request")]
    Closed,
    /// Saved data could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// A result from the store.
pub type StoreResult<T> = Result<T, StoreError>;
