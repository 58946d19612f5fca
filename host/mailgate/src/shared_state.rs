//! The server's shared state beside the mail, kept in the store: the
//! policy plugins' key-value data and the MTA-STS policy cache.
//!
//! - [`StoreKv`]: capability `kv` of the policy runtime on the store's
//!   [`PluginKv`] (the policy crate knows no store).
//! - [`import_old_files`]: the one-time move of what older versions kept
//!   as files in the data directory (`plugins-kv.json` with its
//!   write-ahead log `plugins-kv.log`, and `mta-sts-cache.json`) into the
//!   store, each file renamed to `*.imported` afterwards, so that it is
//!   read once and kept for the administrator to delete.
//! - [`spawn_purge`]: expired key-value entries are removed every
//!   [`PURGE_INTERVAL`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailgate_policy::{KvError, KvStore};
use mailgate_store::kv::{self as store_kv, MtaStsEntry, PluginKvEntry};
use mailgate_store::{KvWriteError, MtaStsCache, PluginKv, StoreError};
use serde::Deserialize;

/// The plugins' key-value snapshot of older versions.
pub const OLD_KV_FILE: &str = "plugins-kv.json";
/// Its write-ahead log.
pub const OLD_KV_LOG: &str = "plugins-kv.log";
/// The MTA-STS policy cache of older versions.
pub const OLD_MTA_STS_FILE: &str = "mta-sts-cache.json";
/// How often expired key-value entries are removed.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

// The limits plugins are told about (the WIT `kv` interface, docs) are
// the ones the store enforces.
const _: () = assert!(mailgate_policy::caps::MAX_KEY == store_kv::MAX_KEY);
const _: () = assert!(mailgate_policy::caps::MAX_VALUE == store_kv::MAX_VALUE);
const _: () = assert!(mailgate_policy::caps::MAX_KEYS_PER_PLUGIN == store_kv::MAX_KEYS_PER_PLUGIN);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn expiry(now: i64, ttl: Option<u64>) -> Option<i64> {
    ttl.map(|t| now.saturating_add(i64::try_from(t).unwrap_or(i64::MAX)))
}

/// Capability `kv` on the store: every write is durable when the plugin's
/// call returns (group commit with the other writers).
pub struct StoreKv(pub Arc<dyn PluginKv>);

fn kv_error(e: KvWriteError) -> KvError {
    match e {
        KvWriteError::TooLarge(_) => KvError::TooLarge,
        KvWriteError::Store(e) => {
            tracing::warn!(error = %e, "plugins: key-value write failed");
            KvError::Unavailable("the store failed".into())
        }
    }
}

#[async_trait::async_trait]
impl KvStore for StoreKv {
    async fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        match self.0.kv_get(plugin, key, now()).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(plugin, error = %e, "plugins: key-value read failed");
                None
            }
        }
    }

    async fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<(), KvError> {
        let now = now();
        self.0
            .kv_set(plugin, key, value, expiry(now, ttl), now)
            .await
            .map_err(kv_error)
    }

    async fn delete(&self, plugin: &str, key: &str) {
        if let Err(e) = self.0.kv_delete(plugin, key).await {
            tracing::warn!(plugin, error = %e, "plugins: key-value delete failed");
        }
    }

    async fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        ttl: Option<u64>,
    ) -> Result<i64, KvError> {
        let now = now();
        self.0
            .kv_increment(plugin, key, delta, expiry(now, ttl), now)
            .await
            .map_err(kv_error)
    }
}

/// Removes expired key-value entries every [`PURGE_INTERVAL`], starting
/// now (runs until the runtime stops).
pub fn spawn_purge(kv: Arc<dyn PluginKv>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match kv.kv_purge_expired(now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "plugins: expired key-value entries removed"),
                Err(e) => {
                    tracing::warn!(error = %e, "plugins: cannot remove expired key-value entries")
                }
            }
        }
    })
}

/// Why the old files could not be moved into the store. The server does
/// not start then (the files are left as they were, nothing is lost).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read or renamed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A file is not what an older mailgate wrote.
    #[error("{0}: not a file of an older mailgate: {1}")]
    Format(PathBuf, String),
    /// The store refused the entries.
    #[error("cannot store what {0} holds: {1}")]
    Store(PathBuf, StoreError),
}

/// What [`import_old_files`] moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Key-value entries stored (expired ones are left out).
    pub kv_entries: usize,
    /// MTA-STS policies stored (expired ones are left out).
    pub mta_sts_policies: usize,
}

