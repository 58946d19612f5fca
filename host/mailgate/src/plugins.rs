//! The policy plugins in the server: starting the runtime from `[plugins]`,
//! reloading it on SIGHUP, the pid file `mailgate plugin reload` signals,
//! and the example plugins of the development profile.
//!
//! Without `[plugins]` nothing here runs and the SMTP sessions have no
//! policy at all (not even an empty chain to look at).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailgate_policy::{
    Grant, HickoryResolver, PluginSettings, PolicyConfig, PolicyError, PolicyManager, Resolver,
    SystemResolver,
};
use tokio::sync::watch;

use crate::config::Config;

/// The file, in the data directory, the running server writes plugin
/// status to (for `mailgate plugin list`).
pub const STATUS_FILE: &str = "plugins-status.json";
/// The file, in the data directory, holding the running server's pid (for
/// `mailgate plugin reload`).
pub const PID_FILE: &str = "serve.pid";
/// Where `scripts/build-plugins` leaves the components.
pub const BUILD_DIR: &str = "plugins/target/wasm32-wasip2/release";
/// The example plugins the development profile runs (file stems).
pub const DEV_PLUGINS: [&str; 2] = ["content_filter", "router"];

/// Starts the policy runtime if `[plugins]` is configured: loads the
/// directory and writes the status file. `None` without `[plugins]`.
/// The plugins' key-value data lives in `kv` (the store).
pub async fn start(
    config: &Config,
    kv: Arc<dyn mailgate_store::PluginKv>,
) -> Result<Option<Arc<PolicyManager>>, PolicyError> {
    let Some(policy) = policy_config(config) else {
        return Ok(None);
    };
    let dir = policy.plugins.dir.clone();
    let (manager, report) = PolicyManager::start(
        policy,
        &config.data_dir,
        Arc::new(crate::shared_state::StoreKv(kv)),
        plugin_resolver(config),
    )
    .await?;
    let status = config.data_dir.join(STATUS_FILE);
    if let Err(e) = manager.write_status(&status) {
        tracing::warn!(path = %status.display(), error = %e, "cannot write plugin status");
    }
    tracing::info!(
        dir = %dir.display(),
        loaded = %mailgate_log::list(report.loaded.iter().map(String::as_str)),
        refused = report.refused.len(),
        "plugins: policy runtime started"
    );
    Ok(Some(manager))
}

/// `[plugins]`/`[[plugin]]` with what the plugins' capabilities take from
/// elsewhere: `[relay] tls_ca_file` as extra roots of capability `http`.
fn policy_config(config: &Config) -> Option<PolicyConfig> {
    let mut policy = config.policy()?;
    policy.plugins.http_ca_file = config.relay.tls_ca_file.clone();
    Some(policy)
}

/// The resolver behind capability `dns`: hickory asking the `[relay]
/// nameservers` (the system's without them), with the relay's time-out.
/// Falls back to the C library's resolver (A/AAAA only) with a warning if
/// that cannot be set up.
pub fn plugin_resolver(config: &Config) -> Arc<dyn Resolver> {
    let hickory = crate::relay::relay_config(config)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            mailgate_relay::HickoryDns::new(&r.nameservers, r.dns_timeout)
                .map_err(|e| e.to_string())
        });
    match hickory {
        Ok(dns) => Arc::new(HickoryResolver::new(dns.resolver().clone())),
        Err(e) => {
            tracing::warn!(error = %e, "plugins: no DNS resolver for capability dns; using the system's (A/AAAA only)");
            Arc::new(SystemResolver)
        }
    }
}

/// Starts the watcher (hot reload, status file) until
/// `shutdown`.
pub fn watch(manager: &Arc<PolicyManager>, config: &Config, shutdown: watch::Receiver<bool>) {
    manager.spawn_watcher(Some(config.data_dir.join(STATUS_FILE)), shutdown);
}

