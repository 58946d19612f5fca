//! Commands (RFC 5804 section 2 and the grammar in section 4).
//!
//! ```text
//! command     = name *(SP argument) CRLF          ; name case-insensitive
//! argument    = string / number
//! string      = quoted / literal-c2s
//! quoted      = DQUOTE *1024QUOTED-CHAR DQUOTE    ; "\" escapes DQUOTE and "\"
//! literal-c2s = "{" number [ "+" ] "}" CRLF *OCTET
//! number      = 1*DIGIT                           ; < 4294967296
//! ```

/// Bounds on what one command may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line outside literals, CRLF included (default 8 KiB).
    pub max_line: usize,
    /// Largest literal: the largest script accepted (default 1 MiB, the
    /// Sieve `max_script_size`).
    pub max_literal: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8192,
            max_literal: 1 << 20,
        }
    }
}

/// A script's name (RFC 5804 section 1.6): 1 to 128 characters, no
/// control characters (C0, DEL, C1, U+2028, U+2029).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScriptName(String);

impl ScriptName {
    /// The longest name accepted, in characters.
    pub const MAX_CHARS: usize = 128;

    /// Checks a name.
    pub fn new(s: &str) -> Option<Self> {
        let n = s.chars().count();
        let bad = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
        if n == 0 || n > Self::MAX_CHARS || s.chars().any(bad) {
            None
        } else {
            Some(ScriptName(s.to_string()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `AUTHENTICATE mechanism [initial-response]` (base64 as sent).
    Authenticate {
        /// The SASL mechanism, uppercased.
        mechanism: String,
        /// The initial response, still base64.
        initial: Option<String>,
    },
    /// `STARTTLS`
    StartTls,
    /// `LOGOUT`
    Logout,
    /// `CAPABILITY`
    Capability,
    /// `HAVESPACE name size`
    HaveSpace {
        /// The script's name.
        name: ScriptName,
        /// Its size in octets.
        size: u64,
    },
    /// `PUTSCRIPT name script`
    PutScript {
        /// The script's name.
        name: ScriptName,
        /// The script.
        script: Vec<u8>,
    },
    /// `CHECKSCRIPT script`
    CheckScript {
        /// The script.
        script: Vec<u8>,
    },
    /// `LISTSCRIPTS`
    ListScripts,
    /// `SETACTIVE name`; `None` for `""` (deactivate).
    SetActive {
        /// The script to activate.
        name: Option<ScriptName>,
    },
    /// `GETSCRIPT name`
    GetScript {
        /// The script's name.
        name: ScriptName,
    },
    /// `DELETESCRIPT name`
    DeleteScript {
        /// The script's name.
        name: ScriptName,
    },
    /// `RENAMESCRIPT old new`
    RenameScript {
        /// The current name.
        old: ScriptName,
        /// The new name.
        new: ScriptName,
    },
    /// `NOOP [tag]`: the tag comes back in a `TAG` response code.
    Noop {
        /// The tag.
        tag: Option<String>,
    },
    /// `UNAUTHENTICATE` (RFC 5804 section 2.14.1).
    Unauthenticate,
}

/// A client's answer to a SASL challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// The response, still base64.
    Data(String),
    /// `"*"`: the client gives up.
    Abort,
}

/// Why a command was refused. Every variant is the client's fault: the
/// session answers `NO` with [`ParseError::message`], except the two
/// `TooLong` kinds, after which it cannot find the next command and closes
/// with `BYE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line over `max_line` without its CRLF.
    #[error("line too long")]
    LineTooLong,
    /// A literal over `max_literal`.
    #[error("literal too large")]
    LiteralTooLarge,
    /// Not ManageSieve syntax.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// A command this server does not know.
    #[error("unknown command")]
    UnknownCommand,
    /// A script name that is empty, too long or has control characters.
    #[error("invalid script name")]
    BadName,
}

impl ParseError {
    /// Whether the connection must be closed (the stream cannot be
    /// resynchronised).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ParseError::LineTooLong | ParseError::LiteralTooLarge)
    }

    /// The text for the `NO`/`BYE` reply (fixed text, never client data).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// One argument.
#[derive(Debug, PartialEq, Eq)]
enum Arg {
    Str(Vec<u8>),
    Num(u64),
}

/// Parses one command from the start of `buf`: `Ok(None)` when more bytes
/// are needed, else the command and the bytes it used.
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Option<(Command, usize)>, ParseError> {
    let Some((name, args, used)) = frame(buf, limits)? else {
        return Ok(None);
    };
    Ok(Some((build(&name, args)?, used)))
}

/// Parses one SASL response line (a string, `"*"` for abort) from `buf`.
pub fn parse_sasl_response(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(SaslResponse, usize)>, ParseError> {
    let mut r = Reader {
        buf,
        pos: 0,
        limits,
    };
    let Some(arg) = r.string()? else {
        return Ok(None);
    };
    if r.line_end()?.is_none() {
        return Ok(None);
    }
    let Arg::Str(s) = arg else {
        return Err(ParseError::Syntax("expected a string"));
    };
    let s = String::from_utf8(s).map_err(|_| ParseError::Syntax("not UTF-8"))?;
    Ok(Some((
        if s == "*" {
            SaslResponse::Abort
        } else {
            SaslResponse::Data(s)
        },
        r.pos,
    )))
}

#[allow(clippy::type_complexity)]
fn frame(buf: &[u8], limits: &Limits) -> Result<Option<(String, Vec<Arg>, usize)>, ParseError> {
    let mut r = Reader {
        buf,
        pos: 0,
        limits,
    };
    let Some(name) = r.atom()? else {
        return Ok(None);
    };
    let mut args = Vec::new();
    loop {
        match r.peek() {
            None => return r.need(),
            Some(b'\r') | Some(b'\n') => break,
            Some(b' ') => {
                r.pos += 1;
                match r.argument()? {
                    Some(a) => args.push(a),
                    None => return Ok(None),
                }
            }
            Some(_) => return Err(ParseError::Syntax("expected a space")),
        }
        if args.len() > 3 {
            return Err(ParseError::Syntax("too many arguments"));
        }
    }
    match r.line_end()? {
        Some(()) => Ok(Some((name, args, r.pos))),
        None => Ok(None),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Out of bytes: need more, unless the line is already too long.
    fn need<T>(&self) -> Result<Option<T>, ParseError> {
        if self.buf.len() >= self.limits.max_line
            && !self.buf[..self.limits.max_line].contains(&b'\n')
        {
            Err(ParseError::LineTooLong)
        } else {
            Ok(None)
        }
    }

    fn atom(&mut self) -> Result<Option<String>, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphabetic() {
                self.pos += 1;
                if self.pos - start > 32 {
                    return Err(ParseError::UnknownCommand);
                }
            } else {
                break;
            }
        }
        if self.peek().is_none() {
            return self.need();
        }
        if self.pos == start {
            return Err(ParseError::Syntax("expected a command name"));
        }
        Ok(Some(
            String::from_utf8_lossy(&self.buf[start..self.pos]).to_ascii_uppercase(),
        ))
    }

    fn line_end(&mut self) -> Result<Option<()>, ParseError> {
        match (self.peek(), self.buf.get(self.pos + 1)) {
            (None, _) | (Some(b'\r'), None) => self.need(),
            (Some(b'\r'), Some(b'\n')) => {
                self.pos += 2;
                Ok(Some(()))
            }
            // A bare LF is accepted as a line end, as Dovecot does.
            (Some(b'\n'), _) => {
                self.pos += 1;
                Ok(Some(()))
            }
            _ => Err(ParseError::Syntax("expected the end of the line")),
        }
    }

    fn argument(&mut self) -> Result<Option<Arg>, ParseError> {
        match self.peek() {
            None => self.need(),
            Some(b'0'..=b'9') => {
                let start = self.pos;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
                if self.peek().is_none() {
                    return self.need();
                }
                let digits = std::str::from_utf8(&self.buf[start..self.pos]).unwrap_or("x");
                let n: u64 = digits
                    .parse()
                    .map_err(|_| ParseError::Syntax("number too large"))?;
                if n > u64::from(u32::MAX) {
                    return Err(ParseError::Syntax("number too large"));
                }
                Ok(Some(Arg::Num(n)))
            }
            _ => self.string(),
        }
    }

    fn string(&mut self) -> Result<Option<Arg>, ParseError> {
        match self.peek() {
            None => self.need(),
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return self.need(),
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(Some(Arg::Str(out)));
                        }
                        Some(b'\\') => match self.buf.get(self.pos + 1) {
                            None => return self.need(),
                            Some(&c @ (b'"' | b'\\')) => {
                                out.push(c);
                                self.pos += 2;
                            }
                            Some(_) => {
                                return Err(ParseError::Syntax("bad escape in a quoted string"))
                            }
                        },
                        Some(b'\r' | b'\n' | 0) => {
                            return Err(ParseError::Syntax("line break in a quoted string"))
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                    if out.len() > 1024 * 4 {
                        return Err(ParseError::Syntax("quoted string too long"));
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                let start = self.pos;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                    if self.pos - start > 10 {
                        return Err(ParseError::LiteralTooLarge);
                    }
                }
                let digits = &self.buf[start..self.pos];
                if self.peek() == Some(b'+') {
                    self.pos += 1;
                }
                match self.peek() {
                    None => return self.need(),
                    Some(b'}') => self.pos += 1,
                    Some(_) => return Err(ParseError::Syntax("bad literal")),
                }
                if digits.is_empty() {
                    return Err(ParseError::Syntax("bad literal"));
                }
                let n: usize = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or(ParseError::LiteralTooLarge)?;
                if n > self.limits.max_literal {
                    return Err(ParseError::LiteralTooLarge);
                }
                if self.line_end()?.is_none() {
                    return Ok(None);
                }
                if self.buf.len() - self.pos < n {
                    return Ok(None);
                }
                let data = self.buf[self.pos..self.pos + n].to_vec();
                self.pos += n;
                Ok(Some(Arg::Str(data)))
            }
            Some(_) => Err(ParseError::Syntax("expected a string")),
        }
    }
}

fn build(name: &str, args: Vec<Arg>) -> Result<Command, ParseError> {
    let mut it = args.into_iter();
    let mut next = || it.next();
    let string = |a: Option<Arg>| match a {
        Some(Arg::Str(s)) => Ok(s),
        _ => Err(ParseError::Syntax("expected a string")),
    };
    let text = |a: Option<Arg>| {
        string(a).and_then(|s| String::from_utf8(s).map_err(|_| ParseError::Syntax("not UTF-8")))
    };
    let script_name =
        |a: Option<Arg>| text(a).and_then(|s| ScriptName::new(&s).ok_or(ParseError::BadName));
    let cmd = match name {
        "AUTHENTICATE" => {
            let mechanism = text(next())?.to_ascii_uppercase();
            let initial = match next() {
                None => None,
                a => Some(text(a)?),
            };
            Command::Authenticate { mechanism, initial }
        }
        "STARTTLS" => Command::StartTls,
        "LOGOUT" => Command::Logout,
        "CAPABILITY" => Command::Capability,
        "HAVESPACE" => {
            let name = script_name(next())?;
            let Some(Arg::Num(size)) = next() else {
                return Err(ParseError::Syntax("expected a number"));
            };
            Command::HaveSpace { name, size }
        }
        "PUTSCRIPT" => Command::PutScript {
            name: script_name(next())?,
            script: string(next())?,
        },
        "CHECKSCRIPT" => Command::CheckScript {
            script: string(next())?,
        },
        "LISTSCRIPTS" => Command::ListScripts,
        "SETACTIVE" => {
            let s = text(next())?;
            Command::SetActive {
                name: if s.is_empty() {
                    None
                } else {
                    Some(ScriptName::new(&s).ok_or(ParseError::BadName)?)
                },
            }
        }
        "GETSCRIPT" => Command::GetScript {
            name: script_name(next())?,
        },
        "DELETESCRIPT" => Command::DeleteScript {
            name: script_name(next())?,
        },
        "RENAMESCRIPT" => Command::RenameScript {
            old: script_name(next())?,
            new: script_name(next())?,
        },
        "NOOP" => Command::Noop {
            tag: match next() {
                None => None,
                a => Some(text(a)?),
            },
        },
        "UNAUTHENTICATE" => Command::Unauthenticate,
        _ => return Err(ParseError::UnknownCommand),
    };
    if next().is_some() {
        return Err(ParseError::Syntax("too many arguments"));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &[u8]) -> Result<Option<(Command, usize)>, ParseError> {
        parse_command(s, &Limits::default())
    }

    fn name(s: &str) -> ScriptName {
        ScriptName::new(s).unwrap()
    }

    #[test]
    fn known_answers() {
        let cases: Vec<(&[u8], Command)> = vec![
            (b"CAPABILITY\r\n", Command::Capability),
            (b"logout\r\n", Command::Logout),
            (b"StartTls\r\n", Command::StartTls),
            (
                b"AUTHENTICATE \"PLAIN\" \"AGZvbwBiYXI=\"\r\n",
                Command::Authenticate {
                    mechanism: "PLAIN".into(),
                    initial: Some("AGZvbwBiYXI=".into()),
                },
            ),
            (
                b"HAVESPACE \"myscript\" 999999\r\n",
                Command::HaveSpace {
                    name: name("myscript"),
                    size: 999_999,
                },
            ),
            (
                b"PUTSCRIPT \"foo\" {31+}\r\n#comment\r\nInvalidSieveCommand\r\n\r\n",
                Command::PutScript {
                    name: name("foo"),
                    script: b"#comment\r\nInvalidSieveCommand\r\n".to_vec(),
                },
            ),
            (
                b"CHECKSCRIPT {4}\r\nkeep\r\n",
                Command::CheckScript {
                    script: b"keep".to_vec(),
                },
            ),
            (b"LISTSCRIPTS\r\n", Command::ListScripts),
            (b"SETACTIVE \"\"\r\n", Command::SetActive { name: None }),
            (
                b"SETACTIVE \"vac\\\"ation\"\r\n",
                Command::SetActive {
                    name: Some(name("vac\"ation")),
                },
            ),
            (
                b"GETSCRIPT \"x\"\r\n",
                Command::GetScript { name: name("x") },
            ),
            (
                b"DELETESCRIPT {1+}\r\nx\r\n",
                Command::DeleteScript { name: name("x") },
            ),
            (
                b"RENAMESCRIPT \"a\" \"b\"\r\n",
                Command::RenameScript {
                    old: name("a"),
                    new: name("b"),
                },
            ),
            (
                b"NOOP \"STARTTLS-SYNC-42\"\r\n",
                Command::Noop {
                    tag: Some("STARTTLS-SYNC-42".into()),
                },
            ),
            (b"NOOP\n", Command::Noop { tag: None }),
            (b"UNAUTHENTICATE\r\n", Command::Unauthenticate),
        ];
        for (input, want) in cases {
            let (cmd, used) = one(input)
                .unwrap()
                .unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(input)));
            assert_eq!(cmd, want);
            assert_eq!(used, input.len());
            // Cut anywhere: need more data, never an error or another command.
            for cut in 0..input.len() {
                assert_eq!(
                    one(&input[..cut]),
                    Ok(None),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn pipelined() {
        let input = b"NOOP\r\nLOGOUT\r\n";
        let (cmd, used) = one(input).unwrap().unwrap();
        assert_eq!((cmd, used), (Command::Noop { tag: None }, 6));
        assert_eq!(one(&input[used..]).unwrap().unwrap().0, Command::Logout);
    }

    #[test]
    fn refusals() {
        assert_eq!(one(b"FROB\r\n"), Err(ParseError::UnknownCommand));
        assert_eq!(one(b"GETSCRIPT \"\"\r\n"), Err(ParseError::BadName));
        assert_eq!(one(b"GETSCRIPT \"a\x01b\"\r\n"), Err(ParseError::BadName));
        let long = format!("GETSCRIPT \"{}\"\r\n", "n".repeat(129));
        assert_eq!(one(long.as_bytes()), Err(ParseError::BadName));
        assert!(matches!(
            one(b"GETSCRIPT \"a\r\n\"\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            one(b"HAVESPACE \"a\" 99999999999\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            one(b"LOGOUT extra\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            one(b"NOOP \"a\" \"b\"\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            one(b"GETSCRIPT \"bad\\escape\"\r\n"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_line: 64,
            max_literal: 10,
        };
        let big = b"PUTSCRIPT \"a\" {11+}\r\n";
        let e = parse_command(big, &limits).unwrap_err();
        assert_eq!(e, ParseError::LiteralTooLarge);
        assert!(e.is_fatal());
        assert!(
            parse_command(b"PUTSCRIPT \"a\" {10+}\r\n0123456789\r\n", &limits)
                .unwrap()
                .is_some()
        );
        let e = parse_command(b"PUTSCRIPT \"a\" {99999999999999999999+}\r\n", &limits).unwrap_err();
        assert_eq!(e, ParseError::LiteralTooLarge);
        let line = vec![b'N'; 100];
        assert_eq!(
            parse_command(&line, &limits),
            Err(ParseError::UnknownCommand)
        );
        let mut line = b"NOOP \"".to_vec();
        line.extend(vec![b'x'; 100]);
        assert_eq!(parse_command(&line, &limits), Err(ParseError::LineTooLong));
    }

    #[test]
    fn sasl_responses() {
        let l = Limits::default();
        assert_eq!(
            parse_sasl_response(b"\"dGVzdA==\"\r\n", &l).unwrap(),
            Some((SaslResponse::Data("dGVzdA==".into()), 12))
        );
        assert_eq!(
            parse_sasl_response(b"{3+}\r\nabc\r\n", &l)
                .unwrap()
                .unwrap()
                .0,
            SaslResponse::Data("abc".into())
        );
        assert_eq!(
            parse_sasl_response(b"\"*\"\r\n", &l).unwrap().unwrap().0,
            SaslResponse::Abort
        );
        assert_eq!(parse_sasl_response(b"\"abc", &l), Ok(None));
    }

    #[test]
    fn never_panics_on_noise() {
        let mut x: u64 = 42;
        let alphabet = b"{}+\"\\ \r\n0123456789PUTSCRIPTNOOPabc\x00\xff";
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let l = Limits {
                max_line: 16,
                max_literal: 8,
            };
            if let Ok(Some((_, used))) = parse_command(&buf, &l) {
                assert!(used <= buf.len());
            }
            let _ = parse_sasl_response(&buf, &l);
        }
    }
}
