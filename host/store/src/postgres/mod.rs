//! The shared backend: one PostgreSQL database that several mailgate
//! nodes use at once (`[store] backend = "postgres"`).
//!
//! # Connections
//! [`PgStore`] keeps a pool of connections ([`PgConfig::pool_size`], by
//! default [`DEFAULT_POOL_SIZE`]); every trait call takes one for the
//! length of its transaction. A call waits at most [`POOL_WAIT`] for a
//! free connection and a new connection at most [`CONNECT_TIMEOUT`] to
//! be made; past that it fails with [`StoreError::Unavailable`]
//! (temporary: SMTP answers `451`, IMAP `NO`). The password comes from
//! [`PgConfig::password`] (read from `[store] password_file`), else from
//! the URL.
//!
//! # TLS
//! Every connection (the pool's, the change listener's) is made with the
//! mode of [`PgConfig::tls`] (`[store] tls`, `tls_ca_file`): plain,
//! encrypted, or encrypted with the server's certificate verified; see
//! [`tls`]. A handshake that fails (a certificate that does not verify, a
//! server without TLS) fails the connection like any other error.
//!
//! # Schema
//! [`PgStore::connect`] runs the versioned migrations of [`schema`] before
//! anything else, under an advisory lock, so that when several nodes
//! start at once exactly one migrates.
//!
//! # Consistency across nodes
//! Each change is one transaction. UIDs and MODSEQs come from the
//! mailbox row, updated in that transaction (`UPDATE … RETURNING`), which
//! PostgreSQL's row lock serialises across nodes. Every change to a
//! mailbox also writes a row to the `changes` log in the same transaction,
//! and `NOTIFY`s the other nodes after commit; see [`notify`].
//!
//! # Durability
//! A call returns once PostgreSQL has committed (with the server's
//! `synchronous_commit`, on by default: the WAL is flushed), so callers
//! may acknowledge to the network then, as with SQLite. Deliveries are
//! group-committed: the ones that arrive together share one transaction
//! and one WAL flush, and each caller is answered after that commit
//! ([`writer`]).

mod backend;
pub mod check;
mod directory;
mod imap;
mod kv;
pub mod login_limits;
pub mod maildrop_lock;
mod mailstore;
pub mod notify;
pub mod queue;
pub mod schema;
mod sieve;
mod sieve_memory;
pub mod tls;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::broadcast;

use crate::{StoreError, StoreEvent, StoreResult};

/// The pool size when none is configured.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a call waits for a free connection of the pool.
pub const POOL_WAIT: Duration = Duration::from_secs(10);
/// How long making a new connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many change notifications a slow session may fall behind by before
/// it is told to resynchronise (broadcast lag), as for SQLite.
const EVENT_BACKLOG: usize = 4096;

/// Where the database is and how to reach it.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user[:password]@host[:port]/database` (or the
    /// key=value form libpq accepts).
    pub url: String,
    /// The password, if not in the URL (`[store] password_file`); it
    /// wins over one in the URL.
    pub password: Option<String>,
    /// The most connections this node opens ([`DEFAULT_POOL_SIZE`]).
    pub pool_size: usize,
    /// TLS to the database (`[store] tls`, `tls_ca_file`).
    pub tls: tls::PgTls,
}

