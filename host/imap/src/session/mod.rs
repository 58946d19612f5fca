//! The IMAP session: a state machine fed one framed command at a time.
//!
//! RFC 9051 §3: "Once the connection between client and server is
//! established, an IMAP connection is in one of four states. The initial
//! state is identified in the server greeting. Most commands are only
//! valid in certain states." — Not Authenticated, Authenticated, Selected
//! and Logout. Which command is legal where is one table, [`legal_in`].
//!
//! The session writes its answers into a buffer and never touches a
//! socket, so [`crate::serve_connection`] and tests drive it alike.

mod selected;

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_imap_proto::response::{write_continue, write_status, write_untagged, Status};
use mailgate_imap_proto::{parse_command, Command, CommandBody, Frame, SearchKey, SequenceSet};
use mailgate_store::{Account, StoreError, StoreEvent};
use tokio::sync::broadcast;

pub use selected::{Details, Selected};

use crate::{cmd, ImapContext, MAX_CONSECUTIVE_ERRORS};

/// What the caller should do after a frame was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Send the answer and read on.
    Continue,
    /// Send the answer and close the connection.
    Close,
}

/// The four states of RFC 9051 §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Before LOGIN / AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated,
    /// A mailbox is selected.
    Selected,
    /// LOGOUT was handled.
    Logout,
}

/// RFC 9051 §6.1 "Client Commands - Any State".
const ANY_STATE: &[&str] = &["CAPABILITY", "NOOP", "LOGOUT", "ID"];
/// RFC 9051 §6.2 "Client Commands - Not Authenticated State".
const NOT_AUTHENTICATED: &[&str] = &["STARTTLS", "AUTHENTICATE", "LOGIN"];
/// RFC 9051 §6.3 "Client Commands - Authenticated State" ("also valid in
/// the selected state"), with ENABLE (RFC 5161), IDLE (RFC 2177),
/// NAMESPACE (RFC 2342), GETQUOTA/GETQUOTAROOT (RFC 9208), LSUB
/// (RFC 3501) and COMPRESS (RFC 4978).
const AUTHENTICATED: &[&str] = &[
    "ENABLE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "STATUS",
    "APPEND",
    "IDLE",
    "GETQUOTA",
    "GETQUOTAROOT",
    "COMPRESS",
];
/// RFC 9051 §6.4 "Client Commands - Selected State", with CHECK
/// (RFC 3501), UNSELECT (RFC 3691), MOVE (RFC 6851), SORT and THREAD
/// (RFC 5256).
const SELECTED: &[&str] = &[
    "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "SORT",
    "THREAD",
];

/// Whether the command named `name` is legal in `state`.
pub fn legal_in(state: StateKind, name: &str) -> bool {
    let table: &[&[&str]] = match state {
        StateKind::NotAuthenticated => &[ANY_STATE, NOT_AUTHENTICATED],
        StateKind::Authenticated => &[ANY_STATE, AUTHENTICATED],
        StateKind::Selected => &[ANY_STATE, AUTHENTICATED, SELECTED],
        StateKind::Logout => &[],
    };
    table.iter().any(|t| t.contains(&name))
}

/// Why a command failed; becomes its tagged response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// The command is malformed or not allowed now: `BAD`.
    #[error("{0}")]
    Bad(String),
    /// The command is refused: `NO [code] text`.
    #[error("{1}")]
    No(Option<String>, String),
    /// Our fault: `NO [SERVERBUG]`; the detail goes to the log only.
    #[error("server error: {0}")]
    Server(String),
}

impl CmdError {
    /// `NO` with a response code.
    pub fn no(code: &str, text: impl Into<String>) -> CmdError {
        CmdError::No(Some(code.into()), text.into())
    }
}

impl From<StoreError> for CmdError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists(what) => {
                CmdError::no("ALREADYEXISTS", format!("{what} already exists"))
            }
            StoreError::NotFound(what) => {
                CmdError::no("NONEXISTENT", format!("{what} does not exist"))
            }
            StoreError::Invalid(what) => CmdError::no("CANNOT", what),
            // A full disk is temporary and not a bug: Dovecot's answer
            // (MAIL_ERROR_NOSPACE) word for word (docs/operations.md).
            StoreError::NoSpace => CmdError::no("OVERQUOTA", "Not enough disk space"),
            other => CmdError::Server(other.to_string()),
        }
    }
}

