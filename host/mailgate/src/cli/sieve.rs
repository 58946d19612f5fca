//! `mailgate sieve`: users' Sieve scripts from the command line.
//!
//! - `check FILE`: compile a script and say whether it is valid, like
//!   Pigeonhole's `sievec` (nothing is stored or run). Needs no
//!   configuration file.
//! - `list`, `get`, `put`, `activate`, `deactivate`, `delete`: an
//!   account's scripts in the store, the same ones ManageSieve shows
//!   (`doveadm sieve ...` in Dovecot). `put` stores only a script that
//!   compiles with the server's `[sieve]` settings.
//! - `test`: what a script would do with stored messages, and with
//!   `--apply` doing it (see [`super::sieve_test`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use mailgate_sieve::{compile_bytes, printable, Settings};
use mailgate_store::{Account, StoreError};

use crate::config::Config;

/// `mailgate sieve ...`
#[derive(Debug, Subcommand)]
pub enum SieveCommand {
    /// Check that a Sieve script compiles (RFC 5228 and the extensions in
    /// docs/sieve.md). Prints `FILE: ok` and the extensions it requires,
    /// or `FILE:LINE:COLUMN: error` and exits 1. Limits are the defaults
    /// (script size 1 MiB, nesting 32).
    Check {
        /// The script; `-` reads standard input.
        file: PathBuf,
        /// Accept `require "editheader"` (off by default on the server).
        #[arg(long)]
        editheader: bool,
    },
    /// List an account's scripts: name, size in bytes, and `active` for
    /// the one run at delivery.
    List {
        /// The account's address.
        account: String,
    },
    /// Write a script's text to standard output.
    Get {
        /// The account's address.
        account: String,
        /// The script's name.
        name: String,
    },
    /// Store a script (replacing one of the same name, which stays active
    /// if it was). Refused, with FILE:LINE:COLUMN, if it does not compile
    /// with the `[sieve]` settings, or if the account has `max_scripts`
    /// scripts already.
    Put {
        /// The account's address.
        account: String,
        /// The script's name.
        name: String,
        /// The script; `-` reads standard input.
        file: PathBuf,
    },
    /// Make a script the active one (the one run at delivery); the
    /// previously active one stays stored, inactive.
    Activate {
        /// The account's address.
        account: String,
        /// The script's name.
        name: String,
    },
    /// Deactivate the account's active script: delivery runs none.
    Deactivate {
        /// The account's address.
        account: String,
    },
    /// Delete a script. The active script cannot be deleted: deactivate
    /// it (or activate another) first.
    Delete {
        /// The account's address.
        account: String,
        /// The script's name.
        name: String,
    },
    /// Show what a script would do with the last messages of a mailbox
    /// (fileinto, flags, keep, discard, redirect, reject, vacation),
    /// changing nothing; with --apply, do the mailbox actions on them.
    Test(super::sieve_test::TestArgs),
}

impl SieveCommand {
    /// Whether the command runs without a configuration file.
    pub fn needs_no_config(&self) -> bool {
        matches!(self, SieveCommand::Check { .. })
    }
}

/// The store's error as the user reads it.
fn err(e: StoreError) -> String {
    match e {
        StoreError::Active(name) => {
            format!("{name} is the active script: deactivate it (or activate another) first")
        }
        e => e.to_string(),
    }
}

/// The account with this address, or an error naming it.
pub(super) async fn account(
    store: &dyn mailgate_store::Backend,
    address: &str,
) -> Result<Account, String> {
    let address = address.trim().to_lowercase();
    store
        .account(&address)
        .await
        .map_err(err)?
        .ok_or_else(|| format!("no account {}", printable(&address)))
}

