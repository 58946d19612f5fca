//! [`MessageView`]: a received message with header edits applied, as the
//! `message` resource shows it to plugins.
//!
//! The raw bytes are shared (`Arc`), never copied per plugin: each plugin
//! gets a cheap clone of the view (the header fields and a pointer to the
//! body), and only what it asks for is copied into its memory.

use std::sync::Arc;

/// Largest `raw` range handed out per call.
pub const MAX_RAW_RANGE: u32 = 1 << 20;

/// One header field as it is (or will be) written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    /// The name as written (empty for a malformed line, which no look-up
    /// matches).
    name: String,
    /// The whole field: name, colon, value, folded lines, final CRLF.
    raw: Vec<u8>,
}

/// A message and the header edits of the plugins so far.
#[derive(Debug, Clone)]
pub struct MessageView {
    fields: Vec<Field>,
    /// The whole message as received.
    raw: Arc<[u8]>,
    /// Where the header/body separator (the empty line) starts in `raw`.
    body_start: usize,
    /// Whether `fields` differ from the header in `raw`.
    edited: bool,
}

impl MessageView {
    /// Parses the header of `raw` (CRLF or LF line ends).
    pub fn new(raw: impl Into<Arc<[u8]>>) -> MessageView {
        let raw: Arc<[u8]> = raw.into();
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
                (b' ' | b'\t', Some(last)) => last.raw.extend_from_slice(line),
                _ => {
                    let name = line
                        .iter()
                        .position(|&b| b == b':')
                        .map(|c| String::from_utf8_lossy(&line[..c]).trim().to_string())
                        .unwrap_or_default();
                    fields.push(Field {
                        name,
                        raw: line.to_vec(),
                    });
                }
            }
            pos = end;
        };
        MessageView {
            fields,
            raw,
            body_start,
            edited: false,
        }
    }

    /// The values of the fields named `name`, unfolded, leading and trailing
    /// white space removed.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| !f.name.is_empty() && f.name.eq_ignore_ascii_case(name))
            .map(|f| {
                let colon = f.raw.iter().position(|&b| b == b':').unwrap_or(0);
                let value: Vec<u8> = f.raw[colon + 1..]
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
            .filter(|f| !f.name.is_empty())
            .map(|f| f.name.clone())
            .collect()
    }

    /// The size of the message as it would be delivered now.
    pub fn size(&self) -> u64 {
        let header: usize = self.fields.iter().map(|f| f.raw.len()).sum();
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
        let body = &self.raw[self.body_start..];
        for piece in self.fields.iter().map(|f| f.raw.as_slice()).chain([body]) {
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

    /// The message as it would be delivered now.
    pub fn to_bytes(&self) -> Arc<[u8]> {
        if !self.edited {
            return self.raw.clone();
        }
        let mut out = Vec::with_capacity(self.size() as usize);
        for f in &self.fields {
            out.extend_from_slice(&f.raw);
        }
        out.extend_from_slice(&self.raw[self.body_start..]);
        out.into()
    }

    /// Whether any header edit was applied.
    pub fn is_edited(&self) -> bool {
        self.edited
    }

    /// The decoded text/plain and text/html parts, at most `max_bytes` of
    /// text in all.
    pub fn text_parts(&self, max_bytes: u32) -> Vec<(String, String)> {
        let bytes = self.to_bytes();
        let Some(message) = mail_parser::MessageParser::default().parse(&bytes[..]) else {
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

    /// Adds `name: value` at the top (already validated).
    pub(crate) fn add_header(&mut self, name: &str, value: &str) {
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(fold(value, name.len() + 2).as_bytes());
        raw.extend_from_slice(b"\r\n");
        self.fields.insert(
            0,
            Field {
                name: name.to_string(),
                raw,
            },
        );
        self.edited = true;
    }

    /// Removes every field named `name`.
    pub(crate) fn remove_header(&mut self, name: &str) {
        let before = self.fields.len();
        self.fields.retain(|f| !f.name.eq_ignore_ascii_case(name));
        self.edited |= self.fields.len() != before;
    }
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
    fn no_header_body_separator() {
        let m = MessageView::new(&b"Subject: x\r\n"[..]);
        assert_eq!(m.header("subject"), vec!["x"]);
        assert_eq!(&*m.to_bytes(), b"Subject: x\r\n");
    }
}
