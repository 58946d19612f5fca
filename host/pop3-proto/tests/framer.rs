//! The line framer: endings, limits, over-long lines, split input.

use mailgate_pop3_proto::{Frame, LineFramer, MAX_LINE_LEN, RFC2449_MAX_COMMAND_LEN};

/// Feeds `input` in chunks of `chunk` bytes and collects every frame.
fn frames(framer: &mut LineFramer, input: &[u8], chunk: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut pos = 0;
        while pos < piece.len() {
            let (used, frame) = framer.feed(&piece[pos..]);
            assert!(used > 0 || frame.is_some(), "no progress");
            pos += used;
            out.extend(frame);
        }
    }
    out
}

fn line(s: &[u8]) -> Frame {
    Frame::Line(s.to_vec())
}

#[test]
fn limits() {
    assert_eq!(RFC2449_MAX_COMMAND_LEN, 255);
    assert_eq!(MAX_LINE_LEN, 512);
    assert_eq!(LineFramer::new().limit(), 512);
    assert_eq!(LineFramer::default().limit(), 512);
    assert_eq!(LineFramer::with_limit(0).limit(), 2);
}

#[test]
fn crlf_bare_lf_and_pipelining() {
    let input = b"USER a\r\nPASS b\nSTAT\r\n\r\nNOOP\r\r\n";
    let want = vec![
        line(b"USER a"),
        line(b"PASS b"),
        line(b"STAT"),
        line(b""),
        line(b"NOOP\r"),
    ];
    for chunk in [1, 2, 3, 7, 100] {
        let mut f = LineFramer::new();
        assert_eq!(frames(&mut f, input, chunk), want, "chunk {chunk}");
        assert!(!f.has_partial());
    }
}

#[test]
fn partial_line_is_kept() {
    let mut f = LineFramer::new();
    assert_eq!(f.feed(b"ST"), (2, None));
    assert!(f.has_partial());
    assert_eq!(f.feed(b"AT\r"), (3, None));
    assert_eq!(f.feed(b"\nNOOP\r\n"), (1, Some(line(b"STAT"))));
    assert_eq!(f.feed(b"NOOP\r\n"), (6, Some(line(b"NOOP"))));
    assert_eq!(f.feed(b""), (0, None));
}

#[test]
fn exact_limit_is_accepted() {
    // 510 octets + CRLF = 512, and 511 octets + LF = 512: both fit.
    let mut input = vec![b'a'; 510];
    input.extend_from_slice(b"\r\n");
    input.extend(vec![b'b'; 511]);
    input.push(b'\n');
    for chunk in [1, 5, 512, 2000] {
        let got = frames(&mut LineFramer::new(), &input, chunk);
        assert_eq!(
            got,
            vec![line(&[b'a'; 510]), line(&[b'b'; 511])],
            "chunk {chunk}"
        );
    }
}

#[test]
fn over_long_lines_are_reported_once_and_skipped() {
    let mut input = vec![b'x'; 511];
    input.extend_from_slice(b"\r\nSTAT\r\n");
    input.extend(vec![b'y'; 100_000]);
    input.extend_from_slice(b"\nQUIT\r\n");
    for chunk in [1, 3, 64, 511, 512, 513, 200_000] {
        let got = frames(&mut LineFramer::new(), &input, chunk);
        assert_eq!(
            got,
            vec![Frame::TooLong, line(b"STAT"), Frame::TooLong, line(b"QUIT")],
            "chunk {chunk}"
        );
    }
}

#[test]
fn over_long_line_is_not_buffered() {
    let mut f = LineFramer::with_limit(16);
    let (used, frame) = f.feed(&[b'z'; 10_000]);
    assert_eq!((used, frame), (10_000, None));
    assert!(f.has_partial());
    assert_eq!(f.feed(b"zzz\r\nNOOP\r\n"), (5, Some(Frame::TooLong)));
    assert!(!f.has_partial());
    assert_eq!(f.feed(b"NOOP\r\n"), (6, Some(line(b"NOOP"))));
}
