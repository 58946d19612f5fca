//! The limits and switches of the language, each with Pigeonhole's
//! default where Pigeonhole has one (docs/sieve.md lists them).

use serde::{Deserialize, Serialize};

/// Limits and switches for compiling and running scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Largest script accepted, in bytes (Pigeonhole `sieve_max_script_size`: 1M).
    pub max_script_size: usize,
    /// Most actions one run may ask for (Pigeonhole `sieve_max_actions`: 32).
    pub max_actions: usize,
    /// Most redirects one run may ask for (Pigeonhole `sieve_max_redirects`: 4).
    pub max_redirects: usize,
    /// Deepest `include` nesting (Pigeonhole `sieve_include_max_nesting_depth`: 10).
    pub max_include_depth: usize,
    /// Most distinct scripts one run may include (Pigeonhole
    /// `sieve_include_max_includes`: 255).
    pub max_includes: usize,
    /// The step budget of one run, included scripts counted: every command,
    /// test and comparison costs steps, long strings more. A run that uses
    /// it up stops with an error and the message is kept.
    pub max_cpu_steps: u64,
    /// Deepest nesting of blocks and tests (Pigeonhole: 32).
    pub max_nesting: usize,
    /// Most variables in one script's scope (Pigeonhole
    /// `sieve_variables_max_scope_size`: 255).
    pub max_variables: usize,
    /// Longest variable value in bytes; longer values are cut (Pigeonhole
    /// `sieve_variables_max_variable_size`: 4k).
    pub max_variable_size: usize,
    /// Largest compiled regular expression, in bytes (the `regex` crate's
    /// size limit); a larger one is refused.
    pub max_regex_size: usize,
    /// `:days`/`:seconds` below this are raised to it (Pigeonhole
    /// `sieve_vacation_min_period`: 1d).
    pub vacation_min_period: u64,
    /// `:days`/`:seconds` above this are lowered to it (Pigeonhole: 60d).
    pub vacation_max_period: u64,
    /// The period when the script gives none (Pigeonhole: 7d).
    pub vacation_default_period: u64,
    /// `duplicate` without `:seconds` (Pigeonhole: 12h).
    pub duplicate_default_period: u64,
    /// `duplicate :seconds` above this is lowered to it (Pigeonhole: 2d).
    pub duplicate_max_period: u64,
    /// Allow `require "editheader"` (RFC 5293). Off by default, as in
    /// Pigeonhole: scripts could otherwise hide what a filter did.
    pub editheader: bool,
    /// Longest header field `addheader` may write, name and value (Pigeonhole
    /// `editheader_max_header_size`: 2048).
    pub editheader_max_header_size: usize,
    /// Most headers one run may add with `addheader` (not in Pigeonhole,
    /// which bounds only each header's size): keeps a script from growing
    /// the message without end within its step budget.
    pub editheader_max_added: usize,
    /// The separator of `:user` and `:detail` (RFC 5233), as for plus
    /// addressing in delivery.
    pub subaddress_separator: char,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_script_size: 1 << 20,
            max_actions: 32,
            max_redirects: 4,
            max_include_depth: 10,
            max_includes: 255,
            max_cpu_steps: 1_000_000,
            max_nesting: 32,
            max_variables: 255,
            max_variable_size: 4096,
            max_regex_size: 1 << 20,
            vacation_min_period: 86_400,
            vacation_max_period: 60 * 86_400,
            vacation_default_period: 7 * 86_400,
            duplicate_default_period: 12 * 3600,
            duplicate_max_period: 2 * 86_400,
            editheader: false,
            editheader_max_header_size: 2048,
            editheader_max_added: 64,
            subaddress_separator: '+',
        }
    }
}
