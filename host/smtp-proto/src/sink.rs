//! Where DATA and BDAT receivers put message bytes: enforces the size and
//! line-length limits and remembers what was wrong with the message.

/// The default maximum message size: 50 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;
/// The default maximum line length in message data, CRLF included
/// (RFC 5321 §4.5.3.1.6).
pub const DEFAULT_MAX_DATA_LINE: usize = 1000;

/// Room kept free at the end of a buffer allocated for an announced
/// size, for the trace header fields (`Received:`,
/// `Authentication-Results:`) the server inserts in front of the message
/// without copying it to a new buffer.
pub const TRACE_HEADROOM: usize = 4096;

/// The first allocation for a message whose size was not announced
/// (most senders do not send `SIZE=`), trace headroom included: most mail
/// fits, so the buffer is not grown by doubling (a dozen reallocations
/// and copies for a 10 KB message, which showed in the delivery
/// profile). Larger messages grow from there.
pub const UNANNOUNCED_START: usize = 32 * 1024;

/// Limits on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    /// Bytes of message (after dot-unstuffing) kept at most; past it the
    /// message is flagged [`ReceivedMessage::too_large`].
    pub max_message_size: u64,
    /// Bytes per line, line ending included; a longer line flags
    /// [`ReceivedMessage::line_too_long`]. Not checked for BINARYMIME.
    pub max_line_length: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_line_length: DEFAULT_MAX_DATA_LINE,
        }
    }
}

/// A message as received, with what was wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message bytes (dot-unstuffed for DATA), line endings exactly
    /// as sent. Emptied once the message is too large.
    pub data: Vec<u8>,
    /// The size the message had on arrival, even when it was not kept.
    pub size: u64,
    /// A CR or LF that was not part of a CRLF was seen.
    pub bare_line_ending: bool,
    /// The message exceeded [`DataLimits::max_message_size`].
    pub too_large: bool,
    /// A line exceeded [`DataLimits::max_line_length`].
    pub line_too_long: bool,
}

impl ReceivedMessage {
    /// Whether the message may be accepted (no flaw flagged).
    pub fn is_clean(&self) -> bool {
        !(self.bare_line_ending || self.too_large || self.line_too_long)
    }
}

/// Accumulates message bytes under [`DataLimits`].
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    limits: DataLimits,
    check_lines: bool,
    line_len: usize,
    pub(crate) msg: ReceivedMessage,
}

impl Sink {
    pub(crate) fn new(limits: DataLimits, check_lines: bool) -> Sink {
        Sink {
            limits,
            check_lines,
            line_len: 0,
            msg: ReceivedMessage::default(),
        }
    }

    pub(crate) fn flag_bare(&mut self) {
        self.msg.bare_line_ending = true;
    }

    /// Allocates the buffer for a message of `size` bytes (at most the
    /// size limit) plus [`TRACE_HEADROOM`], before any byte arrives.
    pub(crate) fn reserve(&mut self, size: u64) {
        if !self.msg.data.is_empty() || self.msg.too_large {
            return;
        }
        let size = size.min(self.limits.max_message_size);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        self.msg
            .data
            .reserve_exact(size.saturating_add(TRACE_HEADROOM));
    }

    /// Appends message bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.msg.size = self.msg.size.saturating_add(bytes.len() as u64);
        if !self.msg.too_large && self.msg.size > self.limits.max_message_size {
            // Stop storing and free what we had: the message will be
            // refused, only its end still matters.
            self.msg.too_large = true;
            self.msg.data = Vec::new();
        }
        if !self.msg.too_large {
            if self.msg.data.capacity() == 0 {
                let limit = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
                self.msg
                    .data
                    .reserve_exact(UNANNOUNCED_START.min(limit.saturating_add(TRACE_HEADROOM)));
            }
            self.msg.data.extend_from_slice(bytes);
        }
        if self.check_lines {
            let mut rest = bytes;
            while let Some(p) = memchr::memchr(b'\n', rest) {
                self.line_len += p + 1;
                self.check_line();
                self.line_len = 0;
                rest = &rest[p + 1..];
            }
            self.line_len += rest.len();
            self.check_line();
        }
    }

    fn check_line(&mut self) {
        if self.line_len > self.limits.max_line_length {
            self.msg.line_too_long = true;
        }
    }
}
