//! [`MessageView`]: a received message with header edits applied, as the
//! `message` resource shows it to plugins.
//!
//! The raw bytes are shared, never copied: the host hands in the buffer it
//! received (`Arc<Vec<u8>>` or `Arc<[u8]>`), each plugin gets a cheap clone
//! of the view (two reference counts: the header fields are copied only
//! when an edit changes them), and only what a plugin asks for is copied
//! into its memory. The edited message is built once, when the host
//! needs it: written into the host's buffer by [`MessageView::write_to`]
//! (or into a new one by [`MessageView::to_bytes`]).

use std::ops::{Deref, Range};
use std::sync::Arc;

use crate::types::{AuthResults, TlsDetails};

/// Largest `raw` range handed out per call.
pub const MAX_RAW_RANGE: u32 = 1 << 20;

/// Longest header field a Sieve `addheader` may add through
/// [`MessageView::apply_sieve_edit`], name and value (the interpreter's own
/// bound, `[sieve]`'s `editheader_max_header_size`, is lower by default).
pub const MAX_SIEVE_FIELD: usize = 8192;

/// One header field as it is (or will be) written: its name (empty for a
/// malformed line, which no look-up matches) and the whole field (name,
/// colon, value, folded lines, final CRLF).
///
/// Fields of the received header are ranges of the shared buffer, so
/// parsing the header and copying the field list for an edit allocate
/// nothing per field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// In the received bytes; the name range is valid UTF-8.
    Shared {
        name: Range<usize>,
        raw: Range<usize>,
    },
    /// Added by a plugin, or received with a name that is not UTF-8
    /// (kept as the lossy text, as before).
    Owned { name: String, raw: Vec<u8> },
}

/// The received bytes, shared with the host.
#[derive(Debug, Clone)]
enum Raw {
    Slice(Arc<[u8]>),
    Vec(Arc<Vec<u8>>),
}

impl Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Raw::Slice(s) => s,
            Raw::Vec(v) => v,
        }
    }
}

/// A message and the header edits of the plugins so far.
#[derive(Debug, Clone)]
pub struct MessageView {
    /// Shared between clones until an edit changes them.
    fields: Arc<Vec<Field>>,
    /// The whole message as received.
    raw: Raw,
    /// Where the header/body separator (the empty line) starts in `raw`.
    body_start: usize,
    /// Whether `fields` differ from the header in `raw`.
    edited: bool,
    /// How many fields on top are the host's trace fields of this hop
    /// (`Received:`, `Authentication-Results:`): added fields go below.
    trace: usize,
    /// The host's inbound authentication results, if it verified.
    auth: Option<Arc<AuthResults>>,
    /// The TLS session the message arrived over, if any.
    tls: Option<Arc<TlsDetails>>,
}

impl MessageView {
    /// Parses the header of `raw` (CRLF or LF line ends).
    pub fn new(raw: impl Into<Arc<[u8]>>) -> MessageView {
        MessageView::parse(Raw::Slice(raw.into()))
    }

    /// Like [`MessageView::new`], over the host's own buffer: no copy.
    pub fn shared(raw: Arc<Vec<u8>>) -> MessageView {
        MessageView::parse(Raw::Vec(raw))
    }

    fn parse(raw: Raw) -> MessageView {
        let mut fields: Vec<Field> = Vec::new();
        let mut pos = 0;
        let body_start = loop {
            if pos >= raw.len() {
                break raw.len();
            }
            let end = raw[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |i| pos + i + 1);
            let line = &raw[pos..end];
            if line == b"\r\n" || line == b"\n" {
                break pos;
            }
            match (line[0], fields.last_mut()) {
                (b' ' | b'\t', Some(Field::Shared { raw, .. })) => raw.end = end,
                (b' ' | b'\t', Some(Field::Owned { raw, .. })) => raw.extend_from_slice(line),
                _ => fields.push(received_field(line, pos)),
            }
            pos = end;
        };
        MessageView {
            fields: Arc::new(fields),
            raw,
            body_start,
            edited: false,
            trace: 0,
            auth: None,
            tls: None,
        }
    }

