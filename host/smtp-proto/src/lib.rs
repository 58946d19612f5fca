//! The SMTP wire format for mailgate: parsing and framing only, no I/O,
//! no async runtime.
//!
//! # Role
//! Everything about the bytes of an SMTP (and LMTP) conversation that can
//! be decided without knowing who the server is: splitting the command
//! stream into lines, parsing a command line into a [`Request`], receiving
//! message data after DATA or BDAT, and writing replies. The session
//! logic (what is allowed when, what to answer) lives in `mailgate-smtp`.
//!
//! # Invariants
//! - No function here panics, whatever bytes it is given (a fuzz-style
//!   test feeds hundreds of thousands of pseudo-random inputs).
//! - Memory is bounded by named limits: [`LineFramer`] never buffers more
//!   than its command-line limit; [`DataReceiver`] and [`BdatReceiver`]
//!   stop storing past the message-size limit.
//! - Only `<CRLF>.<CRLF>` ends DATA; a bare CR or LF anywhere in a message
//!   is flagged, never normalised (see [`data`] on SMTP smuggling).
//! - A [`Reply`] always serialises to well-formed reply lines.
//!
//! # Layout
//! - [`request`]: [`Request`] and [`Verb`], the command-line parser.
//! - [`address`]: paths, mailboxes, domains, address literals.
//! - [`params`]: MAIL and RCPT parameters.
//! - [`error`]: [`ParseError`] and [`LineTooLong`], each knowing its reply.
//! - [`framer`]: [`LineFramer`], bytes to command lines.
//! - [`data`]: [`DataReceiver`], the DATA phase.
//! - [`bdat`]: [`BdatReceiver`], the BDAT phase (CHUNKING).
//! - [`reply`]: [`Reply`] and [`EnhancedCode`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod bdat;
pub mod data;
pub mod error;
pub mod framer;
pub mod params;
pub mod reply;
pub mod request;
mod sink;

pub use address::{
    parse_ehlo_host, parse_mailbox_str, ForwardPath, Host, Mailbox, Path, ReversePath,
};
pub use bdat::{BdatReceiver, ChunkStatus};
pub use data::{DataReceiver, DataStatus};
pub use error::{LineTooLong, ParseError};
pub use framer::{FramedLine, LineFramer, DEFAULT_MAX_COMMAND_LINE};
pub use params::{decode_xtext, is_xtext, Body, MailParams, Notify, Orcpt, RcptParams, Ret};
pub use reply::{EnhancedCode, Reply};
pub use request::{Request, Verb};
pub use sink::{
    DataLimits, ReceivedMessage, DEFAULT_MAX_DATA_LINE, DEFAULT_MAX_MESSAGE_SIZE, TRACE_HEADROOM,
};
