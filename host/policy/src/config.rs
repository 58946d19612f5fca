//! The configuration of the plugins: `[plugins]` and `[[plugin]]` entries.
//!
//! The binary embeds these structs in its own config file:
//! ```ignore
//! #[serde(default)] plugins: Option<mailgate_policy::PluginsConfig>,
//! #[serde(default)] plugin: Vec<mailgate_policy::PluginSettings>,
//! ```
//! and hands both to [`crate::PolicyConfig`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default memory limit of one plugin instance.
pub const DEFAULT_MEMORY_MB: u32 = 64;
/// Default wall-time limit of one hook call.
pub const DEFAULT_TIMEOUT_MS: u64 = 100;
/// Default number of plugin instances alive at once (the pooling
/// allocator's slots); a call that finds no free slot fails like a trap.
pub const DEFAULT_MAX_INSTANCES: u32 = 256;
/// Upper bound of `memory_mb` (the pool reserves this much address space
/// per slot).
pub const MAX_MEMORY_MB: u32 = 1024;

/// `[plugins]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Every `*.wasm` file here is loaded, in file-name order.
    pub dir: PathBuf,
    /// Where compiled components are cached; default `<data_dir>/plugin-cache`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Extra trusted roots (PEM) for capability `http` over TLS, besides
    /// the system's: the server fills it from `[relay] tls_ca_file`; not a
    /// key of `[plugins]`.
    #[serde(skip)]
    pub http_ca_file: Option<PathBuf>,
    /// Default memory limit per instance, MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Default wall-time limit per hook call, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Default failure mode.
    #[serde(default)]
    pub failure: FailureMode,
    /// Turns fuel metering on for every plugin (costs a few percent of
    /// plugin speed); `fuel` per plugin then bounds the instructions of
    /// one call. Off by default: the wall-time limit already bounds CPU.
    #[serde(default)]
    pub fuel: bool,
    /// Default fuel per call when `fuel` is on.
    #[serde(default = "default_fuel")]
    pub default_fuel: u64,
    /// Plugin instances alive at once, across all sessions.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// How often the directory is checked for changes, ms.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Keep instances warm between calls (the default); `false` makes a
    /// fresh instance for every call (stricter, ~20 µs more per call).
    /// Read at start-up only.
    #[serde(default = "default_true")]
    pub reuse_instances: bool,
}

fn default_true() -> bool {
    true
}

impl PluginsConfig {
    /// Defaults for a plugin directory.
    pub fn new(dir: impl Into<PathBuf>) -> PluginsConfig {
        PluginsConfig {
            dir: dir.into(),
            cache_dir: None,
            http_ca_file: None,
            memory_mb: DEFAULT_MEMORY_MB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            failure: FailureMode::default(),
            fuel: false,
            default_fuel: default_fuel(),
            max_instances: DEFAULT_MAX_INSTANCES,
            poll_ms: default_poll_ms(),
            reuse_instances: true,
        }
    }
}

/// `[[plugin]]`: settings for one plugin file. See [`plugin_key`] for
/// which file an entry is for.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// The plugin's name: the file name without `.wasm`, an ordering
    /// prefix and the `-`/`_` difference ([`plugin_key`]).
    pub name: String,
    /// `false` leaves the file unloaded.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What a failed call means; default from `[plugins]`.
    #[serde(default)]
    pub failure: Option<FailureMode>,
    /// Memory limit, MiB.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Wall-time limit per hook call, ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Fuel per call (only when `[plugins] fuel = true`).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Capabilities it may import.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Handed to the plugin as JSON (capability `config`).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Where capability `http` may go: URL prefixes such as
    /// `"http://127.0.0.1:11333/"` (scheme, host, port, path prefix; see
    /// [`crate::http::AllowRule`]). Empty: nowhere.
    #[serde(default)]
    pub http_allow: Vec<String>,
}

/// Everything the policy runtime reads from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// `[plugins]`.
    pub plugins: PluginsConfig,
    /// `[[plugin]]` entries.
    pub plugin: Vec<PluginSettings>,
}

impl PolicyConfig {
    /// The settings for file stem `name` (defaults if it has no entry):
    /// the entry named exactly so, else the one with the same
    /// [`plugin_key`].
    pub fn settings_for(&self, name: &str) -> PluginSettings {
        self.entry_for(name)
            .cloned()
            .unwrap_or_else(|| PluginSettings {
                name: name.to_string(),
                enabled: true,
                ..PluginSettings::default()
            })
    }

