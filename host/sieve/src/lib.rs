//! The Sieve mail-filtering language (RFC 5228) with the extensions
//! Dovecot's Pigeonhole enables by default: a compiler and an interpreter
//! that perform nothing themselves.
//!
//! # Role
//! A user's script is compiled once ([`compile`], the result cached by the
//! host by content hash: [`Script`] is cheap to clone) and run per
//! delivery ([`execute`]) against a [`Message`], its [`Envelope`] and an
//! [`Environment`] through which the host answers what the script may
//! ask (the time, included scripts, folders, the duplicate record). The
//! run returns an [`Outcome`]: the actions for the host to carry out
//! (keep, fileinto, redirect, discard, reject, vacation, header edits).
//! No I/O and no `unsafe`; the crate also builds for `wasm32-wasip2`,
//! where the `sieve` system plugin runs it.
//!
//! # Invariants
//! - [`compile`] never panics and refuses a script over
//!   `max_script_size` or nested deeper than `max_nesting`; errors carry
//!   line and column.
//! - [`execute`] is bounded by the step budget (`max_cpu_steps`), the
//!   action, redirect and include limits; regular expressions run in
//!   linear time under a size limit. A failed run returns an error, never
//!   a partial outcome: the host keeps the message.
//!
//! # Layout
//! - `lexer`, `parser`: text to tokens to a generic tree (RFC 5228 8).
//! - `compile`: the tree to typed commands ([`ast`]), `require` checked.
//! - `interpret`: runs commands; `matching` (comparators, match types),
//!   `address`, `date`, `variables`, `editheader` hold the pieces.
//! - [`message`]: the traits the host implements; [`outcome`]: what it gets.
//! - [`vacation`]: the checks before an auto-reply is sent.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
pub mod ast;
mod compile;
mod date;
mod editheader;
mod error;
mod interpret;
mod lexer;
mod matching;
pub mod message;
pub mod outcome;
mod parser;
mod settings;
pub mod vacation;
mod variables;

use std::sync::Arc;

pub use compile::{extensions, EXTENSIONS};
pub use error::{printable, CompileError, RuntimeError};
pub use interpret::decode_header;
pub use message::{
    BodyPart, DuplicateCheck, Envelope, Environment, Location, Message, MessageData, NoEnvironment,
};
pub use outcome::{Action, HeaderEdit, Outcome, Vacation};
pub use settings::Settings;

/// A compiled script. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Script {
    inner: Arc<ScriptInner>,
}

#[derive(Debug)]
struct ScriptInner {
    commands: Vec<ast::Command>,
    required: Vec<String>,
    variables: bool,
}

impl Script {
    /// The extensions the script requires, in order.
    pub fn required(&self) -> &[String] {
        &self.inner.required
    }

    /// The compiled commands.
    pub fn commands(&self) -> &[ast::Command] {
        &self.inner.commands
    }
}

/// Compiles a script.
pub fn compile(source: &str, settings: &Settings) -> Result<Script, CompileError> {
    if source.len() > settings.max_script_size {
        return Err(CompileError {
            line: 1,
            column: 1,
            message: format!(
                "the script is {} bytes, more than the limit of {}",
                source.len(),
                settings.max_script_size
            ),
        });
    }
    let tokens = lexer::tokenize(source)?;
    let nodes = parser::parse(tokens, lexer::end_pos(source), settings.max_nesting)?;
    let compiled = compile::Compiler::new(settings).compile(nodes)?;
    let variables = compiled.required.iter().any(|r| r == "variables");
    Ok(Script {
        inner: Arc::new(ScriptInner {
            commands: compiled.commands,
            required: compiled.required,
            variables,
        }),
    })
}

/// Compiles a script given as bytes: text that is not UTF-8 is an error
/// at the first bad byte (RFC 5228 section 2.1 requires UTF-8).
pub fn compile_bytes(source: &[u8], settings: &Settings) -> Result<Script, CompileError> {
    if source.len() > settings.max_script_size {
        return compile(&String::from_utf8_lossy(source), settings);
    }
    match std::str::from_utf8(source) {
        Ok(s) => compile(s, settings),
        Err(e) => {
            let good = &source[..e.valid_up_to()];
            let end = lexer::end_pos(&String::from_utf8_lossy(good));
            Err(CompileError {
                line: end.line,
                column: end.column,
                message: "the script is not valid UTF-8".into(),
            })
        }
    }
}

/// Runs a compiled script for one delivery.
pub fn execute(
    script: &Script,
    message: &dyn Message,
    envelope: &Envelope,
    environment: &dyn Environment,
    settings: &Settings,
) -> Result<Outcome, RuntimeError> {
    interpret::Run::new(settings, message, envelope, environment).run(script)
}
