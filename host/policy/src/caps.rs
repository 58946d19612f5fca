//! The host side of the capabilities: the key-value store and the DNS
//! resolver (traits, so the binary plugs in its own), with the
//! implementations this crate ships.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

type Data = BTreeMap<String, BTreeMap<String, Entry>>;

/// The snapshot file: the data and the sequence number of the last write
/// it holds (older files are the bare map).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Snapshot {
    Current { seq: u64, data: Data },
    Legacy(Data),
}

/// One line of the write-ahead log: `e` is the new entry, none for a
/// delete; `s` the write's sequence number.
#[derive(Serialize, Deserialize)]
struct LogLine<'a> {
    s: u64,
    #[serde(borrow)]
    p: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    k: std::borrow::Cow<'a, str>,
    e: Option<Entry>,
}

/// The log is folded into a new snapshot once it holds this many bytes.
const COMPACT_LOG_BYTES: u64 = 1 << 20;

/// The shipped [`KvStore`]: in memory, persisted as a snapshot
/// (`plugins-kv.json`) plus a write-ahead log (`plugins-kv.log`).
///
/// # Durability
/// Every write is appended (in memory) to the pending log; nothing is
/// written to disk during a plugin call. [`FileKv::commit`] makes every
/// write made so far durable: one append and one `fdatasync` of the log,
/// shared by all the callers waiting at that moment (group commit), and
/// nothing at all when no write is pending. The SMTP session commits
/// before the reply that follows a hook (so a greylisting triplet or a
/// rate counter is on disk before the client hears the answer that
/// depends on it); the watcher commits every poll interval and at
/// shutdown ([`FileKv::flush`]), and folds the log into a new snapshot
/// (temporary file, fsync, rename) once it passed [`COMPACT_LOG_BYTES`].
/// At open the snapshot is read and the log lines written after it are
/// replayed; a torn last line (a crash during an append) is skipped.
pub struct FileKv {
    path: Option<PathBuf>,
    state: Mutex<KvState>,
    /// The log file; held by the commit leader and by compaction.
    log: Mutex<LogFile>,
    /// The sequence number of the last write (mirrors `KvState::seq`).
    seq: AtomicU64,
    /// The sequence number of the last write on disk.
    durable: AtomicU64,
}

#[derive(Default)]
struct KvState {
    data: Data,
    /// Changed since the last snapshot.
    dirty: bool,
    /// Log lines not yet written.
    pending: Vec<u8>,
    seq: u64,
}

#[derive(Default)]
struct LogFile {
    file: Option<std::fs::File>,
    /// Bytes in the log since the last snapshot.
    bytes: u64,
    /// A write failed part-way: start the next one on a fresh line.
    torn: bool,
}

impl FileKv {
    /// A store kept only in memory (tests, `plugin check`).
    pub fn in_memory() -> FileKv {
        FileKv {
            path: None,
            state: Mutex::new(KvState::default()),
            log: Mutex::new(LogFile::default()),
            seq: AtomicU64::new(0),
            durable: AtomicU64::new(0),
        }
    }

