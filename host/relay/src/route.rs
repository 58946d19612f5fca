//! Where to send mail for a domain: the next hops, in the order to try.
//!
//! RFC 5321 §5.1 (Locating the Target Host):
//! > The lookup first attempts to locate an MX record associated with the
//! > name. [...] If a non-existent domain error is returned, this situation
//! > MUST be reported as an error. If a temporary error is returned, the
//! > message MUST be queued and retried later. If an empty list of MXs is
//! > returned, the address is treated as if it was associated with an
//! > implicit MX RR, with a preference of 0, pointing to that host.
//! > [...] The records are first ordered by preference, with the
//! > lowest-numbered records being most preferred. [...] If there are
//! > multiple destinations with the same preference and there is no clear
//! > reason to favor one [...] the sender-SMTP MUST randomize them to
//! > spread the load across multiple mail exchangers.
//!
//! RFC 7505 §4.1 (null MX):
//! > SMTP clients MUST NOT try to deliver mail to that domain [...] the
//! > sending MTA SHOULD return a permanent error code 556 and enhanced
//! > status 5.1.10.
//!
//! A smarthost (`[relay] smarthost`) replaces MX routing: its host is
//! resolved to addresses (A/AAAA) and tried alone.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::dns::{Dns, DnsError, MxRecord};

/// One host to try, with its addresses in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The host name (the MX exchange, the domain itself, or the
    /// smarthost); for an address literal, its text.
    pub host: String,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
    /// The TCP port.
    pub port: u16,
}

/// Why no hop can be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The domain publishes a null MX: it accepts no mail (permanent).
    #[error("domain {0} does not accept mail (null MX)")]
    NullMx(String),
    /// The domain does not exist (permanent).
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    /// Neither MX nor address records lead anywhere (permanent).
    #[error("no usable mail exchanger for {0}")]
    NoUsableHost(String),
    /// DNS failed for now (temporary).
    #[error(transparent)]
    Temporary(DnsError),
}

impl RouteError {
    /// Whether retrying later may help.
    pub fn is_temporary(&self) -> bool {
        matches!(self, RouteError::Temporary(_))
    }
    /// The reply recorded for the recipients (and quoted in a DSN).
    pub fn reply_text(&self) -> String {
        match self {
            RouteError::NullMx(_) => format!("556 5.1.10 {self}"),
            RouteError::NoSuchDomain(_) => format!("550 5.1.2 {self}"),
            RouteError::NoUsableHost(_) => format!("550 5.4.4 {self}"),
            RouteError::Temporary(_) => format!("451 4.4.3 {self}"),
        }
    }
}

/// Orders MX records: by preference, equal preferences shuffled
/// (RFC 5321 §5.1). A null MX (RFC 7505) among others is dropped.
pub fn order_mx(mut records: Vec<MxRecord>, rng: &mut StdRng) -> Vec<MxRecord> {
    records.retain(|r| !r.exchange.is_empty());
    records.shuffle(rng);
    // A stable sort keeps the shuffled order within one preference.
    records.sort_by_key(|r| r.preference);
    let mut seen = std::collections::HashSet::new();
    records.retain(|r| seen.insert(r.exchange.clone()));
    records
}

/// An address literal `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner.get(5..)?.parse().ok(),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Finds next hops through DNS.
pub struct Router {
    dns: Arc<dyn Dns>,
    rng: Mutex<StdRng>,
}

impl Router {
    /// A router on `dns`, shuffling with a random seed.
    pub fn new(dns: Arc<dyn Dns>) -> Router {
        Router::with_seed(dns, rand::random())
    }

