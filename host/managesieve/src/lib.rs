//! The ManageSieve server of mailgate (RFC 5804, usually port 4190): users
//! upload, check, list, activate and delete their Sieve scripts from a mail
//! client (Thunderbird's Sieve add-on, Roundcube's managesieve plugin,
//! `sieve-connect`).
//!
//! # Role
//! The wire format (commands with literals, replies, the table of which
//! command is legal when, the rules of the script commands) lives in
//! `mailgate-managesieve-proto` and is tested there without sockets. This
//! crate holds the [`Session`] (state, login through the shared
//! [`mailgate_auth::Authenticator`], script commands carried out on the
//! store's [`SieveScripts`]) and the thin loop that runs it over a socket
//! ([`serve_connection`]), as `mailgate-pop3` does for POP3.
//!
//! # Invariants
//! - A script is stored only if it compiles with the settings delivery
//!   uses (`[sieve]`), so the active script always compiled once.
//! - Before TLS, `AUTHENTICATE` is neither advertised (`SASL ""`) nor
//!   accepted unless the clear-text policy allows it
//!   ([`mailgate_auth::Authenticator::plaintext_permitted`]), exactly as
//!   for IMAP and POP3.
//! - After `STARTTLS` whatever the client sent in clear behind it is
//!   dropped unread, and the capabilities are sent again (RFC 5804 §2.2).
//! - Every bound a client drives is a named constant or a context field:
//!   [`MAX_COMMAND_LINE`], the literal size (`max_script_size`),
//!   [`MAX_CONSECUTIVE_ERRORS`], [`MAX_AUTH_FAILURES`],
//!   [`MAX_COMMANDS`], the idle and command timeouts; sessions are bounded
//!   by the server's connection limits.
//! - Nothing the client sent is written to the log except through the
//!   log's escaping (user names), and never a script or a password.
//!
//! # Layout
//! - [`session`]: the state machine, testable without sockets;
//!   `session/auth.rs` logs in, `session/scripts.rs` runs script commands.
//! - [`conn`]: [`serve_connection`]: reading, timeouts, STARTTLS, shutdown.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conn;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::Authenticator;
use mailgate_store::SieveScripts;
pub use mailgate_tls::TlsMode;
use tokio::sync::watch;

pub use conn::serve_connection;
pub use session::{Flow, Session};

/// The longest command line outside literals, CRLF included. Script
/// names and SASL messages are short; scripts come as literals.
pub const MAX_COMMAND_LINE: usize = 8192;

/// After this many `NO` answers in a row to commands the client got wrong
/// (syntax, unknown command, wrong state), the session ends with `BYE`.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 10;

/// After this many failed logins in one session it ends with `BYE` (the
/// authenticator's delays and blocks apply across sessions as well).
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Most commands in one session; then `BYE`. Managing scripts takes a
/// handful; this only stops a client that loops for ever on one
/// connection.
pub const MAX_COMMANDS: u64 = 10_000;

/// The idle timeout when none is configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A command (its line and its literal) must arrive whole within this of
/// its first byte when none is configured.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// What every ManageSieve session of the process shares.
pub struct ManageSieveContext {
    /// Named in `IMPLEMENTATION` and in the greeting's log line.
    pub hostname: String,
    /// The users' scripts.
    pub scripts: Arc<dyn SieveScripts>,
    /// Verifies passwords (and slows down failures).
    pub auth: Arc<Authenticator>,
    /// The interpreter's settings (`[sieve]`): scripts are compiled with
    /// them before they are stored, and `SIEVE` lists the extensions they
    /// allow.
    pub settings: mailgate_sieve::Settings,
    /// Most scripts per account (`[sieve] max_scripts`).
    pub max_scripts: usize,
    /// How long to wait for a command (and for a write) before closing.
    pub idle_timeout: Duration,
    /// How long one command may take from its first byte to its end
    /// (literal included); zero turns the check off.
    pub command_timeout: Duration,
    /// Becomes `true` when the server stops: sessions say `BYE`.
    pub shutdown: watch::Receiver<bool>,
    /// STARTTLS or none (RFC 5804 has no implicit-TLS port).
    pub tls: TlsMode,
}

impl ManageSieveContext {
    /// A context with the default limits and no TLS.
    pub fn new(
        hostname: impl Into<String>,
        scripts: Arc<dyn SieveScripts>,
        auth: Arc<Authenticator>,
        shutdown: watch::Receiver<bool>,
    ) -> ManageSieveContext {
        ManageSieveContext {
            hostname: hostname.into(),
            scripts,
            auth,
            settings: mailgate_sieve::Settings::default(),
            max_scripts: 32,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            shutdown,
            tls: TlsMode::None,
        }
    }

    /// The parser's bounds: [`MAX_COMMAND_LINE`] and the largest script.
    pub fn limits(&self) -> mailgate_managesieve_proto::Limits {
        mailgate_managesieve_proto::Limits {
            max_line: MAX_COMMAND_LINE,
            max_literal: self.settings.max_script_size,
        }
    }
}
