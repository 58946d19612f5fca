//! The command parser: one framed command (see [`crate::framer`]) in,
//! a [`Command`] or a [`ParseError`] out. Never panics: every access goes
//! through the cursor's bounds-checked methods, and numbers are parsed
//! with overflow checks.
//!
//! RFC 9051 §9 (formal syntax), the rules used throughout:
//!
//! ```abnf
//! command         = tag SP (command-any / command-auth / command-nonauth /
//!                   command-select) CRLF
//! tag             = 1*<any ASTRING-CHAR except "+">
//! astring         = 1*ASTRING-CHAR / string
//! string          = quoted / literal
//! quoted          = DQUOTE *QUOTED-CHAR DQUOTE
//! literal         = "{" number64 ["+"] "}" CRLF *CHAR8
//! atom-specials   = "(" / ")" / "{" / SP / CTL / list-wildcards /
//!                   quoted-specials / resp-specials
//! ```

mod command;
mod date;
mod fetch;
mod search;

pub use command::{parse_command, MAX_APPEND_MESSAGES};
pub use date::{format_date_time, parse_date_text, parse_date_time};

/// Why a command could not be parsed: answered with `tag BAD message`
/// (or untagged `* BAD` when no tag could be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The tag, if the command had a valid one.
    pub tag: Option<String>,
    /// What was wrong, for the client.
    pub message: String,
}

/// Whether `b` may appear in a tag (ASTRING-CHAR except `+`).
pub fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// ATOM-CHAR: any CHAR except atom-specials. Bytes above 127 are let
/// through (UTF-8 mailbox names in atoms, as Dovecot accepts them).
fn is_atom_char(b: u8) -> bool {
    !matches!(
        b,
        b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']' | 0..=0x1f | 0x7f
    )
}

/// ASTRING-CHAR = ATOM-CHAR / resp-specials
fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// list-char = ATOM-CHAR / list-wildcards / resp-specials
fn is_list_char(b: u8) -> bool {
    is_atom_char(b) || matches!(b, b'%' | b'*' | b']')
}

/// Result of a parsing step: the error text for BAD.
type R<T> = Result<T, String>;

/// A bounds-checked cursor over the command bytes.
pub(crate) struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    fn sp(&mut self) -> R<()> {
        self.expect(b' ', "a space")
    }

    fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err("unexpected characters at end of command".into())
        }
    }

    /// Whether the next bytes are `word` (case-insensitive), followed by a
    /// non-atom character; consumes them if so.
    fn eat_word(&mut self, word: &str) -> bool {
        let end = self.pos + word.len();
        let matches = self
            .s
            .get(self.pos..end)
            .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
            && self
                .s
                .get(end)
                .is_none_or(|&b| !is_atom_char(b) || b == b'.');
        if matches {
            self.pos = end;
        }
        matches
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// `1*ATOM-CHAR`
    fn atom(&mut self, what: &str) -> R<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            Err(format!("expected {what}"))
        } else {
            Ok(a)
        }
    }

    /// An atom as upper-case text (command names, keywords).
    fn keyword(&mut self, what: &str) -> R<String> {
        Ok(String::from_utf8_lossy(self.atom(what)?).to_ascii_uppercase())
    }

    /// `number = 1*DIGIT` (up to 63 bits here).
    fn number(&mut self, what: &str) -> R<u64> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() || d.len() > 19 {
            return Err(format!("expected {what}"));
        }
        std::str::from_utf8(d)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("expected {what}"))
    }

    /// `nz-number` that fits 32 bits.
    fn nz_number32(&mut self, what: &str) -> R<u32> {
        let n = self.number(what)?;
        u32::try_from(n)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| format!("{what} out of range"))
    }

    /// `quoted` (after checking for DQUOTE).
    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"', "a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b @ (b'"' | b'\\')) => {
                            out.push(b);
                            self.pos += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(b'\r' | b'\n' | 0) => return Err("control character in quoted string".into()),
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// `literal` / `literal8` (`~{n}`): the framer put the bytes inline.
    fn literal(&mut self) -> R<&'a [u8]> {
        self.eat(b'~');
        self.expect(b'{', "a literal")?;
        let n = self.number("a literal size")?;
        self.eat(b'+');
        self.expect(b'}', "'}'")?;
        if !(self.eat(b'\r') && self.eat(b'\n')) {
            return Err("expected CRLF after literal size".into());
        }
        let n = usize::try_from(n).map_err(|_| "literal too large".to_string())?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.s.len())
            .ok_or_else(|| "literal shorter than announced".to_string())?;
        let bytes = &self.s[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// `string = quoted / literal`
    fn string(&mut self, what: &str) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{' | b'~') => Ok(self.literal()?.to_vec()),
            _ => Err(format!("expected {what}")),
        }
    }

    /// `astring = 1*ASTRING-CHAR / string`
    fn astring(&mut self, what: &str) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(what),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    Err(format!("expected {what}"))
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    /// `nstring = string / nil`
    fn nstring(&mut self, what: &str) -> R<Option<Vec<u8>>> {
        if self.eat_word("NIL") {
            Ok(None)
        } else {
            self.string(what).map(Some)
        }
    }

    /// `mailbox = "INBOX" / astring`
    fn mailbox(&mut self) -> R<Vec<u8>> {
        self.astring("a mailbox name")
    }

    /// `list-mailbox = 1*list-char / string`
    fn list_mailbox(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string("a mailbox pattern"),
            _ => {
                let a = self.take_while(is_list_char);
                if a.is_empty() {
                    Err("expected a mailbox pattern".into())
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    /// `flag = "\Answered" / ... / flag-keyword / flag-extension`
    fn flag(&mut self) -> R<String> {
        let start = self.pos;
        self.eat(b'\\');
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err("expected a flag".into());
        }
        String::from_utf8(self.s[start..self.pos].to_vec()).map_err(|_| "flag is not UTF-8".into())
    }

    /// `flag-list = "(" [flag *(SP flag)] ")"`
    fn flag_list(&mut self) -> R<Vec<String>> {
        self.expect(b'(', "a flag list")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// `sequence-set`
    /// `sequence-set / "$"` (RFC 5182 seq-last-command).
    fn sequence_set(&mut self) -> R<crate::SequenceSet> {
        if self.eat(b'$') {
            return Ok(crate::SequenceSet::saved());
        }
        let s = self.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'));
        crate::SequenceSet::parse(s).ok_or_else(|| "invalid sequence set".into())
    }

    /// A parenthesised list of items parsed by `item`, at least one.
    fn paren_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.expect(b'(', "'('")?;
        let mut out = Vec::new();
        loop {
            out.push(item(self)?);
            if self.eat(b')') {
                return Ok(out);
            }
            self.sp()?;
        }
    }
}

#[cfg(test)]
mod tests;
