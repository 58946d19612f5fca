//! `[inbound] reject_unknown_sender_domain` (Postfix's check of the same
//! name): at MAIL on the `smtp` listener, a sender whose domain cannot
//! receive mail (so cannot receive our bounce either) is refused.
//!
//! # The rule (RFC 5321 §5.1: where mail for a domain goes)
//! The domain is looked up for MX records, then, without any, for A and
//! AAAA records (the implicit MX):
//! - an MX, A or AAAA record: accepted;
//! - a null MX only (RFC 7505, `MX 0 .`): `550 5.7.27`, the domain says
//!   it takes no mail (RFC 7505 §4.2);
//! - NXDOMAIN, or the name exists with none of these (NODATA):
//!   `550 5.1.8 Sender address rejected: Domain not found`;
//! - a DNS failure (SERVFAIL, no answer within the time-out):
//!   `450 4.1.8`, so the client tries again later.
//!
//! # Not checked
//! `<>` (bounces), address literals (`user@[192.0.2.1]`: there is no name
//! to look up), senders in our own domains (`cmd/mail.rs` skips them),
//! authenticated clients and clients in `trusted_networks`, and the
//! `submission` and `lmtp` listeners. A domain in U-labels
//! (SMTPUTF8) is looked up in its A-label form.
//!
//! # Bounds
//! The MX and address lookups together take at most
//! [`SenderDomainCheck::timeout`] (`[inbound] timeout`); past it the
//! answer is `450 4.1.8`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_relay::{Dns, DnsError};
use mailgate_smtp_proto::{Host, Reply, ReversePath};

/// What DNS says about a sender domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderDomain {
    /// It has an MX, A or AAAA record.
    Exists,
    /// Its only MX is the null MX (RFC 7505).
    NullMx,
    /// NXDOMAIN, or no MX, A or AAAA record (NODATA).
    NotFound,
    /// The lookup failed for now; the reason, for the log.
    Temporary(String),
}

/// The sender-domain check of one listener: the resolver (`[relay]
/// nameservers`) and the bound on the lookups.
pub struct SenderDomainCheck {
    dns: Arc<dyn Dns>,
    /// The bound on the MX and A/AAAA lookups together.
    pub timeout: Duration,
}

impl std::fmt::Debug for SenderDomainCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderDomainCheck")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SenderDomainCheck {
    /// A check asking `dns`, bounded by `timeout`.
    pub fn new(dns: Arc<dyn Dns>, timeout: Duration) -> SenderDomainCheck {
        SenderDomainCheck { dns, timeout }
    }

    /// What DNS says about `domain` (as sent: U-labels are converted).
    pub async fn look_up(&self, domain: &str) -> SenderDomain {
        let Ok(name) = idna::domain_to_ascii(domain) else {
            return SenderDomain::NotFound;
        };
        match tokio::time::timeout(self.timeout, look_up(self.dns.as_ref(), &name)).await {
            Ok(answer) => answer,
            Err(_) => {
                SenderDomain::Temporary(format!("no answer within {}s", self.timeout.as_secs()))
            }
        }
    }

    /// The refusal of `from`, or `None` when it may be used: `<>`, an
    /// address literal, or a domain that exists. Logs what it refuses,
    /// with the `client`'s address.
    pub async fn check(&self, client: IpAddr, from: &ReversePath) -> Option<Reply> {
        let ReversePath::Path(path) = from else {
            return None;
        };
        let Host::Domain(domain) = &path.mailbox.host else {
            return None;
        };
        let address = path.mailbox.to_string();
        let (code, class, subject, detail, text) = match self.look_up(domain).await {
            SenderDomain::Exists => return None,
            SenderDomain::NullMx => (550, 5, 7, 27, "Domain does not accept mail (null MX)"),
            SenderDomain::NotFound => (550, 5, 1, 8, "Domain not found"),
            SenderDomain::Temporary(reason) => {
                tracing::info!(%client, from = %address, %reason, "smtp: MAIL deferred: sender domain lookup failed");
                return Some(Reply::with_code(
                    450,
                    4,
                    1,
                    8,
                    format!("<{address}>: Sender address rejected: Domain not found (DNS lookup failed, try again later)"),
                ));
            }
        };
        tracing::info!(%client, from = %address, reason = text, "smtp: MAIL rejected: unknown sender domain");
        Some(Reply::with_code(
            code,
            class,
            subject,
            detail,
            format!("<{address}>: Sender address rejected: {text}"),
        ))
    }
}