    /// The pieces of the message as it would be delivered now: each
    /// field, then the empty line and the body.
    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        let body = &self.raw[self.body_start..];
        self.fields.iter().map(|f| f.bytes(&self.raw)).chain([body])
    }

    /// Marks the first `n` fields as the host's own trace fields of this
    /// hop (RFC 5321 §4.4: they stay on top): fields plugins add go below
    /// them.
    pub fn with_trace_fields(mut self, n: usize) -> MessageView {
        self.trace = n.min(self.fields.len());
        self
    }

    /// Attaches the host's inbound authentication results.
    pub fn with_auth_results(mut self, auth: Option<Arc<AuthResults>>) -> MessageView {
        self.auth = auth;
        self
    }

    /// The host's inbound authentication results, if it verified.
    pub fn auth_results(&self) -> Option<&AuthResults> {
        self.auth.as_deref()
    }

    /// Attaches the TLS session the message arrived over.
    pub fn with_tls(mut self, tls: Option<Arc<TlsDetails>>) -> MessageView {
        self.tls = tls;
        self
    }

    /// The TLS session the message arrived over, if it did.
    pub fn tls(&self) -> Option<&TlsDetails> {
        self.tls.as_deref()
    }

    /// The values of the fields named `name`, unfolded, leading and trailing
    /// white space removed.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| f.is_named(&self.raw, name))
            .map(|f| {
                let raw = f.bytes(&self.raw);
                let colon = raw.iter().position(|&b| b == b':').unwrap_or(0);
                let value: Vec<u8> = raw[colon + 1..]
                    .iter()
                    .copied()
                    .filter(|&b| b != b'\r' && b != b'\n')
                    .collect();
                String::from_utf8_lossy(&value).trim().to_string()
            })
            .collect()
    }

    /// The names of all fields, top to bottom.
    pub fn header_names(&self) -> Vec<String> {
        self.fields
            .iter()
            .map(|f| f.name(&self.raw))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The size of the message as it would be delivered now.
    pub fn size(&self) -> u64 {
        let header: usize = self.fields.iter().map(|f| f.bytes(&self.raw).len()).sum();
        (header + self.raw.len() - self.body_start) as u64
    }

    /// The bytes [start, start + len) of the message as it would be
    /// delivered now; `len` capped at [`MAX_RAW_RANGE`].
    pub fn raw_range(&self, start: u64, len: u32) -> Vec<u8> {
        let len = len.min(MAX_RAW_RANGE) as usize;
        let Ok(start) = usize::try_from(start) else {
            return Vec::new();
        };
        if !self.edited {
            let s = start.min(self.raw.len());
            let e = s.saturating_add(len).min(self.raw.len());
            return self.raw[s..e].to_vec();
        }
        // Walk the pieces (fields, then body) without building the whole
        // message.
        let mut out = Vec::with_capacity(len.min(64 * 1024));
        let mut offset = 0usize;
        for piece in self.pieces() {
            let end = offset + piece.len();
            if end > start && out.len() < len {
                let from = start.saturating_sub(offset);
                let take = (piece.len() - from).min(len - out.len());
                out.extend_from_slice(&piece[from..from + take]);
            }
            offset = end;
        }
        out
    }

    /// The message as it would be delivered now: built here, in one
    /// allocation, if edited; the received bytes otherwise (copied only if
    /// the view was made with [`MessageView::shared`]).
    pub fn to_bytes(&self) -> Arc<[u8]> {
        match (&self.raw, self.edited) {
            (Raw::Slice(s), false) => s.clone(),
            (Raw::Vec(v), false) => Arc::from(v.as_slice()),
            (_, true) => {
                let mut out = Vec::new();
                self.write_to(&mut out);
                Arc::from(out)
            }
        }
    }

    /// Appends the message as it would be delivered now to `out`: how the
    /// host stores an edited message without building it twice.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.size() as usize);
        for piece in self.pieces() {
            out.extend_from_slice(piece);
        }
    }

    /// Calls `f` with the message as it would be delivered now, without a
    /// copy when it is unedited.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        if self.edited {
            f(&self.to_bytes())
        } else {
            f(&self.raw)
        }
    }

    /// Whether any header edit was applied.
    pub fn is_edited(&self) -> bool {
        self.edited
    }

    /// The decoded text/plain and text/html parts, at most `max_bytes` of
    /// text in all.
    pub fn text_parts(&self, max_bytes: u32) -> Vec<(String, String)> {
        if let Some(text) = self.plain_ascii_body().filter(|_| max_bytes > 0) {
            return vec![("text/plain".to_string(), cut(text, max_bytes).to_string())];
        }
        self.with_bytes(|bytes| parse_text_parts(bytes, max_bytes))
    }

    /// The body, when decoding it is the identity: one `text/plain` part
    /// (no `Content-Type`, or `text/plain` with at most a `us-ascii` or
    /// `utf-8` charset), no transfer encoding beyond `7bit`/`8bit`, and only
    /// ASCII in the body. What a MIME parser would return for it, without
    /// parsing the message (the common case for a filter reading the text).
    fn plain_ascii_body(&self) -> Option<&str> {
        if self.body_start >= self.raw.len() {
            return None;
        }
        let content_type = self.header("content-type");
        match content_type.as_slice() {
            [] => {}
            [one] if is_plain_ascii_type(one) => {}
            _ => return None,
        }
        match self.header("content-transfer-encoding").as_slice() {
            [] => {}
            [one] if one.eq_ignore_ascii_case("7bit") || one.eq_ignore_ascii_case("8bit") => {}
            _ => return None,
        }
        let rest = &self.raw[self.body_start..];
        let body = rest
            .strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))?;
        if !body.is_ascii() || body.contains(&0) {
            return None;
        }
        std::str::from_utf8(body).ok()
    }
    /// Adds `name: value` at the top, below the host's trace fields
    /// (already validated).
    pub(crate) fn add_header(&mut self, name: &str, value: &str) {
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(fold(value, name.len() + 2).as_bytes());
        raw.extend_from_slice(b"\r\n");
        Arc::make_mut(&mut self.fields).insert(
            self.trace,
            Field::Owned {
                name: name.to_string(),
                raw,
            },
        );
        self.edited = true;
    }

    /// Applies a Sieve `addheader`/`deleteheader` (RFC 5293) to this view:
    /// `addheader` at the very top (or, `:last`, at the end of the header),
    /// `deleteheader` of the `occurrence`-th field of that name. Refused
    /// (`false`, nothing changes): a field name that is not printable ASCII
    /// without `:`, an added field over [`MAX_SIEVE_FIELD`] bytes, and any
    /// edit of `Received` or `Auto-Submitted`, which stay as they are
    /// (RFC 5293 section 7). Control characters of an added value become
    /// spaces; long values are folded.
    pub fn apply_sieve_edit(&mut self, edit: &crate::SieveHeaderEdit) -> bool {
        use crate::SieveHeaderEdit as E;
        let name = match edit {
            E::Add { name, .. } | E::Delete { name, .. } => name,
        };
        let valid = !name.is_empty()
            && name.len() <= 997
            && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
        if !valid
            || name.eq_ignore_ascii_case("received")
            || name.eq_ignore_ascii_case("auto-submitted")
        {
            return false;
        }
        match edit {
            E::Add { value, last, .. } => {
                if name.len() + value.len() + 2 > MAX_SIEVE_FIELD {
                    return false;
                }
                let value: String = value
                    .chars()
                    .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
                    .collect();
                let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
                raw.extend_from_slice(name.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(fold(value.trim(), name.len() + 2).as_bytes());
                raw.extend_from_slice(b"\r\n");
                let field = Field::Owned {
                    name: name.to_string(),
                    raw,
                };
                let fields = Arc::make_mut(&mut self.fields);
                if *last {
                    fields.push(field);
                } else {
                    fields.insert(0, field);
                    self.trace = (self.trace + 1).min(fields.len());
                }
            }
            E::Delete { occurrence, .. } => {
                let raw = &self.raw;
                let Some(at) = self
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.is_named(raw, name))
                    .nth((*occurrence as usize).saturating_sub(1))
                    .map(|(i, _)| i)
                    .filter(|_| *occurrence > 0)
                else {
                    return false;
                };
                Arc::make_mut(&mut self.fields).remove(at);
                if at < self.trace {
                    self.trace -= 1;
                }
            }
        }
        self.edited = true;
        true
    }

    /// Removes every field named `name`.
    pub(crate) fn remove_header(&mut self, name: &str) {
        if !self.fields.iter().any(|f| f.is_named(&self.raw, name)) {
            return;
        }
        let gone = self.fields[..self.trace]
            .iter()
            .filter(|f| f.is_named(&self.raw, name))
            .count();
        self.trace -= gone;
        let raw = &self.raw;
        Arc::make_mut(&mut self.fields).retain(|f| !f.is_named(raw, name));
        self.edited = true;
    }
}

