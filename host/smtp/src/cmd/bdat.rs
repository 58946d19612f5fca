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
//! message.
//!
//! A chunk whose size would take the message past `max_message_size`
//! gets `552 5.3.4` as soon as its BDAT line is read, and the session
//! ends: the chunk's bytes are never read, so a client cannot keep the
//! server reading (`BDAT 18446744073709551615`) or buffering beyond the
//! limit. RFC 3030 §3 lets the server refuse a chunk; as the client
//! sends the chunk's bytes whatever we answer, closing is the only way
//! not to read them.

use mailgate_smtp_proto::{BdatReceiver, Reply};

use crate::session::{Input, Session};
use crate::state::State;

impl Session {
    /// Whether a chunk of `size` bytes would take the message past
    /// `max_message_size`; if so `552 5.3.4` is queued and the session
    /// closed (called before the sequence is checked, so an
    /// out-of-sequence chunk is not read either).
    pub(crate) fn bdat_too_large(&mut self, size: u64) -> bool {
        let already = match (&self.bdat, self.state) {
            (Some(rx), State::Chunking) => rx.size(),
            _ => 0,
        };
        if already.saturating_add(size) <= self.ctx.limits.max_message_size {
            return false;
        }
        tracing::info!(client = %self.peer.ip(), size, already, "smtp: BDAT chunk over the size limit");
        self.close_with(&Reply::message_too_large());
        true
    }

    /// Starts receiving one chunk.
    pub(crate) fn bdat(&mut self, size: u64, last: bool) {
        if self.state != State::Chunking || self.bdat.is_none() {
            let mut rx = BdatReceiver::new(self.ctx.limits.data_limits(), false);
            if let Some(size) = self.tx.as_ref().and_then(|tx| tx.params.size) {
                rx.expect_size(size);
            }
            self.bdat = Some(rx);
            self.state = State::Chunking;
            self.pace.start_transfer(tokio::time::Instant::now());
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
                self.message_complete(rx.finish()).await;
            }
            return;
        }
        let Some(rx) = self.bdat.as_ref() else {
            return self.reply(Reply::bad_sequence());
        };
        if rx.too_large() {
            // Cannot happen: `bdat_too_large` refused the chunk.
            return self.refuse(Reply::message_too_large());
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
