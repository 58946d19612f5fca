//! Splitting client input into lines.
//!
//! RFC 1939 §3: "All commands are terminated by a CRLF pair."
//! RFC 2449 §4: "The maximum length of a command is increased from 47
//! characters (4 character command, single space, 40 character argument,
//! CRLF) to 255 octets, including the terminating CRLF."
//!
//! We accept lines of up to [`MAX_LINE_LEN`] octets (twice the RFC 2449
//! limit, because some clients send long user names or SASL responses) and
//! also accept a bare LF as the end of a line, as many clients and test
//! tools send one. Anything longer is reported once, as [`Frame::TooLong`],
//! when its line ends; its bytes are dropped as they arrive so that a
//! client cannot make the server buffer an endless line.

/// The longest command line RFC 2449 §4 lets a client send, CRLF included.
pub const RFC2449_MAX_COMMAND_LEN: usize = 255;

/// The longest line the framer accepts by default, line ending included.
pub const MAX_LINE_LEN: usize = 512;

/// One unit of client input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its CRLF (or bare LF).
    Line(Vec<u8>),
    /// A line longer than the limit has ended; its content was discarded.
    TooLong,
}

/// Splits a byte stream into lines; holds at most one partial line.
#[derive(Debug, Clone)]
pub struct LineFramer {
    /// The partial line received so far (never longer than `limit - 1`).
    buf: Vec<u8>,
    /// The longest accepted line, line ending included.
    limit: usize,
    /// Whether we are skipping the rest of an over-long line.
    discarding: bool,
}

impl Default for LineFramer {
    fn default() -> Self {
        LineFramer::new()
    }
}

impl LineFramer {
    /// A framer with the default limit of [`MAX_LINE_LEN`] octets.
    pub fn new() -> LineFramer {
        LineFramer::with_limit(MAX_LINE_LEN)
    }

    /// A framer accepting lines of up to `limit` octets, line ending
    /// included. Limits below 2 are raised to 2 (room for CRLF alone).
    pub fn with_limit(limit: usize) -> LineFramer {
        LineFramer {
            buf: Vec::new(),
            limit: limit.max(2),
            discarding: false,
        }
    }

    /// The longest accepted line, line ending included.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether part of a line has been received but not its end (useful to
    /// tell a clean end of input from a truncated command).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.discarding
    }

    /// Consumes `input` until one frame is complete or the input is used
    /// up. Returns how many bytes were consumed and the frame, if any; call
    /// again with the rest of the input to get the following frames.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            if self.discarding {
                return match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.discarding = false;
                        (pos + i + 1, Some(Frame::TooLong))
                    }
                    None => (input.len(), None),
                };
            }
            // The LF may be at most at index `room - 1`, which makes the
            // line exactly `limit` octets long.
            let room = self.limit.saturating_sub(self.buf.len());
            let window = &rest[..rest.len().min(room)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                let mut line = std::mem::take(&mut self.buf);
                line.extend_from_slice(&window[..i]);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return (pos + i + 1, Some(Frame::Line(line)));
            }
            if rest.len() < room {
                self.buf.extend_from_slice(rest);
                return (input.len(), None);
            }
            // `room` bytes without a LF: the line cannot fit any more.
            self.buf.clear();
            self.discarding = true;
            pos += room;
        }
    }
}
