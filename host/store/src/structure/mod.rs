//! The parsed structure of a message: its envelope and MIME tree, with the
//! byte ranges of every part in the raw message. Computed once at delivery
//! and saved with the message, so that IMAP never parses a message again to
//! answer FETCH ENVELOPE, BODYSTRUCTURE, BODY, or BODY[section] (HEADER,
//! HEADER.FIELDS, TEXT, MIME, numeric parts, partial fetches): it formats
//! the saved fields and slices the raw bytes with the saved ranges.
//!
//! # Conventions
//! - Values are kept **as written in the message**, never decoded, because
//!   that is what IMAP sends (the client decodes): header values are
//!   unfolded (folding line ends removed, RFC 5322 §2.2.3) and trimmed;
//!   encoded words (RFC 2047) in subjects and display names and RFC 2231
//!   parameters stay encoded. Bytes that are not UTF-8 become U+FFFD, as
//!   the structure holds strings.
//! - Case-insensitive tokens (media type and subtype, parameter names,
//!   transfer encoding, disposition type) keep the case they are written
//!   in, as most IMAP servers send them; compare them with
//!   `eq_ignore_ascii_case` or the helpers on [`BodyPart`]. Defaults
//!   supplied by the RFCs are upper-case, as in the examples of RFC 9051
//!   (`"TEXT" "PLAIN" ("CHARSET" "US-ASCII")`, `"7BIT"`).
//! - Byte ranges are absolute offsets into the raw message as stored, line
//!   ends as they are (CRLF or bare LF); sizes are therefore exact for what
//!   FETCH sends only if the stored message is what is sent.
//!
//! We do not use mail-parser here, although it is a dependency: it decodes
//! everything (subjects, names, parameters, bodies), which IMAP must not
//! send, and its part offsets follow its own rules (an encoded
//! message/rfc822 is parsed from its decoded bytes, so nested offsets are
//! not offsets in the raw message). IMAP needs RFC 2046's exact rules and
//! raw values, which this module implements directly on the bytes.
//!
//! # Robustness
//! [`MessageStructure::parse`] never fails and never panics: damaged input
//! gives a best-effort structure. Nesting is expanded to [`MAX_DEPTH`]
//! levels and at most [`MAX_PARTS`] parts.

mod address;
mod header;
mod mime;
#[cfg(test)]
mod tests;

pub use address::{MISSING_HOST, MISSING_MAILBOX};
pub use header::{header_fields, HeaderField};
pub use mime::{MAX_DEPTH, MAX_PARTS};

use serde::{Deserialize, Serialize};

/// The saved structure of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStructure {
    /// The ENVELOPE of the message.
    pub envelope: HeaderEnvelope,
    /// The message as a body part: its header range is the message header
    /// (`BODY[HEADER]`), its body range the text (`BODY[TEXT]`), its media
    /// type the one BODYSTRUCTURE starts with.
    pub root: BodyPart,
}

/// The length of a message's header block as header searches see it: up
/// to and including the first empty line (`CRLF CRLF` or `LF LF`,
/// whichever comes first), or the whole message if there is none. This
/// is what the store saves beside each body for header searches, so that
/// they need not read bodies. (The MIME parser's header range can be
/// shorter on damaged input, e.g. a first line that is no header field.)
pub fn header_block_len(raw: &[u8]) -> usize {
    // One pass over the line feeds (SIMD), stopping at the first empty
    // line: `\r\n\r\n` or `\n\n`, whichever ends first. (It used to
    // search for each separately, and the `\n\n` search read every
    // CRLF message to its end.)
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'\n', &raw[from..]) {
        let i = from + p;
        match raw.get(i + 1) {
            Some(b'\n') => return i + 2,
            Some(b'\r') if i > 0 && raw[i - 1] == b'\r' && raw.get(i + 2) == Some(&b'\n') => {
                return i + 3
            }
            _ => {}
        }
        from = i + 1;
    }
    raw.len()
}

