//! Authentication shared by every protocol.
//!
//! # Role
//! SMTP AUTH, POP3 USER/PASS and AUTH, IMAP LOGIN and AUTHENTICATE all end
//! in [`Authenticator::authenticate`]. Keeping one authenticator for the
//! whole process means one place that:
//! - limits failed logins per client and per account, attempts still
//!   being checked included, so that a burst of parallel guesses tests no
//!   more passwords than a slow sequence would, and so that a stranger
//!   cannot lock an account's owner out ([`limiter`]);
//! - remembers verified credentials as keyed hashes, so that a repeated
//!   login costs microseconds instead of an Argon2id hash ([`cache`]);
//! - verifies Argon2id hashes off the async workers, at most one per core
//!   at a time: a burst of logins queues instead of taking every thread;
//! - costs the same for an unknown account as for a wrong password, and
//!   answers both the same way, so nobody learns which accounts exist.
//!
//! # Order of a login
//! 1. The limiter admits the attempt, refuses it, or makes it wait while
//!    too many attempts from the same client or for the same account are
//!    in flight. Nothing below runs for a refused attempt.
//! 2. The account and its stored hash are read from the store (every time:
//!    a password changed or an account removed by another process counts
//!    at once).
//! 3. The cache is asked; on a miss, Argon2id verifies (for an unknown
//!    account, against a dummy hash, so it costs the same).
//! 4. A success is cached and makes the client trusted for the account; a
//!    failure is counted, and answered after the failure delay.
//! 5. A success is recorded as the account's last login (`mailgate user
//!    show`), in the background and at most once per account per
//!    [`LOGIN_RECORD_INTERVAL`], so that a client reconnecting in a loop
//!    costs no store write per login.
//!
//! # Layout
//! - [`sasl`]: SASL PLAIN and LOGIN (RFC 4616): decoding and
//!   [`sasl::SaslExchange`], the server side of one exchange.
//! - [`limiter`]: the failure counters, attempts in flight, trusted
//!   clients (kept in the store too when nodes share it:
//!   [`Authenticator::with_shared_failures`]).
//! - [`cache`]: the verified-credential cache.
//! - [`plaintext`]: [`PlaintextPolicy`], when a password may be sent
//!   without TLS ([`Authenticator::plaintext_permitted`]).
#![forbid(unsafe_code)]

pub mod cache;
pub mod limiter;
pub mod plaintext;
pub mod sasl;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_store::{password, Account, Store};
use tokio::sync::Semaphore;

pub use cache::CredentialCache;
pub use limiter::{FailureLimiter, LimiterSettings};
pub use plaintext::PlaintextPolicy;

/// How often at most one account's last login is written to the store
/// (`user show` is accurate to this).
pub const LOGIN_RECORD_INTERVAL: Duration = Duration::from_secs(60);

/// The credential cache's lifetime when none is configured (the
/// configuration's default, `[auth] cache_ttl = "1h"`).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(3600);

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
    cache: CredentialCache,
    /// One permit per Argon2id verification that may run at once.
    hashing: Semaphore,
    plaintext: PlaintextPolicy,
    /// When each account's last login was last written (bounded by the
    /// number of accounts that log in).
    logins_written: Mutex<HashMap<String, Instant>>,
}

impl Authenticator {
    /// An authenticator over `store` with the given failure limits and a
    /// credential cache of [`DEFAULT_CACHE_TTL`].
    pub fn new(store: Arc<dyn Store>, settings: LimiterSettings) -> Authenticator {
        Authenticator {
            store,
            limiter: FailureLimiter::new(settings),
            cache: CredentialCache::new(DEFAULT_CACHE_TTL),
            hashing: Semaphore::new(password::max_parallel_verifications()),
            plaintext: PlaintextPolicy::default(),
            logins_written: Mutex::new(HashMap::new()),
        }
    }