/// What SIGHUP does for the plugins, given the configuration the reload
/// put in force (`None`: no file, or one with an error, which the reload
/// has logged): a reload in the background (the signal loop never waits
/// for a compilation).
pub fn on_sighup(manager: Option<Arc<PolicyManager>>) -> impl FnMut(Option<Config>) {
    move |config| {
        let Some(manager) = manager.clone() else {
            return;
        };
        tokio::spawn(async move { reload(&manager, config.as_ref()).await });
    }
}

/// SIGHUP: applies `[plugins]`/`[[plugin]]` of the configuration just
/// read (when there is one), then reloads the plugin directory. Without
/// one the plugins are only re-scanned.
pub async fn reload(manager: &PolicyManager, config: Option<&Config>) {
    let report = match config {
        Some(config) => match policy_config(config) {
            Some(policy) => manager.set_config(policy).await,
            None => {
                tracing::warn!(
                    "plugins: [plugins] was removed from the configuration; restart to run without plugins"
                );
                manager.reload().await
            }
        },
        None => manager.reload().await,
    };
    tracing::info!(
        loaded = %mailgate_log::list(report.loaded.iter().map(String::as_str)),
        removed = %mailgate_log::list(report.removed.iter().map(String::as_str)),
        refused = report.refused.len(),
        swapped = report.swapped,
        "plugins: reloaded on SIGHUP"
    );
}

/// The running server's pid in `<data_dir>/serve.pid`, removed when
/// dropped (a stale file after a crash is harmless: `plugin reload`
/// checks the process exists).
pub struct PidFile(PathBuf);

impl PidFile {
    /// Writes the pid file of this process.
    pub fn create(data_dir: &Path) -> std::io::Result<PidFile> {
        let path = data_dir.join(PID_FILE);
        std::fs::write(&path, format!("{}\n", std::process::id()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `[[plugin]]` entries of the development profile: both examples may
/// read their (empty) `config` table and log.
pub fn dev_plugin_settings() -> Vec<PluginSettings> {
    DEV_PLUGINS
        .iter()
        .map(|name| PluginSettings {
            name: (*name).to_string(),
            enabled: true,
            grants: vec![Grant::Config, Grant::Log],
            ..PluginSettings::default()
        })
        .collect()
}

/// The development profile: copies the example plugins built by
/// `scripts/build-plugins` into the profile's plugin directory (not the
/// build directory itself, which also holds the hostile test fixtures).
/// Returns the lines to print; a missing build is one clear line.
pub fn install_dev_plugins(config: &Config) -> Vec<String> {
    let Some(plugins) = &config.plugins else {
        return Vec::new();
    };
    let source = Path::new(BUILD_DIR);
    if !source.is_dir() {
        let line = format!(
            "plugins: {BUILD_DIR} not found; run scripts/build-plugins to see policy plugins at work"
        );
        tracing::warn!("{line}");
        return vec![line];
    }
    if let Err(e) = std::fs::create_dir_all(&plugins.dir) {
        return vec![format!(
            "plugins: cannot create {}: {e}",
            plugins.dir.display()
        )];
    }
    let mut lines = Vec::new();
    for name in DEV_PLUGINS {
        let from = source.join(format!("{name}.wasm"));
        let to = plugins.dir.join(format!("{name}.wasm"));
        let line = match copy_if_changed(&from, &to) {
            Ok(_) => format!("plugins: {name} from {}", from.display()),
            Err(e) => format!("plugins: {name} not installed ({}: {e})", from.display()),
        };
        lines.push(line);
    }
    lines
}

/// Copies `from` to `to` unless `to` already has the same bytes (so the
/// directory watcher does not reload for nothing); through a temporary
/// file and a rename, so the watcher never sees half a file.
fn copy_if_changed(from: &Path, to: &Path) -> std::io::Result<bool> {
    let bytes = std::fs::read(from)?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let tmp = to.with_extension("wasm.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, to)?;
    Ok(true)
}
