//! The DATA phase: dot-unstuffing and end detection (RFC 5321 §4.5.2,
//! §4.1.1.4), hardened against SMTP smuggling.
//!
//! ```text
//! ; RFC 5321 §4.1.1.4: the mail data is terminated by a line
//! ; containing only a period, that is, the character sequence
//! ; "<CRLF>.<CRLF>", where the first <CRLF> is actually the
//! ; terminator of the previous line.
//! ```
//!
//! Rules, chosen so that no other server can be made to see a message
//! end where we do not (and vice versa):
//! - Only `<CRLF>.<CRLF>` ends the data. The data starts at the
//!   beginning of a line, so `.<CRLF>` as the very first line ends an
//!   empty message.
//! - `<LF>.<LF>`, `<LF>.<CRLF>`, `<CR>.<CR>`, `<CRLF>.<LF>` and
//!   `<CR>.<CRLF>` never end the data; they are ordinary bytes.
//! - A CR or LF that is not part of a CRLF flags
//!   [`ReceivedMessage::bare_line_ending`]; the session then refuses the
//!   message after the terminator (we never normalise).
//! - Dot-unstuffing: a line (after a real CRLF) that starts with `.`
//!   loses that `.`.
//!
//! The receiver is a byte-level state machine, so splitting the input
//! anywhere gives the same result.

use crate::sink::{DataLimits, ReceivedMessage, Sink};

/// Whether a receiver has seen the end of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// Feed more bytes.
    NeedMore,
    /// The end was seen; bytes after it were not consumed.
    Complete,
}

/// Where we are relative to the last real CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Right after a CRLF (or at the start of the data).
    LineStart,
    /// `<CRLF>.`
    Dot,
    /// `<CRLF>.<CR>`
    DotCr,
    /// Inside a line.
    Mid,
    /// A CR inside a line: a CRLF if the next byte is LF.
    Cr,
    /// `<CRLF>.<CRLF>` seen.
    Done,
}

/// Receives the data after `354`.
#[derive(Debug, Clone)]
pub struct DataReceiver {
    state: State,
    sink: Sink,
}

impl DataReceiver {
    /// A receiver with the given limits.
    pub fn new(limits: DataLimits) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            sink: Sink::new(limits, true),
        }
    }

    /// The client announced the message's size (`MAIL ... SIZE=`): the
    /// buffer is allocated once for it (up to the size limit), with room
    /// for the trace header fields, instead of growing by doubling.
    pub fn expect_size(&mut self, size: u64) {
        self.sink.reserve(size);
    }

    /// Bytes of message received so far (after dot-unstuffing), kept or
    /// not.
    pub fn size(&self) -> u64 {
        self.sink.msg.size
    }

    /// Whether the terminator was seen.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes up to and including the terminator. Returns how
    /// many bytes were consumed; after `Complete`, the rest of `input`
    /// belongs to the next command.
    pub fn ingest(&mut self, input: &[u8]) -> (usize, DataStatus) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Mid => {
                    // Fast path: copy the run of ordinary bytes at once
                    // (memchr2 searches with SIMD).
                    let run = memchr::memchr2(b'\r', b'\n', &input[i..]);
                    let end = run.map_or(input.len(), |p| i + p);
                    self.sink.push(&input[i..end]);
                    i = end;
                    if i < input.len() {
                        if input[i] == b'\r' {
                            self.state = State::Cr;
                        } else {
                            self.sink.flag_bare();
                            self.sink.push(b"\n");
                        }
                        i += 1;
                    }
                }
                State::LineStart | State::Dot => {
                    let b = input[i];
                    i += 1;
                    self.state = match (self.state, b) {
                        (State::LineStart, b'.') => State::Dot,
                        (State::Dot, b'\r') => State::DotCr,
                        (_, b'\r') => State::Cr,
                        (_, b'\n') => {
                            self.sink.flag_bare();
                            self.sink.push(b"\n");
                            State::Mid
                        }
                        // After `<CRLF>.` any other byte, a second `.`
                        // included, is content: the first dot was stuffing.
                        (_, b) => {
                            self.sink.push(&[b]);
                            State::Mid
                        }
                    };
                }
                State::DotCr | State::Cr => {
                    if input[i] == b'\n' {
                        i += 1;
                        if self.state == State::DotCr {
                            self.state = State::Done;
                            return (i, DataStatus::Complete);
                        }
                        self.sink.push(b"\r\n");
                        self.state = State::LineStart;
                    } else {
                        // The CR was bare; the byte after it is looked at
                        // again as an ordinary line byte.
                        self.sink.flag_bare();
                        self.sink.push(b"\r");
                        self.state = State::Mid;
                    }
                }
            }
        }
        let status = if self.state == State::Done {
            DataStatus::Complete
        } else {
            DataStatus::NeedMore
        };
        (i, status)
    }

    /// The message received so far (complete once
    /// [`DataReceiver::is_complete`]).
    pub fn finish(self) -> ReceivedMessage {
        self.sink.msg
    }
}
