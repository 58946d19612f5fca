//! [`PolicyManager`]: loads the plugin directory, swaps chains on reload,
//! watches the directory, and reports status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::caps::{KvStore, MemoryKv, Resolver, StaticResolver};
use crate::chain::Chain;
use crate::config::{PluginSettings, PolicyConfig};
use crate::error::{LoadError, PolicyError};
use crate::runtime::{LoadedPlugin, Runtime, RuntimeOptions};
use crate::stats::{PluginStats, StatsSnapshot};

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Plugins (file stems) newly loaded or replaced.
    pub loaded: Vec<String>,
    /// Plugins removed (file gone or disabled).
    pub removed: Vec<String>,
    /// Plugins refused, with why; their previous version, if any, serves on.
    pub refused: Vec<(String, LoadError)>,
    /// Whether a new chain was swapped in.
    pub swapped: bool,
}

/// The status of one plugin, for `mailgate plugin list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// File stem.
    pub name: String,
    /// The name it gives itself.
    pub plugin_name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of the file (first 16 hex digits).
    pub hash: String,
    /// Hooks called.
    pub hooks: Vec<String>,
    /// Imports of the component.
    pub imports: Vec<String>,
    /// Counters since the server started (across reloads of this name).
    pub stats: StatsSnapshot,
}

/// The status file the running server writes (`plugins-status.json` in the
/// data directory) for `mailgate plugin list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFile {
    /// Unix seconds when written.
    pub written_at: u64,
    /// The chain generation serving.
    pub generation: u64,
    /// Plugins in chain order.
    pub plugins: Vec<PluginStatus>,
}

struct FileState {
    modified: Option<SystemTime>,
    len: u64,
    /// What serves for this file (the last version that loaded).
    loaded: Option<Arc<LoadedPlugin>>,
    /// The settings it was loaded with.
    settings: PluginSettings,
}

/// The policy runtime of a server: the current chain and how it changes.
pub struct PolicyManager {
    runtime: Runtime,
    config: RwLock<PolicyConfig>,
    chain: RwLock<Arc<Chain>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<BTreeMap<String, FileState>>,
    stats: Mutex<BTreeMap<String, Arc<PluginStats>>>,
}

