//! STARTTLS (RFC 3207).
//!
//! ```text
//! STARTTLS CRLF
//! ```
//!
//! RFC 3207 §4: "220 Ready to start TLS / 501 Syntax error (no parameters
//! allowed) / 454 TLS not available due to temporary reason". After `220`
//! the session reads nothing more in clear: whatever the client pipelined
//! behind STARTTLS is discarded (see [`Session::receive`]), and the
//! server loop runs the handshake.

use mailgate_smtp_proto::Reply;

use crate::context::TlsMode;
use crate::session::Session;

impl Session {
    /// Whether STARTTLS can be offered now.
    pub(crate) fn starttls_available(&self) -> bool {
        !self.tls && matches!(self.ctx.tls, TlsMode::StartTls(_))
    }

    /// STARTTLS.
    pub(crate) fn starttls(&mut self) {
        if self.tls {
            return self.reply(Reply::with_code(503, 5, 5, 1, "TLS already active"));
        }
        // Not offered on this listener (no certificate, or implicit TLS):
        // the command is not implemented here.
        if !self.starttls_available() {
            return self.reply(Reply::not_implemented());
        }
        self.reply(Reply::with_code(220, 2, 0, 0, "Ready to start TLS"));
        self.begin_starttls();
    }
}