    /// The `[[plugin]]` entry for file stem `stem`, if any (see
    /// [`PolicyConfig::settings_for`]).
    pub fn entry_for(&self, stem: &str) -> Option<&PluginSettings> {
        let key = plugin_key(stem);
        self.plugin
            .iter()
            .find(|p| p.name == stem)
            .or_else(|| self.plugin.iter().find(|p| plugin_key(&p.name) == key))
    }

    /// The `[[plugin]]` entries that match none of `stems` (the files of
    /// the plugin directory): logged as a warning at start and reload.
    pub fn unmatched<'a>(&'a self, stems: &[&str]) -> Vec<&'a str> {
        let keys: Vec<String> = stems.iter().map(|s| plugin_key(s)).collect();
        self.plugin
            .iter()
            .filter(|p| !keys.contains(&plugin_key(&p.name)))
            .map(|p| p.name.as_str())
            .collect()
    }

    /// The limits for `settings`, defaults filled in and bounded.
    pub fn limits_for(&self, settings: &PluginSettings) -> Limits {
        let p = &self.plugins;
        Limits {
            memory_bytes: u64::from(settings.memory_mb.unwrap_or(p.memory_mb).min(MAX_MEMORY_MB))
                << 20,
            timeout: Duration::from_millis(settings.timeout_ms.unwrap_or(p.timeout_ms).max(1)),
            fuel: p.fuel.then(|| settings.fuel.unwrap_or(p.default_fuel)),
            failure: settings.failure.unwrap_or(p.failure),
        }
    }
}

/// The limits of one plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_bytes: u64,
    /// Wall time per hook call (instantiation included).
    pub timeout: Duration,
    /// Fuel per call, if metering is on.
    pub fuel: Option<u64>,
    /// What a failed call means.
    pub failure: FailureMode,
}

/// What a trap, time-out or limit hit means for the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// As if the plugin accepted.
    FailOpen,
    /// `451 4.7.0`: the sender retries later. The default, as with
    /// Postfix's `milter_default_action = tempfail`: a broken filter delays
    /// mail rather than letting unfiltered mail through.
    #[default]
    FailClosed,
}

impl FailureMode {
    /// The name in the configuration (`fail-open`, `fail-closed`), for the
    /// log.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::FailOpen => "fail-open",
            FailureMode::FailClosed => "fail-closed",
        }
    }
}

/// A capability a plugin may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// `mailgate:policy/log`.
    Log,
    /// `mailgate:policy/clock` (and real WASI clocks).
    Clock,
    /// `mailgate:policy/dns`.
    Dns,
    /// `mailgate:policy/kv`.
    Kv,
    /// `mailgate:policy/config`.
    Config,
    /// `mailgate:policy/http` (to the `http_allow` destinations only).
    Http,
}

impl Grant {
    /// Every grant.
    pub const ALL: [Grant; 6] = [
        Grant::Log,
        Grant::Clock,
        Grant::Dns,
        Grant::Kv,
        Grant::Config,
        Grant::Http,
    ];

    /// The WIT interface name (without package and version).
    pub fn interface(self) -> &'static str {
        match self {
            Grant::Log => "log",
            Grant::Clock => "clock",
            Grant::Dns => "dns",
            Grant::Kv => "kv",
            Grant::Config => "config",
            Grant::Http => "http",
        }
    }
}

/// The name a plugin file or a `[[plugin]] name` stands for: without an
/// ordering prefix (digits then `-` or `_`, as in `20-greylist`), with `-`
/// read as `_`, so `20-greylist.wasm` is `greylist` and `noreply-guard`
/// is the `noreply_guard.wasm` cargo writes.
pub fn plugin_key(name: &str) -> String {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &name[digits..];
    let name = match rest.strip_prefix(['-', '_']) {
        Some(r) if digits > 0 && !r.is_empty() => r,
        _ => name,
    };
    name.replace('-', "_")
}