/// How a command completed successfully: `OK [code] text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// Response code, e.g. `READ-WRITE` or `APPENDUID 1 2`.
    pub code: Option<String>,
    /// Text.
    pub text: String,
}

impl Done {
    /// `OK text`.
    pub fn ok(text: impl Into<String>) -> Done {
        Done {
            code: None,
            text: text.into(),
        }
    }
    /// `OK [code] text`.
    pub fn with_code(code: impl Into<String>, text: impl Into<String>) -> Done {
        Done {
            code: Some(code.into()),
            text: text.into(),
        }
    }
}

/// The result of a command handler.
pub type CmdResult = Result<Done, CmdError>;

/// A change of the stream the loop must make right after sending the
/// answers written so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Start DEFLATE in both directions (RFC 4978).
    Deflate,
    /// Run the TLS handshake (RFC 9051 §6.2.1). Whatever the client sent
    /// after the STARTTLS line was sent in clear and is discarded unread.
    StartTls,
}

/// What is going on besides ordinary commands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Nothing: the next frame is a command.
    None,
    /// AUTHENTICATE sent `+`; the next line is the client's response.
    /// Holds the tag and the exchange under way.
    Sasl(String, mailgate_auth::sasl::SaslExchange),
    /// IDLE sent `+ idling`; the next line must be DONE. Holds the tag.
    Idle(String),
}

/// One client's IMAP session.
pub struct Session {
    pub(crate) ctx: Arc<ImapContext>,
    pub(crate) peer: SocketAddr,
    pub(crate) state: StateKind,
    pub(crate) account: Option<Account>,
    pub(crate) selected: Option<Box<Selected>>,
    /// IMAP4rev2 enabled (RFC 9051 §6.3.1).
    pub(crate) rev2: bool,
    /// UTF-8 mailbox names and strings (rev2 or UTF8=ACCEPT).
    pub(crate) utf8: bool,
    /// CONDSTORE enabled (by ENABLE, SELECT (CONDSTORE), or a command
    /// using MODSEQ).
    pub(crate) condstore: bool,
    /// QRESYNC enabled.
    pub(crate) qresync: bool,
    /// The store's change notifications, from login on.
    pub(crate) events: Option<broadcast::Receiver<StoreEvent>>,
    /// The connection is under TLS (after STARTTLS, or from the start on
    /// an implicit-TLS listener).
    pub(crate) tls: bool,
    /// A stream change asked for by the last command.
    pub(crate) upgrade: Option<Upgrade>,
    /// COMPRESS is active (RFC 4978 §3: only once per connection).
    pub(crate) compressed: bool,
    /// The tag of the command being handled (ESEARCH quotes it).
    pub(crate) tag: String,
    pending: Pending,
    /// A FETCH whose answer is being written in parts: its tag and job.
    fetching: Option<(String, cmd::fetch::FetchJob)>,
    /// RFC 5182 `$`: the result of the last `SEARCH RETURN (SAVE)`, as
    /// UIDs (so it survives expunges; gone ones are skipped).
    pub(crate) saved: Vec<mailgate_store::Uid>,
    errors: u32,
    closing: bool,
    end_reason: &'static str,
}

impl Session {
    /// A new session in the Not Authenticated state.
    pub fn new(ctx: Arc<ImapContext>, peer: SocketAddr) -> Session {
        Session {
            ctx,
            peer,
            state: StateKind::NotAuthenticated,
            account: None,
            selected: None,
            rev2: false,
            utf8: false,
            condstore: false,
            qresync: false,
            events: None,
            tls: false,
            upgrade: None,
            compressed: false,
            tag: String::new(),
            pending: Pending::None,
            fetching: None,
            saved: Vec::new(),
            errors: 0,
            closing: false,
            end_reason: "connection dropped",
        }
    }

