//! One SMTP session as a state machine without sockets: bytes in
//! ([`Session::receive`]), reply bytes out ([`Session::take_output`]).
//!
//! Replies are queued in order and only written out by the caller after
//! all the input it had was processed: that is what RFC 2920 PIPELINING
//! asks (answer a group of commands in one write) and it also makes the
//! caller flush before it blocks on the next read.

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_auth::sasl::SaslExchange;
use mailgate_delivery::{Envelope, TxPolicy};
use mailgate_smtp_proto::{
    BdatReceiver, Body, ChunkStatus, DataReceiver, DataStatus, LineFramer, MailParams, Reply, Ret,
    ReversePath,
};
use mailgate_store::Account;
use tokio::time::Instant;

use crate::context::SmtpContext;
use crate::pace::Pace;
use crate::policy::SessionPolicy;
use crate::state::State;

/// The client's EHLO/HELO.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    /// The name it gave, as sent.
    pub(crate) name: String,
    /// EHLO (true) or HELO.
    pub(crate) extended: bool,
}

/// The mail transaction under way (after MAIL).
#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub(crate) from: ReversePath,
    pub(crate) params: MailParams,
    /// The envelope the room gets: sender, recipients (local ones
    /// resolved; others only from an authenticated user), DSN parameters.
    pub(crate) envelope: Envelope,
    /// The plugins' chain and envelope; `None` when no plugin runs.
    pub(crate) policy: Option<TxPolicy>,
}

impl Transaction {
    /// A transaction after MAIL: the envelope starts with the sender and
    /// the DSN parameters of MAIL (RFC 3461 §4.3, §4.4), which go with
    /// the message into the queue.
    pub(crate) fn new(from: ReversePath, params: MailParams, policy: Option<TxPolicy>) -> Self {
        let envelope = Envelope {
            mail_from: from.address(),
            recipients: Vec::new(),
            envid: params.envid.clone(),
            ret_full: params.ret.map(|r| r == Ret::Full),
            smtputf8: params.smtputf8,
            eight_bit: params.body == Some(Body::EightBitMime),
        };
        Transaction {
            from,
            params,
            envelope,
            policy,
        }
    }
}

/// What incoming bytes are.
#[derive(Debug)]
pub(crate) enum Input {
    /// Command lines.
    Commands,
    /// Answers to an AUTH exchange's `334` challenges (RFC 4954 §4).
    Sasl(Box<SaslExchange>),
    /// A DATA body, up to `<CRLF>.<CRLF>`.
    Data(Box<DataReceiver>),
    /// The bytes of a BDAT chunk, into `Session::bdat`.
    Chunk {
        /// Whether it is the LAST chunk.
        last: bool,
    },
    /// The bytes of a rejected BDAT chunk, dropped to stay in step with
    /// the client; then `reply` is sent.
    Discard {
        /// Bytes still to drop.
        remaining: u64,
        /// The rejection to send after them.
        reply: Reply,
    },
}

/// One SMTP session.
pub struct Session {
    pub(crate) ctx: Arc<SmtpContext>,
    pub(crate) peer: SocketAddr,
    /// The session's id: in the `smtp{session=...}` span of its log lines
    /// and the plugins' `session-id`.
    pub(crate) id: String,
    pub(crate) state: State,
    pub(crate) hello: Option<Hello>,
    pub(crate) tx: Option<Transaction>,
    pub(crate) input: Input,
    pub(crate) framer: LineFramer,
    pub(crate) bdat: Option<BdatReceiver>,
    /// Whether the connection is under TLS (implicit or after STARTTLS).
    pub(crate) tls: bool,
    /// The TLS session's version and cipher, once TLS is on (for the
    /// plugins' `message.tls`).
    pub(crate) tls_info: Option<std::sync::Arc<mailgate_policy::TlsDetails>>,
    /// The account that authenticated with AUTH, if any.
    pub(crate) user: Option<Account>,
    /// The plugins' state; `None` without a policy manager.
    pub(crate) policy: Option<SessionPolicy>,
    /// STARTTLS was accepted: nothing more is read in clear; the caller
    /// runs the handshake and then calls [`Session::tls_started`].
    starttls_pending: bool,
    errors: u32,
    /// Deadlines for slow command lines and transfers.
    pub(crate) pace: Pace,
    /// Replies queued for the client (LMTP reads the last one).
    pub(crate) out: Vec<u8>,
    /// The address of each accepted RCPT, in order (a duplicate too):
    /// LMTP owes one reply each after the message.
    pub(crate) accepted_rcpts: Vec<String>,
    /// The client's confirmed name (FCrDNS), pending or done.
    pub(crate) reverse: crate::reverse::ReverseName,
    closed: bool,
    shutdown_requested: bool,
}

