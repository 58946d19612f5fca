//! Feeds hundreds of thousands of deterministic pseudo-random inputs to
//! every entry point; none may panic, and the framer and receivers must
//! keep their accounting straight.

use mailgate_smtp_proto::*;

/// xorshift64: tiny, deterministic, good enough to shake parsers.
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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "MAIL FROM:",
    "RCPT TO:",
    "EHLO ",
    "HELO ",
    "BDAT ",
    "AUTH ",
    "DATA",
    "VRFY ",
    "<",
    ">",
    "<>",
    "@",
    ".",
    ",",
    ":",
    "\"",
    "\\",
    "[",
    "]",
    "IPv6:",
    "::1",
    "1.2.3.4",
    " ",
    "=",
    "SIZE=",
    "BODY=",
    "8BITMIME",
    "SMTPUTF8",
    "NOTIFY=",
    "ORCPT=",
    "rfc822;",
    "+2B",
    "ü",
    "例",
    "LAST",
    "postmaster",
    "a",
    "example.org",
    "-",
    "%",
    "!",
    "99999999999999999999999",
    "\r",
    "\n",
    "\0",
    "\u{7f}",
];

fn random_line(rng: &mut XorShift) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.below(4) == 0 {
        let n = rng.below(40);
        out.extend((0..n).map(|_| rng.next() as u8));
    } else {
        for _ in 0..rng.below(12) {
            out.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes());
        }
    }
    // Sometimes cut at a random byte (may split a UTF-8 sequence).
    if !out.is_empty() && rng.below(5) == 0 {
        let cut = rng.below(out.len());
        out.truncate(cut);
    }
    out
}

#[test]
fn parser_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for _ in 0..300_000 {
        let line = random_line(&mut rng);
        match Request::parse(&line) {
            Ok(req) => {
                parsed += 1;
                let _ = req.verb();
            }
            Err(e) => {
                let r = e.reply();
                assert!(r.is_error());
                assert!(r.to_bytes().ends_with(b"\r\n"));
            }
        }
    }
    assert!(
        parsed > 1000,
        "the generator should hit valid commands too ({parsed})"
    );
}

fn random_stream(rng: &mut XorShift) -> Vec<u8> {
    const BYTES: &[u8] = b"\r\n.a";
    let n = rng.below(200);
    (0..n)
        .map(|_| {
            if rng.below(8) == 0 {
                rng.next() as u8
            } else {
                BYTES[rng.below(BYTES.len())]
            }
        })
        .collect()
}

#[test]
fn receivers_and_framer_never_panic() {
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    let limits = DataLimits {
        max_message_size: 64,
        max_line_length: 16,
    };
    for _ in 0..100_000 {
        let input = random_stream(&mut rng);
        let split = rng.below(input.len() + 1);

        let mut rx = DataReceiver::new(limits);
        let (a, sa) = rx.ingest(&input[..split]);
        let mut total = a;
        if sa == DataStatus::NeedMore {
            assert_eq!(a, split);
            total += rx.ingest(&input[split..]).0;
        }
        assert!(total <= input.len());
        let msg = rx.finish();
        assert!(msg.data.len() as u64 <= limits.max_message_size);

        let mut bdat = BdatReceiver::new(limits, rng.below(2) == 0);
        bdat.start_chunk(rng.below(300) as u64);
        let (n, _) = bdat.ingest(&input);
        assert!(n <= input.len());
        let _ = bdat.finish();

        let mut framer = LineFramer::new(rng.below(40));
        let mut rest = &input[..];
        while !rest.is_empty() {
            let (n, line) = framer.next_line(rest);
            assert!(n > 0 && n <= rest.len());
            if let Some(Ok(line)) = line {
                assert!(line.len() < framer.max_line());
                let _ = Request::parse(&line);
            }
            rest = &rest[n..];
        }
    }
}
