//! MAIL (RFC 5321 §4.1.1.2).
//!
//! ```text
//! mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
//! ```

use mailgate_smtp_proto::{Body, Host, MailParams, Reply, ReversePath};

use crate::context::Role;
use crate::sender::owns_address;
use crate::session::{Session, Transaction};
use crate::state::State;

impl Session {
    /// Starts a transaction.
    pub(crate) async fn mail(&mut self, from: ReversePath, params: MailParams) {
        let client = self.peer.ip();
        // RFC 4954 §6: "530 5.7.0 Authentication required"; RFC 6409 §4.3
        // lets a submission server insist on it. Our own hosts
        // (`trusted_networks`) need not.
        if self.ctx.role == Role::Submission && self.user.is_none() && !self.trusted() {
            tracing::info!(%client, "smtp: MAIL refused: not authenticated");
            return self.reply(Reply::with_code(530, 5, 7, 0, "Authentication required"));
        }
        if let Some(reply) = self.check_sender(&from).await {
            return self.refuse(reply);
        }
        // RFC 1870 §6.3: refuse early what we would refuse after DATA.
        if params
            .size
            .is_some_and(|s| s > self.ctx.limits.max_message_size)
        {
            tracing::info!(%client, from = %from.address(), size = params.size, "smtp: MAIL rejected: too large");
            return self.refuse(Reply::message_too_large());
        }
        // Postfix's queue_minfree: no new transaction while the data
        // directory's free space is below `[limits] min_free_space`
        // (with SIZE=, below it plus the message). RFC 3463 §3.4: "4.3.1
        // Mail system full". The store logs the shortage (once a minute).
        if let Err(e) = self
            .ctx
            .delivery
            .store()
            .check_space(params.size.unwrap_or(0))
        {
            tracing::info!(%client, error = %e, "smtp: MAIL refused: insufficient system storage");
            return self.refuse(Reply::with_code(
                452,
                4,
                3,
                1,
                "Insufficient system storage",
            ));
        }
        // We do not advertise BINARYMIME (the store serves messages as
        // text), so the client may not use it (RFC 3030 §3).
        if params.body == Some(Body::BinaryMime) {
            return self.reply(Reply::with_code(
                555,
                5,
                5,
                4,
                "BODY=BINARYMIME not supported",
            ));
        }
        // RFC 6531 §3.4: a UTF-8 address needs the SMTPUTF8 parameter.
        if !from.is_ascii() && !params.smtputf8 {
            tracing::info!(%client, "smtp: MAIL rejected: UTF-8 address without SMTPUTF8");
            return self.reply(Reply::with_code(
                553,
                5,
                6,
                7,
                "UTF-8 address requires the SMTPUTF8 parameter",
            ));
        }
        if let Some(reply) = self.check_sender_domain(&from).await {
            return self.refuse(reply);
        }
        // DSN (RET, ENVID) go with the envelope (`Transaction::new`);
        // AUTH= is accepted and ignored.
        let policy = match self.policy_mail(&from, &params).await {
            Ok(policy) => policy,
            Err(refusal) => return self.refuse(refusal),
        };
        self.tx = Some(Transaction::new(from, params, policy));
        self.state = State::MailGiven;
        self.reply(Reply::with_code(250, 2, 1, 0, "Ok"));
    }
}

impl Session {
    /// `[inbound] reject_unknown_sender_domain` (see
    /// `crate::sender_domain`): on the MX role, a sender domain without
    /// MX, A or AAAA record is refused (`550 5.1.8`, a DNS failure
    /// `450 4.1.8`). Authenticated and trusted clients are not checked,
    /// nor senders in our own domains (which need not be in DNS: an
    /// internal mail system's are often not).
    async fn check_sender_domain(&self, from: &ReversePath) -> Option<Reply> {
        let check = self.ctx.sender_domains.as_ref()?;
        if self.ctx.role != Role::Mx || self.user.is_some() || self.trusted() {
            return None;
        }
        if let ReversePath::Path(path) = from {
            if let Host::Domain(domain) = &path.mailbox.host {
                // A store error: look it up like any other domain.
                if let Ok(true) = self.ctx.delivery.is_local_domain(domain).await {
                    return None;
                }
            }
        }
        check.check(self.peer.ip(), from).await
    }

    /// An authenticated user may only use their own addresses, their
    /// aliases and what `[submission.senders]` grants (see
    /// `crate::sender`); otherwise `553 5.7.1`. `None` means allowed.
    async fn check_sender(&self, from: &ReversePath) -> Option<Reply> {
        let user = self.user.as_ref()?;
        let address = match from {
            ReversePath::Null => return None,
            ReversePath::Path(p) => p.mailbox.to_string().to_lowercase(),
        };
        if self.ctx.sender_grants.grants(&user.address, &address) {
            return None;
        }
        let store = self.ctx.delivery.store();
        match owns_address(store.as_ref(), &user.address, &address).await {
            Ok(true) => None,
            Ok(false) => {
                tracing::warn!(client = %self.peer.ip(), user = %user.address, from = %address, "smtp: MAIL refused: sender not owned by user");
                Some(Reply::with_code(
                    553,
                    5,
                    7,
                    1,
                    format!(
                        "<{address}>: Sender address rejected: not owned by user {}",
                        user.address
                    ),
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "smtp: sender check failed");
                Some(Reply::local_error())
            }
        }
    }
}