/// Moves the files of older versions in `data_dir` into the store, once:
/// each file is renamed to `*.imported` after its content is committed,
/// so a crash in between imports it again at the next start (the same
/// values again: harmless). Nothing to do (no such file) is the usual
/// case and costs two `stat`s.
pub async fn import_old_files(
    data_dir: &Path,
    kv: &dyn PluginKv,
    sts: &dyn MtaStsCache,
) -> Result<Imported, ImportError> {
    let mut done = Imported::default();
    let now = now();
    let snapshot = data_dir.join(OLD_KV_FILE);
    let log = data_dir.join(OLD_KV_LOG);
    if snapshot.exists() || log.exists() {
        let entries = read_old_kv(&snapshot, &log)?;
        let total = entries.len();
        done.kv_entries = kv
            .kv_import(entries, now)
            .await
            .map_err(|e| ImportError::Store(snapshot.clone(), e))?;
        for path in [&snapshot, &log] {
            mark_imported(path)?;
        }
        tracing::info!(
            file = %snapshot.display(),
            entries = done.kv_entries,
            skipped = total - done.kv_entries,
            "plugins: key-value data of an older version moved into the store"
        );
    }
    let file = data_dir.join(OLD_MTA_STS_FILE);
    if file.exists() {
        for (domain, entry) in read_old_mta_sts(&file)? {
            if entry.expires <= now {
                continue;
            }
            // One bad entry (too long a name) is dropped, not the file.
            match sts.mta_sts_put(&domain, entry, now).await {
                Ok(()) => done.mta_sts_policies += 1,
                Err(StoreError::Invalid(why)) => {
                    tracing::warn!(%domain, %why, "relay: MTA-STS cache entry dropped")
                }
                Err(e) => return Err(ImportError::Store(file.clone(), e)),
            }
        }
        mark_imported(&file)?;
        tracing::info!(file = %file.display(), policies = done.mta_sts_policies, "relay: MTA-STS policy cache of an older version moved into the store");
    }
    Ok(done)
}

/// Renames `path` to `path.imported` (if it exists) and syncs the
/// directory.
fn mark_imported(path: &Path) -> Result<(), ImportError> {
    let mut to = path.as_os_str().to_owned();
    to.push(".imported");
    match std::fs::rename(path, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImportError::Io(path.into(), e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ImportError::Io(dir.into(), e))?;
    }
    Ok(())
}

/// An entry of the old key-value files.
#[derive(Deserialize)]
struct OldEntry {
    value: Vec<u8>,
    /// Unix seconds.
    expires: Option<u64>,
}

type OldData = BTreeMap<String, BTreeMap<String, OldEntry>>;

/// The old snapshot: the data and the sequence number of the last write
/// it holds (the oldest files are the bare map).
#[derive(Deserialize)]
#[serde(untagged)]
enum OldSnapshot {
    Current { seq: u64, data: OldData },
    Legacy(OldData),
}

/// One line of the old write-ahead log: `e` the new entry, none for a
/// delete; `s` the write's sequence number.
#[derive(Deserialize)]
struct OldLogLine {
    s: u64,
    p: String,
    k: String,
    e: Option<OldEntry>,
}

