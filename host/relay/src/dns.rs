//! Name resolution for the relay: the [`Dns`] trait (so tests and routing
//! can answer without a network) and its implementation on
//! hickory-resolver ([`HickoryDns`]).
//!
//! hickory-resolver keeps its own cache, each answer for its TTL (negative
//! answers for the SOA minimum), so repeated deliveries to one domain ask
//! the name servers once per TTL.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// An MX record (RFC 5321 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    /// Lower is preferred.
    pub preference: u16,
    /// The mail exchanger's host name, lower-case, without the final dot;
    /// empty for the root (`.`), the null MX of RFC 7505.
    pub exchange: String,
}

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN): a permanent failure.
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    /// The lookup failed for now (timeout, SERVFAIL, no server reachable).
    #[error("DNS lookup for {name} failed: {reason}")]
    Temporary {
        /// The name looked up.
        name: String,
        /// Why.
        reason: String,
    },
    /// The name is not a valid domain name.
    #[error("{0:?} is not a valid domain name")]
    BadName(String),
}

/// The lookups the relay needs.
#[async_trait]
pub trait Dns: Send + Sync {
    /// The MX records of `domain`; an empty list when the domain exists but
    /// has none (NODATA).
    async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError>;
    /// The IPv4 and IPv6 addresses of `host` (A and AAAA); an empty list
    /// when it has none.
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError>;
    /// The TXT records of `name`, each with its strings joined (RFC 7208
    /// §3.3 style); an empty list when it has none. The default answers
    /// none (a resolver without TXT support sees no MTA-STS policies).
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let _ = name;
        Ok(Vec::new())
    }
}

/// [`Dns`] through hickory-resolver.
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl HickoryDns {
    /// A resolver asking `nameservers` (UDP, falling back to TCP for
    /// truncated answers), or the system's (`/etc/resolv.conf`) when the
    /// list is empty. Without that file it asks 127.0.0.1 and ::1 on port
    /// 53, as the C library's resolver does, and says so at WARN.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<HickoryDns, DnsError> {
        let provider = TokioRuntimeProvider::default();
        let has_system_conf = std::path::Path::new(RESOLV_CONF).exists();
        if nameservers.is_empty() && !has_system_conf {
            tracing::warn!(
                "relay: {RESOLV_CONF} not found and no [relay] nameservers set; asking 127.0.0.1 and ::1 (port 53), as the C library would"
            );
        }
        let nameservers = effective_nameservers(nameservers, has_system_conf);
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| DnsError::Temporary {
                name: RESOLV_CONF.into(),
                reason: e.to_string(),
            })?
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    ns.connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                        .into_iter()
                        .map(|mut c| {
                            c.port = addr.port();
                            c
                        })
                        .collect();
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        // Names are always absolute: never append a search domain to a
        // recipient's domain.
        opts.ndots = 0;
        let resolver = builder.build().map_err(|e| DnsError::Temporary {
            name: "resolver".into(),
            reason: e.to_string(),
        })?;
        Ok(HickoryDns { resolver })
    }

    /// The resolver itself (DKIM/SPF/DMARC verification through
    /// `mail-auth` uses the same one, and so the same cache).
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// A `mail-auth` authenticator (SPF, DKIM and DMARC lookups of
    /// inbound mail) on this resolver: the same name servers, timeout and
    /// cache.
    pub fn authenticator(&self) -> mail_auth::MessageAuthenticator {
        mail_auth::MessageAuthenticator(self.resolver.clone())
    }
}

/// The system resolver's configuration file.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The name servers to ask: the configured ones; none (meaning the
/// system's, from [`RESOLV_CONF`]) when there are none and the file
/// exists; otherwise the C library's default, the local host.
fn effective_nameservers(configured: &[SocketAddr], has_system_conf: bool) -> Vec<SocketAddr> {
    if !configured.is_empty() || has_system_conf {
        return configured.to_vec();
    }
    vec![
        SocketAddr::from(([127, 0, 0, 1], 53)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 53)),
    ]
}

