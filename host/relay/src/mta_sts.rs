//! MTA-STS (RFC 8461): a receiving domain's published demand for
//! verified TLS to a listed set of MX hosts.
//!
//! # Discovery and fetch
//! RFC 8461 §3.1: the TXT record `_mta-sts.<domain>` is `v=STSv1;
//! id=<1-32 alphanumerics>;`; §3.3: the policy is fetched from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`, with the server's
//! certificate valid for that name (WebPKI, against the system roots plus
//! `[relay] tls_ca_file`), "Senders MUST NOT follow redirects", a
//! `text/plain` body, here at most [`MAX_POLICY_SIZE`] bytes within
//! `mta_sts_timeout`. `mta-sts.<domain>` is resolved through the relay's
//! own resolver (the `[relay] nameservers`).
//!
//! # Cache
//! Policies are cached in memory per domain, keyed by the TXT `id`
//! (§5.1): a lookup whose `id` equals the cached one reuses the policy
//! until its `max_age` runs out; a new `id` (or an expired policy) makes a
//! fetch. §5.1: "if no 'live' policy can be discovered via DNS or fetched
//! via HTTPS, but a valid (non-expired) policy exists in the sender's
//! cache, the sender MUST apply that cached policy." A failed fetch is not
//! repeated for [`FETCH_BACKOFF`] seconds.
//!
//! The cache survives restarts, and is shared by every node of the store,
//! when the relay is given the store's [`MtaStsCache`] (the server does):
//! each policy fetched is written there (durably) beside the memory, and
//! a domain missing from memory, or whose TXT `id` differs from the one
//! in memory, is looked up there before anything is fetched; the policy
//! text is parsed again when read. So a domain's policy stays in force
//! after a restart even while its policy server is unreachable, as §5.1
//! asks of a cached policy, and a policy one node fetched is not fetched
//! again by the others. A store failure is logged, and the memory goes
//! on serving.
//!
//! # What the runner does with it
//! `enforce`: only MX hosts matching an `mx` pattern are tried, over
//! STARTTLS with a certificate valid for the MX host name; never plain
//! text; otherwise the recipients are deferred (`451 4.7.5 ...`) and, like
//! any temporary failure, bounced after `[queue] max_age`. `testing`:
//! delivery as usual, and what enforce would have refused is logged at
//! WARN. `none`: no effect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::{TcpSocket, TcpStream};

use mailgate_store::{MtaStsCache, MtaStsEntry};

use crate::clock::Clock;
use crate::dns::{Dns, DnsError};

/// The largest policy file read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;
/// The longest `max_age` honoured (RFC 8461 §3.2: at most 31557600).
pub const MAX_MAX_AGE: u64 = 31_557_600;
/// Seconds before a failed fetch for the same `id` is tried again.
pub const FETCH_BACKOFF: i64 = 300;

/// A policy's mode (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Deliver as usual; report what enforce would refuse.
    Testing,
    /// No policy in force.
    None,
}

impl Mode {
    /// The mode's name in a policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The mode.
    pub mode: Mode,
    /// The `mx` patterns, lower-case, without a final dot.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached, at most [`MAX_MAX_AGE`].
    pub max_age: u64,
}

impl Policy {
    /// Whether the MX host `host` matches one of the patterns.
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MTA-STS policy: {0}")]
pub struct PolicyError(pub String);

fn bad(why: impl Into<String>) -> PolicyError {
    PolicyError(why.into())
}

/// Parses a policy file (RFC 8461 §3.2): `key: value` lines ending in LF
/// or CRLF; `version: STSv1`, `mode`, `max_age` and (unless the mode is
/// `none`) at least one `mx` are required; unknown keys are ignored; a
/// repeated key other than `mx` keeps its first value.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_SIZE {
        return Err(bad("larger than 64 KiB"));
    }
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(bad(format!("line without a colon: {:?}", clip(line))));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "version" => {
                version.get_or_insert(value);
            }
            "mode" => {
                mode.get_or_insert(value);
            }
            "max_age" => {
                max_age.get_or_insert(value);
            }
            "mx" => mx.push(value),
            _ => {}
        }
    }
    if version != Some("STSv1") {
        return Err(bad("version is not STSv1"));
    }
    let mode = match mode {
        Some("enforce") => Mode::Enforce,
        Some("testing") => Mode::Testing,
        Some("none") => Mode::None,
        Some(other) => return Err(bad(format!("unknown mode {:?}", clip(other)))),
        None => return Err(bad("no mode")),
    };
    let max_age = max_age.ok_or_else(|| bad("no max_age"))?;
    if max_age.is_empty() || max_age.len() > 10 || !max_age.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("bad max_age {:?}", clip(max_age))));
    }
    let max_age = max_age
        .parse::<u64>()
        .map_err(|_| bad("bad max_age"))?
        .min(MAX_MAX_AGE);
    let mut patterns = Vec::new();
    for m in mx {
        let p = m.trim_end_matches('.').to_ascii_lowercase();
        if !valid_pattern(&p) {
            return Err(bad(format!("bad mx pattern {:?}", clip(m))));
        }
        patterns.push(p);
    }
    if patterns.is_empty() && mode != Mode::None {
        return Err(bad("no mx pattern"));
    }
    Ok(Policy {
        mode,
        mx: patterns,
        max_age,
    })
}

