//! The MIME tree (RFC 2045, RFC 2046) of a message, with the byte ranges
//! of every part's header and body in the raw message.

use super::address::parse_address_list;
use super::header::{self, first_raw, first_value, header_fields, string, Cursor, Lines};
use super::{BodyPart, ByteRange, Disposition, HeaderEnvelope, MessageStructure, PartKind};

/// RFC 2045 §5.1 tspecials, less `(` and `"` which the cursor handles.
const TSPECIALS: &[u8] = b"<>@,;:\\/[]?=";

/// Deepest nesting of multiparts and encapsulated messages that is
/// expanded; deeper content is kept as an opaque leaf. Besides bounding
/// recursion on hostile input, this keeps the saved structure within
/// serde_json's default recursion limit (128), which a JSON column needs:
/// each level costs three JSON nesting levels.
pub const MAX_DEPTH: usize = 32;

/// Most parts expanded in one message, so that a small message full of
/// boundary lines cannot blow up into a huge saved structure. Delimiters
/// beyond this budget stay inside the last part.
pub const MAX_PARTS: usize = 10_000;

#[derive(Clone, Copy)]
enum DefaultType {
    /// RFC 2045 §5.2: "text/plain; charset=us-ascii".
    TextPlain,
    /// RFC 2046 §5.1.5: the parts of a multipart/digest.
    MessageRfc822,
}

/// The parser: one per message, carrying the part budget.
pub(crate) struct Parser<'a> {
    raw: &'a [u8],
    parts_left: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Parser {
            raw,
            parts_left: MAX_PARTS,
        }
    }

    /// Parses the message in `raw[start..end]`: the whole input, or the
    /// body of a message/rfc822 part.
    pub(crate) fn message(&mut self, start: usize, end: usize, depth: usize) -> MessageStructure {
        let root = self.part(start, end, DefaultType::TextPlain, depth);
        let envelope = envelope(root.header.slice(self.raw));
        MessageStructure { envelope, root }
    }

    /// Parses the entity (header block and body) in `raw[start..end]`.
    fn part(&mut self, start: usize, end: usize, default: DefaultType, depth: usize) -> BodyPart {
        self.parts_left = self.parts_left.saturating_sub(1);
        let raw = self.raw;
        let header_end = header::header_end(raw, start, end);
        let fields = header_fields(&raw[start..header_end]);
        let body = &raw[header_end..end];

        let (media_type, media_subtype, params) = first_raw(&fields, "Content-Type")
            .and_then(parse_content_type)
            .unwrap_or_else(|| default_type(default));
        let encoding = first_raw(&fields, "Content-Transfer-Encoding")
            .map(|v| {
                let mut c = Cursor::new(v);
                c.skip_cfws();
                string(c.token(TSPECIALS))
            })
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "7BIT".to_owned());

        let mut part = BodyPart {
            media_type,
            media_subtype,
            params,
            id: first_value(&fields, "Content-ID"),
            description: first_value(&fields, "Content-Description"),
            encoding,
            lines: count_lines(body),
            md5: first_value(&fields, "Content-MD5"),
            disposition: first_raw(&fields, "Content-Disposition").and_then(parse_disposition),
            language: first_raw(&fields, "Content-Language")
                .map(parse_language)
                .unwrap_or_default(),
            location: first_value(&fields, "Content-Location"),
            header: ByteRange::new(start, header_end),
            body: ByteRange::new(header_end, end),
            kind: PartKind::Single,
        };

        let expand = depth < MAX_DEPTH && self.parts_left > 0;
        if part.media_type.eq_ignore_ascii_case("multipart") {
            let ranges = match part.param("boundary") {
                Some(boundary) if expand && !boundary.is_empty() => {
                    split_multipart(raw, header_end, end, boundary.as_bytes(), self.parts_left)
                }
                _ => Vec::new(),
            };
            if ranges.is_empty() {
                // A multipart without a boundary or without any part cannot
                // be sent as one (RFC 9051 body-type-mpart needs at least
                // one body); RFC 2045 §5.2 treats an unusable Content-Type
                // as the default, so the whole body becomes text.
                let (t, s, p) = default_type(DefaultType::TextPlain);
                part.media_type = t;
                part.media_subtype = s;
                part.params = p;
            } else {
                let child_default = if part.media_subtype.eq_ignore_ascii_case("digest") {
                    DefaultType::MessageRfc822
                } else {
                    DefaultType::TextPlain
                };
                let children = ranges
                    .into_iter()
                    .map(|(s, e)| self.part(s, e, child_default, depth + 1))
                    .collect();
                part.kind = PartKind::Multipart(children);
            }
        } else if part.media_type.eq_ignore_ascii_case("message")
            && (part.media_subtype.eq_ignore_ascii_case("rfc822")
                || part.media_subtype.eq_ignore_ascii_case("global"))
            && is_identity_encoding(&part.encoding)
            && expand
        {
            // RFC 9051 §7.5.2: MESSAGE/RFC822 (and MESSAGE/GLOBAL) carry the
            // envelope and body structure of the encapsulated message. Only
            // an unencoded one can be described with ranges of the raw
            // message; an encoded one (RFC 2046 §5.2.1 forbids it for
            // rfc822, RFC 6532 allows it for global) stays a leaf.
            let nested = self.message(header_end, end, depth + 1);
            part.kind = PartKind::Message(Box::new(nested));
        }
        part
    }
}

