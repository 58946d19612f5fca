//! Outbound mail for mailgate: the queue runner, next-hop resolution
//! through DNS, the SMTP client, delivery status notifications, and DKIM
//! signing.
//!
//! # Role
//! A message accepted for remote recipients (submission, a routing plugin)
//! is handed to [`OutboundQueue::enqueue`](mailgate_store::OutboundQueue)
//! — through [`Relay`], which also wakes the runner — and is durable once
//! that returns. The [`Relay`] runner then delivers it: per destination
//! domain it finds the next hops ([`route`]), opens an SMTP session
//! ([`client`]), sends, and records what happened to each recipient.
//!
//! # The queue on disk
//! The queue lives in the store (`host/store`, schema version 2): table
//! `queue` holds one row per message (envelope sender, body, `created`,
//! `next_attempt`, `attempts`, `held`, `warned`, DSN `ENVID`/`RET`, the
//! SMTPUTF8 and 8-bit flags); table `queue_rcpts` one row per recipient
//! (address, domain, DSN `NOTIFY`/`ORCPT`, `status` = `pending` |
//! `delivered` | `failed`, last reply, remote host). Every change is one
//! SQLite transaction through the store's group commit, so the queue
//! survives a crash or SIGKILL at any point.
//!
//! # Invariants
//! - A recipient with a final status (`delivered`, `failed`) is never sent
//!   to again: a retry after a partial success duplicates nothing.
//! - A message leaves the queue only when every recipient is final, and in
//!   the same transaction its DSN (if one is owed) enters the queue: a
//!   crash can neither lose nor double a bounce.
//! - The DSNs an attempt owes (failed, delayed, relayed, delivered, each
//!   only for the recipients whose `NOTIFY` asks for it, see [`dsn`])
//!   enter the queue in the same transaction as the attempt's outcomes:
//!   each event of a recipient is reported exactly once.
//! - No DSN is ever generated for a message with the null sender `<>`, and
//!   DSNs are sent with `<>` (RFC 5321 §6.1): bounces cannot loop.
//! - Only one attempt per message runs at a time (an in-flight set); at
//!   most `max_per_destination` sessions per destination domain, and
//!   `max_concurrent` in all.
//!
//! # Retry rules
//! After a temporary failure (4xx, no answer, DNS trouble) the message is
//! tried again after the schedule's next wait (`[queue] retry`, the last
//! step repeating: 5m, 15m, 1h, 4h, 4h, ... by default). Once a message is
//! older than `max_age` (5 days by default), a temporary failure counts as
//! final and the sender gets a DSN. A permanent failure (5xx, null MX,
//! non-existent domain, a needed extension missing at the hop) is final at
//! once. With `delay_warning` set, the sender is told once when a message
//! has waited that long (about the recipients whose `NOTIFY` wants delays).
//!
//! # Layout
//! - [`config`]: settings and duration parsing.
//! - [`clock`]: injectable time.
//! - [`dns`]: the [`dns::Dns`] trait and its hickory-resolver implementation.
//! - [`route`]: MX ordering, implicit MX, null MX, smarthost hops.
//! - [`client`]: the SMTP client (replies, EHLO, STARTTLS, pipelining).
//! - [`dsn`]: RFC 3464 reports as RFC 3461's `NOTIFY` asks, the public
//!   builder of the local `delivered` report ([`dsn::delivered`]), and
//!   the DSN parameters as stored and passed on ([`dsn::params`]).
//! - [`local`]: local delivery of queued mail for our own domains.
//! - [`mta_sts`]: MTA-STS (RFC 8461) policies: discovery, HTTPS fetch,
//!   parsing, the in-memory cache.
//! - [`runner`]: [`Relay`], the queue runner.
//! - [`admin`]: the functions behind `mailgate queue ...`.
//! - [`dkim`]: DKIM signing and key generation.
//! - `testing` (feature `test-support`): an in-process DNS server and SMTP
//!   peers for tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod client;
pub mod clock;
pub mod config;
pub mod dkim;
pub mod dns;
pub mod dsn;
pub mod local;
pub mod mta_sts;
pub mod route;
pub mod runner;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{RelayConfig, RetrySchedule, Smarthost, TlsPolicy};
pub use dns::{Dns, DnsError, HickoryDns};
pub use route::Router;
pub use runner::{Relay, RelayParts};
