//! `mailgate plugin ...`: what the running server's plugins do (its status
//! file), checking a component before installing it, and asking the
//! running server to reload (its pid file, then SIGHUP). None of these
//! needs a socket to the server.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use mailgate_policy::{Grant, PluginSettings, StatusFile};

use crate::config::Config;
use crate::plugins::{PID_FILE, STATUS_FILE};

/// `mailgate plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// The running server's plugins: name, version, hash, hooks, calls,
    /// errors, time-outs and latency (from `<data_dir>/plugins-status.json`).
    List,
    /// Compile a component and check it against the world and the grants;
    /// runs `describe` and `self-test` and prints its hooks and imports.
    Check {
        /// The component, e.g. plugins/target/wasm32-wasip2/release/router.wasm.
        file: PathBuf,
        /// A capability to grant (log, clock, dns, kv, config); repeatable.
        #[arg(long = "grant", value_name = "CAPABILITY")]
        grants: Vec<String>,
    },
    /// Ask the running server to reload its configuration's plugins
    /// (SIGHUP to the pid in `<data_dir>/serve.pid`).
    Reload,
}

/// Runs one `plugin` command.
pub async fn run(config: &Config, command: PluginCommand) -> Result<(), String> {
    match command {
        PluginCommand::List => list(&config.data_dir),
        PluginCommand::Check { file, grants } => check(config, &file, &grants).await,
        PluginCommand::Reload => reload(&config.data_dir),
    }
}

fn list(data_dir: &Path) -> Result<(), String> {
    let path = data_dir.join(STATUS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (is the server running with [plugins]?)",
            path.display()
        )
    })?;
    let status: StatusFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!(
        "chain generation {}, written {}s ago, {} plugin(s)",
        status.generation,
        now.saturating_sub(status.written_at),
        status.plugins.len()
    );
    for p in &status.plugins {
        let s = &p.stats;
        println!(
            "{}\t{} {}\thash {}\thooks {}\tcalls {} errors {} timeouts {}\tp50 {}us p90 {}us p99 {}us",
            p.name,
            p.plugin_name,
            p.version,
            p.hash,
            p.hooks.join(","),
            s.calls,
            s.errors,
            s.timeouts,
            s.p50_us,
            s.p90_us,
            s.p99_us
        );
    }
    Ok(())
}

async fn check(config: &Config, file: &Path, grants: &[String]) -> Result<(), String> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string();
    // The file's own `[[plugin]]` entry, if the configuration has one
    // (its config table is what `self-test` will see); --grant adds to it.
    let mut settings = config
        .plugin
        .iter()
        .find(|p| p.name == stem)
        .cloned()
        .unwrap_or_else(|| PluginSettings {
            name: stem,
            enabled: true,
            ..PluginSettings::default()
        });
    for g in grants {
        let grant = Grant::ALL
            .into_iter()
            .find(|x| x.interface() == g.as_str())
            .ok_or_else(|| format!("unknown capability {g:?} (log, clock, dns, kv, config)"))?;
        if !settings.grants.contains(&grant) {
            settings.grants.push(grant);
        }
    }
    let report = mailgate_policy::check_file(file, &settings)
        .await
        .map_err(|e| format!("{}: refused: {e}", file.display()))?;
    println!("{}: ok", file.display());
    println!("  plugin   {} {}", report.plugin_name, report.version);
    println!("  sha256   {}", report.hash);
    println!("  hooks    {}", report.hooks.join(", "));
    println!("  imports  {}", report.imports.join(", "));
    Ok(())
}

fn reload(data_dir: &Path) -> Result<(), String> {
    let path = data_dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (is the server running?)",
            path.display()
        )
    })?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a process id", path.display()))?;
    // kill(1) rather than a libc call: this crate has no unsafe code.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if !status.success() {
        return Err(format!(
            "no server with pid {pid} (stale {}?)",
            path.display()
        ));
    }
    println!("reload asked of the server (pid {pid}); see its log for the outcome");
    Ok(())
}
