//! The command line: `mailgate [--config PATH | --dev] COMMAND`.
//!
//! Every admin command opens the store directly and works while the server
//! runs (the store serialises the two processes' writes).

mod admin;
pub(crate) mod config_check;
mod dkim;
mod export;
mod healthcheck;
mod imap_source;
mod import;
mod mailbox;
mod maildir;
mod mbox;
mod plugin;
mod queue;
pub mod sendmail;
mod sieve;
mod sieve_test;
mod store;

pub use config_check::ConfigCommand;
pub use dkim::DkimCommand;
pub use export::ExportCommand;
pub use import::ImportCommand;
pub use mailbox::MailboxCommand;
pub use queue::QueueCommand;
pub use store::StoreCommand;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// The stack of every runtime thread (workers and the blocking pool):
/// wasmtime's compiler recurses deeply when it compiles a plugin. Set
/// here rather than left to tokio's default (2 MiB) so that the glibc and
/// the static musl builds behave the same (musl's own default for C
/// threads is only 128 KiB); untouched stack pages cost no memory.
pub const WORKER_STACK_SIZE: usize = 8 << 20;

/// The default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/mailgate/mailgate.toml";

/// mailgate — a mail server (SMTP, POP3, IMAP) with policy in WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "mailgate", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file (TOML).
    #[arg(long, global = true, env = "MAILGATE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Use the development profile instead of a configuration file: data in
    /// ./dev-data, domain mailgate.test, demo account, listeners on 127.0.0.1.
    #[arg(long, global = true, conflicts_with = "config")]
    pub dev: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server in the foreground (stop it with SIGTERM or Ctrl-C).
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases (an address that delivers to one or more others).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Manage local domains (besides those in the configuration file).
    #[command(subcommand)]
    Domain(DomainCommand),
    /// An account's mailboxes: list, create, delete, rename, expunge
    /// (like `doveadm mailbox` and `doveadm expunge`).
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Maintain the store: check it, back it up while the server runs,
    /// restore a backup.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Look at and steer the outbound queue (mail to other domains).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// DKIM signing keys for outgoing mail.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// Policy plugins: list what runs, check or run a component, write a
    /// new plugin crate, reload.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Move an account's mail in from another server (Maildir, mbox),
    /// keeping UIDs, flags and dates so that clients do not notice.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Write an account's mail out as Maildir or mbox (the way back out).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Ask the running server whether it is ready (`/healthz/ready` of
    /// `[listen] metrics`): exit 0 if so, 1 if not or if it does not
    /// answer. For a container's HEALTHCHECK; needs no curl.
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Ask the running server to re-read the configuration file and apply
    /// it without dropping connections (SIGHUP, like `postfix reload`):
    /// the file is checked first, and with an error nothing is sent. Keys
    /// that need a restart (listeners, data_dir, ...) are named in the
    /// server's log; see docs/operations.md, "Reloading the configuration".
    Reload,
    /// Check the configuration file and print the effective configuration
    /// (like `postconf`/`postconf -n`, `doveconf`/`doveconf -n`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Sieve filter scripts (RFC 5228): check one, manage an account's
    /// scripts (list, get, put, activate, deactivate, delete), test one
    /// on stored mail.
    #[command(subcommand)]
    Sieve(sieve::SieveCommand),
    /// Send one message read on standard input, like `sendmail` (also how
    /// the binary behaves when started through a link named `sendmail`):
    /// `mailgate sendmail -t -i < message`, `mailgate sendmail -f
    /// cron@example.org admin@example.org < report`. Options: -t
    /// (recipients from To/Cc/Bcc), -f/-r ADDR (sender), -F NAME, -i/-oi,
    /// -N/-R/-V (DSN), -v. The message goes to the running server's smtp
    /// listener; mail to other domains needs this machine's address (e.g.
    /// "127.0.0.1/32") in [relay] trusted_networks. Exit codes as
    /// sendmail's (0 sent, 64 usage, 65 bad message, 67 recipient refused,
    /// 69 refused, 75 try again later).
    #[command(disable_help_flag = true)]
    Sendmail {
        /// Options and recipients, as for sendmail.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// `mailgate user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account (with INBOX, Sent, Drafts, Trash, Junk, Archive).
    Add {
        /// The account's address, e.g. alice@example.org.
        address: String,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List the accounts, one address per line.
    List,
    /// Show an account (like `doveadm user` and `doveadm quota get`):
    /// quota and usage, message count, its mailboxes, last login, and the
    /// aliases (directly or through other aliases) and catch-alls that
    /// deliver to it.
    Show {
        /// The account's address.
        address: String,
        /// One JSON object instead: address, quota_bytes, used_bytes,
        /// messages, last_login, mailboxes, aliases, catch_alls.
        #[arg(long)]
        json: bool,
    },
    /// Change an account's password.
    Passwd {
        /// The account's address.
        address: String,
        /// Read the new password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set or remove an account's storage quota (shown to IMAP clients as
    /// QUOTA). No delivery stores a message past it: SMTP answers
    /// `452 4.2.2`, or keeps the copy in the queue while other recipients
    /// get theirs (see docs/operations.md, "Quotas").
    Quota {
        /// The account's address.
        address: String,
        /// The limit: bytes, or with a unit (K, M, G; powers of 1024), or
        /// `none` to remove it.
        limit: String,
    },
    /// Delete an account with all its mail. Refused while an alias or a
    /// domain's catch-all points at it (mail would be lost without a word).
    Del {
        /// The account's address.
        address: String,
        /// Also remove the address from the aliases that list it (an alias
        /// left with no target is deleted) and clear the catch-alls that
        /// point at it; each change is printed.
        #[arg(long)]
        force: bool,
    },
}

/// `mailgate alias ...`
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create (or replace) an alias delivering to one or more addresses.
    /// Each target must be an account or alias that exists in a local
    /// domain, or, with `[srs]` on, an address in another domain (the
    /// message is forwarded with its sender rewritten); loops are
    /// refused.
    Add {
        /// The alias address, e.g. team@example.org.
        alias: String,
        /// Where its mail goes.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// List the aliases: `alias -> target, target`.
    List,
    /// Delete an alias.
    Del {
        /// The alias address.
        alias: String,
    },
}

/// `mailgate domain ...`
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a local domain (or change its catch-all).
    Add {
        /// The domain, e.g. example.org.
        domain: String,
        /// Deliver mail for unknown addresses in the domain to this address
        /// (an existing local account or alias; `none` removes it).
        #[arg(long, value_name = "ADDRESS")]
        catch_all: Option<String>,
        /// Remove the domain's catch-all.
        #[arg(long, conflicts_with = "catch_all")]
        no_catch_all: bool,
    },
    /// Set or remove a domain's catch-all: `domain catch-all example.org
    /// postmaster@example.org`, or `none` to remove it.
    CatchAll {
        /// The domain.
        domain: String,
        /// An existing local account or alias, or `none`.
        target: String,
    },
    /// List the local domains: those of the configuration file and those added here.
    List,
    /// Remove a local domain added with `domain add`.
    Del {
        /// The domain.
        domain: String,
    },
}

/// The configuration the command line asks for.
pub fn load_config(cli: &Cli) -> Result<Config, String> {
    if cli.dev {
        return Ok(crate::dev::config(PathBuf::from("dev-data")));
    }
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    Config::load(&path).map_err(|e| e.to_string())
}

/// Opens the store of `config` (`[store] backend`) for an admin command
/// (the server may be running on it at the same time: SQLite's locking,
/// or PostgreSQL's transactions, make that safe).
async fn open_store(
    config: &Config,
) -> Result<std::sync::Arc<dyn mailgate_store::Backend>, String> {
    let backend = config.store.backend_config(&config.data_dir)?;
    let store = mailgate_store::open_backend(&backend)
        .await
        .map_err(|e| match &backend {
            mailgate_store::BackendConfig::Sqlite { data_dir } => {
                format!("cannot open the store in {}: {e}", data_dir.display())
            }
            mailgate_store::BackendConfig::Postgres(_) => {
                format!("cannot open the PostgreSQL store: {e}")
            }
        })?;
    store.set_min_free_space(config.limits.min_free_space());
    Ok(store)
}

/// Runs a parsed command line; the exit code says how it went.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(&cli);
    if let Command::Healthcheck(args) = &cli.command {
        return healthcheck::run(&cli, args);
    }
    // `config check` reads the file itself, to report its problems with
    // the file and line.
    if let Command::Config(c) = &cli.command {
        return match config_check::run(cli.config.as_deref(), cli.dev, c) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("mailgate: {e}")),
        };
    }
    // Making a DKIM key needs no `[[dkim]]` table (it comes before the
    // table that names the key); the configuration, if there is one, says
    // where the data directory is (keys go to <data_dir>/dkim/).
    if let Command::Dkim(c) = &cli.command {
        let no_config =
            !cli.dev && cli.config.is_none() && !std::path::Path::new(DEFAULT_CONFIG).exists();
        // With --out the configuration is not read at all (it may not
        // exist yet: the key comes first).
        let data_dir = if no_config || matches!(c, DkimCommand::Generate { out: Some(_), .. }) {
            None
        } else {
            match load_config(&cli) {
                Ok(config) => Some(config.data_dir),
                Err(e) => return fail(&format!("mailgate: {e}")),
            }
        };
        return match dkim::dkim(c, data_dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("mailgate: {e}")),
        };
    }
    // `sieve check` reads only the script.
    if let Command::Sieve(c) = &cli.command {
        if c.needs_no_config() {
            return sieve::run(c);
        }
    }
    // `plugin check`, `run` and `new` need no configuration file: without
    // --config and with nothing at the default path they go on without one.
    if matches!(cli.command, Command::Plugin(_)) {
        let path = cli.config.clone();
        let config = if !cli.dev && path.is_none() && !std::path::Path::new(DEFAULT_CONFIG).exists()
        {
            None
        } else {
            match load_config(&cli) {
                Ok(c) => Some(c),
                Err(e) => return fail(&format!("mailgate: {e}")),
            }
        };
        let shown = path.or_else(|| config.as_ref().map(|_| PathBuf::from(DEFAULT_CONFIG)));
        let Command::Plugin(c) = cli.command else {
            return fail("mailgate: internal error: not a plugin command");
        };
        let runtime = match runtime() {
            Ok(r) => r,
            Err(code) => return code,
        };
        let result = runtime.block_on(plugin::run(config.as_ref(), shown.as_deref(), c));
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("mailgate: {e}")),
        };
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            if matches!(cli.command, Command::Sendmail { .. }) {
                eprintln!("sendmail: {e}");
                return ExitCode::from(sendmail::EX_TEMPFAIL);
            }
            return fail(&format!("mailgate: {e}"));
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Command::Sendmail { args } = &cli.command {
        let result = runtime.block_on(sendmail::run(&config, args));
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sendmail: {e}");
                ExitCode::from(e.code)
            }
        };
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(config, cli.dev).await,
            Command::User(c) => admin::user(&config, c).await,
            Command::Alias(c) => admin::alias(&config, c).await,
            Command::Domain(c) => admin::domain(&config, c).await,
            Command::Mailbox(c) => mailbox::run(&config, c).await,
            Command::Store(c) => store::run(&config, c).await,
            Command::Queue(c) => queue::queue(&config, c).await,
            Command::Dkim(c) => dkim::dkim(&c, Some(&config.data_dir)),
            Command::Plugin(_) => Err("plugin commands are run above".into()),
            Command::Reload => plugin::signal_reload(&config.data_dir),
            Command::Config(_) => Err("config commands are run above".into()),
            Command::Sieve(c) => sieve::run_store(&config, c).await,
            Command::Healthcheck(_) => Err("healthcheck is run above".into()),
            Command::Sendmail { .. } => Err("sendmail is run above".into()),
            Command::Import(c) => import::run_import(&config, c).await,
            Command::Export(c) => export::run_export(&config, c).await,
        }
    });
    // Sessions still open after the shutdown grace period are dropped
    // here; the bound keeps a stuck blocking task from holding the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("mailgate: {e}")),
    }
}

