//! Splits the command stream into lines, without I/O.
//!
//! RFC 5321 §2.3.8: lines end with CRLF. Like Postfix we also accept a
//! bare LF at the end of a *command* line (never in message data, see
//! [`crate::data`]): the CR, if present, is stripped.
//!
//! The framer consumes at most one line per call so that the caller can
//! switch to the DATA or BDAT receiver right after the command that asks
//! for it: the bytes that follow belong to the message (PIPELINING,
//! RFC 2920).
//!
//! Memory is bounded: a line longer than the limit is not buffered; its
//! bytes are dropped up to its end and one [`LineTooLong`] is reported
//! when the end arrives, in the place the command would have had.

use crate::error::LineTooLong;

/// The default limit on a command line, terminator included.
pub const DEFAULT_MAX_COMMAND_LINE: usize = 2048;

/// What one call to [`LineFramer::next_line`] produced.
pub type FramedLine = Result<Vec<u8>, LineTooLong>;

/// Incremental command-line splitter.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_line: usize,
    buf: Vec<u8>,
    /// Inside an overlong line: drop bytes until its LF.
    discarding: bool,
}

impl Default for LineFramer {
    fn default() -> Self {
        LineFramer::new(DEFAULT_MAX_COMMAND_LINE)
    }
}

impl LineFramer {
    /// A framer whose lines, terminator included, may be `max_line` bytes
    /// long (at least 3 are always allowed).
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            max_line: max_line.max(3),
            buf: Vec::new(),
            discarding: false,
        }
    }

    /// The limit given to [`LineFramer::new`].
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Whether part of a line is buffered (a command is being received).
    pub fn has_partial_line(&self) -> bool {
        !self.buf.is_empty() || self.discarding
    }

    /// Consumes bytes from `input` up to and including the end of the next
    /// line. Returns how many bytes were consumed and, if a line ended,
    /// the line without its CRLF/LF, or [`LineTooLong`].
    /// When it returns `None` all of `input` was consumed.
    pub fn next_line(&mut self, input: &[u8]) -> (usize, Option<FramedLine>) {
        let Some(lf) = input.iter().position(|&b| b == b'\n') else {
            if !self.discarding && self.buf.len() + input.len() > self.max_line {
                self.discarding = true;
                self.buf = Vec::new();
            }
            if !self.discarding {
                self.buf.extend_from_slice(input);
            }
            return (input.len(), None);
        };
        let consumed = lf + 1;
        if self.discarding || self.buf.len() + consumed > self.max_line {
            self.discarding = false;
            self.buf = Vec::new();
            return (consumed, Some(Err(LineTooLong)));
        }
        let mut line = std::mem::take(&mut self.buf);
        line.extend_from_slice(&input[..lf]);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (consumed, Some(Ok(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(f: &mut LineFramer, mut input: &[u8]) -> Vec<FramedLine> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (n, line) = f.next_line(input);
            input = &input[n..];
            out.extend(line);
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf() {
        let mut f = LineFramer::default();
        let lines = all_lines(&mut f, b"NOOP\r\nQUIT\nRSET\r\npartial");
        assert_eq!(
            lines,
            vec![
                Ok(b"NOOP".to_vec()),
                Ok(b"QUIT".to_vec()),
                Ok(b"RSET".to_vec())
            ]
        );
        assert!(f.has_partial_line());
        assert_eq!(
            all_lines(&mut f, b" x\r\n"),
            vec![Ok(b"partial x".to_vec())]
        );
        assert!(!f.has_partial_line());
    }

    #[test]
    fn overlong_line_is_dropped_and_reported_once() {
        let mut f = LineFramer::new(10);
        // exactly 10 bytes with CRLF is fine
        assert_eq!(
            all_lines(&mut f, b"12345678\r\n"),
            vec![Ok(b"12345678".to_vec())]
        );
        assert_eq!(all_lines(&mut f, b"123456789\r\n"), vec![Err(LineTooLong)]);
        // overlong across several feeds: nothing buffered, one error
        assert!(all_lines(&mut f, b"0123456789abc").is_empty());
        assert!(f.buf.is_empty());
        assert!(all_lines(&mut f, &[b'x'; 5000]).is_empty());
        assert_eq!(
            all_lines(&mut f, b"zz\r\nNOOP\r\n"),
            vec![Err(LineTooLong), Ok(b"NOOP".to_vec())]
        );
    }
}
