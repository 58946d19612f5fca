//! The interpreter: runs a compiled script against one message and
//! collects the actions (RFC 5228 section 2.10 and each extension's
//! semantics). Every step is paid from the step budget. Commands are
//! here; tests and matching in `conditions`.

use std::collections::{HashMap, HashSet};

use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;
use regex::Regex;

use crate::address;
use crate::ast::*;
use crate::editheader;
use crate::error::{printable, RuntimeError};
use crate::message::{BodyPart, Envelope, Environment, Location, Message};
use crate::outcome::{Action, HeaderEdit, Outcome, Vacation};
use crate::settings::Settings;
use crate::variables::{self, Ref};
use crate::Script;

mod conditions;

type R<T> = Result<T, RuntimeError>;

/// Compiled regular expressions kept for reuse within one run.
const REGEX_CACHE: usize = 16;

/// How a block ended.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
    Return,
}

/// Variables of one script (RFC 5229: each included script has its own,
/// except those declared `global`, RFC 6609 section 3.4).
struct Scope {
    variables: bool,
    vars: HashMap<String, String>,
    matches: Vec<String>,
    globals: HashSet<String>,
}

pub(crate) struct Run<'a> {
    settings: &'a Settings,
    msg: &'a dyn Message,
    envelope: &'a Envelope,
    env: &'a dyn Environment,
    headers: Vec<(String, String)>,
    body_parts: Option<Vec<BodyPart>>,
    raw_body: Option<String>,
    steps: u64,
    out: Outcome,
    cancel_implicit_keep: bool,
    flags: Vec<String>,
    globals: HashMap<String, String>,
    stack: Vec<(Location, String)>,
    included: HashSet<(Location, String)>,
    cache: HashMap<(Location, String), Script>,
    regexes: HashMap<(String, bool), Regex>,
    actions: usize,
    redirects: usize,
}

impl<'a> Run<'a> {
    pub fn new(
        settings: &'a Settings,
        msg: &'a dyn Message,
        envelope: &'a Envelope,
        env: &'a dyn Environment,
    ) -> Self {
        Run {
            settings,
            msg,
            envelope,
            env,
            headers: msg.headers(),
            body_parts: None,
            raw_body: None,
            steps: 0,
            out: Outcome::default(),
            cancel_implicit_keep: false,
            flags: Vec::new(),
            globals: HashMap::new(),
            stack: Vec::new(),
            included: HashSet::new(),
            cache: HashMap::new(),
            regexes: HashMap::new(),
            actions: 0,
            redirects: 0,
        }
    }

    pub fn run(mut self, script: &Script) -> R<Outcome> {
        self.charge(self.headers.len() as u64)?;
        let mut scope = Scope::new(script);
        self.block(&mut scope, &script.inner.commands)?;
        if !self.cancel_implicit_keep {
            let flags = self.flags.clone();
            self.out.actions.push(Action::Keep {
                flags,
                implicit: true,
            });
            self.out.edits_before.push(self.out.header_edits.len());
        }
        self.out.steps = self.steps;
        Ok(self.out)
    }

