//! When a password may be sent without TLS.
//!
//! Mail passwords must not cross the network in clear: before TLS the
//! protocols hide their password mechanisms (IMAP LOGINDISABLED, no SMTP
//! AUTH, no POP3 USER) and refuse them if used anyway. Two exceptions,
//! both explicit in the configuration:
//! - `allow_plaintext`: the operator accepts clear-text passwords (the
//!   development profile does, for its loopback listeners);
//! - `trust_loopback`: a client connected from a loopback address talks
//!   to us inside this machine; no network sees its password (Dovecot
//!   treats such connections as secure for the same reason).

use std::net::IpAddr;

/// The clear-text password policy of the process. The default refuses
/// clear-text passwords everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaintextPolicy {
    /// Accept passwords before TLS from anywhere.
    pub allow_plaintext: bool,
    /// Accept passwords before TLS from loopback clients.
    pub trust_loopback: bool,
}

impl PlaintextPolicy {
    /// Whether a client at `peer` may send a password on this connection;
    /// `tls` says whether the connection is under TLS.
    pub fn permits(&self, tls: bool, peer: IpAddr) -> bool {
        tls || self.allow_plaintext || (self.trust_loopback && peer.to_canonical().is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let lo: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let strict = PlaintextPolicy {
            allow_plaintext: false,
            trust_loopback: false,
        };
        assert!(strict.permits(true, remote));
        assert!(!strict.permits(false, remote));
        assert!(!strict.permits(false, lo));
        // The default is the strict policy: no clear-text passwords at all.
        assert_eq!(PlaintextPolicy::default(), strict);
        let loopback = PlaintextPolicy {
            allow_plaintext: false,
            trust_loopback: true,
        };
        assert!(loopback.permits(false, lo));
        assert!(!loopback.permits(false, remote));
        let open = PlaintextPolicy {
            allow_plaintext: true,
            trust_loopback: false,
        };
        assert!(open.permits(false, remote));
    }
}
