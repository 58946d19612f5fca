//! The BDAT phase (RFC 3030 CHUNKING): exactly `chunk-size` octets per
//! chunk, no dot-stuffing, no terminator.
//!
//! ```text
//! bdat-cmd   ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF
//! chunk-size ::= 1*DIGIT
//! end-marker ::= "LAST"
//! ```
//!
//! The same bare CR/LF rule as DATA applies (see [`crate::data`]), across
//! chunk boundaries: a CR ending one chunk and an LF starting the next is
//! a CRLF. With BODY=BINARYMIME the content is arbitrary octets, so
//! neither bare line endings nor line lengths are checked.

use crate::sink::{DataLimits, ReceivedMessage, Sink};

/// Whether the current chunk has been received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStatus {
    /// Feed more bytes.
    NeedMore,
    /// All the chunk's bytes were consumed; the rest of the input
    /// belongs to the next command.
    ChunkComplete,
}

/// Accumulates a message from BDAT chunks.
#[derive(Debug, Clone)]
pub struct BdatReceiver {
    sink: Sink,
    binary: bool,
    prev_cr: bool,
    remaining: u64,
    chunks: u32,
}

impl BdatReceiver {
    /// A receiver for one message; `binary` for BODY=BINARYMIME.
    pub fn new(limits: DataLimits, binary: bool) -> BdatReceiver {
        BdatReceiver {
            sink: Sink::new(limits, !binary),
            binary,
            prev_cr: false,
            remaining: 0,
            chunks: 0,
        }
    }

    /// Starts a chunk of `size` bytes (after a `BDAT size` command).
    pub fn start_chunk(&mut self, size: u64) {
        self.remaining = size;
        self.chunks = self.chunks.saturating_add(1);
    }

    /// The client announced the message's size (`MAIL ... SIZE=`): see
    /// [`crate::DataReceiver::expect_size`].
    pub fn expect_size(&mut self, size: u64) {
        self.sink.reserve(size);
    }

    /// Bytes of the current chunk still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How many chunks were started.
    pub fn chunks(&self) -> u32 {
        self.chunks
    }

    /// Bytes received so far over all chunks.
    pub fn size(&self) -> u64 {
        self.sink.msg.size
    }

    /// Whether the message is already too large (the session may refuse
    /// the chunk right away).
    pub fn too_large(&self) -> bool {
        self.sink.msg.too_large
    }

    /// Consumes up to the end of the current chunk.
    pub fn ingest(&mut self, input: &[u8]) -> (usize, ChunkStatus) {
        let take = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let bytes = &input[..take];
        if !self.binary {
            for &b in bytes {
                if (self.prev_cr && b != b'\n') || (!self.prev_cr && b == b'\n') {
                    self.sink.flag_bare();
                }
                self.prev_cr = b == b'\r';
            }
        }
        self.sink.push(bytes);
        self.remaining -= take as u64;
        let status = if self.remaining == 0 {
            ChunkStatus::ChunkComplete
        } else {
            ChunkStatus::NeedMore
        };
        (take, status)
    }

    /// The message, after the LAST chunk. A CR at the very end is bare.
    pub fn finish(mut self) -> ReceivedMessage {
        if self.prev_cr {
            self.sink.flag_bare();
        }
        self.sink.msg
    }
}
