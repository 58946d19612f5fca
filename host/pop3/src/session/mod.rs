//! The POP3 session: a state machine fed one line at a time.
//!
//! RFC 1939 §3: "Once the TCP connection has been opened and the POP3
//! server has sent the greeting, the session enters the AUTHORIZATION
//! state. [...] the session enters the TRANSACTION state. [...] When the
//! client has issued the QUIT command, the session enters the UPDATE
//! state." Each state accepts its own commands ([`legal_in`]); anything
//! else gets `-ERR`.
//!
//! The session writes its answers into a buffer and never touches a
//! socket, so it can be driven by [`crate::serve_connection`] or by a test.

mod auth;
mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_pop3_proto::response::{write_err, write_ok};
use mailgate_pop3_proto::{parse_command, Command, Frame, ParseError, ResponseCode, Verb};

use crate::maildrop::Maildrop;
use crate::{Pop3Context, MAX_CONSECUTIVE_ERRORS};

/// What the caller should do after a line was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Send the answer and read the next line.
    Continue,
    /// Send the answer and close the connection.
    Close,
    /// Send the answer (`+OK Begin TLS negotiation`), throw away anything
    /// else the client sent, run the TLS handshake, then call
    /// [`Session::tls_started`].
    StartTls,
}

/// The states of RFC 1939 §3 (UPDATE is passed through inside QUIT).
#[derive(Debug)]
enum State {
    /// Not logged in; `user` is the name given by USER, if any.
    Authorization { user: Option<String> },
    /// AUTH sent a `+` challenge and waits for the client's answer.
    Sasl(Box<mailgate_auth::sasl::SaslExchange>),
    /// Logged in, maildrop open and locked.
    Transaction(Box<Maildrop>),
    /// QUIT was handled; nothing more is accepted.
    Done,
}

/// Which states accept which commands (RFC 1939 §4-§7, RFC 2449 §5 CAPA
/// "in both the AUTHORIZATION and TRANSACTION states", RFC 5034 AUTH and
/// RFC 2595 STLS in AUTHORIZATION only).
const AUTHORIZATION_COMMANDS: &[Verb] = &[
    Verb::User,
    Verb::Pass,
    Verb::Apop,
    Verb::Auth,
    Verb::Stls,
    Verb::Capa,
    Verb::Quit,
];
const TRANSACTION_COMMANDS: &[Verb] = &[
    Verb::Stat,
    Verb::List,
    Verb::Retr,
    Verb::Dele,
    Verb::Noop,
    Verb::Rset,
    Verb::Top,
    Verb::Uidl,
    Verb::Capa,
    Verb::Quit,
];

/// Whether `verb` is legal in the AUTHORIZATION state (`false`) or the
/// TRANSACTION state (`true`).
pub fn legal_in(transaction: bool, verb: Verb) -> bool {
    let table = if transaction {
        TRANSACTION_COMMANDS
    } else {
        AUTHORIZATION_COMMANDS
    };
    table.contains(&verb)
}

/// One client's POP3 session.
pub struct Session {
    ctx: Arc<Pop3Context>,
    peer: SocketAddr,
    state: State,
    /// `-ERR` answers in a row.
    errors: u32,
    /// Set when the session must end after this answer.
    closing: bool,
    /// The logged-in address, for the logs.
    user: Option<String>,
    /// Messages sent whole by RETR.
    retrieved: u32,
    /// Messages removed at QUIT.
    deleted: u32,
    /// Why the session ended, for the log written on drop.
    end_reason: &'static str,
    /// Whether the connection is under TLS.
    tls: bool,
    /// STLS was accepted: the caller runs the handshake next.
    stls: bool,
}

impl Session {
    /// A new session in the AUTHORIZATION state.
    pub fn new(ctx: Arc<Pop3Context>, peer: SocketAddr) -> Session {
        Session {
            ctx,
            peer,
            state: State::Authorization { user: None },
            errors: 0,
            closing: false,
            user: None,
            retrieved: 0,
            deleted: 0,
            end_reason: "connection dropped",
            tls: false,
            stls: false,
        }
    }

    /// A new session on a connection under TLS from the start (POP3S).
    pub fn new_tls(ctx: Arc<Pop3Context>, peer: SocketAddr) -> Session {
        let mut s = Session::new(ctx, peer);
        s.tls = true;
        s
    }

