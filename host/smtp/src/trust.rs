//! Trusted networks (`[relay] trusted_networks`, Postfix's `mynetworks`):
//! the client addresses of our own hosts (cron, web applications,
//! printers, `mailgate sendmail`), which may send mail to other domains
//! without AUTH.
//!
//! # What trust changes
//! On the `smtp` and `submission` listeners ([`crate::Role::Mx`],
//! [`crate::Role::Submission`]) a client whose address is in the list:
//! - may name recipients in other domains without AUTH (RCPT, instead of
//!   `550 5.7.1 Relaying denied`);
//! - may start a transaction on `submission` without AUTH (instead of
//!   `530 5.7.0`), with any envelope sender (as Postfix's `mynetworks`
//!   does; after AUTH the user's sender rules apply as for anyone);
//! - is not asked whether its sender domain exists
//!   (`[inbound] reject_unknown_sender_domain`);
//! - is checked for SPF, DKIM and DMARC like any client (the
//!   `Authentication-Results:` field says what was found), but a DMARC
//!   `p=reject` failure is not refused.
//!
//! Everything else is unchanged: limits, sizes, plugins, recipients'
//! quotas. LMTP never relays, trusted or not.
//!
//! # Default
//! Empty: nobody is trusted, not even loopback. Postfix's default
//! (`mynetworks_style = host` in Postfix 3, the server's own addresses)
//! trusts every local process, which on a shared or containerised host
//! is more than an administrator may expect; listing `127.0.0.1/32` and
//! `::1/128` is one line.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::context::Role;
use crate::session::Session;

/// A `trusted_networks` entry that is neither an address nor a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR range (e.g. \"192.0.2.0/24\", \"::1/128\")")]
pub struct BadNetwork(pub String);

/// The networks whose clients may relay without AUTH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedNetworks(Vec<IpNet>);

impl TrustedNetworks {
    /// Parses `"10.0.0.0/8"`, `"fd00::/8"`, `"192.0.2.7"` (one address),
    /// `"::1"`. Host bits under the prefix are ignored (`10.1.2.3/8` is
    /// `10.0.0.0/8`), as Postfix does.
    pub fn parse(entries: &[String]) -> Result<TrustedNetworks, BadNetwork> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| BadNetwork(e.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(TrustedNetworks)
    }

    /// Whether `ip` is in one of the networks. An IPv4-mapped IPv6
    /// address (`::ffff:192.0.2.7`, what a dual-stack socket reports)
    /// counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Session {
    /// Whether this client is one of our own hosts: its address is in
    /// `trusted_networks` and the listener is `smtp` or `submission`
    /// (LMTP never relays).
    pub(crate) fn trusted(&self) -> bool {
        matches!(self.ctx.role, Role::Mx | Role::Submission)
            && self.ctx.trusted_networks.contains(self.peer.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> TrustedNetworks {
        TrustedNetworks::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn addresses_and_ranges() {
        let t = nets(&[
            "127.0.0.2/32",
            "192.0.2.0/24",
            "fd00::/8",
            "::1",
            "10.1.2.3/8",
        ]);
        assert!(t.contains("127.0.0.2".parse().unwrap()));
        assert!(!t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("192.0.2.200".parse().unwrap()));
        assert!(!t.contains("192.0.3.1".parse().unwrap()));
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(!t.contains("::2".parse().unwrap()));
        // Host bits are dropped: the whole /8.
        assert!(t.contains("10.200.0.1".parse().unwrap()));
        // A dual-stack socket's view of an IPv4 client.
        assert!(t.contains("::ffff:192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn empty_trusts_nobody() {
        let t = TrustedNetworks::default();
        assert!(t.is_empty());
        assert!(!t.contains("127.0.0.1".parse().unwrap()));
        assert!(!t.contains("::1".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["10.0.0.0/33", "localhost", "", "192.0.2.0/24 10.0.0.0/8"] {
            let err = TrustedNetworks::parse(&[bad.to_string()]).unwrap_err();
            assert_eq!(err, BadNetwork(bad.trim().to_string()));
        }
    }
}
