//! Capability `dns` on hickory-resolver: [`HickoryResolver`], what the
//! server plugs in (the same name servers as the relay, `[relay]
//! nameservers`, and their cache).
//!
//! A, AAAA, MX, TXT and PTR; `not-found` for NXDOMAIN and for a name
//! without records of the type (NODATA), `temporary` for everything else
//! (time-out, SERVFAIL, no server reachable), so a plugin can tell "listed
//! nowhere" from "could not ask". At most [`MAX_ANSWERS`] answers are
//! returned; the number of look-ups in one hook call is bounded by
//! [`MAX_LOOKUPS_PER_CALL`] (checked in the capability), and one look-up
//! that takes longer than [`LOOKUP_TIMEOUT`] answers `temporary` (the
//! resolver's own time-out, 5 s with two attempts, is made for the relay,
//! not for a hook waiting in an SMTP session).

use std::net::IpAddr;

use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::caps::{DnsError, RecordType, Resolver};

/// Most answers handed to a plugin per look-up.
pub const MAX_ANSWERS: usize = 64;
/// Most look-ups in one hook call; more answer `temporary`.
pub const MAX_LOOKUPS_PER_CALL: u32 = 32;
/// Longest wait for one look-up.
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// [`Resolver`] on a hickory [`TokioResolver`].
pub struct HickoryResolver {
    resolver: TokioResolver,
}

impl HickoryResolver {
    /// Plugin look-ups through `resolver` (sharing its cache).
    pub fn new(resolver: TokioResolver) -> HickoryResolver {
        HickoryResolver { resolver }
    }
}

/// `name` as an absolute name (no search list), or why not.
fn absolute(name: &str) -> Result<String, DnsError> {
    let trimmed = name.trim_end_matches('.');
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 253
        && trimmed.split('.').all(|l| (1..=63).contains(&l.len()))
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(format!("{trimmed}."))
    } else {
        Err(DnsError::InvalidName)
    }
}

fn classify(e: NetError) -> DnsError {
    if e.is_nx_domain() || e.is_no_records_found() {
        DnsError::NotFound
    } else {
        DnsError::Temporary(e.to_string())
    }
}

fn host_name(name: &hickory_resolver::proto::rr::Name) -> String {
    name.to_ascii()
        .to_lowercase()
        .trim_end_matches('.')
        .to_string()
}

fn text(data: &RData) -> Option<String> {
    Some(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::MX(mx) => format!("{} {}", mx.preference, host_name(&mx.exchange)),
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|part| String::from_utf8_lossy(part))
            .collect::<String>(),
        RData::PTR(p) => host_name(&p.0),
        _ => return None,
    })
}

#[async_trait::async_trait]
impl Resolver for HickoryResolver {
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Vec<String>, DnsError> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.ask(name, kind)).await {
            Ok(answer) => answer,
            Err(_) => Err(DnsError::Temporary(format!(
                "no answer within {} ms",
                LOOKUP_TIMEOUT.as_millis()
            ))),
        }
    }
}

impl HickoryResolver {
    async fn ask(&self, name: &str, kind: RecordType) -> Result<Vec<String>, DnsError> {
        let answers: Vec<RData> = match kind {
            RecordType::Ptr => {
                let ip: IpAddr = name.parse().map_err(|_| DnsError::InvalidName)?;
                let l = self.resolver.reverse_lookup(ip).await.map_err(classify)?;
                l.answers().iter().map(|r| r.data.clone()).collect()
            }
            RecordType::A => {
                let n = absolute(name)?;
                let l = self.resolver.ipv4_lookup(n).await.map_err(classify)?;
                l.answers().iter().map(|r| r.data.clone()).collect()
            }
            RecordType::Aaaa => {
                let n = absolute(name)?;
                let l = self.resolver.ipv6_lookup(n).await.map_err(classify)?;
                l.answers().iter().map(|r| r.data.clone()).collect()
            }
            RecordType::Mx => {
                let n = absolute(name)?;
                let l = self.resolver.mx_lookup(n).await.map_err(classify)?;
                l.answers().iter().map(|r| r.data.clone()).collect()
            }
            RecordType::Txt => {
                let n = absolute(name)?;
                let l = self.resolver.txt_lookup(n).await.map_err(classify)?;
                l.answers().iter().map(|r| r.data.clone()).collect()
            }
        };
        let out: Vec<String> = answers.iter().filter_map(text).take(MAX_ANSWERS).collect();
        if out.is_empty() {
            // Only CNAMEs or records of another type: nothing of this one.
            return Err(DnsError::NotFound);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(
            absolute("2.0.0.127.zen.test").unwrap(),
            "2.0.0.127.zen.test."
        );
        assert_eq!(absolute("b.test.").unwrap(), "b.test.");
        for bad in ["", ".", "a b", "a..b", &"x".repeat(64), "bücher.test"] {
            assert_eq!(absolute(bad), Err(DnsError::InvalidName), "{bad}");
        }
    }
}
