//! Cutting the client's byte stream into whole commands, literals
//! included.
//!
//! RFC 9051 §4.3: "literal = "{" number64 ["+"] "}" CRLF *CHAR8"; §7.5:
//! before a synchronizing literal the client waits for a command
//! continuation request (`+`). RFC 7888 (LITERAL+ / LITERAL-): `{n+}` is
//! sent without waiting.
//!
//! The framer reads line by line; a line that ends in a literal marker
//! makes it check the announced size against its limit *before* any byte
//! of the literal is read, then read exactly that many bytes, then go on
//! with the next line of the same command. The finished command is handed
//! out as one buffer in which every literal keeps its `{n}` marker,
//! followed by CRLF and its bytes, which is what [`crate::parse`] reads.
//!
//! Limits ([`Limits`]) bound the whole command, not one line or one
//! literal: its text outside literals, all its lines together, may hold
//! [`Limits::max_line`] bytes; the literals of a command other than
//! APPEND [`Limits::max_literal`] bytes together; one literal of an APPEND
//! (a message) [`Limits::max_append`] bytes, and all of an APPEND's
//! literals (several messages with MULTIAPPEND) [`MULTIAPPEND_FACTOR`]
//! times that. So a command never holds more than `max_line +
//! max_literal` bytes (an APPEND `max_line + MULTIAPPEND_FACTOR *
//! max_append`), however its lines and literals are cut. The session
//! changes the limits at login ([`Framer::set_limits`]).
//!
//! A refused synchronizing literal is never sent by the client (it waits
//! for `+`), so the command simply ends; a refused non-synchronizing
//! literal is read and thrown away, as is the rest of its command, without
//! being kept.

/// An APPEND command with several messages (RFC 3502 MULTIAPPEND) may
/// hold up to this many times [`Limits::max_append`] bytes in all.
pub const MULTIAPPEND_FACTOR: u64 = 4;

/// Size limits of the framer, for one whole command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The command's text outside literals: all its lines together, CRLFs
    /// included.
    pub max_line: usize,
    /// All literals of a command other than APPEND, together.
    pub max_literal: u64,
    /// One literal of an APPEND (the message); also APPENDLIMIT. All
    /// literals of one APPEND together: [`MULTIAPPEND_FACTOR`] times this.
    pub max_append: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
            max_append: 50 * 1024 * 1024,
        }
    }
}

/// What the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole command, without its final line end.
    Command(Vec<u8>),
    /// A synchronizing literal was accepted: send a continuation request
    /// (`+ ...`), then keep feeding.
    Continue,
    /// A literal larger than the limit was announced; the command is
    /// dropped. Answer `tag NO [TOOBIG]` (or BAD if `sync` is false: the
    /// client sent the bytes anyway and they were discarded).
    TooBig {
        /// The tag of the command, if one could be read.
        tag: Option<String>,
        /// Whether the literal was synchronizing.
        sync: bool,
    },
    /// The command's text (its lines, outside literals) is longer than
    /// [`Limits::max_line`]; the command is dropped.
    LineTooLong {
        /// The tag of the command, if one could be read.
        tag: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a line of the command.
    Line,
    /// Reading the bytes of a literal; `message`: an APPEND's message.
    Literal { remaining: u64, message: bool },
    /// Throwing away the rest of an overlong line.
    SkipLine,
    /// Throwing away a refused non-synchronizing literal, then the rest
    /// of its command.
    SkipLiteral { remaining: u64 },
}

/// The incremental command framer. Feed it bytes as they arrive.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    state: State,
    /// The command so far.
    buf: Vec<u8>,
    /// Where the current line starts in `buf`.
    line_start: usize,
    /// Bytes of the command's lines before the current one (outside
    /// literals, line ends included).
    text: usize,
    /// Bytes of literals the command announced and had accepted so far.
    literals: u64,
    /// Bytes of APPEND message literals received so far in this command.
    message_bytes: u64,
    /// Set while the rest of a refused command is being discarded: the
    /// command ends silently (its error was already reported).
    discarding: bool,
}