/// Runs `list`, `get`, `put`, `activate`, `deactivate`, `delete` and `test`.
pub async fn run_store(config: &Config, command: SieveCommand) -> Result<(), String> {
    let store = super::open_store(config).await?;
    let settings = config.sieve.settings().map_err(|e| e.to_string())?;
    match command {
        SieveCommand::Check { .. } => Err("sieve check is run above".into()),
        SieveCommand::List { account: a } => {
            let acct = account(store.as_ref(), &a).await?;
            for s in store.sieve_list(acct.id).await.map_err(err)? {
                let state = if s.active { "\tactive" } else { "" };
                println!("{}\t{}{state}", printable(&s.name), s.size);
            }
            Ok(())
        }
        SieveCommand::Get { account: a, name } => {
            let acct = account(store.as_ref(), &a).await?;
            match store.sieve_get(acct.id, &name).await.map_err(err)? {
                Some(text) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|e| e.to_string())
                }
                None => Err(format!(
                    "no script {} in {}",
                    printable(&name),
                    acct.address
                )),
            }
        }
        SieveCommand::Put {
            account: a,
            name,
            file,
        } => {
            let acct = account(store.as_ref(), &a).await?;
            let text = read_script(&file, &settings)?;
            let list = store.sieve_list(acct.id).await.map_err(err)?;
            if !list.iter().any(|s| s.name == name) && list.len() >= config.sieve.max_scripts {
                return Err(format!(
                    "{} has {} scripts, the most [sieve] max_scripts allows",
                    acct.address,
                    list.len()
                ));
            }
            store.sieve_put(acct.id, &name, &text).await.map_err(err)?;
            println!("stored {} for {}", printable(&name), acct.address);
            Ok(())
        }
        SieveCommand::Activate { account: a, name } => {
            let acct = account(store.as_ref(), &a).await?;
            if !store
                .sieve_set_active(acct.id, Some(&name))
                .await
                .map_err(err)?
            {
                return Err(format!(
                    "no script {} in {}",
                    printable(&name),
                    acct.address
                ));
            }
            println!("{} is now active for {}", printable(&name), acct.address);
            Ok(())
        }
        SieveCommand::Deactivate { account: a } => {
            let acct = account(store.as_ref(), &a).await?;
            store.sieve_set_active(acct.id, None).await.map_err(err)?;
            println!("no active script for {}", acct.address);
            Ok(())
        }
        SieveCommand::Delete { account: a, name } => {
            let acct = account(store.as_ref(), &a).await?;
            if !store.sieve_delete(acct.id, &name).await.map_err(err)? {
                return Err(format!(
                    "no script {} in {}",
                    printable(&name),
                    acct.address
                ));
            }
            println!("deleted {} of {}", printable(&name), acct.address);
            Ok(())
        }
        SieveCommand::Test(args) => {
            // Checked when the file was read.
            let zone = config.sieve.time_zone().unwrap_or(None);
            super::sieve_test::run(store.as_ref(), &settings, zone, args).await
        }
    }
}

/// Reads a script for `put` and `test` and compiles it: the text, or
/// `FILE:LINE:COLUMN: error`.
pub(super) fn read_script(file: &Path, settings: &Settings) -> Result<String, String> {
    let shown = printable(&file.display().to_string());
    let source = read(file, settings.max_script_size).map_err(|e| format!("{shown}: {e}"))?;
    if let Err(e) = compile_bytes(&source, settings) {
        return Err(format!("{shown}:{}:{}: {}", e.line, e.column, e.message));
    }
    // It compiled, so it is UTF-8.
    String::from_utf8(source).map_err(|_| format!("{shown}: not UTF-8"))
}

/// Runs `sieve check`.
pub fn run(command: &SieveCommand) -> ExitCode {
    let SieveCommand::Check { file, editheader } = command else {
        eprintln!("mailgate: this sieve command needs the configuration");
        return ExitCode::FAILURE;
    };
    let shown = printable(&file.display().to_string());
    let settings = Settings {
        editheader: *editheader,
        ..Settings::default()
    };
    let source = match read(file, settings.max_script_size) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailgate: {shown}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match compile_bytes(&source, &settings) {
        Ok(script) => {
            let required = script.required();
            if required.is_empty() {
                println!("{shown}: ok");
            } else {
                println!("{shown}: ok (requires {})", required.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{shown}:{}:{}: {}", e.line, e.column, e.message);
            ExitCode::FAILURE
        }
    }
}

/// Reads at most one byte more than the limit, so that a huge file is
/// refused by the compiler's size check without being read whole.
fn read(file: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let result = if file.as_os_str() == "-" {
        std::io::stdin().take(take).read_to_end(&mut buf)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(take).read_to_end(&mut buf))
    };
    result.map_err(|e| e.to_string())?;
    Ok(buf)
}
