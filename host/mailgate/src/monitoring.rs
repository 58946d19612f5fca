//! The server's side of monitoring (`[listen] metrics`; the registry and
//! the endpoint are in host/metrics): what `/healthz/ready` and the queue
//! gauges ask of the running server, the accept loops' counts, and
//! `mailgate healthcheck`.
//!
//! Ready means: the store accepts a write
//! ([`mailgate_store::Backend::probe_write`]), every listener's
//! accept loop runs, and the queue runner runs. Each long-lived task is
//! watched through an [`Alive`] flag that turns false when the task ends,
//! whatever way it ends (return, panic, or the runtime dropping it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mailgate_metrics::http::Probe;
use mailgate_metrics::QueueSnapshot;
use mailgate_store::queue::QueueStore;
use mailgate_store::Backend;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Whether a watched task still runs.
#[derive(Clone, Debug)]
pub struct Alive(Arc<AtomicBool>);

/// Turns its flag false when dropped.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Alive {
    /// `fut`, watched: the flag is true until it ends.
    pub fn watch<F: Future>(fut: F) -> (Alive, impl Future<Output = F::Output>) {
        let flag = Arc::new(AtomicBool::new(true));
        let guard = AliveGuard(flag.clone());
        let watched = async move {
            let _guard = guard;
            fut.await
        };
        (Alive(flag), watched)
    }

    /// Whether the task runs.
    pub fn is_alive(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The server's answers to the monitoring endpoint.
pub struct ServerProbe {
    /// The store, asked for a write.
    pub store: Arc<dyn Backend>,
    /// The outbound queue, read for the queue gauges.
    pub queue: Arc<dyn QueueStore>,
    /// Each listener's accept loop.
    pub listeners: Vec<(&'static str, Alive)>,
    /// The queue runner (the relay).
    pub relay: Option<Alive>,
}

#[async_trait::async_trait]
impl Probe for ServerProbe {
    async fn ready(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if let Err(e) = self.store.probe_write().await {
            reasons.push(format!("the store refuses writes: {e}"));
        }
        for (name, alive) in &self.listeners {
            if !alive.is_alive() {
                reasons.push(format!("the {name} listener is not accepting connections"));
            }
        }
        match &self.relay {
            Some(r) if r.is_alive() => {}
            _ => reasons.push("the queue runner is not running".into()),
        }
        mailgate_metrics::ready(reasons.is_empty());
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    async fn refresh(&self) {
        // The gauge of readiness is refreshed with every scrape too.
        let _ = self.ready().await;
        match self.queue.queue_list().await {
            Ok(entries) => {
                let now = chrono::Utc::now().timestamp();
                let mut s = QueueSnapshot::default();
                let mut oldest = None::<i64>;
                for e in &entries {
                    if e.held {
                        s.held += 1;
                    } else if e.attempts == 0 {
                        s.new += 1;
                    } else {
                        s.deferred += 1;
                    }
                    oldest = Some(oldest.map_or(e.created, |o| o.min(e.created)));
                }
                s.oldest_age_seconds = oldest.map_or(0, |o| (now - o).max(0) as u64);
                mailgate_metrics::queue(s);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the queue"),
        }
    }
}

/// A session admitted on the listener `key` (a `[listen]` key): counted
/// as active until the guard is dropped.
pub fn count_session(key: &str) -> Option<mailgate_metrics::SessionGuard> {
    mailgate_metrics::Listener::from_key(key).map(mailgate_metrics::session_started)
}

/// A connection on the listener `key` refused by a connection limit.
pub fn count_refusal(key: &str, refused: crate::connections::Refused) {
    use crate::connections::Refused;
    use mailgate_metrics::ConnectionLimit;
    let limit = match refused {
        Refused::Server => ConnectionLimit::MaxConnections,
        Refused::Client => ConnectionLimit::MaxConnectionsPerIp,
    };
    if let Some(l) = mailgate_metrics::Listener::from_key(key) {
        mailgate_metrics::connection_refused(l, limit);
    }
}

/// Binds `[listen] metrics`, if configured.
pub async fn bind(
    address: Option<&str>,
) -> Result<Option<TcpListener>, crate::server::ServerError> {
    let Some(address) = address else {
        return Ok(None);
    };
    TcpListener::bind(address)
        .await
        .map(Some)
        .map_err(|source| crate::server::ServerError::Bind {
            protocol: "metrics",
            address: address.to_string(),
            source,
        })
}

/// Serves the endpoint on `listener` until shutdown.
pub fn serve(listener: TcpListener, probe: ServerProbe, shutdown: watch::Receiver<bool>) {
    tokio::spawn(mailgate_metrics::http::serve(
        listener,
        Arc::new(probe),
        shutdown,
    ));
}

/// `mailgate healthcheck`: asks `/healthz/ready` at `address` (else the
/// configuration's `[listen] metrics`); `Ok` with what the server said.
pub async fn healthcheck(
    configured: Option<&str>,
    address: Option<SocketAddr>,
    timeout: std::time::Duration,
) -> Result<String, String> {
    let address = match (address, configured) {
        (Some(a), _) => a,
        (None, Some(c)) => {
            let a: SocketAddr = c
                .parse()
                .map_err(|_| format!("listen.metrics {c:?} is not an address with a port"))?;
            if a.port() == 0 {
                return Err(format!(
                    "listen.metrics {c:?} has port 0 (the system picks one at start): \
                     pass the address the server printed with --address"
                ));
            }
            mailgate_metrics::client::local_address(a)
        }
        (None, None) => {
            return Err(
                "no [listen] metrics address in the configuration (and no --address): \
                 the server has no health endpoint to ask"
                    .into(),
            )
        }
    };
    mailgate_metrics::client::check_ready(address, timeout)
        .await
        .map_err(|e| format!("not ready: {e}"))
}
