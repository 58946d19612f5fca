//! The readiness check's question to the store: does it accept a write?
//!
//! Asked by `/healthz/ready` (host/metrics). Three things must hold:
//! free space is above `[limits] min_free_space` (else new mail is
//! refused anyway), the writer commits a one-row write (`meta` key
//! `health_probe`, the time of the check), and the data directory's file
//! system takes a new block: [`PROBE_FILE`] is written, synced and
//! removed. SQLite may reuse blocks it already owns (the WAL is written
//! again from its start after a checkpoint), so a full or read-only file
//! system could let the first two pass; the file cannot.

use std::io::Write;

use super::SqliteStore;
use crate::StoreResult;

/// The file the check writes and removes in the data directory.
pub const PROBE_FILE: &str = ".ready-probe";
/// Bytes it writes: one page, so the file system must find a block.
const PROBE_BYTES: usize = 4096;

impl SqliteStore {
    /// `Ok` when the store accepts a write now; the error says why not.
    /// Costs one small commit and one `fsync` of a 4 KiB file.
    pub async fn probe_write(&self) -> StoreResult<()> {
        self.space.check(0)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('health_probe', ?1)",
                [now.to_string()],
            )?;
            Ok(((), Vec::new()))
        })
        .await?;
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        let path = dir.join(PROBE_FILE);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| {
                    f.write_all(&[0u8; PROBE_BYTES])?;
                    f.sync_all()
                });
            let _ = std::fs::remove_file(&path);
            written
        })
        .await
        .map_err(|_| crate::StoreError::Closed)??;
        Ok(())
    }
}