    /// The TLS handshake after STLS succeeded. RFC 2595 §4: "the client
    /// MUST discard cached information about server capabilities"; the
    /// server forgets the USER name given in clear, if any.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.stls = false;
        self.state = State::Authorization { user: None };
    }

    /// Whether the session is under TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether a password may be sent on this connection now.
    fn password_permitted(&self) -> bool {
        self.ctx.auth.plaintext_permitted(self.tls, self.peer.ip())
    }

    /// Whether STLS can be offered now.
    fn stls_available(&self) -> bool {
        !self.tls && self.ctx.tls.starttls().is_some()
    }

    /// The capabilities listed by CAPA (RFC 2449 §6), one per line: STLS
    /// before TLS where offered (RFC 2595 §4), USER and SASL only where a
    /// password may be sent.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        if self.stls_available() {
            caps.push("STLS".to_string());
        }
        if self.password_permitted() {
            caps.push("USER".to_string());
            caps.push(format!("SASL {}", mailgate_auth::sasl::Mechanism::names()));
        }
        caps.push("IMPLEMENTATION mailgate".to_string());
        caps
    }

    /// Writes the greeting (RFC 1939 §4). No APOP timestamp: APOP is not
    /// offered.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        write_ok(out, &format!("{} POP3 mailgate ready", self.ctx.hostname));
    }

    /// Whether the session is logged in with its maildrop open.
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// Records why the session ends (logged when it is dropped).
    pub fn set_end_reason(&mut self, reason: &'static str) {
        self.end_reason = reason;
    }

    /// Why the session ends, as far as it knows (`quit`, `too many
    /// errors`, ...).
    pub fn end_reason(&self) -> &'static str {
        self.end_reason
    }

    /// Handles one frame from the client and appends the answer to `out`.
    pub async fn handle_frame(&mut self, frame: Frame, out: &mut Vec<u8>) -> Flow {
        match frame {
            Frame::TooLong => {
                if matches!(self.state, State::Sasl(_)) {
                    self.state = State::Authorization { user: None };
                }
                self.err(out, None, "Line too long");
            }
            Frame::Line(line) if matches!(self.state, State::Sasl(_)) => {
                self.sasl_response(&line, out).await;
            }
            Frame::Line(line) => match parse_command(&line) {
                Ok(command) => self.command(command, out).await,
                Err(e) => {
                    let text = match e {
                        ParseError::UnknownCommand => "Unknown command".to_string(),
                        e => e.to_string(),
                    };
                    self.err(out, None, &text);
                }
            },
        }
        if self.closing {
            Flow::Close
        } else if self.stls {
            Flow::StartTls
        } else {
            Flow::Continue
        }
    }

    async fn command(&mut self, command: Command, out: &mut Vec<u8>) {
        let transaction = match self.state {
            State::Authorization { .. } => false,
            State::Transaction(_) => true,
            State::Sasl(_) | State::Done => {
                // Not reached: SASL lines never get here and the caller
                // stops after QUIT. Answer sanely all the same.
                self.err(out, None, "Command not valid in this state");
                return;
            }
        };
        if !legal_in(transaction, command.verb()) {
            let text = if transaction {
                "Already logged in"
            } else {
                "Not logged in"
            };
            self.err(out, None, &format!("{} {text}", command.verb()));
            return;
        }
        if transaction {
            self.transaction_command(command, out).await;
        } else {
            self.authorization_command(command, out).await;
        }
    }

    /// Writes `+OK text` and resets the error count.
    fn ok(&mut self, out: &mut Vec<u8>, text: &str) {
        self.errors = 0;
        write_ok(out, text);
    }

    /// Writes `-ERR`, or ends the session once the client has erred
    /// [`MAX_CONSECUTIVE_ERRORS`] times in a row.
    fn err(&mut self, out: &mut Vec<u8>, code: Option<ResponseCode>, text: &str) {
        self.errors += 1;
        if self.errors >= MAX_CONSECUTIVE_ERRORS {
            write_err(out, None, "Too many errors, closing connection");
            self.end_reason = "too many errors";
            self.closing = true;
        } else {
            write_err(out, code, text);
        }
    }

    /// Writes the sign-off and ends the session.
    fn sign_off(&mut self, out: &mut Vec<u8>, text: &str) {
        self.ok(
            out,
            &format!("{} POP3 mailgate signing off{text}", self.ctx.hostname),
        );
        self.state = State::Done;
        self.end_reason = "quit";
        self.closing = true;
    }
}

impl Drop for Session {
    // Logged on drop so that every ending is logged, a cancelled task's too.
    fn drop(&mut self) {
        tracing::info!(
            client = %self.peer.ip(),
            user = self.user.as_deref().unwrap_or("-"),
            retrieved = self.retrieved,
            deleted = self.deleted,
            reason = self.end_reason,
            "pop3 session ended"
        );
    }
}
