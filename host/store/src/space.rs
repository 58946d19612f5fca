//! Free space on the data directory's file system.
//!
//! # The rule
//! Below `[limits] min_free_space` nothing new is stored: the store
//! refuses deliveries, APPEND, COPY and imports with
//! [`StoreError::NoSpace`], and the protocols ask first (SMTP and LMTP
//! answer `452 4.3.1 Insufficient system storage` at MAIL, Postfix's
//! `queue_minfree`). Deleting (expunge, flag changes, `user del`) is
//! never refused, and deliveries resume by themselves once space returns:
//! nothing is latched except the warning's rate limit.
//!
//! # Cheap on the hot path
//! [`SpaceGuard::check`] runs on every SMTP MAIL and every delivery, so
//! it asks the file system (`statvfs`) at most once per
//! [`CHECK_INTERVAL`] and otherwise answers from the last figure. The
//! price is that a disk filled within that second is noticed up to a
//! second late; a write that then fails with a full disk is still a
//! clean [`StoreError::NoSpace`] (SQLite rolls the transaction back).
//!
//! # The reserve file
//! SQLite needs a little room to delete: the freed pages are recorded in
//! the write-ahead log before the checkpoint copies them into the
//! database. The WAL file is reused from its start after each checkpoint
//! (mailgate never truncates it), so usually there is room inside it; to
//! be sure, the store keeps [`RESERVE_FILE`] ([`RESERVE_BYTES`] of zeros)
//! in the data directory, as some mail servers do. When the file system
//! is practically full (less free than the reserve itself) or a write
//! failed for lack of space, the reserve is deleted, so that the next
//! delete finds room. While it is released the store counts the reserve
//! as needed: new mail is accepted again only when there is room for
//! `min_free_space` plus the reserve, which is then written again.
//!
//! # The log
//! While space is short a WARN line says so at most once per
//! [`WARN_INTERVAL`]; an INFO line says when space is back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{StoreError, StoreResult};

/// How long a free-space figure is trusted before `statvfs` is asked again.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// At most one warning about low space per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// The reserve file's name in the data directory.
pub const RESERVE_FILE: &str = "space.reserve";
/// The reserve file's size: room for SQLite to delete when the disk is full.
pub const RESERVE_BYTES: u64 = 2 << 20;
/// The default `min_free_space` is the smaller of this ...
pub const DEFAULT_MIN_FREE_CAP: u64 = 1 << 30;
/// ... and this percentage of the file system's size.
pub const DEFAULT_MIN_FREE_PERCENT: u64 = 5;

/// `[limits] min_free_space`: how much must stay free for new mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinFreeSpace {
    /// The smaller of [`DEFAULT_MIN_FREE_CAP`] and
    /// [`DEFAULT_MIN_FREE_PERCENT`] % of the file system.
    #[default]
    Default,
    /// Exactly this many bytes (`0`: refuse only when the disk is full).
    Bytes(u64),
}

impl MinFreeSpace {
    /// The bytes this means on a file system of `total` bytes.
    pub fn resolve(self, total: u64) -> u64 {
        match self {
            MinFreeSpace::Default => {
                DEFAULT_MIN_FREE_CAP.min(total / 100 * DEFAULT_MIN_FREE_PERCENT)
            }
            MinFreeSpace::Bytes(b) => b,
        }
    }
}

/// `u64::MAX` in [`SpaceGuard::min_free`] means [`MinFreeSpace::Default`].
const DEFAULT_SENTINEL: u64 = u64::MAX;

/// One reading of the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceReading {
    /// Bytes available to the server (`f_bavail`).
    pub free: u64,
    /// Size of the file system in bytes.
    pub total: u64,
}

/// Watches the free space of one data directory; see the module doc.
pub struct SpaceGuard {
    dir: PathBuf,
    min_free: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last reading and when it was taken.
    last: Option<(Instant, SpaceReading)>,
    /// Whether the last decision was "short of space".
    short: bool,
    /// When the last warning was logged.
    warned: Option<Instant>,
    /// Whether this process deleted the reserve and has not written it again.
    released: bool,
}

impl SpaceGuard {
    /// A guard for `dir` with the default `min_free_space`. Writes the
    /// reserve file if it is missing and there is room for it.
    pub fn new(dir: &Path) -> SpaceGuard {
        let guard = SpaceGuard {
            dir: dir.to_path_buf(),
            min_free: AtomicU64::new(DEFAULT_SENTINEL),
            state: Mutex::new(State::default()),
        };
        if let Ok(r) = read_fs(dir) {
            if !guard.reserve_path().exists() && r.free >= guard.needed(r.total) + 2 * RESERVE_BYTES
            {
                write_reserve(dir);
            }
        }
        guard
    }

    /// Sets `[limits] min_free_space`.
    pub fn set_min_free(&self, min: MinFreeSpace) {
        let v = match min {
            MinFreeSpace::Default => DEFAULT_SENTINEL,
            MinFreeSpace::Bytes(b) => b.min(DEFAULT_SENTINEL - 1),
        };
        self.min_free.store(v, Ordering::Relaxed);
    }

    /// The configured minimum.
    pub fn min_free(&self) -> MinFreeSpace {
        match self.min_free.load(Ordering::Relaxed) {
            DEFAULT_SENTINEL => MinFreeSpace::Default,
            b => MinFreeSpace::Bytes(b),
        }
    }

