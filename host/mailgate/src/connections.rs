//! Connection limits: `[limits] max_connections` (the whole server) and
//! `[limits] max_connections_per_ip` (one client on one listener).
//!
//! # How it is counted
//! The accept loop asks [`Listener::admit`] for a [`Permit`] before it
//! starts a session; the permit is moved into the session's task and
//! gives its place back when dropped: when the session ends, whatever way
//! it ends (QUIT, a dropped connection, a timeout, an error, a panic, or
//! the runtime shutting down). Nothing else needs to remember to
//! release it.
//!
//! A client is its IPv4 address, or the /64 network of its IPv6 address
//! (one host is usually given a whole /64, so counting single IPv6
//! addresses would count nothing); an IPv4-mapped IPv6 address is its
//! IPv4 address. The per-client table only holds clients with a
//! connection open: an entry is removed when its count drops to 0, so
//! the table is never larger than the number of open connections.
//!
//! # Refusals
//! Over a limit, the accept loop says the protocol's "try again later"
//! and closes. The log gets one line per client per minute (with the
//! number of refusals not logged since), not one per connection: see
//! [`RefusalLog`], itself bounded.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One client, as the limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
}

impl Client {
    /// The client a peer address counts as.
    pub fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::V4(v4) => write!(f, "{v4}"),
            Client::V6Net(net) => {
                let addr = std::net::Ipv6Addr::from(u128::from(*net) << 64);
                write!(f, "{addr}/64")
            }
        }
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections`: the server is full.
    Server,
    /// `max_connections_per_ip`: this client has enough open here.
    Client,
}

impl Refused {
    /// The configuration key of the limit.
    pub fn key(self) -> &'static str {
        match self {
            Refused::Server => "max_connections",
            Refused::Client => "max_connections_per_ip",
        }
    }
}

/// The connections open on the whole server (`max_connections`), shared
/// by every listener, and the log of refusals.
pub struct Server {
    open: AtomicUsize,
    /// `max_connections`; changed by a reload (SIGHUP).
    max: AtomicUsize,
    refusals: Mutex<RefusalLog>,
}

impl Server {
    /// At most `max` connections at once over all listeners.
    pub fn new(max: usize) -> Arc<Server> {
        Arc::new(Server {
            open: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            refusals: Mutex::new(RefusalLog::default()),
        })
    }

    /// A new `max_connections` (SIGHUP): connections over it stay open,
    /// new ones wait until the count is below it.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::SeqCst);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Takes one place if there is one.
    fn take(&self) -> bool {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max.load(Ordering::SeqCst)).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether a refusal of `client` is to be logged now; `Some(n)` with
    /// the number of its refusals not logged before this one.
    pub fn log_refusal(&self, client: Client) -> Option<u64> {
        lock(&self.refusals).record(client, Instant::now())
    }
}

/// One listener's connections per client (`max_connections_per_ip`).
pub struct Listener {
    server: Arc<Server>,
    /// `max_connections_per_ip`; changed by a reload (SIGHUP).
    max_per_client: AtomicUsize,
    per_client: Mutex<HashMap<Client, usize>>,
}

impl Listener {
    /// At most `max_per_client` connections from one client on this
    /// listener, within the server's limit.
    pub fn new(server: Arc<Server>, max_per_client: usize) -> Arc<Listener> {
        Arc::new(Listener {
            server,
            max_per_client: AtomicUsize::new(max_per_client),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// A new `max_connections_per_ip` (SIGHUP), for the connections
    /// accepted from now on.
    pub fn set_max_per_client(&self, max: usize) {
        self.max_per_client.store(max, Ordering::SeqCst);
    }

    /// The server this listener counts against.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// A place for one more connection from `client`, or which limit
    /// refuses it.
    pub fn admit(self: &Arc<Self>, client: Client) -> Result<Permit, Refused> {
        let mut map = lock(&self.per_client);
        let count = map.get(&client).copied().unwrap_or(0);
        if count >= self.max_per_client.load(Ordering::SeqCst) {
            return Err(Refused::Client);
        }
        if !self.server.take() {
            return Err(Refused::Server);
        }
        map.insert(client, count + 1);
        Ok(Permit {
            listener: self.clone(),
            client,
        })
    }

    /// Clients with a connection open on this listener (the size of the
    /// per-client table).
    pub fn clients(&self) -> usize {
        lock(&self.per_client).len()
    }
}

/// One admitted connection's place; given back when dropped.
pub struct Permit {
    listener: Arc<Listener>,
    client: Client,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut map = lock(&self.listener.per_client);
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
        drop(map);
        self.listener.server.give_back();
    }
}

/// A poisoned lock only means another session panicked while holding
/// it; the counts are still whole (each update is one statement).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often one client's refusals are logged.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Clients whose last logged refusal is remembered. Past this (many
/// addresses refused within a minute), the others share one line a
/// minute.
pub const REFUSAL_LOG_CLIENTS: usize = 4096;

/// When each client's refusal was last logged, and how many were not
/// logged since: one line per client per minute.
#[derive(Default)]
pub struct RefusalLog {
    clients: HashMap<Client, (Instant, u64)>,
    /// The shared entry of clients that did not fit.
    others: Option<(Instant, u64)>,
}

impl RefusalLog {
    /// Notes a refusal of `client` at `now`; `Some(unlogged)` if it is to
    /// be logged, with the number of its refusals not logged before it.
    pub fn record(&mut self, client: Client, now: Instant) -> Option<u64> {
        let due = |at: Instant| now.duration_since(at) >= REFUSAL_LOG_INTERVAL;
        if !self.clients.contains_key(&client) && self.clients.len() >= REFUSAL_LOG_CLIENTS {
            self.clients.retain(|_, (at, _)| !due(*at));
        }
        if let Some(entry) = self.clients.get_mut(&client) {
            return Self::tick(entry, now);
        }
        if self.clients.len() < REFUSAL_LOG_CLIENTS {
            self.clients.insert(client, (now, 0));
            return Some(0);
        }
        match &mut self.others {
            Some(entry) => Self::tick(entry, now),
            None => {
                self.others = Some((now, 0));
                Some(0)
            }
        }
    }

    /// One more refusal of a known client: logged if a minute has passed.
    fn tick(entry: &mut (Instant, u64), now: Instant) -> Option<u64> {
        if now.duration_since(entry.0) >= REFUSAL_LOG_INTERVAL {
            let unlogged = entry.1;
            *entry = (now, 0);
            Some(unlogged)
        } else {
            entry.1 += 1;
            None
        }
    }

    /// Clients remembered now.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Client {
        Client::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_ne!(ip("192.0.2.7"), ip("192.0.2.8"));
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(ip("192.0.2.7").to_string(), "192.0.2.7");
    }

    #[test]
    fn per_client_limit_and_release() {
        let server = Server::new(100);
        let l = Listener::new(server.clone(), 2);
        let a = ip("192.0.2.1");
        let p1 = l.admit(a).unwrap();
        let p2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refused::Client));
        // Another client, and the same client on another listener, are
        // counted apart.
        let _b = l.admit(ip("192.0.2.2")).unwrap();
        let other = Listener::new(server.clone(), 2);
        let _c = other.admit(a).unwrap();
        drop(p1);
        let p3 = l.admit(a).unwrap();
        assert_eq!(server.open(), 4);
        drop((p2, p3));
        assert_eq!(server.open(), 2);
    }

    #[test]
    fn server_limit_spans_listeners() {
        let server = Server::new(3);
        let l1 = Listener::new(server.clone(), 10);
        let l2 = Listener::new(server.clone(), 10);
        let held: Vec<Permit> = (1..=3)
            .map(|i| {
                let l = if i % 2 == 0 { &l1 } else { &l2 };
                l.admit(ip(&format!("192.0.2.{i}"))).unwrap()
            })
            .collect();
        assert_eq!(l1.admit(ip("192.0.2.9")).err(), Some(Refused::Server));
        assert_eq!(l2.admit(ip("192.0.2.9")).err(), Some(Refused::Server));
        // A refusal by the server limit leaves no per-client entry behind.
        assert_eq!(l1.clients() + l2.clients(), 3);
        drop(held);
        assert_eq!(server.open(), 0);
        assert!(l1.admit(ip("192.0.2.9")).is_ok());
    }

    #[test]
    fn the_per_client_table_is_emptied_as_connections_close() {
        let l = Listener::new(Server::new(100_000), 5);
        let permits: Vec<Permit> = (0..10_000u32)
            .map(|i| l.admit(Client::V4(Ipv4Addr::from(i))).unwrap())
            .collect();
        assert_eq!(l.clients(), 10_000);
        drop(permits);
        assert_eq!(l.clients(), 0);
        assert_eq!(l.server().open(), 0);
    }

    #[test]
    fn a_permit_is_given_back_when_its_task_panics() {
        let l = Listener::new(Server::new(1), 1);
        let permit = l.admit(ip("192.0.2.1")).unwrap();
        let r = std::thread::spawn(move || {
            let _permit = permit;
            panic!("session panicked");
        })
        .join();
        assert!(r.is_err());
        assert!(l.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn refusals_are_logged_once_a_minute_per_client() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(log.record(a, t0), Some(0));
        for s in 1..60 {
            assert_eq!(log.record(a, t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(log.record(ip("192.0.2.2"), t0), Some(0));
        assert_eq!(log.record(a, t0 + Duration::from_secs(60)), Some(59));
    }

    #[test]
    fn the_refusal_log_is_bounded() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let mut logged = 0;
        for i in 0..(REFUSAL_LOG_CLIENTS as u32 * 3) {
            logged += log.record(Client::V4(Ipv4Addr::from(i)), t0).is_some() as usize;
        }
        assert_eq!(log.len(), REFUSAL_LOG_CLIENTS);
        // The ones that did not fit share one line.
        assert_eq!(logged, REFUSAL_LOG_CLIENTS + 1);
        // A minute later the old entries make room.
        let t1 = t0 + REFUSAL_LOG_INTERVAL;
        assert_eq!(
            log.record(Client::V4(Ipv4Addr::from(u32::MAX)), t1),
            Some(0)
        );
        assert_eq!(log.len(), 1);
    }
}