impl Field {
    /// The name as written; `raw` is the view's received bytes.
    fn name<'a>(&'a self, raw: &'a [u8]) -> &'a str {
        match self {
            // Checked to be UTF-8 when parsed.
            Field::Shared { name, .. } => std::str::from_utf8(&raw[name.clone()]).unwrap_or(""),
            Field::Owned { name, .. } => name,
        }
    }

    /// The whole field as written; `raw` is the view's received bytes.
    fn bytes<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        match self {
            Field::Shared { raw: range, .. } => &raw[range.clone()],
            Field::Owned { raw: own, .. } => own,
        }
    }

    /// Whether the field is named `name` (ASCII case-insensitive).
    fn is_named(&self, raw: &[u8], name: &str) -> bool {
        let own = self.name(raw);
        !own.is_empty() && own.eq_ignore_ascii_case(name)
    }
}

/// The field starting with `line` at offset `at` of the received bytes.
fn received_field(line: &[u8], at: usize) -> Field {
    let raw = at..at + line.len();
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Field::Shared { name: at..at, raw };
    };
    match std::str::from_utf8(&line[..colon]) {
        Ok(text) => {
            let name = text.trim();
            let start = at + (name.as_ptr() as usize - text.as_ptr() as usize);
            Field::Shared {
                name: start..start + name.len(),
                raw,
            }
        }
        Err(_) => Field::Owned {
            name: String::from_utf8_lossy(&line[..colon]).trim().to_string(),
            raw: line.to_vec(),
        },
    }
}

