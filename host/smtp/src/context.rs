//! What every session of one listener shares: names, limits, delivery and
//! the shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::Authenticator;
use mailgate_delivery::LocalDelivery;
use mailgate_smtp_proto::{
    DataLimits, DEFAULT_MAX_COMMAND_LINE, DEFAULT_MAX_DATA_LINE, DEFAULT_MAX_MESSAGE_SIZE,
};
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
    /// Error replies tolerated before `421 4.7.0` and close.
    pub max_errors: u32,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        SmtpLimits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: 100,
            max_command_line: DEFAULT_MAX_COMMAND_LINE,
            max_data_line: DEFAULT_MAX_DATA_LINE,
            idle_timeout: Duration::from_secs(300),
            max_errors: 20,
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

/// Shared state of an SMTP listener.
pub struct SmtpContext {
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
    /// For SMTP AUTH (not advertised yet: a hook for the submission
    /// role; `None` on a pure MX).
    pub authenticator: Option<Arc<Authenticator>>,
}

impl SmtpContext {
    /// A context with the given parts; `postmaster_domain` is `hostname`
    /// and no authenticator is set.
    pub fn new(
        hostname: impl Into<String>,
        delivery: Arc<LocalDelivery>,
        limits: SmtpLimits,
        shutdown: watch::Receiver<bool>,
    ) -> SmtpContext {
        let hostname = hostname.into();
        SmtpContext {
            postmaster_domain: hostname.clone(),
            hostname,
            delivery,
            limits,
            shutdown,
            authenticator: None,
        }
    }
}
