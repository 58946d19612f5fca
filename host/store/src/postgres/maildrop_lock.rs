//! POP3 maildrop locks across nodes: PostgreSQL session-level advisory
//! locks, all of one node's on one connection of their own.
//!
//! # How
//! The lock of account `id` is the advisory lock
//! `(`[`LOCK_CLASS`]`, id)` (the two-key form, so it never meets the
//! one-key lock of the migrations), taken with `pg_try_advisory_lock`
//! and given back with `pg_advisory_unlock` when the session's
//! [`MaildropGuard`] is dropped. A node keeps ONE connection for all its
//! locks, outside the pool, opened at the first POP3 login and kept
//! open; a task owns it and takes and gives back locks one request at a
//! time, so a lock and the release of an older one are never reordered.
//! Advisory locks are re-entrant for their connection, so the task also
//! keeps the set of accounts locked by this node and answers "in use"
//! from it without asking the database.
//!
//! The connection is made like the pool's (the same URL, password and
//! `[store] tls`).
//!
//! # Bounds
//! - Connections: one per node, whatever the number of POP3 sessions,
//!   and none from the pool ([`crate::postgres::PgConfig::pool_size`] is
//!   untouched). One connection per lock would cost the database a
//!   backend process per POP3 session; the pool's connections would be
//!   used up by idle POP3 sessions.
//! - Locks: each held lock takes one entry of PostgreSQL's shared lock
//!   table, which has room for `max_locks_per_transaction ×
//!   (max_connections + max_prepared_transactions)` entries (6,400 with
//!   the defaults) for all locks of the server. When it is full
//!   `pg_try_advisory_lock` fails ("out of shared memory"): that login
//!   gets `-ERR [SYS/TEMP]`, the others are not affected.
//! - Requests wait for the task in an unbounded channel: at most one per
//!   POP3 login in progress and one per session ending, both bounded by
//!   the POP3 connection limits.
//! - Each request is answered within [`CONNECT_TIMEOUT`] (connecting) and
//!   [`QUERY_TIMEOUT`] (the query); past that the login fails with
//!   `-ERR [SYS/TEMP]` and the connection is dropped (see below).
//!
//! # When the connection goes
//! - The node dies: PostgreSQL ends its connections, and every lock they
//!   held is released. A process that is killed has its socket closed by
//!   its kernel at once; for a machine that vanishes the connection asks
//!   the server to probe it ([`KEEPALIVE_IDLE`], then every
//!   [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_COUNT`] times: about a minute).
//! - The connection breaks while the node runs (a restarted database, a
//!   network cut, a query past [`QUERY_TIMEOUT`]): every lock of the node
//!   is gone on the database. The sessions that held them keep running,
//!   but their guards say so ([`MaildropGuard::is_held`]); before it
//!   removes anything at QUIT, POP3 asks PostgreSQL whether the lock
//!   still holds ([`MaildropGuard::verify`]: `pg_locks` on the lock
//!   connection, so a break not yet noticed counts too) and removes
//!   nothing if not. Their accounts stay "in use" on this node until they
//!   end. The next login opens a new connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::CONNECT_TIMEOUT;
use crate::maildrop_lock::{LockHandle, MaildropGuard};
use crate::{AccountId, StoreError, StoreResult};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

/// The first key of every maildrop lock ("pop3" in ASCII).
pub const LOCK_CLASS: i32 = 0x706f_7033;
/// How long a lock query may take before the connection is given up.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time before the server probes the lock connection.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between the server's probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the server ends the connection.
pub const KEEPALIVE_COUNT: u32 = 3;

/// The second key of `account`'s lock. Ids past 2^32 wrap: two accounts
/// then share a lock (one waits for the other), never worse.
pub fn lock_key(account: AccountId) -> i32 {
    account as u32 as i32
}

enum Request {
    /// Take the lock; on success set `held` and keep it as the lock's
    /// flag. The guard exists before the request is sent, so a login
    /// abandoned while it waits still gives the lock back (its `Unlock`
    /// comes after this request on the channel).
    Lock {
        account: AccountId,
        held: Arc<AtomicBool>,
        reply: oneshot::Sender<StoreResult<bool>>,
    },
    Unlock {
        account: AccountId,
        held: Arc<AtomicBool>,
        /// Told once the lock is given back (or was not held).
        done: oneshot::Sender<()>,
    },
    Verify {
        account: AccountId,
        held: Arc<AtomicBool>,
        reply: oneshot::Sender<bool>,
    },
}

/// A lock this node holds (or asked for): what its guard gives back and
/// checks.
struct PgHandle {
    account: AccountId,
    held: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Request>,
}

impl LockHandle for PgHandle {
    fn release(self: Box<Self>) -> Option<oneshot::Receiver<()>> {
        let (done, given_back) = oneshot::channel();
        let _ = self.tx.send(Request::Unlock {
            account: self.account,
            held: Arc::clone(&self.held),
            done,
        });
        Some(given_back)
    }

