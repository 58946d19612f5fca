//! The POP3 server of mailgate (RFC 1939, with RFC 2449 CAPA and response
//! codes, RFC 5034 AUTH PLAIN and LOGIN, RFC 2595 STLS and RFC 8314
//! POP3S).
//!
//! # Role
//! A client logs in with its full address, downloads the messages of its
//! INBOX and deletes them. This crate holds the session (the protocol's
//! state machine over the [`mailgate_store::Store`] and the shared
//! [`mailgate_auth::Authenticator`]) and the thin loop that runs it over a
//! socket. The wire syntax lives in `mailgate-pop3-proto`.
//!
//! # Invariants
//! - The maildrop is a snapshot of INBOX taken at login: message numbers
//!   `1..=n` in UID order, fixed for the session (RFC 1939 §8); mail that
//!   arrives later shows in the next session.
//! - One session at a time per account holds the maildrop lock
//!   ([`MaildropLocks`], the store's: across nodes on a shared store); the
//!   lock is a guard, released however the session ends. A session whose
//!   lock was lost meanwhile removes nothing at QUIT.
//! - Messages marked with DELE are removed only by QUIT in the
//!   TRANSACTION state, durably, before `+OK` is sent; a connection that
//!   ends any other way (drop, timeout, shutdown, too many errors) deletes
//!   nothing.
//! - Wrong password and unknown user get the same answer, after the same
//!   delay (the authenticator sees to the delay).
//! - Before TLS, USER/PASS and AUTH are neither advertised nor accepted
//!   unless the clear-text policy allows it
//!   ([`mailgate_auth::Authenticator::plaintext_permitted`]).
//! - STLS: lines the client pipelined after STLS are discarded unread; the
//!   client must ask CAPA again under TLS (RFC 2595 §4).
//!
//! # Layout
//! - [`session`]: the state machine, testable without sockets;
//!   `session/auth.rs` handles AUTHORIZATION, `session/transaction.rs` the
//!   TRANSACTION and UPDATE states.
//! - [`maildrop`]: the snapshot of INBOX and the DELE marks.
//! - [`locks`]: the per-account maildrop locks (the store's seam).
//! - [`conn`]: [`serve_connection`], reading lines, timeouts, shutdown.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conn;
pub mod locks;
pub mod maildrop;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::Authenticator;
use mailgate_store::Store;
pub use mailgate_tls::TlsMode;
use tokio::sync::watch;

pub use conn::serve_connection;
pub use locks::{InProcessLocks, MaildropGuard, MaildropLocks};
pub use session::{Flow, Session};

/// RFC 1939 §3: "A POP3 server MAY have an inactivity autologout timer.
/// Such a timer MUST be of at least 10 minutes' duration."
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A command line must arrive whole within this of its first byte
/// (`[limits] command_timeout`), however slowly its bytes trickle in.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// After this many `-ERR` answers in a row the session is closed: a client
/// that gets nothing right is broken or probing.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 10;

/// What every POP3 session of the process shares.
pub struct Pop3Context {
    /// The name given in the greeting and the sign-off.
    pub hostname: String,
    /// The mail store.
    pub store: Arc<dyn Store>,
    /// Verifies passwords (and slows down failures).
    pub auth: Arc<Authenticator>,
    /// The maildrop locks: the store's (every `Backend` is one), so that
    /// they hold across nodes on a shared store and across reloads.
    pub locks: Arc<dyn MaildropLocks>,
    /// How long to wait for a command (and for a write) before closing.
    pub idle_timeout: Duration,
    /// How long one command line may take from its first byte to its
    /// end; slower: `-ERR` and close. Zero turns the check off.
    pub command_timeout: Duration,
    /// Becomes `true` when the server stops: idle sessions say goodbye.
    pub shutdown: watch::Receiver<bool>,
    /// STLS, implicit TLS (POP3S) or none.
    pub tls: TlsMode,
}

impl Pop3Context {
    /// A context with locks of its own ([`InProcessLocks`]; a server
    /// sets the store's) and the default idle timeout.
    pub fn new(
        hostname: impl Into<String>,
        store: Arc<dyn Store>,
        auth: Arc<Authenticator>,
        shutdown: watch::Receiver<bool>,
    ) -> Pop3Context {
        Pop3Context {
            hostname: hostname.into(),
            store,
            auth,
            locks: Arc::new(InProcessLocks::new()),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            shutdown,
            tls: TlsMode::None,
        }
    }
}
