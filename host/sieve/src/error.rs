//! The two kinds of failure: a script that does not compile, and a run
//! stopped by a limit or an impossible action.

use crate::lexer::Pos;

/// A script does not compile: where and why. The message names what was
/// found with control characters escaped, so it can go into a log line or
/// a ManageSieve reply as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CompileError {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
    /// What is wrong, for the script's author.
    pub message: String,
}

impl CompileError {
    pub(crate) fn new(pos: Pos, message: impl Into<String>) -> Self {
        CompileError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

/// A run that stopped before its end. The message is never lost because of
/// it: the host keeps it in INBOX (RFC 5228 section 2.10.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The step budget (`max_cpu_steps`) ran out: an endless or hostile script.
    #[error("the script used more than its {0} steps of CPU budget")]
    FuelExhausted(u64),
    /// More actions than `max_actions`.
    #[error("the script asked for more than {0} actions")]
    TooManyActions(usize),
    /// More redirects than `max_redirects`.
    #[error("the script asked for more than {0} redirects")]
    TooManyRedirects(usize),
    /// `include` nested deeper than `max_include_depth`.
    #[error("include nested deeper than {0} levels")]
    IncludeDepth(usize),
    /// A script includes itself, directly or through others.
    #[error("include loop: '{0}' is already being run")]
    IncludeLoop(String),
    /// An included script does not exist (and `:optional` was not given).
    #[error("included script '{0}' does not exist")]
    IncludeMissing(String),
    /// An included script does not compile.
    #[error("included script '{name}' does not compile: {error}")]
    IncludeCompile {
        /// The script's name.
        name: String,
        /// Why.
        error: CompileError,
    },
    /// Two actions that cannot go together (e.g. `reject` and `keep`).
    #[error("{0}")]
    Conflict(String),
    /// An argument computed at run time (through variables) is not valid,
    /// e.g. a redirect address or a regular expression.
    #[error("{0}")]
    InvalidArgument(String),
}

/// `s` with control characters and non-ASCII escaped, cut at 200
/// characters: safe to put into a log line or a protocol reply.
pub fn printable(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= 200 {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}
