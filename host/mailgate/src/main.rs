//! `mailgate`: see `mailgate --help`.
#![forbid(unsafe_code)]

use clap::Parser;

/// musl's own allocator is slow under many threads; the static builds
/// (the only ones on musl) use mimalloc instead. glibc builds keep
/// glibc's (docs/deployment.md, "musl: thread stacks and the allocator").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
