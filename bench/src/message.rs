//! The test messages. Each is generated from (run id, sequence number,
//! size, recipient), so the POP3 phase can regenerate any message and
//! compare what it retrieved byte for byte, without keeping them all.

/// The envelope sender and `From:` of every test message.
pub const SENDER: &str = "bench-sender@client.test";

/// The header that identifies a message of a run: `X-Bench-Id: RUN SEQ`.
const ID_HEADER: &[u8] = b"X-Bench-Id: ";

/// Body line length including CRLF: the usual 76 characters of text, far
/// below every server's line limit.
const LINE: usize = 78;

/// Every this many body lines, one starts with a dot, so that each
/// message exercises dot-stuffing in both directions (SMTP DATA, POP3 RETR).
const DOT_EVERY: usize = 40;

/// What fills the body lines after their `SEQ LINE ` prefix.
const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-=+_";

/// The smallest `--size` for which [`generate`] can produce a message: the
/// length of its header section.
pub fn min_size(run: &str, to: &str) -> usize {
    header(run, 0, to, false).len()
}

fn header(run: &str, seq: u64, to: &str, pad: bool) -> Vec<u8> {
    // Fixed-width numbers and a fixed Date keep the header length the same
    // for every message of a run, so all messages have exactly `size` bytes.
    format!(
        "From: <{SENDER}>\r\n\
         To: <{to}>\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\
         Subject: mailgate-bench message {seq:010}{pad}\r\n\
         Message-ID: <{run}.{seq:010}@client.test>\r\n\
         X-Bench-Id: {run} {seq:010}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n",
        pad = if pad { "." } else { "" },
    )
    .into_bytes()
}

/// Message number `seq` of run `run`: exactly `size` bytes, CRLF line
/// endings, ending in CRLF, not yet dot-stuffed. `size` must be at least
/// [`min_size`].
pub fn generate(run: &str, seq: u64, size: usize, to: &str) -> Vec<u8> {
    let mut head = header(run, seq, to, false);
    assert!(
        size >= head.len(),
        "message size {size} below the minimum {}",
        head.len()
    );
    // A body of one byte cannot be a CRLF-terminated line; give that byte
    // to the Subject instead.
    if size - head.len() == 1 {
        head = header(run, seq, to, true);
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&head);
    let mut remaining = size - head.len();
    let mut line_no = 0usize;
    while remaining > 0 {
        // Never leave a single byte for the last line (see above): take one
        // byte less from this line instead.
        let len = match remaining {
            r if r <= LINE => r,
            r if r - LINE == 1 => LINE - 1,
            _ => LINE,
        };
        let text = len - 2;
        let start = out.len();
        let prefix = format!("{seq:010} {line_no:06} ");
        out.extend(
            prefix
                .bytes()
                .chain(FILLER.iter().copied().cycle())
                .take(text),
        );
        if line_no % DOT_EVERY == DOT_EVERY - 1 && text > 0 {
            out[start] = b'.';
        }
        out.extend_from_slice(b"\r\n");
        remaining -= len;
        line_no += 1;
    }
    debug_assert_eq!(out.len(), size);
    out
}

/// The SMTP DATA payload for `message` (which ends in CRLF or is empty):
/// lines starting with `.` get another `.` (RFC 5321 §4.5.2), then the
/// terminating `.` line.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 512 + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The run id and sequence number of a retrieved message, from its
/// `X-Bench-Id:` header; `None` for a message some other sender put there.
pub fn identify(message: &[u8]) -> Option<(&str, u64)> {
    // Only the header section counts; a body could quote the header.
    let header_end = find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = &message[..header_end];
    let mut at = 0;
    while let Some(i) = find(&head[at..], ID_HEADER) {
        let start = at + i;
        at = start + ID_HEADER.len();
        if start != 0 && head[start - 1] != b'\n' {
            continue;
        }
        let value_end = find(&head[at..], b"\r\n").map_or(head.len(), |e| at + e);
        let value = std::str::from_utf8(&head[at..value_end]).ok()?;
        let (run, seq) = value.split_once(' ')?;
        return Some((run, seq.trim().parse().ok()?));
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A run id unlikely to repeat, so that messages left in a peer's mailbox
/// by an earlier run are not mistaken for this run's.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("r{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: &str = "bench@bench.test";

    #[test]
    fn every_size_is_exact_and_well_formed() {
        let min = min_size("run1", TO);
        for size in min..min + 400 {
            let m = generate("run1", 7, size, TO);
            assert_eq!(m.len(), size, "size {size}");
            assert!(m.ends_with(b"\r\n"));
            for line in m.split(|&b| b == b'\n') {
                assert!(line.len() < 1000);
            }
            // Bare CR or LF would be rewritten by some servers.
            assert_eq!(
                m.windows(2).filter(|w| w == b"\r\n").count(),
                m.iter().filter(|&&b| b == b'\n').count()
            );
        }
    }

    #[test]
    fn messages_differ_by_sequence_and_contain_dot_lines() {
        let a = generate("run1", 1, 10240, TO);
        let b = generate("run1", 2, 10240, TO);
        assert_ne!(a, b);
        assert!(
            a.windows(3).any(|w| w == b"\n.0"),
            "a line starting with a dot"
        );
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(
            dot_stuff(b".a\r\nb.\r\n..\r\n"),
            b"..a\r\nb.\r\n...\r\n.\r\n"
        );
    }

    #[test]
    fn identifies_own_messages_behind_added_headers() {
        let m = generate("run9", 123, 2000, TO);
        let mut received =
            b"Received: from client.test\r\n\tby bench.test; X-Bench-Id: x 1\r\n".to_vec();
        received.extend_from_slice(&m);
        assert_eq!(identify(&received), Some(("run9", 123)));
        assert_eq!(identify(b"Subject: hi\r\n\r\nX-Bench-Id: run9 1\r\n"), None);
    }

    #[test]
    fn run_ids_are_one_token() {
        let id = new_run_id();
        assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
