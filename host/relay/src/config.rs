//! The relay's settings: the `[relay]` and `[queue]` sections of the
//! configuration file, as plain data (the binary parses the file; every
//! field has a default, so `RelayConfig::default()` is a working relay).
//!
//! ```toml
//! [relay]
//! hostname = "mail.a.test"          # EHLO name (defaults to the server's)
//! nameservers = ["127.0.0.1:5353"]  # empty: /etc/resolv.conf
//! port = 25
//! source_ip = "127.0.0.2"
//! smarthost = "smtp.provider.test:587"   # optional, all domains
//! require_tls = ["bank.test"]       # verified TLS or no delivery
//! mta_sts = true                    # RFC 8461 policies of the receivers
//! tls_ca_file = "/etc/mailgate/ca.pem"  # extra roots for verified TLS
//!
//! [queue]
//! retry = ["5m", "15m", "1h", "4h"] # the last step repeats
//! max_age = "5d"
//! delay_warning = "4h"              # optional
//! max_per_destination = 4
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A duration that is not `<number><unit>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {0:?}: expected a number and a unit (s, m, h, d), e.g. \"15m\"")]
pub struct BadDuration(pub String);

/// Parses `"30s"`, `"15m"`, `"4h"`, `"5d"` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| BadDuration(s.to_string()))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(BadDuration(s.to_string())),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| BadDuration(s.to_string()))
}

/// A relay host that takes all outbound mail instead of the MX hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    /// Host name or IP address.
    pub host: String,
    /// Port (587 for submission, 25 for a plain relay).
    pub port: u16,
    /// `AUTH PLAIN` credentials, sent only over TLS.
    pub auth: Option<(String, String)>,
    /// Only these domains go through it (empty: every domain).
    pub domains: BTreeSet<String>,
}

/// How hard to insist on TLS with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsPolicy {
    /// STARTTLS when offered, any certificate; plain text otherwise
    /// (RFC 3207 opportunistic TLS, the default for MX delivery). When the
    /// handshake itself fails, the same host is tried once more in plain
    /// text (Postfix's `may` level does the same).
    Opportunistic,
    /// STARTTLS required with a certificate valid for the host name; a
    /// temporary failure otherwise (a failed handshake is never retried in
    /// plain text: the next host is tried, with TLS required too, and the
    /// recipients are deferred if none succeeds).
    RequireVerified,
    /// Never STARTTLS (tests, broken peers).
    Disabled,
}

/// The retry schedule (RFC 5321 §4.5.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The wait after the first, second, ... failed attempt; the last step
    /// repeats. Never empty.
    pub steps: Vec<Duration>,
    /// After this long in the queue a message still undelivered bounces.
    pub max_age: Duration,
    /// Send the sender a delay warning after this long (`None`: never).
    pub delay_warning: Option<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            steps: [300, 900, 3600, 14_400]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_age: Duration::from_secs(5 * 86_400),
            delay_warning: None,
        }
    }
}

impl RetrySchedule {
    /// The wait after `attempts` failed attempts (1 for the first).
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.steps.len().saturating_sub(1));
        self.steps
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }
}

/// Everything the relay needs to know.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Our name in EHLO.
    pub hostname: String,
    /// DNS servers to ask; empty for the system's.
    pub nameservers: Vec<SocketAddr>,
    /// DNS query timeout.
    pub dns_timeout: Duration,
    /// The port of the next hops (25; tests use their own).
    pub port: u16,
    /// The local address outgoing connections come from.
    pub source_ip: Option<IpAddr>,
    /// Smarthost routing, if configured.
    pub smarthost: Option<Smarthost>,
    /// Domains that get [`TlsPolicy::RequireVerified`].
    pub require_tls: BTreeSet<String>,
    /// The policy for every other domain.
    pub default_tls: TlsPolicy,
    /// Look up and apply the receiving domains' MTA-STS policies
    /// (RFC 8461) for mail routed by MX.
    pub mta_sts: bool,
    /// The HTTPS port of `mta-sts.<domain>` (443; tests only change it).
    pub mta_sts_port: u16,
    /// The bound on one MTA-STS policy fetch.
    pub mta_sts_timeout: Duration,
    /// Retries.
    pub retry: RetrySchedule,
    /// Deliveries at once to one destination domain.
    pub max_per_destination: usize,
    /// Deliveries at once in all.
    pub max_concurrent: usize,
    /// TCP connect timeout (RFC 5321 §4.5.3.2 leaves it to us).
    pub connect_timeout: Duration,
    /// Timeout per command reply; RFC 5321 §4.5.3.2 asks for 5 minutes
    /// for most commands and 10 minutes after the final dot. One value
    /// (the longer) keeps the code simple.
    pub command_timeout: Duration,
    /// How often the runner looks at the store even without a wake-up
    /// (a `queue flush` from the CLI runs in another process).
    pub poll_interval: Duration,
    /// How long an idle connection is kept for the next message to the
    /// same host.
    pub idle_reuse: Duration,
    /// How long this node's claim on a message lasts in a store that
    /// several nodes share (PostgreSQL): renewed every third of it while
    /// an attempt runs, so it bounds how long a message waits after its
    /// node died, not how long an attempt may take.
    pub lease: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            hostname: "localhost".into(),
            nameservers: Vec::new(),
            dns_timeout: Duration::from_secs(5),
            port: 25,
            source_ip: None,
            smarthost: None,
            require_tls: BTreeSet::new(),
            default_tls: TlsPolicy::Opportunistic,
            mta_sts: true,
            mta_sts_port: 443,
            mta_sts_timeout: Duration::from_secs(10),
            retry: RetrySchedule::default(),
            max_per_destination: 4,
            max_concurrent: 32,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(30),
            idle_reuse: Duration::from_secs(5),
            lease: mailgate_store::queue::DEFAULT_LEASE,
        }
    }
}

impl RelayConfig {
    /// The TLS policy for mail to `domain`.
    pub fn tls_policy(&self, domain: &str) -> TlsPolicy {
        if self.require_tls.contains(&domain.to_lowercase()) {
            TlsPolicy::RequireVerified
        } else {
            self.default_tls
        }
    }
    /// The smarthost for `domain`, if it goes through one.
    pub fn smarthost_for(&self, domain: &str) -> Option<&Smarthost> {
        self.smarthost
            .as_ref()
            .filter(|s| s.domains.is_empty() || s.domains.contains(&domain.to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5d").unwrap(), Duration::from_secs(432_000));
        assert_eq!(parse_duration(" 7 ").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        for bad in ["", "m", "5w", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn last_retry_step_repeats() {
        let r = RetrySchedule::default();
        assert_eq!(r.delay_after(1), Duration::from_secs(300));
        assert_eq!(r.delay_after(4), Duration::from_secs(14_400));
        assert_eq!(r.delay_after(40), Duration::from_secs(14_400));
        assert_eq!(r.delay_after(0), Duration::from_secs(300));
    }
}
