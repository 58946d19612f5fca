//! The small shared state beside the mail that the server keeps in the
//! store, so that one backup holds it and several nodes share it:
//!
//! - [`PluginKv`]: the policy plugins' key-value data (capability `kv`:
//!   greylisting triplets, rate counters), one namespace per plugin.
//! - [`MtaStsCache`]: the MTA-STS policies (RFC 8461) fetched for
//!   destination domains, which must stay in force across restarts while
//!   a policy server is unreachable (§5.1).
//!
//! Both are plain data (strings, bytes, Unix seconds) so that every
//! backend implements them with the same contract. Times are passed in
//! by the caller (`now`, `expires`: seconds since the Unix epoch), so
//! that nodes and tests agree on one clock. An entry whose `expires` is
//! at or before `now` is gone for every reader, whether or not its row
//! was removed yet.

use async_trait::async_trait;

use crate::{StoreError, StoreResult};

/// Longest key of a plugin's key-value data, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value of a plugin's key-value data, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;
/// Keys per plugin (expired keys count until the store purges them,
/// which it does before refusing a new key).
pub const MAX_KEYS_PER_PLUGIN: usize = 100_000;
/// Longest plugin name (a namespace), in bytes.
pub const MAX_PLUGIN_NAME: usize = 255;

/// Longest domain name of an MTA-STS cache entry (RFC 1035 §2.3.4).
pub const MAX_MTA_STS_DOMAIN: usize = 253;
/// Largest cached MTA-STS policy text, in bytes (the relay fetches at
/// most this much, `mta_sts::MAX_POLICY_SIZE`).
pub const MAX_MTA_STS_POLICY: usize = 64 * 1024;
/// Longest MTA-STS policy id (RFC 8461 §3.1: 1 to 32 alphanumerics).
pub const MAX_MTA_STS_ID: usize = 32;

/// Why a write to a plugin's key-value data failed.
#[derive(Debug, thiserror::Error)]
pub enum KvWriteError {
    /// The key or the value is too long, or the plugin holds
    /// [`MAX_KEYS_PER_PLUGIN`] live keys already: the plugin's fault.
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// The store failed: the server's fault.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One entry of a plugin's key-value data, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginKvEntry {
    /// The plugin (namespace).
    pub plugin: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// When it expires (Unix seconds), if ever.
    pub expires: Option<i64>,
}

/// The policy plugins' key-value data: one namespace per plugin, bounded
/// by [`MAX_KEY`], [`MAX_VALUE`] and [`MAX_KEYS_PER_PLUGIN`].
///
/// # Durability and atomicity
/// Every write is one transaction and durable when it returns (the
/// SQLite backend shares the commit with concurrent writers: group
/// commit), so a counter or a greylisting triplet a plugin wrote is kept
/// before the SMTP reply that depends on it. Concurrent increments of one
/// key add up, across processes and nodes too.
#[async_trait]
pub trait PluginKv: Send + Sync {
    /// The value of `key` in `plugin`'s namespace, if set and not expired.
    async fn kv_get(&self, plugin: &str, key: &str, now: i64) -> StoreResult<Option<Vec<u8>>>;
    /// Sets `key` to `value`, expiring at `expires` if given.
    async fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        now: i64,
    ) -> Result<(), KvWriteError>;
    /// Adds `delta` (saturating) to the integer stored at `key` (decimal
    /// text; 0 if absent, expired or not an integer), stores and returns
    /// the sum. The expiry becomes `expires` if given, otherwise the live
    /// value's expiry is kept.
    async fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        expires: Option<i64>,
        now: i64,
    ) -> Result<i64, KvWriteError>;
    /// Removes `key` (nothing happens if it is not set).
    async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<()>;
    /// Stores entries moved in from elsewhere (the key-value files of an
    /// older mailgate) in one transaction, replacing keys that exist;
    /// entries expired at `now`, or beyond the bounds, are skipped.
    /// Returns how many were stored.
    async fn kv_import(&self, entries: Vec<PluginKvEntry>, now: i64) -> StoreResult<usize>;
    /// Removes every expired entry; returns how many went.
    async fn kv_purge_expired(&self, now: i64) -> StoreResult<usize>;
}

/// Checks the bounds of a write: the plugin name, the key and the value.
pub fn check_kv_write(plugin: &str, key: &str, value_len: usize) -> Result<(), KvWriteError> {
    if plugin.len() > MAX_PLUGIN_NAME {
        return Err(KvWriteError::TooLarge("plugin name"));
    }
    if key.len() > MAX_KEY {
        return Err(KvWriteError::TooLarge("key"));
    }
    if value_len > MAX_VALUE {
        return Err(KvWriteError::TooLarge("value"));
    }
    Ok(())
}

/// An integer value as [`PluginKv::kv_increment`] reads it: trimmed
/// decimal text, 0 otherwise.
pub fn kv_integer(value: &[u8]) -> i64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0)
}

/// One cached MTA-STS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaStsEntry {
    /// The `id` of the `_mta-sts` TXT record it was fetched under.
    pub id: String,
    /// When it stops being in force (fetch time plus its `max_age`).
    pub expires: i64,
    /// The policy file as fetched (parsed again by the reader).
    pub policy: String,
}

/// The MTA-STS policies fetched for destination domains (RFC 8461 §5.1),
/// by lower-case domain. Each call is one transaction; `put` is durable
/// when it returns. Entries past `expires` are neither returned nor kept.
#[async_trait]
pub trait MtaStsCache: Send + Sync {
    /// The unexpired policy cached for `domain`.
    async fn mta_sts_get(&self, domain: &str, now: i64) -> StoreResult<Option<MtaStsEntry>>;
    /// Caches `entry` for `domain`, replacing what was there; drops
    /// expired entries of every domain. [`StoreError::Invalid`] beyond
    /// [`MAX_MTA_STS_DOMAIN`], [`MAX_MTA_STS_ID`] or
    /// [`MAX_MTA_STS_POLICY`].
    async fn mta_sts_put(&self, domain: &str, entry: MtaStsEntry, now: i64) -> StoreResult<()>;
    /// Forgets `domain`'s policy. `false` if none was cached.
    async fn mta_sts_remove(&self, domain: &str) -> StoreResult<bool>;
}

/// Checks the bounds of an MTA-STS cache entry.
pub fn check_mta_sts_entry(domain: &str, entry: &MtaStsEntry) -> StoreResult<()> {
    if domain.is_empty() || domain.len() > MAX_MTA_STS_DOMAIN {
        return Err(StoreError::Invalid("MTA-STS domain length".into()));
    }
    if entry.id.len() > MAX_MTA_STS_ID {
        return Err(StoreError::Invalid("MTA-STS policy id too long".into()));
    }
    if entry.policy.len() > MAX_MTA_STS_POLICY {
        return Err(StoreError::Invalid("MTA-STS policy too large".into()));
    }
    Ok(())
}