/// Whether a Content-Transfer-Encoding leaves the bytes as they are
/// (RFC 2045 §6.2), so that an encapsulated message can be parsed in place.
fn is_identity_encoding(encoding: &str) -> bool {
    ["7bit", "8bit", "binary"]
        .iter()
        .any(|e| encoding.eq_ignore_ascii_case(e))
}

/// Media type, subtype and parameters, as written.
type MediaType = (String, String, Vec<(String, String)>);

fn default_type(default: DefaultType) -> MediaType {
    match default {
        DefaultType::TextPlain => (
            "TEXT".to_owned(),
            "PLAIN".to_owned(),
            vec![("CHARSET".to_owned(), "US-ASCII".to_owned())],
        ),
        DefaultType::MessageRfc822 => ("MESSAGE".to_owned(), "RFC822".to_owned(), Vec::new()),
    }
}

/// Text lines of a body, as BODYSTRUCTURE's body-fld-lines: the number of
/// line ends, plus one for a last line without one.
fn count_lines(body: &[u8]) -> u64 {
    let ends = body.iter().filter(|&&b| b == b'\n').count() as u64;
    match body.last() {
        Some(b'\n') | None => ends,
        Some(_) => ends + 1,
    }
}

/// Finds the parts of a multipart body in `raw[start..end]` (RFC 2046
/// §5.1.1): a delimiter line is `--boundary` followed only by whitespace,
/// the close delimiter is `--boundary--`; the line end before a delimiter
/// belongs to the delimiter, not to the part before it. The preamble and
/// epilogue belong to no part. A missing close delimiter ends the last part
/// at `end`. At most `limit` parts are returned: later delimiters stay
/// inside the last part.
fn split_multipart(
    raw: &[u8],
    start: usize,
    end: usize,
    boundary: &[u8],
    limit: usize,
) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    for line in Lines::new(raw, start, end) {
        let content = line.content(raw);
        let Some(rest) = content
            .strip_prefix(b"--")
            .and_then(|c| c.strip_prefix(boundary))
        else {
            continue;
        };
        let close = rest.starts_with(b"--");
        if !close && !rest.iter().all(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        if !close && current.is_some() && parts.len() + 1 >= limit {
            continue;
        }
        if let Some(part_start) = current.take() {
            parts.push((part_start, before_line_end(raw, part_start, line.start)));
        }
        if close {
            return parts;
        }
        // A delimiter with nothing after it (truncated message) opens no
        // part.
        if line.next < end {
            current = Some(line.next);
        }
    }
    if let Some(part_start) = current {
        parts.push((part_start, end));
    }
    parts
}

