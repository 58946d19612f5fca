//! What mailgate counts, and how an administrator sees it.
//!
//! # Role
//! One process-wide Prometheus registry (the `prometheus-client` crate,
//! which also writes the text format: nothing here formats exposition
//! text by hand), the typed functions every other crate calls to count
//! something, and the HTTP endpoint of `[listen] metrics` with
//! `/metrics`, `/healthz/live` and `/healthz/ready`.
//!
//! # Invariants
//! - A call site is one line: `mailgate_metrics::smtp_message(listener,
//!   outcome)`. Names, help texts and label sets are defined once, in
//!   [`registry`]; docs/monitoring.md lists them (a test checks).
//! - Every label value is one of a fixed set given by an enum in
//!   [`record`], except `plugin` (a file name in the plugin directory,
//!   chosen by the administrator). Nothing a client sends becomes a label
//!   value, so no client can grow the number of series.
//! - Counting never fails and never blocks on I/O: a call is a few atomic
//!   operations (and a read lock on the family's map).
//!
//! # Layout
//! - [`registry`]: the metrics, their names and help texts; [`encode`].
//! - [`record`]: one function per thing counted, and the label enums.
//! - [`http`]: the endpoint's server and the [`http::Probe`] it asks.
//! - [`client`]: `mailgate healthcheck`'s request to `/healthz/ready`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod http;
pub mod record;
pub mod registry;

pub use record::*;
pub use registry::encode;

#[cfg(test)]
mod tests;
