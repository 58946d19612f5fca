//! Counting failed logins per client and per account, attempts in flight
//! included, without letting a stranger lock an account's owner out.
//!
//! # The rules
//! - **Per client.** A client is an IPv4 address, or the /64 network of an
//!   IPv6 address (one customer's allocation: an attacker with a /64 has
//!   2^64 addresses, not 2^64 chances). After `max_failures` failures
//!   within `window` (counted from the first of them), every login from
//!   that client is refused until the window has passed.
//! - **Per account.** After `max_failures` failures for one account
//!   within `window`, from any clients, logins to that account are refused
//!   from every client *except* those where it logged in successfully
//!   within [`TRUST_PERIOD`]. Guessing spread over many addresses is so
//!   limited to `max_failures` passwords per window per account, while the
//!   owner's usual devices keep working.
//! - **Attempts in flight count.** An attempt is admitted only while the
//!   failures plus the attempts still being checked stay below
//!   `max_failures`, for the client and (unless trusted) the account; an
//!   attempt that would go over waits until one in flight is decided. A
//!   burst of parallel attempts can therefore never test more than
//!   `max_failures` passwords per window.
//! - **Delay.** Each failure is answered after a delay that doubles with
//!   the failures already counted for the client or the account (the
//!   larger), from `base_delay` up to `max_delay`.
//! - **A success clears nothing.** Counters expire with their window. If a
//!   success reset them, an attacker with an account of their own could
//!   log into it between guesses and guess without end.
//!
//! # Across nodes
//! On a store that several nodes share (PostgreSQL) the limiter is given
//! the store's [`LoginFailures`] ([`FailureLimiter::with_shared`]): every
//! failure is also counted there, and every attempt reads the counts
//! there, so failures on all nodes add up to one `max_failures`; a client
//! where an account logged in on one node is trusted for it on all. The
//! shared count of a client or account is taken when it is larger than
//! this node's own (which it includes). What stays per node: the attempts
//! in flight (an attempt is admitted against the shared failures plus the
//! attempts in flight *on this node*, so a burst spread over N nodes at
//! the same instant may test up to N × `max_failures` passwords; once
//! they are decided, all count everywhere). When the store cannot be
//! read, the node's own counts decide (logged). A trusted login is written
//! to the store at most once per [`TRUST_WRITE_INTERVAL`] per client and
//! account. The shared tables' bounds are the store's (see
//! `mailgate_store::postgres::login_limits`).
//!
//! # Bounds
//! When [`MAX_COUNTERS`] client counters (or as many account counters)
//! exist, expired counters are swept and then counters that do not refuse
//! anything yet (fewer than `max_failures` failures, nothing in flight)
//! are dropped. A counter that refuses is kept until its window ends:
//! more than [`MAX_COUNTERS`] of them take as many attacking addresses. At most [`MAX_TRUSTED_PER_ACCOUNT`] trusted
//! clients are kept per account (the most recent), for at most
//! [`MAX_COUNTERS`] accounts. Without a shared store everything is in memory: a restart forgets
//! failures and trusted clients alike.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mailgate_store::{LoginFailures, LoginStanding};
use tokio::sync::Notify;

/// Settings of the failure limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Delay after the first failure.
    pub base_delay: Duration,
    /// The delay never grows beyond this.
    pub max_delay: Duration,
    /// Failures within `window` after which attempts are refused (per
    /// client; per account from clients it does not trust).
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

/// How long a client where an account logged in successfully stays
/// trusted for that account (exempt from the per-account refusal).
pub const TRUST_PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);

/// Trusted clients kept per account; the oldest is forgotten first.
pub const MAX_TRUSTED_PER_ACCOUNT: usize = 16;

/// A trusted login is written to a shared store at most this often per
/// client and account (the node remembers when it last wrote it).
pub const TRUST_WRITE_INTERVAL: Duration = Duration::from_secs(3600);

/// Counters of each kind (clients, accounts) kept before the ones that
/// refuse nothing are dropped; also the number of accounts with trusted
/// clients.
pub const MAX_COUNTERS: usize = 100_000;

/// Where attempts come from, as counted: an IPv4 address, or the /64
/// network of an IPv6 address (IPv4-mapped IPv6 addresses count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Net(u64),
}

impl ClientKey {
    /// The key that counts for `ip`.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(a) => ClientKey::V4(a),
            IpAddr::V6(a) => ClientKey::V6Net((u128::from(a) >> 64) as u64),
        }
    }
}

