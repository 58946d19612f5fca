//! The host's view of hooks, verdicts and edits: what protocol code works
//! with. The generated WIT types never leave [`crate::bindings`].

use std::fmt;
use std::net::IpAddr;

/// An SMTP reply a plugin chose (already checked and cleaned by the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code (4xx or 5xx).
    pub code: u16,
    /// The enhanced status code ("5.7.1").
    pub enhanced: String,
    /// One line of printable ASCII.
    pub text: String,
}

impl Reply {
    /// The reply for a plugin that failed under `fail-closed`.
    pub fn policy_failure() -> Reply {
        Reply {
            code: 451,
            enhanced: "4.7.0".into(),
            text: "Temporary policy failure, please try again later".into(),
        }
    }

    /// Checks and cleans a plugin's reply: a code of the wrong class for
    /// `permanent` becomes 550/451, a malformed enhanced code the class
    /// default, the text one line of printable ASCII of at most
    /// [`MAX_REPLY_TEXT`] bytes.
    pub fn sanitize(code: u16, enhanced: &str, text: &str, permanent: bool) -> Reply {
        let class = if permanent { 5 } else { 4 };
        let code = if code / 100 == class && code % 100 < 60 {
            code
        } else if permanent {
            550
        } else {
            451
        };
        let enhanced = if valid_enhanced(enhanced, class) {
            enhanced.to_string()
        } else {
            format!("{class}.7.1")
        };
        let mut clean: String = text
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .take(MAX_REPLY_TEXT)
            .collect();
        if clean.trim().is_empty() {
            clean = if permanent {
                "Refused by policy".into()
            } else {
                "Deferred by policy, please try again later".into()
            };
        }
        Reply {
            code,
            enhanced,
            text: clean,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

/// Longest reply text kept.
pub const MAX_REPLY_TEXT: usize = 400;

fn valid_enhanced(s: &str, class: u16) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts[0] == class.to_string()
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The verdict of a plugin, or of the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Accept,
    /// 5xx.
    Reject(Reply),
    /// 4xx.
    Tempfail(Reply),
    /// Accept, deliver to nobody.
    Discard,
    /// Accept into quarantine, with a reason.
    Quarantine(String),
}

impl Verdict {
    /// Whether the chain stops here.
    pub fn ends_chain(&self) -> bool {
        !matches!(self, Verdict::Accept)
    }
    /// The reply to send, for reject and tempfail.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Verdict::Reject(r) | Verdict::Tempfail(r) => Some(r),
            _ => None,
        }
    }
}

/// A change asked for by a plugin (validated by the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Add a field at the top.
    AddHeader(String, String),
    /// Remove every field with this name.
    RemoveHeader(String),
    /// Remove every field with this name, add one.
    ReplaceHeader(String, String),
    /// Add an envelope recipient.
    AddRecipient(String),
    /// Remove an envelope recipient.
    RemoveRecipient(String),
    /// File into this folder.
    SetFolder(String),
}

/// The connection, as the hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The client's address.
    pub client_ip: IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The confirmed reverse name of the client.
    pub reverse_name: Option<String>,
    /// Whether TLS protects the connection.
    pub tls: bool,
    /// The HELO/EHLO argument.
    pub helo: Option<String>,
    /// The authenticated account.
    pub auth_user: Option<String>,
    /// "mx", "submission", "submissions" or "lmtp".
    pub listener: String,
    /// The session's id for logs.
    pub session_id: String,
}

/// The result of one authentication method (RFC 8601 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthResult {
    /// Not checked or nothing to check.
    #[default]
    None,
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// SPF soft fail.
    SoftFail,
    /// No conclusion.
    Neutral,
    /// Transient error.
    TempError,
    /// Permanent error.
    PermError,
}

