//! RCPT (RFC 5321 §4.1.1.3).
//!
//! Without AUTH (the MX role, or submission before AUTH, which MAIL
//! already refuses) only local recipients are accepted: anything else is
//! `550 5.7.1 Relaying denied`, unless the client is one of our own hosts
//! (`trusted_networks`, see `crate::trust`). The address is judged by its mailbox
//! alone: source routes are dropped (RFC 5321 §3.6.1), and `%`, `!` and
//! quoted local parts are just characters of a local part, never routing,
//! so `user%remote@local` is an (unknown) local user, not a relay. Only
//! an authenticated user or a trusted client may name other domains.
//!
//! ```text
//! rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
//!        Forward-path ) [SP Rcpt-parameters] CRLF
//! ```

use mailgate_delivery::quota::{self, QuotaCheck};
use mailgate_delivery::{LocalRecipient, Recipient, RecipientCheck};
use mailgate_smtp_proto::{ForwardPath, Notify, Orcpt, RcptParams, Reply};

use crate::session::Session;
use crate::state::State;

impl Session {
    /// A recipient in another domain, from an authenticated user or a
    /// trusted client: kept for the outbound queue, or refused while
    /// there is none.
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
        if self.user.is_none() {
            tracing::info!(%client, rcpt = %address, "smtp: RCPT relayed for a trusted network");
        }
        self.add_recipient(address, None, params.clone());
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
        if tx.envelope.recipients.len() >= self.ctx.limits.max_recipients {
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
        if let Some(srs) = self.srs_address(&address) {
            return self.srs_rcpt(&srs, address, params).await;
        }
        let size = tx.params.size;
        match self.ctx.delivery.check_recipient(&address).await {
            Ok(RecipientCheck::Local(recipient)) => {
                let address = recipient.address.clone();
                if let Err(refusal) = self.room_at_rcpt(&recipient, size).await {
                    return self.refuse(refusal);
                }
                if let Err(refusal) = self.policy_rcpt(&address, &params, Some(&recipient)).await {
                    return self.refuse(refusal);
                }
                self.add_recipient(address, Some(recipient), params);
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
            Ok(RecipientCheck::NotLocal) if self.user.is_some() || self.trusted() => {
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

impl Session {
    /// The quota rule at RCPT (docs/operations.md, "Quotas"): an account
    /// already full, or one that cannot take the `SIZE=` announced at
    /// MAIL, gets `452 4.2.2` now rather than after the data. Not a
    /// protocol error: the client may send to the others.
    async fn room_at_rcpt(
        &self,
        recipient: &LocalRecipient,
        size: Option<u64>,
    ) -> Result<(), Reply> {
        if recipient.limits.is_empty() {
            return Ok(());
        }
        let store = self.ctx.delivery.store().as_ref();
        match quota::check_recipient(store, recipient, size).await {
            Ok(QuotaCheck::Fits) => Ok(()),
            Ok(QuotaCheck::Full { used, limit }) => {
                tracing::info!(client = %self.peer.ip(), rcpt = %recipient.address, used, limit, size, "smtp: RCPT refused: mailbox full");
                Err(mailbox_full(&recipient.address))
            }
            Err(e) => {
                tracing::error!(client = %self.peer.ip(), rcpt = %recipient.address, error = %e, "smtp: quota check failed");
                Err(Reply::local_error())
            }
        }
    }

    /// Adds an accepted recipient to the envelope with its DSN
    /// parameters (RFC 3461 §4.1, §4.2), which go with it into the queue.
    pub(super) fn add_recipient(
        &mut self,
        address: String,
        local: Option<LocalRecipient>,
        params: RcptParams,
    ) {
        self.accepted_rcpts.push(address.clone());
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        tx.envelope.add(Recipient {
            address,
            local,
            notify: params.notify.map(notify_text),
            orcpt: params
                .orcpt
                .map(|o| format!("{};{}", o.addr_type, o.address)),
        });
    }
}

/// `452 4.2.2` for an account over its quota (RFC 3463 §3.3: mailbox
/// full).
pub(crate) fn mailbox_full(address: &str) -> Reply {
    Reply::with_code(452, 4, 2, 2, format!("<{address}>: Mailbox full"))
}

/// ORCPT as RFC 3461 §4.2 writes it (`rfc822;` and the xtext as sent).
pub(crate) fn orcpt_text(o: &Orcpt) -> String {
    format!("{};{}", o.addr_type, o.address)
}

/// NOTIFY as RFC 3461 §4.1 writes it.
pub(crate) fn notify_text(n: Notify) -> String {
    match n {
        Notify::Never => "NEVER".into(),
        Notify::On {
            success,
            failure,
            delay,
        } => [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, w)| *w)
            .collect::<Vec<_>>()
            .join(","),
    }
}
