//! `mailgate`: see `mailgate --help`.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = mailgate::cli::Cli::parse();
    mailgate::cli::run(cli)
}
