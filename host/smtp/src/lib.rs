//! The SMTP server of mailgate (RFC 5321), MX role: receiving mail for
//! local domains and delivering it into the store.
//!
//! # Role
//! Talks SMTP with other mail servers. Wire syntax is in
//! `mailgate_smtp_proto`; this crate decides what to answer: which verb is
//! legal when, which recipients are ours, and when a message is accepted.
//!
//! # Invariants
//! - `250` after the message body is sent only once
//!   `LocalDelivery::deliver` returned, i.e. the message is durable; any
//!   store error is `451 4.3.0` with the detail in the log only.
//! - Only local recipients are accepted (`550 5.7.1 Relaying denied`
//!   otherwise): this role never relays.
//! - SMTP smuggling: only `<CRLF>.<CRLF>` ends DATA, and a message with a
//!   bare CR or LF anywhere is **rejected** after its end with
//!   `550 5.6.11`, never normalised. Rejecting is what keeps us from
//!   accepting, as one message, bytes that another hop might have split
//!   into two; legitimate senders use CRLF.
//! - The session state machine ([`Session`]) does no I/O and never
//!   panics on input; garbage gets an error reply, and after
//!   `max_errors` error replies the session ends with `421 4.7.0`.
//! - Replies to pipelined commands go out in order, flushed before the
//!   next read (RFC 2920).
//! - Shutdown: an idle session gets `421 4.3.2` and closes; a session in
//!   a transaction may finish it first (the binary bounds the wait).
//!
//! # Layout
//! - [`context`]: [`SmtpContext`] and [`SmtpLimits`].
//! - [`state`]: [`State`] and the table of which verb is legal when.
//! - [`session`]: [`Session`], the state machine (bytes in, replies out).
//! - `cmd/`: one handler per verb (`ehlo.rs`, `mail.rs`, `rcpt.rs`,
//!   `data.rs`, `bdat.rs`, `misc.rs`) and `deliver.rs`, the end of a
//!   message.
//! - [`received`]: the `Received:` header and queue ids.
//! - [`server`]: [`serve_connection`] and the accept loop [`serve`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cmd;
pub mod context;
pub mod received;
pub mod server;
pub mod session;
pub mod state;

pub use context::{SmtpContext, SmtpLimits};
pub use server::{serve, serve_connection};
pub use session::Session;
pub use state::State;
