//! `mailgate store ...`: check the store, back it up while the server
//! runs, put a backup back while it is stopped, move it between SQLite and
//! PostgreSQL. The copying itself lives in `mailgate_store::backup` and
//! `mailgate_store::migrate`; this file is the command line around it.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use mailgate_store::backup::{self, Progress};
use mailgate_store::migrate;

use crate::config::Config;

/// `mailgate store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Verify the store's integrity; exits 1 and lists every problem found.
    ///
    /// With --repair, first repairs what can be repaired without losing
    /// anything a user sees (like `doveadm force-resync`): bodies no
    /// message refers to are deleted, recorded sizes, UIDNEXT and
    /// HIGHESTMODSEQ are set from the messages, stale header blocks and
    /// undecodable structures are derived again, a missing INBOX is
    /// created, private files too widely readable are set back to their
    /// mode; each repair is printed. Then it checks as without --repair.
    /// What cannot be repaired safely (SQLite page damage, a message
    /// whose body is gone) is reported: restore those from a backup.
    Check {
        /// Repair what can be repaired safely (see above).
        #[arg(long)]
        repair: bool,
        /// With --repair: print what would be repaired, change nothing.
        #[arg(long, requires = "repair")]
        dry_run: bool,
    },
    /// Copy the store to a new directory while the server runs.
    ///
    /// The database is copied as one consistent moment (SQLite's online
    /// backup API; the server goes on serving), then the other files of
    /// the data directory (DKIM keys, plugin key-value data, MTA-STS
    /// cache). PATH must not exist or be empty. The copy is checked like
    /// `store check` before the command succeeds. Progress is shown on a
    /// terminal. docs/operations.md says how to schedule it.
    Backup {
        /// The directory to create (e.g. /var/backups/mailgate/2026-12-07).
        path: PathBuf,
    },
    /// Put a backup in place while the server is stopped.
    ///
    /// PATH is a directory made by `store backup` (or a bare SQLite
    /// database file). Refused while the server runs. The backup is
    /// checked first and a damaged one refused; what it replaces is moved
    /// to <data_dir>/pre-restore-<time>/, not deleted; then `store check`
    /// runs on the result.
    Restore {
        /// The backup directory (or database file).
        path: PathBuf,
    },
    /// Copy a stopped store from SQLite into PostgreSQL, or back.
    ///
    /// One side is always the SQLite store of data_dir (mailgate.db), the
    /// other the PostgreSQL database URL. `--to URL` copies SQLite into
    /// PostgreSQL, `--from URL` PostgreSQL into SQLite. Without URL, the
    /// configuration's [store] url is used, with its password_file, tls
    /// and tls_ca_file ([store] backend is then "postgres"). Everything is
    /// copied as it is: accounts with their password hashes, domains,
    /// aliases, quotas, mailboxes with UIDVALIDITY, UIDNEXT and
    /// HIGHESTMODSEQ, messages with their UIDs, flags, MODSEQs, dates and
    /// bodies, subscriptions, the queue, Sieve scripts and what Sieve
    /// remembers, plugin key-value data, the MTA-STS cache.
    ///
    /// Refused while a server runs on either side (the data directory's
    /// lock, or a node connected to the database), and when the target
    /// already holds data, unless --force. The target is checked like
    /// `store check` and its row counts compared with the source's before
    /// the copy is committed: into PostgreSQL in one transaction, into
    /// SQLite as a new file renamed into place; on a mismatch nothing is
    /// changed and the command exits 1. Memory stays bounded (about three
    /// batches of 8 MiB) whatever the store's size. Progress is shown on a
    /// terminal, one line per table otherwise. docs/scaling.md, "Moving a
    /// store".
    #[command(group(clap::ArgGroup::new("way").required(true).args(["to", "from"])))]
    Migrate {
        /// Copy the SQLite store into the PostgreSQL database URL
        /// (postgres://user@host:port/database).
        #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
        to: Option<String>,
        /// Copy the PostgreSQL database URL into the SQLite store.
        #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
        from: Option<String>,
        /// A file whose first line is the database password.
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
        /// TLS to the database: disable, require or verify-full (as
        /// [store] tls).
        #[arg(long, value_name = "MODE")]
        tls: Option<String>,
        /// With --tls verify-full: the CA certificates (PEM) to trust.
        #[arg(long, value_name = "PATH")]
        tls_ca_file: Option<PathBuf>,
        /// Replace a target that holds data: a PostgreSQL database's rows
        /// are deleted (in the copy's transaction); a SQLite store is
        /// moved to <data_dir>/pre-migrate-<time>/, not deleted.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `store` subcommand.
pub async fn run(config: &Config, command: StoreCommand) -> Result<(), String> {
    match command {
        StoreCommand::Check { repair, dry_run } => {
            if repair {
                run_repair(config, dry_run).await?;
                if dry_run {
                    return Ok(());
                }
            }
            check(config).await
        }
        StoreCommand::Backup { path } => {
            sqlite_only(config, "backup")?;
            run_backup(config, &path).await
        }
        StoreCommand::Restore { path } => {
            sqlite_only(config, "restore")?;
            restore(config, &path).await
        }
        StoreCommand::Migrate {
            to,
            from,
            password_file,
            tls,
            tls_ca_file,
            force,
        } => {
            let (direction, url) = match (to, from) {
                (Some(url), None) => (migrate::Direction::ToPostgres, url),
                (None, Some(url)) => (migrate::Direction::FromPostgres, url),
                _ => return Err("give one of --to and --from".into()),
            };
            let pg = migrate_target(config, &url, password_file, tls, tls_ca_file)?;
            run_migrate(config, direction, pg, force).await
        }
    }
}

/// The PostgreSQL side of `store migrate`: `url` with the options, or
/// (no URL) the configuration's `[store]`.
fn migrate_target(
    config: &Config,
    url: &str,
    password_file: Option<PathBuf>,
    tls: Option<String>,
    tls_ca_file: Option<PathBuf>,
) -> Result<mailgate_store::PgConfig, String> {
    use mailgate_store::postgres::tls::TlsMode;
    let mut pg = if url.trim().is_empty() {
        match config.store.backend_config(&config.data_dir)? {
            mailgate_store::BackendConfig::Postgres(pg) => pg,
            mailgate_store::BackendConfig::Sqlite { .. } => {
                return Err("--to and --from without a URL use [store] url, but the \
                            configuration's [store] backend is \"sqlite\": name the database, \
                            e.g. --to postgres://mailgate@db.example.org/mailgate"
                    .into())
            }
        }
    } else {
        if !mailgate_store::backend::is_postgres_url(url) {
            return Err(format!(
                "{:?} is not a PostgreSQL URL (postgres://user@host:port/database)",
                mailgate_store::backend::url_without_password(url)
            ));
        }
        mailgate_store::PgConfig::new(url.trim())
    };
    if let Some(p) = password_file {
        pg = pg
            .with_password_file(&p)
            .map_err(|e| format!("--password-file {}: {e}", p.display()))?;
    }
    if let Some(word) = tls {
        pg.tls.mode = TlsMode::parse(&word)
            .ok_or_else(|| format!("--tls {word:?}: use disable, require or verify-full"))?;
    }
    if tls_ca_file.is_some() {
        pg.tls.ca_file = tls_ca_file;
    }
    pg.tls
        .check_url(&pg.url)
        .map_err(|e| store_error_text(&e))?;
    Ok(pg)
}

/// A store error's message without the "invalid: " of a refusal.
fn store_error_text(e: &mailgate_store::StoreError) -> String {
    match e {
        mailgate_store::StoreError::Invalid(m) => m.clone(),
        other => other.to_string(),
    }
}

/// `mailgate store migrate`
async fn run_migrate(
    config: &Config,
    direction: migrate::Direction,
    pg: mailgate_store::PgConfig,
    force: bool,
) -> Result<(), String> {
    // The server's own lock, held for the whole copy: no server runs on
    // the SQLite side now, and none starts on it half-way.
    let _lock = crate::server::lock_data_dir(config).map_err(|e| match e {
        crate::server::ServerError::Locked(dir) => format!(
            "a mailgate server is running on {dir}: stop it first (store migrate copies a \
             stopped store)"
        ),
        other => other.to_string(),
    })?;
    let location = mailgate_store::backend::url_without_password(&pg.url);
    let m = migrate::Migration {
        data_dir: config.data_dir.clone(),
        pg,
        direction,
        force,
    };
    let (from, to) = match direction {
        migrate::Direction::ToPostgres => (config.data_dir.display().to_string(), location.clone()),
        migrate::Direction::FromPostgres => {
            (location.clone(), config.data_dir.display().to_string())
        }
    };
    let mut bar = ProgressLine::new();
    let tty = bar.tty;
    let mut show = |p: migrate::Progress| match p {
        migrate::Progress::Rows { done, total, .. } => bar.show_rows(done, total),
        migrate::Progress::Table { table, rows } => {
            if !tty {
                println!("migrate: {table}: {rows} row(s)");
            }
        }
    };
    let report = migrate::migrate(&m, &mut show).await;
    bar.finish();
    let report = report.map_err(|e| {
        format!(
            "store migrate from {from} to {to} failed: {}",
            store_error_text(&e)
        )
    })?;
    if !report.committed {
        for p in &report.problems {
            println!("{p}");
        }
        return Err(format!(
            "the copy from {from} to {to} does not match its source ({} problem(s)); nothing \
             was changed",
            report.problems.len()
        ));
    }
    let rows: u64 = report.tables.iter().map(|t| t.target).sum();
    let messages = report
        .tables
        .iter()
        .find(|t| t.table == "messages")
        .map_or(0, |t| t.target);
    println!("migrated {from} to {to}: {messages} message(s), {rows} row(s) in all");
    if let Some(aside) = &report.set_aside {
        println!(
            "the replaced SQLite store is kept in {} (remove it once satisfied)",
            aside.display()
        );
    }
    println!("store check ok: {to}");
    Ok(())
}

/// `store backup` and `store restore` copy the SQLite database file; a
/// PostgreSQL store is backed up with PostgreSQL's own tools.
fn sqlite_only(config: &Config, command: &str) -> Result<(), String> {
    match config.store.backend {
        crate::config::StoreBackend::Sqlite => Ok(()),
        crate::config::StoreBackend::Postgres => Err(format!(
            "store {command} copies the SQLite database in data_dir and is not supported with \
             [store] backend = \"postgres\": use pg_dump/pg_restore (or pg_basebackup) on the \
             database; see docs/scaling.md"
        )),
    }
}

/// `mailgate store check`
async fn check(config: &Config) -> Result<(), String> {
    // Before opening: opening creates nothing looser, but looks are first.
    let loose = crate::private::loose(config);
    let store = super::open_store(config).await?;
    for l in &loose {
        println!("warning: {l}");
    }
    let problems = store.check().await.map_err(|e| e.to_string())?;
    if problems.is_empty() {
        match store.kind() {
            mailgate_store::BackendKind::Sqlite => {
                println!("store ok: {}", config.data_dir.display())
            }
            mailgate_store::BackendKind::Postgres => println!("store ok: {}", store.location()),
        }
        Ok(())
    } else {
        for p in &problems {
            println!("{p}");
        }
        Err(format!("{} problem(s) found in the store", problems.len()))
    }
}

/// `mailgate store check --repair [--dry-run]`: prints one line per
/// repair (`repaired: ...`, or `would repair: ...`).
async fn run_repair(config: &Config, dry_run: bool) -> Result<(), String> {
    let word = if dry_run { "would repair" } else { "repaired" };
    let mut count = 0;
    for l in crate::private::loose(config)
        .into_iter()
        .filter(|l| l.in_data_dir)
    {
        count += 1;
        if dry_run {
            println!("{word}: {l}");
        }
    }
    if !dry_run {
        for (l, result) in crate::private::tighten(config) {
            match result {
                Ok(()) => println!("{word}: {} set to mode {:04o}", l.path.display(), l.want),
                Err(e) => println!("cannot repair: {l}: {e}"),
            }
        }
    }
    let store = super::open_store(config).await?;
    let repairs = store.repair(dry_run).await.map_err(|e| e.to_string())?;
    for r in &repairs {
        println!("{word}: {}", r.what);
    }
    count += repairs.len();
    if count == 0 {
        println!("nothing to repair");
    } else if dry_run {
        println!("{count} repair(s) to make; run again without --dry-run to make them");
    }
    Ok(())
}

/// `mailgate store backup PATH`
async fn run_backup(config: &Config, dest: &Path) -> Result<(), String> {
    let data_dir = config.data_dir.clone();
    let dest_owned = dest.to_path_buf();
    let report = tokio::task::spawn_blocking(move || {
        let mut bar = ProgressLine::new();
        let r = backup::backup(&data_dir, &dest_owned, &mut |p| bar.show(p));
        bar.finish();
        r
    })
    .await
    .map_err(|e| format!("backup task failed: {e}"))?
    .map_err(|e| format!("backup to {} failed: {e}", dest.display()))?;
    println!(
        "backup ok: {} ({} messages, database {} bytes, {} other file(s))",
        dest.display(),
        report.messages,
        report.database_bytes,
        report.files.len()
    );
    Ok(())
}

/// `mailgate store restore PATH`
async fn restore(config: &Config, src: &Path) -> Result<(), String> {
    // The server's own lock: held for the whole restore, so that no
    // server starts on a half-restored store either.
    let _lock = crate::server::lock_data_dir(config).map_err(|e| match e {
        crate::server::ServerError::Locked(dir) => format!(
            "a mailgate server is running on {dir}: stop it first (restore replaces the store under it)"
        ),
        other => other.to_string(),
    })?;
    let data_dir = config.data_dir.clone();
    let src_owned = src.to_path_buf();
    let report = tokio::task::spawn_blocking(move || backup::restore(&data_dir, &src_owned))
        .await
        .map_err(|e| format!("restore task failed: {e}"))?
        .map_err(|e| format!("restore from {} failed: {e}", src.display()))?;
    println!(
        "restored {} messages from {} into {}",
        report.messages,
        src.display(),
        config.data_dir.display()
    );
    if let Some(aside) = &report.aside {
        println!(
            "the replaced store is kept in {} (remove it once satisfied)",
            aside.display()
        );
    }
    check(config).await
}

/// A progress line on standard error, drawn only on a terminal (a cron
/// job's mail or a log gets nothing).
struct ProgressLine {
    tty: bool,
    drawn: bool,
    last_percent: Option<u64>,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        ProgressLine {
            tty: std::io::stderr().is_terminal(),
            drawn: false,
            last_percent: None,
        }
    }

    fn show(&mut self, p: Progress) {
        if !self.tty || p.total == 0 {
            return;
        }
        let percent = p.done.saturating_mul(100) / p.total;
        if self.last_percent == Some(percent) {
            return;
        }
        self.last_percent = Some(percent);
        self.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rbackup: {percent:3}% ({} of {} pages)",
            p.done, p.total
        );
        let _ = err.flush();
    }

    /// `migrate: 45% (1200 of 2600 rows)`.
    fn show_rows(&mut self, done: u64, total: u64) {
        if !self.tty || total == 0 {
            return;
        }
        let percent = done.saturating_mul(100) / total;
        if self.last_percent == Some(percent) {
            return;
        }
        self.last_percent = Some(percent);
        self.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\rmigrate: {percent:3}% ({done} of {total} rows)");
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
}
