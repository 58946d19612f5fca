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
use serde::{Deserialize, Serialize};

/// Where packages install the plugin; used when `[sieve] plugin` is unset.
pub const DEFAULT_PLUGIN: &str = "/usr/lib/mailgate/sieve.wasm";

/// `[sieve]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SieveConfig {
    /// The system Sieve plugin (`sieve.wasm`); unset: [`DEFAULT_PLUGIN`] if
    /// it exists.
    pub plugin: Option<PathBuf>,
    /// Run users' active scripts at delivery (default true when the
    /// plugin is found).
    pub run_at_delivery: bool,
    /// Wall time of one script run, ms.
    pub timeout_ms: u64,
    /// Memory of the plugin's instance, MiB.
    pub memory_mb: u32,
    /// WebAssembly fuel of one run (instructions, roughly).
    pub fuel: u64,
    /// Largest script, bytes (Pigeonhole `sieve_max_script_size`).
    pub max_script_size: usize,
    /// Most scripts per account (Pigeonhole `sieve_quota_max_scripts`).
    pub max_scripts: usize,
    /// Most redirects of one run (`sieve_max_redirects`).
    pub max_redirects: usize,
    /// Most actions of one run (`sieve_max_actions`).
    pub max_actions: usize,
}

impl Default for SieveConfig {
    fn default() -> Self {
        let s = mailgate_sieve::Settings::default();
        SieveConfig {
            plugin: None,
            run_at_delivery: true,
            timeout_ms: 2000,
            memory_mb: 128,
            fuel: 2_000_000_000,
            max_script_size: s.max_script_size,
            max_scripts: 25,
            max_redirects: s.max_redirects,
            max_actions: s.max_actions,
        }
    }
}

impl SieveConfig {
    /// The interpreter's settings.
    pub fn settings(&self) -> mailgate_sieve::Settings {
        mailgate_sieve::Settings {
            max_script_size: self.max_script_size,
            max_redirects: self.max_redirects,
            max_actions: self.max_actions,
            ..mailgate_sieve::Settings::default()
        }
    }

    /// The plugin file to load, if any.
    pub fn plugin_path(&self) -> Option<PathBuf> {
        match &self.plugin {
            Some(p) => Some(p.clone()),
            None => Path::new(DEFAULT_PLUGIN)
                .exists()
                .then(|| PathBuf::from(DEFAULT_PLUGIN)),
        }
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
    let Some(path) = sc.plugin_path() else {
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
        settings: sc.settings(),
        hostname: config.hostname.clone(),
        srs: None,
    })))
}