/// `192.0.2.1`, or `2001:db8::/64` for an IPv6 network: how a shared
/// store keys the client.
impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::V4(a) => write!(f, "{a}"),
            ClientKey::V6Net(n) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*n) << 64)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    in_flight: u32,
    first: Instant,
}

impl Counter {
    fn new(now: Instant) -> Counter {
        Counter {
            failures: 0,
            in_flight: 0,
            first: now,
        }
    }

    /// Starts a new window if the old one is over.
    fn refresh(&mut self, now: Instant, window: Duration) {
        if now.duration_since(self.first) >= window {
            self.failures = 0;
            self.first = now;
        }
    }

    /// Whether the counter says nothing any more (can be dropped).
    fn is_idle(&self, now: Instant, window: Duration) -> bool {
        self.in_flight == 0 && (self.failures == 0 || now.duration_since(self.first) >= window)
    }
}

/// What the counters say about a new attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Admit,
    Wait,
    Refuse,
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<ClientKey, Counter>,
    accounts: HashMap<String, Counter>,
    /// Per account: clients with a successful login, and when.
    trusted: HashMap<String, Vec<(ClientKey, Instant)>>,
}

/// Failure counters for the whole process.
pub struct FailureLimiter {
    settings: LimiterSettings,
    state: Mutex<State>,
    /// Signalled whenever an attempt in flight is decided.
    decided: Notify,
    /// The counts the nodes of a shared store share, if any.
    shared: Option<Arc<dyn LoginFailures>>,
}

impl std::fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("settings", &self.settings)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// An admitted attempt, counted as in flight until it is decided with
/// [`Attempt::succeeded`] or [`Attempt::failed`]. Dropped undecided (the
/// task was cancelled, so nobody learnt the answer) it only stops
/// counting as in flight.
#[derive(Debug)]
pub struct Attempt<'a> {
    limiter: &'a FailureLimiter,
    client: ClientKey,
    account: String,
    decided: bool,
}

impl FailureLimiter {
    /// A limiter with these settings.
    pub fn new(settings: LimiterSettings) -> FailureLimiter {
        FailureLimiter {
            settings,
            state: Mutex::new(State::default()),
            decided: Notify::new(),
            shared: None,
        }
    }

    /// The same limiter counting in `shared` as well, so that the nodes of
    /// a shared store count together (see the module doc).
    pub fn with_shared(mut self, shared: Arc<dyn LoginFailures>) -> FailureLimiter {
        self.shared = Some(shared);
        self
    }