    /// A router with a fixed shuffle seed (tests).
    pub fn with_seed(dns: Arc<dyn Dns>, seed: u64) -> Router {
        Router {
            dns,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// The resolver in use.
    pub fn dns(&self) -> &Arc<dyn Dns> {
        &self.dns
    }

    /// The hops for mail to `domain`, all on `port`.
    pub async fn mx_hops(&self, domain: &str, port: u16) -> Result<Vec<Hop>, RouteError> {
        if let Some(ip) = address_literal(domain) {
            return Ok(vec![Hop {
                host: domain.to_string(),
                addrs: vec![ip],
                port,
            }]);
        }
        let records = match self.dns.mx(domain).await {
            Ok(r) => r,
            Err(DnsError::NoSuchDomain(d)) => return Err(RouteError::NoSuchDomain(d)),
            Err(DnsError::BadName(d)) => return Err(RouteError::NoSuchDomain(d)),
            Err(e) => return Err(RouteError::Temporary(e)),
        };
        if !records.is_empty() && records.iter().all(|r| r.exchange.is_empty()) {
            return Err(RouteError::NullMx(domain.to_string()));
        }
        let ordered = if records.is_empty() {
            // The implicit MX: the domain itself, preference 0.
            vec![MxRecord {
                preference: 0,
                exchange: domain.trim_end_matches('.').to_lowercase(),
            }]
        } else {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            order_mx(records, &mut rng)
        };
        self.resolve_hosts(domain, ordered.into_iter().map(|r| r.exchange), port)
            .await
    }

    /// The hop for a smarthost `host` (a name or an IP address).
    pub async fn host_hops(&self, host: &str, port: u16) -> Result<Vec<Hop>, RouteError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Hop {
                host: host.to_string(),
                addrs: vec![ip],
                port,
            }]);
        }
        self.resolve_hosts(host, std::iter::once(host.to_string()), port)
            .await
    }

    /// Resolves each host's addresses; hosts without any are skipped. If
    /// none is left, the failure is temporary when any lookup failed
    /// temporarily, permanent otherwise.
    async fn resolve_hosts(
        &self,
        domain: &str,
        hosts: impl Iterator<Item = String>,
        port: u16,
    ) -> Result<Vec<Hop>, RouteError> {
        let mut hops = Vec::new();
        let mut temporary = None;
        for host in hosts {
            match self.dns.ips(&host).await {
                Ok(addrs) if !addrs.is_empty() => hops.push(Hop { host, addrs, port }),
                Ok(_) | Err(DnsError::NoSuchDomain(_)) | Err(DnsError::BadName(_)) => {}
                Err(e) => temporary = Some(e),
            }
        }
        if hops.is_empty() {
            return Err(match temporary {
                Some(e) => RouteError::Temporary(e),
                None => RouteError::NoUsableHost(domain.to_string()),
            });
        }
        Ok(hops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::StaticDns;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn mx_in_preference_order_with_addresses() {
        let dns = StaticDns::new();
        dns.mx("b.test", 20, "mx2.b.test")
            .mx("b.test", 10, "mx1.b.test")
            .ip("mx1.b.test", ip("127.0.0.3"))
            .ip("mx1.b.test", ip("::1"))
            .ip("mx2.b.test", ip("127.0.0.4"));
        let router = Router::with_seed(Arc::new(dns), 1);
        let hops = router.mx_hops("B.test", 2525).await.unwrap();
        assert_eq!(hops.len(), 2);
        assert_eq!(hops[0].host, "mx1.b.test");
        assert_eq!(hops[0].addrs, vec![ip("127.0.0.3"), ip("::1")]);
        assert_eq!(hops[1].host, "mx2.b.test");
        assert_eq!(hops[1].port, 2525);
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let records: Vec<MxRecord> = (0..6)
            .map(|i| MxRecord {
                preference: if i < 5 { 10 } else { 5 },
                exchange: format!("mx{i}.test"),
            })
            .collect();
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..40 {
            let ordered = order_mx(records.clone(), &mut StdRng::seed_from_u64(seed));
            assert_eq!(ordered[0].exchange, "mx5.test", "lowest preference first");
            assert_eq!(ordered.len(), 6);
            firsts.insert(ordered[1].exchange.clone());
        }
        assert!(firsts.len() > 2, "equal preferences come in varying order");
    }

    #[tokio::test]
    async fn no_mx_falls_back_to_the_domain_itself() {
        let dns = StaticDns::new();
        dns.ip("c.test", ip("127.0.0.5"));
        let router = Router::with_seed(Arc::new(dns), 1);
        let hops = router.mx_hops("c.test", 25).await.unwrap();
        assert_eq!(hops[0].host, "c.test");
        assert_eq!(hops[0].addrs, vec![ip("127.0.0.5")]);
    }

    #[tokio::test]
    async fn null_mx_and_missing_domains_are_permanent() {
        let dns = StaticDns::new();
        dns.mx("null.test", 0, ".").ip("null.test", ip("127.0.0.9"));
        dns.mx("dangling.test", 10, "nowhere.test");
        let router = Router::with_seed(Arc::new(dns), 1);
        let e = router.mx_hops("null.test", 25).await.unwrap_err();
        assert_eq!(e, RouteError::NullMx("null.test".into()));
        assert!(e.reply_text().starts_with("556 5.1.10"));
        let e = router.mx_hops("gone.test", 25).await.unwrap_err();
        assert!(matches!(e, RouteError::NoSuchDomain(_)) && !e.is_temporary());
        let e = router.mx_hops("dangling.test", 25).await.unwrap_err();
        assert!(matches!(e, RouteError::NoUsableHost(_)));
    }

    #[tokio::test]
    async fn dns_failures_are_temporary() {
        let dns = StaticDns::new();
        dns.mx("d.test", 10, "mx.d.test")
            .fail("mx.d.test")
            .fail("e.test");
        let router = Router::with_seed(Arc::new(dns), 1);
        assert!(router
            .mx_hops("d.test", 25)
            .await
            .unwrap_err()
            .is_temporary());
        assert!(router
            .mx_hops("e.test", 25)
            .await
            .unwrap_err()
            .is_temporary());
    }

    #[tokio::test]
    async fn literals_and_smarthosts() {
        let router = Router::with_seed(Arc::new(StaticDns::new()), 1);
        let hops = router.mx_hops("[127.0.0.7]", 25).await.unwrap();
        assert_eq!(hops[0].addrs, vec![ip("127.0.0.7")]);
        let hops = router.mx_hops("[IPv6:::1]", 25).await.unwrap();
        assert_eq!(hops[0].addrs, vec![ip("::1")]);
        let hops = router.host_hops("127.0.0.8", 587).await.unwrap();
        assert_eq!((hops[0].addrs[0], hops[0].port), (ip("127.0.0.8"), 587));
    }
}