/// At most 60 characters of `s` for an error message.
fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A host name, or `*.` and a host name (RFC 8461 §3.2 / §4.1).
fn valid_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// RFC 8461 §4.1: a pattern matches the MX host name exactly
/// (case-insensitively), or `*.example.com` matches one more label on
/// the left (`mx1.example.com`, not `example.com` nor `a.b.example.com`).
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let pattern = pattern.trim_end_matches('.');
    if let Some(parent) = pattern.strip_prefix("*.") {
        match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(parent),
            None => false,
        }
    } else {
        !pattern.is_empty() && pattern.eq_ignore_ascii_case(host)
    }
}

/// What the `_mta-sts` TXT lookup says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txt {
    /// One valid STSv1 record with this `id`.
    Id(String),
    /// No STSv1 record, or more than one, or an invalid one: the domain
    /// is treated as having no (new) policy.
    Absent,
}

/// RFC 8461 §3.1: records that do not start with `v=STSv1` are ignored;
/// more than one STSv1 record means none; `id` is 1 to 32 alphanumerics;
/// fields are `;`-separated `key=value` with optional spaces.
pub fn parse_txt(records: &[String]) -> Txt {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| {
            let first = r.split(';').next().unwrap_or("").trim();
            first == "v=STSv1"
        })
        .collect();
    let [record] = sts.as_slice() else {
        return Txt::Absent;
    };
    for field in record.split(';').skip(1) {
        if let Some((k, v)) = field.trim().split_once('=') {
            if k.trim() == "id" {
                let v = v.trim();
                if (1..=32).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Txt::Id(v.to_string());
                }
                return Txt::Absent;
            }
        }
    }
    Txt::Absent
}

/// Fetches a domain's policy file.
#[async_trait]
pub trait PolicyFetcher: Send + Sync {
    /// The body of `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    async fn fetch(&self, domain: &str) -> Result<String, String>;
}

/// [`PolicyFetcher`] over HTTPS: hyper's HTTP/1.1 client on a
/// tokio-rustls stream with certificate verification.
pub struct HttpsFetcher {
    dns: Arc<dyn Dns>,
    tls: Arc<ClientConfig>,
    port: u16,
    timeout: Duration,
    source_ip: Option<IpAddr>,
}

impl HttpsFetcher {
    /// A fetcher resolving through `dns`, verifying with `tls` (the
    /// relay's verified configuration), on `port` (443), each fetch
    /// bounded by `timeout`.
    pub fn new(
        dns: Arc<dyn Dns>,
        tls: Arc<ClientConfig>,
        port: u16,
        timeout: Duration,
    ) -> HttpsFetcher {
        HttpsFetcher {
            dns,
            tls,
            port,
            timeout,
            source_ip: None,
        }
    }

    /// Connects from `ip` (the relay's `source_ip`), for addresses of
    /// the same family.
    pub fn with_source_ip(mut self, ip: Option<IpAddr>) -> HttpsFetcher {
        self.source_ip = ip;
        self
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(src) = self.source_ip {
            if src.is_ipv4() == addr.is_ipv4() {
                socket.bind(SocketAddr::new(src, 0))?;
            }
        }
        socket.connect(addr).await
    }