/// `name` as an absolute name (a final dot), so no search list applies.
fn absolute(name: &str) -> Result<String, DnsError> {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty()
        || trimmed.len() > 253
        || !trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(DnsError::BadName(name.to_string()));
    }
    Ok(format!("{trimmed}."))
}

fn classify(name: &str, e: NetError) -> Result<Vec<RData>, DnsError> {
    if e.is_nx_domain() {
        Err(DnsError::NoSuchDomain(name.to_string()))
    } else if e.is_no_records_found() {
        Ok(Vec::new())
    } else {
        Err(DnsError::Temporary {
            name: name.to_string(),
            reason: e.to_string(),
        })
    }
}

/// A host name from DNS, lower-case and without the final dot.
fn host_name(name: &hickory_resolver::proto::rr::Name) -> String {
    let s = name.to_ascii().to_lowercase();
    s.trim_end_matches('.').to_string()
}

#[async_trait]
impl Dns for HickoryDns {
    async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        let name = absolute(domain)?;
        let answers = match self.resolver.mx_lookup(name.as_str()).await {
            Ok(lookup) => lookup.answers().iter().map(|r| r.data.clone()).collect(),
            Err(e) => classify(domain, e)?,
        };
        Ok(answers
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(mx) => Some(MxRecord {
                    preference: mx.preference,
                    exchange: host_name(&mx.exchange),
                }),
                _ => None,
            })
            .collect())
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = absolute(host)?;
        let (v4, v6) = tokio::join!(
            self.resolver.ipv4_lookup(name.as_str()),
            self.resolver.ipv6_lookup(name.as_str())
        );
        let mut out = Vec::new();
        let mut nx = false;
        let mut temporary = None;
        for result in [v4, v6] {
            let data = match result {
                Ok(lookup) => lookup.answers().iter().map(|r| r.data.clone()).collect(),
                Err(e) => match classify(host, e) {
                    Ok(empty) => empty,
                    Err(DnsError::NoSuchDomain(_)) => {
                        nx = true;
                        Vec::new()
                    }
                    Err(other) => {
                        temporary = Some(other);
                        Vec::new()
                    }
                },
            };
            out.extend(data.into_iter().filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }));
        }
        // One family answering is enough; only when neither did does the
        // failure matter.
        if out.is_empty() {
            if let Some(e) = temporary {
                return Err(e);
            }
            if nx {
                return Err(DnsError::NoSuchDomain(host.to_string()));
            }
        }
        Ok(out)
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let abs = absolute(name)?;
        let answers = match self.resolver.txt_lookup(abs.as_str()).await {
            Ok(lookup) => lookup.answers().iter().map(|r| r.data.clone()).collect(),
            Err(e) => classify(name, e)?,
        };
        Ok(answers
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_absolute_and_checked() {
        assert_eq!(absolute("b.test").unwrap(), "b.test.");
        assert_eq!(absolute("b.test.").unwrap(), "b.test.");
        assert!(absolute("").is_err());
        assert!(absolute(".").is_err());
        assert!(absolute("a b").is_err());
        assert!(absolute("bücher.test").is_err());
    }

    /// Configured servers win; without them the system's file is used
    /// (an empty list); without that file, the local host, like libc.
    #[test]
    fn name_servers_fall_back_like_the_c_library() {
        let configured: SocketAddr = "192.0.2.53:5353".parse().unwrap();
        assert_eq!(effective_nameservers(&[configured], true), vec![configured]);
        assert_eq!(
            effective_nameservers(&[configured], false),
            vec![configured]
        );
        assert!(effective_nameservers(&[], true).is_empty());
        let local: Vec<String> = effective_nameservers(&[], false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(local, vec!["127.0.0.1:53", "[::1]:53"]);
    }

    /// Without `/etc/resolv.conf` the resolver still builds.
    #[tokio::test]
    async fn builds_with_the_local_fallback() {
        let servers = effective_nameservers(&[], false);
        assert!(HickoryDns::new(&servers, Duration::from_secs(1)).is_ok());
    }
}