    /// The same authenticator counting failed logins in `shared` as well
    /// (a store several nodes share: [`mailgate_store::Backend::login_failures`]),
    /// so that failures on every node add up to one limit.
    pub fn with_shared_failures(
        mut self,
        shared: Arc<dyn mailgate_store::LoginFailures>,
    ) -> Authenticator {
        self.limiter = self.limiter.with_shared(shared);
        self
    }

    /// The same authenticator with another clear-text policy.
    pub fn with_plaintext_policy(mut self, policy: PlaintextPolicy) -> Authenticator {
        self.plaintext = policy;
        self
    }

    /// The same authenticator remembering verified credentials for `ttl`
    /// (zero: not at all).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Authenticator {
        self.cache = CredentialCache::new(ttl);
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
    /// returns, so the caller can answer at once. Counted in
    /// `mailgate_auth_attempts_total` with protocol and mechanism
    /// `unknown`: [`Authenticator::authenticate_via`] names them.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> AuthOutcome {
        let via = (None, mailgate_metrics::Mechanism::Unknown);
        self.authenticate_via(via, username, password, client).await
    }

    /// [`Authenticator::authenticate`], counted under the protocol and
    /// mechanism the client used.
    pub async fn authenticate_via(
        &self,
        (protocol, mechanism): (
            Option<mailgate_metrics::Protocol>,
            mailgate_metrics::Mechanism,
        ),
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> AuthOutcome {
        let outcome = self.check(username, password, client).await;
        let result = match &outcome {
            AuthOutcome::Success(_) => mailgate_metrics::AuthResult::Success,
            AuthOutcome::Failed => mailgate_metrics::AuthResult::Failure,
            AuthOutcome::Blocked => mailgate_metrics::AuthResult::Blocked,
        };
        mailgate_metrics::auth_attempt(protocol, mechanism, result);
        outcome
    }

    async fn check(&self, username: &str, password: &str, client: IpAddr) -> AuthOutcome {
        let username = username.trim().to_ascii_lowercase();
        let Some(attempt) = self.limiter.admit(client, &username).await else {
            tracing::warn!(client = %client, user = %username, "authentication refused: too many recent failures");
            return AuthOutcome::Blocked;
        };
        let account = match self.store.account(&username).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "authentication: store lookup failed");
                None
            }
        };
        let ok = match &account {
            Some(a) if self.cache.contains(&username, &a.password_hash, password) => true,
            Some(a) => {
                let ok = self.verify(password, a.password_hash.clone()).await;
                if ok {
                    self.cache.insert(&username, &a.password_hash, password);
                }
                ok
            }
            None => {
                self.verify(password, password::dummy_hash().to_string())
                    .await;
                false
            }
        };
        match account {
            Some(account) if ok => {
                attempt.succeeded().await;
                self.record_login(&account.address, client);
                AuthOutcome::Success(account)
            }
            _ => {
                let delay = attempt.failed().await;
                tracing::warn!(client = %client, user = %username, delay_ms = delay.as_millis() as u64, "authentication failed");
                tokio::time::sleep(delay).await;
                AuthOutcome::Failed
            }
        }
    }

    /// Writes the account's last login in the background, unless it was
    /// written less than [`LOGIN_RECORD_INTERVAL`] ago. A failed write (a
    /// full disk) is logged and forgotten: it never fails the login.
    fn record_login(&self, address: &str, client: IpAddr) {
        let now = Instant::now();
        {
            let Ok(mut written) = self.logins_written.lock() else {
                return;
            };
            if written
                .get(address)
                .is_some_and(|t| now.duration_since(*t) < LOGIN_RECORD_INTERVAL)
            {
                return;
            }
            written.insert(address.to_string(), now);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let address = address.to_string();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        runtime.spawn(async move {
            if let Err(e) = store.record_login(&address, at, &client.to_string()).await {
                tracing::debug!(error = %e, "authentication: last login not recorded");
            }
        });
    }

    /// Verifies `password` against `hash` with Argon2id on a blocking
    /// thread, once a hashing permit is free.
    async fn verify(&self, password: &str, hash: String) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let password = password.to_string();
        tokio::task::spawn_blocking(move || password::verify_password(&password, &hash))
            .await
            .unwrap_or(false)
    }

    /// The failure delay currently applied (for tests and logs).
    pub fn base_delay(&self) -> Duration {
        self.limiter.settings().base_delay
    }

    /// How long verified credentials are remembered (zero: not at all).
    pub fn cache_ttl(&self) -> Duration {
        self.cache.ttl()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_store::sqlite::SqliteStore;

    const USER: &str = "alice@example.org";

    async fn fixture(
        settings: LimiterSettings,
    ) -> (tempfile::TempDir, Arc<dyn Store>, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("example.org").await.unwrap();
        store
            .create_account(USER, &password::hash_password("right"))
            .await
            .unwrap();
        let auth = Authenticator::new(store.clone(), settings);
        (dir, store, auth)
    }

    fn fast(max_failures: u32) -> LimiterSettings {
        LimiterSettings {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_failures,
            window: Duration::from_secs(60),
        }
    }

    fn client(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[tokio::test]
    async fn the_cache_follows_the_stored_hash() {
        let (_dir, store, auth) = fixture(fast(100)).await;
        assert!(matches!(
            auth.authenticate(USER, "right", client(1)).await,
            AuthOutcome::Success(_)
        ));
        assert_eq!(auth.cache.len(), 1);
        assert!(matches!(
            auth.authenticate("Alice@Example.org", "right", client(1))
                .await,
            AuthOutcome::Success(_)
        ));
        assert_eq!(
            auth.authenticate(USER, "wrong", client(1)).await,
            AuthOutcome::Failed
        );
        // A new password (set by another process, say): the old one fails
        // at once, the new one works.
        store
            .set_password_hash(USER, &password::hash_password("new"))
            .await
            .unwrap();
        assert_eq!(
            auth.authenticate(USER, "right", client(1)).await,
            AuthOutcome::Failed
        );
        assert!(matches!(
            auth.authenticate(USER, "new", client(1)).await,
            AuthOutcome::Success(_)
        ));
        store.delete_account(USER).await.unwrap();
        assert_eq!(
            auth.authenticate(USER, "new", client(1)).await,
            AuthOutcome::Failed
        );
    }

    #[tokio::test]
    async fn no_cache_with_a_zero_ttl() {
        let (_dir, _store, auth) = fixture(fast(100)).await;
        let auth = auth.with_cache_ttl(Duration::ZERO);
        for _ in 0..2 {
            assert!(matches!(
                auth.authenticate(USER, "right", client(1)).await,
                AuthOutcome::Success(_)
            ));
        }
        assert!(auth.cache.is_empty());
        assert_eq!(auth.cache_ttl(), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parallel_burst_tests_no_more_than_the_limit() {
        let (_dir, _store, auth) = fixture(fast(3)).await;
        let auth = Arc::new(auth);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let auth = auth.clone();
            tasks.spawn(async move { auth.authenticate(USER, "wrong", client(9)).await });
        }
        let mut outcomes = Vec::new();
        while let Some(o) = tasks.join_next().await {
            outcomes.push(o.unwrap());
        }
        let failed = outcomes
            .iter()
            .filter(|o| **o == AuthOutcome::Failed)
            .count();
        let blocked = outcomes
            .iter()
            .filter(|o| **o == AuthOutcome::Blocked)
            .count();
        assert_eq!((failed, blocked), (3, 17), "{outcomes:?}");
        assert_eq!(
            auth.authenticate(USER, "right", client(9)).await,
            AuthOutcome::Blocked
        );
        // The account, too, is refused from an address it never logged in
        // from.
        assert_eq!(
            auth.authenticate(USER, "right", client(10)).await,
            AuthOutcome::Blocked
        );
    }
}
