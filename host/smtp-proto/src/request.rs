//! Command lines (RFC 5321 §4.1.1, §4.1.2 and the extensions we parse).
//!
//! ```text
//! ehlo     = "EHLO" SP ( Domain / address-literal ) CRLF
//! helo     = "HELO" SP Domain CRLF
//! lhlo     = "LHLO" SP Domain CRLF                     ; RFC 2033
//! mail     = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
//! rcpt     = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
//!            Forward-path ) [SP Rcpt-parameters] CRLF
//! data     = "DATA" CRLF
//! bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CRLF  ; RFC 3030
//! chunk-size = 1*DIGIT
//! end-marker = "LAST"
//! rset     = "RSET" CRLF
//! vrfy     = "VRFY" SP String CRLF
//! expn     = "EXPN" SP String CRLF
//! help     = "HELP" [ SP String ] CRLF
//! noop     = "NOOP" [ SP String ] CRLF
//! quit     = "QUIT" CRLF
//! starttls = "STARTTLS" CRLF                           ; RFC 3207
//! auth     = "AUTH" SP sasl-mech [SP initial-response] CRLF  ; RFC 4954
//! sasl-mech = 1*20(UPPER-ALPHA / DIGIT / "-" / "_")
//! initial-response = base64 / "="
//! ```
//!
//! Tolerances, all of them common in the field and harmless: verbs and
//! keywords are case-insensitive, trailing spaces are ignored, spaces
//! are allowed after `MAIL FROM:` / `RCPT TO:` and between the words of
//! `MAIL FROM`, and HELO also takes an address literal.

use crate::address::{
    parse_ehlo_host, parse_forward_path, parse_reverse_path, ForwardPath, Host, ReversePath,
};
use crate::error::ParseError;
use crate::params::{MailParams, RcptParams};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `EHLO host`
    Ehlo {
        /// The client's name for itself.
        host: Host,
    },
    /// `HELO host`
    Helo {
        /// The client's name for itself.
        host: Host,
    },
    /// `LHLO host` (LMTP, RFC 2033)
    Lhlo {
        /// The client's name for itself.
        host: Host,
    },
    /// `MAIL FROM:<path> params`
    Mail {
        /// The sender.
        from: ReversePath,
        /// The parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> params`
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// The parameters.
        params: RcptParams,
    },
    /// `DATA`
    Data,
    /// `BDAT size [LAST]`
    Bdat {
        /// The chunk size in bytes.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop(Option<String>),
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy(String),
    /// `EXPN string`
    Expn(String),
    /// `HELP [string]`
    Help(Option<String>),
    /// `STARTTLS`
    StartTls,
    /// `AUTH mechanism [initial-response]`
    Auth {
        /// The SASL mechanism, upper-cased.
        mechanism: String,
        /// The initial response, base64 or `=` (empty), as sent.
        initial_response: Option<String>,
    },
}

/// The verb of a command, for sequencing tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// EHLO
    Ehlo,
    /// HELO
    Helo,
    /// LHLO
    Lhlo,
    /// MAIL
    Mail,
    /// RCPT
    Rcpt,
    /// DATA
    Data,
    /// BDAT
    Bdat,
    /// RSET
    Rset,
    /// NOOP
    Noop,
    /// QUIT
    Quit,
    /// VRFY
    Vrfy,
    /// EXPN
    Expn,
    /// HELP
    Help,
    /// STARTTLS
    StartTls,
    /// AUTH
    Auth,
}

impl Verb {
    /// Recognises a verb (case-insensitive).
    pub fn from_word(word: &str) -> Option<Verb> {
        Some(match word.to_ascii_uppercase().as_str() {
            "EHLO" => Verb::Ehlo,
            "HELO" => Verb::Helo,
            "LHLO" => Verb::Lhlo,
            "MAIL" => Verb::Mail,
            "RCPT" => Verb::Rcpt,
            "DATA" => Verb::Data,
            "BDAT" => Verb::Bdat,
            "RSET" => Verb::Rset,
            "NOOP" => Verb::Noop,
            "QUIT" => Verb::Quit,
            "VRFY" => Verb::Vrfy,
            "EXPN" => Verb::Expn,
            "HELP" => Verb::Help,
            "STARTTLS" => Verb::StartTls,
            "AUTH" => Verb::Auth,
            _ => return None,
        })
    }

    /// The verb as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Ehlo => "EHLO",
            Verb::Helo => "HELO",
            Verb::Lhlo => "LHLO",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP",
            Verb::Quit => "QUIT",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
            Verb::Help => "HELP",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
        }
    }
}

/// Strips an ASCII prefix case-insensitively.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// After a path: nothing, or parameters after at least one space.
fn params_after_path(rest: &str) -> Option<&str> {
    if rest.is_empty() {
        Some("")
    } else if rest.starts_with(' ') {
        Some(rest)
    } else {
        None
    }
}

fn no_args(args: &str) -> Result<(), ParseError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(ParseError::Syntax("command takes no arguments"))
    }
}

fn optional_arg(args: &str) -> Option<String> {
    (!args.is_empty()).then(|| args.to_string())
}