/// The decoded text parts of `bytes` by a MIME parse, at most `max_bytes`
/// of text in all.
fn parse_text_parts(bytes: &[u8], max_bytes: u32) -> Vec<(String, String)> {
    let Some(message) = mail_parser::MessageParser::default().parse(bytes) else {
        return Vec::new();
    };
    let mut budget = max_bytes as usize;
    let mut out = Vec::new();
    let parts = message.text_body.iter().chain(
        message
            .html_body
            .iter()
            .filter(|i| !message.text_body.contains(i)),
    );
    for &index in parts {
        let Some(part) = message.part(index) else {
            continue;
        };
        let Some(text) = part.text_contents() else {
            continue;
        };
        if budget == 0 {
            break;
        }
        let mut cut = text.len().min(budget);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        budget -= cut;
        let ctype = if part.is_text_html() {
            "text/html"
        } else {
            "text/plain"
        };
        out.push((ctype.to_string(), text[..cut].to_string()));
    }
    out
}

/// Whether a `Content-Type` value is `text/plain`, with at most a
/// `us-ascii` or `utf-8` charset.
fn is_plain_ascii_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("text/plain"))
    {
        return false;
    }
    match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(param), None) => param
            .split_once('=')
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
            .map(|(_, v)| v.trim().trim_matches('"'))
            .is_some_and(|v| v.eq_ignore_ascii_case("us-ascii") || v.eq_ignore_ascii_case("utf-8")),
        _ => false,
    }
}

