//! `mailgate plugin ...`: what the running server's plugins do (its status
//! file), checking a component before installing it, and asking the
//! running server to reload (its pid file, then SIGHUP). None of these
//! needs a socket to the server.

mod new;
mod run;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use mailgate_policy::{Grant, PluginSettings, PluginsConfig, PolicyConfig, StatusFile};

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
    /// Needs no configuration file: without `--config` (or with one that
    /// does not exist at the default path) it uses only the grants and
    /// config given here, and says where each came from.
    Check {
        /// The component, e.g. target/wasm32-wasip2/release/greylist.wasm.
        file: PathBuf,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Run one hook of a component on one message, in the server's real
    /// runtime (same limits, same capability checks, DNS through the
    /// system resolver), and print what the server would do: verdict and
    /// reply, edits, route plan, log lines, time and memory. Needs no
    /// server and no configuration file.
    Run(Box<run::RunArgs>),
    /// Write a new plugin crate that builds anywhere with
    /// `cargo build --release --target wasm32-wasip2`: its own workspace,
    /// the release profile and compiler flags the host expects, the SDK and
    /// the WIT copied from this binary, a README and a starting test.
    New {
        /// The plugin's name (a crate name: lower-case letters, digits, `-`,
        /// `_`). Its file, `describe()` name and `[[plugin]] name` are this
        /// with `-` written `_`.
        name: String,
        /// Where to create the crate's directory (NAME inside it).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The hooks to implement, comma-separated: connect, helo, auth,
        /// mail-from, rcpt-to, data, route.
        #[arg(long, default_value = "data")]
        hooks: String,
    },
    /// Ask the running server to reload its configuration's plugins
    /// (SIGHUP to the pid in `<data_dir>/serve.pid`).
    Reload,
}

/// The grants and config a component is checked or run with.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// A capability to grant (log, clock, dns, kv, config, http);
    /// repeatable.
    /// Added to those of the configuration's `[[plugin]]` entry, if any.
    #[arg(long = "grant", value_name = "CAPABILITY")]
    pub grants: Vec<String>,
    /// The plugin's `config` table, as JSON (what capability `config`
    /// returns); replaces the configuration's.
    #[arg(long, value_name = "JSON", conflicts_with = "config_file")]
    pub config_json: Option<String>,
    /// The plugin's `config` table, from a TOML file (the contents of the
    /// `config = {...}` table); replaces the configuration's.
    #[arg(long, value_name = "TOML")]
    pub config_file: Option<PathBuf>,
    /// A URL prefix capability `http` may reach (as `http_allow` in a
    /// `[[plugin]]` entry); repeatable, added to the entry's.
    #[arg(long = "http-allow", value_name = "URL")]
    pub http_allow: Vec<String>,
}

/// The settings a command uses, and where each part came from.
pub struct Resolved {
    /// The `[[plugin]]` settings.
    pub settings: PluginSettings,
    /// `[plugins]` defaults (limits) and the entry list.
    pub policy: PolicyConfig,
    /// "grants: ... (from ...)" and "config: ... (from ...)".
    pub origin: Vec<String>,
}

