//! `mailgate serve`: open the store, bind the listeners, run sessions,
//! stop cleanly on SIGTERM.
//!
//! # Shutdown
//! On SIGTERM (or SIGINT) the listeners close at once, so no new
//! connection is accepted. Every session is told through a watch channel:
//! an idle session says goodbye (`421 4.3.2` in SMTP) and closes; a
//! session in the middle of a transaction finishes it first. The server
//! waits for the sessions up to `shutdown_timeout` seconds, then exits.
//! Nothing acknowledged can be lost either way: a `250` is only said after
//! the store's commit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::Authenticator;
use mailgate_delivery::LocalDelivery;
use mailgate_pop3::Pop3Context;
use mailgate_smtp::{SmtpContext, SmtpLimits};
use mailgate_store::{SqliteStore, Store};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::config::Config;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory is in use by another `mailgate serve`.
    #[error("the data directory {0} is in use by another mailgate server")]
    Locked(String),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] mailgate_store::StoreError),
    /// A listener could not be bound.
    #[error("cannot listen for {protocol} on {address}: {source}")]
    Bind {
        /// Which listener.
        protocol: &'static str,
        /// The configured address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// Anything else from the operating system.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Counts the sessions that are running, so shutdown can wait for them.
#[derive(Default)]
struct SessionTracker {
    active: AtomicUsize,
    idle: Notify,
}

struct SessionGuard(Arc<SessionTracker>);

impl SessionTracker {
    fn enter(self: &Arc<Self>) -> SessionGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The shared parts every session is built from.
pub struct Services {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Local delivery.
    pub delivery: Arc<LocalDelivery>,
    /// Authentication for all protocols.
    pub auth: Arc<Authenticator>,
}

/// Takes the data directory's lock file so that two servers never share
/// one store. Held for the life of the returned file.
fn lock_data_dir(config: &Config) -> Result<std::fs::File, ServerError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let path = config.data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ServerError::Locked(config.data_dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// A bound listener and the protocol it serves.
struct Bound {
    protocol: &'static str,
    listener: TcpListener,
}

async fn bind(
    protocol: &'static str,
    address: &Option<String>,
) -> Result<Option<Bound>, ServerError> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address.as_str())
        .await
        .map_err(|source| ServerError::Bind {
            protocol,
            address: address.clone(),
            source,
        })?;
    Ok(Some(Bound { protocol, listener }))
}

/// Runs the server until SIGTERM or SIGINT. `on_ready` is called with the
/// bound addresses once every listener is open.
pub async fn run(
    config: Config,
    on_ready: impl FnOnce(&[(&'static str, SocketAddr)]),
) -> Result<(), ServerError> {
    let mut signals = StopSignals::install()?;
    let _lock = lock_data_dir(&config)?;
    let store: Arc<SqliteStore> = SqliteStore::open(&config.data_dir)?;
    let store: Arc<dyn Store> = store;
    let services = Arc::new(Services {
        store: store.clone(),
        delivery: Arc::new(LocalDelivery::new(store.clone(), &config.domains)),
        auth: Arc::new(Authenticator::new(store.clone(), config.auth.limiter())),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let tracker = Arc::new(SessionTracker::default());

    let mut bound = Vec::new();
    for (protocol, address) in [("smtp", &config.listen.smtp), ("pop3", &config.listen.pop3)] {
        if let Some(b) = bind(protocol, address).await? {
            bound.push(b);
        }
    }
    let addresses: Vec<(&'static str, SocketAddr)> = bound
        .iter()
        .map(|b| Ok((b.protocol, b.listener.local_addr()?)))
        .collect::<Result<_, std::io::Error>>()?;
    for (protocol, address) in &addresses {
        tracing::info!(protocol, %address, "listening");
    }

    let smtp_ctx = Arc::new(smtp_context(&config, &services, shutdown_rx.clone()));
    let pop3_ctx = Arc::new(pop3_context(&config, &services, shutdown_rx.clone()));
    let mut accept_loops = Vec::new();
    for b in bound {
        let tracker = tracker.clone();
        let shutdown = shutdown_rx.clone();
        let smtp_ctx = smtp_ctx.clone();
        let pop3_ctx = pop3_ctx.clone();
        let protocol = b.protocol;
        accept_loops.push(tokio::spawn(accept_loop(b.listener, protocol, tracker, shutdown, move |stream, peer| {
            let smtp_ctx = smtp_ctx.clone();
            let pop3_ctx = pop3_ctx.clone();
            async move {
                let result = match protocol {
                    "smtp" => mailgate_smtp::serve_connection(stream, peer, smtp_ctx).await,
                    _ => {
                        mailgate_pop3::serve_connection(stream, peer, pop3_ctx).await;
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(protocol, %peer, error = %e, "connection ended with an i/o error");
                }
            }
        })));
    }
    on_ready(&addresses);

    signals.wait().await;
    tracing::info!(
        sessions = tracker.active.load(Ordering::SeqCst),
        "shutting down: no new connections"
    );
    let _ = shutdown_tx.send(true);
    for l in accept_loops {
        let _ = l.await;
    }
    let grace = Duration::from_secs(config.shutdown_timeout);
    if tokio::time::timeout(grace, tracker.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = tracker.active.load(Ordering::SeqCst),
            "shutdown: sessions still open after {}s; closing them",
            grace.as_secs()
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The SMTP settings from the configuration.
fn smtp_context(
    config: &Config,
    services: &Services,
    shutdown: watch::Receiver<bool>,
) -> SmtpContext {
    let l = &config.limits;
    let limits = SmtpLimits {
        max_message_size: l.max_message_size,
        max_recipients: l.max_recipients,
        max_command_line: l.max_command_line,
        max_data_line: l.max_line_length,
        idle_timeout: config.idle_timeout(),
        max_errors: l.max_errors,
    };
    let mut ctx = SmtpContext::new(
        config.hostname.clone(),
        services.delivery.clone(),
        limits,
        shutdown,
    );
    if let Some(first) = config.domains.first() {
        ctx.postmaster_domain = first.clone();
    }
    ctx
}

/// The POP3 settings from the configuration. RFC 1939 §3 asks for an
/// autologout timer of at least ten minutes, so POP3 never closes an idle
/// session sooner than that, whatever `idle_timeout` says.
fn pop3_context(
    config: &Config,
    services: &Services,
    shutdown: watch::Receiver<bool>,
) -> Pop3Context {
    let mut ctx = Pop3Context::new(
        config.hostname.clone(),
        services.store.clone(),
        services.auth.clone(),
        shutdown,
    );
    ctx.idle_timeout = config.idle_timeout().max(Duration::from_secs(600));
    ctx
}

/// Accepts connections until shutdown, one task per session.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    protocol: &'static str,
    tracker: Arc<SessionTracker>,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let guard = tracker.enter();
                    let session = serve(stream, peer);
                    tokio::spawn(async move {
                        session.await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment
                    // rather than spin, and keep serving.
                    tracing::warn!(protocol, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment this is created.
/// Created before the listeners are announced, so that a SIGTERM sent as
/// soon as `mailgate: ready` is printed already gets the clean shutdown
/// instead of the default action (which kills the process).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, ServerError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT. SIGHUP is logged (so it does not kill
    /// the server); later versions reload certificates and plugins on it.
    async fn wait(&mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM received"); return }
                _ = self.int.recv() => { tracing::info!("SIGINT received"); return }
                _ = self.hup.recv() => tracing::info!("SIGHUP received: nothing to reload in this version"),
            }
        }
    }
}