    fn verify(&self) -> Option<oneshot::Receiver<bool>> {
        let (reply, answer) = oneshot::channel();
        let _ = self.tx.send(Request::Verify {
            account: self.account,
            held: Arc::clone(&self.held),
            reply,
        });
        Some(answer)
    }
}

/// A node's maildrop locks on PostgreSQL.
pub struct PgMaildropLocks {
    /// Starts the task (with the connection settings and TLS given to
    /// [`PgMaildropLocks::new`]).
    start: Start,
    /// The task's mailbox; the task starts at the first lock.
    task: OnceLock<mpsc::UnboundedSender<Request>>,
    /// Accounts locked by this node, kept by the task, for
    /// [`PgMaildropLocks::is_locked`].
    here: Here,
}

/// Starts the lock task.
type Start = Box<dyn Fn(Here, mpsc::UnboundedReceiver<Request>) + Send + Sync>;

impl PgMaildropLocks {
    /// Locks over connections made with `config` and `connector` (the
    /// pool's TLS; named `application_name` in `pg_stat_activity`).
    pub(crate) fn new<T>(
        mut config: tokio_postgres::Config,
        connector: T,
        application_name: &str,
    ) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let mut name = application_name.to_string();
        name.truncate(63);
        config.application_name(&name);
        config.keepalives(true);
        config.keepalives_idle(KEEPALIVE_IDLE);
        config.keepalives_interval(KEEPALIVE_INTERVAL);
        config.keepalives_retries(KEEPALIVE_COUNT);
        let start: Start = Box::new(move |here, rx| {
            tokio::spawn(run(config.clone(), connector.clone(), here, rx));
        });
        PgMaildropLocks {
            start,
            task: OnceLock::new(),
            here: Arc::default(),
        }
    }

    fn sender(&self) -> &mpsc::UnboundedSender<Request> {
        self.task.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            (self.start)(Arc::clone(&self.here), rx);
            tx
        })
    }

    /// Takes `account`'s lock for this node, or `None` if a session here
    /// or on another node holds it.
    pub(crate) async fn lock(&self, account: AccountId) -> StoreResult<Option<MaildropGuard>> {
        let (reply, answer) = oneshot::channel();
        let tx = self.sender().clone();
        let held = Arc::new(AtomicBool::new(false));
        let guard = MaildropGuard::new(
            account,
            Arc::clone(&held),
            PgHandle {
                account,
                held: Arc::clone(&held),
                tx: tx.clone(),
            },
        );
        tx.send(Request::Lock {
            account,
            held,
            reply,
        })
        .map_err(|_| StoreError::Unavailable("the maildrop lock task has stopped".into()))?;
        let granted = answer
            .await
            .map_err(|_| StoreError::Unavailable("the maildrop lock task has stopped".into()))??;
        Ok(granted.then_some(guard))
    }

    /// Whether a session of this node holds `account`'s lock.
    pub(crate) fn is_locked(&self, account: AccountId) -> bool {
        self.here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&account)
    }
}

/// The accounts this node holds locks of.
type Here = Arc<std::sync::Mutex<std::collections::HashSet<AccountId>>>;

/// The lock connection and the signal of its end.
struct Live {
    client: tokio_postgres::Client,
    closed: oneshot::Receiver<()>,
}

/// The task: owns the connection and the set of accounts locked by this
/// node; ends when every sender (the store and the guards) is gone,
/// closing the connection.
async fn run<T>(
    config: tokio_postgres::Config,
    connector: T,
    here: Here,
    mut rx: mpsc::UnboundedReceiver<Request>,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mut live: Option<Live> = None;
    let mut held: HashMap<AccountId, Arc<AtomicBool>> = HashMap::new();
    loop {
        let event = match live.as_mut() {
            Some(l) => tokio::select! {
                r = rx.recv() => Some(r),
                _ = &mut l.closed => None,
            },
            None => Some(rx.recv().await),
        };
        let Some(request) = event else {
            tracing::warn!(
                locks = held.len(),
                "store: the POP3 lock connection to PostgreSQL closed; the locks it held are gone"
            );
            lose(&mut live, &held);
            continue;
        };
        let Some(request) = request else { break };
        match request {
            Request::Lock {
                account,
                held: flag,
                reply,
            } => {
                let answer = lock(&config, &connector, &mut live, &mut held, account, flag).await;
                if matches!(answer, Ok(true)) {
                    set_here(&here, account, true);
                }
                let _ = reply.send(answer);
            }
            Request::Unlock {
                account,
                held: flag,
                done,
            } => {
                // Only the guard of the current lock releases it.
                if held.get(&account).is_some_and(|h| Arc::ptr_eq(h, &flag)) {
                    held.remove(&account);
                    set_here(&here, account, false);
                    unlock(&mut live, &held, account, &flag).await;
                }
                let _ = done.send(());
            }
            Request::Verify {
                account,
                held: flag,
                reply,
            } => {
                let current = held.get(&account).is_some_and(|h| Arc::ptr_eq(h, &flag));
                let holds = current && verify(&mut live, &held, account, &flag).await;
                let _ = reply.send(holds);
            }
        }
    }
}

