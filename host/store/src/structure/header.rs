//! Header blocks and header fields, read straight from the raw bytes.
//!
//! Everything here works on byte offsets into the raw message and never
//! decodes anything: IMAP sends header values as they are in the message.
//! Line ends may be CRLF or a bare LF (tolerated, never required).

use std::ops::Range;

/// One header field of a header block (see [`header_fields`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The field name as written, without surrounding whitespace; empty for
    /// a line that has no colon (invalid, but kept so that
    /// `HEADER.FIELDS.NOT` can still return it).
    pub name: &'a [u8],
    /// The raw value: everything after the colon up to the end of the
    /// field, folding line ends included, the final line end excluded.
    pub value: &'a [u8],
    /// The whole field (name, value and final line end), relative to the
    /// block passed to [`header_fields`]: what `BODY[HEADER.FIELDS (...)]`
    /// copies.
    pub range: Range<usize>,
}

/// Splits a header block (for example `BODY[HEADER]` sliced from the raw
/// message) into its fields, in order, stopping at the blank line that ends
/// the block.
///
/// A field is a line that does not start with whitespace plus its
/// continuation lines (RFC 5322 §2.2.3 folding).
pub fn header_fields(block: &[u8]) -> Vec<HeaderField<'_>> {
    // (field start, name end, value start, value end, next line)
    let mut spans: Vec<(usize, usize, usize, usize, usize)> = Vec::new();
    for line in Lines::new(block, 0, block.len()) {
        let content = line.content(block);
        if content.is_empty() {
            break;
        }
        let continuation = matches!(content.first(), Some(b' ' | b'\t'));
        match spans.last_mut() {
            Some(last) if continuation => {
                last.3 = line.end;
                last.4 = line.next;
            }
            _ => {
                let (name_end, value_start) = match content.iter().position(|&b| b == b':') {
                    Some(colon) => (line.start + colon, line.start + colon + 1),
                    None => (line.start, line.start),
                };
                spans.push((line.start, name_end, value_start, line.end, line.next));
            }
        }
    }
    spans
        .into_iter()
        .map(
            |(start, name_end, value_start, value_end, next)| HeaderField {
                name: trim(&block[start..name_end]),
                value: &block[value_start..value_end],
                range: start..next,
            },
        )
        .collect()
}

impl HeaderField<'_> {
    /// Whether the field has this name (field names are case-insensitive,
    /// RFC 5322 §1.2.2).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The value of the first field with this name, unfolded (see [`unfold`]).
/// IMAP uses the first occurrence when a field is repeated.
pub(crate) fn first_value(fields: &[HeaderField<'_>], name: &str) -> Option<String> {
    fields.iter().find(|f| f.is(name)).map(|f| unfold(f.value))
}

/// The raw value of the first field with this name.
pub(crate) fn first_raw<'a>(fields: &[HeaderField<'a>], name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.is(name)).map(|f| f.value)
}

/// Unfolds a raw header value: removes the line ends of folding (RFC 5322
/// §2.2.3: "unfolding is accomplished by simply removing any CRLF that is
/// immediately followed by WSP"; inside one field every line end is such a
/// fold) and the whitespace around the value. Nothing is decoded; bytes
/// that are not UTF-8 are replaced by U+FFFD, since the saved structure
/// holds strings.
pub(crate) fn unfold(value: &[u8]) -> String {
    let kept: Vec<u8> = trim(value)
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    match String::from_utf8(kept) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Trims whitespace (including line ends) at both ends.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|b| !ws(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ws(b)).map_or(start, |p| p + 1);
    &bytes[start..end]
}

/// Lossy UTF-8 conversion of bytes the structure keeps as strings.
pub(crate) fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where a header block ends inside `raw[start..end]`: returns the offset
/// just after the blank line (so the header range includes it, as
/// `BODY[HEADER]` does), or `end` when there is no blank line (a header
/// with no body).
///
/// When the first line is not a header field at all (no `name:` with a
/// plausible name, and not a blank line) the block has no header and the
/// whole range is body: this gives a sensible `BODY[TEXT]` for a message
/// or MIME part that starts straight with its text.
pub(crate) fn header_end(raw: &[u8], start: usize, end: usize) -> usize {
    let mut lines = Lines::new(raw, start, end);
    match lines.next() {
        None => return start,
        Some(first) => {
            let content = first.content(raw);
            if content.is_empty() {
                return first.next;
            }
            if !looks_like_field(content) {
                return start;
            }
        }
    }
    for line in lines {
        if line.content(raw).is_empty() {
            return line.next;
        }
    }
    end
}