    /// `Ok` if `incoming` more bytes can be stored and `min_free_space`
    /// still be free; [`StoreError::NoSpace`] otherwise. A file system
    /// that cannot be asked counts as having room (the write itself will
    /// tell), with a warning.
    pub fn check(&self, incoming: u64) -> StoreResult<()> {
        let mut st = self.lock();
        let Some(r) = self.reading(&mut st, false) else {
            return Ok(());
        };
        let mut needed = self.needed(r.total);
        if st.released {
            needed = needed.saturating_add(RESERVE_BYTES);
        }
        let below = r.free < needed;
        let now = Instant::now();
        if below {
            st.short = true;
            if st
                .warned
                .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL)
            {
                st.warned = Some(now);
                tracing::warn!(
                    dir = %self.dir.display(),
                    free = r.free,
                    min_free_space = needed,
                    "store: free space below [limits] min_free_space; new mail is refused (452 4.3.1) until space returns"
                );
            }
            return Err(StoreError::NoSpace);
        }
        if st.short {
            st.short = false;
            tracing::info!(dir = %self.dir.display(), free = r.free,
                "store: free space is back above [limits] min_free_space; new mail is accepted");
        }
        if st.released {
            // Room for the reserve and min_free_space: write it again, off
            // this (possibly async) thread.
            st.released = false;
            st.last = None;
            let dir = self.dir.clone();
            let spawned = std::thread::Builder::new()
                .name("store-reserve".into())
                .spawn(move || write_reserve(&dir));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "store: cannot start writing the reserve file");
            }
        }
        if r.free < needed.saturating_add(incoming) {
            // Room in general, not for this message (SMTP SIZE=).
            return Err(StoreError::NoSpace);
        }
        Ok(())
    }

    /// Called before every write: when the file system is practically
    /// full (less free than the reserve), the reserve is released so
    /// that the write (typically a delete) finds room.
    pub fn before_write(&self) {
        let mut st = self.lock();
        if let Some(r) = self.reading(&mut st, false) {
            if r.free < RESERVE_BYTES {
                self.release(&mut st);
            }
        }
    }

    /// Called when a write failed for lack of space: the reserve is
    /// released and the next check asks the file system again.
    pub fn on_full(&self) {
        let mut st = self.lock();
        st.last = None;
        self.release(&mut st);
    }

    /// The current reading (fresh: asks the file system now).
    pub fn reading_now(&self) -> Option<SpaceReading> {
        let mut st = self.lock();
        self.reading(&mut st, true)
    }

    fn needed(&self, total: u64) -> u64 {
        self.min_free().resolve(total)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reading(&self, st: &mut State, fresh: bool) -> Option<SpaceReading> {
        let now = Instant::now();
        if !fresh {
            if let Some((at, r)) = st.last {
                if now.duration_since(at) < CHECK_INTERVAL {
                    return Some(r);
                }
            }
        }
        match read_fs(&self.dir) {
            Ok(r) => {
                st.last = Some((now, r));
                Some(r)
            }
            Err(e) => {
                let due = st
                    .warned
                    .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL);
                if due {
                    st.warned = Some(now);
                    tracing::warn!(dir = %self.dir.display(), error = %e, "store: cannot read the free space");
                }
                None
            }
        }
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join(RESERVE_FILE)
    }

    fn release(&self, st: &mut State) {
        match std::fs::remove_file(self.reserve_path()) {
            Ok(()) => {
                st.released = true;
                st.last = None;
                tracing::warn!(dir = %self.dir.display(), bytes = RESERVE_BYTES,
                    "store: the disk is full; released the reserve file so that mail can still be deleted");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "store: cannot release the reserve file");
            }
        }
    }
}

/// Writes `<dir>/`[`RESERVE_FILE`] (zeros, synced, mode 0600) through a
/// temporary name, so that a half-written reserve never counts. A
/// failure is logged.
fn write_reserve(dir: &Path) {
    let path = dir.join(RESERVE_FILE);
    let tmp = dir.join(format!("{RESERVE_FILE}.tmp"));
    let result = (|| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let chunk = vec![0u8; 64 << 10];
        let mut left = RESERVE_BYTES;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "store: cannot write the reserve file");
    }
}

/// `statvfs` of the file system holding `dir`.
pub fn read_fs(dir: &Path) -> std::io::Result<SpaceReading> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(SpaceReading {
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_smaller_of_cap_and_percentage() {
        assert_eq!(MinFreeSpace::Default.resolve(100 << 20), 5 << 20);
        assert_eq!(MinFreeSpace::Default.resolve(1 << 40), 1 << 30);
        assert_eq!(MinFreeSpace::Bytes(7).resolve(1 << 40), 7);
    }

    #[test]
    fn check_against_the_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let g = SpaceGuard::new(dir.path());
        g.set_min_free(MinFreeSpace::Bytes(0));
        assert!(g.check(0).is_ok());
        // More than any disk has free.
        g.set_min_free(MinFreeSpace::Bytes(u64::MAX / 2));
        assert!(matches!(g.check(0), Err(StoreError::NoSpace)));
        // Back to normal: accepted again without any reset.
        g.set_min_free(MinFreeSpace::Bytes(0));
        assert!(g.check(0).is_ok());
        assert!(matches!(g.check(u64::MAX), Err(StoreError::NoSpace)));
    }

    #[test]
    fn reserve_is_released_on_full_and_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let g = SpaceGuard::new(dir.path());
        g.set_min_free(MinFreeSpace::Bytes(0));
        let reserve = dir.path().join(RESERVE_FILE);
        let Some(r) = g.reading_now() else { return };
        if r.free < 3 * RESERVE_BYTES {
            return; // no room on this machine's temporary directory
        }
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
        g.on_full();
        assert!(!reserve.exists());
        // The next check finds room and writes it again (on a thread).
        assert!(g.check(0).is_ok());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reserve.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
    }
}
