//! The IMAP server of mailgate: IMAP4rev2 (RFC 9051) and IMAP4rev1
//! (RFC 3501) on one port, with the extensions listed by
//! [`ImapContext::capabilities`].
//!
//! # Role
//! Users keep their mail on the server in folders and read it from
//! several devices. This crate holds the session (the state machine of
//! RFC 9051 §3 over the [`mailgate_store::Store`] and the shared
//! [`mailgate_auth::Authenticator`]) and the thin loop that runs it over
//! a stream. The wire syntax lives in `mailgate-imap-proto`.
//!
//! # Invariants
//! - A session sees only its own account: every mailbox is looked up by
//!   (account, name) in the store, names are validated ([`names`]) before
//!   they reach it, and the store never maps a name to a file.
//! - The selected mailbox is a snapshot (sequence numbers ↔ UIDs) that
//!   changes only at the moments RFC 9051 §7.5.1 allows: no EXPUNGE is
//!   sent during FETCH, STORE or SEARCH by sequence number; new mail and
//!   flag changes by other sessions are announced after any command, and
//!   during IDLE as soon as the store reports them.
//! - Client errors are tagged `BAD` (syntax) or `NO` (refused); our own
//!   failures are `NO [SERVERBUG]` with the detail only in the log.
//!
//! # Layout
//! - [`session`]: the state machine, its table of which command is legal
//!   in which state, and the selected-mailbox snapshot
//!   (`session/selected.rs`).
//! - [`cmd`]: one handler per command.
//! - [`names`]: mailbox names (UTF-8 / modified UTF-7, validation, LIST
//!   patterns).
//! - [`conn`]: [`serve_connection`]: framing, literals, IDLE, timeouts,
//!   and stream upgrades ([`compress`] for COMPRESS=DEFLATE).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cmd;
pub mod compress;
pub mod conn;
pub mod names;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::Authenticator;
use mailgate_imap_proto::Limits;
use mailgate_store::Store;
pub use mailgate_tls::TlsMode;
use tokio::sync::watch;

pub use conn::serve_connection;
pub use session::{Flow, Session, Upgrade};

/// RFC 9051 §5.4: "If a server has an inactivity autologout timer that
/// applies to sessions after authentication, the duration of that timer
/// MUST be at least 30 minutes."
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Before login a silent client is dropped sooner.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// After this many BAD answers in a row the session is closed: a client
/// that gets nothing right is broken or probing.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 20;

/// The SASL mechanisms offered by AUTHENTICATE.
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "LOGIN"];

/// What every IMAP session of the process shares.
pub struct ImapContext {
    /// The name given in the greeting.
    pub hostname: String,
    /// The mail store.
    pub store: Arc<dyn Store>,
    /// Verifies passwords (and slows down failures).
    pub auth: Arc<Authenticator>,
    /// How long to wait for a command after login (and in IDLE).
    pub idle_timeout: Duration,
    /// How long to wait for a command before login.
    pub login_timeout: Duration,
    /// Framing limits; `max_append` is also announced as APPENDLIMIT.
    pub limits: Limits,
    /// Becomes `true` when the server stops: sessions say BYE.
    pub shutdown: watch::Receiver<bool>,
    /// STARTTLS (RFC 9051 §6.2.1), implicit TLS (IMAPS, RFC 8314) or
    /// none.
    pub tls: TlsMode,
}

impl ImapContext {
    /// A context with default limits and timeouts.
    pub fn new(
        hostname: impl Into<String>,
        store: Arc<dyn Store>,
        auth: Arc<Authenticator>,
        shutdown: watch::Receiver<bool>,
    ) -> ImapContext {
        ImapContext {
            hostname: hostname.into(),
            store,
            auth,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            limits: Limits::default(),
            shutdown,
            tls: TlsMode::None,
        }
    }

    /// The capabilities announced (RFC 9051 §7.2.2), before or after
    /// login. `passwords_ok`: the clear-text policy lets this connection
    /// send a password ([`Authenticator::plaintext_permitted`]); if not,
    /// RFC 9051 §7.2.2 LOGINDISABLED is announced and no AUTH=PLAIN.
    /// `starttls`: the connection is not under TLS yet and the listener
    /// offers STARTTLS (never announced again once TLS is on, RFC 9051
    /// §6.2.1).
    pub fn capabilities(
        &self,
        authenticated: bool,
        passwords_ok: bool,
        starttls: bool,
    ) -> Vec<String> {
        let mut caps: Vec<String> = [
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        if starttls && !authenticated {
            caps.push("STARTTLS".into());
        }
        if !(authenticated || passwords_ok) {
            caps.push("LOGINDISABLED".into());
        }
        for m in SASL_MECHANISMS
            .iter()
            .filter(|_| authenticated || passwords_ok)
        {
            caps.push(format!("AUTH={m}"));
        }
        if authenticated {
            caps.extend(
                [
                    "IDLE",
                    "NAMESPACE",
                    "UNSELECT",
                    "UIDPLUS",
                    "MOVE",
                    "CONDSTORE",
                    "QRESYNC",
                    "ESEARCH",
                    "SORT",
                    "SORT=DISPLAY",
                    "THREAD=ORDEREDSUBJECT",
                    "THREAD=REFERENCES",
                    "SPECIAL-USE",
                    "CREATE-SPECIAL-USE",
                    "LIST-EXTENDED",
                    "LIST-STATUS",
                    "STATUS=SIZE",
                    "BINARY",
                    "MULTIAPPEND",
                    "UTF8=ACCEPT",
                    "COMPRESS=DEFLATE",
                    "QUOTA",
                    "QUOTA=RES-STORAGE",
                ]
                .iter()
                .map(|c| c.to_string()),
            );
            caps.push(format!("APPENDLIMIT={}", self.limits.max_append));
        }
        caps
    }
}
