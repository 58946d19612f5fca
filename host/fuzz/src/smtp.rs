//! SMTP targets: the command stream of a pipelining client (framer,
//! parser, switching to DATA and BDAT), and the DATA and BDAT receivers
//! against a naive reference model.

use mailgate_smtp_proto::{
    BdatReceiver, ChunkStatus, DataLimits, DataReceiver, DataStatus, LineFramer, ReceivedMessage,
    Reply, Request, Verb, DEFAULT_MAX_MESSAGE_SIZE,
};

use crate::input::{split_points, Input};

/// What the mini session below saw, in order.
#[derive(Debug, PartialEq)]
enum Event {
    Command(Request),
    /// A command that did not parse, with the code of its reply.
    Refused(u16),
    LineTooLong,
    Message(ReceivedMessage),
}

enum Phase {
    Command,
    Data(DataReceiver),
    Bdat { last: bool },
}

/// A session's input loop without the session: command lines are framed
/// and parsed, DATA and BDAT hand the following bytes to their receiver,
/// exactly as `mailgate-smtp` switches for a pipelining client.
struct MiniSession {
    framer: LineFramer,
    phase: Phase,
    bdat: Option<BdatReceiver>,
    limits: DataLimits,
    events: Vec<Event>,
}

impl MiniSession {
    fn new(max_line: usize, limits: DataLimits) -> MiniSession {
        MiniSession {
            framer: LineFramer::new(max_line),
            phase: Phase::Command,
            bdat: None,
            limits,
            events: Vec::new(),
        }
    }

    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            let n = self.step(input);
            assert!(n > 0 && n <= input.len(), "consumed {n} of {}", input.len());
            input = &input[n..];
        }
    }

    fn step(&mut self, input: &[u8]) -> usize {
        match &mut self.phase {
            Phase::Command => {
                let (n, line) = self.framer.next_line(input);
                match line {
                    None => assert_eq!(n, input.len()),
                    Some(Err(e)) => {
                        check_reply(&e.reply());
                        self.events.push(Event::LineTooLong);
                    }
                    Some(Ok(line)) => {
                        assert!(line.len() < self.framer.max_line());
                        assert!(!line.contains(&b'\n'));
                        self.command(&line);
                    }
                }
                n
            }
            Phase::Data(rx) => {
                let (n, status) = rx.ingest(input);
                if status == DataStatus::Complete {
                    let Phase::Data(rx) = std::mem::replace(&mut self.phase, Phase::Command) else {
                        unreachable!()
                    };
                    self.events.push(Event::Message(rx.finish()));
                } else {
                    assert_eq!(n, input.len());
                }
                n
            }
            Phase::Bdat { last } => {
                let last = *last;
                let rx = self.bdat.as_mut().expect("a BDAT receiver");
                let (n, status) = rx.ingest(input);
                if status == ChunkStatus::ChunkComplete {
                    self.end_chunk(last);
                } else {
                    assert_eq!(n, input.len());
                }
                n
            }
        }
    }

    fn command(&mut self, line: &[u8]) {
        match Request::parse(line) {
            Err(e) => {
                let reply = e.reply();
                check_reply(&reply);
                self.events.push(Event::Refused(reply.code()));
            }
            Ok(request) => {
                let verb = request.verb();
                assert_eq!(Verb::from_word(verb.as_str()), Some(verb));
                match request {
                    Request::Data => self.phase = Phase::Data(DataReceiver::new(self.limits)),
                    Request::Bdat { size, last } => {
                        let rx = self
                            .bdat
                            .get_or_insert_with(|| BdatReceiver::new(self.limits, false));
                        rx.start_chunk(size);
                        self.phase = Phase::Bdat { last };
                        if size == 0 {
                            self.end_chunk(last);
                        }
                    }
                    _ => {}
                }
                self.events.push(Event::Command(request));
            }
        }
    }

    fn end_chunk(&mut self, last: bool) {
        self.phase = Phase::Command;
        if last {
            let rx = self.bdat.take().expect("a BDAT receiver");
            self.events.push(Event::Message(rx.finish()));
        }
    }
}

/// An error reply is 4xx/5xx and serialises to well-formed lines.
fn check_reply(reply: &Reply) {
    assert!(reply.is_error(), "{reply:?}");
    let bytes = reply.to_bytes();
    assert!(bytes.ends_with(b"\r\n"));
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n") && line.len() >= 5, "{bytes:?}");
        assert!(!line[..line.len() - 2].contains(&b'\r'));
    }
}

fn small_limits(inp: &mut Input<'_>) -> DataLimits {
    let sel = inp.byte();
    DataLimits {
        max_message_size: if sel & 1 == 0 {
            DEFAULT_MAX_MESSAGE_SIZE
        } else {
            u64::from(sel >> 1)
        },
        max_line_length: if sel & 2 == 0 {
            1000
        } else {
            usize::from(inp.byte())
        },
    }
}

/// `smtp_command`: a pipelined command stream, possibly with DATA and
/// BDAT content, fed whole and cut at three arbitrary points: the same
/// commands, refusals and messages come out (a framing property), no line
/// is longer than the framer's limit, every refusal is a well-formed
/// 4xx/5xx reply.
pub fn command(bytes: &[u8]) {
    let mut inp = Input::new(bytes);
    let max_line = match inp.byte() {
        0..=127 => 2048,
        n => usize::from(n - 128),
    };
    let limits = small_limits(&mut inp);
    let cuts = [inp.u16(), inp.u16(), inp.u16()];
    let stream = inp.rest();

    let mut whole = MiniSession::new(max_line, limits);
    whole.feed(stream);
    let mut split = MiniSession::new(max_line, limits);
    let mut start = 0;
    for end in split_points(stream.len(), &cuts) {
        split.feed(&stream[start..end]);
        start = end;
    }
    assert_eq!(whole.events, split.events);
    assert_eq!(
        whole.framer.has_partial_line(),
        split.framer.has_partial_line()
    );
}