fn yes() -> bool {
    true
}
fn default_memory_mb() -> u32 {
    DEFAULT_MEMORY_MB
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_fuel() -> u64 {
    1_000_000_000
}
fn default_max_instances() -> u32 {
    DEFAULT_MAX_INSTANCES
}
fn default_poll_ms() -> u64 {
    1000
}

/// Whether a host serving WIT version `served` serves a plugin built
/// against `version`: the same version or an earlier semver-compatible one
/// (same `0.x` series before 1.0, same major after), whose imports and
/// exports wasmtime's linker maps onto ours. A later version may import
/// what the host does not have; anything unparsable is refused.
pub fn serves_wit(served: &str, version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some((a, b, c)),
            _ => None,
        }
    };
    let (Some(v), Some(s)) = (parse(version), parse(served)) else {
        return false;
    };
    let same_series = if s.0 == 0 {
        v.0 == 0 && v.1 == s.1
    } else {
        v.0 == s.0
    };
    same_series && v <= s
}

#[cfg(test)]
mod tests {
    #[test]
    fn wit_versions_served() {
        use super::serves_wit;
        assert!(serves_wit("0.1.2", "0.1.2"));
        assert!(serves_wit("0.1.2", "0.1.1"));
        assert!(serves_wit("0.1.2", "0.1.0"));
        assert!(serves_wit("0.1.3", "0.1.2"));
        assert!(!serves_wit("0.1.2", "0.1.3"));
        assert!(!serves_wit("0.1.3", "0.1.4"));
        assert!(serves_wit("0.1.1", "0.1.1"));
        assert!(serves_wit("0.1.1", "0.1.0"));
        assert!(!serves_wit("0.1.1", "0.1.2"));
        assert!(!serves_wit("0.1.1", "0.2.0"));
        assert!(!serves_wit("0.2.0", "0.1.0"));
        assert!(!serves_wit("0.1.1", ""));
        assert!(!serves_wit("0.1.1", "0.1"));
        assert!(!serves_wit("0.1.1", "0.1.0-rc1"));
        assert!(serves_wit("1.3.0", "1.0.7"));
        assert!(!serves_wit("1.3.0", "2.0.0"));
        assert!(!serves_wit("1.3.0", "0.9.0"));
    }

    use super::*;

    #[derive(Deserialize)]
    struct File {
        plugins: PluginsConfig,
        #[serde(default)]
        plugin: Vec<PluginSettings>,
    }

    #[test]
    fn parses_the_documented_example() {
        let f: File = toml::from_str(
            r#"
            [plugins]
            dir = "/etc/mailgate/plugins"
            [[plugin]]
            name     = "spam-filter"
            failure  = "fail-closed"
            memory_mb = 64
            timeout_ms = 100
            grants   = ["dns", "kv"]
            config   = { threshold = 5.0 }
            "#,
        )
        .unwrap();
        let c = PolicyConfig {
            plugins: f.plugins,
            plugin: f.plugin,
        };
        let s = c.settings_for("spam-filter");
        assert_eq!(s.grants, vec![Grant::Dns, Grant::Kv]);
        assert_eq!(s.config.unwrap()["threshold"], 5.0);
        let l = c.limits_for(&c.settings_for("other"));
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.timeout, Duration::from_millis(100));
        assert_eq!(l.failure, FailureMode::FailClosed);
        assert_eq!(l.fuel, None);
    }

    #[test]
    fn names_match_files() {
        assert_eq!(plugin_key("20-greylist"), "greylist");
        assert_eq!(plugin_key("20_greylist"), "greylist");
        assert_eq!(plugin_key("noreply-guard"), "noreply_guard");
        assert_eq!(plugin_key("2024"), "2024");
        assert_eq!(plugin_key("20-"), "20_");
        assert_eq!(plugin_key("v2-filter"), "v2_filter");
        let c = PolicyConfig {
            plugins: PluginsConfig::new("/p"),
            plugin: vec![
                PluginSettings {
                    name: "greylist".into(),
                    grants: vec![Grant::Kv],
                    ..Default::default()
                },
                PluginSettings {
                    name: "noreply-guard".into(),
                    grants: vec![Grant::Log],
                    ..Default::default()
                },
                PluginSettings {
                    name: "typo".into(),
                    ..Default::default()
                },
            ],
        };
        assert_eq!(c.settings_for("20-greylist").grants, vec![Grant::Kv]);
        assert_eq!(c.settings_for("noreply_guard").grants, vec![Grant::Log]);
        assert!(c.settings_for("other").grants.is_empty());
        assert_eq!(c.unmatched(&["20-greylist", "noreply_guard"]), vec!["typo"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<File>("[plugins]\ndir = \"x\"\ntimout_ms = 3\n").is_err());
    }
}