impl PolicyManager {
    /// Starts the runtime and loads the directory. The plugins' key-value
    /// data lives in `kv` (the server's mail store); compiled components
    /// are cached in `cache_dir` or `<data_dir>/plugin-cache`, per node.
    pub async fn start(
        config: PolicyConfig,
        data_dir: &Path,
        kv: Arc<dyn KvStore>,
        resolver: Arc<dyn Resolver>,
    ) -> Result<(Arc<PolicyManager>, ReloadReport), PolicyError> {
        std::fs::create_dir_all(data_dir).map_err(|e| PolicyError::Io(data_dir.into(), e))?;
        let cache = config
            .plugins
            .cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("plugin-cache"));
        Self::with_parts(config, Some(cache), kv, resolver).await
    }

    /// Starts with explicit parts (tests, benchmarks): any key-value store,
    /// an optional cache.
    pub async fn with_parts(
        config: PolicyConfig,
        cache_dir: Option<PathBuf>,
        kv: Arc<dyn KvStore>,
        resolver: Arc<dyn Resolver>,
    ) -> Result<(Arc<PolicyManager>, ReloadReport), PolicyError> {
        let runtime = Runtime::new(RuntimeOptions {
            max_instances: config.plugins.max_instances,
            reuse_instances: config.plugins.reuse_instances,
            fuel: config.plugins.fuel,
            cache_dir,
            kv,
            resolver,
            http_ca_file: config.plugins.http_ca_file.clone(),
        })?;
        let manager = Arc::new(PolicyManager {
            runtime,
            config: RwLock::new(config),
            chain: RwLock::new(Arc::new(Chain::empty())),
            reloading: tokio::sync::Mutex::new(BTreeMap::new()),
            stats: Mutex::new(BTreeMap::new()),
        });
        let report = manager.reload().await;
        Ok((manager, report))
    }

    /// The chain serving now. A session takes one at connect (for connect,
    /// helo and auth) and a fresh one at each MAIL FROM, and uses that one
    /// for the whole transaction (mail-from, rcpt-to, data, route), so a
    /// reload never changes the plugins in the middle of a transaction.
    pub fn snapshot(&self) -> Arc<Chain> {
        self.chain.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The runtime (engine facts for logs and benchmarks).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Replaces the configuration (on SIGHUP, after the binary re-read its
    /// file) and reloads.
    pub async fn set_config(&self, config: PolicyConfig) -> ReloadReport {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        self.reload().await
    }

    /// Re-reads the plugin directory: new and changed files (by mtime and
    /// size, then content hash) are compiled and validated, and if all went
    /// as it could, a new chain is swapped in atomically. A file that fails
    /// is refused with a log line and its previous version keeps serving.
    /// For SIGHUP, `mailgate plugin reload` and the directory watcher.
    pub async fn reload(&self) -> ReloadReport {
        let mut files = self.reloading.lock().await;
        let config = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut report = ReloadReport::default();
        let found = match scan(&config.plugins.dir) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(dir = %config.plugins.dir.display(), error = %e, "cannot read plugin directory; chain unchanged");
                return report;
            }
        };
        let stems: Vec<&str> = found.keys().map(String::as_str).collect();
        for name in config.unmatched(&stems) {
            tracing::warn!(
                plugin = %name,
                dir = %config.plugins.dir.display(),
                "[[plugin]] entry matches no file in the plugin directory (names match without an ordering prefix such as 20-, and with - read as _)"
            );
        }
        let mut changed = false;
        // Removed or disabled.
        let gone: Vec<String> = files
            .keys()
            .filter(|name| !found.contains_key(*name) || !config.settings_for(name).enabled)
            .cloned()
            .collect();
        for name in gone {
            files.remove(&name);
            tracing::info!(plugin = %name, "plugin removed");
            report.removed.push(name);
            changed = true;
        }
        for (name, (path, modified, len)) in &found {
            let settings = config.settings_for(name);
            if !settings.enabled {
                continue;
            }
            let same = files.get(name).is_some_and(|f| {
                f.modified == *modified && f.len == *len && f.settings == settings
            });
            if same {
                continue;
            }
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    let err = LoadError::Read(e.to_string());
                    tracing::error!(plugin = %name, error = %err, "plugin refused");
                    report.refused.push((name.clone(), err));
                    continue;
                }
            };
            let stats = self.stats_for(name);
            let limits = config.limits_for(&settings);
            match self
                .runtime
                .load(name, bytes, &settings, limits, stats)
                .await
            {
                Ok(plugin) => {
                    let unchanged =
                        files
                            .get(name)
                            .and_then(|f| f.loaded.as_ref())
                            .is_some_and(|old| {
                                old.hash() == plugin.hash()
                                    && f_settings_eq(&files, name, &settings)
                            });
                    tracing::info!(
                        plugin = %name,
                        version = plugin.version(),
                        hash = &plugin.hash()[..16],
                        hooks = %plugin.hooks().iter().map(|h| h.name()).collect::<Vec<_>>().join(", "),
                        "plugin loaded"
                    );
                    if !unchanged {
                        report.loaded.push(name.clone());
                        changed = true;
                    }
                    files.insert(
                        name.clone(),
                        FileState {
                            modified: *modified,
                            len: *len,
                            loaded: Some(Arc::new(plugin)),
                            settings,
                        },
                    );
                }
                Err(err) => {
                    let previous = files
                        .get(name)
                        .and_then(|f| f.loaded.as_ref())
                        .map(|p| p.version().to_string());
                    tracing::error!(
                        plugin = %name,
                        error = %err,
                        previous = previous.as_deref().unwrap_or("none"),
                        "plugin refused; the previous version (if any) keeps serving"
                    );
                    report.refused.push((name.clone(), err));
                    // Remember the file's mtime so a refused file is not
                    // recompiled every poll; keep what served before.
                    let loaded = files.get(name).and_then(|f| f.loaded.clone());
                    files.insert(
                        name.clone(),
                        FileState {
                            modified: *modified,
                            len: *len,
                            loaded,
                            settings,
                        },
                    );
                }
            }
        }
        if changed {
            let generation = self.snapshot().generation() + 1;
            let chain = Chain {
                plugins: files.values().filter_map(|f| f.loaded.clone()).collect(),
                generation,
            };
            *self.chain.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(chain);
            report.swapped = true;
            tracing::info!(generation, "plugin chain swapped");
        }
        report
    }

    fn stats_for(&self, name: &str) -> Arc<PluginStats> {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The status of every plugin in the serving chain.
    pub fn status(&self) -> StatusFile {
        let chain = self.snapshot();
        StatusFile {
            written_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            generation: chain.generation(),
            plugins: chain.plugins().iter().map(|p| status_of(p)).collect(),
        }
    }

    /// Writes [`PolicyManager::status`] to `path` (temporary file, then
    /// rename).
    pub fn write_status(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&self.status()).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }

    /// Polls the plugin directory every `poll_ms` (default 1 s) and reloads
    /// when a file appears, changes or goes; also writes `status_path`.
    /// Stops when `shutdown` becomes true.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        status_path: Option<PathBuf>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let manager = self.clone();
        tokio::spawn(async move {
            let poll = {
                let c = manager.config.read().unwrap_or_else(|p| p.into_inner());
                Duration::from_millis(c.plugins.poll_ms.max(100))
            };
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    break;
                }
                if manager.directory_changed().await {
                    manager.reload().await;
                }
                if let Some(path) = &status_path {
                    if let Err(e) = manager.write_status(path) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write plugin status");
                    }
                }
            }
        })
    }

    /// Whether the directory listing differs from what was loaded.
    async fn directory_changed(&self) -> bool {
        let dir = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .plugins
            .dir
            .clone();
        let Ok(found) = scan(&dir) else {
            return false;
        };
        let files = self.reloading.lock().await;
        found.len() != files.len()
            || found.iter().any(|(name, (_, modified, len))| {
                files
                    .get(name)
                    .is_none_or(|f| f.modified != *modified || f.len != *len)
            })
    }
}

