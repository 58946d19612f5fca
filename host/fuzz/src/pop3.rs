//! The POP3 target: line framing, command and SASL parsing, and the
//! multi-line answers (RETR, TOP) built from arbitrary messages.

use mailgate_pop3_proto::response::{write_message, write_top};
use mailgate_pop3_proto::{parse_command, parse_sasl_response, Frame, LineFramer};

use crate::input::{split_points, Input};

fn frames(limit: usize, stream: &[u8], ends: &[usize]) -> (Vec<Frame>, bool) {
    let mut framer = LineFramer::with_limit(limit);
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
                if let Frame::Line(line) = &frame {
                    // The limit counts the line ending, at least an LF.
                    assert!(line.len() < framer.limit(), "{} bytes", line.len());
                    assert!(!line.contains(&b'\n'));
                    let _ = parse_command(line);
                    let _ = parse_sasl_response(line);
                }
                out.push(frame);
            }
        }
    }
    (out, framer.has_partial())
}

/// `pop3`: (1) a command stream fed whole and cut at two arbitrary
/// points gives the same lines; no line exceeds the framer's limit; every
/// line goes to the command and SASL parsers. (2) The same bytes as a
/// stored message: the RETR and TOP answers end with the only
/// `CRLF.CRLF` in them, every line ends in CRLF, and removing the byte
/// stuffing gives the message's lines back.
pub fn pop3(bytes: &[u8]) {
    let mut inp = Input::new(bytes);
    let limit = match inp.byte() {
        0..=127 => mailgate_pop3_proto::MAX_LINE_LEN,
        n => usize::from(n - 128),
    };
    let top_lines = u32::from(inp.byte());
    let cuts = [inp.u16(), inp.u16()];
    let stream = inp.rest();
    let whole = frames(limit, stream, &[stream.len()]);
    let split = frames(limit, stream, &split_points(stream.len(), &cuts));
    assert_eq!(whole, split);

    let mut retr = Vec::new();
    write_message(&mut retr, stream);
    let lines = check_multiline(&retr);
    let expected: Vec<Vec<u8>> = message_lines(stream)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines, expected);

    let mut top = Vec::new();
    write_top(&mut top, stream, top_lines);
    let top_lines_out = check_multiline(&top);
    assert!(expected.starts_with(&top_lines_out));
}

/// Checks a multi-line answer and returns its lines, unstuffed.
fn check_multiline(out: &[u8]) -> Vec<Vec<u8>> {
    assert!(out.ends_with(b".\r\n"));
    let body = &out[..out.len() - 3];
    let mut lines = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("a line without CRLF in {out:?}"));
        assert!(!line.contains(&b'\n'));
        assert!(line != b".", "an early terminator in {out:?}");
        lines.push(line.strip_prefix(b".").unwrap_or(line).to_vec());
    }
    lines
}

/// The lines of a message as POP3 sends them: split at LF, a CR before
/// the LF dropped, a final LF not starting another line.
fn message_lines(raw: &[u8]) -> Vec<&[u8]> {
    if raw.is_empty() {
        return Vec::new();
    }
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}
