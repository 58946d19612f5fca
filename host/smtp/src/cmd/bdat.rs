//! BDAT (RFC 3030 CHUNKING).
//!
//! ```text
//! bdat-cmd   ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF
//! chunk-size ::= 1*DIGIT
//! end-marker ::= "LAST"
//! ```
//!
//! Every chunk's bytes are read even when the chunk is refused, so the
//! session stays in step with a pipelining client. A non-LAST chunk gets
//! `250` with its byte count; the LAST one gets the reply for the whole
//! message. Once the message is too large every chunk gets `552` (RFC
//! 3030 §3: the client stops; RSET or the LAST chunk ends it).

use mailgate_smtp_proto::{BdatReceiver, Reply};

use crate::session::{Input, Session};
use crate::state::State;

impl Session {
    /// Starts receiving one chunk.
    pub(crate) fn bdat(&mut self, size: u64, last: bool) {
        if self.state != State::Chunking || self.bdat.is_none() {
            self.bdat = Some(BdatReceiver::new(self.ctx.limits.data_limits(), false));
            self.state = State::Chunking;
        }
        if let Some(rx) = self.bdat.as_mut() {
            rx.start_chunk(size);
        }
        // The session's receive loop ends a zero-size chunk at once.
        self.input = Input::Chunk { last };
    }

    /// A chunk's bytes were all received.
    pub(crate) async fn chunk_complete(&mut self, last: bool) {
        if last {
            if let Some(rx) = self.bdat.take() {
                self.finish_message(rx.finish()).await;
            }
            return;
        }
        let Some(rx) = self.bdat.as_ref() else {
            return self.reply(Reply::bad_sequence());
        };
        if rx.too_large() {
            return self.reply(Reply::message_too_large());
        }
        let size = rx.size();
        self.reply(Reply::with_code(
            250,
            2,
            0,
            0,
            format!("Ok: {size} octets received"),
        ));
    }
}
