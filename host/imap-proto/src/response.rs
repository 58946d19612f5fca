//! Writing responses (RFC 9051 §7). Everything goes into a `Vec<u8>` the
//! session hands to the network loop.
//!
//! ```abnf
//! response-tagged = tag SP resp-cond-state CRLF
//! resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
//! resp-text       = ["[" resp-text-code "]" SP] [text]
//! continue-req    = "+" [SP (resp-text / base64)] CRLF
//! string          = quoted / literal
//! ```

/// The state of a tagged or untagged status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// OK
    Ok,
    /// NO
    No,
    /// BAD
    Bad,
    /// BYE (untagged only)
    Bye,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
        }
    }
}

/// Strips CR and LF from text that goes into a response line, so that no
/// client-controlled value can end a line early.
fn clean(text: &str) -> String {
    text.chars().filter(|&c| c != '\r' && c != '\n').collect()
}

/// Writes `tag STATUS [code] text`. `tag` None writes `*`.
pub fn write_status(
    out: &mut Vec<u8>,
    tag: Option<&str>,
    status: Status,
    code: Option<&str>,
    text: &str,
) {
    out.extend_from_slice(tag.unwrap_or("*").as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    if let Some(code) = code {
        out.push(b'[');
        out.extend_from_slice(clean(code).as_bytes());
        out.extend_from_slice(b"] ");
    }
    out.extend_from_slice(clean(text).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes an untagged line `* text`.
pub fn write_untagged(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(clean(text).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes a continuation request `+ text`.
pub fn write_continue(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(clean(text).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes a `string`: quoted when that is possible (short, no CR, LF or
/// NUL, and either ASCII or `utf8` allowed), a literal otherwise.
pub fn write_string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() <= 1024
        && s.iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (utf8 || b < 0x80))
        && (!utf8 || std::str::from_utf8(s).is_ok());
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        write_literal(out, s);
    }
}

/// Writes a literal `{n}CRLF` + bytes.
pub fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Writes `nstring`: NIL or a string.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => write_string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut o = Vec::new();
        write_string(&mut o, b"a \"b\" \\", false);
        assert_eq!(o, b"\"a \\\"b\\\" \\\\\"");
        o.clear();
        write_string(&mut o, b"two\r\nlines", false);
        assert_eq!(o, b"{10}\r\ntwo\r\nlines");
        o.clear();
        write_string(&mut o, "caf\u{e9}".as_bytes(), false);
        assert_eq!(o, b"{5}\r\ncaf\xc3\xa9");
        o.clear();
        write_string(&mut o, "caf\u{e9}".as_bytes(), true);
        assert_eq!(o, "\"caf\u{e9}\"".as_bytes());
        o.clear();
        write_nstring(&mut o, None, true);
        assert_eq!(o, b"NIL");
    }

    #[test]
    fn status_lines_cannot_be_split() {
        let mut o = Vec::new();
        write_status(
            &mut o,
            Some("a1"),
            Status::No,
            Some("TRYCREATE"),
            "no\r\n* OK evil",
        );
        assert_eq!(o, b"a1 NO [TRYCREATE] no* OK evil\r\n");
    }
}