    /// What the shared store says of `key` and `account`; `None` without
    /// one, or when it cannot be read (logged: the node's counts decide).
    async fn shared_standing(&self, key: ClientKey, account: &str) -> Option<LoginStanding> {
        let shared = self.shared.as_ref()?;
        let client = key.to_string();
        match shared
            .login_standing(&client, account, self.settings.window, TRUST_PERIOD)
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "auth: the shared failed-login counts could not be read; this node's counts decide");
                None
            }
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &LimiterSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits an attempt from `client` for `account` (already normalised),
    /// waiting while too many are in flight; `None` if the client or the
    /// account is refused.
    pub async fn admit(&self, client: IpAddr, account: &str) -> Option<Attempt<'_>> {
        let key = ClientKey::of(client);
        loop {
            // Registered before the check, so that a decision between the
            // check and the wait is not missed.
            let decided = self.decided.notified();
            tokio::pin!(decided);
            decided.as_mut().enable();
            let shared = self.shared_standing(key, account).await;
            match self.try_admit(key, account, shared) {
                Decision::Admit => {
                    return Some(Attempt {
                        limiter: self,
                        client: key,
                        account: account.to_string(),
                        decided: false,
                    })
                }
                Decision::Refuse => return None,
                Decision::Wait => decided.await,
            }
        }
    }

    /// The decision on an attempt; `shared` (the store's counts, which
    /// include this node's failures) raises the node's failure counts
    /// and adds its trusted client.
    fn try_admit(&self, key: ClientKey, account: &str, shared: Option<LoginStanding>) -> Decision {
        let (max, window) = (self.settings.max_failures, self.settings.window);
        let now = Instant::now();
        let mut state = self.lock();
        let shared = shared.unwrap_or_default();
        let trusted = shared.trusted || state.is_trusted(account, key, now);
        let client = state
            .clients
            .get(&key)
            .copied()
            .map(|mut c| {
                c.refresh(now, window);
                c
            })
            .unwrap_or(Counter::new(now));
        let acct = state
            .accounts
            .get(account)
            .copied()
            .map(|mut c| {
                c.refresh(now, window);
                c
            })
            .unwrap_or(Counter::new(now));
        let mut checked = vec![Counter {
            failures: client.failures.max(shared.client_failures),
            ..client
        }];
        if !trusted {
            checked.push(Counter {
                failures: acct.failures.max(shared.account_failures),
                ..acct
            });
        }
        if checked.iter().any(|c| c.failures >= max) {
            return Decision::Refuse;
        }
        if checked
            .iter()
            .any(|c| c.failures.saturating_add(c.in_flight) >= max)
        {
            return Decision::Wait;
        }
        state.make_room(now, window, max);
        let State {
            clients, accounts, ..
        } = &mut *state;
        for c in [
            clients.entry(key).or_insert(client),
            accounts.entry(account.to_string()).or_insert(acct),
        ] {
            c.refresh(now, window);
            c.in_flight += 1;
        }
        Decision::Admit
    }

    /// The delay after a failure, given the larger failure count.
    fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.settings
            .base_delay
            .saturating_mul(factor)
            .min(self.settings.max_delay)
    }

    /// Ends an attempt: no longer in flight; a failure is counted if
    /// `failed`. Returns the larger failure count afterwards.
    fn decide(&self, client: ClientKey, account: &str, failed: bool) -> u32 {
        let window = self.settings.window;
        let now = Instant::now();
        let mut state = self.lock();
        let mut worst = 0;
        let State {
            clients, accounts, ..
        } = &mut *state;
        if let Some(c) = clients.get_mut(&client) {
            worst = worst.max(end(c, failed, now, window));
            if c.is_idle(now, window) {
                clients.remove(&client);
            }
        }
        if let Some(c) = accounts.get_mut(account) {
            worst = worst.max(end(c, failed, now, window));
            if c.is_idle(now, window) {
                accounts.remove(account);
            }
        }
        drop(state);
        self.decided.notify_waiters();
        worst
    }

    /// Trusts `client` for `account` in memory; returns when this node
    /// trusted it before (a shared store is written again only after
    /// [`TRUST_WRITE_INTERVAL`]).
    fn trust(&self, client: ClientKey, account: &str) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        if !state.trusted.contains_key(account) && state.trusted.len() >= MAX_COUNTERS {
            state.trusted.retain(|_, list| {
                list.iter()
                    .any(|(_, t)| now.duration_since(*t) < TRUST_PERIOD)
            });
            if state.trusted.len() >= MAX_COUNTERS {
                return None;
            }
        }
        let list = state.trusted.entry(account.to_string()).or_default();
        let before = list
            .iter()
            .find(|(k, t)| *k == client && now.duration_since(*t) < TRUST_PERIOD)
            .map(|(_, t)| *t);
        list.retain(|(k, t)| *k != client && now.duration_since(*t) < TRUST_PERIOD);
        if list.len() >= MAX_TRUSTED_PER_ACCOUNT {
            list.remove(0);
        }
        // Kept as first trusted (not refreshed) until a shared write is
        // due, so that the write happens once per interval.
        let kept = match before {
            Some(t) if now.duration_since(t) < TRUST_WRITE_INTERVAL => t,
            _ => now,
        };
        list.push((client, kept));
        before
    }

    /// Whether attempts from `client` for `account` are refused now (the
    /// limits are reached without counting attempts in flight), by this
    /// node's own counts.
    pub fn is_blocked(&self, client: IpAddr, account: &str) -> bool {
        let (max, window) = (self.settings.max_failures, self.settings.window);
        let key = ClientKey::of(client);
        let now = Instant::now();
        let state = self.lock();
        let live = |c: Option<&Counter>| match c {
            Some(c) if now.duration_since(c.first) < window => c.failures,
            _ => 0,
        };
        live(state.clients.get(&key)) >= max
            || (!state.is_trusted(account, key, now) && live(state.accounts.get(account)) >= max)
    }
}

/// Ends one attempt on counter `c`; returns its failures afterwards.
fn end(c: &mut Counter, failed: bool, now: Instant, window: Duration) -> u32 {
    c.in_flight = c.in_flight.saturating_sub(1);
    c.refresh(now, window);
    if failed {
        c.failures = c.failures.saturating_add(1);
    }
    c.failures
}

