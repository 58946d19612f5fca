//! One ManageSieve session: what the client sent in, replies out, no
//! sockets. The connection loop ([`crate::conn`]) gives [`Session::feed`]
//! the bytes received so far; the session takes one whole command (or SASL
//! answer) from their start, writes the reply and says how many bytes it
//! used and what the loop does next.
//!
//! States (RFC 5804 §2): not authenticated (with or without TLS), inside
//! an `AUTHENTICATE` exchange, authenticated. Which command is legal in
//! which is the protocol crate's table, `state::check`.

mod auth;
mod scripts;

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_auth::sasl::SaslExchange;
use mailgate_managesieve_proto::response::{self, Capabilities, Code, Status};
use mailgate_managesieve_proto::state::{self, State};
use mailgate_managesieve_proto::{parse_command, Command, ParseError};
use mailgate_store::Account;

use crate::{ManageSieveContext, MAX_COMMANDS, MAX_CONSECUTIVE_ERRORS};

/// What the connection loop does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Write what is pending and close.
    Close,
    /// `STARTTLS` was answered `OK`: write it, drop what is buffered, run
    /// the handshake, then call [`Session::tls_started`].
    StartTls,
}

/// Where the session is.
enum Phase {
    /// Before a successful `AUTHENTICATE`.
    Anonymous,
    /// `AUTHENTICATE` sent a challenge and waits for the client's answer.
    Sasl(Box<SaslExchange>),
    /// Logged in.
    Authenticated(Account),
}

/// One client's session.
pub struct Session {
    ctx: Arc<ManageSieveContext>,
    peer: SocketAddr,
    tls: bool,
    phase: Phase,
    /// `NO` answers in a row to commands the client got wrong.
    errors: u32,
    /// Failed logins in this session.
    auth_failures: u32,
    /// Commands so far.
    commands: u64,
    /// Why the session ended, for the log.
    end_reason: &'static str,
}

impl Session {
    /// A new session on a plain connection.
    pub fn new(ctx: Arc<ManageSieveContext>, peer: SocketAddr) -> Session {
        Session {
            ctx,
            peer,
            tls: false,
            phase: Phase::Anonymous,
            errors: 0,
            auth_failures: 0,
            commands: 0,
            end_reason: "connection closed",
        }
    }