/// `text` cut to at most `max_bytes`, at a character boundary.
fn cut(text: &str, max_bytes: u32) -> &str {
    let mut cut = text.len().min(max_bytes as usize);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Folds `value` at spaces so no line exceeds 998 bytes (RFC 5322 2.1.1);
/// `first` is the length already used on the first line. Values that cannot
/// be folded were refused by validation (no run longer than
/// [`crate::chain::MAX_UNFOLDABLE_RUN`]).
fn fold(value: &str, first: usize) -> String {
    const LINE: usize = 78;
    let mut out = String::with_capacity(value.len() + value.len() / LINE * 3);
    let mut used = first;
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 {
            if used + 1 + word.len() > LINE && used > 1 {
                out.push_str("\r\n ");
                used = 1;
            } else {
                out.push(' ');
                used += 1;
            }
        }
        out.push_str(word);
        used += word.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"Subject: hello\r\n world\r\nFrom: a@b\r\nX-Remove-Me: 1\r\n\r\nbody line\r\n";

    /// Sieve edits: added on top or at the end, the n-th occurrence
    /// deleted, protected and malformed names refused; the body is the
    /// received one.
    #[test]
    fn sieve_edits() {
        use crate::SieveHeaderEdit as E;
        let raw = b"Received: from x\r\nX-A: 1\r\nX-A: 2\r\nSubject: s\r\n\r\nbody\r\n";
        let mut v = MessageView::new(&raw[..]);
        let add = |name: &str, value: &str, last| E::Add {
            name: name.into(),
            value: value.into(),
            last,
        };
        let del = |name: &str, occurrence| E::Delete {
            name: name.into(),
            occurrence,
        };
        assert!(v.apply_sieve_edit(&add("X-Top", "t\r\nBcc: x", false)));
        assert!(v.apply_sieve_edit(&add("X-End", "e", true)));
        assert!(v.apply_sieve_edit(&del("x-a", 2)));
        assert!(!v.apply_sieve_edit(&del("x-a", 2)), "only one left");
        assert!(!v.apply_sieve_edit(&del("x-a", 0)));
        assert!(!v.apply_sieve_edit(&del("received", 1)));
        assert!(!v.apply_sieve_edit(&add("Auto-Submitted", "no", false)));
        assert!(!v.apply_sieve_edit(&add("Bad Name", "x", false)));
        assert!(!v.apply_sieve_edit(&add("X-Big", &"a".repeat(MAX_SIEVE_FIELD), false)));
        let mut out = Vec::new();
        v.write_to(&mut out);
        assert_eq!(
            out,
            b"X-Top: t  Bcc: x\r\nReceived: from x\r\nX-A: 1\r\nSubject: s\r\nX-End: e\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn reads_headers_unfolded() {
        let m = MessageView::new(MSG);
        assert_eq!(m.header("subject"), vec!["hello world"]);
        assert_eq!(m.header_names(), vec!["Subject", "From", "X-Remove-Me"]);
        assert_eq!(m.size(), MSG.len() as u64);
        assert_eq!(m.raw_range(0, 7), b"Subject");
        assert_eq!(&*m.to_bytes(), MSG);
    }

    #[test]
    fn edits_apply_and_ranges_follow() {
        let mut m = MessageView::new(MSG);
        m.add_header("X-Spam-Score", "1.0");
        m.remove_header("x-remove-me");
        let bytes = m.to_bytes();
        let expected =
            b"X-Spam-Score: 1.0\r\nSubject: hello\r\n world\r\nFrom: a@b\r\n\r\nbody line\r\n";
        assert_eq!(&*bytes, expected);
        assert_eq!(m.size(), expected.len() as u64);
        for start in 0..expected.len() {
            assert_eq!(
                m.raw_range(start as u64, 9),
                &expected[start..(start + 9).min(expected.len())]
            );
        }
        assert_eq!(m.header("x-remove-me"), Vec::<String>::new());
    }

    /// Names that are not UTF-8 (kept as lossy text), lines without a
    /// colon (no name; never matched) and names with white space before
    /// the colon, before and after an edit, and `write_to`.
    #[test]
    fn odd_fields_keep_their_bytes() {
        let raw: &[u8] = b"X-\xffBad: 1\r\n\tmore\r\nno colon here\r\nKey : v\r\n\r\nb\r\n";
        let mut m = MessageView::new(raw);
        assert_eq!(m.header_names(), vec!["X-\u{fffd}Bad", "Key"]);
        assert_eq!(m.header("x-\u{fffd}bad"), vec!["1\tmore"]);
        assert_eq!(m.header("key"), vec!["v"]);
        assert_eq!(&*m.to_bytes(), raw);
        m.add_header("A", "b");
        m.remove_header("key");
        let expected: &[u8] = b"A: b\r\nX-\xffBad: 1\r\n\tmore\r\nno colon here\r\n\r\nb\r\n";
        assert_eq!(&*m.to_bytes(), expected);
        let mut out = b"Return-Path: <>\r\n".to_vec();
        m.write_to(&mut out);
        assert_eq!(&out[17..], expected);
    }

    #[test]
    fn long_values_are_folded() {
        let mut m = MessageView::new(MSG);
        let value = vec!["word"; 500].join(" ");
        m.add_header("X-Long", &value);
        let bytes = m.to_bytes();
        assert!(bytes.split(|&b| b == b'\n').all(|l| l.len() <= 998));
        assert_eq!(m.header("x-long"), vec![value]);
    }

    #[test]
    fn text_parts_are_decoded() {
        let m = MessageView::new(
            &b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 wire transfer\r\n"[..],
        );
        let parts = m.text_parts(1000);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].1.starts_with("café wire transfer"));
        assert_eq!(m.text_parts(3)[0].1, "caf");
    }

    #[test]
    fn plain_text_shortcut_matches_the_parser() {
        let heads: &[&str] = &[
            "",
            "Content-Type: text/plain; charset=us-ascii\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Type: TEXT/Plain; Charset=\"UTF-8\"\r\n",
            "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n",
            "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 8BIT\r\n",
            "Content-Type: text/plain;\r\n charset=us-ascii\r\n",
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n",
        ];
        let bodies: &[&str] = &[
            "",
            "x",
            "hello\r\n",
            "line one\r\n\r\nline three\r\n\r\n\r\n",
            " leading space\r\n.dot\r\n\ttab\r\n",
            "no final newline",
            "=41 not decoded\r\n<b>not html</b>\r\n",
        ];
        for head in heads {
            for body in bodies {
                for max in [0, 1, 5, 1000] {
                    let raw = format!("Subject: s\r\nFrom: a@b\r\n{head}\r\n{body}");
                    let view = MessageView::new(raw.as_bytes());
                    assert!(view.plain_ascii_body().is_some(), "{raw:?}");
                    assert_eq!(
                        view.text_parts(max),
                        parse_text_parts(raw.as_bytes(), max),
                        "{raw:?} max {max}"
                    );
                    let lf = raw.replace("\r\n", "\n");
                    assert_eq!(
                        MessageView::new(lf.as_bytes()).text_parts(max),
                        parse_text_parts(lf.as_bytes(), max),
                        "{lf:?} max {max}"
                    );
                }
            }
        }
        // Anything else goes to the parser.
        for raw in [
            &b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n"[..],
            b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n",
            b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n",
            b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
        ] {
            let view = MessageView::new(raw);
            assert!(view.plain_ascii_body().is_none());
            assert_eq!(view.text_parts(1000), parse_text_parts(raw, 1000));
        }
    }

    #[test]
    fn shared_views_and_edits() {
        let shared = Arc::new(MSG.to_vec());
        let mut m = MessageView::shared(shared.clone());
        let snapshot = m.clone();
        m.add_header("X-A", "1");
        assert_eq!(&*snapshot.to_bytes(), MSG);
        assert_eq!(snapshot.header("x-a"), Vec::<String>::new());
        assert_eq!(m.header("x-a"), vec!["1"]);
        assert!(m.to_bytes().starts_with(b"X-A: 1\r\nSubject: hello"));
        m.remove_header("not-there");
        assert_eq!(m.size(), MSG.len() as u64 + 8);
    }

    #[test]
    fn added_fields_go_below_the_trace_fields() {
        let raw = b"Received: from x by y\r\nAuthentication-Results: y; spf=pass\r\nReceived: older\r\nSubject: s\r\n\r\nb\r\n";
        let mut m = MessageView::new(&raw[..]).with_trace_fields(2);
        m.add_header("X-A", "1");
        m.add_header("X-B", "2");
        assert_eq!(
            m.header_names(),
            vec![
                "Received",
                "Authentication-Results",
                "X-B",
                "X-A",
                "Received",
                "Subject"
            ]
        );
        // Removing a trace field keeps the others on top.
        m.remove_header("authentication-results");
        m.add_header("X-C", "3");
        assert_eq!(
            m.header_names(),
            vec!["Received", "X-C", "X-B", "X-A", "Received", "Subject"]
        );
        m.remove_header("received");
        m.add_header("X-D", "4");
        assert_eq!(
            m.header_names(),
            vec!["X-D", "X-C", "X-B", "X-A", "Subject"]
        );
        // More trace fields than fields: clamped.
        let mut m = MessageView::new(&b"A: 1\r\n\r\n"[..]).with_trace_fields(5);
        m.add_header("X-A", "1");
        assert_eq!(m.header_names(), vec!["A", "X-A"]);
        assert!(m.auth_results().is_none());
    }

    #[test]
    fn no_header_body_separator() {
        let m = MessageView::new(&b"Subject: x\r\n"[..]);
        assert_eq!(m.header("subject"), vec!["x"]);
        assert_eq!(&*m.to_bytes(), b"Subject: x\r\n");
    }
}
