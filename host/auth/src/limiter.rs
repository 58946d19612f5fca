//! Counting failed authentications per client address and per account.
//!
//! Each failure doubles the delay before the next answer (from
//! `base_delay` up to `max_delay`); after `max_failures` failures within
//! `window`, further attempts from that address or for that account are
//! refused outright until the window has passed. A success clears the
//! counters of that address and account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Settings of the failure limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Delay after the first failure.
    pub base_delay: Duration,
    /// The delay never grows beyond this.
    pub max_delay: Duration,
    /// Failures within `window` after which attempts are refused.
    pub max_failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            max_failures: 10,
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    first: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(IpAddr),
    Account(String),
}

/// Failure counters for the whole process.
#[derive(Debug)]
pub struct FailureLimiter {
    settings: LimiterSettings,
    counters: Mutex<HashMap<Key, Counter>>,
}

/// How many counters are kept before stale ones are swept.
const SWEEP_THRESHOLD: usize = 10_000;

impl FailureLimiter {
    /// A limiter with these settings.
    pub fn new(settings: LimiterSettings) -> FailureLimiter {
        FailureLimiter {
            settings,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &LimiterSettings {
        &self.settings
    }

    fn failures(&self, map: &HashMap<Key, Counter>, key: &Key, now: Instant) -> u32 {
        match map.get(key) {
            Some(c) if now.duration_since(c.first) < self.settings.window => c.failures,
            _ => 0,
        }
    }

    /// Whether attempts from `client` or for `account` are refused now.
    pub fn is_blocked(&self, client: IpAddr, account: &str) -> bool {
        let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let worst = self
            .failures(&map, &Key::Client(client), now)
            .max(self.failures(&map, &Key::Account(account.to_string()), now));
        worst >= self.settings.max_failures
    }

    /// Records a failure and returns how long to wait before answering.
    pub fn record_failure(&self, client: IpAddr, account: &str) -> Duration {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() > SWEEP_THRESHOLD {
            let window = self.settings.window;
            map.retain(|_, c| now.duration_since(c.first) < window);
        }
        let mut worst = 0;
        for key in [Key::Client(client), Key::Account(account.to_string())] {
            let c = map.entry(key).or_insert(Counter {
                failures: 0,
                first: now,
            });
            if now.duration_since(c.first) >= self.settings.window {
                *c = Counter {
                    failures: 0,
                    first: now,
                };
            }
            c.failures += 1;
            worst = worst.max(c.failures);
        }
        let factor = 1u32
            .checked_shl(worst.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.settings
            .base_delay
            .saturating_mul(factor)
            .min(self.settings.max_delay)
    }

    /// Clears the counters of `client` and `account` after a success.
    pub fn record_success(&self, client: IpAddr, account: &str) {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Key::Client(client));
        map.remove(&Key::Account(account.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimiterSettings {
        LimiterSettings {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_failures: 4,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn delay_doubles_then_caps_then_blocks() {
        let l = FailureLimiter::new(settings());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(l.record_failure(ip, "a@x"), Duration::from_millis(10));
        assert_eq!(l.record_failure(ip, "a@x"), Duration::from_millis(20));
        assert_eq!(l.record_failure(ip, "a@x"), Duration::from_millis(40));
        assert!(!l.is_blocked(ip, "a@x"));
        assert_eq!(l.record_failure(ip, "a@x"), Duration::from_millis(50));
        assert!(l.is_blocked(ip, "a@x"));
        // The account is blocked from any address, the address for any account.
        assert!(l.is_blocked("127.0.0.2".parse().unwrap(), "a@x"));
        assert!(l.is_blocked(ip, "b@x"));
        l.record_success(ip, "a@x");
        assert!(!l.is_blocked(ip, "a@x"));
    }
}
