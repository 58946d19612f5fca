//! Escaping and cutting one value for a log line.
//!
//! The rules (the same for every value, whoever chose it):
//! - C0 control characters (U+0000 to U+001F, among them CR, LF, TAB and
//!   ESC) and DEL are written `\xNN` (two lower-case hex digits);
//! - C1 control characters (U+0080 to U+009F, which some terminals take
//!   as escape sequences), the Unicode line and paragraph separators
//!   (U+2028, U+2029, which some log viewers break lines at) and the
//!   bidirectional controls (U+061C, U+200E, U+200F, U+202A to U+202E,
//!   U+2066 to U+2069, which reorder what a reader sees) are written
//!   `\u{NNNN}`;
//! - everything else is written as it is (a backslash too: `\x0a` in a
//!   log line may be four characters a client typed, but never a line
//!   break);
//! - a value whose escaped form is longer than its bound is cut at a
//!   character boundary and ends with `…(+N bytes)`, N being the length
//!   of what was left out.
//!
//! Bytes that are not UTF-8 cannot reach a `&str`; a call site that logs
//! client bytes wraps them in [`bytes`] (or [`LogBytes`]), which writes
//! each byte of an invalid sequence as `\xNN` instead of the U+FFFD that
//! `String::from_utf8_lossy` would make of it.

use std::fmt::{self, Write};

/// How a character is written in a log line: as itself, or escaped.
fn escaped(c: char) -> Option<Escaped> {
    match c {
        '\0'..='\x1f' | '\x7f' => Some(Escaped::Hex(c as u8)),
        '\u{80}'..='\u{9f}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => Some(Escaped::Unicode(c as u32)),
        _ => None,
    }
}

enum Escaped {
    Hex(u8),
    Unicode(u32),
}

impl Escaped {
    fn write(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = match self {
            Escaped::Hex(b) => write!(out, "\\x{b:02x}"),
            Escaped::Unicode(u) => write!(out, "\\u{{{u:04x}}}"),
        };
    }

    fn len(&self) -> usize {
        match self {
            Escaped::Hex(_) => 4,
            Escaped::Unicode(u) => 4 + format!("{u:04x}").len(),
        }
    }
}

/// Whether `s` can be written to a log line as it is (nothing in it
/// needs escaping).
pub fn is_clean(s: &str) -> bool {
    s.chars().all(|c| escaped(c).is_none())
}

/// Appends `s` to `out` escaped, without a bound.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match escaped(c) {
            Some(e) => e.write(out),
            None => out.push(c),
        }
    }
}

/// `s` escaped, without a bound (for a value that is bounded already).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// A [`fmt::Write`] that escapes what is written to it into a `String`
/// and stops at `bound` bytes of output, counting what it left out. A
/// value is rendered through it whole (so a 60 KB `Display` is never
/// copied), and [`Bounded::finish`] adds the `…(+N bytes)` marker.
pub struct Bounded<'a> {
    out: &'a mut String,
    left: usize,
    cut: usize,
}

impl<'a> Bounded<'a> {
    /// Escapes into `out`, at most `bound` bytes of it.
    pub fn new(out: &'a mut String, bound: usize) -> Bounded<'a> {
        Bounded {
            out,
            left: bound,
            cut: 0,
        }
    }

    /// Writes the marker if anything was cut; returns how many bytes were.
    pub fn finish(self) -> usize {
        if self.cut > 0 {
            let _ = write!(self.out, "…(+{} bytes)", self.cut);
        }
        self.cut
    }
}

impl Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut > 0 {
            self.cut += s.len();
            return Ok(());
        }
        for (i, c) in s.char_indices() {
            let e = escaped(c);
            let len = e.as_ref().map_or(c.len_utf8(), Escaped::len);
            if len > self.left {
                self.cut = s.len() - i;
                return Ok(());
            }
            self.left -= len;
            match e {
                Some(e) => e.write(self.out),
                None => self.out.push(c),
            }
        }
        Ok(())
    }
}

/// `s` escaped and cut to `bound` bytes (plus the marker).
pub fn bounded(s: &str, bound: usize) -> String {
    let mut out = String::with_capacity(s.len().min(bound) + 16);
    let mut b = Bounded::new(&mut out, bound);
    let _ = b.write_str(s);
    b.finish();
    out
}

/// Client bytes for a log line: UTF-8 runs as text, each byte of an
/// invalid sequence as `\xNN`. Control characters are left to the log
/// formatter, which escapes them the same way (so `\r` and a stray
/// `\xff` look alike: `\x0d`, `\xff`).
#[derive(Clone, Copy)]
pub struct LogBytes<'a>(pub &'a [u8]);

/// Wraps client bytes for a log field: `tracing::info!(id = %bytes(raw))`.
pub fn bytes(b: &[u8]) -> LogBytes<'_> {
    LogBytes(b)
}

impl fmt::Display for LogBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for LogBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Client bytes as an owned `String` in the same notation as [`bytes`]
/// (for values kept as text, e.g. a parsed IMAP ID field).
pub fn bytes_to_string(b: &[u8]) -> String {
    bytes(b).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_hex() {
        assert_eq!(
            escape("bob\r\n2026 INFO x\x1b[31m\t\x7f\0"),
            "bob\\x0d\\x0a2026 INFO x\\x1b[31m\\x09\\x7f\\x00"
        );
    }

    #[test]
    fn c1_separators_and_bidi_become_unicode_escapes() {
        assert_eq!(
            escape("a\u{9b}b\u{2028}c\u{202e}d\u{85}"),
            "a\\u{009b}b\\u{2028}c\\u{202e}d\\u{0085}"
        );
        assert!(is_clean("jürgen ✉ plain"));
        assert!(!is_clean("a\nb"));
    }

    #[test]
    fn printable_text_is_unchanged() {
        let s = "jürgen@example.test \"quoted\" back\\slash ✉";
        assert_eq!(escape(s), s);
        assert_eq!(bounded(s, 256), s);
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        let s = "a".repeat(60_000);
        let out = bounded(&s, 256);
        assert_eq!(
            out,
            format!("{}…(+{} bytes)", "a".repeat(256), 60_000 - 256)
        );
        // The bound counts escaped bytes: 100 LFs are 400 bytes escaped.
        let out = bounded(&"\n".repeat(100), 256);
        assert_eq!(out, format!("{}…(+36 bytes)", "\\x0a".repeat(64)));
        // Never cut inside a character.
        let out = bounded(&"ü".repeat(200), 255);
        assert!(out.starts_with(&"ü".repeat(127)), "{out}");
        assert!(out.ends_with("…(+146 bytes)"), "{out}");
    }

    #[test]
    fn cut_across_several_writes() {
        let mut out = String::new();
        let mut b = Bounded::new(&mut out, 5);
        for part in ["abc", "def", "ghi"] {
            b.write_str(part).unwrap();
        }
        assert_eq!(b.finish(), 4);
        assert_eq!(out, "abcde…(+4 bytes)");
    }

    #[test]
    fn invalid_utf8_bytes_become_hex() {
        assert_eq!(
            bytes_to_string(b"ok \xff\xfe j\xc3\xbcrgen \xc3"),
            "ok \\xff\\xfe jürgen \\xc3"
        );
        assert_eq!(format!("{:?}", bytes(b"a\xff")), "\"a\\xff\"");
    }
}
