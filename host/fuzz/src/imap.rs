//! IMAP targets: the command framer (lines and literals), the command
//! parser, the COMPRESS=DEFLATE stream, modified UTF-7.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use mailgate_imap::compress::Deflate;
use mailgate_imap_proto::{
    format_date_time, mutf7, parse_command, parse_date_time, Frame, Framer, Limits, SequenceSet,
    MULTIAPPEND_FACTOR,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::input::{split_points, Input};

/// Small limits chosen by the fuzzer (so that it reaches them), or the
/// defaults. A line limit stays above 128 bytes: a command is refused as
/// soon as its text passes the limit, with the tag read so far, so below
/// the longest tag (64 bytes) the tag reported would depend on how the
/// input is cut (the server's minimum is far above that).
fn limits(inp: &mut Input<'_>) -> Limits {
    let sel = inp.byte();
    if sel & 1 == 0 {
        return Limits::default();
    }
    Limits {
        max_line: 128 + usize::from(inp.byte()),
        max_literal: u64::from(inp.byte()),
        max_append: u64::from(inp.u16()),
    }
}

/// Feeds `pieces` to a framer; returns the frames, checking each.
fn frames(limits: Limits, stream: &[u8], ends: &[usize]) -> (Vec<Frame>, bool) {
    let mut framer = Framer::new(limits);
    let mut out = Vec::new();
    let mut start = 0;
    for &end in ends {
        let mut piece = &stream[start..end];
        start = end;
        while !piece.is_empty() {
            let (n, frame) = framer.feed(piece);
            assert!(n <= piece.len());
            assert!(n > 0 || frame.is_some(), "no progress");
            piece = &piece[n..];
            if let Some(frame) = frame {
                check_frame(limits, &frame);
                out.push(frame);
            }
        }
    }
    (out, framer.in_command())
}

/// The most a framed command may hold (see `mailgate_imap_proto::framer`):
/// `max_line` bytes of text outside literals plus `max_literal` bytes of
/// literals, or for an APPEND `MULTIAPPEND_FACTOR * max_append` bytes of
/// literals.
fn check_frame(limits: Limits, frame: &Frame) {
    match frame {
        Frame::Command(cmd) => {
            let is_append = cmd
                .split(|&b| b == b' ')
                .nth(1)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"));
            let literals = if is_append {
                limits.max_append.saturating_mul(MULTIAPPEND_FACTOR)
            } else {
                limits.max_literal
            };
            let bound = literals.saturating_add(limits.max_line as u64);
            assert!(
                cmd.len() as u64 <= bound,
                "a command of {} bytes, bound {bound}",
                cmd.len()
            );
            // The parser takes whatever the framer hands out.
            let _ = parse_command(cmd);
        }
        Frame::TooBig { tag, .. } | Frame::LineTooLong { tag } => {
            if let Some(tag) = tag {
                check_tag(tag);
            }
        }
        Frame::Continue => {}
    }
}

/// A tag as the session echoes it: at most 64 bytes as sent (8-bit bytes
/// are let through and become U+FFFD, 3 bytes each), nothing that could
/// end or split the response line.
fn check_tag(tag: &str) {
    assert!(!tag.is_empty() && tag.len() <= 64 * 3, "{tag:?}");
    assert!(
        !tag.contains(|c: char| c.is_ascii_control() || c == ' '),
        "{tag:?}"
    );
}

/// `imap_framer`: a command stream (lines, synchronizing and
/// non-synchronizing literals, APPEND, overlong lines and literals) fed
/// whole and cut at three arbitrary points gives the same frames; no
/// framed command exceeds what the limits allow; every command is then
/// parsed.
pub fn framer(bytes: &[u8]) {
    let mut inp = Input::new(bytes);
    let limits = limits(&mut inp);
    let cuts = [inp.u16(), inp.u16(), inp.u16()];
    let stream = inp.rest();
    let whole = frames(limits, stream, &[stream.len()]);
    let split = frames(limits, stream, &split_points(stream.len(), &cuts));
    assert_eq!(whole, split);
}

/// `imap_command`: one framed command to the parser. A refusal carries a
/// valid tag or none and a message fit for a `BAD` line (no CR or LF).
/// The same bytes also go to the date-time and sequence-set parsers: a
/// parsed date-time formats and parses back to the same instant.
pub fn command(bytes: &[u8]) {
    match parse_command(bytes) {
        Ok(cmd) => {
            check_tag(&cmd.tag);
            let _ = cmd.body.name();
        }
        Err(e) => {
            if let Some(tag) = &e.tag {
                check_tag(tag);
            }
            assert!(
                !e.message.contains(['\r', '\n']),
                "a BAD text with a line break: {:?}",
                e.message
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Some(t) = parse_date_time(text) {
            let formatted = format_date_time(t);
            let back = parse_date_time(&formatted);
            let year: Option<i64> = formatted.get(7..11).and_then(|y| y.parse().ok());
            if year.is_some_and(|y| (1000..=9999).contains(&y)) {
                assert_eq!(back, Some(t), "{text:?} -> {t} -> {formatted:?}");
            }
        }
    }
    if let Some(set) = SequenceSet::parse(bytes) {
        let largest = bytes.len() as u32;
        let resolved = set.resolved(largest);
        assert!(resolved.len() <= set.0.len());
        for n in [0, 1, largest, u32::MAX] {
            let _ = set.contains(n, largest);
        }
    }
}

/// `mutf7`: every string survives encoding (`decode(encode(s)) == s`) and
/// the encoding is printable ASCII; whatever the decoder accepts encodes
/// to something that decodes to the same string.
pub fn mutf7(bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    let encoded = mutf7::encode(&s);
    assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    assert_eq!(mutf7::decode(encoded.as_bytes()).as_deref(), Some(&*s));
    if let Some(decoded) = mutf7::decode(bytes) {
        let again = mutf7::encode(&decoded);
        assert_eq!(mutf7::decode(again.as_bytes()), Some(decoded));
    }
}

/// Inflated output read through [`Deflate`] is capped here: a fuzz input
/// of a few KiB can inflate to megabytes, which tells nothing more.
const MAX_INFLATED: usize = 1 << 20;

/// `imap_compress`: the COMPRESS=DEFLATE stream of an IMAP session.
/// (1) Arbitrary bytes as the client's compressed input (part of them
/// already read with the COMPRESS command): what the stream inflates is
/// what zlib's inflater makes of the same bytes, read through a buffer of
/// arbitrary size, and it goes on to the command framer. (2) Arbitrary
/// bytes deflated by a client with sync flushes at arbitrary points read
/// back exactly. (3) Arbitrary bytes written through the stream in pieces,
/// with flushes, inflate back exactly.
pub fn compress(bytes: &[u8]) {
    let mut inp = Input::new(bytes);
    let read_size = usize::from(inp.byte()) + 1;
    let leftover_len = usize::from(inp.byte());
    let cuts = [inp.u16(), inp.u16()];
    let data = inp.rest();
    let ends = split_points(data.len(), &cuts);

    // (1) arbitrary compressed input
    let leftover = data[..leftover_len.min(data.len())].to_vec();
    let inner = &data[leftover.len()..];
    let (inflated, failed) = read_all(Deflate::new(inner, leftover), read_size);
    let reference = reference_inflate(data);
    if failed {
        // flate2 drops the output of the call that fails, and the two
        // inflate in different steps: one is a prefix of the other.
        assert!(reference.starts_with(&inflated) || inflated.starts_with(&reference));
    } else {
        assert_eq!(inflated, reference);
    }
    let _ = frames(Limits::default(), &inflated, &[inflated.len()]);

    // (2) a client's deflated stream
    let mut client = Compress::new(Compression::fast(), false);
    let mut wire = Vec::new();
    let mut start = 0;
    for &end in &ends {
        deflate(&mut client, &data[start..end], &mut wire);
        start = end;
    }
    let (back, failed) = read_all(Deflate::new(&wire[..], Vec::new()), read_size);
    assert!(!failed);
    assert_eq!(back, data);

    // (3) our deflated answers
    let mut sent = Vec::new();
    let mut stream = Deflate::new(&mut sent, Vec::new());
    let mut cx = Context::from_waker(Waker::noop());
    let mut start = 0;
    for &end in &ends {
        let mut piece = &data[start..end];
        start = end;
        while !piece.is_empty() {
            let n = ready(Pin::new(&mut stream).poll_write(&mut cx, piece)).expect("write");
            assert!(n > 0 && n <= piece.len());
            piece = &piece[n..];
        }
        ready(Pin::new(&mut stream).poll_flush(&mut cx)).expect("flush");
    }
    drop(stream);
    assert_eq!(reference_inflate(&sent), data);
}

fn ready<T>(poll: Poll<T>) -> T {
    match poll {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory stream returned Pending"),
    }
}

/// Reads until end of stream or error; returns the bytes and whether an
/// error ended the reading.
fn read_all<S: AsyncRead + Unpin>(mut stream: Deflate<S>, read_size: usize) -> (Vec<u8>, bool) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut buf = vec![0u8; read_size];
    while out.len() < MAX_INFLATED {
        let mut rb = ReadBuf::new(&mut buf);
        match ready(Pin::new(&mut stream).poll_read(&mut cx, &mut rb)) {
            Ok(()) if rb.filled().is_empty() => return (out, false),
            Ok(()) => out.extend_from_slice(rb.filled()),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                return (out, true);
            }
        }
    }
    out.truncate(MAX_INFLATED);
    (out, false)
}

/// Raw inflate of `data` with flate2 alone, up to [`MAX_INFLATED`] bytes,
/// stopping at the end of the stream or the first error.
fn reference_inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(4096);
    loop {
        if out.len() >= MAX_INFLATED {
            out.truncate(MAX_INFLATED);
            return out;
        }
        if out.capacity() == out.len() {
            out.reserve(4096);
        }
        let before = (d.total_in(), d.total_out());
        let consumed = d.total_in() as usize;
        match d.decompress_vec(&data[consumed..], &mut out, FlushDecompress::None) {
            Ok(Status::StreamEnd) | Err(_) => return out,
            Ok(_) if (d.total_in(), d.total_out()) == before => return out,
            Ok(_) => {}
        }
    }
}

/// What a client does: deflate, then a sync flush.
fn deflate(c: &mut Compress, data: &[u8], wire: &mut Vec<u8>) {
    let start = c.total_in();
    loop {
        let done = (c.total_in() - start) as usize;
        wire.reserve(data.len() + 64);
        let before = c.total_out();
        c.compress_vec(&data[done..], wire, FlushCompress::Sync)
            .expect("deflate");
        if (c.total_in() - start) as usize == data.len() && wire.len() < wire.capacity() {
            break;
        }
        assert!(c.total_out() > before || (c.total_in() - start) as usize > done);
    }
}