/// A half-open range `start..end` of byte offsets into the raw message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ByteRange {
    fn new(start: usize, end: usize) -> Self {
        ByteRange {
            start: start as u64,
            end: end.max(start) as u64,
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of this range in `raw` (the message the structure was
    /// parsed from); clamped, so never panics, even on another message.
    pub fn slice<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX).min(raw.len());
        let start = clamp(self.start);
        let end = clamp(self.end).max(start);
        &raw[start..end]
    }

    /// The sub-range of a partial fetch `<origin.count>` (RFC 9051 §6.4.5):
    /// starts `origin` bytes in (an origin past the end gives an empty
    /// range) and holds at most `count` bytes (all the rest if None).
    pub fn partial(&self, origin: u64, count: Option<u64>) -> ByteRange {
        let start = self.start.saturating_add(origin).min(self.end);
        let end = match count {
            Some(count) => start.saturating_add(count).min(self.end),
            None => self.end,
        };
        ByteRange { start, end }
    }
}

/// The ENVELOPE of a message (RFC 9051 §7.5.2, RFC 3501 §7.4.2). Strings
/// are the header values as written, unfolded; None is NIL (the field is
/// absent). Address lists are empty for NIL. The first occurrence of a
/// repeated field is used. Made of header fields, hence the name: the
/// SMTP envelope (MAIL FROM, RCPT TO) is `mailgate_delivery::Envelope`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEnvelope {
    /// Date.
    pub date: Option<String>,
    /// Subject, encoded words left encoded.
    pub subject: Option<String>,
    /// From.
    pub from: Vec<Address>,
    /// Sender; already defaulted to From when absent or empty, as RFC 9051
    /// §7.5.2 requires of the server.
    pub sender: Vec<Address>,
    /// Reply-To; already defaulted to From when absent or empty.
    pub reply_to: Vec<Address>,
    /// To.
    pub to: Vec<Address>,
    /// Cc.
    pub cc: Vec<Address>,
    /// Bcc.
    pub bcc: Vec<Address>,
    /// In-Reply-To.
    pub in_reply_to: Option<String>,
    /// Message-ID.
    pub message_id: Option<String>,
}

/// One address of an ENVELOPE address list (RFC 9051 §7.5.2): personal
/// name, source route (adl), mailbox (local part) and host. Group syntax
/// (RFC 5322 §3.4) is flattened as RFC 9051 says: a start-of-group marker
/// (host None, mailbox = group name), the members, then an end-of-group
/// marker (mailbox and host None).
///
/// The name is the display name as written: quoted strings unquoted,
/// encoded words left encoded (the client decodes them), whitespace
/// runs and comments reduced to one space. Without a display name, a
/// comment (`user@host (Name)`) is used. A missing local part or domain is
/// sent as [`MISSING_MAILBOX`] / [`MISSING_HOST`] rather than NIL, which
/// would read as group syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// addr-name: the display name.
    pub name: Option<String>,
    /// addr-adl: the obsolete source route, e.g. `@a.example,@b.example`.
    pub adl: Option<String>,
    /// addr-mailbox: the local part (unquoted), or the group name of a
    /// start-of-group marker.
    pub mailbox: Option<String>,
    /// addr-host: the domain; None only in group markers.
    pub host: Option<String>,
}

impl Address {
    /// Whether this is a start-of-group marker.
    pub fn is_group_start(&self) -> bool {
        self.host.is_none() && self.mailbox.is_some()
    }

    /// Whether this is an end-of-group marker.
    pub fn is_group_end(&self) -> bool {
        self.host.is_none() && self.mailbox.is_none()
    }
}

/// A Content-Disposition (RFC 2183): type and parameters, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    /// The disposition type (`inline`, `attachment`, ...).
    pub kind: String,
    /// Parameters in order, names and values as written.
    pub params: Vec<(String, String)>,
}

