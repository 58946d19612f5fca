//! The bodies of mailgate's fuzz targets.
//!
//! # Role
//! Each target is a plain `fn(&[u8])` that feeds arbitrary bytes to one
//! parser and checks what must hold for *every* input, panicking when it
//! does not: no panic inside the parser, buffers within their named
//! limits, and a property of the output (a naive reference model agrees,
//! splitting the input anywhere changes nothing, a round trip gives the
//! input back). The same functions are called by the cargo-fuzz targets
//! in `fuzz/fuzz_targets/` (one line each) and by `tests/replay.rs`, which
//! replays the saved corpus (`fuzz/corpus/<target>/`) and the inputs that
//! once failed (`fuzz/regressions/<target>/`) as ordinary tests.
//!
//! # Layout
//! - [`smtp`]: command framing and parsing over a pipelined stream, the
//!   DATA and BDAT receivers.
//! - [`imap`]: the command framer (literals), the command parser, the
//!   COMPRESS=DEFLATE stream, modified UTF-7.
//! - [`pop3`]: the line framer, the command and SASL parsers, RETR/TOP
//!   output.
//! - [`structure`]: the message-structure builder of the store.
//! - [`sieve`]: the Sieve compiler, and a run of what compiles.
//! - [`config`] (feature `config`): the configuration loader.
//! - [`TARGETS`]: every target by name, for the replay tests and
//!   `scripts/fuzz`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "config")]
pub mod config;
pub mod imap;
mod input;
pub mod pop3;
pub mod sieve;
pub mod smtp;
pub mod structure;

pub use input::Input;

/// A fuzz target: its name (the cargo-fuzz target and the corpus
/// directory) and its body.
pub struct Target {
    /// The name, e.g. `smtp_data`.
    pub name: &'static str,
    /// The body: panics when an invariant does not hold.
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "smtp_command",
        run: smtp::command,
    },
    Target {
        name: "smtp_data",
        run: smtp::data,
    },
    Target {
        name: "smtp_bdat",
        run: smtp::bdat,
    },
    Target {
        name: "imap_framer",
        run: imap::framer,
    },
    Target {
        name: "imap_command",
        run: imap::command,
    },
    Target {
        name: "imap_compress",
        run: imap::compress,
    },
    Target {
        name: "mutf7",
        run: imap::mutf7,
    },
    Target {
        name: "pop3",
        run: pop3::pop3,
    },
    Target {
        name: "structure",
        run: structure::structure,
    },
    Target {
        name: "sieve_compile",
        run: sieve::compile,
    },
    #[cfg(feature = "config")]
    Target {
        name: "config",
        run: config::config,
    },
];
