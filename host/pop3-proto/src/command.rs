//! POP3 commands and their parser.
//!
//! RFC 1939 §3: "Commands in the POP3 consist of a case-insensitive
//! keyword, possibly followed by one or more arguments. [...] Keywords and
//! arguments consist of printable ASCII characters. Keywords and arguments
//! are each separated by a single SPACE character."
//!
//! RFC 2449 §3 (ABNF):
//! ```text
//! command  = keyword *(SP param) CRLF    ;255 octets maximum
//! keyword  = 3*4VCHAR
//! param    = 1*VCHAR
//! ```
//!
//! We are lenient where it costs nothing: runs of spaces and trailing
//! spaces are accepted, and arguments may be UTF-8 (user names and
//! passwords often are). Control characters are refused.

use std::fmt;

/// The keyword of a command, without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `USER` (RFC 1939 §7)
    User,
    /// `PASS` (RFC 1939 §7)
    Pass,
    /// `APOP` (RFC 1939 §7)
    Apop,
    /// `STAT` (RFC 1939 §5)
    Stat,
    /// `LIST` (RFC 1939 §5)
    List,
    /// `RETR` (RFC 1939 §5)
    Retr,
    /// `DELE` (RFC 1939 §5)
    Dele,
    /// `NOOP` (RFC 1939 §5)
    Noop,
    /// `RSET` (RFC 1939 §5)
    Rset,
    /// `QUIT` (RFC 1939 §4 and §6)
    Quit,
    /// `TOP` (RFC 1939 §7)
    Top,
    /// `UIDL` (RFC 1939 §7)
    Uidl,
    /// `CAPA` (RFC 2449 §5)
    Capa,
    /// `AUTH` (RFC 5034 §4)
    Auth,
    /// `STLS` (RFC 2595 §4)
    Stls,
}

/// Every verb with its keyword, for parsing and printing.
const VERBS: &[(Verb, &str)] = &[
    (Verb::User, "USER"),
    (Verb::Pass, "PASS"),
    (Verb::Apop, "APOP"),
    (Verb::Stat, "STAT"),
    (Verb::List, "LIST"),
    (Verb::Retr, "RETR"),
    (Verb::Dele, "DELE"),
    (Verb::Noop, "NOOP"),
    (Verb::Rset, "RSET"),
    (Verb::Quit, "QUIT"),
    (Verb::Top, "TOP"),
    (Verb::Uidl, "UIDL"),
    (Verb::Capa, "CAPA"),
    (Verb::Auth, "AUTH"),
    (Verb::Stls, "STLS"),
];

impl Verb {
    /// The verb for a keyword, case-insensitively.
    pub fn from_keyword(keyword: &[u8]) -> Option<Verb> {
        VERBS
            .iter()
            .find(|(_, k)| k.as_bytes().eq_ignore_ascii_case(keyword))
            .map(|&(v, _)| v)
    }

    /// The keyword in upper case, e.g. `RETR`.
    pub fn keyword(self) -> &'static str {
        VERBS
            .iter()
            .find(|&&(v, _)| v == self)
            .map(|&(_, k)| k)
            .unwrap_or("?")
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A parsed client command.
///
/// Message numbers are kept as sent (`0` included): whether a number names
/// a message is for the session to say, with the protocol's own `-ERR`.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name`
    User(String),
    /// `PASS string` (the rest of the line, spaces included, RFC 1939 §7:
    /// "a POP3 server may treat spaces in the argument as part of the
    /// password, instead of as argument separators").
    Pass(String),
    /// `APOP name digest` (parsed only; the server does not offer it).
    Apop {
        /// The mailbox name.
        name: String,
        /// The MD5 digest, 32 lower-case hex digits.
        digest: String,
    },
    /// `STAT`
    Stat,
    /// `LIST [msg]`
    List(Option<u32>),
    /// `RETR msg`
    Retr(u32),
    /// `DELE msg`
    Dele(u32),
    /// `NOOP`
    Noop,
    /// `RSET`
    Rset,
    /// `QUIT`
    Quit,
    /// `TOP msg n`
    Top {
        /// The message number.
        msg: u32,
        /// How many body lines to send after the header.
        lines: u32,
    },
    /// `UIDL [msg]`
    Uidl(Option<u32>),
    /// `CAPA`
    Capa,
    /// `AUTH [mechanism [initial-response]]`
    Auth {
        /// The SASL mechanism, upper-cased; `None` asks for the list.
        mechanism: Option<String>,
        /// The initial response as sent (base64); `=` becomes the empty
        /// string (RFC 5034 §4: an empty initial response).
        initial_response: Option<String>,
    },
    /// `STLS`
    Stls,
}

