//! ManageSieve (RFC 5804) wire format, without I/O.
//!
//! # Role
//! The session (`mailgate-managesieve`, port 4190) feeds the bytes
//! it has read to [`parse_command`] (or [`parse_sasl_response`] during
//! `AUTHENTICATE`), which answers with a whole command and how many bytes
//! it used, or "need more data", or an error that says what the client is
//! told. Replies are built by [`response`]; which command is legal in which
//! state is one table, [`state::check`]. The script commands of a logged-in
//! session run against a store trait in [`scripts::handle`].
//!
//! # Invariants
//! - The parsers never panic and never hold more than one command:
//!   a line (outside literals) is at most [`Limits::max_line`] bytes and a
//!   literal at most [`Limits::max_literal`] (the largest script accepted).
//! - A script name is a [`ScriptName`]: 1 to 128 characters, none of them
//!   a control character (RFC 5804 section 1.6).
//! - Reply text never carries CR or LF outside a literal.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
pub mod response;
pub mod scripts;
pub mod state;

pub use command::{
    parse_command, parse_sasl_response, Command, Limits, ParseError, SaslResponse, ScriptName,
};
