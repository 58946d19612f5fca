//! `mailgate healthcheck`: asks `/healthz/ready` of a running server, so
//! that a container's `HEALTHCHECK` needs no curl.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The most of an answer's body that is read (the reasons of a `503`).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why the server is not known to be ready.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing answered on the address.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address asked.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No whole answer within the time limit.
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(String),
    /// The server answered that it is not ready.
    #[error("{status}: {body}")]
    NotReady {
        /// The HTTP status (503).
        status: StatusCode,
        /// The reasons it gave.
        body: String,
    },
}

/// Asks `GET /healthz/ready` at `address`; `Ok` with the body on `200`.
pub async fn check_ready(address: SocketAddr, timeout: Duration) -> Result<String, CheckError> {
    tokio::time::timeout(timeout, ask(address))
        .await
        .map_err(|_| CheckError::Timeout(address, timeout))?
}

async fn ask(address: SocketAddr) -> Result<String, CheckError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| CheckError::Connect { address, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CheckError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let request = Request::get("/healthz/ready")
        .header(hyper::header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CheckError::Http(e.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| CheckError::Http(e.to_string()))?
        .to_bytes();
    driver.abort();
    let body = String::from_utf8_lossy(&body).trim_end().to_string();
    if status == StatusCode::OK {
        Ok(body)
    } else {
        Err(CheckError::NotReady { status, body })
    }
}

/// The address to ask for a configured `[listen] metrics` address: an
/// unspecified one (`0.0.0.0`, `[::]`) is asked on loopback.
pub fn local_address(configured: SocketAddr) -> SocketAddr {
    let mut a = configured;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}
