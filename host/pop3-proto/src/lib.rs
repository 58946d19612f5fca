//! The POP3 wire format: what goes over the socket, and nothing else.
//!
//! # Role
//! This crate turns bytes into POP3 commands and responses into bytes for
//! the `mailgate-pop3` session. It does no I/O and knows nothing of tokio,
//! the store or authentication, so every rule of the protocol's syntax can
//! be tested with plain byte strings.
//!
//! Covered: RFC 1939 (base protocol), RFC 2449 (CAPA, response codes,
//! longer command lines), RFC 3206 (`SYS/*` and `AUTH` response codes),
//! RFC 5034 (AUTH) and RFC 2595 (STLS). APOP is parsed so that the session
//! can answer it with a proper `-ERR`, but it is not implemented.
//!
//! # Invariants
//! - No function here panics, whatever bytes it is given; a line is either
//!   a [`Command`] or a [`ParseError`].
//! - The [`LineFramer`] never holds more than its limit
//!   ([`MAX_LINE_LEN`] by default) of one line: the rest of an over-long
//!   line is skipped as it arrives, not buffered.
//! - Everything written by [`response`] ends in CRLF; status texts cannot
//!   smuggle a line break; multi-line bodies are dot-stuffed and end with
//!   the `.` CRLF terminator, so a message can never end a response early.
//!
//! # Layout
//! - [`framer`]: splitting the input into lines (CRLF, or a bare LF).
//! - [`command`]: the commands and their parser.
//! - [`response`]: status lines, response codes, multi-line data and
//!   messages (RETR, TOP) with byte-stuffing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod framer;
pub mod response;

pub use command::{parse_command, parse_sasl_response, Command, ParseError, SaslResponse, Verb};
pub use framer::{Frame, LineFramer, MAX_LINE_LEN, RFC2449_MAX_COMMAND_LEN};
pub use response::{ResponseCode, Status};