impl Session {
    /// A new session for a client at `peer`; the greeting is queued.
    pub fn new(ctx: Arc<SmtpContext>, peer: SocketAddr) -> Session {
        let framer = LineFramer::new(ctx.limits.max_command_line);
        let mut s = Session {
            ctx,
            peer,
            id: crate::received::new_queue_id(),
            state: State::Connected,
            hello: None,
            tx: None,
            input: Input::Commands,
            framer,
            bdat: None,
            tls: false,
            tls_info: None,
            user: None,
            policy: None,
            starttls_pending: false,
            errors: 0,
            pace: Pace::default(),
            out: Vec::new(),
            accepted_rcpts: Vec::new(),
            reverse: Default::default(),
            closed: false,
            shutdown_requested: false,
        };
        // With plugins, the greeting waits for the connect hook
        // (`Session::connected`).
        if s.ctx.policy.is_none() {
            let greeting = s.greeting();
            s.write(&greeting);
        }
        s
    }

    /// The connection is ready for the greeting: runs the `connect` hook
    /// when plugins are configured, then queues the greeting, or the
    /// plugin's refusal and closes. Without plugins the greeting was
    /// queued by [`Session::new`] and this does nothing.
    pub async fn connected(&mut self) {
        if self.ctx.policy.is_none() || self.policy.is_some() {
            return;
        }
        match self.policy_connect().await {
            Some(refusal) => self.close_with(&refusal),
            None => {
                let greeting = self.greeting();
                self.write(&greeting);
            }
        }
    }

    /// A new session on a connection that is under TLS from the start
    /// (RFC 8314 implicit TLS); the greeting is queued.
    pub fn new_tls(ctx: Arc<SmtpContext>, peer: SocketAddr) -> Session {
        let mut s = Session::new(ctx, peer);
        s.tls = true;
        s
    }

    /// Whether STARTTLS was accepted and the handshake must run now.
    pub fn starttls_pending(&self) -> bool {
        self.starttls_pending
    }

    /// Asks for the TLS handshake after `220 Ready to start TLS`. All
    /// input after the STARTTLS line is thrown away, unread.
    pub(crate) fn begin_starttls(&mut self) {
        self.starttls_pending = true;
        self.framer = LineFramer::new(self.ctx.limits.max_command_line);
        self.pace.line(false, Instant::now());
    }

    /// The TLS handshake after STARTTLS succeeded. RFC 3207 §4.2: "The
    /// server MUST discard any knowledge obtained from the client, such as
    /// the argument to the EHLO command, which was not obtained from the
    /// TLS negotiation itself." The client must send EHLO again.
    pub fn tls_started(&mut self) {
        self.starttls_pending = false;
        self.tls = true;
        self.hello = None;
        self.user = None;
        self.input = Input::Commands;
        self.framer = LineFramer::new(self.ctx.limits.max_command_line);
        self.pace.line(false, Instant::now());
        self.reset_transaction();
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the session is under TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated account's address, if AUTH succeeded.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.user.as_ref().map(|a| a.address.as_str())
    }

