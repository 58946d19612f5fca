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
use mailgate_policy::{SieveFilter, SieveLimits};
use mailgate_store::{AccountId, SieveScripts, SqliteStore, StoreResult};

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
struct StoreScripts(Arc<SqliteStore>);

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
    store: Arc<SqliteStore>,
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
    Ok(Some(Arc::new(SieveDelivery {
        filter: Arc::new(filter),
        scripts: Arc::new(StoreScripts(store.clone())),
        memory: store,
        settings: sc.settings().map_err(|e| e.to_string())?,
        hostname: config.hostname.clone(),
    })))
}
