//! Pseudo-random input must never make the framer or the parsers panic,
//! and multi-line output must never contain the terminator early.

use mailgate_pop3_proto::response::{write_message, write_status, write_top};
use mailgate_pop3_proto::{
    parse_command, parse_sasl_response, Frame, LineFramer, ResponseCode, Status,
};

/// xorshift64: tiny, deterministic, good enough to shake a parser.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Bytes biased towards the interesting ones: keywords, digits, spaces,
/// dots and line endings.
fn random_input(rng: &mut XorShift) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"USER ",
        b"PASS ",
        b"LIST",
        b"RETR ",
        b"TOP ",
        b"UIDL",
        b"AUTH ",
        b"PLAIN",
        b"APOP ",
        b"STAT",
        b"=",
        b"*",
        b" ",
        b"  ",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"0",
        b"1",
        b"4294967296",
        b"\xff",
        b"\xc3",
        b"\0",
    ];
    let len = rng.below(40) as usize;
    let mut v = Vec::new();
    for _ in 0..len {
        if rng.below(3) == 0 {
            v.push(rng.next() as u8);
        } else {
            v.extend_from_slice(PIECES[rng.below(PIECES.len() as u64) as usize]);
        }
    }
    v
}

/// Checks the multi-line body ends with the only `CRLF . CRLF` in it.
fn terminated_once(out: &[u8]) {
    let framed = [b"\r\n".as_slice(), out].concat();
    let first = framed.windows(5).position(|w| w == b"\r\n.\r\n");
    assert_eq!(
        first,
        Some(framed.len() - 5),
        "early terminator in {:?}",
        String::from_utf8_lossy(out)
    );
}

#[test]
fn random_lines_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..300_000 {
        let input = random_input(&mut rng);
        let _ = parse_command(&input);
        let _ = parse_sasl_response(&input);
    }
}

#[test]
fn random_streams_frame_within_limit() {
    let mut rng = XorShift(42);
    for _ in 0..50_000 {
        let limit = 2 + rng.below(40) as usize;
        let mut framer = LineFramer::with_limit(limit);
        let input = random_input(&mut rng);
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + 1 + rng.below(16) as usize).min(input.len());
            let (used, frame) = framer.feed(&input[pos..end]);
            assert!(used <= end - pos);
            assert!(used > 0 || frame.is_some());
            if let Some(Frame::Line(line)) = frame {
                assert!(line.len() < limit);
                assert!(!line.contains(&b'\n'));
                let _ = parse_command(&line);
            }
            pos += used;
        }
    }
}

#[test]
fn random_messages_are_safely_stuffed() {
    let mut rng = XorShift(7);
    for _ in 0..50_000 {
        let raw = random_input(&mut rng);
        let mut out = Vec::new();
        write_message(&mut out, &raw);
        terminated_once(&out);
        let mut out = Vec::new();
        write_top(&mut out, &raw, rng.below(4) as u32);
        terminated_once(&out);
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(&raw);
        write_status(&mut out, Status::Err, Some(ResponseCode::SysTemp), &text);
        assert!(out.ends_with(b"\r\n"));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