    /// The state of the conversation.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the session is over (the caller writes the queued output
    /// and closes the connection).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the session is between transactions with no command or
    /// message half received: a shutdown may close it now.
    pub fn is_idle(&self) -> bool {
        self.state.is_idle()
            && matches!(self.input, Input::Commands)
            && !self.framer.has_partial_line()
    }

    /// Whether [`Session::request_shutdown`] was called.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested
    }

    /// The server is stopping: close now with `421 4.3.2` if idle,
    /// otherwise as soon as the transaction under way ends.
    pub fn request_shutdown(&mut self) {
        self.shutdown_requested = true;
        self.close_if_shutting_down();
    }

    /// The client was silent too long: `421 4.4.2` and close.
    pub fn idle_timeout(&mut self) {
        if !self.closed {
            tracing::info!(client = %self.peer.ip(), "smtp: idle timeout");
            let r = Reply::idle_timeout(&self.ctx.hostname);
            self.close_with(&r);
        }
    }

    /// When the client will be too slow if nothing more arrives: the end
    /// of `command_timeout` for a command line under way, or the point
    /// where a message transfer falls below `min_transfer_rate` (see
    /// `crate::pace`). `None` when neither runs. The caller calls
    /// [`Session::check_pace`] at that moment.
    pub fn deadline(&self) -> Option<Instant> {
        self.pace.deadline(&self.ctx.limits)
    }

    /// Closes the session with `421 4.4.2` if the client is too slow now
    /// (a command line older than `command_timeout`, or a transfer below
    /// `min_transfer_rate`).
    pub fn check_pace(&mut self) {
        if self.closed {
            return;
        }
        if let Some(why) = self.pace.too_slow(&self.ctx.limits, Instant::now()) {
            tracing::info!(client = %self.peer.ip(), reason = why, "smtp: client too slow");
            let r = Reply::idle_timeout(&self.ctx.hostname);
            self.close_with(&r);
        }
    }

    /// Takes the reply bytes queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Processes all of `input` (commands, message data, or both, in any
    /// split). Input after the session closed is ignored, and so is input
    /// after an accepted STARTTLS: it was pipelined in clear and must
    /// never be executed inside TLS (CVE-2011-0411).
    pub async fn receive(&mut self, input: &[u8]) {
        let mut rest = input;
        while !self.closed && !self.starttls_pending {
            // A zero-length BDAT chunk or discard needs no bytes to end.
            if rest.is_empty() && !self.chunk_or_discard_done() {
                break;
            }
            let consumed = self.step(rest).await;
            rest = &rest[consumed..];
        }
        self.check_pace();
    }

    fn chunk_or_discard_done(&self) -> bool {
        match &self.input {
            Input::Chunk { .. } => self.bdat.as_ref().is_some_and(|b| b.remaining() == 0),
            Input::Discard { remaining, .. } => *remaining == 0,
            _ => false,
        }
    }

    /// Handles one piece of input; returns the bytes consumed.
    async fn step(&mut self, input: &[u8]) -> usize {
        let drain_limit = self.drain_limit();
        match &mut self.input {
            Input::Commands => {
                let (n, line) = self.framer.next_line(input);
                self.pace.received(n);
                self.pace
                    .line(self.framer.has_partial_line(), Instant::now());
                if let Some(line) = line {
                    self.command(line).await;
                    self.close_if_shutting_down();
                }
                n
            }
            Input::Sasl(_) => {
                let (n, line) = self.framer.next_line(input);
                self.pace
                    .line(self.framer.has_partial_line(), Instant::now());
                if let Some(line) = line {
                    self.sasl_line(line).await;
                    self.close_if_shutting_down();
                }
                n
            }
            Input::Data(rx) => {
                let (n, status) = rx.ingest(input);
                self.pace.received(n);
                if status == DataStatus::NeedMore && rx.size() > drain_limit {
                    // Past the size limit the data is only read to hear
                    // its end; not for ever.
                    tracing::info!(client = %self.peer.ip(), "smtp: DATA far over the size limit");
                    self.close_with(&Reply::message_too_large());
                    return n;
                }
                if status == DataStatus::Complete {
                    if let Input::Data(rx) = std::mem::replace(&mut self.input, Input::Commands) {
                        self.data_complete(rx.finish()).await;
                    }
                    self.close_if_shutting_down();
                }
                n
            }
            Input::Chunk { last } => {
                let last = *last;
                let Some(rx) = self.bdat.as_mut() else {
                    // Cannot happen (a chunk always has a receiver); recover
                    // by going back to commands rather than panicking.
                    self.input = Input::Commands;
                    return 0;
                };
                let (n, status) = rx.ingest(input);
                self.pace.received(n);
                if status == ChunkStatus::ChunkComplete {
                    self.input = Input::Commands;
                    self.chunk_complete(last).await;
                    self.close_if_shutting_down();
                }
                n
            }
            Input::Discard { remaining, .. } => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                *remaining -= take as u64;
                self.pace.received(take);
                if *remaining == 0 {
                    self.pace.end_transfer();
                    if let Input::Discard { reply, .. } =
                        std::mem::replace(&mut self.input, Input::Commands)
                    {
                        self.reply(reply);
                    }
                    self.close_if_shutting_down();
                }
                take
            }
        }
    }

    /// How many bytes of DATA are read, at most, before a message over
    /// `max_message_size` is refused with `552 5.3.4` and the session
    /// closed: twice the limit, so that a client that did not announce
    /// SIZE hears the `552` after its end rather than a dropped
    /// connection, but cannot keep the server reading for ever.
    pub(crate) fn drain_limit(&self) -> u64 {
        self.ctx.limits.max_message_size.saturating_mul(2)
    }

    /// Queues a reply. Error replies count towards `max_errors` (they
    /// are protocol errors: syntax, sequence, unknown users, relaying);
    /// at the limit the session ends with `421 4.7.0`. Refusals for
    /// policy or resource reasons go through [`Session::refuse`].
    pub(crate) fn reply(&mut self, reply: Reply) {
        self.write(&reply);
        if reply.is_error() && reply.code() != 421 {
            self.errors += 1;
            if self.errors >= self.ctx.limits.max_errors {
                tracing::info!(client = %self.peer.ip(), errors = self.errors, "smtp: too many errors");
                let r = Reply::too_many_errors(&self.ctx.hostname);
                self.close_with(&r);
            }
        }
    }

    /// Queues a refusal that is not the client's protocol error, so not
    /// counted towards `max_errors`: a limit reached (`452 4.5.3` too
    /// many recipients, `552` too large), a policy verdict (plugins,
    /// sender checks, DMARC, the message's content) or our own fault
    /// (`451 4.3.0`). RFC 5321 §4.5.3.1.10: a client told `452` for
    /// recipients past the limit sends them in a later transaction; the
    /// transaction it has must not be lost for it.
    pub(crate) fn refuse(&mut self, reply: Reply) {
        self.write(&reply);
    }

    /// Queues a reply without counting it towards `max_errors` (LMTP's
    /// per-recipient outcomes are not protocol errors).
    pub(crate) fn write(&mut self, reply: &Reply) {
        if !self.closed {
            reply.write_to(&mut self.out);
        }
    }

    /// Queues a final reply and ends the session.
    pub(crate) fn close_with(&mut self, reply: &Reply) {
        self.write(reply);
        self.closed = true;
    }

    pub(crate) fn close_if_shutting_down(&mut self) {
        if self.shutdown_requested && !self.closed && self.is_idle() {
            let r = Reply::shutting_down(&self.ctx.hostname);
            self.close_with(&r);
        }
    }

    /// Ends the transaction (after delivery, RSET, EHLO...).
    pub(crate) fn reset_transaction(&mut self) {
        self.tx = None;
        self.accepted_rcpts.clear();
        self.bdat = None;
        self.pace.end_transfer();
        self.state = if self.hello.is_some() {
            State::Greeted
        } else {
            State::Connected
        };
    }
}
