//! The host side of the capabilities: the key-value store and the DNS
//! resolver (traits, so the binary plugs in its own), with the
//! implementations this crate ships.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Longest key.
pub const MAX_KEY: usize = 256;
/// Largest value.
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

/// A key-value store with one namespace per plugin.
pub trait KvStore: Send + Sync {
    /// The value of `key` in `plugin`'s namespace.
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>>;
    /// Sets a value, expiring after `ttl` seconds if given.
    fn set(&self, plugin: &str, key: &str, value: Vec<u8>, ttl: Option<u64>)
        -> Result<(), KvError>;
    /// Removes a key.
    fn delete(&self, plugin: &str, key: &str);
    /// Adds `delta` to an integer value, returns the new value.
    fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        ttl: Option<u64>,
    ) -> Result<i64, KvError>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The shipped [`KvStore`]: in memory, persisted to one JSON file by
/// [`FileKv::flush`] (the runtime calls it every poll interval and at
/// shutdown), written to a temporary file and renamed, so a crash leaves
/// the old or the new file, never half of one. Counters lost since the last
/// flush are harmless for greylisting and rate limits.
pub struct FileKv {
    path: Option<PathBuf>,
    state: Mutex<KvState>,
}

#[derive(Default)]
struct KvState {
    data: BTreeMap<String, BTreeMap<String, Entry>>,
    dirty: bool,
}

impl FileKv {
    /// A store kept only in memory (tests, `plugin check`).
    pub fn in_memory() -> FileKv {
        FileKv {
            path: None,
            state: Mutex::new(KvState::default()),
        }
    }

    /// A store persisted at `path`, loaded from it if it exists.
    pub fn open(path: &Path) -> std::io::Result<FileKv> {
        let data = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(FileKv {
            path: Some(path.to_path_buf()),
            state: Mutex::new(KvState { data, dirty: false }),
        })
    }

    /// Writes the store if it changed, dropping expired entries.
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(());
            }
            let t = now();
            for ns in state.data.values_mut() {
                ns.retain(|_, e| e.expires.is_none_or(|x| x > t));
            }
            state.dirty = false;
            serde_json::to_vec(&state.data).map_err(std::io::Error::other)?
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KvState> {
        // A panic while holding the lock cannot leave a map half-updated
        // in a way that matters here: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, plugin: &str, key: &str, entry: Entry) -> Result<(), KvError> {
        if key.len() > MAX_KEY || entry.value.len() > MAX_VALUE {
            return Err(KvError::TooLarge);
        }
        let mut state = self.lock();
        let ns = state.data.entry(plugin.to_string()).or_default();
        if ns.len() >= MAX_KEYS_PER_PLUGIN && !ns.contains_key(key) {
            let t = now();
            ns.retain(|_, e| e.expires.is_none_or(|x| x > t));
            if ns.len() >= MAX_KEYS_PER_PLUGIN {
                return Err(KvError::TooLarge);
            }
        }
        ns.insert(key.to_string(), entry);
        state.dirty = true;
        Ok(())
    }
}

impl KvStore for FileKv {
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        let e = state.data.get(plugin)?.get(key)?;
        e.expires.is_none_or(|x| x > now()).then(|| e.value.clone())
    }

    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<(), KvError> {
        let expires = ttl.map(|t| now().saturating_add(t));
        self.put(plugin, key, Entry { value, expires })
    }

    fn delete(&self, plugin: &str, key: &str) {
        let mut state = self.lock();
        if let Some(ns) = state.data.get_mut(plugin) {
            if ns.remove(key).is_some() {
                state.dirty = true;
            }
        }
    }

    fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        ttl: Option<u64>,
    ) -> Result<i64, KvError> {
        // One lock for read and write, so concurrent increments add up.
        let current = {
            let state = self.lock();
            state
                .data
                .get(plugin)
                .and_then(|ns| ns.get(key))
                .filter(|e| e.expires.is_none_or(|x| x > now()))
                .map(|e| (e.value.clone(), e.expires))
        };
        let (old, old_expiry) = match current {
            Some((v, exp)) => (
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(0),
                exp,
            ),
            None => (0, None),
        };
        let new = old.saturating_add(delta);
        let expires = ttl.map(|t| now().saturating_add(t)).or(old_expiry);
        self.put(
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

    #[test]
    fn kv_counts_expires_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.json");
        let kv = FileKv::open(&path).unwrap();
        assert_eq!(kv.increment("p", "n", 2, None).unwrap(), 2);
        assert_eq!(kv.increment("p", "n", 3, None).unwrap(), 5);
        assert_eq!(kv.get("other", "n"), None, "namespaces are separate");
        kv.set("p", "gone", b"x".to_vec(), Some(0)).unwrap();
        assert_eq!(kv.get("p", "gone"), None);
        assert_eq!(
            kv.set("p", &"k".repeat(MAX_KEY + 1), vec![], None),
            Err(KvError::TooLarge)
        );
        kv.flush().unwrap();
        let again = FileKv::open(&path).unwrap();
        assert_eq!(again.get("p", "n"), Some(b"5".to_vec()));
    }
}
