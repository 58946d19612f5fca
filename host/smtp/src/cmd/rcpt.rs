//! RCPT (RFC 5321 §4.1.1.3), MX role: only local recipients.
//!
//! ```text
//! rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
//!        Forward-path ) [SP Rcpt-parameters] CRLF
//! ```

use mailgate_delivery::RecipientCheck;
use mailgate_smtp_proto::{ForwardPath, RcptParams, Reply};

use crate::session::Session;
use crate::state::State;

impl Session {
    /// Adds a recipient to the transaction.
    pub(crate) async fn rcpt(&mut self, to: ForwardPath, _params: RcptParams) {
        let client = self.peer.ip();
        let Some(tx) = self.tx.as_ref() else {
            return self.reply(Reply::bad_sequence());
        };
        // RFC 5321 §4.5.3.1.8: at least 100 must be accepted; past our
        // limit a temporary error lets the client send the rest later.
        if tx.recipients.len() >= self.ctx.limits.max_recipients {
            return self.reply(Reply::with_code(452, 4, 5, 3, "Error: too many recipients"));
        }
        if !to.is_ascii() && !tx.params.smtputf8 {
            return self.reply(Reply::with_code(
                553,
                5,
                6,
                7,
                "UTF-8 address requires the SMTPUTF8 parameter",
            ));
        }
        // The source route, if any, is ignored (RFC 5321 §3.6.1); a bare
        // <Postmaster> is ours.
        let address = match &to {
            ForwardPath::Postmaster => format!("postmaster@{}", self.ctx.postmaster_domain),
            ForwardPath::Path(p) => p.mailbox.to_string(),
        };
        match self.ctx.delivery.check_recipient(&address).await {
            Ok(RecipientCheck::Local(recipient)) => {
                if let Some(tx) = self.tx.as_mut() {
                    if !tx.recipients.iter().any(|r| r.address == recipient.address) {
                        tx.recipients.push(recipient);
                    }
                }
                self.state = State::RcptGiven;
                self.reply(Reply::with_code(250, 2, 1, 5, "Ok"));
            }
            Ok(RecipientCheck::UnknownUser) => {
                tracing::info!(%client, rcpt = %address, "smtp: RCPT rejected: unknown user");
                self.reply(Reply::with_code(
                    550,
                    5,
                    1,
                    1,
                    format!("<{address}>: Recipient address rejected: User unknown"),
                ));
            }
            Ok(RecipientCheck::NotLocal) => {
                tracing::info!(%client, rcpt = %address, "smtp: RCPT rejected: relaying denied");
                self.reply(Reply::with_code(
                    550,
                    5,
                    7,
                    1,
                    format!("<{address}>: Relaying denied"),
                ));
            }
            Err(e) => {
                tracing::error!(%client, rcpt = %address, error = %e, "smtp: recipient check failed");
                self.reply(Reply::local_error());
            }
        }
    }
}
