//! `mailgate`: see `mailgate --help`.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Started through a link named `sendmail` (e.g. /usr/sbin/sendmail):
    // behave as `mailgate sendmail`, with sendmail's arguments untouched.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if invoked_as.as_deref() == Some("sendmail") {
        args.insert(1, "sendmail".into());
    }
    let cli = mailgate::cli::Cli::parse_from(args);
    mailgate::cli::run(cli)
}
