//! The small verbs: RSET, NOOP, QUIT, VRFY, EXPN, HELP (RFC 5321 §4.1.1.5
//! to §4.1.1.10).

use mailgate_smtp_proto::Reply;

use crate::session::Session;

impl Session {
    /// RSET (§4.1.1.5): drop the transaction, keep the EHLO.
    pub(crate) fn rset(&mut self) {
        self.reset_transaction();
        self.reply(Reply::ok());
    }

    /// NOOP (§4.1.1.9).
    pub(crate) fn noop(&mut self) {
        self.reply(Reply::ok());
    }

    /// QUIT (§4.1.1.10): `221` and close.
    pub(crate) fn quit(&mut self) {
        let r = Reply::closing(&self.ctx.hostname);
        self.close_with(&r);
    }

    /// VRFY (§4.1.1.6, §7.3): we never confirm or deny an address, to
    /// give harvesters nothing; `252` says "send it and see".
    pub(crate) fn vrfy(&mut self) {
        self.reply(Reply::with_code(
            252,
            2,
            5,
            0,
            "Cannot VRFY user, but will accept message and attempt delivery",
        ));
    }

    /// EXPN (§4.1.1.7, §7.3): list expansion is not disclosed.
    pub(crate) fn expn(&mut self) {
        self.reply(Reply::with_code(502, 5, 5, 1, "EXPN not available"));
    }

    /// HELP (§4.1.1.8).
    pub(crate) fn help(&mut self) {
        let mut r = Reply::with_code(214, 2, 0, 0, "mailgate SMTP server; commands:");
        r.push_line("EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
        r.push_line("See RFC 5321");
        self.reply(r);
    }
}
