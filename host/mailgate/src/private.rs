//! Private data: the modes of the data directory, the database and the key
//! files.
//!
//! The data directory holds every message and every password hash, so it
//! is created 0700 and the database 0600 whatever the umask (see
//! [`mailgate_store::sqlite::create_private_dir`]); private keys are
//! written 0600. Two things here keep it so for data made by an older
//! version or by hand:
//! - [`tighten`], at `mailgate serve` start: what is in the data
//!   directory, owned by the server's user and looser than it should be,
//!   is set to its private mode (each change logged at WARN). Nothing
//!   outside the data directory is changed.
//! - [`loose`], for `mailgate store check`: one warning per path looser
//!   than its private mode, inside the data directory or a key file named
//!   in the configuration.
//!
//! "Looser" means any permission for the group or others. A key file
//! outside the data directory (for example under `/etc/ssl/private`, often
//! 0640 for a group) is only reported when others may read it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// The mode of the data directory and of directories in it.
pub const DIR_MODE: u32 = 0o700;
/// The mode of the database, its WAL and shared-memory files, and keys.
pub const FILE_MODE: u32 = 0o600;
/// Where `mailgate dkim generate` puts keys by default.
pub const DKIM_DIR: &str = "dkim";

/// One path whose mode is looser than it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loose {
    /// The file or directory.
    pub path: PathBuf,
    /// Its permission bits now.
    pub mode: u32,
    /// What they should be.
    pub want: u32,
    /// Its owner's uid.
    pub uid: u32,
    /// Whether it is inside the data directory (only those are tightened).
    pub in_data_dir: bool,
}

impl std::fmt::Display for Loose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is mode {:04o}, should be {:04o} (readable by its owner only)",
            self.path.display(),
            self.mode,
            self.want
        )
    }
}

/// Every path that should be private and is not (see the module doc).
pub fn loose(config: &Config) -> Vec<Loose> {
    let data = &config.data_dir;
    let mut out = Vec::new();
    check(data, DIR_MODE, 0o077, true, &mut out);
    let db = data.join(mailgate_store::sqlite::DB_FILE);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        check(Path::new(&p), FILE_MODE, 0o077, true, &mut out);
    }
    let dkim = data.join(DKIM_DIR);
    check(&dkim, DIR_MODE, 0o077, true, &mut out);
    if let Ok(entries) = std::fs::read_dir(&dkim) {
        for e in entries.flatten() {
            check(&e.path(), FILE_MODE, 0o077, true, &mut out);
        }
    }
    let mut keys: Vec<&Path> = config.dkim.iter().map(|k| k.key.as_path()).collect();
    if let Some(tls) = &config.tls {
        keys.push(&tls.key);
    }
    for key in keys {
        if out.iter().any(|l| l.path == key) {
            continue;
        }
        let inside = key.starts_with(data);
        let mask = if inside { 0o077 } else { 0o007 };
        check(key, FILE_MODE, mask, inside, &mut out);
    }
    out
}

/// Sets what [`loose`] finds inside the data directory and owned by this
/// process's user to its private mode; returns what was changed and what
/// could not be, as log-ready pairs (the path, and what happened).
pub fn tighten(config: &Config) -> Vec<(Loose, Result<(), String>)> {
    let me = current_uid();
    loose(config)
        .into_iter()
        .filter(|l| l.in_data_dir)
        .map(|l| {
            let result = if me.is_some_and(|uid| uid != l.uid) {
                Err(format!("owned by uid {}, not by this process", l.uid))
            } else {
                std::fs::set_permissions(&l.path, std::fs::Permissions::from_mode(l.want))
                    .map_err(|e| e.to_string())
            };
            (l, result)
        })
        .collect()
}

/// Logs what [`tighten`] did, one WARN line per path.
pub fn tighten_and_log(config: &Config) {
    for (l, result) in tighten(config) {
        let path = l.path.display().to_string();
        let from = format!("{:04o}", l.mode);
        let to = format!("{:04o}", l.want);
        match result {
            Ok(()) => {
                tracing::warn!(path = %path, from = %from, to = %to, "private data: mode tightened")
            }
            Err(e) => {
                tracing::warn!(path = %path, mode = %from, error = %e, "private data: looser than {to} and not changed")
            }
        }
    }
}

fn check(path: &Path, want: u32, mask: u32, in_data_dir: bool, out: &mut Vec<Loose>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & mask != 0 {
        out.push(Loose {
            path: path.to_path_buf(),
            mode,
            want,
            uid: meta.uid(),
            in_data_dir,
        });
    }
}

/// This process's effective uid, from the owner of `/proc/self` (Linux);
/// `None` elsewhere, and then a change is simply tried.
fn current_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_tightens_loose_modes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = data.join(mailgate_store::sqlite::DB_FILE);
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = crate::dev::config(data.clone());
        let found = loose(&config);
        assert!(found.iter().any(|l| l.path == data && l.mode == 0o755));
        assert!(found.iter().any(|l| l.path == db && l.mode == 0o644));
        for (_, r) in tighten(&config) {
            r.unwrap();
        }
        assert!(loose(&config).is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&db), 0o600);
    }
}
