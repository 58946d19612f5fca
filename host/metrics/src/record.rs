//! One function per thing counted. A call site is one line, every label
//! value comes from an enum here (never from what a client sent: a client
//! cannot add a series), and the names live in [`crate::registry`].

use std::time::Duration;

use crate::registry::{
    metrics, AuthLabels, Disposition, KindLabel, MessageLabels, PluginHook, PluginLabels,
    ProtocolResult, RefusedLabels, ResultLabel, SessionLabels, StateLabel,
};

/// A protocol, as the `protocol` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SMTP: the `smtp`, `submission` and `submissions` listeners.
    Smtp,
    /// LMTP.
    Lmtp,
    /// POP3: `pop3`, `pop3s`.
    Pop3,
    /// IMAP: `imap`, `imaps`.
    Imap,
    /// ManageSieve (RFC 5804): `managesieve`.
    ManageSieve,
}

impl Protocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Lmtp => "lmtp",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::ManageSieve => "managesieve",
        }
    }
}

/// A listener: a key of the configuration's `[listen]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// `smtp` (port 25).
    Smtp,
    /// `submission` (587).
    Submission,
    /// `submissions` (465).
    Submissions,
    /// `lmtp`.
    Lmtp,
    /// `pop3` (110).
    Pop3,
    /// `pop3s` (995).
    Pop3s,
    /// `imap` (143).
    Imap,
    /// `imaps` (993).
    Imaps,
    /// `managesieve` (4190).
    ManageSieve,
}

impl Listener {
    /// Every listener.
    pub const ALL: [Listener; 9] = [
        Listener::Smtp,
        Listener::Submission,
        Listener::Submissions,
        Listener::Lmtp,
        Listener::Pop3,
        Listener::Pop3s,
        Listener::Imap,
        Listener::Imaps,
        Listener::ManageSieve,
    ];

    /// The listener of a `[listen]` key.
    pub fn from_key(key: &str) -> Option<Listener> {
        Listener::ALL.into_iter().find(|l| l.as_str() == key)
    }

    /// The `[listen]` key, which is also the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Smtp => "smtp",
            Listener::Submission => "submission",
            Listener::Submissions => "submissions",
            Listener::Lmtp => "lmtp",
            Listener::Pop3 => "pop3",
            Listener::Pop3s => "pop3s",
            Listener::Imap => "imap",
            Listener::Imaps => "imaps",
            Listener::ManageSieve => "managesieve",
        }
    }

    /// The protocol it speaks.
    pub fn protocol(self) -> Protocol {
        match self {
            Listener::Smtp | Listener::Submission | Listener::Submissions => Protocol::Smtp,
            Listener::Lmtp => Protocol::Lmtp,
            Listener::Pop3 | Listener::Pop3s => Protocol::Pop3,
            Listener::Imap | Listener::Imaps => Protocol::Imap,
            Listener::ManageSieve => Protocol::ManageSieve,
        }
    }

    fn labels(self) -> SessionLabels {
        SessionLabels {
            protocol: self.protocol().as_str(),
            listener: self.as_str(),
        }
    }
}

/// Whether the server is ready (`mailgate_ready`), as found by the
/// readiness check before each scrape.
pub fn ready(ready: bool) {
    metrics().ready.set(i64::from(ready));
}

/// A session counted as active until this is dropped.
#[must_use = "the session counts as active while the guard lives"]
#[derive(Debug)]
pub struct SessionGuard(Listener);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        metrics()
            .sessions_active
            .get_or_create(&self.0.labels())
            .dec();
    }
}

/// A session starts on `listener`: `mailgate_sessions_total` and
/// `mailgate_sessions_active` (until the guard is dropped).
pub fn session_started(listener: Listener) -> SessionGuard {
    let m = metrics();
    let labels = listener.labels();
    m.sessions.get_or_create(&labels).inc();
    m.sessions_active.get_or_create(&labels).inc();
    SessionGuard(listener)
}

/// Which connection limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionLimit {
    /// `[limits] max_connections`.
    MaxConnections,
    /// `[limits] max_connections_per_ip`.
    MaxConnectionsPerIp,
}

/// A connection on `listener` was refused by `limit`.
pub fn connection_refused(listener: Listener, limit: ConnectionLimit) {
    let limit = match limit {
        ConnectionLimit::MaxConnections => "max_connections",
        ConnectionLimit::MaxConnectionsPerIp => "max_connections_per_ip",
    };
    metrics()
        .connections_refused
        .get_or_create(&RefusedLabels {
            listener: listener.as_str(),
            limit,
        })
        .inc();
}