// Hand-written so that passwords and SASL responses never reach a log.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::Apop { name, .. } => write!(f, "Apop({name:?}, <redacted>)"),
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                let ir = if initial_response.is_some() {
                    "Some(<redacted>)"
                } else {
                    "None"
                };
                write!(f, "Auth({mechanism:?}, {ir})")
            }
            Command::User(u) => write!(f, "User({u:?})"),
            Command::List(m) => write!(f, "List({m:?})"),
            Command::Retr(m) => write!(f, "Retr({m})"),
            Command::Dele(m) => write!(f, "Dele({m})"),
            Command::Top { msg, lines } => write!(f, "Top({msg}, {lines})"),
            Command::Uidl(m) => write!(f, "Uidl({m:?})"),
            other => f.write_str(other.verb().keyword()),
        }
    }
}

impl Command {
    /// The command's keyword.
    pub fn verb(&self) -> Verb {
        match self {
            Command::User(_) => Verb::User,
            Command::Pass(_) => Verb::Pass,
            Command::Apop { .. } => Verb::Apop,
            Command::Stat => Verb::Stat,
            Command::List(_) => Verb::List,
            Command::Retr(_) => Verb::Retr,
            Command::Dele(_) => Verb::Dele,
            Command::Noop => Verb::Noop,
            Command::Rset => Verb::Rset,
            Command::Quit => Verb::Quit,
            Command::Top { .. } => Verb::Top,
            Command::Uidl(_) => Verb::Uidl,
            Command::Capa => Verb::Capa,
            Command::Auth { .. } => Verb::Auth,
            Command::Stls => Verb::Stls,
        }
    }
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty (or only spaces).
    #[error("empty command")]
    Empty,
    /// The line holds a control character (NUL, TAB, a stray CR, ...).
    #[error("invalid character in command")]
    InvalidCharacter,
    /// The line is not valid UTF-8.
    #[error("command is not valid UTF-8")]
    NotUtf8,
    /// The keyword is not a POP3 command we know.
    #[error("unknown command")]
    UnknownCommand,
    /// A required argument is missing.
    #[error("{0}: missing argument")]
    MissingArgument(Verb),
    /// More arguments than the command takes.
    #[error("{0}: too many arguments")]
    TooManyArguments(Verb),
    /// An argument that should be a number is not a decimal number that
    /// fits in 32 bits.
    #[error("{0}: invalid number")]
    InvalidNumber(Verb),
    /// An argument is malformed (a bad SASL mechanism name or APOP digest).
    #[error("{0}: invalid argument")]
    InvalidArgument(Verb),
}

/// Parses one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ParseError::InvalidCharacter);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, r),
        None => (line, ""),
    };
    if keyword.is_empty() {
        return Err(if line.trim_matches(' ').is_empty() {
            ParseError::Empty
        } else {
            ParseError::UnknownCommand
        });
    }
    let verb = Verb::from_keyword(keyword.as_bytes()).ok_or(ParseError::UnknownCommand)?;
    if verb == Verb::Pass {
        // The whole rest is the password, spaces and all.
        if rest.is_empty() {
            return Err(ParseError::MissingArgument(verb));
        }
        return Ok(Command::Pass(rest.to_string()));
    }
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    let args = Args { verb, args: &args };
    Ok(match verb {
        Verb::User => Command::User(args.exactly::<1>()?[0].to_string()),
        Verb::Pass => return Err(ParseError::MissingArgument(verb)), // handled above
        Verb::Apop => {
            let [name, digest] = args.exactly::<2>()?;
            // RFC 1939 §7: "digest = 32 hex digits (lower-case a-f)".
            if digest.len() != 32
                || !digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(ParseError::InvalidArgument(verb));
            }
            Command::Apop {
                name: name.to_string(),
                digest: digest.to_string(),
            }
        }
        Verb::Stat => args.none(Command::Stat)?,
        Verb::Noop => args.none(Command::Noop)?,
        Verb::Rset => args.none(Command::Rset)?,
        Verb::Quit => args.none(Command::Quit)?,
        Verb::Capa => args.none(Command::Capa)?,
        Verb::Stls => args.none(Command::Stls)?,
        Verb::List => Command::List(args.optional_number()?),
        Verb::Uidl => Command::Uidl(args.optional_number()?),
        Verb::Retr => Command::Retr(args.number(args.exactly::<1>()?[0])?),
        Verb::Dele => Command::Dele(args.number(args.exactly::<1>()?[0])?),
        Verb::Top => {
            let [msg, lines] = args.exactly::<2>()?;
            Command::Top {
                msg: args.number(msg)?,
                lines: args.number(lines)?,
            }
        }
        Verb::Auth => parse_auth(args)?,
    })
}

