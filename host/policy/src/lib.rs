//! The policy runtime of mailgate: filtering, routing and delivery policy
//! as WebAssembly components (wasmtime, component model) against the WIT
//! interface `mailgate:policy@0.1.4` in `wit/` (plugins built against
//! 0.1.0 to 0.1.3 are served too), and the system Sieve plugin
//! ([`SieveFilter`], world `sieve-filter`).
//!
//! # Role
//! The SMTP session and delivery ask a [`Chain`] of plugins at each stage
//! (connect, helo, auth, mail-from, rcpt-to, data, route) and get host
//! types back ([`Decision`], [`DataDecision`], [`RouteDecision`]); IMAP
//! reports messages users file into or out of Junk
//! ([`Chain::mailbox_event`], no verdict); nothing
//! of wasmtime leaks out of this crate. [`PolicyManager`] owns the chain:
//! it loads the plugin directory, swaps a new chain in on reload (SIGHUP,
//! `mailgate plugin reload`, or the directory watcher), and reports status
//! for `mailgate plugin list`.
//!
//! # Invariants
//! - Instances come from a pre-instantiated component (pooling allocator)
//!   and are kept warm between calls (one call at a time per instance);
//!   one that failed in any way is never called again.
//! - Each call runs under its plugin's limits: memory (resource limiter),
//!   wall time (epoch deadline plus an outer timeout that also covers async
//!   host calls), optionally fuel. A trap, time-out or limit hit is a
//!   [`PluginFailure`], logged with plugin, version and hook, and turned
//!   into the plugin's failure mode; it never panics the host.
//! - A busy plugin yields to tokio at every epoch tick ([`EPOCH_TICK`]), and
//!   DNS look-ups are async: plugins never hold a worker for long.
//! - A plugin imports only what it was granted (checked at load); WASI is
//!   linked with an empty context (no files, sockets, environment), and
//!   its clocks read as frozen without the `clock` grant.
//! - Everything a plugin returns is validated (reply codes, header names
//!   and sizes, addresses, folders) before it touches the mail.
//!
//! # Layout
//! - [`config`]: `[plugins]`/`[[plugin]]` serde structs and limits.
//! - [`types`]: host types of hooks, verdicts and edits.
//! - `bindings`: the generated bindings and their conversions (private).
//! - [`message`]: [`MessageView`], the message as plugins see it.
//! - [`caps`]: the key-value store and resolver behind the capabilities.
//! - [`http`]: capability `http` (allow-list, client, limits).
//! - [`dns`]: capability `dns` on hickory-resolver ([`HickoryResolver`]).
//! - [`runtime`]: engine, cache, [`LoadedPlugin`] and the per-call limits.
//! - [`chain`]: the chain semantics.
//! - [`manager`]: [`PolicyManager`], reload, watcher, status, `check_file`.
//! - [`run`]: one hook on one message outside a server (`plugin run`).
//! - [`stats`]: counters and latency percentiles.
//! - [`sieve`]: the system Sieve plugin ([`SieveFilter`]).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod bindings;
pub mod caps;
pub mod chain;
pub mod config;
pub mod dns;
pub mod error;
pub mod http;
pub mod manager;
pub mod message;
pub mod run;
pub mod runtime;
pub mod sieve;
pub mod stats;
pub mod types;

pub use caps::{
    DnsError, KvError, KvStore, MemoryKv, RecordType, Resolver, StaticResolver, SystemResolver,
};
pub use chain::{Chain, DataDecision, Decision, RouteDecision};
pub use config::{
    plugin_key, FailureMode, Grant, Limits, PluginSettings, PluginsConfig, PolicyConfig,
};
pub use dns::HickoryResolver;
pub use error::{FailureKind, LoadError, PluginFailure, PolicyError};
pub use manager::{check_file, CheckReport, PluginStatus, PolicyManager, ReloadReport, StatusFile};
pub use message::MessageView;
pub use run::{run_file, CallReport, RunError, RunInput, RunReport};
pub use runtime::{LoadedPlugin, Runtime, RuntimeOptions, EPOCH_TICK};
pub use sieve::{
    NamedScript, SieveAction, SieveDuplicate, SieveError, SieveFilter, SieveHeaderEdit,
    SieveLimits, SieveLoadError, SieveRequest, SieveResponse, SieveVacation,
};
pub use stats::StatsSnapshot;
pub use types::{
    AuthAttempt, AuthResult, AuthResults, Delivery, Direction, DkimCheck, DmarcCheck, DmarcPolicy,
    Edit, Envelope, Hook, HookSet, MailboxEvent, Param, RecipientInfo, Reply, RouteAction,
    SessionInfo, SpfCheck, TlsDetails, Verdict,
};