/// A server-side TLS handshake of `protocol` ended (`ok` or failed).
pub fn tls_handshake(protocol: Protocol, ok: bool) {
    metrics()
        .tls_handshakes
        .get_or_create(&ProtocolResult {
            protocol: protocol.as_str(),
            result: if ok { "ok" } else { "failed" },
        })
        .inc();
}

/// Why a message was refused at the end of DATA or BDAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// A policy plugin said reject.
    Policy,
    /// SPF, DKIM or DMARC (`[inbound]`).
    Authentication,
    /// Over `max_message_size`.
    Size,
    /// Over a mailbox quota.
    Quota,
    /// Malformed (bare CR or LF, a line too long, a bad header).
    Content,
    /// Anything else.
    Other,
}

/// How a message ended at the end of DATA or BDAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// `250`: durable, the client may forget it.
    Accepted,
    /// `5xx`, with the reason.
    Rejected(RejectReason),
    /// `4xx`: try again later.
    Tempfailed,
}

/// One message's outcome on `listener`: `mailgate_smtp_messages_total`.
pub fn smtp_message(listener: Listener, outcome: MessageOutcome) {
    let (outcome, reason) = match outcome {
        MessageOutcome::Accepted => ("accepted", ""),
        MessageOutcome::Tempfailed => ("tempfailed", ""),
        MessageOutcome::Rejected(r) => (
            "rejected",
            match r {
                RejectReason::Policy => "policy",
                RejectReason::Authentication => "authentication",
                RejectReason::Size => "size",
                RejectReason::Quota => "quota",
                RejectReason::Content => "content",
                RejectReason::Other => "other",
            },
        ),
    };
    metrics()
        .smtp_messages
        .get_or_create(&MessageLabels {
            listener: listener.as_str(),
            outcome,
            reason,
        })
        .inc();
}

/// What became of one recipient of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientDisposition {
    /// Stored in a local mailbox.
    DeliveredLocally,
    /// Put in the outbound queue for the relay.
    Queued,
    /// Failed for good; a bounce (DSN) goes to the sender.
    Bounced,
}

/// `n` recipients had `disposition`: `mailgate_recipients_total`.
pub fn recipients(disposition: RecipientDisposition, n: u64) {
    let disposition = match disposition {
        RecipientDisposition::DeliveredLocally => "delivered_locally",
        RecipientDisposition::Queued => "queued",
        RecipientDisposition::Bounced => "bounced",
    };
    metrics()
        .recipients
        .get_or_create(&Disposition { disposition })
        .inc_by(n);
}

/// The time from the end of DATA until the message was durable:
/// `mailgate_delivery_latency_seconds`.
pub fn delivery_latency(elapsed: Duration) {
    metrics().delivery_latency.observe(elapsed.as_secs_f64());
}

/// The outbound queue at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// Not tried yet.
    pub new: u64,
    /// Tried and waiting for a retry.
    pub deferred: u64,
    /// Held by the administrator (`queue hold`).
    pub held: u64,
    /// Age of the oldest message in seconds; 0 when the queue is empty.
    pub oldest_age_seconds: u64,
}

/// Sets `mailgate_queue_messages` and `mailgate_queue_oldest_age_seconds`.
pub fn queue(snapshot: QueueSnapshot) {
    let m = metrics();
    for (state, n) in [
        ("new", snapshot.new),
        ("deferred", snapshot.deferred),
        ("held", snapshot.held),
    ] {
        m.queue_messages
            .get_or_create(&StateLabel { state })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    m.queue_oldest_age.set(snapshot.oldest_age_seconds as f64);
}

/// The result of one relay attempt for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayResult {
    /// The remote server took it.
    Delivered,
    /// A temporary failure: retried later.
    Deferred,
    /// A permanent failure, or retries ran out.
    Failed,
}

/// One recipient's relay attempt: `mailgate_relay_attempts_total`.
pub fn relay_attempt(result: RelayResult) {
    let result = match result {
        RelayResult::Delivered => "delivered",
        RelayResult::Deferred => "deferred",
        RelayResult::Failed => "failed",
    };
    metrics()
        .relay_attempts
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// A kind of delivery status notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnKind {
    /// A bounce: delivery failed for good.
    Failure,
    /// A warning: delivery is delayed.
    Delay,
    /// A success report: a next hop without DSN took it (`relayed`).
    Relayed,
    /// A success report: delivered to a local mailbox (`delivered`).
    Delivered,
}