    async fn get(&self, host: &str) -> Result<String, String> {
        let ips = self.dns.ips(host).await.map_err(|e| e.to_string())?;
        let mut last = format!("{host} has no address");
        let mut tcp = None;
        for ip in ips {
            match self.connect(SocketAddr::new(ip, self.port)).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connect to {ip}:{}: {e}", self.port),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let request = hyper::Request::get("/.well-known/mta-sts.txt")
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "mailgate")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            // No redirects (RFC 8461 §3.3): anything but 200 fails.
            if response.status() != hyper::StatusCode::OK {
                return Err(format!("HTTP status {}", response.status()));
            }
            let media = response
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let essence = media.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("text/plain") {
                return Err(format!("Content-Type {media:?} is not text/plain"));
            }
            let body = Limited::new(response.into_body(), MAX_POLICY_SIZE)
                .collect()
                .await
                .map_err(|e| format!("reading the policy: {e}"))?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| "the policy is not UTF-8".to_string())
        }
        .await;
        drop(sender);
        conn.abort();
        result
    }
}

#[async_trait]
impl PolicyFetcher for HttpsFetcher {
    async fn fetch(&self, domain: &str) -> Result<String, String> {
        let host = format!("mta-sts.{}", domain.trim_end_matches('.'));
        tokio::time::timeout(self.timeout, self.get(&host))
            .await
            .map_err(|_| format!("https://{host}: timed out"))?
            .map_err(|e| format!("https://{host}: {e}"))
    }
}

struct Cached {
    id: String,
    policy: Arc<Policy>,
    expires: i64,
}

/// Policies of the destination domains: discovery, fetch, cache.
pub struct MtaSts {
    dns: Arc<dyn Dns>,
    fetcher: Arc<dyn PolicyFetcher>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Failed fetches: domain → (id, not again before).
    failed: Mutex<HashMap<String, (String, i64)>>,
    /// Where the cache is kept across restarts and shared, if anywhere.
    store: Option<Arc<dyn MtaStsCache>>,
}

impl MtaSts {
    /// Looks up TXT records through `dns`, fetches with `fetcher`.
    pub fn new(dns: Arc<dyn Dns>, fetcher: Arc<dyn PolicyFetcher>, clock: Arc<dyn Clock>) -> Self {
        MtaSts {
            dns,
            fetcher,
            clock,
            cache: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            store: None,
        }
    }

    /// Keeps the cache in the store too (across restarts, shared by the
    /// nodes of the store).
    pub fn with_store(mut self, store: Arc<dyn MtaStsCache>) -> Self {
        self.store = Some(store);
        self
    }

