//! Errors of the policy runtime.

use std::fmt;
use std::path::PathBuf;

use crate::config::Grant;
use crate::types::Hook;

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// wasmtime refused the engine configuration or the linker.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// A directory or file could not be used.
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, std::io::Error),
}

/// A component was refused at load (the previous version, if any, keeps
/// serving).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(String),
    /// Not a valid component, or compilation failed.
    #[error("not a valid component: {0}")]
    Compile(String),
    /// It imports a capability its `[[plugin]]` entry does not grant.
    #[error("imports capability `{}` without a grant (add it to `grants`)", .0.interface())]
    NotGranted(Grant),
    /// It imports something the host does not serve.
    #[error("imports `{0}`, which the host does not serve")]
    UnknownImport(String),
    /// It was built against another version of the interface.
    #[error("imports `{import}`, but the host serves mailgate:policy@{served}")]
    Version {
        /// The import.
        import: String,
        /// The version served.
        served: &'static str,
    },
    /// Its imports or exports do not match the world.
    #[error("does not implement the mailgate:policy/plugin world: {0}")]
    Link(String),
    /// `describe` failed.
    #[error("describe failed: {0}")]
    Describe(String),
    /// `self-test` failed.
    #[error("self-test failed: {0}")]
    SelfTest(String),
    /// Its `[[plugin]]` entry is unusable (an `http_allow` entry).
    #[error("bad settings: {0}")]
    Config(String),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The wall-time limit was reached.
    Timeout,
    /// The memory (or table) limit refused a growth and the plugin died.
    Memory,
    /// The fuel ran out.
    Fuel,
    /// A trap (panic, unreachable, out-of-bounds access) or an
    /// instantiation failure (e.g. every pool slot busy).
    Trap(String),
    /// The plugin answered something the host refuses (invalid edits).
    InvalidAnswer(String),
}

impl FailureKind {
    /// The `result` label of `mailgate_plugin_calls_total`.
    pub fn metric(&self) -> mailgate_metrics::PluginResult {
        use mailgate_metrics::PluginResult as R;
        match self {
            FailureKind::Timeout => R::Timeout,
            FailureKind::Memory => R::Memory,
            FailureKind::Fuel => R::FuelExhausted,
            FailureKind::Trap(_) => R::Trap,
            FailureKind::InvalidAnswer(_) => R::InvalidAnswer,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Timeout => f.write_str("time limit reached"),
            FailureKind::Memory => f.write_str("memory limit reached"),
            FailureKind::Fuel => f.write_str("fuel exhausted"),
            FailureKind::Trap(m) => write!(f, "trap: {m}"),
            FailureKind::InvalidAnswer(m) => write!(f, "invalid answer: {m}"),
        }
    }
}

/// A failed hook call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} {version} at {hook}: {kind}")]
pub struct PluginFailure {
    /// The plugin's file stem.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// The hook.
    pub hook: Hook,
    /// What went wrong.
    pub kind: FailureKind,
}