fn hello_host(args: &str) -> Result<Host, ParseError> {
    if args.is_empty() {
        return Err(ParseError::Syntax(
            "a domain name or address literal is required",
        ));
    }
    parse_ehlo_host(args).ok_or(ParseError::Syntax("invalid domain name or address literal"))
}

impl Request {
    /// Parses one command line, without its CRLF. Never panics.
    pub fn parse(line: &[u8]) -> Result<Request, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidCharacters)?;
        if line.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(ParseError::InvalidCharacters);
        }
        let line = line.trim_end_matches(' ');
        let (word, args) = match line.split_once(' ') {
            Some((w, a)) => (w, a.trim_start_matches(' ')),
            None => (line, ""),
        };
        let verb = Verb::from_word(word).ok_or(ParseError::UnrecognizedCommand)?;
        Ok(match verb {
            Verb::Ehlo => Request::Ehlo {
                host: hello_host(args)?,
            },
            Verb::Helo => Request::Helo {
                host: hello_host(args)?,
            },
            Verb::Lhlo => Request::Lhlo {
                host: hello_host(args)?,
            },
            Verb::Mail => {
                let path = strip_prefix_ci(args, "FROM:")
                    .ok_or(ParseError::Syntax("expected MAIL FROM:<address>"))?
                    .trim_start_matches(' ');
                let (from, rest) = parse_reverse_path(path).map_err(ParseError::BadSender)?;
                let params = params_after_path(rest)
                    .ok_or(ParseError::BadSender("garbage after address"))?;
                Request::Mail {
                    from,
                    params: MailParams::parse(params)?,
                }
            }
            Verb::Rcpt => {
                let path = strip_prefix_ci(args, "TO:")
                    .ok_or(ParseError::Syntax("expected RCPT TO:<address>"))?
                    .trim_start_matches(' ');
                let (to, rest) = parse_forward_path(path).map_err(ParseError::BadRecipient)?;
                let params = params_after_path(rest)
                    .ok_or(ParseError::BadRecipient("garbage after address"))?;
                Request::Rcpt {
                    to,
                    params: RcptParams::parse(params)?,
                }
            }
            Verb::Data => no_args(args).map(|_| Request::Data)?,
            Verb::Rset => no_args(args).map(|_| Request::Rset)?,
            Verb::Quit => no_args(args).map(|_| Request::Quit)?,
            Verb::StartTls => no_args(args).map(|_| Request::StartTls)?,
            Verb::Bdat => parse_bdat(args)?,
            Verb::Noop => Request::Noop(optional_arg(args)),
            Verb::Help => Request::Help(optional_arg(args)),
            Verb::Vrfy => Request::Vrfy(
                optional_arg(args).ok_or(ParseError::Syntax("VRFY needs an argument"))?,
            ),
            Verb::Expn => Request::Expn(
                optional_arg(args).ok_or(ParseError::Syntax("EXPN needs an argument"))?,
            ),
            Verb::Auth => parse_auth(args)?,
        })
    }

    /// The verb of this command.
    pub fn verb(&self) -> Verb {
        match self {
            Request::Ehlo { .. } => Verb::Ehlo,
            Request::Helo { .. } => Verb::Helo,
            Request::Lhlo { .. } => Verb::Lhlo,
            Request::Mail { .. } => Verb::Mail,
            Request::Rcpt { .. } => Verb::Rcpt,
            Request::Data => Verb::Data,
            Request::Bdat { .. } => Verb::Bdat,
            Request::Rset => Verb::Rset,
            Request::Noop(_) => Verb::Noop,
            Request::Quit => Verb::Quit,
            Request::Vrfy(_) => Verb::Vrfy,
            Request::Expn(_) => Verb::Expn,
            Request::Help(_) => Verb::Help,
            Request::StartTls => Verb::StartTls,
            Request::Auth { .. } => Verb::Auth,
        }
    }
}

/// `"BDAT" SP chunk-size [ SP end-marker ]`
fn parse_bdat(args: &str) -> Result<Request, ParseError> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .ok_or(ParseError::Syntax("BDAT needs a chunk size"))?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax("invalid chunk size"));
    }
    let size = size
        .parse::<u64>()
        .map_err(|_| ParseError::Syntax("invalid chunk size"))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::Syntax("expected LAST")),
    };
    if words.next().is_some() {
        return Err(ParseError::Syntax("too many arguments"));
    }
    Ok(Request::Bdat { size, last })
}

/// `"AUTH" SP sasl-mech [SP initial-response]`
fn parse_auth(args: &str) -> Result<Request, ParseError> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words
        .next()
        .ok_or(ParseError::Syntax("AUTH needs a mechanism"))?;
    let mech_ok = (1..=20).contains(&mechanism.len())
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !mech_ok {
        return Err(ParseError::Syntax("invalid SASL mechanism"));
    }
    let initial_response = match words.next() {
        None => None,
        Some(r)
            if r == "="
                || r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) =>
        {
            Some(r.to_string())
        }
        Some(_) => return Err(ParseError::Syntax("invalid initial response")),
    };
    if words.next().is_some() {
        return Err(ParseError::Syntax("too many arguments"));
    }
    Ok(Request::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial_response,
    })
}
