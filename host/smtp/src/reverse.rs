//! The client's forward-confirmed reverse DNS name (FCrDNS), looked up
//! once per connection: what Postfix calls the "verified" client name.
//!
//! # The rule
//! The client's address is looked up for PTR records (`in-addr.arpa`,
//! `ip6.arpa`); each name (at most [`MAX_PTR_NAMES`]) is looked up for
//! A and AAAA records, and the first name whose addresses include the
//! client's is the client's name. Otherwise (no PTR, no name that points
//! back, a malformed name, a DNS failure, or no answer within the bound)
//! there is no name, and `Received:` says `unknown`, as Postfix does.
//!
//! # Bounds
//! The whole lookup, PTR and forward together, takes at most
//! [`ReverseLookup::timeout`] (2 s by default, [`DEFAULT_TIMEOUT`]). It
//! starts when the connection is accepted and runs while the greeting
//! goes out; the session waits for it only where the name is needed (the
//! `connect` hook, EHLO/HELO), and never past the bound counted from the
//! connection's start. `[inbound] reverse_lookup = false` turns it off.
//!
//! # Loopback
//! The resolver answers the loopback addresses itself (RFC 6761 §6.3:
//! `127.0.0.0/8` and `::1` are `localhost`, whose address is the loopback
//! address), without asking the name servers: a local client is
//! `localhost`, as Postfix shows it.
//!
//! # Trust
//! A PTR record is written by whoever holds the address block: a name is
//! used only when its own A/AAAA records point back, and only if it is a
//! well-formed host name (letters, digits, `-`, `.`; at most 253
//! characters), so nothing a DNS server says reaches a header or a log
//! line raw.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailgate_relay::{Dns, DnsError, HickoryDns};
use tokio::task::JoinHandle;

/// The bound on one connection's lookup, PTR and forward together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many PTR names are checked (a client address with more is
/// misconfigured or hostile; Postfix checks all, we stop here).
pub const MAX_PTR_NAMES: usize = 5;

/// The lookups FCrDNS needs (tests answer without a network).
#[async_trait]
pub trait ReverseDns: Send + Sync {
    /// The names of the PTR records of `ip`; an empty list when none.
    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError>;
    /// The A and AAAA addresses of `host`.
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError>;
}

