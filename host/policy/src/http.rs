//! Capability `http`: outgoing HTTP/1.1 requests of plugins, to the
//! destinations of their `http_allow` list only.
//!
//! # Rules (each a named constant below, documented in docs/plugins.md)
//! - A request goes out only if its URL matches an `http_allow` entry of
//!   the plugin (scheme, host, port and path prefix, [`AllowRule`]); URLs
//!   with user info, a fragment, or `.`/`..` path segments (plain or
//!   percent-encoded) are refused before anything is matched, so a prefix
//!   cannot be escaped.
//! - Redirects are never followed: a 3xx is the plugin's answer.
//! - Each request has a deadline: the plugin's `timeout-ms` if it gave one,
//!   never later than the end of the hook call.
//! - At most [`MAX_CONCURRENT_PER_PLUGIN`] requests of one plugin are under
//!   way at once; one more fails with `busy` at once.
//! - A response body over [`MAX_RESPONSE_BYTES`] fails with `too-large`.
//! - Connections are reused: after a complete exchange the connection
//!   waits, at most [`IDLE_TIMEOUT`], for the next request to the same
//!   destination ([`MAX_IDLE_PER_DESTINATION`] per destination).
//! - `https` verifies the server's certificate (WebPKI) against the system
//!   roots plus the extra roots the host passes (`[relay] tls_ca_file`).
//! - Each call is logged at DEBUG (plugin, method, destination, status or
//!   error, time) and counted in the plugin's statistics.
//!
//! The body of `send-message` is the message as the host holds it,
//! streamed from its buffer in [`STREAM_CHUNK`]-byte pieces: it never
//! passes through the plugin's memory.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::message::MessageView;

/// Largest response body handed to a plugin.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Requests of one plugin under way at once.
pub const MAX_CONCURRENT_PER_PLUGIN: usize = 8;
/// Idle connections kept per destination (scheme, host, port).
pub const MAX_IDLE_PER_DESTINATION: usize = 4;
/// How long an idle connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Size of the pieces a message body is streamed in.
pub const STREAM_CHUNK: u32 = 64 * 1024;
/// Longest URL accepted.
pub const MAX_URL: usize = 4096;
/// Header fields per request.
pub const MAX_HEADERS: usize = 64;

/// Why a request gave no response (the WIT `http-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not in the plugin's `http_allow`.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// A malformed URL, method or header.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// No connection (refused, DNS, TLS).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Too many requests of the plugin under way.
    #[error("too many requests under way")]
    Busy,
    /// The response body is too large.
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// A protocol error or a closed connection.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// `http://` or `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a request goes, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme.
    pub scheme: Scheme,
    /// The host, lower-case (an IPv6 address without brackets).
    pub host: String,
    /// The port (the scheme's default if the URL has none).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute `http(s)://host[:port]/path?query` URL, refusing
    /// user info, fragments and dot segments.
    pub fn parse(url: &str) -> Result<Target, String> {
        if url.len() > MAX_URL {
            return Err(format!("URL longer than {MAX_URL} bytes"));
        }
        if url.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') {
            return Err("URL with white space, control characters or a backslash".into());
        }
        if url.contains('#') {
            return Err("URL with a fragment".into());
        }
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err("only http:// and https:// URLs".into()),
        };
        let authority = uri.authority().ok_or("URL without a host")?;
        if authority.as_str().contains('@') {
            return Err("URL with user info".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("URL without a host".into());
        }
        let port = authority
            .port_u16()
            .unwrap_or_else(|| scheme.default_port());
        let path = uri.path();
        let path = if path.is_empty() { "/" } else { path };
        for segment in path.split('/') {
            let s = segment.to_ascii_lowercase().replace("%2e", ".");
            if s == "." || s == ".." || s.contains("%2f") || s.contains("%5c") {
                return Err("URL path with dot segments or encoded slashes".into());
            }
        }
        let path_and_query = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        Ok(Target {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// `scheme://host:port` for log lines.
    fn origin(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.scheme.name(), self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme.name(), self.host, self.port)
        }
    }
}

/// One `http_allow` entry: requests to this scheme, host and port whose
/// path starts with the prefix are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    scheme: Scheme,
    host: String,
    port: u16,
    prefix: String,
}

impl AllowRule {
    /// Parses an entry such as `"http://127.0.0.1:11333/"` or
    /// `"https://filter.example.net/api/"` (no query).
    pub fn parse(entry: &str) -> Result<AllowRule, String> {
        let t = Target::parse(entry).map_err(|e| format!("http_allow {entry:?}: {e}"))?;
        if t.path_and_query.contains('?') {
            return Err(format!("http_allow {entry:?}: a query is not a prefix"));
        }
        Ok(AllowRule {
            scheme: t.scheme,
            host: t.host,
            port: t.port,
            prefix: t.path_and_query,
        })
    }

