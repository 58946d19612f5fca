//! The IMAP wire format of mailgate: IMAP4rev2 (RFC 9051) and IMAP4rev1
//! (RFC 3501) with the extensions mailgate offers. No I/O.
//!
//! # Role
//! Bytes from the client become [`Command`]s in two steps: the [`Framer`]
//! cuts the stream into whole commands, reading literals incrementally and
//! refusing oversized ones before a byte of them is read; then
//! [`parse_command`] turns one command into a typed value or a
//! [`ParseError`] that the session answers with `BAD`. The [`response`]
//! module writes answers.
//!
//! # Invariants
//! - Nothing here panics on any input: the framer and the parser are
//!   bounds-checked throughout and tested with pseudo-random input.
//! - Memory is bounded by [`Limits`]: one whole command, its lines and
//!   its literals together; nesting of search keys (32 levels).
//! - An ordinary literal never carries NUL ([`response::write_literal`]);
//!   only a `literal8` does.
//! - Mailbox names stay bytes here; whether they are UTF-8 or modified
//!   UTF-7 ([`mutf7`]) depends on what the session enabled.
//!
//! # Layout
//! - [`framer`]: lines and literals, `+` continuation, `[TOOBIG]`.
//! - [`parse`]: the command parser (`parse/command.rs` the commands,
//!   `parse/fetch.rs` FETCH items, `parse/search.rs` SEARCH keys,
//!   `parse/date.rs` dates).
//! - [`command`]: the parsed command types.
//! - [`sequence`]: sequence sets.
//! - [`mutf7`]: modified UTF-7.
//! - [`response`]: response writing (strings, literals, status lines).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod framer;
pub mod mutf7;
pub mod parse;
pub mod response;
pub mod sequence;

pub use command::*;
pub use framer::{Frame, Framer, Limits, MULTIAPPEND_FACTOR};
pub use parse::{format_date_time, parse_command, parse_date_time, ParseError};
pub use sequence::{format_set, SeqNumber, SequenceSet};
