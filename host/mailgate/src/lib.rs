//! The `mailgate` binary's library: configuration, listeners, signals and
//! the admin CLI, wiring together the protocol crates and the store.
//!
//! # Layout
//! - [`config`]: the TOML configuration file.
//! - [`dev`]: the ready-made development profile of `mailgate serve --dev`.
//! - [`plugins`]: starting the policy runtime, the pid file, and the
//!   development profile's example plugins.
//! - [`relay`]: the outbound relay built from `[relay]`, `[queue]` and
//!   `[[dkim]]`, and its hand-off from SMTP submission.
//! - [`reload`]: SIGHUP: what of a re-read configuration applies live,
//!   and which keys need a restart.
//! - [`server`]: opens the store, binds the listeners, runs the sessions,
//!   and shuts down on SIGTERM.
//! - [`shared_state`]: the plugins' key-value data and the MTA-STS
//!   cache in the store, and the one-time import of the files older
//!   versions kept them in.
//! - [`srs`]: `[srs]`, the Sender Rewriting Scheme's settings.
//! - [`connections`]: `max_connections` and `max_connections_per_ip`, the
//!   permits the accept loops hand each session.
//! - [`monitoring`]: `[listen] metrics`: readiness, the queue gauges,
//!   the accept loops' counts, `mailgate healthcheck`.
//! - [`wake`]: the socket through which `queue flush` wakes the server.
//! - [`privileges`]: the `user` and `group` keys: dropping root once the
//!   listeners are bound; the data directory's owner.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers from trusted proxies
//!   (`[listen.proxy]`, `limits.proxy_from`).
//! - [`notify`]: `READY=1` and `STOPPING=1` to systemd's `$NOTIFY_SOCKET`.
//! - [`cli`]: the subcommands (`serve`, `user`, `alias`, `domain`, `store`,
//!   `queue`, `dkim`).
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod connections;
pub mod dev;
pub mod mailbox_events;
pub mod monitoring;
pub mod notify;
pub mod plugins;
pub mod private;
pub mod privileges;
pub mod proxy_protocol;
pub mod relay;
pub mod reload;
pub mod server;
pub mod shared_state;
pub mod sieve_delivery;
pub mod srs;
pub mod wake;
