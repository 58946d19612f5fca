//! `[sieve]`: users' Sieve scripts at delivery. Finds and loads the system
//! Sieve plugin (`sieve.wasm`, built from `plugins/sieve`) and builds what
//! the delivery room needs to run each account's active script
//! ([`mailgate_delivery::SieveDelivery`]).
//!
//! Where the plugin comes from: `[sieve] plugin` (a path), else
//! [`DEFAULT_PLUGIN`] when that file exists. Without one, scripts are kept
//! (ManageSieve, `mailgate sieve`) but not run, and the start says so in
//! the log. The binary does not embed the plugin: it builds without the
//! `wasm32-wasip2` target.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailgate_delivery::{ScriptSource, SieveDelivery};
use mailgate_policy::{NamedScript, SieveFilter, SieveLimits};
use mailgate_store::{AccountId, Backend, SieveMemory, StoreResult};

use crate::config::SieveConfig;

/// Where packages install the plugin; used when `[sieve] plugin` is unset.
pub const DEFAULT_PLUGIN: &str = "/usr/lib/mailgate/sieve.wasm";

/// The plugin file to load, if any: `[sieve] plugin`, else
/// [`DEFAULT_PLUGIN`] when it exists.
pub fn plugin_path(config: &SieveConfig) -> Option<PathBuf> {
    match &config.plugin {
        Some(p) => Some(p.clone()),
        None => Path::new(DEFAULT_PLUGIN)
            .exists()
            .then(|| PathBuf::from(DEFAULT_PLUGIN)),
    }
}

/// The store's scripts, as the room reads them.
struct StoreScripts(Arc<dyn Backend>);

#[async_trait]
impl ScriptSource for StoreScripts {
    async fn active(&self, account: AccountId) -> StoreResult<Option<(String, String)>> {
        self.0.sieve_active(account).await
    }
    async fn all(&self, account: AccountId) -> StoreResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for info in self.0.sieve_list(account).await? {
            if let Some(text) = self.0.sieve_get(account, &info.name).await? {
                out.push((info.name, text));
            }
        }
        Ok(out)
    }
}

/// Loads the plugin and builds the room's Sieve part; `Ok(None)` when
/// scripts are not run (no plugin, or `run_at_delivery = false`). A plugin
/// that is configured but cannot be loaded is an error: the server does
/// not start with users' filters silently off.
pub async fn start(
    config: &crate::config::Config,
    store: Arc<dyn Backend>,
) -> Result<Option<Arc<SieveDelivery>>, String> {
    let sc = &config.sieve;
    if !sc.run_at_delivery {
        tracing::info!(
            "sieve: users' scripts are not run at delivery ([sieve] run_at_delivery = false)"
        );
        return Ok(None);
    }
    let Some(path) = plugin_path(sc) else {
        tracing::info!(default = DEFAULT_PLUGIN, "sieve: no Sieve plugin ([sieve] plugin unset and the default missing); users' scripts are not run at delivery");
        return Ok(None);
    };
    let limits = SieveLimits {
        timeout: Duration::from_millis(sc.timeout_ms.max(1)),
        memory_bytes: u64::from(sc.memory_mb.max(16)) << 20,
        fuel: sc.fuel.max(1),
        max_instances: 32,
    };
    let filter = SieveFilter::load(&path, limits)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(plugin = %path.display(), version = filter.version(), "sieve: users' scripts run at delivery");
    let scripts: Arc<dyn ScriptSource> = Arc::new(StoreScripts(store.clone()));
    configured(Arc::new(filter), scripts, store, config).map(|d| Some(Arc::new(d)))
}

/// The running Sieve part with `config`'s `[sieve]` settings, global
/// scripts and time zone (SIGHUP): the loaded plugin, its sandbox limits
/// and the store stay. An error (a global script that cannot be read, a
/// bad setting) keeps the running part.
pub fn reconfigure(
    current: &SieveDelivery,
    config: &crate::config::Config,
) -> Result<SieveDelivery, String> {
    configured(
        current.filter.clone(),
        current.scripts.clone(),
        current.memory.clone(),
        config,
    )
}

/// The Sieve part made of a loaded plugin, the scripts and the memory,
/// with `config`'s `[sieve]` settings, global scripts and time zone.
fn configured(
    filter: Arc<SieveFilter>,
    scripts: Arc<dyn ScriptSource>,
    memory: Arc<dyn SieveMemory>,
    config: &crate::config::Config,
) -> Result<SieveDelivery, String> {
    let sc = &config.sieve;
    Ok(SieveDelivery {
        filter,
        scripts,
        memory,
        settings: sc.settings().map_err(|e| e.to_string())?,
        hostname: config.hostname.clone(),
        global: Arc::new(match &sc.global_dir {
            Some(dir) => global_scripts(dir, sc.max_script_size)?,
            None => Vec::new(),
        }),
        time_zone: sc.time_zone().map_err(|e| e.to_string())?,
    })
}

/// The most scripts `[sieve] global_dir` may hold.
pub const MAX_GLOBAL_SCRIPTS: usize = 256;

/// The administrator's scripts in `dir`: each `NAME.sieve` file, named
/// NAME for `include :global "NAME"`; other files are ignored. A file
/// over `max_size`, more than [`MAX_GLOBAL_SCRIPTS`] scripts, or a
/// directory that cannot be read stops the start: users' includes would
/// otherwise fail at delivery, message after message.
pub fn global_scripts(dir: &Path, max_size: u64) -> Result<Vec<NamedScript>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("sieve.global_dir {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("sieve.global_dir {}: {e}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("sieve") || !path.is_file() {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
            continue;
        };
        let size = path.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if size > max_size {
            return Err(format!(
                "{}: {size} bytes, over [sieve] max_script_size ({max_size})",
                path.display()
            ));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(NamedScript {
            name: name.to_string(),
            text,
        });
        if out.len() > MAX_GLOBAL_SCRIPTS {
            return Err(format!(
                "sieve.global_dir {}: more than {MAX_GLOBAL_SCRIPTS} scripts",
                dir.display()
            ));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_scripts_are_the_sieve_files_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spam.sieve"), "keep;").unwrap();
        std::fs::write(dir.path().join("lists.sieve"), "discard;").unwrap();
        std::fs::write(dir.path().join("README.txt"), "not a script").unwrap();
        std::fs::create_dir(dir.path().join("old.sieve")).unwrap();
        let got = global_scripts(dir.path(), 1024).unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["lists", "spam"]);
        assert_eq!(got[1].text, "keep;");

        // Too large, or no directory: the start stops with the reason.
        let err = global_scripts(dir.path(), 4).unwrap_err();
        assert!(err.contains("max_script_size"), "{err}");
        let err = global_scripts(&dir.path().join("missing"), 1024).unwrap_err();
        assert!(err.contains("sieve.global_dir"), "{err}");
    }
}