    /// RFC 5804 §1.7: the server greets with its capabilities and `OK`.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&response::capabilities(&self.capabilities()));
    }

    /// The handshake after `STARTTLS` succeeded. RFC 5804 §2.2: "After
    /// the TLS layer is established, the server MUST re-issue the
    /// capability results, followed by an OK response."
    pub fn tls_started(&mut self, out: &mut Vec<u8>) {
        self.tls = true;
        self.phase = Phase::Anonymous;
        self.greeting(out);
    }

    /// Whether the session is under TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        match &self.phase {
            Phase::Authenticated(a) => Some(&a.address),
            _ => None,
        }
    }

    /// Why the session ended (for the log).
    pub fn end_reason(&self) -> &'static str {
        self.end_reason
    }

    /// Records why the session ended, when the loop knows better.
    pub fn set_end_reason(&mut self, reason: &'static str) {
        self.end_reason = reason;
    }

    /// RFC 5804 §1.7 capabilities as they stand now: `STARTTLS` only
    /// before TLS and where a certificate is configured, the SASL
    /// mechanisms only where a password may be sent.
    pub fn capabilities(&self) -> Capabilities {
        let sasl = if self.password_permitted() {
            mailgate_auth::sasl::Mechanism::ALL
                .iter()
                .map(|m| m.name().to_string())
                .collect()
        } else {
            Vec::new()
        };
        Capabilities {
            implementation: "mailgate".to_string(),
            sieve: mailgate_sieve::extensions(&self.ctx.settings)
                .into_iter()
                .map(str::to_string)
                .collect(),
            sasl,
            starttls: !self.tls && self.ctx.tls.starttls().is_some(),
            max_redirects: Some(self.ctx.settings.max_redirects),
        }
    }

    /// Whether a password may be sent on this connection now.
    fn password_permitted(&self) -> bool {
        self.ctx.auth.plaintext_permitted(self.tls, self.peer.ip())
    }

    /// Takes the next command (or SASL answer) from the start of `buf`
    /// and answers it into `out`: `None` when more bytes are needed, else
    /// how many bytes were used and what the loop does next.
    pub async fn feed(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Option<(usize, Flow)> {
        let limits = self.ctx.limits();
        if matches!(self.phase, Phase::Sasl(_)) {
            return match mailgate_managesieve_proto::parse_sasl_response(buf, &limits) {
                Ok(None) => None,
                Ok(Some((answer, used))) => Some((used, self.sasl_answer(answer, out).await)),
                Err(e) => {
                    self.phase = Phase::Anonymous;
                    self.parse_error(e, buf, out)
                }
            };
        }
        match parse_command(buf, &limits) {
            Ok(None) => None,
            Ok(Some((cmd, used))) => Some((used, self.command(cmd, out).await)),
            Err(e) => self.parse_error(e, buf, out),
        }
    }

    /// A command the parser refused: `BYE` if the stream cannot be
    /// followed any more, else `NO` and the rest of the line skipped.
    fn parse_error(
        &mut self,
        e: ParseError,
        buf: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<(usize, Flow)> {
        if e.is_fatal() {
            self.end_reason = "command too long";
            let text = match e {
                ParseError::LiteralTooLarge => format!(
                    "Scripts are limited to {} bytes",
                    self.ctx.settings.max_script_size
                ),
                _ => e.message(),
            };
            out.extend_from_slice(&response::reply(Status::Bye, None, &text));
            return Some((buf.len(), Flow::Close));
        }
        // The rest of the line goes with the error; a line that has not
        // ended yet is waited for, up to the line limit.
        let used = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => p + 1,
            None if buf.len() >= crate::MAX_COMMAND_LINE => {
                self.end_reason = "command too long";
                out.extend_from_slice(&response::reply(Status::Bye, None, "line too long"));
                return Some((buf.len(), Flow::Close));
            }
            None => return None,
        };
        Some((used, self.client_error(None, &e.message(), out)))
    }

    /// `NO` to a command the client got wrong; `BYE` after too many.
    fn client_error(&mut self, code: Option<Code>, text: &str, out: &mut Vec<u8>) -> Flow {
        self.errors += 1;
        if self.errors >= MAX_CONSECUTIVE_ERRORS {
            self.end_reason = "too many errors";
            out.extend_from_slice(&response::reply(
                Status::Bye,
                None,
                "Too many errors, closing connection",
            ));
            return Flow::Close;
        }
        out.extend_from_slice(&response::reply(Status::No, code.as_ref(), text));
        Flow::Continue
    }

    fn state(&self) -> State {
        match self.phase {
            Phase::Authenticated(_) => State::Authenticated { tls: self.tls },
            _ => State::NonAuthenticated { tls: self.tls },
        }
    }

    /// One parsed command.
    async fn command(&mut self, cmd: Command, out: &mut Vec<u8>) -> Flow {
        self.commands += 1;
        if self.commands > MAX_COMMANDS {
            self.end_reason = "too many commands";
            out.extend_from_slice(&response::reply(
                Status::Bye,
                None,
                "Too many commands, closing connection",
            ));
            return Flow::Close;
        }
        if let Err(refusal) = state::check(self.state(), &cmd) {
            return self.client_error(None, refusal.message(), out);
        }
        let flow = match cmd {
            // §2.4
            Command::Capability => {
                self.greeting(out);
                Flow::Continue
            }
            // §2.3: "The server MUST reply with an OK response".
            Command::Logout => {
                self.end_reason = "LOGOUT";
                out.extend_from_slice(&response::reply(Status::Ok, None, "Logout completed"));
                Flow::Close
            }
            // §2.13: the tag comes back as `TAG`.
            Command::Noop { tag } => {
                let code = tag.map(Code::Tag);
                out.extend_from_slice(&response::reply(Status::Ok, code.as_ref(), "Done"));
                Flow::Continue
            }
            // §2.2
            Command::StartTls => {
                if self.ctx.tls.starttls().is_none() {
                    return self.client_error(None, "STARTTLS is not available", out);
                }
                out.extend_from_slice(&response::reply(
                    Status::Ok,
                    None,
                    "Begin TLS negotiation now",
                ));
                Flow::StartTls
            }
            // §2.1
            Command::Authenticate { mechanism, initial } => {
                return self.authenticate(&mechanism, initial.as_deref(), out).await;
            }
            // §2.14.1: back to the non-authenticated state, TLS kept.
            Command::Unauthenticate => {
                if let Phase::Authenticated(a) = &self.phase {
                    tracing::info!(client = %self.peer.ip(), user = %a.address, "managesieve logout (UNAUTHENTICATE)");
                }
                self.phase = Phase::Anonymous;
                out.extend_from_slice(&response::reply(Status::Ok, None, ""));
                Flow::Continue
            }
            // §2.5-2.12
            cmd => {
                let Phase::Authenticated(account) = &self.phase else {
                    // The state table let it through only after login.
                    return self.client_error(None, "Log in first", out);
                };
                let account = account.clone();
                scripts::run(&self.ctx, &account, &cmd, out).await;
                Flow::Continue
            }
        };
        self.errors = 0;
        flow
    }
}

#[cfg(test)]
mod tests;
