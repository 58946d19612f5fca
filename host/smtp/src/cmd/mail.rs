//! MAIL (RFC 5321 §4.1.1.2).
//!
//! ```text
//! mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
//! ```

use mailgate_smtp_proto::{Body, MailParams, Reply, ReversePath};

use crate::session::{Session, Transaction};
use crate::state::State;

impl Session {
    /// Starts a transaction.
    pub(crate) fn mail(&mut self, from: ReversePath, params: MailParams) {
        let client = self.peer.ip();
        // RFC 1870 §6.3: refuse early what we would refuse after DATA.
        if params
            .size
            .is_some_and(|s| s > self.ctx.limits.max_message_size)
        {
            tracing::info!(%client, from = %from.address(), size = params.size, "smtp: MAIL rejected: too large");
            return self.reply(Reply::message_too_large());
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
        // DSN (RET, ENVID, NOTIFY, ORCPT) and AUTH= are accepted and
        // ignored: we are the final destination and generate no DSNs
        // beyond the SMTP replies themselves.
        self.tx = Some(Transaction {
            from,
            params,
            recipients: Vec::new(),
        });
        self.state = State::MailGiven;
        self.reply(Reply::with_code(250, 2, 1, 0, "Ok"));
    }
}