/// What a body part contains besides its own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartKind {
    /// A leaf: BODYSTRUCTURE body-type-basic or body-type-text.
    #[default]
    Single,
    /// A multipart (body-type-mpart): its parts, in order (never empty).
    Multipart(Vec<BodyPart>),
    /// An unencoded message/rfc822 or message/global (body-type-msg): the
    /// encapsulated message, whose ranges are also absolute offsets in the
    /// raw message. Its root's header range is `BODY[n.HEADER]`, its body
    /// range `BODY[n.TEXT]`.
    Message(Box<MessageStructure>),
}

/// One MIME entity: the data of BODYSTRUCTURE and BODY (RFC 9051 §7.5.2)
/// and the byte ranges that FETCH BODY[section] slices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// Media type as written (`text`, `multipart`, ...); `TEXT` when there
    /// is no usable Content-Type (RFC 2045 §5.2), `MESSAGE` inside a
    /// multipart/digest (RFC 2046 §5.1.5). A multipart without a boundary
    /// or without any part is turned into the `TEXT/PLAIN` default.
    pub media_type: String,
    /// Media subtype as written (`plain`, `mixed`, ...).
    pub media_subtype: String,
    /// Content-Type parameters in order (body-fld-param; for a multipart,
    /// the extension data's parameters, boundary included).
    pub params: Vec<(String, String)>,
    /// Content-ID (body-fld-id).
    pub id: Option<String>,
    /// Content-Description (body-fld-desc), encoded words left encoded.
    pub description: Option<String>,
    /// Content-Transfer-Encoding as written (body-fld-enc); `7BIT` when
    /// absent (RFC 2045 §6.1).
    pub encoding: String,
    /// Text lines of the body (body-fld-lines), counted for every part;
    /// BODYSTRUCTURE sends it only for text/* and message/rfc822.
    pub lines: u64,
    /// Content-MD5 (body-fld-md5).
    pub md5: Option<String>,
    /// Content-Disposition (body-fld-dsp).
    pub disposition: Option<Disposition>,
    /// Content-Language tags (body-fld-lang); empty for NIL.
    pub language: Vec<String>,
    /// Content-Location (body-fld-loc).
    pub location: Option<String>,
    /// The part's own header block, blank line included when present:
    /// `BODY[n.MIME]`, or for the root `BODY[HEADER]`. Empty when the part
    /// has no header.
    pub header: ByteRange,
    /// The part's body, still transfer-encoded: `BODY[n]`. For a
    /// multipart, everything between its header and the end of the part
    /// (preamble, delimiters and epilogue included).
    pub body: ByteRange,
    /// Children or encapsulated message.
    pub kind: PartKind,
}

impl BodyPart {
    /// Size of the body in octets, still encoded (body-fld-octets).
    pub fn size(&self) -> u64 {
        self.body.len()
    }

    /// The first Content-Type parameter with this name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the media type is `media_type/subtype` (case-insensitive;
    /// subtype None matches any).
    pub fn is_type(&self, media_type: &str, subtype: Option<&str>) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type)
            && subtype.is_none_or(|s| self.media_subtype.eq_ignore_ascii_case(s))
    }

    /// The parts of a multipart; empty otherwise.
    pub fn children(&self) -> &[BodyPart] {
        match &self.kind {
            PartKind::Multipart(children) => children,
            _ => &[],
        }
    }

    /// The encapsulated message of a message/rfc822 part.
    pub fn message(&self) -> Option<&MessageStructure> {
        match &self.kind {
            PartKind::Message(message) => Some(message),
            _ => None,
        }
    }
}

/// What a FETCH BODY[section] asks for after the part numbers (RFC 9051
/// §6.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionText {
    /// No specifier: the whole message, or the body of the numbered part.
    Full,
    /// HEADER, and the base of HEADER.FIELDS / HEADER.FIELDS.NOT (filter
    /// its fields with [`header_fields`]): the header of the message or of
    /// the encapsulated message of a message/rfc822 part.
    Header,
    /// TEXT: the body of the message or of the encapsulated message.
    Text,
    /// MIME: the header block of a numbered part.
    Mime,
}