/// The runtime of a command (workers with [`WORKER_STACK_SIZE`]
/// stacks), or the exit code after saying why there is none.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_SIZE)
        .build()
        .map_err(|e| fail(&format!("mailgate: cannot start the runtime: {e}")))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}

async fn serve(config: Config, dev: bool) -> Result<(), String> {
    if dev {
        admin::ensure_demo_account(&config).await?;
        for line in crate::plugins::install_dev_plugins(&config) {
            println!("mailgate: {line}");
        }
    }
    let printable = config.clone();
    crate::server::run(config, move |addresses| {
        let mut out = std::io::stdout().lock();
        for (protocol, address) in addresses {
            let _ = writeln!(out, "mailgate: listening {protocol} on {address}");
        }
        if dev {
            let _ = write!(out, "{}", crate::dev::summary(&printable, addresses));
        }
        let _ = writeln!(out, "mailgate: ready");
        let _ = out.flush();
    })
    .await
    .map_err(|e| e.to_string())
}

/// Logs go to standard error in the `[log]` format and level of the
/// configuration, if one can be read (else text at `info`; its errors
/// are reported by the command itself); `RUST_LOG` overrides the level.
/// Every value is escaped and bounded by the formatter (`mailgate-log`),
/// so nothing a client sends reaches a log line raw.
fn init_logging(cli: &Cli) {
    let explicit = cli.dev || cli.config.is_some();
    let log = if explicit || std::path::Path::new(DEFAULT_CONFIG).exists() {
        load_config(cli).map(|c| c.log).unwrap_or_default()
    } else {
        crate::config::LogSettings::default()
    };
    mailgate_log::init_with(log.format.into(), &log.level);
}
