//! BODY[section] and BINARY[section] contents: ranges of the raw message
//! by the byte ranges saved at delivery (not copies), and
//! content-transfer decoding for BINARY (RFC 3516).

use std::ops::Range;

use mailgate_imap_proto::{Section, SectionSpec};
use mailgate_store::structure::{header_fields, ByteRange, SectionText};
use mailgate_store::MessageStructure;

/// The contents of a section: a range of the loaded message, or bytes
/// made for the answer (HEADER.FIELDS, decoded BINARY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    /// These bytes of the raw message.
    Range(Range<usize>),
    /// Bytes of their own.
    Owned(Vec<u8>),
}

impl Data {
    /// A saved byte range, clamped to the message as loaded.
    pub(crate) fn of(range: ByteRange, raw: &[u8]) -> Data {
        let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX).min(raw.len());
        let start = clamp(range.start);
        Data::Range(start..clamp(range.end).max(start))
    }

    /// The bytes, `raw` being the message they were taken from.
    pub(crate) fn bytes<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        match self {
            Data::Range(r) => raw.get(r.clone()).unwrap_or_default(),
            Data::Owned(v) => v,
        }
    }

    /// The part `<origin.count>` asks for (RFC 9051 §6.4.5: an origin
    /// past the end gives nothing, a count past the end stops there).
    pub(crate) fn partial(self, partial: Option<(u64, u64)>) -> Data {
        let Some((origin, count)) = partial else {
            return self;
        };
        let cut = |len: usize| {
            let start = usize::try_from(origin).unwrap_or(usize::MAX).min(len);
            let end = start
                .saturating_add(usize::try_from(count).unwrap_or(usize::MAX))
                .min(len);
            (start, end)
        };
        match self {
            Data::Range(r) => {
                let (start, end) = cut(r.len());
                Data::Range(r.start + start..r.start + end)
            }
            Data::Owned(mut v) => {
                let (start, end) = cut(v.len());
                v.truncate(end);
                v.drain(..start);
                Data::Owned(v)
            }
        }
    }
}

/// The bytes of `BODY[section]`, before any partial; None when the
/// section does not exist.
pub(super) fn body_section(raw: &[u8], st: &MessageStructure, section: &Section) -> Option<Data> {
    let text = match &section.text {
        None => SectionText::Full,
        Some(SectionSpec::Header | SectionSpec::HeaderFields { .. }) => SectionText::Header,
        Some(SectionSpec::Text) => SectionText::Text,
        Some(SectionSpec::Mime) => SectionText::Mime,
    };
    if section.part.is_empty() && text == SectionText::Full {
        return Some(Data::Range(0..raw.len()));
    }
    let range = st.section(&section.part, text)?;
    let Some(SectionSpec::HeaderFields { not, fields }) = &section.text else {
        return Some(Data::of(range, raw));
    };
    let bytes = range.slice(raw);
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
    Some(Data::Owned(out))
}

/// Why BINARY cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BinaryError {
    /// No such part.
    Missing,
    /// RFC 3516 §4.3: `[UNKNOWN-CTE]`.
    UnknownEncoding,
}

/// How the contents of a part are decoded for BINARY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    /// As they are (the whole message, a multipart, 7bit/8bit/binary).
    None,
    Base64,
    QuotedPrintable,
}

/// Whether `BINARY[part]` can be answered, and how: checked before any
/// of a message's answer is written.
fn binary_decoding(st: &MessageStructure, part: &[u32]) -> Result<Decoding, BinaryError> {
    if part.is_empty() {
        return Ok(Decoding::None);
    }
    let p = st.part(part).ok_or(BinaryError::Missing)?;
    if !p.children().is_empty() || p.message().is_some() {
        return Ok(Decoding::None);
    }
    match p.encoding.to_ascii_lowercase().as_str() {
        "7bit" | "8bit" | "binary" | "" => Ok(Decoding::None),
        "base64" => Ok(Decoding::Base64),
        "quoted-printable" => Ok(Decoding::QuotedPrintable),
        _ => Err(BinaryError::UnknownEncoding),
    }
}

/// Checks that `BINARY[part]` can be answered.
pub(super) fn binary_check(st: &MessageStructure, part: &[u32]) -> Result<(), BinaryError> {
    binary_decoding(st, part).map(|_| ())
}

/// The decoded contents of `BINARY[part]`.
pub(super) fn binary_section(
    raw: &[u8],
    st: &MessageStructure,
    part: &[u32],
) -> Result<Data, BinaryError> {
    let decoding = binary_decoding(st, part)?;
    let Some(p) = st.part(part).filter(|_| !part.is_empty()) else {
        return Ok(Data::Range(0..raw.len()));
    };
    let body = Data::of(p.body, raw);
    Ok(match decoding {
        Decoding::None => body,
        Decoding::Base64 => Data::Owned(decode_base64(body.bytes(raw))),
        Decoding::QuotedPrintable => Data::Owned(decode_qp(body.bytes(raw))),
    })
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
    fn partial_of_ranges_and_owned_bytes() {
        let raw = b"0123456789";
        for data in [Data::Range(2..8), Data::Owned(b"234567".to_vec())] {
            for (p, want) in [
                (None, &b"234567"[..]),
                (Some((0, 2)), b"23"),
                (Some((4, 100)), b"67"),
                (Some((6, 1)), b""),
                (Some((u64::MAX, u64::MAX)), b""),
            ] {
                let got = data.clone().partial(p);
                assert_eq!(got.bytes(raw), want, "{data:?} {p:?}");
            }
        }
    }

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