fn f_settings_eq(
    files: &BTreeMap<String, FileState>,
    name: &str,
    settings: &PluginSettings,
) -> bool {
    files.get(name).is_some_and(|f| f.settings == *settings)
}

fn status_of(p: &LoadedPlugin) -> PluginStatus {
    PluginStatus {
        name: p.name().to_string(),
        plugin_name: p.plugin_name().to_string(),
        version: p.version().to_string(),
        hash: p.hash()[..16].to_string(),
        hooks: p.hooks().iter().map(|h| h.name().to_string()).collect(),
        imports: p.imports().to_vec(),
        stats: p.stats().snapshot(),
    }
}

type Found = BTreeMap<String, (PathBuf, Option<SystemTime>, u64)>;

/// The `*.wasm` files of `dir` by stem, in name order.
fn scan(dir: &Path) -> std::io::Result<Found> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        found.insert(
            stem.to_string(),
            (path.clone(), meta.modified().ok(), meta.len()),
        );
    }
    Ok(found)
}

/// The report of `mailgate plugin check FILE.wasm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The name and version the plugin gives.
    pub plugin_name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of the file.
    pub hash: String,
    /// Hooks it declares and exports.
    pub hooks: Vec<String>,
    /// Its imports.
    pub imports: Vec<String>,
}

/// Validates one component file against the world with `settings` (its
/// grants and config): compiles it, checks its imports, runs `describe`
/// and `self-test`, with an in-memory key-value store and a resolver that
/// finds nothing. For `mailgate plugin check`.
pub async fn check_file(path: &Path, settings: &PluginSettings) -> Result<CheckReport, LoadError> {
    let mut plugins = crate::config::PluginsConfig::new(path.parent().unwrap_or(Path::new(".")));
    plugins.max_instances = 4;
    let config = PolicyConfig {
        plugins,
        plugin: vec![settings.clone()],
    };
    let resolver = Arc::new(StaticResolver::default());
    let (_runtime, plugin) = load_standalone(path, settings, &config, false, resolver).await?;
    Ok(CheckReport {
        plugin_name: plugin.plugin_name().to_string(),
        version: plugin.version().to_string(),
        hash: plugin.hash().to_string(),
        hooks: plugin
            .hooks()
            .iter()
            .map(|h| h.name().to_string())
            .collect(),
        imports: plugin.imports().to_vec(),
    })
}

/// Loads one component file on its own, outside a running server, for
/// `plugin check` and `plugin run`: a runtime of its own (returned with
/// the plugin, which needs it alive) with a fresh instance per call, an
/// in-memory key-value store, `resolver`, and `config`'s limits.
pub(crate) async fn load_standalone(
    path: &Path,
    settings: &PluginSettings,
    config: &PolicyConfig,
    fuel: bool,
    resolver: Arc<dyn Resolver>,
) -> Result<(Runtime, LoadedPlugin), LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::Read(e.to_string()))?;
    let runtime = Runtime::new(RuntimeOptions {
        max_instances: 4,
        reuse_instances: false,
        fuel,
        cache_dir: None,
        kv: Arc::new(MemoryKv::new()),
        resolver,
        http_ca_file: config.plugins.http_ca_file.clone(),
    })
    .map_err(|e| LoadError::Compile(e.to_string()))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string();
    let plugin = runtime
        .load(
            &name,
            bytes,
            settings,
            config.limits_for(settings),
            Arc::default(),
        )
        .await?;
    Ok((runtime, plugin))
}