/// The settings for component `file`: the configuration's matching
/// `[[plugin]]` entry (if a configuration was loaded), then the command
/// line's grants and config.
pub fn resolve(
    config: Option<&Config>,
    config_path: Option<&Path>,
    file: &Path,
    args: &SettingsArgs,
) -> Result<Resolved, String> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string();
    let dir = file.parent().unwrap_or(Path::new("."));
    let policy = match config {
        Some(c) => PolicyConfig {
            plugins: c.plugins.clone().unwrap_or_else(|| PluginsConfig::new(dir)),
            plugin: c.plugin.clone(),
        },
        None => PolicyConfig {
            plugins: PluginsConfig::new(dir),
            plugin: Vec::new(),
        },
    };
    let place = config_path.map_or_else(
        || "the configuration".to_string(),
        |p| p.display().to_string(),
    );
    let entry = policy.entry_for(&stem).cloned();
    let mut settings = entry.clone().unwrap_or_else(|| PluginSettings {
        name: stem.clone(),
        enabled: true,
        ..PluginSettings::default()
    });
    let mut grant_origin = match (&entry, config) {
        (Some(e), _) => format!("[[plugin]] name = {:?} in {place}", e.name),
        (None, Some(_)) => format!("none: no [[plugin]] entry matches {stem:?} in {place}"),
        (None, None) => "none: no configuration file".to_string(),
    };
    let mut config_origin = grant_origin.clone();
    if !args.grants.is_empty() {
        for g in &args.grants {
            let grant = Grant::ALL
                .into_iter()
                .find(|x| x.interface() == g.as_str())
                .ok_or_else(|| {
                    format!(
                        "unknown capability {:?} (log, clock, dns, kv, config, http)",
                        g.chars().take(40).collect::<String>()
                    )
                })?;
            if !settings.grants.contains(&grant) {
                settings.grants.push(grant);
            }
        }
        grant_origin = if entry.is_some() {
            format!("{grant_origin} and --grant")
        } else {
            "--grant".to_string()
        };
    }
    settings.http_allow.extend(args.http_allow.iter().cloned());
    if let Some(json) = &args.config_json {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("--config-json: {e}"))?;
        settings.config = Some(value);
        config_origin = "--config-json".into();
    } else if let Some(path) = &args.config_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        settings.config =
            Some(serde_json::to_value(table).map_err(|e| format!("{}: {e}", path.display()))?);
        config_origin = format!("--config-file {}", path.display());
    }
    let grants: Vec<&str> = settings.grants.iter().map(|g| g.interface()).collect();
    let config_text = settings
        .config
        .as_ref()
        .map_or_else(|| "{}".to_string(), |v| v.to_string());
    let origin = vec![
        format!(
            "grants   {} ({grant_origin})",
            if grants.is_empty() {
                "none".to_string()
            } else {
                grants.join(", ")
            }
        ),
        format!("config   {config_text} ({config_origin})"),
    ];
    Ok(Resolved {
        settings,
        policy,
        origin,
    })
}

/// Runs one `plugin` command. `config` is `None` when no configuration
/// file was given and none is at the default path (`check`, `run` and
/// `new` need none).
pub async fn run(
    config: Option<&Config>,
    config_path: Option<&Path>,
    command: PluginCommand,
) -> Result<(), String> {
    let need = |c: Option<&Config>| {
        c.ok_or_else(|| {
            format!(
                "no configuration file ({}); give one with --config",
                config_path.map_or_else(
                    || super::DEFAULT_CONFIG.to_string(),
                    |p| p.display().to_string()
                )
            )
        })
        .cloned()
    };
    match command {
        PluginCommand::List => list(&need(config)?),
        PluginCommand::Check { file, settings } => {
            check(config, config_path, &file, &settings).await
        }
        PluginCommand::Run(args) => run::run(config, config_path, *args).await,
        PluginCommand::New { name, dir, hooks } => {
            let hooks = new::parse_hooks(&hooks)?;
            let root = new::write(&name, &dir, &hooks)?;
            let stem = new::file_stem(&name);
            println!("created {}", root.display());
            println!(
                "  cd {} && cargo build --release --target wasm32-wasip2",
                root.display()
            );
            println!("  component: target/wasm32-wasip2/release/{stem}.wasm ([[plugin]] name = \"{stem}\")");
            println!("  cargo test runs its unit tests; README.md says the rest");
            Ok(())
        }
        PluginCommand::Reload => signal_reload(&need(config)?.data_dir),
    }
}

fn list(config: &Config) -> Result<(), String> {
    if config.plugins.is_none() {
        println!("no plugins configured (the configuration has no [plugins] table)");
        return Ok(());
    }
    let path = config.data_dir.join(STATUS_FILE);
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

async fn check(
    config: Option<&Config>,
    config_path: Option<&Path>,
    file: &Path,
    args: &SettingsArgs,
) -> Result<(), String> {
    let resolved = resolve(config, config_path, file, args)?;
    for line in &resolved.origin {
        println!("  {line}");
    }
    let report = mailgate_policy::check_file(file, &resolved.settings)
        .await
        .map_err(|e| format!("{}: refused: {e}", file.display()))?;
    println!("{}: ok", file.display());
    println!("  plugin   {} {}", report.plugin_name, report.version);
    println!("  sha256   {}", report.hash);
    println!("  hooks    {}", report.hooks.join(", "));
    println!("  imports  {}", report.imports.join(", "));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if mailgate_policy::plugin_key(stem) != mailgate_policy::plugin_key(&report.plugin_name) {
        println!(
            "  warning  the plugin calls itself {:?} but the file is {stem:?}: logs and [[plugin]] name use the file name",
            report.plugin_name
        );
    }
    Ok(())
}

/// SIGHUP to the server whose pid is in `<data_dir>/serve.pid` (`mailgate
/// reload`, `mailgate plugin reload`).
pub(crate) fn signal_reload(data_dir: &Path) -> Result<(), String> {
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
