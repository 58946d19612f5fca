//! Log lines a client cannot forge.
//!
//! # Role
//! mailgate logs what clients choose: user names, HELO names, addresses,
//! mailbox names, IMAP IDs, and the replies of remote servers. This crate
//! is the one place that turns those values into log text: the field
//! formatter [`SafeFields`] that the binary installs, and the
//! [`escape`] rules it applies.
//!
//! # Invariants
//! - No field value and no message reaches the log with a raw control
//!   character: CR, LF, ESC and the rest are written `\xNN`, so one
//!   event is one line and a client's bytes never become a terminal
//!   escape sequence or a second, forged, log line. This holds for every
//!   call site, present or future, because it is done by the formatter,
//!   not by the call sites.
//! - Every value is cut to a bound ([`format::MAX_VALUE`] bytes,
//!   [`format::MAX_MESSAGE`] for the message and `error` fields) and then
//!   says `…(+N bytes)`: a 60 KB user name costs a few hundred bytes of log.
//! - Client bytes that are not UTF-8 are logged through [`bytes`], which
//!   writes them `\xNN` too, instead of U+FFFD.
//! - Apart from that, lines keep `tracing-subscriber`'s text format, which
//!   operators and tests parse.
//!
//! # Layout
//! - [`escape`]: the escaping rules, the bounded writer, and [`bytes`].
//! - [`format`]: the field formatter, [`SafeFields`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod escape;
pub mod format;

pub use escape::{bytes, LogBytes};
pub use format::SafeFields;

/// Installs the process's log subscriber: `tracing-subscriber`'s text
/// format with [`SafeFields`], to standard error, filtered by `RUST_LOG`
/// (default `info`), coloured only when standard error is a terminal.
/// Does nothing if a subscriber is installed already.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .fmt_fields(SafeFields)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
