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
//! - A session sees the selected mailbox as a version of its message list
//!   (sequence numbers ↔ UIDs) that changes only at the moments RFC 9051
//!   §7.5.1 allows: no EXPUNGE is sent during FETCH, STORE or SEARCH by
//!   sequence number; new mail and flag changes by other sessions are
//!   announced after any command, and during IDLE as soon as the store
//!   reports them. The list itself is held once per mailbox and shared by
//!   every session that has it selected ([`view`]).
//! - Client errors are tagged `BAD` (syntax) or `NO` (refused); our own
//!   failures are `NO [SERVERBUG]` with the detail only in the log.
//!
//! # Layout
//! - [`session`]: the state machine, its table of which command is legal
//!   in which state, and what a session keeps of its selected mailbox
//!   (`session/selected.rs`).
//! - [`view`]: the mailbox views shared by sessions: versions of a message
//!   list, their MODSEQ deltas and differences.
//! - [`cmd`]: one handler per command.
//! - [`names`]: mailbox names (UTF-8 / modified UTF-7, validation, LIST
//!   patterns).
//! - [`conn`]: [`serve_connection`]: framing, literals, IDLE, timeouts
//!   (`clock.rs`: idle, command and transfer-rate clocks), and stream
//!   upgrades ([`compress`] for COMPRESS=DEFLATE).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
pub mod cmd;
pub mod compress;
pub mod conn;
pub mod mailbox_events;
pub mod names;
pub mod session;
pub mod view;

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

/// How long one command may take to arrive, from its first byte to its
/// last, APPEND message literals not counted (`[limits] command_timeout`).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Slowest accepted APPEND message literal, in bytes per second
/// (`[limits] min_transfer_rate`); 0 turns the check off.
pub const DEFAULT_MIN_TRANSFER_RATE: u64 = 1024;

/// The transfer rate of an APPEND literal is checked only once this long
/// has passed since its first byte was expected, and then averaged over
/// the whole time.
pub const TRANSFER_GRACE: Duration = Duration::from_secs(30);

/// The framing limits before login: a command may hold 4 KiB of text
/// (LOGIN with its strings, or an AUTHENTICATE line with its initial
/// response; each SASL response line is a command of its own) and 4 KiB
/// of literals, 8 KiB in all; APPEND is not possible yet, so it gets no
/// literal at all. An unauthenticated client can make the server hold no
/// more than this per connection.
pub const LOGIN_LIMITS: Limits = Limits {
    max_line: 4 * 1024,
    max_literal: 4 * 1024,
    max_append: 0,
};

/// The framing limits after login for commands other than APPEND: 64 KiB
/// of text (long UID sets) and 64 KiB of literals. APPEND literals get
/// `[limits] max_message_size` each (set by the caller in
/// [`ImapContext::limits`]).
pub const COMMAND_LIMITS: Limits = Limits {
    max_line: 64 * 1024,
    max_literal: 64 * 1024,
    max_append: 50 * 1024 * 1024,
};

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
    /// Framing limits after login; `max_append` is also announced as
    /// APPENDLIMIT.
    pub limits: Limits,
    /// Framing limits before login.
    pub login_limits: Limits,
    /// How long one command may take to arrive (its lines and small
    /// literals; APPEND messages are bound by `min_transfer_rate`); zero:
    /// no limit.
    pub command_timeout: Duration,
    /// Slowest accepted APPEND message literal in bytes per second,
    /// averaged once [`ImapContext::transfer_grace`] has passed; 0: off.
    pub min_transfer_rate: u64,
    /// See [`TRANSFER_GRACE`].
    pub transfer_grace: Duration,
    /// Becomes `true` when the server stops: sessions say BYE.
    pub shutdown: watch::Receiver<bool>,
    /// STARTTLS (RFC 9051 §6.2.1), implicit TLS (IMAPS, RFC 8314) or
    /// none.
    pub tls: TlsMode,
    /// The shared views of the selected mailboxes ([`view`]); one
    /// registry for every listener of a server, so that a mailbox is held
    /// once whether its sessions came in on 143 or 993.
    pub views: Arc<view::MailboxViews>,
    /// Where messages filed into or out of Junk are reported (the
    /// `mailbox-event` plugin hook); none: nowhere.
    pub mailbox_events: Option<Arc<dyn mailbox_events::MailboxEvents>>,
    /// The per-account quota locks APPEND, COPY and MOVE hold from their
    /// quota check until the messages are stored: the server's deliveries
    /// hold the same ones (`mailgate_delivery::LocalDelivery::quota_locks`),
    /// so a delivery and an APPEND cannot both take an account's last
    /// bytes.
    pub quota_locks: Arc<mailgate_store::quota::QuotaLocks>,
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
            limits: COMMAND_LIMITS,
            login_limits: LOGIN_LIMITS,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            min_transfer_rate: DEFAULT_MIN_TRANSFER_RATE,
            transfer_grace: TRANSFER_GRACE,
            shutdown,
            tls: TlsMode::None,
            views: Arc::new(view::MailboxViews::new()),
            mailbox_events: None,
            quota_locks: Arc::default(),
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
