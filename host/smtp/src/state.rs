//! The session states and the one table of which verb is legal when
//! (RFC 5321 §4.1.4, RFC 3030 §2).

use mailgate_smtp_proto::{Reply, Verb};

/// Where a session is in its conversation. Whether incoming bytes are
/// commands or message data is tracked separately (the session's input
/// mode): while a DATA or BDAT body is received no command is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Greeting sent, no EHLO/HELO yet.
    Connected,
    /// After EHLO/HELO, no transaction.
    Greeted,
    /// MAIL accepted, no recipient yet.
    MailGiven,
    /// At least one recipient accepted.
    RcptGiven,
    /// BDAT chunks under way (at least one non-LAST chunk received).
    Chunking,
}

impl State {
    /// Its name, for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connected => "connected",
            State::Greeted => "greeted",
            State::MailGiven => "mail given",
            State::RcptGiven => "rcpt given",
            State::Chunking => "chunking",
        }
    }

    /// Whether no transaction is under way.
    pub fn is_idle(self) -> bool {
        matches!(self, State::Connected | State::Greeted)
    }
}

/// Whether `verb` may be used in `state`; if not, the reply to send.
///
/// - EHLO/HELO are allowed anywhere and reset the transaction (§4.1.4).
/// - MAIL needs EHLO/HELO first and no transaction under way.
/// - RCPT needs MAIL.
/// - DATA needs a recipient; with MAIL but no accepted recipient it gets
///   `554 5.5.1` (RFC 2920 §3.1: so a pipelining client that lost all its
///   recipients does not send the message).
/// - BDAT likewise, and continues a BDAT transaction; DATA after BDAT
///   (mixing) is `503`.
/// - LHLO is LMTP only; in SMTP it is an unknown command.
pub fn check(verb: Verb, state: State) -> Result<(), Reply> {
    use State::*;
    let no_rcpt = || Reply::with_code(554, 5, 5, 1, "Error: no valid recipients");
    let need_hello = || Reply::with_code(503, 5, 5, 1, "Error: send HELO/EHLO first");
    match (verb, state) {
        (Verb::Lhlo, _) => Err(Reply::with_code(
            500,
            5,
            5,
            1,
            "Error: command not recognized",
        )),
        (Verb::Ehlo | Verb::Helo, _) => Ok(()),
        (Verb::Rset | Verb::Noop | Verb::Quit | Verb::Vrfy | Verb::Expn | Verb::Help, _) => Ok(()),
        (Verb::StartTls | Verb::Auth, _) => Ok(()),
        (Verb::Mail, Connected) => Err(need_hello()),
        (Verb::Mail, Greeted) => Ok(()),
        (Verb::Mail, MailGiven | RcptGiven | Chunking) => {
            Err(Reply::with_code(503, 5, 5, 1, "Error: nested MAIL command"))
        }
        (Verb::Rcpt, MailGiven | RcptGiven) => Ok(()),
        (Verb::Rcpt, Connected | Greeted) => {
            Err(Reply::with_code(503, 5, 5, 1, "Error: need MAIL command"))
        }
        (Verb::Rcpt, Chunking) => Err(Reply::bad_sequence()),
        (Verb::Data, RcptGiven) => Ok(()),
        (Verb::Data, MailGiven) => Err(no_rcpt()),
        (Verb::Data, Connected | Greeted | Chunking) => Err(Reply::bad_sequence()),
        (Verb::Bdat, RcptGiven | Chunking) => Ok(()),
        (Verb::Bdat, MailGiven) => Err(no_rcpt()),
        (Verb::Bdat, Connected | Greeted) => Err(Reply::bad_sequence()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let code = |v, s| check(v, s).err().map(|r| r.code());
        assert_eq!(code(Verb::Mail, State::Connected), Some(503));
        assert_eq!(code(Verb::Mail, State::Greeted), None);
        assert_eq!(code(Verb::Mail, State::RcptGiven), Some(503));
        assert_eq!(code(Verb::Rcpt, State::Greeted), Some(503));
        assert_eq!(code(Verb::Rcpt, State::MailGiven), None);
        assert_eq!(code(Verb::Data, State::MailGiven), Some(554));
        assert_eq!(code(Verb::Data, State::Chunking), Some(503));
        assert_eq!(code(Verb::Bdat, State::Chunking), None);
        assert_eq!(code(Verb::Bdat, State::Greeted), Some(503));
        assert_eq!(code(Verb::Lhlo, State::Greeted), Some(500));
        assert_eq!(code(Verb::Ehlo, State::Chunking), None);
        assert!(State::Greeted.is_idle() && !State::MailGiven.is_idle());
    }
}
