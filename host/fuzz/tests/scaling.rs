//! No quadratic blow-up: each target on inputs built by repeating a unit
//! that its parser handles in a loop (command lines, header fields, MIME
//! parts, address lists, dot-stuffed lines, shift sequences), at two
//! sizes 8 times apart. Linear work takes about 8 times longer on the
//! larger one, quadratic work 64 times; the test fails above 32 times
//! (with some slack for very short runs on a busy machine).
//!
//! The fuzzer cannot see this: its inputs are at most 8 KiB, where even
//! quadratic work is fast.

use std::time::{Duration, Instant};

use mailgate_fuzz::TARGETS;

const SMALL: usize = 16 * 1024;
const FACTOR: usize = 8;
const MAX_RATIO: u32 = 32;
const SLACK: Duration = Duration::from_millis(100);

/// An input of about `size` bytes: `head`, `unit` repeated, `tail`.
fn build(head: &[u8], unit: &[u8], tail: &[u8], size: usize) -> Vec<u8> {
    let mut v = head.to_vec();
    while v.len() + unit.len() + tail.len() <= size {
        v.extend_from_slice(unit);
    }
    v.extend_from_slice(tail);
    v
}

fn time(run: fn(&[u8]), input: &[u8]) -> Duration {
    // The best of three: the machine may be busy.
    (0..3)
        .map(|_| {
            let started = Instant::now();
            run(input);
            started.elapsed()
        })
        .min()
        .expect("three runs")
}

fn check(target: &str, head: &[u8], unit: &[u8], tail: &[u8]) {
    let Some(t) = TARGETS.iter().find(|t| t.name == target) else {
        return; // `config` without its feature
    };
    let small = time(t.run, &build(head, unit, tail, SMALL));
    let large = time(t.run, &build(head, unit, tail, SMALL * FACTOR));
    assert!(
        large <= small * MAX_RATIO + SLACK,
        "{target} on {:?}: {small:?} for {SMALL} bytes, {large:?} for {} bytes",
        String::from_utf8_lossy(unit),
        SMALL * FACTOR
    );
}

/// Parameter bytes that select the defaults and no cut (see each target).
const P8: &[u8] = &[0; 8];
const P5: &[u8] = &[0; 5];

#[test]
fn smtp() {
    check(
        "smtp_command",
        P8,
        b"RCPT TO:<a@example.org> NOTIFY=SUCCESS\r\n",
        b"",
    );
    check("smtp_command", P8, b"NOOP\n", b"QUIT\r\n");
    check("smtp_command", P8, b"MAIL FROM:<", b">\r\n");
    check("smtp_data", P5, b"..x\r\n", b".\r\n");
    check("smtp_data", P5, b"\r", b"");
    check(
        "smtp_bdat",
        &[0, 0, 1, 0xff, 0xff, 0, 0, 0, 0],
        b"a\r\n",
        b"",
    );
}

#[test]
fn imap() {
    let p7: &[u8] = &[0; 7];
    check("imap_framer", p7, b"a1 NOOP\r\n", b"");
    check("imap_framer", p7, b"a LOGIN {1+}\r\nx ", b"\r\n");
    check("imap_command", b"a SEARCH", b" ALL", b"");
    check("imap_command", b"a FETCH 1", b",1:*", b" FLAGS");
    check("imap_command", b"a FETCH 1 (", b"FLAGS ", b"UID)");
    check("imap_command", b"a SEARCH (", b"(ALL) ", b")");
    check("imap_command", b"a LOGIN \"", b"\\\"", b"\" x");
    check("mutf7", b"", b"&ZeVnLIqe-", b"");
    check("mutf7", b"", "\u{65e5}a".as_bytes(), b"");
    check("imap_compress", &[0xff, 0, 0, 0, 0, 0], b"a1 NOOP\r\n", b"");
}

#[test]
fn pop3() {
    check("pop3", &[0, 2, 0, 0, 0, 0], b".x\r\n", b"");
    check("pop3", &[0, 2, 0, 0, 0, 0], b"USER a\n", b"");
}

#[test]
fn structure() {
    check(
        "structure",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n",
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n",
        b"--b--\r\n",
    );
    check("structure", b"To: ", b"a@b, ", b"\r\n\r\n");
    check("structure", b"To: ", b"g: a@b;, ", b"\r\n\r\n");
    check("structure", b"Subject: x", b"\r\n y", b"\r\n\r\n");
    check("structure", b"", b"X-A: y\r\n", b"\r\n");
    check(
        "structure",
        b"Content-Type: text/plain",
        b"; a=\"b\"",
        b"\r\n\r\n",
    );
    check(
        "structure",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"",
    );
}

#[test]
fn config() {
    check(
        "config",
        b"hostname = \"mx\"\ndata_dir = \"/d\"\ndomains = [",
        b"\"a.example\", ",
        b"]\n[listen]\nsmtp = \"127.0.0.1:25\"\n",
    );
}

#[test]
fn sieve() {
    check("sieve_compile", b"", b"keep; ", b"");
    check(
        "sieve_compile",
        b"",
        b"if header :contains \"subject\" \"x\" { keep; } ",
        b"",
    );
    check("sieve_compile", b"if anyof(", b"true, ", b"true) {}");
    check("sieve_compile", b"keep; # ", b"x", b"\n");
    check("sieve_compile", b"keep; \"", b"\\\"", b"\";");
    check(
        "sieve_compile",
        b"require \"variables\"; set \"a\" \"",
        b"${a}x",
        b"\";",
    );
}