impl AuthResult {
    /// The RFC 8601 word ("pass", "softfail", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::None => "none",
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DMARC policy (`p=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmarcPolicy {
    /// No record or no usable policy.
    #[default]
    Unspecified,
    /// `p=none`.
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

/// SPF of the envelope sender.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpfCheck {
    /// The result.
    pub result: AuthResult,
    /// The MAIL FROM domain, or the HELO name for `<>`, lower-cased.
    pub domain: String,
}

/// One DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DkimCheck {
    /// The result.
    pub result: AuthResult,
    /// `d=`, lower-cased ("" if unparsable).
    pub domain: String,
    /// `s=` ("" if unparsable).
    pub selector: String,
}

/// DMARC of the `From:` domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DmarcCheck {
    /// The result.
    pub result: AuthResult,
    /// The published policy.
    pub policy: DmarcPolicy,
    /// The `From:` domain, lower-cased ("" if none).
    pub domain: String,
}

/// The TLS session a message arrived over, as `message.tls` hands it to
/// plugins (since WIT 0.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDetails {
    /// "TLSv1.3" or "TLSv1.2".
    pub version: String,
    /// The cipher suite, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: String,
}

/// The host's inbound authentication results of one message, as the
/// `message.auth-results` method hands them to plugins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthResults {
    /// SPF.
    pub spf: SpfCheck,
    /// One per DKIM signature; empty without one.
    pub dkim: Vec<DkimCheck>,
    /// DMARC.
    pub dmarc: DmarcCheck,
    /// ARC chain validation (`None` without ARC sets).
    pub arc: AuthResult,
}

/// A MAIL FROM / RCPT TO parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Upper-cased keyword.
    pub name: String,
    /// Value, if any.
    pub value: Option<String>,
}

/// The envelope of the transaction; the chain applies recipient edits to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// The reverse path ("" for `<>`).
    pub mail_from: String,
    /// MAIL FROM parameters.
    pub mail_params: Vec<Param>,
    /// Recipients so far.
    pub recipients: Vec<String>,
}

/// One recipient, for `rcpt-to` and `route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientInfo {
    /// Lower-cased address.
    pub address: String,
    /// RCPT TO parameters.
    pub params: Vec<Param>,
    /// The local account it resolves to.
    pub account: Option<String>,
    /// The plus-address tag.
    pub tag: Option<String>,
}

/// The outcome of an AUTH attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    /// SASL mechanism.
    pub mechanism: String,
    /// User name given.
    pub user: String,
    /// Whether the credentials were right.
    pub success: bool,
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Deliver locally.
    Deliver(Delivery),
    /// Send on to these addresses.
    Forward(Vec<String>),
    /// Relay through this smarthost.
    Relay(String),
    /// Nowhere.
    Discard,
    /// Into quarantine.
    Quarantine(String),
    /// Refuse (bounce).
    Reject(Reply),
    /// Refuse for now.
    Tempfail(Reply),
}

/// A local delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Account; `None` = the recipient's own.
    pub account: Option<String>,
    /// Folder; `None` = the `set-folder` of `data`, else INBOX.
    pub folder: Option<String>,
    /// IMAP flags.
    pub flags: Vec<String>,
}

/// A hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// Client connected.
    Connect,
    /// HELO/EHLO.
    Helo,
    /// AUTH ended.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// End of data.
    Data,
    /// Per-recipient routing.
    Route,
    /// A user filed a message into or out of Junk over IMAP.
    MailboxEvent,
    /// One local account's copy at delivery: the system Sieve plugin only
    /// (never asked of operator plugins, not in [`Hook::ALL`]).
    Deliver,
    /// `describe`/`self-test` at load.
    Load,
}

impl Hook {
    /// The hooks a plugin may ask for.
    pub const ALL: [Hook; 8] = [
        Hook::Connect,
        Hook::Helo,
        Hook::Auth,
        Hook::MailFrom,
        Hook::RcptTo,
        Hook::Data,
        Hook::Route,
        Hook::MailboxEvent,
    ];

    /// The WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Helo => "helo",
            Hook::Auth => "auth",
            Hook::MailFrom => "mail-from",
            Hook::RcptTo => "rcpt-to",
            Hook::Data => "data",
            Hook::Route => "route",
            Hook::MailboxEvent => "mailbox-event",
            Hook::Deliver => "deliver",
            Hook::Load => "load",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way a user filed a message (hook `mailbox-event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into the Junk mailbox: spam.
    Spam,
    /// Out of it: not spam.
    Ham,
}

impl Direction {
    /// `spam` or `ham`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Spam => "spam",
            Direction::Ham => "ham",
        }
    }
}

/// What hook `mailbox-event` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEvent {
    /// The account's address, lower-case.
    pub account: String,
    /// Spam or ham.
    pub direction: Direction,
    /// `copy`, `move` or `append`.
    pub operation: String,
    /// The mailbox the message came from (none for APPEND).
    pub source: Option<String>,
    /// The mailbox it went to.
    pub target: String,
}

/// A set of hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HookSet(u16);

impl HookSet {
    /// Adds `hook`.
    pub fn insert(&mut self, hook: Hook) {
        self.0 |= hook.bit();
    }
    /// Whether `hook` is in.
    pub fn contains(self, hook: Hook) -> bool {
        self.0 & hook.bit() != 0
    }
    /// The hooks in the set.
    pub fn iter(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_cleaned() {
        let r = Reply::sanitize(250, "2.0.0", "ok\r\nInjected: yes", true);
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced, "5.7.1");
        assert_eq!(r.text, "ok??Injected: yes");
        let r = Reply::sanitize(421, "4.7.1", "greylisted", false);
        assert_eq!((r.code, r.enhanced.as_str()), (421, "4.7.1"));
        let r = Reply::sanitize(554, "5.7.1", &"x".repeat(5000), true);
        assert_eq!(r.text.len(), MAX_REPLY_TEXT);
        assert_eq!(Reply::sanitize(550, "", "", true).text, "Refused by policy");
    }

    #[test]
    fn hook_sets() {
        let mut s = HookSet::default();
        s.insert(Hook::Data);
        s.insert(Hook::Connect);
        assert!(s.contains(Hook::Data) && !s.contains(Hook::Route));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Hook::Connect, Hook::Data]
        );
    }
}
