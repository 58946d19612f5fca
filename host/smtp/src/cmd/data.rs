//! DATA (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! ```text
//! data = "DATA" CRLF
//! ```
//!
//! `354`, then the body up to `<CRLF>.<CRLF>` (see
//! `mailgate_smtp_proto::data` for the smuggling rules), then one reply
//! for the whole message.

use mailgate_smtp_proto::{DataReceiver, ReceivedMessage, Reply};

use crate::session::{Input, Session};

impl Session {
    /// Starts receiving the body.
    pub(crate) fn data(&mut self) {
        let mut rx = DataReceiver::new(self.ctx.limits.data_limits());
        if let Some(size) = self.tx.as_ref().and_then(|tx| tx.params.size) {
            rx.expect_size(size);
        }
        self.input = Input::Data(Box::new(rx));
        self.pace.start_transfer(tokio::time::Instant::now());
        self.reply(Reply::start_data());
    }

    /// The body ended: refuse or deliver it.
    pub(crate) async fn data_complete(&mut self, message: ReceivedMessage) {
        self.message_complete(message).await;
    }
}