    fn cached(&self, domain: &str, now: i64) -> Option<(String, Arc<Policy>)> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(domain)
            .filter(|c| c.expires > now)
            .map(|c| (c.id.clone(), c.policy.clone()))
    }

    fn remember(&self, domain: &str, id: String, policy: Arc<Policy>, expires: i64) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            domain.to_string(),
            Cached {
                id,
                policy,
                expires,
            },
        );
    }

    /// The store's unexpired policy for `domain`, parsed, and kept in
    /// memory from now on. `None` without a store, or on trouble (logged).
    async fn stored(&self, domain: &str, now: i64) -> Option<(String, Arc<Policy>)> {
        let store = self.store.as_ref()?;
        let entry = match store.mta_sts_get(domain, now).await {
            Ok(e) => e?,
            Err(e) => {
                tracing::warn!(%domain, error = %e, "relay: cannot read the MTA-STS cache of the store");
                return None;
            }
        };
        match parse_policy(&entry.policy) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                self.remember(domain, entry.id.clone(), policy.clone(), entry.expires);
                Some((entry.id, policy))
            }
            Err(e) => {
                tracing::warn!(%domain, error = %e, "relay: MTA-STS cache entry of the store dropped");
                None
            }
        }
    }

    /// The policy in force for mail to `domain`, if any (a `none` policy
    /// is returned too; the caller ignores it). Never fails: trouble is
    /// logged and a cached unexpired policy used, or none.
    pub async fn policy(&self, domain: &str) -> Option<Arc<Policy>> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let now = self.clock.now();
        let mut cached = self.cached(&domain, now);
        if cached.is_none() {
            cached = self.stored(&domain, now).await;
        }
        let id = match self.dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => match parse_txt(&records) {
                Txt::Id(id) => id,
                Txt::Absent => return cached.map(|(_, p)| p),
            },
            Err(DnsError::NoSuchDomain(_)) | Err(DnsError::BadName(_)) => {
                return cached.map(|(_, p)| p)
            }
            Err(e) => {
                tracing::info!(%domain, error = %e, "relay: MTA-STS TXT lookup failed; using the cached policy, if any");
                return cached.map(|(_, p)| p);
            }
        };
        if let Some((cached_id, policy)) = &cached {
            if *cached_id == id {
                return Some(policy.clone());
            }
            // Another node (or an earlier run) may have fetched it.
            if let Some((stored_id, policy)) = self.stored(&domain, now).await {
                if stored_id == id {
                    return Some(policy);
                }
            }
        }
        {
            let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((fid, until)) = failed.get(&domain) {
                if *fid == id && *until > now {
                    return cached.map(|(_, p)| p);
                }
            }
        }
        let fetched = self.fetcher.fetch(&domain).await.and_then(|text| {
            let policy = parse_policy(&text).map_err(|e| e.to_string())?;
            Ok((policy, text))
        });
        match fetched {
            Ok((policy, text)) => {
                tracing::info!(%domain, %id, mode = policy.mode.as_str(), mx = %policy.mx.join(", "), max_age = policy.max_age, "relay: MTA-STS policy fetched");
                let policy = Arc::new(policy);
                let expires = now.saturating_add(policy.max_age as i64);
                self.remember(&domain, id.clone(), policy.clone(), expires);
                self.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&domain);
                if let Some(store) = &self.store {
                    let entry = MtaStsEntry {
                        id,
                        expires,
                        policy: text,
                    };
                    if let Err(e) = store.mta_sts_put(&domain, entry, now).await {
                        tracing::warn!(%domain, error = %e, "relay: cannot keep the MTA-STS policy in the store; it is in force in memory");
                    }
                }
                Some(policy)
            }
            Err(e) => {
                tracing::warn!(%domain, %id, error = %e, cached = cached.is_some(), "relay: MTA-STS policy fetch failed; using the cached policy, if any");
                self.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(domain.clone(), (id, now + FETCH_BACKOFF));
                cached.map(|(_, p)| p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::testing::StaticDns;

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    #[test]
    fn parses_the_rfc_example() {
        let p = parse_policy(GOOD).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(
            p.mx,
            vec!["mail.example.com", "*.example.net", "backupmx.example.com"]
        );
        // LF only, other order, unknown keys, spaces.
        let p = parse_policy(
            "mode:testing\nmax_age:  86400 \nfoo: bar\nversion: STSv1\nmx: MX.B.test.\n",
        )
        .unwrap();
        assert_eq!(
            (p.mode, p.max_age, p.mx.clone()),
            (Mode::Testing, 86_400, vec!["mx.b.test".to_string()])
        );
        let p = parse_policy("version: STSv1\nmode: none\nmax_age: 9999999999\n").unwrap();
        assert_eq!((p.mode, p.max_age), (Mode::None, MAX_MAX_AGE));
        assert!(p.mx.is_empty());
        // The first of a repeated key counts.
        let p =
            parse_policy("version: STSv1\nmode: testing\nmode: enforce\nmx: a.test\nmax_age: 1\n")
                .unwrap();
        assert_eq!(p.mode, Mode::Testing);
    }

    #[test]
    fn refuses_bad_policies_without_panicking() {
        let long_line = "x".repeat(70_000);
        let many_mx = format!(
            "version: STSv1\nmode: enforce\nmax_age: 1\n{}",
            "mx: a.test\n".repeat(7000)
        );
        for bad in [
            "",
            "\n\n",
            "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
            "mode: enforce\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforcing\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1e9\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999999999999999\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: \nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: mx b.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: bücher.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\ngarbage\n",
            "<html><body>Not found</body></html>",
            "version: STSv1\u{0}\nmode: enforce\nmx: a.test\nmax_age: 1\n",
            "\u{feff}version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: ünïcode\nmx: a.test\nmax_age: 1\n",
            &long_line,
            &many_mx,
        ] {
            assert!(parse_policy(bad).is_err(), "{:?}", clip(bad));
        }
        let big_label = format!(
            "version: STSv1\nmode: enforce\nmx: {}.test\nmax_age: 1\n",
            "a".repeat(64)
        );
        assert!(parse_policy(&big_label).is_err());
    }

    #[test]
    fn mx_patterns() {
        assert!(mx_matches("mx.b.test", "mx.b.test"));
        assert!(mx_matches("mx.b.test", "MX.B.Test."));
        assert!(mx_matches("*.b.test", "mx1.b.test"));
        assert!(mx_matches("*.B.test", "mx1.b.TEST"));
        assert!(!mx_matches("*.b.test", "b.test"));
        assert!(!mx_matches("*.b.test", "a.mx.b.test"));
        assert!(!mx_matches("*.b.test", ".b.test"));
        assert!(!mx_matches("mx.b.test", "mx.b.test.evil"));
        assert!(!mx_matches("mx.b.test", "xmx.b.test"));
        assert!(!mx_matches("", ""));
        assert!(!mx_matches("*.", "a."));
        let p = parse_policy(GOOD).unwrap();
        assert!(p.allows("mail.example.com") && p.allows("x.example.net"));
        assert!(!p.allows("example.net") && !p.allows("mail.example.org"));
    }

    #[test]
    fn txt_records() {
        let t = |v: &[&str]| parse_txt(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            t(&["v=STSv1; id=20160831085700Z;"]),
            Txt::Id("20160831085700Z".into())
        );
        assert_eq!(t(&["v=STSv1;id=1"]), Txt::Id("1".into()));
        assert_eq!(
            t(&["v=spf1 -all", "v=STSv1; id=abc"]),
            Txt::Id("abc".into())
        );
        assert_eq!(t(&[]), Txt::Absent);
        assert_eq!(t(&["v=spf1 -all"]), Txt::Absent);
        assert_eq!(
            t(&["v=STSv1; id=1", "v=STSv1; id=2"]),
            Txt::Absent,
            "two records"
        );
        assert_eq!(t(&["v=STSv1;"]), Txt::Absent, "no id");
        assert_eq!(t(&["v=STSv1; id=a-b"]), Txt::Absent);
        assert_eq!(t(&["v=STSv1; id="]), Txt::Absent);
        assert_eq!(
            t(&[&format!("v=STSv1; id={}", "1".repeat(33))]),
            Txt::Absent
        );
        assert_eq!(t(&["v=STSv10; id=1"]), Txt::Absent);
        assert_eq!(t(&[";;;=;=="]), Txt::Absent);
    }

    /// Serves a settable policy and counts fetches.
    struct FakeFetcher {
        body: Mutex<Result<String, String>>,
        count: Mutex<u32>,
    }

    impl Default for FakeFetcher {
        fn default() -> Self {
            FakeFetcher {
                body: Mutex::new(Err("not set".into())),
                count: Mutex::new(0),
            }
        }
    }

    #[async_trait]
    impl PolicyFetcher for FakeFetcher {
        async fn fetch(&self, _domain: &str) -> Result<String, String> {
            *self.count.lock().unwrap() += 1;
            self.body.lock().unwrap().clone()
        }
    }

    fn policy_text(mode: &str, mx: &str, max_age: u64) -> String {
        format!("version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: {max_age}\n")
    }

    #[tokio::test]
    async fn cache_follows_the_txt_id_and_outlives_failures() {
        let dns = Arc::new(StaticDns::new());
        dns.txt("_mta-sts.b.test", "v=STSv1; id=1");
        let fetcher = Arc::new(FakeFetcher::default());
        *fetcher.body.lock().unwrap() = Ok(policy_text("enforce", "mx.b.test", 1000));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let sts = MtaSts::new(dns.clone(), fetcher.clone(), clock.clone());
        let p = sts.policy("B.test").await.unwrap();
        assert_eq!((p.mode, p.mx[0].as_str()), (Mode::Enforce, "mx.b.test"));
        // Same id: from the cache.
        sts.policy("b.test").await.unwrap();
        assert_eq!(*fetcher.count.lock().unwrap(), 1);
        // New id: fetched again; the fetch fails, so the cached policy
        // stays in force, and the failure is not retried at once.
        dns.txt("_mta-sts.b.test", "v=STSv1; id=2"); // two records: absent
        assert_eq!(sts.policy("b.test").await.unwrap().mode, Mode::Enforce);
        assert_eq!(
            *fetcher.count.lock().unwrap(),
            1,
            "an absent TXT fetches nothing"
        );
        let dns2 = Arc::new(StaticDns::new());
        dns2.txt("_mta-sts.b.test", "v=STSv1; id=2");
        let sts2 = MtaSts::new(dns2.clone(), fetcher.clone(), clock.clone());
        *sts2.cache.lock().unwrap() = std::mem::take(&mut *sts.cache.lock().unwrap());
        *fetcher.body.lock().unwrap() = Err("connection refused".into());
        assert_eq!(sts2.policy("b.test").await.unwrap().mode, Mode::Enforce);
        assert_eq!(sts2.policy("b.test").await.unwrap().mode, Mode::Enforce);
        assert_eq!(*fetcher.count.lock().unwrap(), 2, "backoff after a failure");
        // After the backoff the new policy is fetched and replaces the old.
        clock.advance(FETCH_BACKOFF + 1);
        *fetcher.body.lock().unwrap() = Ok(policy_text("testing", "*.b.test", 1000));
        assert_eq!(sts2.policy("b.test").await.unwrap().mode, Mode::Testing);
        assert_eq!(*fetcher.count.lock().unwrap(), 3);
        // Expired and unfetchable: no policy.
        clock.advance(1001);
        *fetcher.body.lock().unwrap() = Err("down".into());
        assert!(sts2.policy("b.test").await.is_none());
        // A hostile policy file is refused like a failed fetch.
        clock.advance(FETCH_BACKOFF + 1);
        *fetcher.body.lock().unwrap() = Ok("version: STSv1\nmode: enforce\n".into());
        assert!(sts2.policy("b.test").await.is_none());
    }

    /// A restarted relay (a new `MtaSts` on the same store) applies the
    /// policy fetched before the restart while the policy server is down;
    /// expired entries are not used; a second node sharing the store uses
    /// the policy the first fetched without fetching it.
    #[tokio::test]
    async fn the_store_cache_outlives_a_restart_and_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = mailgate_store::SqliteStore::open(dir.path()).unwrap();
        let dns = Arc::new(StaticDns::new());
        dns.txt("_mta-sts.d.test", "v=STSv1; id=5");
        let fetcher = Arc::new(FakeFetcher::default());
        *fetcher.body.lock().unwrap() = Ok(policy_text("enforce", "mx.d.test", 1000));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let restarted = |clock: Arc<ManualClock>| {
            MtaSts::new(dns.clone(), fetcher.clone(), clock).with_store(store.clone())
        };
        let sts = restarted(clock.clone());
        assert_eq!(sts.policy("d.test").await.unwrap().mode, Mode::Enforce);
        drop(sts);

        *fetcher.body.lock().unwrap() = Err("connection refused".into());
        let sts = restarted(clock.clone());
        let p = sts.policy("d.test").await.expect("the cached policy");
        assert_eq!(
            (p.mode, p.mx.clone()),
            (Mode::Enforce, vec!["mx.d.test".to_string()])
        );
        assert_eq!(
            *fetcher.count.lock().unwrap(),
            1,
            "same id: not fetched again"
        );
        // The domain publishes id 6. Node B, whose fetch fails, keeps
        // applying id 5 (from the store); node A fetches id 6; B then
        // takes A's policy from the store without fetching.
        let dns6 = Arc::new(StaticDns::new());
        dns6.txt("_mta-sts.d.test", "v=STSv1; id=6");
        let node = |fetcher: Arc<FakeFetcher>| {
            MtaSts::new(dns6.clone(), fetcher, clock.clone()).with_store(store.clone())
        };
        let failing = Arc::new(FakeFetcher::default());
        *failing.body.lock().unwrap() = Err("connection refused".into());
        let node_b = node(failing.clone());
        assert_eq!(node_b.policy("d.test").await.unwrap().mode, Mode::Enforce);
        assert_eq!(*failing.count.lock().unwrap(), 1);
        *fetcher.body.lock().unwrap() = Ok(policy_text("testing", "mx.d.test", 1000));
        let node_a = node(fetcher.clone());
        assert_eq!(node_a.policy("d.test").await.unwrap().mode, Mode::Testing);
        assert_eq!(*fetcher.count.lock().unwrap(), 2);
        assert_eq!(node_b.policy("d.test").await.unwrap().mode, Mode::Testing);
        assert_eq!(*failing.count.lock().unwrap(), 1, "taken from the store");
        drop(sts);

        *fetcher.body.lock().unwrap() = Err("connection refused".into());
        clock.advance(1001);
        assert!(
            restarted(clock.clone()).policy("d.test").await.is_none(),
            "expired"
        );
    }

    #[tokio::test]
    async fn no_txt_record_no_policy_and_dns_trouble_keeps_the_cache() {
        let dns = Arc::new(StaticDns::new());
        let fetcher = Arc::new(FakeFetcher::default());
        *fetcher.body.lock().unwrap() = Ok(policy_text("enforce", "mx.c.test", 1000));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let sts = MtaSts::new(dns.clone(), fetcher.clone(), clock);
        assert!(sts.policy("c.test").await.is_none());
        assert_eq!(*fetcher.count.lock().unwrap(), 0);
        dns.txt("_mta-sts.c.test", "v=STSv1; id=7");
        assert!(sts.policy("c.test").await.is_some());
        dns.fail("_mta-sts.c.test");
        assert_eq!(sts.policy("c.test").await.unwrap().mx, vec!["mx.c.test"]);
    }
}
