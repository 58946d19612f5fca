//! `mailgate healthcheck`: exit 0 when the running server says it is
//! ready (`/healthz/ready` of `[listen] metrics`), 1 otherwise; for a
//! container's `HEALTHCHECK`, which has no curl.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::Cli;

/// `mailgate healthcheck [--address ADDR] [--timeout SECONDS]`
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Ask this address instead of the configuration's `[listen] metrics`
    /// (then no configuration file is read).
    #[arg(long, value_name = "IP:PORT")]
    pub address: Option<SocketAddr>,
    /// Give up (exit 1) after this many seconds without a whole answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout: u64,
}

/// Runs the check; prints `ready`, or why not on standard error.
pub fn run(cli: &Cli, args: &HealthcheckArgs) -> ExitCode {
    let configured = if args.address.is_some() {
        None
    } else {
        match super::load_config(cli) {
            Ok(c) => c.listen.metrics,
            Err(e) => return super::fail(&format!("mailgate healthcheck: {e}")),
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(&format!("mailgate healthcheck: cannot start: {e}")),
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    match runtime.block_on(crate::monitoring::healthcheck(
        configured.as_deref(),
        args.address,
        timeout,
    )) {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&format!("mailgate healthcheck: {e}")),
    }
}
