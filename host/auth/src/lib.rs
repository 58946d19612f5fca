//! Authentication shared by every protocol.
//!
//! # Role
//! SMTP AUTH, POP3 USER/PASS and AUTH, IMAP LOGIN and AUTHENTICATE all end
//! in [`Authenticator::authenticate`]. Keeping one authenticator for the
//! whole process means one place that:
//! - verifies Argon2id hashes off the async workers (they cost tens of
//!   milliseconds of CPU each);
//! - costs the same for an unknown account as for a wrong password, and
//!   answers both the same way, so nobody learns which accounts exist;
//! - slows down failed attempts per client address and per account, with a
//!   delay that doubles with each failure, and refuses for a while once too
//!   many failures piled up.
//!
//! # Layout
//! - [`sasl`]: SASL PLAIN and LOGIN (RFC 4616): decoding and
//!   [`sasl::SaslExchange`], the server side of one exchange.
//! - [`limiter`]: the failure counters.
//! - [`plaintext`]: [`PlaintextPolicy`], when a password may be sent
//!   without TLS ([`Authenticator::plaintext_permitted`]).
#![forbid(unsafe_code)]

pub mod limiter;
pub mod plaintext;
pub mod sasl;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_store::{password, Account, Store};

pub use limiter::{FailureLimiter, LimiterSettings};
pub use plaintext::PlaintextPolicy;

/// What an authentication attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password is right; here is the account.
    Success(Account),
    /// Wrong address or wrong password (never says which).
    Failed,
    /// Too many recent failures from this client or for this account; try
    /// again later. Protocols answer with a temporary error.
    Blocked,
}

/// Verifies credentials for all protocols.
pub struct Authenticator {
    store: Arc<dyn Store>,
    limiter: FailureLimiter,
    plaintext: PlaintextPolicy,
}

impl Authenticator {
    /// An authenticator over `store` with the given failure limits.
    pub fn new(store: Arc<dyn Store>, settings: LimiterSettings) -> Authenticator {
        Authenticator {
            store,
            limiter: FailureLimiter::new(settings),
            plaintext: PlaintextPolicy::default(),
        }
    }

    /// The same authenticator with another clear-text policy.
    pub fn with_plaintext_policy(mut self, policy: PlaintextPolicy) -> Authenticator {
        self.plaintext = policy;
        self
    }

    /// Whether a client at `client` may send a password on a connection
    /// that is (`tls`) or is not under TLS. Every protocol asks this
    /// before it advertises or accepts a password mechanism.
    pub fn plaintext_permitted(&self, tls: bool, client: IpAddr) -> bool {
        self.plaintext.permits(tls, client)
    }

    /// Checks `username` (a full address) and `password` for a client at
    /// `client`. On failure this waits out the failure delay before it
    /// returns, so the caller can answer at once.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> AuthOutcome {
        let username = username.trim().to_ascii_lowercase();
        if self.limiter.is_blocked(client, &username) {
            tracing::warn!(client = %client, user = %username, "authentication refused: too many recent failures");
            return AuthOutcome::Blocked;
        }
        let account = match self.store.account(&username).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "authentication: store lookup failed");
                None
            }
        };
        let hash = account
            .as_ref()
            .map(|a| a.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_string());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || password::verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        match account {
            Some(account) if ok => {
                self.limiter.record_success(client, &username);
                AuthOutcome::Success(account)
            }
            _ => {
                let delay = self.limiter.record_failure(client, &username);
                tracing::warn!(client = %client, user = %username, delay_ms = delay.as_millis() as u64, "authentication failed");
                tokio::time::sleep(delay).await;
                AuthOutcome::Failed
            }
        }
    }

    /// The failure delay currently applied (for tests and logs).
    pub fn base_delay(&self) -> Duration {
        self.limiter.settings().base_delay
    }
}