    /// A store persisted at `path` (and its log beside it, `*.log`),
    /// loaded from them if they exist.
    pub fn open(path: &Path) -> std::io::Result<FileKv> {
        let (mut seq, mut data) = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes).map_err(std::io::Error::other)? {
                Snapshot::Current { seq, data } => (seq, data),
                Snapshot::Legacy(data) => (0, data),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let log_path = path.with_extension("log");
        let mut log_bytes = 0;
        let mut torn = false;
        match std::fs::read(&log_path) {
            Ok(bytes) => {
                log_bytes = bytes.len() as u64;
                // A crash during an append: the next one starts a new line.
                torn = bytes.last().is_some_and(|&b| b != b'\n');
                for line in bytes.split(|&b| b == b'\n') {
                    // Empty, torn or foreign lines are skipped.
                    let Ok(l) = serde_json::from_slice::<LogLine<'_>>(line) else {
                        continue;
                    };
                    // Already in the snapshot, or a line written twice
                    // (a failed append retried).
                    if l.s <= seq {
                        continue;
                    }
                    let ns = data.entry(l.p.into_owned()).or_default();
                    match l.e {
                        Some(e) => ns.insert(l.k.into_owned(), e),
                        None => ns.remove(l.k.as_ref()),
                    };
                    seq = seq.max(l.s);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(FileKv {
            path: Some(path.to_path_buf()),
            state: Mutex::new(KvState {
                data,
                dirty: log_bytes > 0,
                pending: Vec::new(),
                seq,
            }),
            log: Mutex::new(LogFile {
                file: None,
                bytes: log_bytes,
                torn,
            }),
            seq: AtomicU64::new(seq),
            durable: AtomicU64::new(seq),
        })
    }

    /// Whether a write is not yet on disk (a lock-free check: what a
    /// [`FileKv::commit`] with nothing to do costs).
    pub fn needs_commit(&self) -> bool {
        self.seq.load(Ordering::Acquire) > self.durable.load(Ordering::Acquire)
    }

    /// Makes every write made so far durable (blocking: one append and one
    /// `fdatasync` of the log, shared with concurrent callers). Returns at
    /// once when nothing is pending or the store is in memory only.
    pub fn commit(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let target = self.seq.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let mut log = self.log_lock();
        // The previous leader's append may have covered us.
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let (bytes, seq) = {
            let mut state = self.lock();
            (std::mem::take(&mut state.pending), state.seq)
        };
        match Self::append(path, &mut log, &bytes) {
            Ok(()) => {
                self.durable.fetch_max(seq, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                // Keep the lines for the next attempt, in order.
                let mut state = self.lock();
                let later = std::mem::replace(&mut state.pending, bytes);
                state.pending.extend_from_slice(&later);
                log.torn = true;
                Err(e)
            }
        }
    }

    fn append(path: &Path, log: &mut LogFile, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if log.file.is_none() {
            log.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path.with_extension("log"))?,
            );
        }
        let file = log.file.as_mut().expect("opened above");
        if log.torn {
            file.write_all(b"\n")?;
            log.torn = false;
        }
        file.write_all(bytes)?;
        file.sync_data()?;
        log.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Commits what is pending, and folds the log into a new snapshot when
    /// it has grown past [`COMPACT_LOG_BYTES`] (the runtime calls this
    /// every poll interval and at shutdown).
    pub fn flush(&self) -> std::io::Result<()> {
        self.commit()?;
        if self.log_lock().bytes < COMPACT_LOG_BYTES {
            return Ok(());
        }
        self.snapshot()
    }

    /// Writes a new snapshot of everything (dropping expired entries) if
    /// anything changed since the last one, then empties the log.
    pub fn snapshot(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        // No commit runs meanwhile; writes may go on in memory.
        let mut log = self.log_lock();
        let (bytes, seq) = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(());
            }
            let t = now();
            for ns in state.data.values_mut() {
                ns.retain(|_, e| e.expires.is_none_or(|x| x > t));
            }
            state.dirty = false;
            // Everything pending is in the snapshot.
            state.pending.clear();
            let seq = state.seq;
            let snapshot = serde_json::to_vec(&SnapshotRef {
                seq,
                data: &state.data,
            });
            (snapshot.map_err(std::io::Error::other)?, seq)
        };
        let tmp = path.with_extension("tmp");
        let result = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            // Lines left in the log are at most `seq`: skipped at open.
            let log_path = path.with_extension("log");
            log.file = None;
            std::fs::File::create(&log_path)?.sync_all()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                log.bytes = 0;
                log.torn = false;
                self.durable.fetch_max(seq, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                self.lock().dirty = true;
                Err(e)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KvState> {
        // A panic while holding the lock cannot leave a map half-updated
        // in a way that matters here: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_lock(&self) -> std::sync::MutexGuard<'_, LogFile> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a write (under the state lock): the pending log line and
    /// the sequence number.
    fn logged(&self, state: &mut KvState, plugin: &str, key: &str, entry: Option<&Entry>) {
        state.dirty = true;
        if self.path.is_none() {
            return;
        }
        state.seq += 1;
        let line = LogLine {
            s: state.seq,
            p: plugin.into(),
            k: key.into(),
            e: entry.cloned(),
        };
        if serde_json::to_writer(&mut state.pending, &line).is_ok() {
            state.pending.push(b'\n');
        }
        self.seq.store(state.seq, Ordering::Release);
    }

    /// Stores `entry` under `key` (state locked by the caller).
    fn put_locked(
        &self,
        state: &mut KvState,
        plugin: &str,
        key: &str,
        entry: Entry,
    ) -> Result<(), KvError> {
        if key.len() > MAX_KEY || entry.value.len() > MAX_VALUE {
            return Err(KvError::TooLarge);
        }
        let ns = state.data.entry(plugin.to_string()).or_default();
        if ns.len() >= MAX_KEYS_PER_PLUGIN && !ns.contains_key(key) {
            let t = now();
            ns.retain(|_, e| e.expires.is_none_or(|x| x > t));
            if ns.len() >= MAX_KEYS_PER_PLUGIN {
                return Err(KvError::TooLarge);
            }
        }
        self.logged(state, plugin, key, Some(&entry));
        state
            .data
            .entry(plugin.to_string())
            .or_default()
            .insert(key.to_string(), entry);
        Ok(())
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    seq: u64,
    data: &'a Data,
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
        let mut state = self.lock();
        self.put_locked(&mut state, plugin, key, Entry { value, expires })
    }

    fn delete(&self, plugin: &str, key: &str) {
        let mut state = self.lock();
        let removed = state
            .data
            .get_mut(plugin)
            .is_some_and(|ns| ns.remove(key).is_some());
        if removed {
            self.logged(&mut state, plugin, key, None);
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
        let mut state = self.lock();
        let current = state
            .data
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
        self.put_locked(
            &mut state,
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

    /// A committed write survives without any snapshot (a crash right
    /// after the reply); an uncommitted one is the only thing lost.
    #[test]
    fn committed_writes_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.json");
        let kv = FileKv::open(&path).unwrap();
        assert!(!kv.needs_commit());
        kv.commit().unwrap(); // nothing to do: no file written
        assert!(!dir.path().join("kv.log").exists());
        kv.increment("p", "n", 2, None).unwrap();
        kv.set("p", "k", b"v".to_vec(), Some(3600)).unwrap();
        kv.set("p", "gone", b"x".to_vec(), None).unwrap();
        kv.delete("p", "gone");
        assert!(kv.needs_commit());
        kv.commit().unwrap();
        assert!(!kv.needs_commit());
        kv.increment("p", "lost", 1, None).unwrap();
        drop(kv); // the crash: no flush, no snapshot
        assert!(!path.exists());
        let again = FileKv::open(&path).unwrap();
        assert_eq!(again.get("p", "n"), Some(b"2".to_vec()));
        assert_eq!(again.get("p", "k"), Some(b"v".to_vec()));
        assert_eq!(again.get("p", "gone"), None);
        assert_eq!(again.get("p", "lost"), None);
        // Writes go on after a replay; a snapshot empties the log and the
        // lines it holds are not replayed over it.
        assert_eq!(again.increment("p", "n", 1, None).unwrap(), 3);
        again.commit().unwrap();
        again.snapshot().unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("kv.log")).unwrap().len(),
            0
        );
        again.increment("p", "n", 1, None).unwrap();
        again.commit().unwrap();
        drop(again);
        let third = FileKv::open(&path).unwrap();
        assert_eq!(third.get("p", "n"), Some(b"4".to_vec()));
        // A torn last line (crash during an append) is skipped.
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("kv.log"))
            .unwrap();
        log.write_all(br#"{"s":99,"p":"p","k":"n","e":{"val"#)
            .unwrap();
        drop(log);
        let fourth = FileKv::open(&path).unwrap();
        assert_eq!(fourth.get("p", "n"), Some(b"4".to_vec()));
        assert_eq!(fourth.increment("p", "n", 1, None).unwrap(), 5);
        fourth.commit().unwrap();
        drop(fourth);
        assert_eq!(
            FileKv::open(&path).unwrap().get("p", "n"),
            Some(b"5".to_vec())
        );
    }

    /// A snapshot of the old format (the bare map) still opens.
    #[test]
    fn legacy_snapshot_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.json");
        std::fs::write(&path, br#"{"p":{"n":{"value":[55],"expires":null}}}"#).unwrap();
        let kv = FileKv::open(&path).unwrap();
        assert_eq!(kv.get("p", "n"), Some(b"7".to_vec()));
    }

    /// Concurrent increments add up, and concurrent commits share appends.
    #[test]
    fn concurrent_increments_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.json");
        let kv = std::sync::Arc::new(FileKv::open(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        kv.increment("p", "n", 1, None).unwrap();
                        kv.commit().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(kv);
        assert_eq!(
            FileKv::open(&path).unwrap().get("p", "n"),
            Some(b"200".to_vec())
        );
    }
}