impl Framer {
    /// A framer with these limits.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            state: State::Line,
            buf: Vec::new(),
            line_start: 0,
            text: 0,
            literals: 0,
            message_bytes: 0,
            discarding: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the limits (at login), from the next line or literal on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// While the bytes being read are an APPEND's message literal: how
    /// many bytes of message literals this command has received so far
    /// (the network loop measures the transfer rate with it).
    pub fn message_progress(&self) -> Option<u64> {
        matches!(self.state, State::Literal { message: true, .. }).then_some(self.message_bytes)
    }

    /// Whether a command has been started but not finished (a refused
    /// one being thrown away included: it is still one command, for the
    /// time it may take).
    pub fn in_command(&self) -> bool {
        !self.buf.is_empty() || self.state != State::Line || self.discarding
    }

    /// Consumes bytes from `data`; returns how many were used and a frame
    /// if one is complete. Call again with the rest while bytes remain.
    pub fn feed(&mut self, data: &[u8]) -> (usize, Option<Frame>) {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            match self.state {
                State::Literal { remaining, message } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    used += take;
                    if message {
                        self.message_bytes += take as u64;
                    }
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        self.line_start = self.buf.len();
                        State::Line
                    } else {
                        State::Literal { remaining, message }
                    };
                }
                State::SkipLiteral { remaining } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    used += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        self.line_start = self.buf.len();
                        State::Line
                    } else {
                        State::SkipLiteral { remaining }
                    };
                }
                State::SkipLine => match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        used += i + 1;
                        self.reset();
                    }
                    None => used += rest.len(),
                },
                State::Line => {
                    let (n, found) = match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => (i + 1, true),
                        None => (rest.len(), false),
                    };
                    // The whole command's text, not only this line.
                    let text_len = self.text + (self.buf.len() - self.line_start) + n;
                    if text_len > self.limits.max_line {
                        // The tag may still be in `rest` only.
                        let keep = self.buf.len();
                        self.buf.extend_from_slice(&rest[..n.min(65)]);
                        let tag = self.tag();
                        self.buf.truncate(keep);
                        let discarding = self.discarding;
                        self.reset();
                        if found {
                            used += n;
                        } else {
                            used += rest.len();
                            self.state = State::SkipLine;
                        }
                        if discarding {
                            continue;
                        }
                        return (used, Some(Frame::LineTooLong { tag }));
                    }
                    self.buf.extend_from_slice(&rest[..n]);
                    used += n;
                    if !found {
                        continue;
                    }
                    if let Some(frame) = self.end_of_line() {
                        return (used, Some(frame));
                    }
                }
            }
        }
        (used, None)
    }

    /// A line is complete in `buf` (LF included): either the command ends
    /// or a literal follows.
    fn end_of_line(&mut self) -> Option<Frame> {
        let line_len = self.buf.len() - self.line_start;
        // Accept a bare LF as well as CRLF (as Dovecot does); normalise
        // to CRLF so the parser sees one form.
        self.buf.pop();
        // Only a CR of this line: after a literal, an empty line's LF may
        // follow a CR that is the literal's last byte.
        if self.buf.len() > self.line_start && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let Some((size, sync)) = literal_marker(&self.buf[self.line_start..]) else {
            let discarding = self.discarding;
            let command = std::mem::take(&mut self.buf);
            self.reset();
            return (!discarding).then_some(Frame::Command(command));
        };
        if self.discarding {
            if sync {
                // The client had its answer; it will not send this literal.
                self.reset();
            } else {
                // Its lines are bounded one by one; nothing is kept.
                self.buf.clear();
                self.line_start = 0;
                self.text = 0;
                self.state = State::SkipLiteral { remaining: size };
            }
            return None;
        }
        self.text += line_len;
        let append = self.is_append();
        let in_total = self.literals.saturating_add(size);
        // A MULTIAPPEND (RFC 3502) holds several messages in one command,
        // all of which are buffered: its literals are bounded together
        // too, and any other command's literals are bounded together.
        let too_big = if append {
            size > self.limits.max_append
                || in_total > self.limits.max_append.saturating_mul(MULTIAPPEND_FACTOR)
        } else {
            in_total > self.limits.max_literal
        };
        if too_big {
            let tag = self.tag();
            let discard = !sync;
            self.reset();
            if discard {
                self.discarding = true;
                self.state = State::SkipLiteral { remaining: size };
            }
            return Some(Frame::TooBig { tag, sync });
        }
        self.literals = in_total;
        self.buf.extend_from_slice(b"\r\n");
        self.line_start = self.buf.len();
        self.state = if size == 0 {
            State::Line
        } else {
            State::Literal {
                remaining: size,
                message: append,
            }
        };
        sync.then_some(Frame::Continue)
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.line_start = 0;
        self.text = 0;
        self.literals = 0;
        self.message_bytes = 0;
        self.state = State::Line;
        self.discarding = false;
    }

    /// The tag of the command being read, if it looks like one.
    fn tag(&self) -> Option<String> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(self.buf.len());
        let tag = &self.buf[..end];
        let valid =
            !tag.is_empty() && tag.len() <= 64 && tag.iter().all(|&b| crate::parse::is_tag_char(b));
        valid.then(|| String::from_utf8_lossy(tag).into_owned())
    }

    /// Whether the command is an APPEND (its literal is the message).
    fn is_append(&self) -> bool {
        let mut words = self.buf.split(|&b| b == b' ');
        words.next();
        words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
    }
}

