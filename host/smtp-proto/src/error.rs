//! Errors of the command parser and the line framer. Each knows the reply
//! it stands for, so the session maps an error to the wire in one call.

use crate::reply::Reply;

/// Why a command line could not be parsed.
///
/// The `&'static str` details are short human texts that go into the reply
/// line; they never echo client input back (so a reply cannot be used to
/// reflect arbitrary bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The verb is not one we know: `500 5.5.1`.
    #[error("unrecognized command")]
    UnrecognizedCommand,
    /// The line is not UTF-8 or holds control characters: `500 5.5.2`.
    #[error("invalid characters in command")]
    InvalidCharacters,
    /// Syntax error in the arguments or parameters: `501 5.5.4`.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// The reverse-path of MAIL is malformed: `501 5.1.7`.
    #[error("bad sender address syntax: {0}")]
    BadSender(&'static str),
    /// The forward-path of RCPT is malformed: `501 5.1.3`.
    #[error("bad recipient address syntax: {0}")]
    BadRecipient(&'static str),
    /// A MAIL/RCPT parameter keyword we do not know: `555 5.5.4`.
    #[error("unknown parameter {0}")]
    UnknownParameter(String),
}

impl ParseError {
    /// The reply to send for this error.
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::UnrecognizedCommand => {
                Reply::with_code(500, 5, 5, 1, "Error: command not recognized")
            }
            ParseError::InvalidCharacters => {
                Reply::with_code(500, 5, 5, 2, "Error: invalid characters in command")
            }
            ParseError::Syntax(what) => {
                Reply::with_code(501, 5, 5, 4, format!("Syntax error: {what}"))
            }
            ParseError::BadSender(what) => {
                Reply::with_code(501, 5, 1, 7, format!("Bad sender address syntax: {what}"))
            }
            ParseError::BadRecipient(what) => Reply::with_code(
                501,
                5,
                1,
                3,
                format!("Bad recipient address syntax: {what}"),
            ),
            // The keyword is echoed only after the parser checked it is an
            // esmtp-keyword (letters, digits, '-'), so it is safe to show.
            ParseError::UnknownParameter(k) => {
                Reply::with_code(555, 5, 5, 4, format!("Unsupported parameter {k}"))
            }
        }
    }
}

/// A command line exceeded the framer's limit: `500 5.5.2 Line too long`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("command line too long")]
pub struct LineTooLong;

impl LineTooLong {
    /// The reply to send.
    pub fn reply(&self) -> Reply {
        Reply::line_too_long()
    }
}