/// What the DATA receiver must produce, computed the obvious way: the end
/// is the first `<CRLF>.<CRLF>` (or `.<CRLF>` at the very start); before
/// it, a `.` right after a CRLF is dropped; a CR not followed by LF or an
/// LF not preceded by CR is bare.
fn data_reference(stream: &[u8], limits: DataLimits) -> (Option<usize>, ReceivedMessage) {
    let end = if stream.starts_with(b".\r\n") {
        Some(3)
    } else {
        find(stream, b"\r\n.\r\n").map(|p| p + 5)
    };
    let mut body = match end {
        Some(e) => &stream[..e - 3],
        None => stream,
    };
    if end.is_none() {
        // A CR at the end may still be the start of a CRLF: not yet seen.
        body = body.strip_suffix(b"\r").unwrap_or(body);
    }
    let line_start = |i: usize| i == 0 || (i >= 2 && &body[i - 2..i] == b"\r\n");
    let out: Vec<u8> = (0..body.len())
        .filter(|&i| !(body[i] == b'.' && line_start(i)))
        .map(|i| body[i])
        .collect();
    let bare = bare_line_ending(body);
    (end, expected_message(out, bare, limits, true))
}

/// Whether `bytes` holds a CR not followed by LF or an LF not preceded by
/// CR (a CR at the very end counts as bare).
fn bare_line_ending(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || bytes[i - 1] != b'\r',
        _ => false,
    })
}

fn expected_message(
    out: Vec<u8>,
    bare: bool,
    limits: DataLimits,
    check_lines: bool,
) -> ReceivedMessage {
    let size = out.len() as u64;
    let too_large = size > limits.max_message_size;
    let line_too_long = check_lines
        && out
            .split_inclusive(|&b| b == b'\n')
            .any(|l| l.len() > limits.max_line_length);
    ReceivedMessage {
        data: if too_large { Vec::new() } else { out },
        size,
        bare_line_ending: bare,
        too_large,
        line_too_long,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `smtp_data`: the DATA receiver, fed in pieces cut at two arbitrary
/// points, agrees with [`data_reference`] on where the data ends, the
/// unstuffed content, its size and every flag; it never stores more than
/// the size limit.
pub fn data(bytes: &[u8]) {
    let mut inp = Input::new(bytes);
    let limits = small_limits(&mut inp);
    let cuts = [inp.u16(), inp.u16()];
    let stream = inp.rest();

    let mut rx = DataReceiver::new(limits);
    let mut consumed = 0;
    let mut complete = false;
    let mut start = 0;
    for end in split_points(stream.len(), &cuts) {
        let piece = &stream[start..end];
        start = end;
        let (n, status) = rx.ingest(piece);
        assert!(n <= piece.len());
        consumed += n;
        if status == DataStatus::Complete {
            complete = true;
            break;
        }
        assert_eq!(n, piece.len());
    }
    assert_eq!(rx.is_complete(), complete);
    let msg = rx.finish();
    let (end, expected) = data_reference(stream, limits);
    assert_eq!(end, complete.then_some(consumed));
    assert!(msg.data.len() as u64 <= limits.max_message_size);
    assert_eq!(msg, expected);
}

/// `smtp_bdat`: up to four chunks of arbitrary sizes received from one
/// stream cut at two arbitrary points, text or BINARYMIME: the message is
/// exactly the chunks' bytes, the flags agree with a reference model
/// (bare CR/LF across chunk boundaries included), nothing past the size
/// limit is stored.
pub fn bdat(bytes: &[u8]) {
    let mut inp = Input::new(bytes);
    let binary = inp.byte() & 1 == 1;
    let limits = small_limits(&mut inp);
    let chunks: Vec<u64> = (0..inp.byte() % 5).map(|_| u64::from(inp.u16())).collect();
    let cuts = [inp.u16(), inp.u16()];
    let stream = inp.rest();
    let ends = split_points(stream.len(), &cuts);

    let mut rx = BdatReceiver::new(limits, binary);
    let mut pos = 0;
    for &size in &chunks {
        rx.start_chunk(size);
        let mut got = 0;
        while rx.remaining() > 0 && pos < stream.len() {
            // Never cross a cut: the pieces are what reads return.
            let piece_end = *ends.iter().find(|&&e| e > pos).expect("a piece end");
            let (n, status) = rx.ingest(&stream[pos..piece_end]);
            assert!(n <= piece_end - pos);
            pos += n;
            got += n as u64;
            if status == ChunkStatus::NeedMore {
                assert_eq!(pos, piece_end);
            }
        }
        assert_eq!(rx.remaining(), size - got);
        if rx.remaining() > 0 {
            break;
        }
    }
    assert_eq!(rx.size(), pos as u64);
    let msg = rx.finish();
    let content = stream[..pos].to_vec();
    let bare = !binary && bare_line_ending(&content);
    let expected = expected_message(content, bare, limits, !binary);
    assert!(msg.data.len() as u64 <= limits.max_message_size);
    assert_eq!(msg, expected);
}
