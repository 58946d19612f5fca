//! `mailgate sieve check FILE`: compile a Sieve script and say whether it
//! is valid, like Pigeonhole's `sievec` (nothing is stored or run). Needs
//! no configuration file.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use mailgate_sieve::{compile_bytes, printable, Settings};

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
}

/// Runs one `sieve` command.
pub fn run(command: &SieveCommand) -> ExitCode {
    let SieveCommand::Check { file, editheader } = command;
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
fn read(file: &PathBuf, limit: usize) -> Result<Vec<u8>, String> {
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
