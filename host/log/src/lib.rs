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
//! - [`json`]: `[log] format = "json"`, one JSON object per line, with
//!   the same fields and bounds.
//! - [`list`]: several values (recipients) in one field, comma-separated
//!   and bounded, never Rust's debug form.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod escape;
pub mod format;
pub mod json;
pub mod list;
#[cfg(test)]
mod testing;

pub use escape::{bytes, LogBytes};
pub use format::SafeFields;
pub use list::list;

/// How log lines are written (`[log] format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// `tracing-subscriber`'s text format with [`SafeFields`].
    #[default]
    Text,
    /// One JSON object per line ([`json`]).
    Json,
}

/// Installs the process's log subscriber: `tracing-subscriber`'s text
/// format with [`SafeFields`], to standard error, filtered by `RUST_LOG`
/// (default `info`), coloured only when standard error is a terminal.
/// Does nothing if a subscriber is installed already.
pub fn init() {
    init_with(Format::Text, "info");
}

/// Installs the process's log subscriber in `format`, to standard error,
/// filtered by `RUST_LOG` when it is set, else by `level` (an
/// `EnvFilter` directive such as `info` or `info,mailgate_relay=debug`;
/// `info` if it does not parse). Text is coloured only when standard
/// error is a terminal. Does nothing if a subscriber is installed already.
pub fn init_with(format: Format, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = match format {
        Format::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt()
                .fmt_fields(SafeFields)
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .try_init()
        }
        Format::Json => tracing_subscriber::fmt()
            .fmt_fields(json::JsonFields)
            .event_format(json::JsonEvents)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init(),
    };
}

/// The level names `[log] level` takes.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Whether `level` is a valid `[log] level`: a level name, or `EnvFilter`
/// directives (`info,mailgate_relay=debug`). A bare word must be a level
/// name (`EnvFilter` would take `infoo` for a module and log nothing
/// else); the error says what is wrong.
pub fn check_level(level: &str) -> Result<(), String> {
    for directive in level.split(',').map(str::trim) {
        let bare = !directive.contains(['=', '[', ':']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} is not a level (one of {}) nor a directive like \
                 \"mailgate_relay=debug\"",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels_are_checked() {
        for good in [
            "info",
            "DEBUG",
            "warn,mailgate_relay=debug",
            "mailgate_smtp=trace",
        ] {
            assert_eq!(super::check_level(good), Ok(()), "{good}");
        }
        for bad in ["infoo", "", "info,verbose", "x=loud"] {
            assert!(super::check_level(bad).is_err(), "{bad}");
        }
    }
}
