//! The monitoring endpoint (`[listen] metrics`): HTTP/1.1 with hyper.
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | every metric in the Prometheus text format |
//! | `/healthz/live` | `200 live` while the process runs |
//! | `/healthz/ready` | `200 ready`, or `503` with the reasons, one a line |
//!
//! Only `GET` and `HEAD`; anything else is `405`, another path `404`.
//!
//! # Bounds a client can drive
//! - [`MAX_CONNECTIONS`] connections at once; one more is closed at once.
//! - A request's head must arrive within [`HEADER_TIMEOUT`] and fit in
//!   [`MAX_HEAD_BYTES`]; a connection is closed after
//!   [`MAX_REQUESTS_PER_CONNECTION`] requests or when idle for
//!   [`HEADER_TIMEOUT`].
//! - A request body is never read.
//! - A readiness check that takes longer than [`READY_TIMEOUT`] (a store
//!   stuck on a full or hung disk) answers `503`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Time for a request's head to arrive (and for an idle keep-alive
/// connection before it is closed).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers), in bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Requests on one connection before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 100;
/// Longest a readiness check may take before it counts as failed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint asks of the server it watches.
#[async_trait::async_trait]
pub trait Probe: Send + Sync + 'static {
    /// `Ok` when the server can do its work; otherwise every reason it
    /// cannot, each one line for an administrator.
    async fn ready(&self) -> Result<(), Vec<String>>;
    /// Called before each scrape of `/metrics`: sets the gauges that are
    /// read from the store (the queue).
    async fn refresh(&self);
}

/// Serves `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    probe: Arc<dyn Probe>,
    mut shutdown: watch::Receiver<bool>,
) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = places.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many connections; closed");
            continue;
        };
        let probe = probe.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let requests = Arc::new(AtomicUsize::new(0));
            let service = hyper::service::service_fn(move |req| {
                let probe = probe.clone();
                let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    let mut response = answer(&req, probe.as_ref()).await;
                    if n >= MAX_REQUESTS_PER_CONNECTION {
                        response.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "metrics: connection ended");
                    }
                }
                _ = stop.changed() => {}
            }
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

async fn answer(req: &Request<Incoming>, probe: &dyn Probe) -> Answer {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET and HEAD\n".into(),
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    // hyper sends no body in answer to HEAD.
    match req.uri().path() {
        "/metrics" => {
            probe.refresh().await;
            text(
                StatusCode::OK,
                crate::registry::CONTENT_TYPE,
                crate::encode(),
            )
        }
        "/healthz/live" => text(StatusCode::OK, PLAIN, "live\n".into()),
        "/healthz/ready" => match tokio::time::timeout(READY_TIMEOUT, probe.ready()).await {
            Ok(Ok(())) => text(StatusCode::OK, PLAIN, "ready\n".into()),
            Ok(Err(reasons)) => not_ready(reasons),
            Err(_) => not_ready(vec![format!(
                "the readiness check took longer than {}s (the store may be stuck)",
                READY_TIMEOUT.as_secs()
            )]),
        },
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
    }
}

fn not_ready(reasons: Vec<String>) -> Answer {
    let mut body = String::from("not ready\n");
    for r in reasons {
        body.push_str(&r);
        body.push('\n');
    }
    text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, body)
}