    /// Writes the greeting (RFC 9051 §7.1.1), with the capabilities so
    /// that clients need not ask.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        let caps = self.capabilities().join(" ");
        write_status(
            out,
            None,
            Status::Ok,
            Some(&format!("CAPABILITY {caps}")),
            &format!("{} IMAP mailgate ready", self.ctx.hostname),
        );
    }

    /// The capabilities for this connection in its current state.
    pub fn capabilities(&self) -> Vec<String> {
        let authenticated = self.state != StateKind::NotAuthenticated;
        let starttls = !self.tls && self.ctx.tls.starttls().is_some();
        self.ctx
            .capabilities(authenticated, self.passwords_ok(), starttls)
    }

    /// Whether the connection is under TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Records that the connection is now under TLS (implicit TLS, or a
    /// STARTTLS handshake that succeeded): passwords become acceptable
    /// and STARTTLS is no longer offered.
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    /// Whether this connection may send a password (TLS, or the
    /// clear-text policy allows it for this client).
    pub fn passwords_ok(&self) -> bool {
        self.ctx.auth.plaintext_permitted(self.tls, self.peer.ip())
    }

    /// The current state.
    pub fn state(&self) -> StateKind {
        self.state
    }

    /// The framing limits for the next command: small before login
    /// ([`crate::LOGIN_LIMITS`]), larger after.
    pub fn frame_limits(&self) -> mailgate_imap_proto::Limits {
        if self.state == StateKind::NotAuthenticated {
            self.ctx.login_limits
        } else {
            self.ctx.limits
        }
    }

    /// Whether the session is in IDLE (the loop then also waits for store
    /// events).
    pub fn is_idling(&self) -> bool {
        matches!(self.pending, Pending::Idle(_))
    }

    /// Whether the last command's answer is not complete: write what is
    /// pending, then call [`Session::resume`].
    pub fn has_more_output(&self) -> bool {
        self.fetching.is_some()
    }

    /// Writes the next part of an answer made in parts (a large FETCH);
    /// the tagged response comes with the last part.
    pub async fn resume(&mut self, out: &mut Vec<u8>) -> Flow {
        if let Some((tag, mut job)) = self.fetching.take() {
            match job.step(self, out).await {
                Ok(None) => self.fetching = Some((tag, job)),
                Ok(Some(done)) => self.complete(out, &tag, job.uid, Ok(done)).await,
                Err(e) => self.complete(out, &tag, job.uid, Err(e)).await,
            }
        }
        if self.closing {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// The stream change to make once the answers so far are sent, if
    /// any (taken: asked once).
    pub fn take_upgrade(&mut self) -> Option<Upgrade> {
        self.upgrade.take()
    }

    /// Why the session ends, as far as it knows.
    pub fn end_reason(&self) -> &'static str {
        self.end_reason
    }

    /// Records why the session ends (logged when it is dropped).
    pub fn set_end_reason(&mut self, reason: &'static str) {
        self.end_reason = reason;
    }

    /// Handles one frame and appends the answer to `out`.
    pub async fn handle_frame(&mut self, frame: Frame, out: &mut Vec<u8>) -> Flow {
        match frame {
            Frame::Continue => write_continue(out, "Ready for literal data"),
            Frame::TooBig { tag, sync } => {
                // RFC 7888 §4: a refused literal gets [TOOBIG]; a
                // synchronizing one was never sent, so NO suffices.
                let status = if sync { Status::No } else { Status::Bad };
                self.fail(
                    out,
                    tag.as_deref(),
                    status,
                    Some("TOOBIG"),
                    "Literal too large",
                );
            }
            Frame::LineTooLong { tag } => {
                self.fail(
                    out,
                    tag.as_deref(),
                    Status::Bad,
                    None,
                    "Command line too long",
                );
            }
            Frame::Command(line) => match std::mem::replace(&mut self.pending, Pending::None) {
                Pending::Sasl(tag, exchange) => {
                    match cmd::auth::sasl_response(self, exchange, &line, out).await {
                        Ok(cmd::auth::Progress::Continue(exchange)) => {
                            self.pending = Pending::Sasl(tag, exchange);
                        }
                        Ok(cmd::auth::Progress::Done(done)) => self.finish(out, &tag, Ok(done)),
                        Err(e) => self.finish(out, &tag, Err(e)),
                    }
                }
                Pending::Idle(tag) => {
                    if line.eq_ignore_ascii_case(b"DONE") {
                        self.sync(out, true).await;
                        self.finish(out, &tag, Ok(Done::ok("IDLE terminated")));
                    } else {
                        self.finish(out, &tag, Err(CmdError::Bad("Expected DONE".into())));
                    }
                }
                Pending::None => match parse_command(&line) {
                    Ok(command) => {
                        // The parsed command holds its own copy of the
                        // literals (an APPEND's messages): the frame goes
                        // now, so a message is held once while it is stored.
                        drop(line);
                        self.command(command, out).await
                    }
                    Err(e) => {
                        let tag = e.tag.as_deref();
                        let (code, text) = split_code(&e.message);
                        self.fail(
                            out,
                            tag,
                            Status::Bad,
                            code,
                            &format!("Error in IMAP command: {text}"),
                        );
                    }
                },
            },
        }
        if self.closing {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    async fn command(&mut self, command: Command, out: &mut Vec<u8>) {
        let Command { tag, body } = command;
        self.tag.clone_from(&tag);
        let name = body.name();
        if !legal_in(self.state, name) {
            let text = match self.state {
                StateKind::NotAuthenticated => format!("{name} needs authentication first"),
                StateKind::Authenticated if SELECTED.contains(&name) => {
                    format!("{name} needs a selected mailbox")
                }
                _ => format!("{name} is not allowed now"),
            };
            self.finish(out, &tag, Err(CmdError::Bad(text)));
            return;
        }
        // RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE or
        // SEARCH by sequence number (the client's numbers would shift).
        let allow_expunge = match &body {
            CommandBody::Fetch { uid, .. }
            | CommandBody::Store { uid, .. }
            | CommandBody::Search { uid, .. }
            | CommandBody::Sort { uid, .. }
            | CommandBody::Thread { uid, .. } => *uid,
            _ => true,
        };
        // RFC 5182 §2.1: `$` is empty again after SELECT, EXAMINE and
        // CLOSE/UNSELECT (a new mailbox, or none).
        if matches!(
            body,
            CommandBody::Select { .. } | CommandBody::Close | CommandBody::Unselect
        ) {
            self.saved.clear();
        }
        let body = self.with_saved(body);
        let result = match body {
            CommandBody::Idle => match cmd::misc::idle(self, out).await {
                Ok(()) => {
                    self.pending = Pending::Idle(tag);
                    return;
                }
                Err(e) => Err(e),
            },
            CommandBody::Authenticate { mechanism, initial } => {
                match cmd::auth::authenticate(self, &mechanism, initial.as_deref(), out).await {
                    Ok(cmd::auth::Progress::Continue(exchange)) => {
                        self.pending = Pending::Sasl(tag, exchange);
                        return;
                    }
                    Ok(cmd::auth::Progress::Done(done)) => Ok(done),
                    Err(e) => Err(e),
                }
            }
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                match cmd::fetch::start(self, uid, &set, items, changed_since, vanished, out).await
                {
                    Ok(job) => {
                        self.fetching = Some((tag, job));
                        self.resume(out).await;
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            body => cmd::dispatch(self, body, out).await,
        };
        self.complete(out, &tag, allow_expunge, result).await;
    }

    /// Announces changes (in the selected state) and writes the tagged
    /// response.
    async fn complete(
        &mut self,
        out: &mut Vec<u8>,
        tag: &str,
        allow_expunge: bool,
        result: CmdResult,
    ) {
        if self.state == StateKind::Selected && !self.closing {
            self.sync(out, allow_expunge).await;
        }
        self.finish(out, tag, result);
    }

    /// The saved search result (RFC 5182 `$`) as a concrete set: UIDs
    /// for a UID command, else the current sequence numbers. Messages
    /// expunged since are left out (§2.1: "the server MUST
    /// automatically remove ... expunged messages").
    fn saved_set(&self, uid: bool) -> SequenceSet {
        let Some(sel) = self.selected.as_ref() else {
            return SequenceSet::from_numbers([]);
        };
        let present = self
            .saved
            .iter()
            .filter_map(|&u| sel.index_of(u).map(|i| (u, i)));
        if uid {
            SequenceSet::from_numbers(present.map(|(u, _)| u.get()))
        } else {
            SequenceSet::from_numbers(present.map(|(_, i)| i as u32 + 1))
        }
    }

    /// Replaces every `$` of a command by [`Session::saved_set`].
    fn with_saved(&self, body: CommandBody) -> CommandBody {
        let set = |set: SequenceSet, uid: bool| {
            if set.is_saved() {
                self.saved_set(uid)
            } else {
                set
            }
        };
        match body {
            CommandBody::Fetch {
                uid,
                set: s,
                items,
                changed_since,
                vanished,
            } => CommandBody::Fetch {
                uid,
                set: set(s, uid),
                items,
                changed_since,
                vanished,
            },
            CommandBody::Store {
                uid,
                set: s,
                unchanged_since,
                mode,
                silent,
                flags,
            } => CommandBody::Store {
                uid,
                set: set(s, uid),
                unchanged_since,
                mode,
                silent,
                flags,
            },
            CommandBody::Copy {
                uid,
                set: s,
                mailbox,
            } => CommandBody::Copy {
                uid,
                set: set(s, uid),
                mailbox,
            },
            CommandBody::Move {
                uid,
                set: s,
                mailbox,
            } => CommandBody::Move {
                uid,
                set: set(s, uid),
                mailbox,
            },
            CommandBody::Expunge { uids: Some(s) } => CommandBody::Expunge {
                uids: Some(set(s, true)),
            },
            CommandBody::Search { uid, ret, key } => CommandBody::Search {
                uid,
                ret,
                key: self.key_with_saved(key),
            },
            CommandBody::Sort { uid, criteria, key } => CommandBody::Sort {
                uid,
                criteria,
                key: self.key_with_saved(key),
            },
            CommandBody::Thread {
                uid,
                algorithm,
                key,
            } => CommandBody::Thread {
                uid,
                algorithm,
                key: self.key_with_saved(key),
            },
            body => body,
        }
    }

    fn key_with_saved(&self, key: SearchKey) -> SearchKey {
        match key {
            SearchKey::Seq(s) if s.is_saved() => SearchKey::Seq(self.saved_set(false)),
            SearchKey::Uid(s) if s.is_saved() => SearchKey::Uid(self.saved_set(true)),
            SearchKey::And(keys) => {
                SearchKey::And(keys.into_iter().map(|k| self.key_with_saved(k)).collect())
            }
            SearchKey::Not(k) => SearchKey::Not(Box::new(self.key_with_saved(*k))),
            SearchKey::Or(a, b) => SearchKey::Or(
                Box::new(self.key_with_saved(*a)),
                Box::new(self.key_with_saved(*b)),
            ),
            key => key,
        }
    }

    /// Announces what changed in the selected mailbox (new messages, flag
    /// changes, and expunges if `allow_expunge`).
    pub(crate) async fn sync(&mut self, out: &mut Vec<u8>, allow_expunge: bool) {
        self.drain_events();
        let (condstore, qresync) = (self.condstore, self.qresync);
        let store = Arc::clone(&self.ctx.store);
        if let Some(sel) = self.selected.as_mut() {
            if let Err(e) = sel
                .sync(store.as_ref(), allow_expunge, condstore, qresync, out)
                .await
            {
                tracing::error!(error = %e, "imap: cannot update the selected mailbox");
            }
        }
    }

    /// Tells the selected mailbox's view of each event about it.
    pub(crate) fn drain_events(&mut self) {
        let Some(rx) = self.events.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        let mut lagged = false;
        loop {
            match rx.try_recv() {
                Ok(ev) => events.push(ev),
                Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        if lagged {
            if let Some(sel) = self.selected.as_ref() {
                sel.view.mark_dirty();
            }
        }
        for ev in &events {
            self.note_event(ev);
        }
    }

    /// Tells the view of an event about the selected mailbox; whether it
    /// was one.
    fn note_event(&self, ev: &StoreEvent) -> bool {
        let Some(sel) = self.selected.as_ref() else {
            return false;
        };
        match ev {
            StoreEvent::Appended { mailbox, uids, .. } if *mailbox == sel.id => {
                sel.view.note_appended(uids)
            }
            StoreEvent::Expunged { mailbox, uids, .. } if *mailbox == sel.id => {
                sel.view.note_expunged(uids)
            }
            StoreEvent::FlagsChanged { mailbox, .. } if *mailbox == sel.id => sel.view.mark_dirty(),
            _ => return false,
        }
        true
    }

    /// Waits until the store reports a change to the selected mailbox
    /// (used while idling). Never returns without a selected mailbox.
    pub async fn changed(&mut self) {
        loop {
            let (Some(rx), Some(_)) = (self.events.as_mut(), self.selected.as_ref()) else {
                return std::future::pending().await;
            };
            match rx.recv().await {
                Ok(ev) => {
                    if self.note_event(&ev) {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(sel) = self.selected.as_ref() {
                        sel.view.mark_dirty();
                    }
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// During IDLE: writes what changed (RFC 2177: "the server may send
    /// untagged EXISTS, EXPUNGE, and other messages at any time").
    pub async fn idle_update(&mut self, out: &mut Vec<u8>) {
        self.sync(out, true).await;
    }

    /// Writes the tagged response of a command.
    fn finish(&mut self, out: &mut Vec<u8>, tag: &str, result: CmdResult) {
        match result {
            Ok(done) => {
                self.errors = 0;
                write_status(out, Some(tag), Status::Ok, done.code.as_deref(), &done.text);
            }
            Err(CmdError::Bad(text)) => {
                let (code, text) = split_code(&text);
                self.fail(out, Some(tag), Status::Bad, code, text);
            }
            Err(CmdError::No(code, text)) => {
                self.fail(out, Some(tag), Status::No, code.as_deref(), &text);
            }
            Err(CmdError::Server(detail)) => {
                tracing::error!(client = %self.peer.ip(), error = %detail, "imap: command failed");
                self.fail(
                    out,
                    Some(tag),
                    Status::No,
                    Some("SERVERBUG"),
                    "Internal error, try again later",
                );
            }
        }
    }

    /// Writes a failure, or ends the session after too many in a row.
    fn fail(
        &mut self,
        out: &mut Vec<u8>,
        tag: Option<&str>,
        status: Status,
        code: Option<&str>,
        text: &str,
    ) {
        // Only BAD counts: a NO is a normal answer (a missing mailbox, a
        // failed login, which the authenticator slows down itself).
        if status == Status::Bad {
            self.errors += 1;
        }
        write_status(out, tag, status, code, text);
        if self.errors >= MAX_CONSECUTIVE_ERRORS {
            write_untagged(out, "BYE Too many errors, closing connection");
            self.end_reason = "too many errors";
            self.closing = true;
        }
    }

    /// Ends the session after this answer (LOGOUT).
    pub(crate) fn close(&mut self, reason: &'static str) {
        self.state = StateKind::Logout;
        self.selected = None;
        self.end_reason = reason;
        self.closing = true;
    }
}

/// Splits a leading `[CODE]` off an error text.
fn split_code(text: &str) -> (Option<&str>, &str) {
    if let Some(rest) = text.strip_prefix('[') {
        if let Some((code, text)) = rest.split_once("] ") {
            return (Some(code), text);
        }
    }
    (None, text)
}

impl Drop for Session {
    // Logged on drop so that every ending is logged, a cancelled task's too.
    fn drop(&mut self) {
        tracing::info!(
            client = %self.peer.ip(),
            user = self.account.as_ref().map(|a| a.address.as_str()).unwrap_or("-"),
            reason = self.end_reason,
            "imap session ended"
        );
    }
}