/// RFC 5034 §4:
/// ```text
/// auth_command     = "AUTH" SP sasl-mech [SP initial-response]
///                    *(CRLF [base64]) [CRLF cancel-response] CRLF
/// initial-response = base64 / "="
/// ```
/// RFC 4422 §3.1: `sasl-mech = 1*20mech-char`,
/// `mech-char = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE`
/// (we accept lower case too and upper-case it). `AUTH` alone is the
/// pre-RFC 5034 way of asking for the mechanisms, which clients still use.
fn parse_auth(args: Args<'_>) -> Result<Command, ParseError> {
    let verb = args.verb;
    match *args.args {
        [] => Ok(Command::Auth {
            mechanism: None,
            initial_response: None,
        }),
        [mech] | [mech, _] => {
            let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            if mech.len() > 20 || !mech.bytes().all(ok_char) {
                return Err(ParseError::InvalidArgument(verb));
            }
            let initial_response = args.args.get(1).map(|ir| {
                if *ir == "=" {
                    String::new()
                } else {
                    ir.to_string()
                }
            });
            Ok(Command::Auth {
                mechanism: Some(mech.to_ascii_uppercase()),
                initial_response,
            })
        }
        _ => Err(ParseError::TooManyArguments(verb)),
    }
}

/// The arguments of one command, with the checks every command needs.
#[derive(Clone, Copy)]
struct Args<'a> {
    verb: Verb,
    args: &'a [&'a str],
}

impl<'a> Args<'a> {
    fn none(self, command: Command) -> Result<Command, ParseError> {
        if self.args.is_empty() {
            Ok(command)
        } else {
            Err(ParseError::TooManyArguments(self.verb))
        }
    }

    fn exactly<const N: usize>(self) -> Result<[&'a str; N], ParseError> {
        match <[&str; N]>::try_from(self.args) {
            Ok(a) => Ok(a),
            Err(_) if self.args.len() < N => Err(ParseError::MissingArgument(self.verb)),
            Err(_) => Err(ParseError::TooManyArguments(self.verb)),
        }
    }

    fn optional_number(self) -> Result<Option<u32>, ParseError> {
        match self.args {
            [] => Ok(None),
            [n] => self.number(n).map(Some),
            _ => Err(ParseError::TooManyArguments(self.verb)),
        }
    }

    /// A decimal number: digits only (no sign), fitting in a `u32`.
    fn number(self, s: &str) -> Result<u32, ParseError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::InvalidNumber(self.verb));
        }
        s.parse().map_err(|_| ParseError::InvalidNumber(self.verb))
    }
}

/// A client's answer to a SASL challenge (`+ ...`) during AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// The client gives up: RFC 5034 §4, "If the client wishes to cancel
    /// the authentication exchange, it issues a line with a single '*'."
    Cancel,
    /// A base64 response (possibly empty), not yet decoded.
    Data(String),
}

/// Parses the line a client sends after a `+` continuation during AUTH.
///
/// RFC 5034 §4: `*(CRLF [base64]) [CRLF cancel-response] CRLF`,
/// `cancel-response = "*"`. Only base64 characters are accepted here;
/// whether they decode to a valid SASL message is for the mechanism to
/// say.
pub fn parse_sasl_response(line: &[u8]) -> Result<SaslResponse, ParseError> {
    let line = trim_spaces(line);
    if line == b"*" {
        return Ok(SaslResponse::Cancel);
    }
    let base64_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if !line.iter().all(base64_char) {
        return Err(ParseError::InvalidArgument(Verb::Auth));
    }
    // All bytes are ASCII now.
    Ok(SaslResponse::Data(
        String::from_utf8_lossy(line).into_owned(),
    ))
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}