/// MX first; without MX records, A and AAAA (RFC 5321 §5.1).
async fn look_up(dns: &dyn Dns, name: &str) -> SenderDomain {
    match dns.mx(name).await {
        Ok(mx) if mx.iter().any(|m| !m.exchange.is_empty()) => return SenderDomain::Exists,
        Ok(mx) if !mx.is_empty() => return SenderDomain::NullMx,
        Ok(_) => {}
        Err(e) => return from_error(e),
    }
    match dns.ips(name).await {
        Ok(ips) if !ips.is_empty() => SenderDomain::Exists,
        Ok(_) => SenderDomain::NotFound,
        Err(e) => from_error(e),
    }
}

fn from_error(e: DnsError) -> SenderDomain {
    match e {
        DnsError::NoSuchDomain(_) | DnsError::BadName(_) => SenderDomain::NotFound,
        DnsError::Temporary { reason, .. } => SenderDomain::Temporary(reason),
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use mailgate_relay::dns::MxRecord;

    use super::*;

    /// Answers from a table: `b.test` has an MX, `a-only.test` an A
    /// record, `null.test` a null MX, `nodata.test` neither, `slow.test`
    /// never answers, `broken.test` fails; the rest is NXDOMAIN.
    struct Table;

    #[async_trait]
    impl Dns for Table {
        async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
            let mx = |exchange: &str| MxRecord {
                preference: 10,
                exchange: exchange.into(),
            };
            match domain {
                "b.test" | "xn--bcher-kva.test" => Ok(vec![mx("mx.b.test")]),
                "null.test" => Ok(vec![mx("")]),
                "a-only.test" | "nodata.test" => Ok(vec![]),
                "slow.test" => std::future::pending().await,
                "broken.test" => Err(DnsError::Temporary {
                    name: domain.into(),
                    reason: "SERVFAIL".into(),
                }),
                _ => Err(DnsError::NoSuchDomain(domain.into())),
            }
        }

        async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
            match host {
                "a-only.test" => Ok(vec!["192.0.2.1".parse().unwrap()]),
                "nodata.test" => Ok(vec![]),
                _ => Err(DnsError::NoSuchDomain(host.into())),
            }
        }
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));

    fn check() -> SenderDomainCheck {
        SenderDomainCheck::new(Arc::new(Table), Duration::from_millis(200))
    }

    fn from(address: &str) -> ReversePath {
        let mailbox = mailgate_smtp_proto::parse_mailbox_str(address).unwrap();
        ReversePath::Path(mailgate_smtp_proto::Path {
            route: Vec::new(),
            mailbox,
        })
    }

    #[tokio::test]
    async fn each_answer_and_its_reply() {
        let c = check();
        assert_eq!(c.look_up("b.test").await, SenderDomain::Exists);
        assert_eq!(c.look_up("a-only.test").await, SenderDomain::Exists);
        assert_eq!(c.look_up("bücher.test").await, SenderDomain::Exists);
        assert_eq!(c.look_up("null.test").await, SenderDomain::NullMx);
        assert_eq!(c.look_up("nodata.test").await, SenderDomain::NotFound);
        assert_eq!(c.look_up("gone.test").await, SenderDomain::NotFound);
        assert!(matches!(
            c.look_up("broken.test").await,
            SenderDomain::Temporary(_)
        ));
        assert!(matches!(
            c.look_up("slow.test").await,
            SenderDomain::Temporary(_)
        ));

        let code = |r: Option<Reply>| r.map(|r| r.to_string());
        assert_eq!(code(c.check(CLIENT, &from("a@b.test")).await), None);
        assert_eq!(code(c.check(CLIENT, &ReversePath::Null).await), None);
        assert_eq!(code(c.check(CLIENT, &from("a@[192.0.2.1]")).await), None);
        let nx = code(c.check(CLIENT, &from("a@gone.test")).await).unwrap();
        assert!(
            nx.starts_with("550 5.1.8 <a@gone.test>: Sender address rejected: Domain not found"),
            "{nx}"
        );
        let null = code(c.check(CLIENT, &from("a@null.test")).await).unwrap();
        assert!(null.starts_with("550 5.7.27 "), "{null}");
        let temp = code(c.check(CLIENT, &from("a@broken.test")).await).unwrap();
        assert!(temp.starts_with("450 4.1.8 "), "{temp}");
    }
}