/// A DSN was generated: `mailgate_dsn_sent_total`.
pub fn dsn_sent(kind: DsnKind) {
    let kind = match kind {
        DsnKind::Failure => "failure",
        DsnKind::Delay => "delay",
        DsnKind::Relayed => "relayed",
        DsnKind::Delivered => "delivered",
    };
    metrics().dsn_sent.get_or_create(&KindLabel { kind }).inc();
}

/// How a client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SASL PLAIN.
    Plain,
    /// SASL LOGIN.
    Login,
    /// POP3 `USER` and `PASS`.
    UserPass,
    /// The IMAP `LOGIN` command.
    ImapLogin,
    /// A caller that does not say.
    Unknown,
}

impl Mechanism {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "plain",
            Mechanism::Login => "login",
            Mechanism::UserPass => "user_pass",
            Mechanism::ImapLogin => "imap_login",
            Mechanism::Unknown => "unknown",
        }
    }
}

/// What an authentication came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// The password was right.
    Success,
    /// Wrong address or password.
    Failure,
    /// Refused without a check: too many recent failures.
    Blocked,
}

/// One authentication: `mailgate_auth_attempts_total`. `protocol` is
/// `None` when the caller does not say (the label is then `unknown`).
pub fn auth_attempt(protocol: Option<Protocol>, mechanism: Mechanism, result: AuthResult) {
    let result = match result {
        AuthResult::Success => "success",
        AuthResult::Failure => "failure",
        AuthResult::Blocked => "blocked",
    };
    metrics()
        .auth_attempts
        .get_or_create(&AuthLabels {
            protocol: protocol.map_or("unknown", Protocol::as_str),
            mechanism: mechanism.as_str(),
            result,
        })
        .inc();
}

/// How a plugin hook call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginResult {
    /// It answered.
    Ok,
    /// A trap (panic, unreachable, out-of-bounds access) or an
    /// instantiation failure.
    Trap,
    /// Its time limit was reached.
    Timeout,
    /// Its fuel ran out.
    FuelExhausted,
    /// Its memory limit refused a growth.
    Memory,
    /// It answered something the host refuses.
    InvalidAnswer,
}

/// One hook call of `plugin` (its file name) at `hook`:
/// `mailgate_plugin_calls_total` and
/// `mailgate_plugin_call_duration_seconds`.
pub fn plugin_call(plugin: &str, hook: &'static str, result: PluginResult, elapsed: Duration) {
    let m = metrics();
    let result = match result {
        PluginResult::Ok => "ok",
        PluginResult::Trap => "trap",
        PluginResult::Timeout => "timeout",
        PluginResult::FuelExhausted => "fuel_exhausted",
        PluginResult::Memory => "memory",
        PluginResult::InvalidAnswer => "invalid_answer",
    };
    m.plugin_calls
        .get_or_create(&PluginLabels {
            plugin: plugin.to_string(),
            hook,
            result,
        })
        .inc();
    m.plugin_duration
        .get_or_create(&PluginHook {
            plugin: plugin.to_string(),
            hook,
        })
        .observe(elapsed.as_secs_f64());
}

/// One group commit of the store's writer: `jobs` write jobs in
/// `elapsed`; `ok` false when the commit failed.
pub fn store_commit(elapsed: Duration, jobs: usize, ok: bool) {
    let m = metrics();
    m.store_commit_duration.observe(elapsed.as_secs_f64());
    m.store_commit_batch.observe(jobs as f64);
    if !ok {
        m.store_commit_failures.inc();
    }
}

/// `n` message bytes received from a client on `listener`.
pub fn bytes_received(listener: Listener, n: u64) {
    metrics()
        .received_bytes
        .get_or_create(&listener.labels())
        .inc_by(n);
}

/// `n` message bytes sent to a client on `listener`.
pub fn bytes_sent(listener: Listener, n: u64) {
    metrics()
        .sent_bytes
        .get_or_create(&listener.labels())
        .inc_by(n);
}

/// `n` message bytes the relay sent to a next hop that took the message
/// (`protocol="smtp"`, `listener="relay"`: the outbound side has no
/// listener).
pub fn bytes_relayed(n: u64) {
    metrics()
        .sent_bytes
        .get_or_create(&crate::registry::SessionLabels {
            protocol: "smtp",
            listener: "relay",
        })
        .inc_by(n);
}