/// Whether a line starts like a header field: a non-empty name of printable
/// ASCII without spaces, then a colon (RFC 5322 §2.2 field-name; a space
/// before the colon is tolerated as in the obsolete syntax of §4.5).
fn looks_like_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..colon];
    let name = match name.iter().rposition(|&b| b != b' ' && b != b'\t') {
        Some(p) => &name[..=p],
        None => return false,
    };
    name.iter().all(|&b| (33..=126).contains(&b))
}

/// One line of the raw message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    /// First byte of the line.
    pub start: usize,
    /// End of the line's content: before the CRLF (or bare LF).
    pub end: usize,
    /// First byte of the next line (after the line end).
    pub next: usize,
}

impl Line {
    /// The line without its line end.
    pub fn content<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.start..self.end]
    }
}

/// Iterator over the lines of `raw[start..end]`; the last line may lack a
/// line end. Accepts CRLF and bare LF; a CR not followed by LF is content.
pub(crate) struct Lines<'a> {
    raw: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Lines<'a> {
    pub fn new(raw: &'a [u8], start: usize, end: usize) -> Self {
        let end = end.min(raw.len());
        Lines {
            raw,
            pos: start.min(end),
            end,
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        if self.pos >= self.end {
            return None;
        }
        let start = self.pos;
        let rest = &self.raw[start..self.end];
        let line = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let mut content_end = start + lf;
                if content_end > start && self.raw[content_end - 1] == b'\r' {
                    content_end -= 1;
                }
                Line {
                    start,
                    end: content_end,
                    next: start + lf + 1,
                }
            }
            None => {
                // A last line without LF: a trailing CR is still a line end.
                let mut content_end = self.end;
                if content_end > start && self.raw[content_end - 1] == b'\r' {
                    content_end -= 1;
                }
                Line {
                    start,
                    end: content_end,
                    next: self.end,
                }
            }
        };
        self.pos = line.next;
        Some(line)
    }
}

/// A cursor over a structured header value (RFC 2045 Content-Type and
/// friends, RFC 5322 addresses): skips comments and whitespace, reads
/// tokens and quoted strings.
pub(crate) struct Cursor<'a> {
    pub input: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Cursor { input, pos: 0 }
    }

    pub fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// Skips whitespace (folding line ends included) and comments (RFC 5322
    /// §3.2.2 CFWS). Returns the text of the comments skipped, if any, so
    /// that an address can fall back on it for a display name.
    pub fn skip_cfws(&mut self) -> Option<Vec<u8>> {
        let mut comment: Option<Vec<u8>> = None;
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'(') => {
                    let text = self.comment();
                    comment.get_or_insert(text);
                }
                _ => return comment,
            }
        }
    }

    /// Reads a comment (the cursor is on its `(`), nested comments and
    /// quoted pairs included; an unterminated comment runs to the end.
    fn comment(&mut self) -> Vec<u8> {
        let mut depth = 0usize;
        let mut text = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'(' => {
                    if depth > 0 {
                        text.push(b);
                    }
                    depth += 1;
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    text.push(b);
                }
                b'\\' => {
                    if let Some(next) = self.peek() {
                        text.push(next);
                        self.pos += 1;
                    }
                }
                b'\r' | b'\n' => {}
                _ => text.push(b),
            }
        }
        text
    }

    /// Reads a quoted string (the cursor is on its `"`) and returns its
    /// content with quoted pairs resolved and folding removed; an
    /// unterminated string runs to the end.
    pub fn quoted(&mut self) -> Vec<u8> {
        let mut text = Vec::new();
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        text.push(next);
                        self.pos += 1;
                    }
                }
                b'\r' | b'\n' => {}
                _ => text.push(b),
            }
        }
        text
    }

    /// Reads a run of bytes that are neither whitespace, nor `(` or `"`,
    /// nor one of `specials`. Bytes above 127 are accepted (UTF-8 headers,
    /// RFC 6532).
    pub fn token(&mut self, specials: &[u8]) -> &'a [u8] {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b <= b' ' || b == 127 || b == b'(' || b == b'"' || specials.contains(&b) {
                break;
            }
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }
}
