//! LMTP (RFC 2033) on the SMTP session: the `[listen] lmtp` listener,
//! for a mail system in front of us (Postfix, an MDA handoff) that has
//! already accepted the mail and wants it stored.
//!
//! What differs from SMTP, and nothing else does:
//! - `LHLO` instead of `EHLO`/`HELO` (those get `500 5.5.1`, §4.1); the
//!   greeting says `LMTP`.
//! - No relaying (as on the MX role): only local recipients, no AUTH, no
//!   verification of SPF/DKIM/DMARC (the client did that).
//! - After the final dot of DATA (or `BDAT LAST`, RFC 3030 with RFC 2033
//!   §4.2) one reply per accepted RCPT, in RCPT order (§4.2), each sent
//!   once that recipient's copy is durable. A duplicate RCPT gets the
//!   reply of its first occurrence.
//! - Per recipient (the room's `Replies::PerRecipient`): an account
//!   over its quota gets `452 4.2.2 Mailbox full` and the others still
//!   get their copy; an account that vanished since RCPT gets `550 5.1.1`.
//! - With policy plugins the message goes through `data`/`route` as in
//!   SMTP; plugins see the listener as "lmtp". A refusal of the whole
//!   message (at `data`, or by the host) answers every recipient alike; a
//!   `route` reject or tempfail of one recipient answers that recipient's
//!   RCPT only, and the others get their copies and their `250`.
//!
//! The replies themselves are written in `cmd/deliver.rs` from the room's
//! report; this file holds only what LMTP changes before the message.

use mailgate_smtp_proto::{Host, Reply, Verb};

use crate::session::Session;
use crate::state::{self, State};

/// Whether `verb` may be used in `state` on an LMTP session.
pub(crate) fn check(verb: Verb, state: State) -> Result<(), Reply> {
    match verb {
        Verb::Lhlo => Ok(()),
        Verb::Ehlo | Verb::Helo => Err(Reply::with_code(
            500,
            5,
            5,
            1,
            "Error: this is LMTP, send LHLO",
        )),
        Verb::Mail if state == State::Connected => {
            Err(Reply::with_code(503, 5, 5, 1, "Error: send LHLO first"))
        }
        _ => state::check(verb, state),
    }
}

impl Session {
    /// The greeting: `220 <host> ESMTP mailgate`, or `LMTP` for LMTP.
    pub(crate) fn greeting(&self) -> Reply {
        if self.ctx.role == crate::Role::Lmtp {
            Reply::new(220, None, format!("{} LMTP mailgate", self.ctx.hostname))
        } else {
            Reply::greeting(&self.ctx.hostname)
        }
    }

    /// LHLO: like EHLO (RFC 2033 §4.1), same capabilities (no STARTTLS,
    /// no AUTH on this listener).
    pub(crate) async fn lhlo(&mut self, host: Host) {
        self.ehlo(host, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmtp_table() {
        let code = |v, s| check(v, s).err().map(|r| r.code());
        assert_eq!(code(Verb::Lhlo, State::Connected), None);
        assert_eq!(code(Verb::Lhlo, State::RcptGiven), None);
        assert_eq!(code(Verb::Ehlo, State::Connected), Some(500));
        assert_eq!(code(Verb::Helo, State::Greeted), Some(500));
        assert_eq!(code(Verb::Mail, State::Connected), Some(503));
        assert_eq!(code(Verb::Mail, State::Greeted), None);
        assert_eq!(code(Verb::Data, State::RcptGiven), None);
        assert_eq!(code(Verb::Bdat, State::Chunking), None);
    }
}
