//! BODY[section] and BINARY[section] contents: slices of the raw message
//! by the byte ranges saved at delivery, and content-transfer decoding for
//! BINARY (RFC 3516).

use std::borrow::Cow;

use mailgate_imap_proto::{Section, SectionSpec};
use mailgate_store::structure::{header_fields, SectionText};
use mailgate_store::MessageStructure;

/// The bytes of `BODY[section]`, before any partial; None when the
/// section does not exist.
pub(super) fn body_section<'a>(
    raw: &'a [u8],
    st: &MessageStructure,
    section: &Section,
) -> Option<Cow<'a, [u8]>> {
    let text = match &section.text {
        None => SectionText::Full,
        Some(SectionSpec::Header | SectionSpec::HeaderFields { .. }) => SectionText::Header,
        Some(SectionSpec::Text) => SectionText::Text,
        Some(SectionSpec::Mime) => SectionText::Mime,
    };
    if section.part.is_empty() && text == SectionText::Full {
        return Some(Cow::Borrowed(raw));
    }
    let range = st.section(&section.part, text)?;
    let bytes = range.slice(raw);
    let Some(SectionSpec::HeaderFields { not, fields }) = &section.text else {
        return Some(Cow::Borrowed(bytes));
    };
    // RFC 9051 §6.4.5: "a subset of the header [...] The subset returned
    // also includes the blank line at the end of the header".
    let mut out = Vec::new();
    for f in header_fields(bytes) {
        // A line without a name (damaged header) is never "listed", so
        // HEADER.FIELDS.NOT keeps it and HEADER.FIELDS drops it.
        let listed = !f.name.is_empty() && fields.iter().any(|name| f.is(name));
        if listed != *not {
            out.extend_from_slice(bytes.get(f.range.clone()).unwrap_or_default());
        }
    }
    out.extend_from_slice(b"\r\n");
    Some(Cow::Owned(out))
}

/// Why BINARY cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BinaryError {
    /// No such part.
    Missing,
    /// RFC 3516 §4.3: `[UNKNOWN-CTE]`.
    UnknownEncoding,
}

/// The decoded contents of `BINARY[part]`.
pub(super) fn binary_section<'a>(
    raw: &'a [u8],
    st: &MessageStructure,
    part: &[u32],
) -> Result<Cow<'a, [u8]>, BinaryError> {
    if part.is_empty() {
        return Ok(Cow::Borrowed(raw));
    }
    let p = st.part(part).ok_or(BinaryError::Missing)?;
    let body = p.body.slice(raw);
    if !p.children().is_empty() || p.message().is_some() {
        return Ok(Cow::Borrowed(body));
    }
    match p.encoding.to_ascii_lowercase().as_str() {
        "7bit" | "8bit" | "binary" | "" => Ok(Cow::Borrowed(body)),
        "base64" => Ok(Cow::Owned(decode_base64(body))),
        "quoted-printable" => Ok(Cow::Owned(decode_qp(body))),
        _ => Err(BinaryError::UnknownEncoding),
    }
}

/// Lenient base64 (RFC 2045 §6.8: "characters not in the alphabet are to
/// be ignored"); stops at padding.
fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7): `=XX`, soft line breaks `=CRLF`.
fn decode_qp(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < input.len() {
        let c = input[i];
        if c != b'=' {
            out.push(c);
            i += 1;
            continue;
        }
        match (input.get(i + 1), input.get(i + 2)) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(&a), Some(&b)) if hex(a).is_some() && hex(b).is_some() => {
                out.push((hex(a).unwrap_or(0) * 16 + hex(b).unwrap_or(0)) as u8);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(decode_base64(b"AA=="), [0]);
        assert_eq!(
            decode_qp(b"caf=C3=A9 =\r\nx=3D=\n"),
            "caf\u{e9} x=".as_bytes()
        );
        assert_eq!(decode_qp(b"bad=ZZ="), b"bad=ZZ=");
    }
}
