//! A consistent copy of the store taken while the server runs
//! (`mailgate store backup`), and putting one back (`mailgate store
//! restore`).
//!
//! # What a backup holds
//! A backup is a directory. `mailgate.db` in it is a copy of the database
//! made with SQLite's online backup API from one read transaction: one
//! moment's state of every account, mailbox, message and queued message,
//! the plugins' key-value data and the MTA-STS policy cache, whatever the
//! server commits meanwhile (WAL lets it go on writing; the copy does not
//! see those writes). Everything else in the data directory is copied as
//! files beside it (DKIM keys in `dkim/`, a development certificate),
//! except what the server makes again by itself or that means nothing
//! once it stops: [`NOT_COPIED`]. Those files are not part of the
//! database's snapshot.
//!
//! # Restoring
//! [`restore`] is for a stopped server (the caller holds the data
//! directory's lock, so none can start meanwhile). It checks the backup
//! first (every invariant of `store check`) and refuses a damaged one,
//! moves what it replaces into `<data_dir>/pre-restore-<time>/` (nothing
//! is deleted), then copies the backup in, each file through a temporary
//! name and synced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::sqlite::DB_FILE;
use crate::{StoreError, StoreResult};

/// Database pages copied per step of the online backup (4 MiB with
/// SQLite's default 4 KiB pages); progress is reported after each.
pub const PAGES_PER_STEP: i32 = 1024;
/// How long to wait before retrying a step the engine found busy.
const BUSY_PAUSE: Duration = Duration::from_millis(20);
/// Entries of the data directory a backup leaves out: the database's own
/// WAL and shared-memory files (the copy is whole without them), the
/// server's lock, pid file and socket, the plugin status and compiled
/// plugin cache (rewritten at start), the free-space reserve, temporary
/// files, and what earlier restores kept aside.
pub const NOT_COPIED: &[&str] = &[
    "mailgate.db-wal",
    "mailgate.db-shm",
    "mailgate.db-journal",
    "serve.lock",
    "serve.pid",
    "queue.sock",
    "plugins-status.json",
    "plugin-cache",
    crate::space::RESERVE_FILE,
];
/// Prefix of the directory where [`restore`] keeps what it replaced.
pub const ASIDE_PREFIX: &str = "pre-restore-";

/// How far a backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Database pages copied so far.
    pub done: u64,
    /// Database pages in all.
    pub total: u64,
}

/// What [`backup`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Size of the database copy in bytes.
    pub database_bytes: u64,
    /// Messages in the copy (mailbox entries).
    pub messages: u64,
    /// The other files copied, relative to the data directory.
    pub files: Vec<PathBuf>,
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Where the replaced files were moved (`None`: nothing was there).
    pub aside: Option<PathBuf>,
    /// Messages in the restored store.
    pub messages: u64,
}

/// Copies the store in `data_dir` to the directory `dest`, which must not
/// exist or be empty, while a server may be using it. `progress` is called
/// after each step. The copy is checked (`store check`) before this
/// returns; a failed backup removes what it wrote.
pub fn backup(
    data_dir: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(Progress),
) -> StoreResult<BackupReport> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(StoreError::NotFound(format!(
            "a store in {}",
            data_dir.display()
        )));
    }
    prepare_dest(dest)?;
    let result = backup_into(data_dir, &db, dest, progress);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

fn backup_into(
    data_dir: &Path,
    db: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(Progress),
) -> StoreResult<BackupReport> {
    let target = dest.join(DB_FILE);
    let partial = dest.join(format!("{DB_FILE}.partial"));
    copy_database(db, &partial, progress)?;
    let messages = verify(&partial)?;
    sync_file(&partial)?;
    std::fs::rename(&partial, &target)?;
    let database_bytes = std::fs::metadata(&target)?.len();
    let mut files = Vec::new();
    copy_tree(data_dir, dest, Path::new(""), &mut files, true)?;
    sync_dir(dest)?;
    Ok(BackupReport {
        database_bytes,
        messages,
        files,
    })
}

