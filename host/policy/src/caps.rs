//! The host side of the capabilities: the key-value store and the DNS
//! resolver (traits, so the binary plugs in its own), with the
//! implementations this crate ships.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;
/// Keys per plugin.
pub const MAX_KEYS_PER_PLUGIN: usize = 100_000;

/// Why a key-value write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Key, value or quota exceeded.
    #[error("too large")]
    TooLarge,
    /// The backend failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A key-value store with one namespace per plugin (capability `kv`),
/// bounded by [`MAX_KEY`], [`MAX_VALUE`] and [`MAX_KEYS_PER_PLUGIN`].
///
/// The server's is the mail store (`mailgate_store::PluginKv`, plugged in
/// by the binary): every write is durable when it returns, so what a hook
/// wrote is kept before the SMTP reply that follows it, and shared by
/// every node of the store. [`MemoryKv`] keeps everything in memory
/// (tests, `plugin check`, `plugin run`).
#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    /// The value of `key` in `plugin`'s namespace, if set and not
    /// expired (`None` too when the store fails: the failure is logged).
    async fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>>;
    /// Sets a value, expiring after `ttl` seconds if given.
    async fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<(), KvError>;
    /// Removes a key (a failure is logged).
    async fn delete(&self, plugin: &str, key: &str);
    /// Adds `delta` to an integer value (0 if absent, expired or not an
    /// integer), returns the new value; sets the expiry if `ttl` is
    /// given, keeps the old one otherwise.
    async fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        ttl: Option<u64>,
    ) -> Result<i64, KvError>;
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    /// Unix seconds.
    expires: Option<u64>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A [`KvStore`] in memory only, lost at exit (tests, benchmarks, `plugin
/// check` and `plugin run`).
#[derive(Default)]
pub struct MemoryKv {
    data: Mutex<BTreeMap<String, BTreeMap<String, Entry>>>,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> MemoryKv {
        MemoryKv::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, Entry>>> {
        // A panic while holding the lock cannot leave a map half-updated
        // in a way that matters here: keep serving.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `entry` under `key` (map locked by the caller).
    fn put_locked(
        data: &mut BTreeMap<String, BTreeMap<String, Entry>>,
        plugin: &str,
        key: &str,
        entry: Entry,
    ) -> Result<(), KvError> {
        if key.len() > MAX_KEY || entry.value.len() > MAX_VALUE {
            return Err(KvError::TooLarge);
        }
        let ns = data.entry(plugin.to_string()).or_default();
        if ns.len() >= MAX_KEYS_PER_PLUGIN && !ns.contains_key(key) {
            let t = now();
            ns.retain(|_, e| e.expires.is_none_or(|x| x > t));
            if ns.len() >= MAX_KEYS_PER_PLUGIN {
                return Err(KvError::TooLarge);
            }
        }
        ns.insert(key.to_string(), entry);
        Ok(())
    }
}

#[async_trait::async_trait]
impl KvStore for MemoryKv {
    async fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        let data = self.lock();
        let e = data.get(plugin)?.get(key)?;
        e.expires.is_none_or(|x| x > now()).then(|| e.value.clone())
    }

    async fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<(), KvError> {
        let expires = ttl.map(|t| now().saturating_add(t));
        Self::put_locked(&mut self.lock(), plugin, key, Entry { value, expires })
    }

    async fn delete(&self, plugin: &str, key: &str) {
        if let Some(ns) = self.lock().get_mut(plugin) {
            ns.remove(key);
        }
    }

    async fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        ttl: Option<u64>,
    ) -> Result<i64, KvError> {
        // One lock for read and write, so concurrent increments add up.
        let mut data = self.lock();
        let current = data
            .get(plugin)
            .and_then(|ns| ns.get(key))
            .filter(|e| e.expires.is_none_or(|x| x > now()));
        let (old, old_expiry) = match current {
            Some(e) => (
                std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(0),
                e.expires,
            ),
            None => (0, None),
        };
        let new = old.saturating_add(delta);
        let expires = ttl.map(|t| now().saturating_add(t)).or(old_expiry);
        Self::put_locked(
            &mut data,
            plugin,
            key,
            Entry {
                value: new.to_string().into_bytes(),
                expires,
            },
        )?;
        Ok(new)
    }
}

/// DNS record types plugins may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Mail exchangers, as "preference exchange".
    Mx,
    /// Text records, strings joined.
    Txt,
    /// Reverse name of an IP address.
    Ptr,
}

/// Why a look-up gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN or no record of the type.
    #[error("not found")]
    NotFound,
    /// Resolver failure or time-out.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Not a valid name.
    #[error("invalid name")]
    InvalidName,
}

/// The host's resolver, as plugins reach it.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// Looks `name` up.
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Vec<String>, DnsError>;
}

/// A resolver on the system's `getaddrinfo`: A and AAAA only (MX, TXT and
/// PTR answer `temporary`). The binary should plug in the relay's full
/// resolver; this one keeps the crate usable alone.
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Vec<String>, DnsError> {
        if name.is_empty() || name.len() > 253 || name.contains(|c: char| c.is_whitespace()) {
            return Err(DnsError::InvalidName);
        }
        let want_v4 = match kind {
            RecordType::A => true,
            RecordType::Aaaa => false,
            _ => return Err(DnsError::Temporary("record type not supported".into())),
        };
        let addrs = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|_| DnsError::NotFound)?;
        let out: Vec<String> = addrs
            .map(|a| a.ip())
            .filter(|ip| ip.is_ipv4() == want_v4)
            .map(|ip| ip.to_string())
            .collect();
        if out.is_empty() {
            Err(DnsError::NotFound)
        } else {
            Ok(out)
        }
    }
}

/// A resolver answering from a fixed table (tests, benchmarks, `plugin
/// check`): names not in it are not found.
#[derive(Default)]
pub struct StaticResolver {
    records: BTreeMap<(String, u8), Vec<String>>,
}

impl StaticResolver {
    /// Adds an answer.
    pub fn with(mut self, name: &str, kind: RecordType, answers: &[&str]) -> StaticResolver {
        self.records.insert(
            (name.to_ascii_lowercase(), kind as u8),
            answers.iter().map(|s| s.to_string()).collect(),
        );
        self
    }
}

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Vec<String>, DnsError> {
        self.records
            .get(&(name.trim_end_matches('.').to_ascii_lowercase(), kind as u8))
            .cloned()
            .ok_or(DnsError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_kv_counts_expires_and_bounds() {
        let kv = MemoryKv::new();
        assert_eq!(kv.increment("p", "n", 2, None).await.unwrap(), 2);
        assert_eq!(kv.increment("p", "n", 3, None).await.unwrap(), 5);
        assert_eq!(kv.get("other", "n").await, None, "namespaces are separate");
        kv.set("p", "gone", b"x".to_vec(), Some(0)).await.unwrap();
        assert_eq!(kv.get("p", "gone").await, None);
        kv.set("p", "k", b"v".to_vec(), None).await.unwrap();
        kv.delete("p", "k").await;
        assert_eq!(kv.get("p", "k").await, None);
        assert_eq!(
            kv.set("p", &"k".repeat(MAX_KEY + 1), vec![], None).await,
            Err(KvError::TooLarge)
        );
        assert_eq!(
            kv.set("p", "v", vec![0; MAX_VALUE + 1], None).await,
            Err(KvError::TooLarge)
        );
    }
}
