//! The lexer: script text to tokens with their line and column
//! (RFC 5228 section 8.1).
//!
//! ```text
//! identifier     = (ALPHA / "_") *(ALPHA / DIGIT / "_")
//! tag            = ":" identifier
//! number         = 1*DIGIT [ QUANTIFIER ]        ; QUANTIFIER = "K" / "M" / "G"
//! quoted-string  = DQUOTE quoted-text DQUOTE     ; \" and \\ escape, other \x is x
//! multi-line     = "text:" *(SP / HTAB) (hash-comment / CRLF)
//!                  *(multiline-literal / multiline-dotstart) "." CRLF
//! comment        = hash-comment / bracket-comment
//! ```

use crate::error::CompileError;

/// A position in the script: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, counted in characters.
    pub column: usize,
}

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A command or test name, as written.
    Identifier(String),
    /// A tag without its colon, lowercased.
    Tag(String),
    /// A number with its quantifier applied.
    Number(u64),
    /// A quoted or multi-line string, escapes removed.
    String(String),
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `;`
    Semicolon,
}

impl Token {
    /// How the token is named in an error message.
    pub fn describe(&self) -> String {
        match self {
            Token::Identifier(s) => format!("identifier '{}'", crate::error::printable(s)),
            Token::Tag(s) => format!("tag ':{}'", crate::error::printable(s)),
            Token::Number(n) => format!("number {n}"),
            Token::String(_) => "a string".into(),
            Token::LBracket => "'['".into(),
            Token::RBracket => "']'".into(),
            Token::LParen => "'('".into(),
            Token::RParen => "')'".into(),
            Token::LBrace => "'{'".into(),
            Token::RBrace => "'}'".into(),
            Token::Comma => "','".into(),
            Token::Semicolon => "';'".into(),
        }
    }
}

/// The position just after the last character of `src`.
pub fn end_pos(src: &str) -> Pos {
    let line = src.matches('\n').count() + 1;
    let column = src
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    Pos { line, column }
}