#[async_trait]
impl ReverseDns for HickoryDns {
    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        use hickory_resolver::proto::rr::RData;
        let name = hickory_resolver::proto::rr::Name::from(ip.to_canonical());
        match self.resolver().reverse_lookup(name).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::PTR(ptr) => {
                        Some(ptr.0.to_ascii().trim_end_matches('.').to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Temporary {
                name: ip.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        Dns::ips(self, host).await
    }
}

/// The FCrDNS lookup of one listener: the resolver and the bound.
pub struct ReverseLookup {
    dns: Arc<dyn ReverseDns>,
    /// The bound on one connection's lookup.
    pub timeout: Duration,
}

impl std::fmt::Debug for ReverseLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReverseLookup")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ReverseLookup {
    /// Lookups through `dns`, bounded by [`DEFAULT_TIMEOUT`].
    pub fn new(dns: Arc<dyn ReverseDns>) -> ReverseLookup {
        ReverseLookup {
            dns,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The forward-confirmed name of `ip`, or `None` (see the module doc).
    pub async fn confirmed_name(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        match tokio::time::timeout(self.timeout, self.lookup(ip)).await {
            Ok(name) => name,
            Err(_) => {
                tracing::debug!(client = %ip, "smtp: reverse lookup timed out");
                None
            }
        }
    }

    async fn lookup(&self, ip: IpAddr) -> Option<String> {
        let names = match self.dns.ptr(ip).await {
            Ok(names) => names,
            Err(e) => {
                tracing::debug!(client = %ip, error = %e, "smtp: reverse lookup failed");
                return None;
            }
        };
        for name in names
            .into_iter()
            .filter(|n| is_host_name(n))
            .take(MAX_PTR_NAMES)
        {
            match self.dns.ips(&name).await {
                Ok(ips) if ips.iter().any(|a| a.to_canonical() == ip) => return Some(name),
                Ok(_) => {
                    tracing::debug!(client = %ip, name = %name, "smtp: reverse name does not point back")
                }
                Err(e) => {
                    tracing::debug!(client = %ip, name = %name, error = %e, "smtp: forward lookup of the reverse name failed")
                }
            }
        }
        None
    }
}

/// A host name as `Received:` may carry it: labels of letters, digits and
/// `-` (not at either end), 1 to 63 characters each, at least two labels
/// (or `localhost`), at most 253 characters in all.
pub fn is_host_name(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// One connection's lookup: running, or its result.
#[derive(Debug, Default)]
pub(crate) enum ReverseName {
    /// Off, or done with this result.
    #[default]
    Unknown,
    /// Done: the confirmed name.
    Known(String),
    /// Started at connect; bounded by the lookup's own timeout.
    Pending(JoinHandle<Option<String>>),
}

impl ReverseName {
    /// Starts the lookup of `ip` (on the runtime, so the greeting is not
    /// held up), or nothing when `lookup` is `None`.
    pub(crate) fn start(lookup: Option<&Arc<ReverseLookup>>, ip: IpAddr) -> ReverseName {
        match lookup {
            Some(l) => {
                let l = l.clone();
                ReverseName::Pending(tokio::spawn(async move { l.confirmed_name(ip).await }))
            }
            None => ReverseName::Unknown,
        }
    }

    /// Waits for a pending lookup (bounded by its timeout).
    pub(crate) async fn settle(&mut self) {
        if let ReverseName::Pending(handle) = self {
            *self = match handle.await {
                Ok(Some(name)) => ReverseName::Known(name),
                _ => ReverseName::Unknown,
            };
        }
    }

    /// The name, once settled.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            ReverseName::Known(name) => Some(name),
            _ => None,
        }
    }
}

impl Drop for ReverseName {
    fn drop(&mut self) {
        // A client gone before the lookup ends: its task ends too.
        if let ReverseName::Pending(handle) = self {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Zone {
        ptr: HashMap<IpAddr, Result<Vec<String>, DnsError>>,
        a: HashMap<String, Vec<IpAddr>>,
        delay: Duration,
    }

    #[async_trait]
    impl ReverseDns for Zone {
        async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
            tokio::time::sleep(self.delay).await;
            self.ptr.get(&ip).cloned().unwrap_or(Ok(Vec::new()))
        }
        async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
            Ok(self.a.get(host).cloned().unwrap_or_default())
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn lookup(delay: Duration) -> ReverseLookup {
        let mut ptr = HashMap::new();
        ptr.insert(ip("192.0.2.1"), Ok(vec!["mail.example.org".to_string()]));
        ptr.insert(ip("192.0.2.2"), Ok(vec!["liar.example.org".to_string()]));
        ptr.insert(
            ip("192.0.2.3"),
            Ok(vec!["bad name\r\n.example".into(), "ok.example.org".into()]),
        );
        ptr.insert(
            ip("192.0.2.4"),
            Err(DnsError::Temporary {
                name: "4.2.0.192.in-addr.arpa".into(),
                reason: "SERVFAIL".into(),
            }),
        );
        ptr.insert(ip("2001:db8::1"), Ok(vec!["v6.example.org".to_string()]));
        let mut a = HashMap::new();
        a.insert("mail.example.org".to_string(), vec![ip("192.0.2.1")]);
        a.insert("liar.example.org".to_string(), vec![ip("198.51.100.7")]);
        a.insert("ok.example.org".to_string(), vec![ip("192.0.2.3")]);
        a.insert("v6.example.org".to_string(), vec![ip("2001:db8::1")]);
        let mut l = ReverseLookup::new(Arc::new(Zone { ptr, a, delay }));
        l.timeout = Duration::from_millis(200);
        l
    }

    #[tokio::test]
    async fn confirmed_unconfirmed_malformed_and_failed() {
        let l = lookup(Duration::ZERO);
        let name = |s| l.confirmed_name(ip(s));
        assert_eq!(name("192.0.2.1").await.as_deref(), Some("mail.example.org"));
        assert_eq!(
            name("192.0.2.2").await,
            None,
            "the name does not point back"
        );
        assert_eq!(name("192.0.2.3").await.as_deref(), Some("ok.example.org"));
        assert_eq!(name("192.0.2.4").await, None, "SERVFAIL");
        assert_eq!(name("192.0.2.9").await, None, "no PTR");
        assert_eq!(name("2001:db8::1").await.as_deref(), Some("v6.example.org"));
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert_eq!(
            name("::ffff:192.0.2.1").await.as_deref(),
            Some("mail.example.org")
        );
    }

    #[tokio::test]
    async fn a_slow_server_is_cut_at_the_bound() {
        let l = lookup(Duration::from_secs(30));
        let start = std::time::Instant::now();
        assert_eq!(l.confirmed_name(ip("192.0.2.1")).await, None);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn the_connection_state_settles_once() {
        let l = Arc::new(lookup(Duration::ZERO));
        let mut r = ReverseName::start(Some(&l), ip("192.0.2.1"));
        r.settle().await;
        assert_eq!(r.name(), Some("mail.example.org"));
        r.settle().await;
        assert_eq!(r.name(), Some("mail.example.org"));
        let mut off = ReverseName::start(None, ip("192.0.2.1"));
        off.settle().await;
        assert_eq!(off.name(), None);
    }

    #[test]
    fn host_names() {
        for good in ["a.b", "mail-1.example.org", "xn--bcher-kva.example"] {
            assert!(is_host_name(good), "{good}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(is_host_name("localhost"));
        for bad in [
            "",
            "otherhost",
            "a..b",
            "-a.b",
            "a-.b",
            "a b.c",
            "a\r\n.b",
            "ä.b",
            &long,
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }
}