impl State {
    fn is_trusted(&self, account: &str, key: ClientKey, now: Instant) -> bool {
        self.trusted.get(account).is_some_and(|list| {
            list.iter()
                .any(|(k, t)| *k == key && now.duration_since(*t) < TRUST_PERIOD)
        })
    }

    /// Keeps each map below [`MAX_COUNTERS`]: first drops the counters
    /// that say nothing any more, then the ones that refuse nothing yet.
    fn make_room(&mut self, now: Instant, window: Duration, max: u32) {
        fn shrink<K: std::hash::Hash + Eq>(
            map: &mut HashMap<K, Counter>,
            now: Instant,
            window: Duration,
            max: u32,
        ) {
            if map.len() < MAX_COUNTERS {
                return;
            }
            map.retain(|_, c| !c.is_idle(now, window));
            if map.len() >= MAX_COUNTERS {
                map.retain(|_, c| c.in_flight > 0 || c.failures >= max);
            }
        }
        shrink(&mut self.clients, now, window, max);
        shrink(&mut self.accounts, now, window, max);
    }
}

impl Attempt<'_> {
    /// The password was right: the client becomes trusted for the
    /// account (in the shared store too, at most once per
    /// [`TRUST_WRITE_INTERVAL`]). Counters are not cleared (see the module
    /// doc).
    pub async fn succeeded(mut self) {
        self.decided = true;
        let limiter = self.limiter;
        limiter.decide(self.client, &self.account, false);
        let before = limiter.trust(self.client, &self.account);
        let Some(shared) = &limiter.shared else {
            return;
        };
        if before.is_some_and(|t| t.elapsed() < TRUST_WRITE_INTERVAL) {
            return;
        }
        if let Err(e) = shared
            .record_trusted_client(
                &self.client.to_string(),
                &self.account,
                MAX_TRUSTED_PER_ACCOUNT,
                TRUST_PERIOD,
            )
            .await
        {
            tracing::warn!(error = %e, "auth: the trusted client could not be written to the store");
        }
    }

    /// The password (or the account) was wrong: counts a failure for the
    /// client and the account (in the shared store too), and returns how
    /// long to wait before answering.
    pub async fn failed(mut self) -> Duration {
        self.decided = true;
        let limiter = self.limiter;
        let mut worst = limiter.decide(self.client, &self.account, true);
        if let Some(shared) = &limiter.shared {
            let s = &limiter.settings;
            match shared
                .record_login_failure(
                    &self.client.to_string(),
                    &self.account,
                    s.window,
                    s.max_failures,
                    2 * MAX_COUNTERS,
                )
                .await
            {
                Ok((c, a)) => worst = worst.max(c).max(a),
                Err(e) => {
                    tracing::warn!(error = %e, "auth: the failed login could not be counted in the store; counted on this node only");
                }
            }
        }
        limiter.delay(worst)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.decided {
            self.limiter.decide(self.client, &self.account, false);
        }
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    async fn fail(l: &FailureLimiter, client: &str, account: &str) -> Duration {
        l.admit(ip(client), account).await.unwrap().failed().await
    }

    #[tokio::test]
    async fn delay_doubles_then_caps_then_refuses() {
        let l = FailureLimiter::new(settings());
        assert_eq!(
            fail(&l, "127.0.0.1", "a@x").await,
            Duration::from_millis(10)
        );
        assert_eq!(
            fail(&l, "127.0.0.1", "a@x").await,
            Duration::from_millis(20)
        );
        assert_eq!(
            fail(&l, "127.0.0.1", "a@x").await,
            Duration::from_millis(40)
        );
        assert!(!l.is_blocked(ip("127.0.0.1"), "a@x"));
        assert_eq!(
            fail(&l, "127.0.0.1", "a@x").await,
            Duration::from_millis(50)
        );
        assert!(l.is_blocked(ip("127.0.0.1"), "a@x"));
        assert!(l.admit(ip("127.0.0.1"), "a@x").await.is_none());
        // The client is refused for any account, the account from any
        // client it does not trust.
        assert!(l.admit(ip("127.0.0.1"), "b@x").await.is_none());
        assert!(l.admit(ip("127.0.0.2"), "a@x").await.is_none());
        // Another account from another client is not affected.
        assert!(l.admit(ip("127.0.0.2"), "b@x").await.is_some());
    }

    #[tokio::test]
    async fn a_trusted_client_keeps_access_to_a_refused_account() {
        let l = FailureLimiter::new(settings());
        l.admit(ip("10.0.0.1"), "a@x")
            .await
            .unwrap()
            .succeeded()
            .await;
        for i in 0..4 {
            fail(&l, &format!("10.0.1.{i}"), "a@x").await;
        }
        assert!(l.admit(ip("10.0.2.1"), "a@x").await.is_none());
        assert!(l.is_blocked(ip("10.0.2.1"), "a@x"));
        assert!(!l.is_blocked(ip("10.0.0.1"), "a@x"));
        l.admit(ip("10.0.0.1"), "a@x")
            .await
            .unwrap()
            .succeeded()
            .await;
        // A success does not clear the counters.
        assert!(l.admit(ip("10.0.2.1"), "a@x").await.is_none());
        // Trust is per account.
        for i in 0..4 {
            fail(&l, &format!("10.0.3.{i}"), "b@x").await;
        }
        assert!(l.admit(ip("10.0.0.1"), "b@x").await.is_none());
    }

    #[tokio::test]
    async fn attempts_in_flight_count() {
        let l = FailureLimiter::new(settings());
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(l.admit(ip("127.0.0.1"), "a@x").await.unwrap());
        }
        // A fifth attempt waits until one in flight is decided...
        let fifth = l.admit(ip("127.0.0.1"), "a@x");
        tokio::pin!(fifth);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), fifth.as_mut())
                .await
                .is_err(),
            "admitted beyond the limit"
        );
        // ... and, once all four have failed, is refused.
        for a in held.drain(..) {
            a.failed().await;
        }
        assert!(fifth.await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_attempt_is_admitted_when_one_succeeds_or_is_dropped() {
        let l = FailureLimiter::new(settings());
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(l.admit(ip("127.0.0.1"), "a@x").await.unwrap());
        }
        let waiting = l.admit(ip("127.0.0.1"), "b@x");
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting.as_mut())
                .await
                .is_err()
        );
        held.pop().unwrap().succeeded().await;
        held.push(waiting.await.unwrap());
        let waiting = l.admit(ip("127.0.0.1"), "c@x");
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting.as_mut())
                .await
                .is_err()
        );
        drop(held.pop());
        assert!(waiting.await.is_some());
    }

    #[tokio::test]
    async fn ipv6_clients_count_by_64_network() {
        let l = FailureLimiter::new(settings());
        for i in 0..4 {
            fail(&l, &format!("2001:db8::{i}"), &format!("u{i}@x")).await;
        }
        assert!(l.admit(ip("2001:db8::ffff:1"), "z@x").await.is_none());
        assert!(l.admit(ip("2001:db8:0:1::1"), "z@x").await.is_some());
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
    }

    #[tokio::test]
    async fn counters_expire_with_the_window() {
        let l = FailureLimiter::new(LimiterSettings {
            window: Duration::from_millis(50),
            ..settings()
        });
        for _ in 0..4 {
            fail(&l, "127.0.0.1", "a@x").await;
        }
        assert!(l.admit(ip("127.0.0.1"), "a@x").await.is_none());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(l.admit(ip("127.0.0.1"), "a@x").await.is_some());
    }

    #[tokio::test]
    async fn successes_leave_no_counters_behind() {
        let l = FailureLimiter::new(settings());
        for i in 0..100u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            l.admit(client, &format!("u{i}@x"))
                .await
                .unwrap()
                .succeeded()
                .await;
        }
        let state = l.lock();
        assert!(state.clients.is_empty() && state.accounts.is_empty());
        assert_eq!(state.trusted.len(), 100);
    }

    #[tokio::test]
    async fn trusted_clients_per_account_are_bounded() {
        let l = FailureLimiter::new(settings());
        for i in 0..(MAX_TRUSTED_PER_ACCOUNT as u32 + 5) {
            let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            l.admit(client, "a@x").await.unwrap().succeeded().await;
        }
        let state = l.lock();
        assert_eq!(state.trusted["a@x"].len(), MAX_TRUSTED_PER_ACCOUNT);
        // The oldest went first.
        assert!(!state.is_trusted("a@x", ClientKey::of(ip("10.0.0.0")), Instant::now()));
    }
}