    /// Whether `t` is allowed by this rule. A prefix ending in `/` matches
    /// everything below it; one that does not matches that path exactly
    /// and everything below it (`/api` matches `/api` and `/api/x`, not
    /// `/apix`).
    pub fn allows(&self, t: &Target) -> bool {
        if self.scheme != t.scheme || self.host != t.host || self.port != t.port {
            return false;
        }
        let path = t.path();
        if self.prefix.ends_with('/') {
            path.starts_with(&self.prefix)
        } else {
            path == self.prefix
                || path
                    .strip_prefix(&self.prefix)
                    .is_some_and(|r| r.starts_with('/'))
        }
    }
}

/// Parses a plugin's `http_allow` list.
pub fn parse_allow_list(entries: &[String]) -> Result<Vec<AllowRule>, String> {
    entries.iter().map(|e| AllowRule::parse(e)).collect()
}

/// What a plugin sends.
pub struct Request {
    /// The method, upper-case.
    pub method: String,
    /// The URL.
    pub url: String,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: RequestBody,
    /// The plugin's own deadline, ms (0: none).
    pub timeout_ms: u32,
}

/// A request body.
pub enum RequestBody {
    /// Bytes from the plugin.
    Bytes(Vec<u8>),
    /// A message, streamed from the host's buffer.
    Message(Arc<MessageView>),
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The body as hyper sends it.
enum SendBody {
    Bytes(Option<Bytes>),
    Message {
        view: Arc<MessageView>,
        pos: u64,
        size: u64,
    },
}

impl Body for SendBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(match this {
            SendBody::Bytes(b) => b.take().map(|b| Ok(Frame::data(b))),
            SendBody::Message { view, pos, size } => {
                if *pos >= *size {
                    None
                } else {
                    let chunk = view.raw_range(*pos, STREAM_CHUNK);
                    if chunk.is_empty() {
                        *pos = *size;
                        None
                    } else {
                        *pos += chunk.len() as u64;
                        Some(Ok(Frame::data(Bytes::from(chunk))))
                    }
                }
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SendBody::Bytes(b) => b.is_none(),
            SendBody::Message { pos, size, .. } => pos >= size,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SendBody::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            SendBody::Message { pos, size, .. } => SizeHint::with_exact(size - pos),
        }
    }
}

type Destination = (Scheme, String, u16);

struct Idle {
    sender: SendRequest<SendBody>,
    since: Instant,
}

/// The HTTP client of a runtime: TLS settings and the idle connections,
/// shared by every plugin (connections are per destination, never handed
/// from one plugin to another's destination list: a plugin reaches only
/// what its own list allows).
pub struct HttpClient {
    extra_roots: Option<PathBuf>,
    tls: OnceLock<Result<Arc<ClientConfig>, String>>,
    idle: Mutex<HashMap<Destination, Vec<Idle>>>,
}

impl HttpClient {
    /// A client trusting the system roots plus the PEM certificates of
    /// `extra_roots` (`[relay] tls_ca_file`). Nothing is read until the
    /// first `https` request.
    pub fn new(extra_roots: Option<PathBuf>) -> HttpClient {
        HttpClient {
            extra_roots,
            tls: OnceLock::new(),
            idle: Mutex::new(HashMap::new()),
        }
    }

    fn tls(&self) -> Result<Arc<ClientConfig>, HttpError> {
        self.tls
            .get_or_init(|| tls_config(self.extra_roots.as_deref()).map(Arc::new))
            .clone()
            .map_err(HttpError::Connect)
    }

    /// Sends `request` for `plugin` if `allow` lets it, before `deadline`.
    /// Logs the call at DEBUG.
    pub async fn send(
        &self,
        plugin: &str,
        allow: &[AllowRule],
        request: Request,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        let started = Instant::now();
        let method = request.method.clone();
        let target = Target::parse(&request.url).map_err(HttpError::InvalidRequest);
        let origin = target.as_ref().map_or_else(|_| "-".into(), Target::origin);
        let result = match target {
            Ok(t) if allow.iter().any(|r| r.allows(&t)) => {
                let deadline = match request.timeout_ms {
                    0 => deadline,
                    ms => deadline.min(started + Duration::from_millis(u64::from(ms))),
                };
                match tokio::time::timeout_at(deadline.into(), self.exchange(&t, request)).await {
                    Ok(r) => r,
                    Err(_) => Err(HttpError::Timeout),
                }
            }
            Ok(t) => Err(HttpError::NotAllowed(format!(
                "{} is not in http_allow",
                clean(&format!("{}{}", t.origin(), t.path()))
            ))),
            Err(e) => Err(e),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(r) => tracing::debug!(
                plugin,
                method = %clean(&method),
                destination = %clean(&origin),
                status = r.status,
                elapsed_ms,
                "plugin http request"
            ),
            Err(e) => tracing::debug!(
                plugin,
                method = %clean(&method),
                destination = %clean(&origin),
                elapsed_ms,
                "plugin http request failed: {}",
                clean(&e.to_string())
            ),
        }
        result
    }