    fn charge(&mut self, n: u64) -> R<()> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.settings.max_cpu_steps {
            Err(RuntimeError::FuelExhausted(self.settings.max_cpu_steps))
        } else {
            Ok(())
        }
    }

    fn charge_len(&mut self, len: usize) -> R<()> {
        self.charge(1 + (len / 256) as u64)
    }

    // ---- strings and variables -------------------------------------

    fn expand(&mut self, scope: &Scope, s: &str) -> R<String> {
        if !scope.variables || !s.contains("${") {
            return Ok(s.to_string());
        }
        self.charge_len(s.len())?;
        let max = self
            .settings
            .max_variable_size
            .max(s.len())
            .saturating_mul(4);
        let globals = &self.globals;
        let out = variables::expand(s, max, |r| match r {
            Ref::Match(n) => scope.matches.get(n).cloned().unwrap_or_default(),
            Ref::Named(name) => scope.get(globals, &name.to_ascii_lowercase()),
        });
        self.charge_len(out.len())?;
        Ok(out)
    }

    fn expand_all(&mut self, scope: &Scope, list: &[String]) -> R<Vec<String>> {
        list.iter().map(|s| self.expand(scope, s)).collect()
    }

    fn set_var(&mut self, scope: &mut Scope, name: &str, mut value: String) -> R<()> {
        variables::truncate(&mut value, self.settings.max_variable_size);
        if let Some(g) = name.strip_prefix("global.") {
            self.globals.insert(g.to_string(), value);
        } else if scope.globals.contains(name) {
            self.globals.insert(name.to_string(), value);
        } else {
            if !scope.vars.contains_key(name) && scope.vars.len() >= self.settings.max_variables {
                return Err(RuntimeError::InvalidArgument(format!(
                    "more than {} variables",
                    self.settings.max_variables
                )));
            }
            scope.vars.insert(name.to_string(), value);
        }
        Ok(())
    }

    // ---- commands ----------------------------------------------------

    fn block(&mut self, scope: &mut Scope, cmds: &[Command]) -> R<Flow> {
        for c in cmds {
            let flow = self.command(scope, c)?;
            if flow != Flow::Next {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    }

    fn command(&mut self, scope: &mut Scope, cmd: &Command) -> R<Flow> {
        self.charge(1)?;
        match cmd {
            Command::If(branches, otherwise) => {
                for (test, body) in branches {
                    if self.test(scope, test)? {
                        return self.block(scope, body);
                    }
                }
                if let Some(body) = otherwise {
                    return self.block(scope, body);
                }
            }
            Command::Stop => return Ok(Flow::Stop),
            Command::Return => return Ok(Flow::Return),
            Command::Keep { flags } => {
                let flags = self.flags_or_internal(scope, flags.as_deref())?;
                self.conflicts_with_reject("keep")?;
                self.cancel_implicit_keep = true;
                let existing = self.out.actions.iter_mut().find_map(|a| match a {
                    Action::Keep { flags: f, .. } => Some(f),
                    _ => None,
                });
                match existing {
                    Some(f) => merge_flags(f, flags),
                    None => self.add_action(Action::Keep {
                        flags,
                        implicit: false,
                    })?,
                }
            }
            Command::Discard => {
                self.cancel_implicit_keep = true;
                if !self.out.actions.contains(&Action::Discard) {
                    self.out.actions.push(Action::Discard);
                    self.out.edits_before.push(self.out.header_edits.len());
                }
            }
            Command::Redirect { address, copy } => {
                let address = self.expand(scope, address)?;
                if !address::valid_redirect(&address) {
                    return Err(RuntimeError::InvalidArgument(format!(
                        "redirect: '{}' is not a valid address",
                        printable(&address)
                    )));
                }
                if !copy {
                    self.cancel_implicit_keep = true;
                }
                let dup = self.out.actions.iter().any(
                    |a| matches!(a, Action::Redirect { address: x, .. } if x.eq_ignore_ascii_case(&address)),
                );
                if !dup {
                    self.redirects += 1;
                    if self.redirects > self.settings.max_redirects {
                        return Err(RuntimeError::TooManyRedirects(self.settings.max_redirects));
                    }
                    self.add_action(Action::Redirect {
                        address,
                        copy: *copy,
                    })?;
                }
            }
            Command::FileInto {
                mailbox,
                copy,
                create,
                flags,
            } => {
                let mailbox = self.expand(scope, mailbox)?;
                if mailbox.is_empty() || mailbox.chars().any(char::is_control) {
                    return Err(RuntimeError::InvalidArgument(format!(
                        "fileinto: '{}' is not a valid folder name",
                        printable(&mailbox)
                    )));
                }
                let flags = self.flags_or_internal(scope, flags.as_deref())?;
                self.conflicts_with_reject("fileinto")?;
                if !copy {
                    self.cancel_implicit_keep = true;
                }
                let existing = self.out.actions.iter_mut().find_map(|a| match a {
                    Action::FileInto {
                        mailbox: m,
                        flags: f,
                        create: c,
                        ..
                    } if *m == mailbox => Some((f, c)),
                    _ => None,
                });
                match existing {
                    Some((f, c)) => {
                        merge_flags(f, flags);
                        *c |= *create;
                    }
                    None => self.add_action(Action::FileInto {
                        mailbox,
                        create: *create,
                        flags,
                        copy: *copy,
                    })?,
                }
            }
            Command::Reject { reason, extended } => {
                let reason = self.expand(scope, reason)?;
                if let Some(other) = self.out.actions.iter().find_map(|a| match a {
                    Action::Keep { .. } => Some("keep"),
                    Action::FileInto { .. } => Some("fileinto"),
                    Action::Vacation(_) => Some("vacation"),
                    Action::Reject { .. } => Some("reject"),
                    _ => None,
                }) {
                    return Err(RuntimeError::Conflict(format!(
                        "reject cannot be combined with {other}"
                    )));
                }
                self.cancel_implicit_keep = true;
                self.add_action(Action::Reject {
                    reason,
                    extended: *extended,
                })?;
            }
            Command::Vacation(v) => self.vacation(scope, v)?,
            Command::Flags {
                op,
                variable,
                flags,
            } => {
                let given = self.expand_all(scope, flags)?;
                let given = split_flags(&given);
                let mut current = match variable {
                    Some(v) => split_flags(&[scope.get(&self.globals, v)]),
                    None => self.flags.clone(),
                };
                match op {
                    FlagOp::Set => current = given,
                    FlagOp::Add => merge_flags(&mut current, given),
                    FlagOp::Remove => {
                        current.retain(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
                    }
                }
                self.charge(current.len() as u64)?;
                match variable {
                    Some(v) => self.set_var(scope, v, current.join(" "))?,
                    None => {
                        if current.len() > 256 {
                            return Err(RuntimeError::InvalidArgument(
                                "more than 256 flags".into(),
                            ));
                        }
                        self.flags = current
                    }
                }
            }
            Command::Set {
                name,
                value,
                modifiers,
            } => {
                let v = self.expand(scope, value)?;
                let v = variables::apply_modifiers(v, modifiers);
                self.charge_len(v.len())?;
                self.set_var(scope, name, v)?;
            }
            Command::Global(names) => {
                for n in names {
                    scope.globals.insert(n.clone());
                }
            }
            Command::Include {
                name,
                global,
                once,
                optional,
            } => {
                let location = if *global {
                    Location::Global
                } else {
                    Location::Personal
                };
                if self.include(location, name, *once, *optional)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            Command::AddHeader { last, name, value } => {
                let name = self.expand(scope, name)?;
                let value = editheader::clean_value(&self.expand(scope, value)?);
                if !editheader::valid_field_name(&name) {
                    return Err(RuntimeError::InvalidArgument(format!(
                        "addheader: '{}' is not a valid field name",
                        printable(&name)
                    )));
                }
                if name.len() + value.len() + 2 > self.settings.editheader_max_header_size {
                    return Err(RuntimeError::InvalidArgument(format!(
                        "addheader: the field is longer than {} bytes",
                        self.settings.editheader_max_header_size
                    )));
                }
                let added = self
                    .out
                    .header_edits
                    .iter()
                    .filter(|e| matches!(e, HeaderEdit::Add { .. }))
                    .count();
                if added >= self.settings.editheader_max_added {
                    return Err(RuntimeError::InvalidArgument(format!(
                        "addheader: more than {} headers added",
                        self.settings.editheader_max_added
                    )));
                }
                if !editheader::protected(&name) {
                    let field = (name.clone(), format!(" {value}"));
                    if *last {
                        self.headers.push(field);
                    } else {
                        self.headers.insert(0, field);
                    }
                    self.out.header_edits.push(HeaderEdit::Add {
                        name,
                        value,
                        last: *last,
                    });
                }
            }
            Command::DeleteHeader {
                index,
                matcher,
                name,
                patterns,
            } => self.delete_header(scope, *index, *matcher, name, patterns.as_deref())?,
        }
        Ok(Flow::Next)
    }

    fn add_action(&mut self, a: Action) -> R<()> {
        self.actions += 1;
        if self.actions > self.settings.max_actions {
            return Err(RuntimeError::TooManyActions(self.settings.max_actions));
        }
        self.out.actions.push(a);
        self.out.edits_before.push(self.out.header_edits.len());
        Ok(())
    }

    fn conflicts_with_reject(&self, what: &str) -> R<()> {
        if self
            .out
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reject { .. }))
        {
            Err(RuntimeError::Conflict(format!(
                "{what} cannot be combined with reject"
            )))
        } else {
            Ok(())
        }
    }

    fn flags_or_internal(&mut self, scope: &Scope, flags: Option<&[String]>) -> R<Vec<String>> {
        match flags {
            Some(f) => {
                let f = self.expand_all(scope, f)?;
                Ok(split_flags(&f))
            }
            None => Ok(self.flags.clone()),
        }
    }

    fn vacation(&mut self, scope: &Scope, v: &VacationArgs) -> R<()> {
        let reason = self.expand(scope, &v.reason)?;
        let subject = v
            .subject
            .as_ref()
            .map(|s| self.expand(scope, s))
            .transpose()?;
        let from = v.from.as_ref().map(|s| self.expand(scope, s)).transpose()?;
        let addresses = self.expand_all(scope, &v.addresses)?;
        let handle = match &v.handle {
            Some(h) => self.expand(scope, h)?,
            None => {
                let mut h = Fnv::default();
                for part in [
                    reason.as_str(),
                    subject.as_deref().unwrap_or(""),
                    from.as_deref().unwrap_or(""),
                ] {
                    h.write(part.as_bytes());
                    h.write(&[0]);
                }
                h.write(&[u8::from(v.mime)]);
                format!("{:016x}", h.0)
            }
        };
        let s = self.settings;
        let period = v.period.unwrap_or(s.vacation_default_period).clamp(
            s.vacation_min_period,
            s.vacation_max_period.max(s.vacation_min_period),
        );
        for a in &self.out.actions {
            match a {
                Action::Vacation(_) => {
                    return Err(RuntimeError::Conflict("vacation used twice".into()))
                }
                Action::Reject { .. } => {
                    return Err(RuntimeError::Conflict(
                        "vacation cannot be combined with reject".into(),
                    ))
                }
                _ => {}
            }
        }
        self.add_action(Action::Vacation(Vacation {
            reason,
            subject,
            from,
            addresses,
            mime: v.mime,
            handle,
            period,
        }))
    }

    fn include(&mut self, location: Location, name: &str, once: bool, optional: bool) -> R<Flow> {
        let key = (location, name.to_string());
        if once && self.included.contains(&key) {
            return Ok(Flow::Next);
        }
        if self.stack.contains(&key) {
            return Err(RuntimeError::IncludeLoop(printable(name)));
        }
        if self.stack.len() >= self.settings.max_include_depth {
            return Err(RuntimeError::IncludeDepth(self.settings.max_include_depth));
        }
        let script = match self.cache.get(&key) {
            Some(s) => s.clone(),
            None => {
                if self.cache.len() >= self.settings.max_includes {
                    return Err(RuntimeError::InvalidArgument(format!(
                        "more than {} included scripts",
                        self.settings.max_includes
                    )));
                }
                let Some(src) = self.env.script(location, name) else {
                    if optional {
                        return Ok(Flow::Next);
                    }
                    return Err(RuntimeError::IncludeMissing(printable(name)));
                };
                self.charge_len(src.len())?;
                let s = crate::compile(&src, self.settings).map_err(|error| {
                    RuntimeError::IncludeCompile {
                        name: printable(name),
                        error,
                    }
                })?;
                self.cache.insert(key.clone(), s.clone());
                s
            }
        };
        self.included.insert(key.clone());
        self.stack.push(key);
        let mut scope = Scope::new(&script);
        let flow = self.block(&mut scope, &script.inner.commands);
        self.stack.pop();
        Ok(match flow? {
            Flow::Stop => Flow::Stop,
            _ => Flow::Next,
        })
    }

    fn delete_header(
        &mut self,
        scope: &mut Scope,
        index: Option<Index>,
        matcher: Matcher,
        name: &str,
        patterns: Option<&[String]>,
    ) -> R<()> {
        let name = self.expand(scope, name)?;
        if editheader::protected(&name) {
            return Ok(());
        }
        let patterns = match patterns {
            Some(p) => Some(self.expand_all(scope, p)?),
            None => None,
        };
        let positions: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| n.eq_ignore_ascii_case(&name))
            .map(|(i, _)| i)
            .collect();
        let chosen: Vec<usize> = match index {
            Some(ix) => pick_index(&positions, ix).into_iter().collect(),
            None => positions,
        };
        let mut delete = Vec::new();
        for pos in chosen {
            let ok = match &patterns {
                None => true,
                Some(keys) => {
                    let value = decode_header(&self.headers[pos].1);
                    self.match_values(scope, matcher, vec![value], keys, false)?
                }
            };
            if ok {
                delete.push(pos);
            }
        }
        for pos in delete.into_iter().rev() {
            let occurrence = self.headers[..pos]
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
                .count()
                + 1;
            self.headers.remove(pos);
            self.out.header_edits.push(HeaderEdit::Delete {
                name: name.clone(),
                occurrence,
            });
        }
        Ok(())
    }
}

