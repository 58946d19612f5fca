//! What every session of one listener shares: its role, names, limits,
//! delivery, TLS, authentication and the shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::Authenticator;
use mailgate_delivery::LocalDelivery;
use mailgate_policy::PolicyManager;
pub use mailgate_tls::TlsMode;

use crate::sender::SenderGrants;
use crate::sender_domain::SenderDomainCheck;
use crate::trust::TrustedNetworks;
use mailgate_smtp_proto::{
    DataLimits, DEFAULT_MAX_COMMAND_LINE, DEFAULT_MAX_DATA_LINE, DEFAULT_MAX_MESSAGE_SIZE,
};
use mailgate_store::queue::OutboundQueue;
use tokio::sync::watch;

/// Limits applied to each session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpLimits {
    /// Largest message accepted, in bytes (advertised as `SIZE`).
    pub max_message_size: u64,
    /// Recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_command_line: usize,
    /// Longest line in message data, CRLF included.
    pub max_data_line: usize,
    /// How long a client may stay silent before `421 4.4.2`.
    pub idle_timeout: Duration,
    /// Protocol errors tolerated before `421 4.7.0` and close (refusals
    /// for policy or resource reasons do not count, see `Session::refuse`).
    pub max_errors: u32,
    /// A command line must arrive whole within this of its first byte;
    /// slower: `421 4.4.2` and close (see `crate::pace`). Zero turns
    /// the check off.
    pub command_timeout: Duration,
    /// Slowest accepted message transfer (DATA, BDAT), in bytes per
    /// second averaged from its start, once `transfer_grace` has passed;
    /// slower: `421 4.4.2` and close. `0` turns the check off.
    pub min_transfer_rate: u64,
    /// How long a transfer may be slower than `min_transfer_rate` at its
    /// start (the binary uses [`TRANSFER_GRACE`]).
    pub transfer_grace: Duration,
}

/// The grace before `min_transfer_rate` applies: a transfer is measured
/// from its start, but judged only after this.
pub const TRANSFER_GRACE: Duration = Duration::from_secs(30);

impl Default for SmtpLimits {
    fn default() -> Self {
        SmtpLimits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: 100,
            max_command_line: DEFAULT_MAX_COMMAND_LINE,
            max_data_line: DEFAULT_MAX_DATA_LINE,
            idle_timeout: Duration::from_secs(300),
            max_errors: 20,
            command_timeout: Duration::from_secs(300),
            min_transfer_rate: 1024,
            transfer_grace: TRANSFER_GRACE,
        }
    }
}

impl SmtpLimits {
    /// The limits the DATA/BDAT receivers need.
    pub fn data_limits(&self) -> DataLimits {
        DataLimits {
            max_message_size: self.max_message_size,
            max_line_length: self.max_data_line,
        }
    }
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: receiving mail for the local domains from anyone; relays
    /// only for clients in `trusted_networks`; never offers AUTH.
    Mx,
    /// Ports 587 and 465 (RFC 6409, RFC 8314): users submit mail after
    /// AUTH; MAIL without it gets `530 5.7.0` (except from
    /// `trusted_networks`).
    Submission,
    /// `[listen] lmtp` (RFC 2033): a mail system in front of us hands
    /// over mail it accepted; LHLO, one reply per recipient after the
    /// message, the MX rules otherwise (no AUTH, no relaying).
    Lmtp,
}

impl Role {
    /// How the end of a message is answered.
    pub fn replies(self) -> mailgate_delivery::Replies {
        match self {
            Role::Lmtp => mailgate_delivery::Replies::PerRecipient,
            Role::Mx | Role::Submission => mailgate_delivery::Replies::One,
        }
    }
}

