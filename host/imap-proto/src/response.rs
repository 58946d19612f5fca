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
        write_quoted(out, s);
    } else {
        write_literal(out, s);
    }
}

/// Writes `s` as a quoted string, `"` and `\` escaped with `\`; the
/// caller has checked that it may be quoted (no CR, LF or NUL). The same
/// form as ManageSieve's (RFC 5804 section 4), which uses it too.
pub fn write_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// What an ordinary literal carries in place of a NUL byte.
///
/// RFC 9051 §4.3: "CHAR8 = %x01-ff ; any OCTET except NUL, %x00", so a
/// `{n}` literal can never carry NUL. A message holding NUL is shown with
/// each NUL replaced by this byte, as Dovecot does; the size stays the
/// same. Only a `literal8` (`~{n}`, RFC 3516 BINARY) carries NUL as it is.
pub const NUL_REPLACEMENT: u8 = 0x80;

/// Writes a literal `{n}CRLF` + bytes, NUL replaced by
/// [`NUL_REPLACEMENT`].
pub fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    write_literal_start(out, s.len() as u64, false);
    write_literal_data(out, s);
}

/// Writes a `literal8` (RFC 3516 §4.2) `~{n}CRLF` + bytes, NUL included.
pub fn write_literal8(out: &mut Vec<u8>, s: &[u8]) {
    write_literal_start(out, s.len() as u64, true);
    out.extend_from_slice(s);
}

/// Writes the announcement of a literal of `len` bytes, `{n}CRLF` (or
/// `~{n}CRLF` if `binary`); its bytes follow, possibly in parts, through
/// [`write_literal_data`] (or as they are for a `literal8`).
pub fn write_literal_start(out: &mut Vec<u8>, len: u64, binary: bool) {
    if binary {
        out.push(b'~');
    }
    out.extend_from_slice(format!("{{{len}}}\r\n").as_bytes());
}

/// Writes bytes of an ordinary literal, NUL replaced by
/// [`NUL_REPLACEMENT`].
pub fn write_literal_data(out: &mut Vec<u8>, s: &[u8]) {
    let mut rest = s;
    while let Some(i) = rest.iter().position(|&b| b == 0) {
        out.extend_from_slice(&rest[..i]);
        out.push(NUL_REPLACEMENT);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
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
    fn literals_never_carry_nul() {
        let mut o = Vec::new();
        write_literal(&mut o, b"a\0b\0");
        assert_eq!(o, b"{4}\r\na\x80b\x80");
        o.clear();
        write_string(&mut o, b"x\0y", true);
        assert_eq!(o, b"{3}\r\nx\x80y");
        o.clear();
        write_literal8(&mut o, b"a\0");
        assert_eq!(o, b"~{2}\r\na\0");
        o.clear();
        write_literal_start(&mut o, 3, false);
        write_literal_data(&mut o, b"\0");
        write_literal_data(&mut o, b"z\0");
        assert_eq!(o, b"{3}\r\n\x80z\x80");
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
