//! The SMTP server of mailgate (RFC 5321): the MX role, receiving mail
//! for local domains, and the submission role (RFC 6409, RFC 8314), where
//! users send mail after TLS and AUTH.
//!
//! # Role
//! Talks SMTP with other mail servers and with users' mail programs. Wire
//! syntax is in `mailgate_smtp_proto`, TLS in `mailgate_tls`; this crate
//! decides what to answer: which verb is legal when, who may send as whom,
//! which recipients are ours, and when a message is accepted.
//!
//! # Invariants
//! - `250` after the message body is sent only once
//!   `mailgate_delivery::Room::deliver` returned, i.e. the message is
//!   durable; any store error is `451 4.3.0` with the detail in the log
//!   only.
//! - Without AUTH only local recipients are accepted (`550 5.7.1
//!   Relaying denied` otherwise), unless the client's address is in
//!   `trusted_networks` ([`trust`]); no address syntax (source routes,
//!   `%`, `!`, quoted local parts) turns a local-looking address into a
//!   remote one.
//! - AUTH exists only on the submission role, and only under TLS unless
//!   the clear-text policy allows it (`538 5.7.11`); submission refuses
//!   MAIL before AUTH (`530 5.7.0`, not to `trusted_networks`) and
//!   senders the user does not own (`553 5.7.1`, see [`sender`]).
//! - STARTTLS: whatever the client pipelined after the STARTTLS line is
//!   discarded unread, and after the handshake every piece of state
//!   learnt in clear (EHLO, transaction, AUTH) is forgotten (RFC 3207
//!   §4.2).
//! - SMTP smuggling: only `<CRLF>.<CRLF>` ends DATA, and a message with a
//!   bare CR or LF anywhere is **rejected** after its end with
//!   `550 5.6.11`, never normalised. Rejecting is what keeps us from
//!   accepting, as one message, bytes that another hop might have split
//!   into two; legitimate senders use CRLF.
//! - The session state machine ([`Session`]) does no I/O and never
//!   panics on input; garbage gets an error reply, and after
//!   `max_errors` protocol errors the session ends with `421 4.7.0`
//!   (refusals for policy or resource reasons, such as `452 4.5.3` past
//!   `max_recipients`, do not count).
//! - Memory: a command line is at most `max_command_line`; a message is
//!   held once, up to `max_message_size` (a BDAT chunk that would pass it
//!   is refused unread and the session closed; DATA is read to at most
//!   twice the limit).
//! - Time: a command line arrives whole within `command_timeout` of its
//!   first byte, and message data averages `min_transfer_rate` after a
//!   grace (`pace.rs`); otherwise `421 4.4.2` and close.
//! - Replies to pipelined commands go out in order, flushed before the
//!   next read (RFC 2920).
//! - Shutdown: an idle session gets `421 4.3.2` and closes; a session in
//!   a transaction may finish it first (the binary bounds the wait).
//!
//! # Layout
//! - [`context`]: [`SmtpContext`] and [`SmtpLimits`].
//! - [`state`]: [`State`] and the table of which verb is legal when.
//! - [`session`]: [`Session`], the state machine (bytes in, replies out).
//! - `cmd/`: one handler per verb (`ehlo.rs`, `starttls.rs`, `auth.rs`,
//!   `mail.rs`, `rcpt.rs`, `data.rs`, `bdat.rs`, `misc.rs`) and
//!   `deliver.rs`, the end of a message: trace fields, the hand-off to
//!   `mailgate_delivery::Room` (which runs `data` and `route`, checks
//!   quotas, stores and queues), and the replies from its report.
//! - [`sender`]: which envelope senders a user may use.
//! - [`sender_domain`]: `reject_unknown_sender_domain`, the DNS check of
//!   the sender's domain at MAIL (MX role).
//! - [`trust`]: `trusted_networks`, the clients that may relay without
//!   AUTH.
//! - `policy.rs`: the plugins' hooks before the message (connect, helo,
//!   auth, mail-from, rcpt-to).
//! - [`received`]: the `Received:` header and queue ids.
//! - [`verify`]: SPF, DKIM and DMARC of inbound MX mail, the
//!   `Authentication-Results:` header.
//! - `pace.rs`: the slow-client deadlines (command lines, transfers).
//! - `lmtp.rs`: LMTP (RFC 2033) on the same session ([`Role::Lmtp`]):
//!   LHLO and its sequence table; one reply per recipient after the
//!   message comes from the room's per-recipient report.
//! - [`server`]: [`serve_connection`] and the accept loop [`serve`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cmd;
pub mod context;
mod lmtp;
mod pace;
mod policy;
pub mod received;
pub mod reverse;
pub mod sender;
pub mod sender_domain;
pub mod server;
pub mod session;
pub mod state;
pub mod trust;
pub mod verify;

pub use context::{Role, SmtpContext, SmtpLimits, TlsMode};
pub use reverse::ReverseLookup;
pub use sender::SenderGrants;
pub use sender_domain::SenderDomainCheck;
pub use server::{serve, serve_connection};
pub use session::Session;
pub use state::State;
pub use trust::TrustedNetworks;
pub use verify::Verifier;
