//! The checks before a vacation reply is sent (RFC 5230 sections 4.5-4.6,
//! RFC 3834): pure functions the host calls at delivery. The "once per
//! period per sender" record is the host's (it needs the store).

use crate::address::parse_header_addresses;
use crate::message::{Envelope, Message};

/// Why no reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The envelope sender is `<>` (a bounce).
    NullSender,
    /// The sender is a system address: MAILER-DAEMON, LISTSERV,
    /// majordomo, `owner-*`, `*-request`.
    SystemSender,
    /// `Auto-Submitted:` other than `no` (RFC 3834).
    AutoSubmitted,
    /// A mailing list: `List-Id` or another `List-*` header.
    MailingList,
    /// `Precedence: bulk`, `list` or `junk`.
    Bulk,
    /// The sender is one of the user's own addresses.
    OwnAddress,
    /// None of the user's addresses is among To, Cc, Bcc, Resent-To,
    /// Resent-Cc (the user got it as a Bcc or through a list).
    NotAddressed,
}

impl SkipReason {
    /// A short text for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NullSender => "null sender",
            SkipReason::SystemSender => "system sender",
            SkipReason::AutoSubmitted => "auto-submitted message",
            SkipReason::MailingList => "mailing list",
            SkipReason::Bulk => "bulk precedence",
            SkipReason::OwnAddress => "sender is the user",
            SkipReason::NotAddressed => "user not among the recipients",
        }
    }
}

/// Whether a vacation reply may go to this message's sender.
/// `own` holds the user's addresses: the envelope recipient is always
/// counted; add the account's address and the action's `:addresses`.
pub fn should_reply(
    msg: &dyn Message,
    envelope: &Envelope,
    own: &[String],
) -> Result<(), SkipReason> {
    let sender = envelope.from.to_ascii_lowercase();
    if sender.is_empty() {
        return Err(SkipReason::NullSender);
    }
    let local = sender.rsplit_once('@').map(|(l, _)| l).unwrap_or(&sender);
    if matches!(local, "mailer-daemon" | "listserv" | "majordomo")
        || local.starts_with("owner-")
        || local.ends_with("-request")
    {
        return Err(SkipReason::SystemSender);
    }
    let mut mine: Vec<String> = own.iter().map(|a| a.to_ascii_lowercase()).collect();
    mine.push(envelope.to.to_ascii_lowercase());
    if mine.contains(&sender) {
        return Err(SkipReason::OwnAddress);
    }
    let headers = msg.headers();
    let mut addressed = false;
    for (name, value) in &headers {
        let name = name.to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        match name.as_str() {
            "auto-submitted" if value.split(';').next().map(str::trim) != Some("no") => {
                return Err(SkipReason::AutoSubmitted)
            }
            "precedence" if matches!(value.as_str(), "bulk" | "list" | "junk") => {
                return Err(SkipReason::Bulk)
            }
            "list-id" | "list-post" | "list-unsubscribe" | "list-help" | "list-subscribe"
            | "list-owner" | "list-archive" => return Err(SkipReason::MailingList),
            "to" | "cc" | "bcc" | "resent-to" | "resent-cc"
                if parse_header_addresses(&value)
                    .iter()
                    .any(|a| mine.contains(&a.to_ascii_lowercase())) =>
            {
                addressed = true;
            }
            _ => {}
        }
    }
    if addressed {
        Ok(())
    } else {
        Err(SkipReason::NotAddressed)
    }
}

/// The reply's subject when the script gives none: "Auto: " and the
/// original subject (RFC 5230 section 4.3), without piling up prefixes.
pub fn default_subject(original: &str) -> String {
    let s = original.trim();
    if s.len() >= 5 && s[..5].eq_ignore_ascii_case("auto:") {
        s.to_string()
    } else {
        format!("Auto: {s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageData;

    fn env(from: &str) -> Envelope {
        Envelope {
            from: from.into(),
            to: "me@example.org".into(),
        }
    }

    #[test]
    fn checks() {
        let own = vec!["alias@example.org".to_string()];
        let m = MessageData::new("To: Me <ME@example.org>\r\n\r\nhi");
        assert_eq!(should_reply(&m, &env("bob@x.org"), &own), Ok(()));
        assert_eq!(
            should_reply(&m, &env(""), &own),
            Err(SkipReason::NullSender)
        );
        assert_eq!(
            should_reply(&m, &env("MAILER-DAEMON@x.org"), &own),
            Err(SkipReason::SystemSender)
        );
        assert_eq!(
            should_reply(&m, &env("list-request@x.org"), &own),
            Err(SkipReason::SystemSender)
        );
        assert_eq!(
            should_reply(&m, &env("me@example.org"), &own),
            Err(SkipReason::OwnAddress)
        );
        let m2 = MessageData::new("Cc: alias@example.org\r\n\r\nhi");
        assert_eq!(should_reply(&m2, &env("bob@x.org"), &own), Ok(()));
        let bcc = MessageData::new("To: someone@else.org\r\n\r\nhi");
        assert_eq!(
            should_reply(&bcc, &env("bob@x.org"), &own),
            Err(SkipReason::NotAddressed)
        );
        for h in [
            "List-Id: <l.x.org>",
            "Precedence: bulk",
            "Auto-Submitted: auto-replied",
        ] {
            let m = MessageData::new(format!("To: me@example.org\r\n{h}\r\n\r\nhi"));
            assert!(should_reply(&m, &env("bob@x.org"), &own).is_err(), "{h}");
        }
        let m = MessageData::new("To: me@example.org\r\nAuto-Submitted: notified\r\n\r\nhi");
        assert_eq!(
            should_reply(&m, &env("bob@x.org"), &own),
            Err(SkipReason::AutoSubmitted)
        );
        let m = MessageData::new("To: me@example.org\r\nAuto-Submitted: No\r\n\r\nhi");
        assert_eq!(should_reply(&m, &env("bob@x.org"), &own), Ok(()));
    }

    #[test]
    fn subject() {
        assert_eq!(default_subject("Hello"), "Auto: Hello");
        assert_eq!(default_subject("AUTO: Hello"), "AUTO: Hello");
    }
}