/// Messages up to this size are parsed where they are stored, on the
/// async worker (about 0.7 µs per KiB on the development machine, so at
/// most some 45 µs); larger ones on the blocking pool
/// ([`MessageStructure::parse_off_thread`]).
pub const PARSE_INLINE_MAX: usize = 64 * 1024;

impl MessageStructure {
    /// Parses a raw message. Never fails and never panics: damaged input
    /// gives a best-effort structure.
    pub fn parse(raw: &[u8]) -> MessageStructure {
        mime::Parser::new(raw).message(0, raw.len(), 0)
    }

    /// [`MessageStructure::parse`] on tokio's blocking pool, off the async
    /// workers (parsing a large message costs milliseconds of CPU); a
    /// message of at most [`PARSE_INLINE_MAX`] bytes is parsed on the
    /// calling thread instead, because for it the hand-off to the pool
    /// and back (two thread wake-ups) costs more than the parse. Fails
    /// only if the blocking task could not run (the runtime is shutting
    /// down).
    pub async fn parse_off_thread(
        raw: std::sync::Arc<Vec<u8>>,
    ) -> Result<MessageStructure, tokio::task::JoinError> {
        if raw.len() <= PARSE_INLINE_MAX {
            return Ok(MessageStructure::parse(&raw));
        }
        tokio::task::spawn_blocking(move || MessageStructure::parse(&raw)).await
    }

    /// Length of the message header, blank line included.
    pub fn header_len(&self) -> u64 {
        self.root.header.len()
    }

    /// The part with this IMAP part number (`[1, 2]` for `1.2`), following
    /// RFC 9051 §6.4.5: the parts of a multipart are numbered from 1; a
    /// message that is not multipart has a part 1, its body (the root
    /// itself); the numbering of a message/rfc822 part continues into the
    /// encapsulated message by the same rules (`2.1` is part 1 of the
    /// message in part 2). The empty path is the root. None if there is no
    /// such part (including a 0 anywhere).
    pub fn part(&self, path: &[u32]) -> Option<&BodyPart> {
        let Some((&first, rest)) = path.split_first() else {
            return Some(&self.root);
        };
        let mut part = numbered_child(&self.root, first)?;
        for &n in rest {
            part = match &part.kind {
                PartKind::Multipart(children) => children.get(index(n)?)?,
                PartKind::Message(message) => numbered_child(&message.root, n)?,
                PartKind::Single => return None,
            };
        }
        Some(part)
    }

    /// The byte range FETCH BODY[section] returns, before any partial
    /// `<origin.count>` (apply [`ByteRange::partial`] to it), following
    /// RFC 9051 §6.4.5:
    /// - `[]` + Full: the whole message; + Header / Text: its header and
    ///   text; + Mime: None (MIME needs a part number).
    /// - a part + Full: its body; + Mime: its header block; + Header /
    ///   Text: the header / text of its encapsulated message, None unless
    ///   the part is a parsed message/rfc822 or message/global.
    ///
    /// None when the section does not exist (IMAP servers then return an
    /// empty string or NIL).
    pub fn section(&self, path: &[u32], text: SectionText) -> Option<ByteRange> {
        if path.is_empty() {
            return match text {
                SectionText::Full => Some(ByteRange {
                    start: self.root.header.start,
                    end: self.root.body.end,
                }),
                SectionText::Header => Some(self.root.header),
                SectionText::Text => Some(self.root.body),
                SectionText::Mime => None,
            };
        }
        let part = self.part(path)?;
        match text {
            SectionText::Full => Some(part.body),
            SectionText::Mime => Some(part.header),
            SectionText::Header => part.message().map(|m| m.root.header),
            SectionText::Text => part.message().map(|m| m.root.body),
        }
    }
}

/// Part `n` of the message whose root is `root`.
fn numbered_child(root: &BodyPart, n: u32) -> Option<&BodyPart> {
    match &root.kind {
        PartKind::Multipart(children) => children.get(index(n)?),
        _ => (n == 1).then_some(root),
    }
}

/// Zero-based index of a one-based part number.
fn index(n: u32) -> Option<usize> {
    usize::try_from(n).ok()?.checked_sub(1)
}