/// The literal announced at the end of a line: `{n}`, `{n+}` or the
/// binary `~{n}` forms. Returns the size and whether it synchronizes.
fn literal_marker(line: &[u8]) -> Option<(u64, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((size, sync))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(f: &mut Framer, data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let (n, frame) = f.feed(&data[pos..]);
            pos += n;
            out.extend(frame);
        }
        out
    }

    #[test]
    fn simple_and_pipelined() {
        let mut f = Framer::new(Limits::default());
        let frames = feed_all(&mut f, b"a NOOP\r\nb LOGOUT\nc");
        assert_eq!(
            frames,
            [
                Frame::Command(b"a NOOP".to_vec()),
                Frame::Command(b"b LOGOUT".to_vec())
            ]
        );
        assert!(f.in_command());
    }

    #[test]
    fn synchronizing_literal() {
        let mut f = Framer::new(Limits::default());
        assert_eq!(feed_all(&mut f, b"a LOGIN {5}\r\n"), [Frame::Continue]);
        assert_eq!(
            feed_all(&mut f, b"alice \"pw\"\r\n"),
            [Frame::Command(b"a LOGIN {5}\r\nalice \"pw\"".to_vec())]
        );
    }

    #[test]
    fn non_synchronizing_literal_byte_by_byte() {
        let mut f = Framer::new(Limits::default());
        let input = b"a LOGIN {5+}\r\nal\r\nc {2+}\r\npw\r\n";
        let mut frames = Vec::new();
        for b in input {
            let (n, frame) = f.feed(std::slice::from_ref(b));
            assert_eq!(n, 1);
            frames.extend(frame);
        }
        assert_eq!(
            frames,
            [Frame::Command(
                b"a LOGIN {5+}\r\nal\r\nc {2+}\r\npw".to_vec()
            )]
        );
    }

    #[test]
    fn too_big_synchronizing() {
        let mut f = Framer::new(Limits {
            max_literal: 10,
            ..Limits::default()
        });
        assert_eq!(
            feed_all(&mut f, b"x1 LOGIN {11}\r\ny NOOP\r\n"),
            [
                Frame::TooBig {
                    tag: Some("x1".into()),
                    sync: true
                },
                Frame::Command(b"y NOOP".to_vec())
            ]
        );
    }

    #[test]
    fn too_big_non_synchronizing_is_skipped() {
        let mut f = Framer::new(Limits {
            max_literal: 3,
            ..Limits::default()
        });
        assert_eq!(
            feed_all(&mut f, b"x1 LOGIN {4+}\r\nabcd {1+}\r\nz\r\ny NOOP\r\n"),
            [
                Frame::TooBig {
                    tag: Some("x1".into()),
                    sync: false
                },
                Frame::Command(b"y NOOP".to_vec())
            ]
        );
    }

    #[test]
    fn append_has_its_own_limit() {
        let mut f = Framer::new(Limits {
            max_literal: 3,
            max_append: 100,
            ..Limits::default()
        });
        assert_eq!(
            feed_all(&mut f, b"a APPEND INBOX {50}\r\n"),
            [Frame::Continue]
        );
        let mut f = Framer::new(Limits {
            max_literal: 3,
            max_append: 100,
            ..Limits::default()
        });
        assert_eq!(
            feed_all(&mut f, b"a APPEND INBOX {101}\r\n"),
            [Frame::TooBig {
                tag: Some("a".into()),
                sync: true
            }]
        );
    }

    #[test]
    fn multiappend_is_bounded_in_total() {
        let mut f = Framer::new(Limits {
            max_append: 10,
            ..Limits::default()
        });
        // MULTIAPPEND_FACTOR messages of max_append bytes fit; one more
        // does not.
        let mut input = b"a APPEND INBOX {10+}\r\n0123456789".to_vec();
        for _ in 0..MULTIAPPEND_FACTOR {
            input.extend_from_slice(b" {10+}\r\n0123456789");
        }
        input.extend_from_slice(b"\r\n");
        let frames = feed_all(&mut f, &input);
        assert!(
            matches!(frames[..], [Frame::TooBig { sync: false, .. }]),
            "{frames:?}"
        );
        // Within the total, several messages make one command.
        let frames = feed_all(&mut f, b"b APPEND INBOX {3+}\r\nabc {3+}\r\ndef\r\n");
        assert_eq!(
            frames,
            [Frame::Command(
                b"b APPEND INBOX {3+}\r\nabc {3+}\r\ndef".to_vec()
            )]
        );
    }

    #[test]
    fn overlong_line() {
        let mut f = Framer::new(Limits {
            max_line: 16,
            ..Limits::default()
        });
        let frames = feed_all(&mut f, b"t1 NOOP 0123456789012345678901\r\nt2 NOOP\r\n");
        assert_eq!(
            frames,
            [
                Frame::LineTooLong {
                    tag: Some("t1".into())
                },
                Frame::Command(b"t2 NOOP".to_vec())
            ]
        );
        // Overlong and still unfinished: skipped up to its end.
        let frames = feed_all(&mut f, b"t3 NOOP 012345678901234567890123");
        assert_eq!(
            frames,
            [Frame::LineTooLong {
                tag: Some("t3".into())
            }]
        );
        let frames = feed_all(&mut f, b"4567\r\nt4 NOOP\r\n");
        assert_eq!(frames, [Frame::Command(b"t4 NOOP".to_vec())]);
    }

    /// Many small literals, each within any per-literal limit, add up:
    /// the command is refused once they pass `max_literal` together, and
    /// nothing more of it is kept.
    #[test]
    fn literals_are_bounded_together() {
        let mut f = Framer::new(Limits {
            max_literal: 100,
            ..Limits::default()
        });
        let mut input = b"a ID (".to_vec();
        for _ in 0..10 {
            input.extend_from_slice(b"{30+}\r\n");
            input.extend_from_slice(&[b'x'; 30]);
            input.push(b' ');
        }
        input.extend_from_slice(b")\r\nb NOOP\r\n");
        let frames = feed_all(&mut f, &input);
        assert_eq!(
            frames,
            [
                Frame::TooBig {
                    tag: Some("a".into()),
                    sync: false
                },
                Frame::Command(b"b NOOP".to_vec())
            ]
        );
        assert!(f.buf.capacity() <= 256, "{}", f.buf.capacity());
        // Between the thrown-away literals the command is still going on.
        let mut f = Framer::new(Limits {
            max_literal: 100,
            ..Limits::default()
        });
        feed_all(&mut f, b"a ID ({200+}\r\n");
        feed_all(&mut f, &[b'x'; 200]);
        assert!(f.in_command());
        feed_all(&mut f, b")\r\n");
        assert!(!f.in_command());
    }

    /// Short lines joined by empty literals add up too: the command's
    /// text is bounded as a whole.
    #[test]
    fn lines_are_bounded_together() {
        let mut f = Framer::new(Limits {
            max_line: 64,
            ..Limits::default()
        });
        let mut input = b"a LOGIN ".to_vec();
        for _ in 0..20 {
            input.extend_from_slice(b"{0+}\r\n ");
        }
        input.extend_from_slice(b"x\r\nb NOOP\r\n");
        let frames = feed_all(&mut f, &input);
        let (first, last) = (frames.first(), frames.last());
        assert_eq!(
            first,
            Some(&Frame::LineTooLong {
                tag: Some("a".into())
            })
        );
        assert_eq!(last, Some(&Frame::Command(b"b NOOP".to_vec())));
    }

    #[test]
    fn limits_change_between_commands() {
        let mut f = Framer::new(Limits {
            max_literal: 4,
            ..Limits::default()
        });
        assert!(matches!(
            feed_all(&mut f, b"a LOGIN {5}\r\n")[..],
            [Frame::TooBig { .. }]
        ));
        f.set_limits(Limits::default());
        assert_eq!(feed_all(&mut f, b"a LOGIN {5}\r\n"), [Frame::Continue]);
    }

    #[test]
    fn message_progress_counts_append_literals_only() {
        let mut f = Framer::new(Limits::default());
        feed_all(&mut f, b"a LOGIN {3+}\r\nab");
        assert_eq!(f.message_progress(), None);
        feed_all(&mut f, b"c x\r\n");
        feed_all(&mut f, b"b APPEND INBOX {4+}\r\nab");
        assert_eq!(f.message_progress(), Some(2));
        feed_all(&mut f, b"cd {3+}\r\nx");
        assert_eq!(f.message_progress(), Some(5));
        assert_eq!(
            feed_all(&mut f, b"yz\r\n"),
            [Frame::Command(
                b"b APPEND INBOX {4+}\r\nabcd {3+}\r\nxyz".to_vec()
            )]
        );
        assert_eq!(f.message_progress(), None);
    }

    #[test]
    fn huge_literal_numbers_are_refused() {
        let mut f = Framer::new(Limits::default());
        let frames = feed_all(&mut f, b"a LOGIN {99999999999999999999}\r\n");
        // 20 digits is not a literal marker: the line is a command (the
        // parser rejects it).
        assert_eq!(frames.len(), 1);
        let frames = feed_all(&mut f, b"a LOGIN {18446744073709551615}\r\n");
        assert!(matches!(
            frames[..],
            [Frame::Command(_)] | [Frame::TooBig { .. }]
        ));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// Random bytes in random chunk sizes: the framer consumes everything
    /// (so the loop always progresses) and never panics.
    #[test]
    fn never_panics_and_always_progresses() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"a {}+0123456789\r\n\"()~";
        for _ in 0..2_000 {
            let mut f = Framer::new(Limits {
                max_line: 64,
                max_literal: 32,
                max_append: 128,
            });
            let len = (next() % 400) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        r as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            let mut pos = 0;
            while pos < data.len() {
                let chunk = 1 + (next() % 16) as usize;
                let end = (pos + chunk).min(data.len());
                let (n, _) = f.feed(&data[pos..end]);
                assert!(n > 0, "no progress");
                pos += n;
            }
        }
    }

    /// Found by the imap_framer fuzz target: a literal ending in CR, then
    /// the command's end as a bare LF. The CR is the literal's, not a line
    /// end to strip (it used to be stripped, and the framer then sliced
    /// before the line's start and panicked).
    #[test]
    fn literal_ending_in_cr_then_bare_lf() {
        let mut f = Framer::new(Limits::default());
        let mut data = &b"a LOGIN {1+}\r\n\r\nb NOOP\r\n"[..];
        let mut frames = Vec::new();
        while !data.is_empty() {
            let (n, frame) = f.feed(data);
            data = &data[n..];
            frames.extend(frame);
        }
        assert_eq!(
            frames,
            vec![
                Frame::Command(b"a LOGIN {1+}\r\n\r".to_vec()),
                Frame::Command(b"b NOOP".to_vec())
            ]
        );
    }
}