/// Splits a whole script into tokens.
pub fn tokenize(src: &str) -> Result<Vec<(Token, Pos)>, CompileError> {
    let mut lx = Lexer {
        chars: src.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    while let Some(t) = lx.next_token()? {
        out.push(t);
    }
    Ok(out)
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

impl Lexer {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.col,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err(pos: Pos, msg: impl Into<String>) -> CompileError {
        CompileError::new(pos, msg)
    }

    fn next_token(&mut self) -> Result<Option<(Token, Pos)>, CompileError> {
        loop {
            let Some(c) = self.peek() else {
                return Ok(None);
            };
            let pos = self.pos();
            match c {
                ' ' | '\t' | '\r' | '\n' => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                '/' if self.peek_at(1) == Some('*') => {
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(Self::err(pos, "unterminated comment '/*'")),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                '[' | ']' | '(' | ')' | '{' | '}' | ',' | ';' => {
                    self.bump();
                    let t = match c {
                        '[' => Token::LBracket,
                        ']' => Token::RBracket,
                        '(' => Token::LParen,
                        ')' => Token::RParen,
                        '{' => Token::LBrace,
                        '}' => Token::RBrace,
                        ',' => Token::Comma,
                        _ => Token::Semicolon,
                    };
                    return Ok(Some((t, pos)));
                }
                '"' => {
                    self.bump();
                    return Ok(Some((Token::String(self.quoted(pos)?), pos)));
                }
                ':' => {
                    self.bump();
                    let name = self.identifier();
                    if name.is_empty() {
                        return Err(Self::err(pos, "a tag needs a name after ':'"));
                    }
                    return Ok(Some((Token::Tag(name.to_ascii_lowercase()), pos)));
                }
                '0'..='9' => return Ok(Some((Token::Number(self.number(pos)?), pos))),
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let name = self.identifier();
                    if name.eq_ignore_ascii_case("text") && self.peek() == Some(':') {
                        self.bump();
                        return Ok(Some((Token::String(self.multiline(pos)?), pos)));
                    }
                    return Ok(Some((Token::Identifier(name), pos)));
                }
                other => {
                    return Err(Self::err(
                        pos,
                        format!(
                            "unexpected character '{}'",
                            other.escape_default().collect::<String>()
                        ),
                    ))
                }
            }
        }
    }

    fn identifier(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    fn number(&mut self, pos: Pos) -> Result<u64, CompileError> {
        let mut n: u64 = 0;
        while let Some(c) = self.peek() {
            if let Some(d) = c.to_digit(10) {
                self.bump();
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| Self::err(pos, "number too large"))?;
            } else {
                break;
            }
        }
        let mult: u64 = match self.peek() {
            Some('k' | 'K') => 1 << 10,
            Some('m' | 'M') => 1 << 20,
            Some('g' | 'G') => 1 << 30,
            _ => 1,
        };
        if mult > 1 {
            self.bump();
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            return Err(Self::err(pos, "a number must not run into letters"));
        }
        n.checked_mul(mult)
            .ok_or_else(|| Self::err(pos, "number too large"))
    }

    fn quoted(&mut self, pos: Pos) -> Result<String, CompileError> {
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(Self::err(pos, "unterminated string")),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    None => return Err(Self::err(pos, "unterminated string")),
                    // RFC 5228 2.4.2: an undefined escape is the character itself.
                    Some(c) => s.push(c),
                },
                Some(c) => s.push(c),
            }
        }
    }

    /// After `text:`: optional blanks and a hash comment or the line end,
    /// then lines up to a line holding only `.`; a leading `..` is `.`.
    fn multiline(&mut self, pos: Pos) -> Result<String, CompileError> {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
        match self.peek() {
            Some('#') => {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            Some('\r') if self.peek_at(1) == Some('\n') => {
                self.bump();
                self.bump();
            }
            Some('\n') => {
                self.bump();
            }
            _ => {
                return Err(Self::err(
                    pos,
                    "'text:' must be followed by the end of the line",
                ))
            }
        }
        let mut out = String::new();
        loop {
            if self.peek().is_none() {
                return Err(Self::err(
                    pos,
                    "unterminated multi-line string (no line with a single '.')",
                ));
            }
            let mut line = String::new();
            let mut ended = false;
            while let Some(c) = self.bump() {
                if c == '\n' {
                    ended = true;
                    break;
                }
                line.push(c);
            }
            if line.ends_with('\r') {
                line.pop();
            }
            if line == "." {
                if !ended {
                    // "." at the very end of the script: accepted.
                }
                return Ok(out);
            }
            let line = line
                .strip_prefix('.')
                .filter(|l| l.starts_with('.'))
                .unwrap_or(&line);
            out.push_str(line);
            out.push_str("\r\n");
            if !ended {
                return Err(Self::err(
                    pos,
                    "unterminated multi-line string (no line with a single '.')",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        tokenize(s).unwrap().into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn basic_tokens() {
        assert_eq!(
            toks("if size :over 10K { keep; } # c\n/* x */"),
            vec![
                Token::Identifier("if".into()),
                Token::Identifier("size".into()),
                Token::Tag("over".into()),
                Token::Number(10240),
                Token::LBrace,
                Token::Identifier("keep".into()),
                Token::Semicolon,
                Token::RBrace,
            ]
        );
    }

    #[test]
    fn strings() {
        assert_eq!(
            toks(r#""a\"b\\c\d""#),
            vec![Token::String("a\"b\\cd".into())]
        );
        assert_eq!(
            toks("text: # c\r\nline1\r\n..dot\r\n.\r\n"),
            vec![Token::String("line1\r\n.dot\r\n".into())]
        );
        assert_eq!(toks("text:\n.\n"), vec![Token::String(String::new())]);
    }

    #[test]
    fn errors_carry_position() {
        let e = tokenize("keep;\n  \"abc").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        let e = tokenize("99999999999999999999G").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        assert!(tokenize("/* open").is_err());
        assert!(tokenize("text: x\n.\n").is_err());
        assert!(tokenize("text:\nabc").is_err());
        assert!(tokenize("@").is_err());
    }
}
