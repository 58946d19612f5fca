//! One handle on whichever backend the configuration names (`[store]
//! backend`), so that the server and the admin CLI never name a backend
//! type.
//!
//! # Role
//! [`Backend`] is every store trait at once ([`crate::Store`],
//! [`QueueStore`], [`SieveScripts`], [`SieveMemory`], [`crate::PluginKv`], [`crate::MtaStsCache`],
//! [`MaildropLocks`]) plus the few calls the
//! server and the CLI make that are not about mail: the readiness probe,
//! the free-space floor, telling other processes of changes, and `store
//! check --repair`. Each of those has a default that is right for a backend
//! that does not need it, or says plainly that the backend does not support
//! it (a [`StoreError::Invalid`] naming the backend).
//! [`open_backend`] opens the one a [`BackendConfig`] names.
//!
//! A handle upcasts to the narrower traits the protocol crates take
//! (`Arc<dyn Backend>` → `Arc<dyn Store>`, `Arc<dyn QueueStore>`, ...).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::login_failures::LoginFailures;
use crate::maildrop_lock::{MaildropGuard, MaildropLocks};
use crate::queue::QueueStore;
use crate::space::MinFreeSpace;
use crate::sqlite::check::Repair;
use crate::{SieveMemory, SieveScripts, SqliteStore, Store, StoreError, StoreResult};

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// One SQLite database in the data directory (the default).
    Sqlite,
    /// A PostgreSQL database, which several nodes may share.
    Postgres,
}

impl BackendKind {
    /// The word of `[store] backend`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every store trait, and what the server and the CLI ask of a store
/// beyond them.
#[async_trait]
pub trait Backend:
    Store
    + QueueStore
    + SieveScripts
    + SieveMemory
    + crate::PluginKv
    + crate::MtaStsCache
    + MaildropLocks
{
    /// Which engine this is.
    fn kind(&self) -> BackendKind;

    /// Where the data is, for messages (`store ok: ...`): the database
    /// file, or the PostgreSQL host and database (never a password).
    fn location(&self) -> String;

    /// `Ok` when the store accepts a write now (`/healthz/ready`); the
    /// error says why not.
    async fn probe_write(&self) -> StoreResult<()>;

    /// Sets `[limits] min_free_space`: below it new mail is refused. Only
    /// a store on the local disk has a floor; others ignore it (a
    /// database server watches its own disk).
    fn set_min_free_space(&self, min: MinFreeSpace) {
        let _ = min;
    }

    /// From now on, changes this handle commits are also announced to the
    /// other processes on the same store (the admin CLI writing under a
    /// running server). A backend whose every change reaches every node
    /// anyway needs nothing here.
    fn announce_to_other_processes(&self) {}

    /// `mailgate store check --repair`: repairs what can be repaired
    /// safely and returns what was (`dry_run`: would be) done.
    async fn repair(&self, dry_run: bool) -> StoreResult<Vec<Repair>> {
        let _ = dry_run;
        Err(StoreError::Invalid(format!(
            "store check --repair is not supported by the {} backend yet",
            self.kind()
        )))
    }

    /// The failed-login counts the nodes of a shared store share
    /// ([`crate::login_failures`]); `None` for a store one server uses
    /// alone, whose failure limiter counts in memory.
    fn login_failures(self: Arc<Self>) -> Option<Arc<dyn LoginFailures>> {
        None
    }
}

/// SQLite: one server per data directory, so the locks of the process are
/// all there are ([`crate::maildrop_lock::InProcessLocks`]).
#[async_trait]
impl MaildropLocks for SqliteStore {
    async fn lock_maildrop(&self, account: crate::AccountId) -> StoreResult<Option<MaildropGuard>> {
        Ok(self.maildrop_locks().try_lock(account))
    }

    fn maildrop_locked_here(&self, account: crate::AccountId) -> bool {
        self.maildrop_locks().is_locked(account)
    }
}

#[async_trait]
impl Backend for SqliteStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    fn location(&self) -> String {
        self.path().display().to_string()
    }

    async fn probe_write(&self) -> StoreResult<()> {
        SqliteStore::probe_write(self).await
    }

    fn set_min_free_space(&self, min: MinFreeSpace) {
        SqliteStore::set_min_free_space(self, min)
    }

    fn announce_to_other_processes(&self) {
        SqliteStore::announce_to_other_processes(self)
    }

    async fn repair(&self, dry_run: bool) -> StoreResult<Vec<Repair>> {
        SqliteStore::repair(self, dry_run).await
    }
}

/// Whether `url` is a connection string the PostgreSQL client takes
/// (`postgres://user@host:port/database`, or libpq's `key=value` form).
pub fn is_postgres_url(url: &str) -> bool {
    url.parse::<tokio_postgres::Config>().is_ok()
}

/// `url` with the password of its user-info part (`user:password@`)
/// replaced by `<hidden>`: what logs and messages may show.
pub fn url_without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:<hidden>@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Which store to open.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// SQLite in this data directory.
    Sqlite {
        /// The data directory (`data_dir`).
        data_dir: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres(crate::postgres::PgConfig),
}

/// Opens (creating or migrating the schema if needed) the store `config`
/// names.
pub async fn open_backend(config: &BackendConfig) -> StoreResult<Arc<dyn Backend>> {
    match config {
        BackendConfig::Sqlite { data_dir } => {
            let store: Arc<dyn Backend> = SqliteStore::open(data_dir)?;
            Ok(store)
        }
        BackendConfig::Postgres(pg) => {
            let store: Arc<dyn Backend> = crate::postgres::PgStore::connect(pg).await?;
            Ok(store)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_hidden() {
        assert_eq!(
            url_without_password("postgres://mail:s3cr@t@db.example:5432/mail"),
            "postgres://mail:<hidden>@db.example:5432/mail"
        );
        assert_eq!(
            url_without_password("postgres://mail@db.example/mail"),
            "postgres://mail@db.example/mail"
        );
        assert_eq!(
            url_without_password("postgresql://db.example/mail?sslmode=require"),
            "postgresql://db.example/mail?sslmode=require"
        );
    }

    #[test]
    fn postgres_urls() {
        assert!(is_postgres_url("postgres://mail@127.0.0.1:5432/mail"));
        assert!(is_postgres_url("host=/run/postgresql dbname=mail"));
        assert!(!is_postgres_url("mysql://mail@db/mail"));
    }

    #[tokio::test]
    async fn sqlite_opens_through_the_backend_handle() {
        let dir = tempfile::tempdir().unwrap();
        let backend = open_backend(&BackendConfig::Sqlite {
            data_dir: dir.path().to_path_buf(),
        })
        .await
        .unwrap();
        assert_eq!(backend.kind(), BackendKind::Sqlite);
        assert!(backend.location().ends_with(crate::sqlite::DB_FILE));
        backend.probe_write().await.unwrap();
        let store: Arc<dyn Store> = backend.clone();
        store.add_domain("example.org").await.unwrap();
        let queue: Arc<dyn QueueStore> = backend.clone();
        assert!(queue.queue_list().await.unwrap().is_empty());
        assert!(backend.repair(true).await.unwrap().is_empty());
    }
}