/// The end of a part whose next delimiter line starts at `line_start`: the
/// CRLF (or bare LF) before it belongs to the delimiter.
fn before_line_end(raw: &[u8], part_start: usize, line_start: usize) -> usize {
    let mut end = line_start;
    if end > part_start && raw[end - 1] == b'\n' {
        end -= 1;
        if end > part_start && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// Parses a Content-Type value (RFC 2045 §5.1) into type, subtype (as
/// written) and parameters. None when there is no usable `type/subtype`,
/// in which case RFC 2045 §5.2 says to use the default.
fn parse_content_type(value: &[u8]) -> Option<MediaType> {
    let mut c = Cursor::new(value);
    c.skip_cfws();
    let media_type = c.token(TSPECIALS);
    c.skip_cfws();
    if media_type.is_empty() || c.peek() != Some(b'/') {
        return None;
    }
    c.pos += 1;
    c.skip_cfws();
    let subtype = c.token(TSPECIALS);
    if subtype.is_empty() {
        return None;
    }
    Some((string(media_type), string(subtype), parse_params(&mut c)))
}

/// Parses a Content-Disposition value (RFC 2183 §2): a type and parameters.
fn parse_disposition(value: &[u8]) -> Option<Disposition> {
    let mut c = Cursor::new(value);
    c.skip_cfws();
    let kind = c.token(TSPECIALS);
    if kind.is_empty() {
        return None;
    }
    Some(Disposition {
        kind: string(kind),
        params: parse_params(&mut c),
    })
}

/// Parses `*(";" attribute "=" value)`. Names and values are kept as
/// written (a quoted value unquoted): RFC 2231 continuations and charsets
/// (`filename*0*=...`) and encoded words are passed through for the client
/// to decode, as IMAP servers commonly do. Unquoted values are read up to
/// the next `;` or whitespace, since senders often leave tspecials such as
/// `=` unquoted (`boundary=----=_Part_1`). Broken parameters are skipped.
fn parse_params(c: &mut Cursor<'_>) -> Vec<(String, String)> {
    let mut params = Vec::new();
    loop {
        c.skip_cfws();
        match c.peek() {
            None => break,
            Some(b';') => c.pos += 1,
            Some(_) => {
                // Garbage: resume at the next `;` outside quotes.
                while let Some(b) = c.peek() {
                    match b {
                        b';' => break,
                        b'"' => {
                            c.quoted();
                        }
                        _ => c.pos += 1,
                    }
                }
                continue;
            }
        }
        c.skip_cfws();
        let name = c.token(TSPECIALS);
        c.skip_cfws();
        if name.is_empty() || c.peek() != Some(b'=') {
            continue;
        }
        c.pos += 1;
        c.skip_cfws();
        let value = if c.peek() == Some(b'"') {
            c.quoted()
        } else {
            let start = c.pos;
            while let Some(b) = c.peek() {
                if matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'(') {
                    break;
                }
                c.pos += 1;
            }
            c.input[start..c.pos].to_vec()
        };
        params.push((string(name), string(&value)));
    }
    params
}

/// Parses Content-Language (RFC 3282 §2): a comma-separated list of
/// language tags, comments dropped.
fn parse_language(value: &[u8]) -> Vec<String> {
    let mut c = Cursor::new(value);
    let mut tags = Vec::new();
    loop {
        c.skip_cfws();
        if c.at_end() {
            break;
        }
        let tag = c.token(TSPECIALS);
        if tag.is_empty() {
            // A separator or stray special: step over it.
            c.pos += 1;
        } else {
            tags.push(string(tag));
        }
    }
    tags
}

/// Reads the ENVELOPE fields (RFC 9051 §7.5.2) from a header block. Date,
/// Subject, In-Reply-To and Message-ID are NIL when absent and the empty
/// string when present but empty, as the RFC asks.
fn envelope(block: &[u8]) -> HeaderEnvelope {
    let fields = header_fields(block);
    let addresses = |name: &str| {
        first_raw(&fields, name)
            .map(parse_address_list)
            .unwrap_or_default()
    };
    let from = addresses("From");
    // RFC 9051 §7.5.2 (RFC 3501 §7.4.2): when Sender or Reply-To is absent
    // or present but empty, the server (not the client) fills that member
    // with the value of From.
    let mut sender = addresses("Sender");
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addresses("Reply-To");
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    HeaderEnvelope {
        date: first_value(&fields, "Date"),
        subject: first_value(&fields, "Subject"),
        from,
        sender,
        reply_to,
        to: addresses("To"),
        cc: addresses("Cc"),
        bcc: addresses("Bcc"),
        in_reply_to: first_value(&fields, "In-Reply-To"),
        message_id: first_value(&fields, "Message-ID"),
    }
}