fn set_here(here: &Here, account: AccountId, locked: bool) {
    let mut here = here.lock().unwrap_or_else(|p| p.into_inner());
    if locked {
        here.insert(account);
    } else {
        here.remove(&account);
    }
}

/// Every lock of the node is gone with its connection.
fn lose(live: &mut Option<Live>, held: &HashMap<AccountId, Arc<AtomicBool>>) {
    for h in held.values() {
        h.store(false, Ordering::SeqCst);
    }
    *live = None;
}

async fn lock<T>(
    config: &tokio_postgres::Config,
    connector: &T,
    live: &mut Option<Live>,
    held: &mut HashMap<AccountId, Arc<AtomicBool>>,
    account: AccountId,
    flag: Arc<AtomicBool>,
) -> StoreResult<bool>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    if held.contains_key(&account) {
        return Ok(false);
    }
    if live.as_ref().is_none_or(|l| l.client.is_closed()) {
        lose(live, held);
        *live = Some(connect(config, connector).await?);
    }
    let Some(l) = live.as_ref() else {
        return Err(StoreError::Unavailable("no lock connection".into()));
    };
    let key = lock_key(account);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&LOCK_CLASS, &key];
    let query = l
        .client
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &params);
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(row)) => {
            let got: bool = row.get(0);
            if got {
                flag.store(true, Ordering::SeqCst);
                held.insert(account, flag);
            }
            Ok(got)
        }
        Ok(Err(e)) => {
            if l.client.is_closed() {
                lose(live, held);
            }
            Err(e.into())
        }
        Err(_) => {
            tracing::warn!("store: a POP3 lock query took longer than {QUERY_TIMEOUT:?}; dropping the lock connection");
            lose(live, held);
            Err(StoreError::Unavailable(
                "the maildrop lock query timed out".into(),
            ))
        }
    }
}

async fn unlock(
    live: &mut Option<Live>,
    held: &HashMap<AccountId, Arc<AtomicBool>>,
    account: AccountId,
    flag: &AtomicBool,
) {
    // A lock lost with an older connection is not on this one.
    if !flag.swap(false, Ordering::SeqCst) {
        return;
    }
    let Some(l) = live.as_ref() else { return };
    let key = lock_key(account);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&LOCK_CLASS, &key];
    let query = l
        .client
        .query_one("SELECT pg_advisory_unlock($1, $2)", &params);
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store: a POP3 lock could not be released; dropping the lock connection");
            lose(live, held);
        }
        Err(_) => {
            tracing::warn!("store: releasing a POP3 lock took longer than {QUERY_TIMEOUT:?}; dropping the lock connection");
            lose(live, held);
        }
    }
}

/// Whether the lock connection still holds `account`'s lock (asked of
/// PostgreSQL: a connection that broke a moment ago may not have been
/// noticed yet). A failed query counts as "no", and drops the connection.
async fn verify(
    live: &mut Option<Live>,
    held: &HashMap<AccountId, Arc<AtomicBool>>,
    account: AccountId,
    flag: &AtomicBool,
) -> bool {
    if !flag.load(Ordering::SeqCst) {
        return false;
    }
    let Some(l) = live.as_ref() else {
        return false;
    };
    let key = lock_key(account);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&LOCK_CLASS, &key];
    let query = l.client.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
           AND pid = pg_backend_pid() AND granted
           AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2)",
        &params,
    );
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(row)) => {
            let holds: bool = row.get(0);
            if !holds {
                flag.store(false, Ordering::SeqCst);
            }
            holds
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store: a POP3 lock could not be checked; dropping the lock connection");
            lose(live, held);
            false
        }
        Err(_) => {
            lose(live, held);
            false
        }
    }
}

/// Opens the lock connection and asks the server to probe it (see the
/// module doc: how soon a vanished node's locks are released).
async fn connect<T>(config: &tokio_postgres::Config, connector: &T) -> StoreResult<Live>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let made = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(connector.clone()))
        .await
        .map_err(|_| {
            StoreError::Unavailable("connecting for the maildrop locks timed out".into())
        })?;
    let (client, connection) = made?;
    let (done, closed) = oneshot::channel();
    tokio::spawn(async move {
        let _ = connection.await;
        let _ = done.send(());
    });
    let settings = format!(
        "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; SET tcp_keepalives_count = {}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_COUNT
    );
    tokio::time::timeout(QUERY_TIMEOUT, client.batch_execute(&settings))
        .await
        .map_err(|_| StoreError::Unavailable("the maildrop lock connection timed out".into()))??;
    tracing::debug!("store: POP3 lock connection open");
    Ok(Live { client, closed })
}

#[async_trait::async_trait]
impl crate::maildrop_lock::MaildropLocks for super::PgStore {
    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<Option<MaildropGuard>> {
        self.maildrop_locks.lock(account).await
    }

    fn maildrop_locked_here(&self, account: AccountId) -> bool {
        self.maildrop_locks.is_locked(account)
    }
}