impl std::fmt::Debug for PgConfig {
    /// Never prints the password (nor the URL, which may hold one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    /// A configuration for `url` with the default pool size and no
    /// separate password.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            password: None,
            pool_size: DEFAULT_POOL_SIZE,
            tls: tls::PgTls::default(),
        }
    }

    /// Reads the password from a file (its first line, without the line
    /// end), as `[store] password_file` asks.
    pub fn with_password_file(mut self, path: &Path) -> StoreResult<PgConfig> {
        let text = std::fs::read_to_string(path).map_err(StoreError::Io)?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(StoreError::Invalid(format!(
                "the password file {} is empty",
                path.display()
            )));
        }
        self.password = Some(line);
        Ok(self)
    }

    /// The client configuration: the URL parsed, the password and the TLS
    /// mode applied (refused if the URL's `sslmode` contradicts it:
    /// [`tls::PgTls::check`]).
    pub(crate) fn client_config(&self) -> StoreResult<tokio_postgres::Config> {
        let mut pg: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|_| StoreError::Invalid("[store] url is not a PostgreSQL URL".into()))?;
        self.tls.check(&pg)?;
        self.tls.apply(&mut pg);
        if let Some(p) = &self.password {
            pg.password(p.as_bytes());
        }
        pg.connect_timeout(CONNECT_TIMEOUT);
        if pg.get_application_name().is_none() {
            pg.application_name("mailgate");
        }
        Ok(pg)
    }

    /// A pool of at most `size` connections to the database, each made
    /// with [`PgConfig::tls`]; no connection is made yet.
    pub(crate) fn pool(
        &self,
        client_config: &tokio_postgres::Config,
        connector: &tls::Connector,
        size: usize,
    ) -> StoreResult<Pool> {
        let manager = Manager::from_config(
            client_config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("connection pool: {e}")))
    }

    /// `e`, a failure to connect, with the TLS mode named and the
    /// handshake's reason spelled out when TLS is on (a certificate that
    /// does not verify reads "TLS to the database ([store] tls =
    /// "verify-full") failed: error performing TLS handshake: invalid peer
    /// certificate: UnknownIssuer").
    pub(crate) fn connect_error(&self, e: deadpool_postgres::PoolError) -> StoreError {
        let mode = self.tls.mode;
        if mode != tls::TlsMode::Disable {
            if let deadpool_postgres::PoolError::Backend(pg) = &e {
                if pg.code().is_none() {
                    let mut why = pg.to_string();
                    let mut source = std::error::Error::source(pg);
                    while let Some(s) = source {
                        why.push_str(": ");
                        why.push_str(&s.to_string());
                        source = s.source();
                    }
                    if why.contains("TLS") {
                        return StoreError::Unavailable(format!(
                            "TLS to the database ([store] tls = \"{mode}\") failed: {why}"
                        ));
                    }
                }
            }
        }
        e.into()
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    /// For the listener's own connection ([`notify`]).
    client_config: tokio_postgres::Config,
    /// Its TLS ([`tls`]), as the pool's.
    connector: tls::Connector,
    events: broadcast::Sender<StoreEvent>,
    /// Names this node's rows in the change log ([`notify`]).
    origin: String,
    /// The listener task, stopped when the store is dropped.
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The group commit of deliveries ([`writer`]); its task ends with
    /// the store.
    writer: writer::Writer,
    /// The POP3 maildrop locks of this node ([`maildrop_lock`]).
    maildrop_locks: maildrop_lock::PgMaildropLocks,
    /// When this node last counted the failed-login rows ([`login_limits`]).
    login_cap: login_limits::CapCheck,
}

impl PgStore {
    /// Connects to the database, migrates its schema (once across all
    /// nodes: [`schema::migrate`]) and starts listening for other nodes'
    /// changes ([`notify`]). Must run inside a tokio runtime.
    pub async fn connect(config: &PgConfig) -> StoreResult<Arc<PgStore>> {
        let client_config = config.client_config()?;
        let connector = config.tls.connector()?;
        let pool = config.pool(&client_config, &connector, config.pool_size)?;
        {
            let mut client = pool.get().await.map_err(|e| config.connect_error(e))?;
            let client: &mut tokio_postgres::Client = &mut client;
            schema::migrate(client).await?;
        }
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let origin = notify::origin();
        let writer = writer::Writer::start(pool.clone(), origin.clone(), events.clone());
        let maildrop_locks = maildrop_lock::PgMaildropLocks::new(
            client_config.clone(),
            connector.clone(),
            &format!("mailgate-pop3-locks {origin}"),
        );
        let store = Arc::new(PgStore {
            pool,
            client_config,
            connector,
            events,
            origin,
            listener: std::sync::Mutex::new(None),
            writer,
            maildrop_locks,
            login_cap: login_limits::CapCheck::default(),
        });
        store.start_listener().await?;
        Ok(store)
    }

    /// The `application_name` of this node's listener connection (what
    /// `pg_stat_activity` shows for it).
    pub fn listener_application_name(&self) -> String {
        let mut name = format!("mailgate-listener {}", self.origin);
        name.truncate(63);
        name
    }

    /// Starts the listener of other nodes' changes ([`notify`]), reading
    /// from now on.
    async fn start_listener(&self) -> StoreResult<()> {
        let cursor = {
            let c = self.client().await?;
            notify::start_cursor(&c).await?
        };
        let mut config = self.client_config.clone();
        config.application_name(self.listener_application_name());
        let task = tokio::spawn(notify::run_listener(
            config,
            self.connector.clone(),
            self.origin.clone(),
            self.events.clone(),
            cursor,
        ));
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    /// Ends a write transaction: logs `events` for the other nodes (and
    /// wakes them at commit), commits, then announces the events to this
    /// node's sessions.
    pub(crate) async fn commit(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        events: Vec<StoreEvent>,
    ) -> StoreResult<()> {
        notify::record(&tx, &self.origin, &events).await?;
        tx.commit().await?;
        for e in events {
            let _ = self.events.send(e);
        }
        Ok(())
    }

    /// A connection of the pool.
    pub(crate) async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Whether `e` is a unique-constraint violation (SQLSTATE 23505).
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Lower-cases an address or domain for storage and lookup (as SQLite).
pub(crate) fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}