/// Reads the old snapshot and replays the log lines written after it,
/// as the old server did at start: lines already in the snapshot, torn
/// or foreign lines are skipped.
fn read_old_kv(snapshot: &Path, log: &Path) -> Result<Vec<PluginKvEntry>, ImportError> {
    let (mut seq, mut data) = match std::fs::read(snapshot) {
        Ok(bytes) => match serde_json::from_slice(&bytes)
            .map_err(|e| ImportError::Format(snapshot.into(), e.to_string()))?
        {
            OldSnapshot::Current { seq, data } => (seq, data),
            OldSnapshot::Legacy(data) => (0, data),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, BTreeMap::new()),
        Err(e) => return Err(ImportError::Io(snapshot.into(), e)),
    };
    match std::fs::read(log) {
        Ok(bytes) => {
            for line in bytes.split(|&b| b == b'\n') {
                let Ok(l) = serde_json::from_slice::<OldLogLine>(line) else {
                    continue;
                };
                if l.s <= seq {
                    continue;
                }
                let ns = data.entry(l.p).or_default();
                match l.e {
                    Some(e) => ns.insert(l.k, e),
                    None => ns.remove(&l.k),
                };
                seq = seq.max(l.s);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImportError::Io(log.into(), e)),
    }
    Ok(data
        .into_iter()
        .flat_map(|(plugin, ns)| {
            ns.into_iter().map(move |(key, e)| PluginKvEntry {
                plugin: plugin.clone(),
                key,
                value: e.value,
                expires: e.expires.map(|x| i64::try_from(x).unwrap_or(i64::MAX)),
            })
        })
        .collect())
}

/// One entry of the old MTA-STS cache file.
#[derive(Deserialize)]
struct OldPolicy {
    domain: String,
    id: String,
    expires: i64,
    policy: String,
}

fn read_old_mta_sts(file: &Path) -> Result<Vec<(String, MtaStsEntry)>, ImportError> {
    let bytes = std::fs::read(file).map_err(|e| ImportError::Io(file.into(), e))?;
    let saved: Vec<OldPolicy> = serde_json::from_slice(&bytes)
        .map_err(|e| ImportError::Format(file.into(), e.to_string()))?;
    Ok(saved
        .into_iter()
        .map(|s| {
            (
                s.domain.trim_end_matches('.').to_ascii_lowercase(),
                MtaStsEntry {
                    id: s.id,
                    expires: s.expires,
                    policy: s.policy,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_store::SqliteStore;

    /// The snapshot, the log lines after it (a later write, a delete, a
    /// line already in the snapshot, a torn last line) and the MTA-STS
    /// file come into the store once; the files are renamed.
    #[tokio::test]
    async fn old_files_are_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let far = now() + 3600;
        std::fs::write(
            data.join(OLD_KV_FILE),
            format!(
                r#"{{"seq":2,"data":{{"greylist":{{"a":{{"value":[111,107],"expires":{far}}},"old":{{"value":[49],"expires":5}},"gone":{{"value":[49],"expires":null}}}}}}}}"#
            ),
        )
        .unwrap();
        std::fs::write(
            data.join(OLD_KV_LOG),
            concat!(
                r#"{"s":2,"p":"greylist","k":"a","e":{"value":[120],"expires":null}}"#,
                "\n",
                r#"{"s":3,"p":"rate","k":"n","e":{"value":[55],"expires":null}}"#,
                "\n",
                r#"{"s":4,"p":"greylist","k":"gone","e":null}"#,
                "\n",
                r#"{"s":5,"p":"rate","k":"n","e":{"val"#,
            ),
        )
        .unwrap();
        std::fs::write(
            data.join(OLD_MTA_STS_FILE),
            format!(
                r#"[{{"domain":"D.test","id":"5","expires":{far},"policy":"version: STSv1\nmode: enforce\nmx: mx.d.test\nmax_age: 1000\n"}},
                   {{"domain":"old.test","id":"1","expires":5,"policy":"x"}}]"#
            ),
        )
        .unwrap();
        let store = SqliteStore::open(data).unwrap();
        let done = import_old_files(data, &*store, &*store).await.unwrap();
        assert_eq!(
            done,
            Imported {
                kv_entries: 2,
                mta_sts_policies: 1
            }
        );
        let t = now();
        assert_eq!(
            store.kv_get("greylist", "a", t).await.unwrap(),
            Some(b"ok".to_vec())
        );
        assert_eq!(store.kv_get("greylist", "gone", t).await.unwrap(), None);
        assert_eq!(
            store.kv_get("rate", "n", t).await.unwrap(),
            Some(b"7".to_vec())
        );
        let sts = store.mta_sts_get("d.test", t).await.unwrap().unwrap();
        assert_eq!((sts.id.as_str(), sts.expires), ("5", far));
        for f in [OLD_KV_FILE, OLD_KV_LOG, OLD_MTA_STS_FILE] {
            assert!(!data.join(f).exists(), "{f} still there");
            assert!(
                data.join(format!("{f}.imported")).exists(),
                "{f} not renamed"
            );
        }
        // Nothing left to import.
        assert_eq!(
            import_old_files(data, &*store, &*store).await.unwrap(),
            Imported::default()
        );
    }

    /// A damaged file stops the import before anything is renamed.
    #[tokio::test]
    async fn a_damaged_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OLD_KV_FILE), b"{ not json").unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let e = import_old_files(dir.path(), &*store, &*store)
            .await
            .unwrap_err();
        assert!(matches!(e, ImportError::Format(..)), "{e}");
        assert!(dir.path().join(OLD_KV_FILE).exists());
    }

    /// Capability `kv` on the store: values, expiry, bounds.
    #[tokio::test]
    async fn store_kv_serves_the_capability() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let kv = StoreKv(store);
        assert_eq!(kv.increment("p", "n", 2, Some(60)).await.unwrap(), 2);
        assert_eq!(kv.get("p", "n").await, Some(b"2".to_vec()));
        kv.set("p", "gone", b"x".to_vec(), Some(0)).await.unwrap();
        assert_eq!(kv.get("p", "gone").await, None);
        kv.delete("p", "n").await;
        assert_eq!(kv.get("p", "n").await, None);
        assert_eq!(
            kv.set("p", &"k".repeat(store_kv::MAX_KEY + 1), vec![], None)
                .await,
            Err(KvError::TooLarge)
        );
    }
}