/// Shared state of an SMTP listener.
pub struct SmtpContext {
    /// MX or submission.
    pub role: Role,
    /// STARTTLS, implicit TLS or none.
    pub tls: TlsMode,
    /// Our host name: in the greeting, EHLO reply and `Received:` lines.
    pub hostname: String,
    /// The domain whose `postmaster` a bare `RCPT TO:<Postmaster>` means.
    /// Defaults to `hostname`.
    pub postmaster_domain: String,
    /// Recipient checks and delivery into the store.
    pub delivery: Arc<LocalDelivery>,
    /// Session limits.
    pub limits: SmtpLimits,
    /// Becomes `true` when the server stops: idle sessions get
    /// `421 4.3.2` and close; a transaction under way may finish first.
    pub shutdown: watch::Receiver<bool>,
    /// For SMTP AUTH on the submission role (`None`: AUTH is not
    /// offered). Also holds the clear-text policy.
    pub authenticator: Option<Arc<Authenticator>>,
    /// Where mail for other domains goes (authenticated submission,
    /// plugins' forwards, over-quota copies kept for local redelivery):
    /// the relay's queue; `None`: such recipients are refused.
    pub outbound: Option<Arc<dyn OutboundQueue>>,
    /// Builds the `delivered` reports of `NOTIFY=SUCCESS` (the relay);
    /// `None`: none are sent.
    pub reports: Option<Arc<dyn mailgate_store::queue::DeliveryReports>>,
    /// Which envelope senders each user may use beyond their own.
    pub sender_grants: Arc<SenderGrants>,
    /// Save a copy of each submitted message in the sender's `Sent`
    /// mailbox.
    pub save_sent: bool,
    /// The policy plugins; `None` (no `[plugins]`) skips every hook
    /// without looking at a chain.
    pub policy: Option<Arc<PolicyManager>>,
    /// SPF, DKIM and DMARC of each message, after it is received (MX
    /// only; `None`: not checked, no `Authentication-Results:`).
    pub verifier: Option<Arc<crate::verify::Verifier>>,
    /// The `[listen]` key this context serves, for the metrics' `listener`
    /// label; `None` (tests): messages are not counted.
    pub listener: Option<mailgate_metrics::Listener>,
    /// Clients that may relay without AUTH on the MX and submission
    /// roles (`[relay] trusted_networks`, see [`crate::trust`]); empty:
    /// nobody.
    pub trusted_networks: Arc<TrustedNetworks>,
    /// The DNS check of the sender's domain at MAIL on the MX role
    /// (`[inbound] reject_unknown_sender_domain`); `None`: not checked.
    pub sender_domains: Option<Arc<SenderDomainCheck>>,
    /// The Sender Rewriting Scheme (`[srs]`): forwarded copies leave
    /// with a rewritten sender, and RCPT to our SRS addresses relays the
    /// bounce back (`cmd/rcpt_srs.rs`); `None`: off.
    pub srs: Option<Arc<mailgate_delivery::srs::Srs>>,
    /// The client's forward-confirmed name, looked up at connect
    /// (`[inbound] reverse_lookup`, see [`crate::reverse`]); `None`: not
    /// looked up, `Received:` says `unknown`.
    pub reverse: Option<Arc<crate::reverse::ReverseLookup>>,
    /// Users' Sieve scripts at delivery (`[sieve]`); `None`: not run.
    pub sieve: Option<Arc<mailgate_delivery::SieveDelivery>>,
}

impl SmtpContext {
    /// An MX context with the given parts: `postmaster_domain` is
    /// `hostname`, no TLS, no authenticator, no outbound queue.
    pub fn new(
        hostname: impl Into<String>,
        delivery: Arc<LocalDelivery>,
        limits: SmtpLimits,
        shutdown: watch::Receiver<bool>,
    ) -> SmtpContext {
        let hostname = hostname.into();
        SmtpContext {
            role: Role::Mx,
            tls: TlsMode::None,
            postmaster_domain: hostname.clone(),
            hostname,
            delivery,
            limits,
            shutdown,
            authenticator: None,
            outbound: None,
            reports: None,
            sender_grants: Arc::new(SenderGrants::default()),
            save_sent: false,
            policy: None,
            verifier: None,
            listener: None,
            trusted_networks: Arc::new(TrustedNetworks::default()),
            sender_domains: None,
            srs: None,
            reverse: None,
            sieve: None,
        }
    }

    /// The end of a message: delivery into the store, the outbound queue.
    pub fn room(&self) -> mailgate_delivery::Room {
        mailgate_delivery::Room::new(self.delivery.clone(), self.outbound.clone())
            .with_reports(self.reports.clone())
            .with_srs(self.srs.clone())
            .with_sieve(self.sieve.clone())
    }
}