    async fn exchange(&self, t: &Target, request: Request) -> Result<Response, HttpError> {
        let method = hyper::Method::from_bytes(request.method.as_bytes())
            .ok()
            .filter(|m| {
                [
                    hyper::Method::GET,
                    hyper::Method::POST,
                    hyper::Method::PUT,
                    hyper::Method::DELETE,
                    hyper::Method::HEAD,
                    hyper::Method::PATCH,
                ]
                .contains(m)
            })
            .ok_or_else(|| HttpError::InvalidRequest("unsupported method".into()))?;
        if request.headers.len() > MAX_HEADERS {
            return Err(HttpError::InvalidRequest(format!(
                "more than {MAX_HEADERS} header fields"
            )));
        }
        let host_header = if t.port == t.scheme.default_port() {
            origin_host(&t.host)
        } else {
            format!("{}:{}", origin_host(&t.host), t.port)
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(t.path_and_query.as_str())
            .header(hyper::header::HOST, host_header);
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding" | "upgrade"
            ) {
                continue;
            }
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::InvalidRequest("bad header name".into()))?;
            let value = hyper::header::HeaderValue::from_str(value)
                .map_err(|_| HttpError::InvalidRequest("bad header value".into()))?;
            builder = builder.header(name, value);
        }
        let body = match request.body {
            RequestBody::Bytes(b) => SendBody::Bytes(Some(Bytes::from(b))),
            RequestBody::Message(view) => {
                let size = view.size();
                SendBody::Message { view, pos: 0, size }
            }
        };
        let req = builder
            .body(body)
            .map_err(|e| HttpError::InvalidRequest(e.to_string()))?;
        let dest: Destination = (t.scheme, t.host.clone(), t.port);
        let mut sender = match self.take_idle(&dest) {
            Some(s) => s,
            None => self.connect(t).await?,
        };
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    HttpError::TooLarge
                } else {
                    HttpError::Protocol(e.to_string())
                }
            })?
            .to_bytes()
            .to_vec();
        self.put_idle(dest, sender);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn take_idle(&self, dest: &Destination) -> Option<SendRequest<SendBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(dest)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < IDLE_TIMEOUT && c.sender.is_ready() {
                return Some(c.sender);
            }
        }
        None
    }

    fn put_idle(&self, dest: Destination, sender: SendRequest<SendBody>) {
        if !sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, l| {
            l.retain(|c| c.since.elapsed() < IDLE_TIMEOUT && !c.sender.is_closed());
            !l.is_empty()
        });
        let list = idle.entry(dest).or_default();
        if list.len() < MAX_IDLE_PER_DESTINATION {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, t: &Target) -> Result<SendRequest<SendBody>, HttpError> {
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| HttpError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match t.scheme {
            Scheme::Http => handshake(tcp).await,
            Scheme::Https => {
                let name = ServerName::try_from(t.host.clone())
                    .map_err(|e| HttpError::Connect(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls()?)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| HttpError::Connect(format!("TLS: {e}")))?;
                handshake(tls).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<SendBody>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Connect(e.to_string()))?;
    // The connection task ends when the sender is dropped (idle time-out,
    // pool full) or the peer closes.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn origin_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The TLS client configuration: WebPKI with the system roots plus the
/// certificates of `extra` (PEM).
fn tls_config(extra: Option<&std::path::Path>) -> Result<ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Text from a plugin, fit for a log line: control characters replaced,
/// at most 200 characters.
fn clean(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn allow_rules_match_scheme_host_port_and_prefix() {
        let r = AllowRule::parse("http://127.0.0.1:11333/").unwrap();
        assert!(r.allows(&t("http://127.0.0.1:11333/checkv2")));
        assert!(!r.allows(&t("https://127.0.0.1:11333/checkv2")));
        assert!(!r.allows(&t("http://127.0.0.1:11334/checkv2")));
        assert!(!r.allows(&t("http://127.0.0.2:11333/checkv2")));
        let r = AllowRule::parse("https://Filter.Example.net/api/").unwrap();
        assert!(r.allows(&t("https://filter.example.net:443/api/scan?x=1")));
        assert!(!r.allows(&t("https://filter.example.net/apix")));
        assert!(!r.allows(&t("https://filter.example.net/")));
        let r = AllowRule::parse("http://h/api").unwrap();
        assert!(r.allows(&t("http://h/api")));
        assert!(r.allows(&t("http://h/api/x")));
        assert!(!r.allows(&t("http://h/apix")));
    }

    #[test]
    fn urls_that_could_escape_a_prefix_are_refused() {
        for bad in [
            "http://h/api/../admin",
            "http://h/api/%2e%2E/admin",
            "http://h/api/./x",
            "http://h/api%2fx",
            "http://user@h/api/",
            "http://h/api/#frag",
            "http://h/a b",
            "ftp://h/",
            "/relative",
            "http://h\\@evil/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(t("http://[::1]:8080/x").host, "::1");
        assert_eq!(t("https://h").path_and_query, "/");
        assert_eq!(t("https://h").port, 443);
    }
}
