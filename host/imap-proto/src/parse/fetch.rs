//! FETCH items (RFC 9051 §9, RFC 3516 BINARY, RFC 7162 MODSEQ):
//!
//! ```abnf
//! fetch-att       = "ENVELOPE" / "FLAGS" / "INTERNALDATE" /
//!                   "RFC822" [".HEADER" / ".TEXT"] / "RFC822.SIZE" /
//!                   "BODY" ["STRUCTURE"] / "UID" /
//!                   "BODY" section [partial] /
//!                   "BODY.PEEK" section [partial] /
//!                   "BINARY" [".PEEK"] section-binary [partial] /
//!                   "BINARY.SIZE" section-binary / "MODSEQ"
//! partial         = "<" number64 "." nz-number64 ">"
//! section         = "[" [section-spec] "]"
//! section-spec    = section-msgtext / (section-part ["." section-text])
//! section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list /
//!                   "TEXT"
//! section-part    = nz-number *("." nz-number)
//! section-text    = section-msgtext / "MIME"
//! section-binary  = "[" [section-part] "]"
//! ```

use super::{Cursor, R};
use crate::command::{FetchAttr, Section, SectionSpec};

/// The items of a FETCH: a macro, one item, or a parenthesised list.
pub(super) fn items(c: &mut Cursor<'_>) -> R<Vec<FetchAttr>> {
    if c.eat(b'(') {
        let mut out = Vec::new();
        loop {
            out.push(attr(c)?);
            if c.eat(b')') {
                return Ok(out);
            }
            c.sp()?;
        }
    }
    // Macros (RFC 9051 §6.4.5).
    if c.eat_word("ALL") {
        return Ok(vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope,
        ]);
    }
    if c.eat_word("FAST") {
        return Ok(vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
        ]);
    }
    if c.eat_word("FULL") {
        return Ok(vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope,
            FetchAttr::Body,
        ]);
    }
    Ok(vec![attr(c)?])
}

fn attr(c: &mut Cursor<'_>) -> R<FetchAttr> {
    // The name runs up to '[' or a delimiter; '.' is part of it.
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    Ok(match name.as_str() {
        "ENVELOPE" => FetchAttr::Envelope,
        "FLAGS" => FetchAttr::Flags,
        "INTERNALDATE" => FetchAttr::InternalDate,
        "RFC822" => FetchAttr::Rfc822,
        "RFC822.HEADER" => FetchAttr::Rfc822Header,
        "RFC822.TEXT" => FetchAttr::Rfc822Text,
        "RFC822.SIZE" => FetchAttr::Rfc822Size,
        "BODYSTRUCTURE" => FetchAttr::BodyStructure,
        "UID" => FetchAttr::Uid,
        "MODSEQ" => FetchAttr::Modseq,
        "BODY" if c.peek() != Some(b'[') => FetchAttr::Body,
        "BODY" | "BODY.PEEK" => {
            let section = section(c)?;
            let partial = partial(c)?;
            FetchAttr::Section {
                peek: name == "BODY.PEEK",
                section,
                partial,
            }
        }
        "BINARY" | "BINARY.PEEK" => {
            let part = binary_section(c)?;
            let partial = partial(c)?;
            FetchAttr::Binary {
                peek: name == "BINARY.PEEK",
                part,
                partial,
            }
        }
        "BINARY.SIZE" => FetchAttr::BinarySize(binary_section(c)?),
        "" => return Err("expected a fetch item".into()),
        _ => return Err(format!("unknown fetch item {name}")),
    })
}

/// `section-part`, with the dot that follows it consumed if a text
/// specifier comes next.
fn part_numbers(c: &mut Cursor<'_>) -> R<Vec<u32>> {
    let mut part = Vec::new();
    while c.peek().is_some_and(|b| b.is_ascii_digit()) {
        if part.len() >= 100 {
            return Err("section too deep".into());
        }
        part.push(c.nz_number32("a part number")?);
        if !c.eat(b'.') {
            break;
        }
    }
    Ok(part)
}

fn section(c: &mut Cursor<'_>) -> R<Section> {
    c.expect(b'[', "'['")?;
    let part = part_numbers(c)?;
    let mut text = None;
    if c.peek() != Some(b']') {
        let spec = c.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
        let spec = String::from_utf8_lossy(spec).to_ascii_uppercase();
        text = Some(match spec.as_str() {
            "HEADER" => SectionSpec::Header,
            "TEXT" => SectionSpec::Text,
            "MIME" if !part.is_empty() => SectionSpec::Mime,
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                c.sp()?;
                let fields = c.paren_list(|c| {
                    let f = c.astring("a header field name")?;
                    String::from_utf8(f).map_err(|_| "header field name is not UTF-8".to_string())
                })?;
                SectionSpec::HeaderFields {
                    not: spec.ends_with(".NOT"),
                    fields,
                }
            }
            _ => return Err(format!("invalid section {spec}")),
        });
    }
    c.expect(b']', "']'")?;
    Ok(Section { part, text })
}

fn binary_section(c: &mut Cursor<'_>) -> R<Vec<u32>> {
    c.expect(b'[', "'['")?;
    let part = part_numbers(c)?;
    c.expect(b']', "']'")?;
    Ok(part)
}

fn partial(c: &mut Cursor<'_>) -> R<Option<(u64, u64)>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let origin = c.number("a partial origin")?;
    c.expect(b'.', "'.'")?;
    let count = c.number("a partial length")?;
    if count == 0 {
        return Err("partial length must not be zero".into());
    }
    c.expect(b'>', "'>'")?;
    Ok(Some((origin, count)))
}