/// The online backup: the source is read inside one read transaction, so
/// the copy is one moment's state however much the server writes
/// meanwhile (without it SQLite restarts the copy after each change by
/// another process, and a busy server could keep it from ever finishing).
fn copy_database(db: &Path, to: &Path, progress: &mut dyn FnMut(Progress)) -> StoreResult<()> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(10))?;
    src.execute_batch("BEGIN")?;
    // BEGIN is deferred: this read starts the snapshot.
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })?;
    let mut dst = Connection::open(to)?;
    {
        let b = Backup::new(&src, &mut dst)?;
        loop {
            let step = b.step(PAGES_PER_STEP)?;
            let p = b.progress();
            let total = u64::try_from(p.pagecount).unwrap_or(0);
            let left = u64::try_from(p.remaining).unwrap_or(0);
            progress(Progress {
                done: total.saturating_sub(left),
                total,
            });
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                // Another connection holds a lock the step needs: wait.
                _ => std::thread::sleep(BUSY_PAUSE),
            }
        }
    }
    src.execute_batch("COMMIT")?;
    // The copy is a plain database file (no WAL beside it).
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Runs every check of `store check` on a database file; returns its
/// message count, or [`StoreError::Corrupt`] listing the problems.
fn verify(db: &Path) -> StoreResult<u64> {
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let problems = crate::sqlite::check_connection(&c)?;
    if !problems.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "{} problem(s) in {}: {}",
            problems.len(),
            db.display(),
            problems.join("; ")
        )));
    }
    let n: i64 = c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Puts the backup in `src` (a directory made by [`backup`], or a bare
/// SQLite database file such as `sqlite3 .backup` makes) in place in
/// `data_dir`. The server must be stopped: the caller holds the data
/// directory's lock. Refuses a backup that fails `store check`. Returns
/// where the replaced files went.
pub fn restore(data_dir: &Path, src: &Path) -> StoreResult<RestoreReport> {
    let (src_db, src_dir) = if src.is_dir() {
        (src.join(DB_FILE), Some(src))
    } else {
        (src.to_path_buf(), None)
    };
    if !src_db.is_file() {
        return Err(StoreError::NotFound(format!("{}", src_db.display())));
    }
    verify(&src_db).map_err(|e| {
        StoreError::Invalid(format!(
            "the backup is damaged or not a mailgate store, nothing was changed: {e}"
        ))
    })?;
    crate::sqlite::create_private_dir(data_dir)?;
    // What the restore replaces: the database with its WAL and shared
    // memory, and each other entry the backup holds.
    let mut replaced: Vec<String> = vec![
        DB_FILE.into(),
        format!("{DB_FILE}-wal"),
        format!("{DB_FILE}-shm"),
        format!("{DB_FILE}-journal"),
    ];
    let mut extra = Vec::new();
    if let Some(dir) = src_dir {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != DB_FILE && !skipped(&name) {
                extra.push(name.clone());
                replaced.push(name);
            }
        }
    }
    let aside = data_dir.join(format!(
        "{ASIDE_PREFIX}{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let mut moved = false;
    for name in &replaced {
        let from = data_dir.join(name);
        if std::fs::symlink_metadata(&from).is_ok() {
            if !moved {
                crate::sqlite::create_private_dir(&aside)?;
                moved = true;
            }
            std::fs::rename(&from, aside.join(name))?;
        }
    }
    let tmp = data_dir.join(format!("{DB_FILE}.restoring"));
    copy_file(&src_db, &tmp)?;
    std::fs::rename(&tmp, data_dir.join(DB_FILE))?;
    if let Some(dir) = src_dir {
        for name in &extra {
            let mut ignored = Vec::new();
            copy_entry(
                &dir.join(name),
                &data_dir.join(name),
                Path::new(name),
                &mut ignored,
            )?;
        }
    }
    sync_dir(data_dir)?;
    let messages = verify(&data_dir.join(DB_FILE))?;
    Ok(RestoreReport {
        aside: moved.then_some(aside),
        messages,
    })
}

/// Whether a data-directory entry is left out of backups.
fn skipped(name: &str) -> bool {
    NOT_COPIED.contains(&name)
        || name.starts_with(ASIDE_PREFIX)
        || name.starts_with(DB_FILE)
        || name.ends_with(".tmp")
}

/// `dest` must not exist (it is created 0700) or be an empty directory.
fn prepare_dest(dest: &Path) -> StoreResult<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(StoreError::Exists(format!(
                    "{} (a backup goes into a new or empty directory)",
                    dest.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::sqlite::create_private_dir(dest)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies the entries of `from` (the data directory at the top level:
/// skipping [`NOT_COPIED`] and the database) into `to`. Files whose name
/// ends in `.log` go before the others, so that an append-only log and
/// the snapshot it follows (the plugins' key-value data) are copied in
/// the order that keeps them consistent when the snapshot is rewritten
/// during the backup.
fn copy_tree(
    from: &Path,
    to: &Path,
    rel: &Path,
    files: &mut Vec<PathBuf>,
    top: bool,
) -> StoreResult<()> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(from)? {
        let name = entry?.file_name();
        let text = name.to_string_lossy();
        if top && skipped(&text) {
            continue;
        }
        names.push(name);
    }
    names.sort_by_key(|n| (!n.to_string_lossy().ends_with(".log"), n.clone()));
    for name in names {
        copy_entry(&from.join(&name), &to.join(&name), &rel.join(&name), files)?;
    }
    Ok(())
}

/// Copies one file or directory (recursively), keeping its permission
/// bits; sockets, devices and symbolic links are left out.
fn copy_entry(from: &Path, to: &Path, rel: &Path, files: &mut Vec<PathBuf>) -> StoreResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(from)?;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        copy_tree(from, to, rel, files, false)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
        sync_dir(to)?;
    } else if meta.is_file() {
        copy_file(from, to)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
        files.push(rel.to_path_buf());
    }
    Ok(())
}

/// Copies a file and syncs the copy. A file that disappears meanwhile
/// (a temporary file renamed away) is no error.
fn copy_file(from: &Path, to: &Path) -> StoreResult<()> {
    match std::fs::copy(from, to) {
        Ok(_) => sync_file(to),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn sync_file(path: &Path) -> StoreResult<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .sync_all()?;
    Ok(())
}

fn sync_dir(path: &Path) -> StoreResult<()> {
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        DeliveryTarget, Directory, MailStore, MessageStructure, NewMessage, SieveScripts,
        SqliteStore,
    };

    fn message(text: &str) -> NewMessage {
        let raw = text.as_bytes().to_vec();
        NewMessage {
            structure: MessageStructure::parse(&raw),
            raw: std::sync::Arc::new(raw),
            internal_date: 1_700_000_000,
        }
    }

    #[tokio::test]
    async fn backup_then_restore_round_trip() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(data.path()).unwrap();
        let id = store.create_account("a@x", "h").await.unwrap();
        let targets = [DeliveryTarget {
            account: id,
            mailbox: "INBOX".into(),
            flags: vec![],
        }];
        store
            .deliver(message("Subject: one\r\n\r\nbody\r\n"), &targets)
            .await
            .unwrap();
        // Users' Sieve scripts are in the database: backed up with it.
        store.sieve_put(id, "main", "keep;").await.unwrap();
        store.sieve_set_active(id, Some("main")).await.unwrap();
        std::fs::create_dir(data.path().join("dkim")).unwrap();
        std::fs::write(data.path().join("dkim/x.mail.pem"), "key").unwrap();
        std::fs::write(data.path().join("serve.pid"), "1").unwrap();

        let dest = out.path().join("b1");
        let mut steps = 0;
        let report = backup(data.path(), &dest, &mut |_| steps += 1).unwrap();
        assert!(steps >= 1);
        assert_eq!(report.messages, 1);
        assert_eq!(report.files, vec![PathBuf::from("dkim/x.mail.pem")]);
        assert!(!dest.join("serve.pid").exists());
        // A second backup into the same, now full, directory is refused.
        assert!(matches!(
            backup(data.path(), &dest, &mut |_| {}),
            Err(StoreError::Exists(_))
        ));

        // Later changes, then the restore brings back the backup's state.
        store
            .deliver(message("Subject: two\r\n\r\nbody\r\n"), &targets)
            .await
            .unwrap();
        store.sieve_set_active(id, None).await.unwrap();
        store.sieve_delete(id, "main").await.unwrap();
        drop(store);
        let r = restore(data.path(), &dest).unwrap();
        assert_eq!(r.messages, 1);
        let aside = r.aside.unwrap();
        assert!(aside.join(DB_FILE).is_file());
        assert!(aside.join("dkim/x.mail.pem").is_file());
        assert_eq!(
            std::fs::read_to_string(data.path().join("dkim/x.mail.pem")).unwrap(),
            "key"
        );
        let store = SqliteStore::open(data.path()).unwrap();
        assert!(store.check().await.unwrap().is_empty());
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap();
        assert_eq!(store.list_messages(inbox.id).await.unwrap().len(), 1);
        assert_eq!(
            store.sieve_active(id).await.unwrap(),
            Some(("main".into(), "keep;".into()))
        );
    }

    #[test]
    fn a_damaged_backup_is_refused_and_nothing_changes() {
        let data = tempfile::tempdir().unwrap();
        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join(DB_FILE), b"not a database at all").unwrap();
        assert!(restore(data.path(), bad.path()).is_err());
        assert!(!data.path().join(DB_FILE).exists());
    }
}
