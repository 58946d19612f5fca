//! RCPT (RFC 5321 §4.1.1.3).
//!
//! Without AUTH (the MX role, or submission before AUTH, which MAIL
//! already refuses) only local recipients are accepted: anything else is
//! `550 5.7.1 Relaying denied`. The address is judged by its mailbox
//! alone: source routes are dropped (RFC 5321 §3.6.1), and `%`, `!` and
//! quoted local parts are just characters of a local part, never routing,
//! so `user%remote@local` is an (unknown) local user, not a relay. Only
//! an authenticated user may name other domains.
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
    /// A recipient in another domain, from an authenticated user: kept
    /// for the outbound queue, or refused while there is none.
    async fn remote_rcpt(&mut self, address: String, params: &RcptParams) {
        let client = self.peer.ip();
        if self.ctx.outbound.is_none() {
            tracing::info!(%client, rcpt = %address, "smtp: RCPT refused: no outbound queue yet");
            return self.refuse(Reply::with_code(
                550,
                5,
                3,
                3,
                format!(
                    "<{address}>: Relaying to other domains is not available on this server yet"
                ),
            ));
        }
        if let Err(refusal) = self.policy_rcpt(&address, params, None).await {
            return self.refuse(refusal);
        }
        if let Some(tx) = self.tx.as_mut() {
            if !tx.remote.contains(&address) {
                tx.remote.push(address);
            }
        }
        self.state = State::RcptGiven;
        self.reply(Reply::with_code(250, 2, 1, 5, "Ok"));
    }
}

impl Session {
    /// Adds a recipient to the transaction.
    pub(crate) async fn rcpt(&mut self, to: ForwardPath, params: RcptParams) {
        let client = self.peer.ip();
        let Some(tx) = self.tx.as_ref() else {
            return self.reply(Reply::bad_sequence());
        };
        // RFC 5321 §4.5.3.1.8: at least 100 must be accepted; past our
        // limit a temporary error lets the client send the rest later
        // (§4.5.3.1.10). Not a protocol error: the transaction goes on.
        if tx.recipients.len() + tx.remote.len() >= self.ctx.limits.max_recipients {
            return self.refuse(Reply::with_code(452, 4, 5, 3, "Error: too many recipients"));
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
                let address = recipient.address.clone();
                if let Err(refusal) = self.policy_rcpt(&address, &params, Some(&recipient)).await {
                    return self.refuse(refusal);
                }
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
            Ok(RecipientCheck::NotLocal) if self.user.is_some() => {
                self.remote_rcpt(address, &params).await
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
                self.refuse(Reply::local_error());
            }
        }
    }
}
