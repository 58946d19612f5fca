//! Failed-login counts that several nodes share.
//!
//! The failure limiter of `mailgate-auth` counts failed logins per client
//! and per account in memory. On a store that several nodes share
//! (PostgreSQL), [`crate::Backend::login_failures`] hands it a
//! [`LoginFailures`] too: the counts and the clients an account logged in
//! from are then kept in the database, so that failures on every node add
//! up to one limit. A store used by one server alone (SQLite) has none:
//! the memory of the process is the whole count there.
//!
//! Clients and accounts are given as the limiter counts them: a client is
//! an IPv4 address or an IPv6 /64 network written as text, an account the
//! lower-cased name the client typed (it need not exist), cut to
//! [`MAX_KEY_LEN`] bytes.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreResult;

/// The longest client or account name kept (longer ones are cut at a
/// character boundary; an address is at most 254 bytes, so no two real
/// accounts share a cut name).
pub const MAX_KEY_LEN: usize = 512;

/// What the shared counts say about a client and an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginStanding {
    /// Failures from the client within the window.
    pub client_failures: u32,
    /// Failures for the account within the window, from any client.
    pub account_failures: u32,
    /// Whether the account logged in from the client within the trust
    /// period.
    pub trusted: bool,
}

/// Failed-login counts and trusted clients kept in the store.
///
/// A count covers a fixed window that starts at its first failure: once
/// `window` has passed since then, the next failure starts a new window
/// at one (as the in-memory limiter counts).
#[async_trait]
pub trait LoginFailures: Send + Sync {
    /// The counts for `client` and `account` within `window`, and whether
    /// `account` logged in from `client` within `trust_period`.
    async fn login_standing(
        &self,
        client: &str,
        account: &str,
        window: Duration,
        trust_period: Duration,
    ) -> StoreResult<LoginStanding>;

    /// Counts one failure for `client` and for `account`; returns both
    /// counts afterwards (client, account). Counts `max_failures` or more
    /// are kept until their window ends; when the table holds more than
    /// `max_rows` rows, the others may be dropped.
    async fn record_login_failure(
        &self,
        client: &str,
        account: &str,
        window: Duration,
        max_failures: u32,
        max_rows: usize,
    ) -> StoreResult<(u32, u32)>;

    /// Records that `account` logged in from `client` now; keeps the
    /// `keep` most recent clients per account, forgets those older than
    /// `trust_period`.
    async fn record_trusted_client(
        &self,
        client: &str,
        account: &str,
        keep: usize,
        trust_period: Duration,
    ) -> StoreResult<()>;
}

/// `key` cut to at most [`MAX_KEY_LEN`] bytes, at a character boundary.
pub fn cut_key(key: &str) -> &str {
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    let mut end = MAX_KEY_LEN;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_at_a_character_boundary() {
        assert_eq!(cut_key("a@x"), "a@x");
        let long = "é".repeat(400);
        let cut = cut_key(&long);
        assert!(cut.len() <= MAX_KEY_LEN && cut.len() >= MAX_KEY_LEN - 1);
        assert!(long.starts_with(cut));
    }
}