impl Scope {
    fn new(script: &Script) -> Self {
        Scope {
            variables: script.inner.variables,
            vars: HashMap::new(),
            matches: Vec::new(),
            globals: HashSet::new(),
        }
    }

    fn get(&self, globals: &HashMap<String, String>, name: &str) -> String {
        if let Some(g) = name.strip_prefix("global.") {
            return globals.get(g).cloned().unwrap_or_default();
        }
        if self.globals.contains(name) {
            return globals.get(name).cloned().unwrap_or_default();
        }
        self.vars.get(name).cloned().unwrap_or_default()
    }
}

/// The occurrence `:index` names, counted from the top or with `:last`
/// from the bottom; none when there are fewer.
fn pick_index<T: Clone>(items: &[T], ix: Index) -> Option<T> {
    let n = usize::try_from(ix.n).ok()?.checked_sub(1)?;
    if ix.last {
        items
            .len()
            .checked_sub(n + 1)
            .and_then(|i| items.get(i))
            .cloned()
    } else {
        items.get(n).cloned()
    }
}

/// A header value as tests see it: unfolded, RFC 2047 words decoded,
/// blanks trimmed at both ends.
pub fn decode_header(raw: &str) -> String {
    let mut buf = raw.trim_end_matches(['\r', '\n']).to_string();
    buf.push_str("\r\n");
    match MessageStream::new(buf.as_bytes()).parse_unstructured() {
        HeaderValue::Text(t) => t.trim().to_string(),
        _ => String::new(),
    }
}

/// Flags from space-separated lists, duplicates removed (case ignored).
fn split_flags(lists: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lists {
        for f in l.split_whitespace() {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
                out.push(f.to_string());
            }
        }
    }
    out
}

fn merge_flags(into: &mut Vec<String>, more: Vec<String>) {
    for f in more {
        if !into.iter().any(|o| o.eq_ignore_ascii_case(&f)) {
            into.push(f);
        }
    }
}

/// FNV-1a, for the default vacation handle (not a security boundary).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_decoding() {
        assert_eq!(
            decode_header(" =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus\r\n Berlin"),
            "Grüße aus Berlin"
        );
        assert_eq!(decode_header("  plain  "), "plain");
    }

    #[test]
    fn index_picking() {
        let v = [1, 2, 3];
        assert_eq!(pick_index(&v, Index { n: 1, last: false }), Some(1));
        assert_eq!(pick_index(&v, Index { n: 1, last: true }), Some(3));
        assert_eq!(pick_index(&v, Index { n: 4, last: true }), None);
    }
}
