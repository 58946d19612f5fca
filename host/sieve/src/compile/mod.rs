//! The compiler: the generic syntax tree to typed commands, checking
//! `require`, every argument and every tag (RFC 5228 section 3-5 and
//! each extension's grammar).

use std::collections::HashSet;

use crate::ast::*;
use crate::error::{printable, CompileError};
use crate::lexer::Pos;
use crate::parser::{Arg, Node};
use crate::settings::Settings;

mod tags;

use tags::Tags;

/// Every extension this interpreter knows, as `require` names it.
/// `editheader` is accepted only when `Settings::editheader` is on.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "vacation",
    "vacation-seconds",
    "subaddress",
    "comparator-i;ascii-numeric",
    "relational",
    "regex",
    "imap4flags",
    "copy",
    "include",
    "body",
    "variables",
    "mailbox",
    "date",
    "index",
    "duplicate",
    "editheader",
];

/// Comparators every script may name without `require` (RFC 5228 2.7.3).
const BUILTIN_REQUIRES: &[&str] = &["comparator-i;octet", "comparator-i;ascii-casemap"];

/// The extensions a ManageSieve `SIEVE` capability lists under `settings`.
pub fn extensions(settings: &Settings) -> Vec<&'static str> {
    EXTENSIONS
        .iter()
        .copied()
        .filter(|e| *e != "editheader" || settings.editheader)
        .collect()
}

pub(crate) struct Compiler<'s> {
    settings: &'s Settings,
    required: HashSet<&'static str>,
}

pub(crate) struct Compiled {
    pub commands: Vec<Command>,
    pub required: Vec<String>,
}

fn err(pos: Pos, msg: impl Into<String>) -> CompileError {
    CompileError::new(pos, msg)
}

impl<'s> Compiler<'s> {
    pub fn new(settings: &'s Settings) -> Self {
        Compiler {
            settings,
            required: HashSet::new(),
        }
    }

    fn has(&self, ext: &str) -> bool {
        self.required.contains(ext)
    }

    fn need(&self, ext: &str, pos: Pos, what: &str) -> Result<(), CompileError> {
        if self.has(ext) {
            Ok(())
        } else {
            Err(err(pos, format!("{what} needs require \"{ext}\"")))
        }
    }

    pub fn compile(mut self, nodes: Vec<Node>) -> Result<Compiled, CompileError> {
        let mut required = Vec::new();
        let mut rest = nodes.as_slice();
        while let Some((first, tail)) = rest.split_first() {
            if first.name != "require" {
                break;
            }
            if first.block.is_some() || !first.tests.is_empty() || first.args.len() != 1 {
                return Err(err(first.pos, "require takes one string list"));
            }
            for ext in self.strings(&first.args[0], "require")? {
                let lower = ext.to_ascii_lowercase();
                if BUILTIN_REQUIRES.contains(&lower.as_str()) {
                    continue;
                }
                match EXTENSIONS.iter().find(|e| **e == lower) {
                    Some(&"editheader") if !self.settings.editheader => {
                        return Err(err(
                            first.args[0].pos(),
                            "extension 'editheader' is not enabled on this server",
                        ))
                    }
                    Some(e) => {
                        self.required.insert(e);
                        required.push(e.to_string());
                    }
                    None => {
                        return Err(err(
                            first.args[0].pos(),
                            format!("unknown extension '{}'", printable(&ext)),
                        ))
                    }
                }
            }
            rest = tail;
        }
        // A vacation-seconds script has vacation too (RFC 6131 section 2).
        if self.has("vacation-seconds") {
            self.required.insert("vacation");
        }
        let commands = self.block(rest)?;
        Ok(Compiled { commands, required })
    }

    fn block(&self, nodes: &[Node]) -> Result<Vec<Command>, CompileError> {
        let mut out: Vec<Command> = Vec::new();
        let mut i = 0;
        while i < nodes.len() {
            let n = &nodes[i];
            i += 1;
            match n.name.as_str() {
                "if" => {
                    let mut branches = vec![self.branch(n)?];
                    let mut otherwise = None;
                    while let Some(next) = nodes.get(i) {
                        match next.name.as_str() {
                            "elsif" => branches.push(self.branch(next)?),
                            "else" => {
                                let Some(b) = &next.block else {
                                    return Err(err(next.pos, "else needs a block"));
                                };
                                if !next.args.is_empty() || !next.tests.is_empty() {
                                    return Err(err(next.pos, "else takes no arguments"));
                                }
                                otherwise = Some(self.block(b)?);
                                i += 1;
                                break;
                            }
                            _ => break,
                        }
                        i += 1;
                    }
                    out.push(Command::If(branches, otherwise));
                }
                "elsif" | "else" => {
                    return Err(err(n.pos, format!("'{}' without a preceding 'if'", n.name)))
                }
                "require" => {
                    return Err(err(n.pos, "require must come before every other command"))
                }
                _ => out.push(self.command(n)?),
            }
        }
        Ok(out)
    }

    fn branch(&self, n: &Node) -> Result<(Test, Vec<Command>), CompileError> {
        if !n.args.is_empty() || n.tests.len() != 1 || n.test_list {
            return Err(err(n.pos, format!("'{}' takes exactly one test", n.name)));
        }
        let Some(b) = &n.block else {
            return Err(err(n.pos, format!("'{}' needs a block", n.name)));
        };
        Ok((self.test(&n.tests[0])?, self.block(b)?))
    }

    fn command(&self, n: &Node) -> Result<Command, CompileError> {
        if n.block.is_some() {
            return Err(err(
                n.pos,
                format!("'{}' takes no block", printable(&n.name)),
            ));
        }
        if !n.tests.is_empty() {
            return Err(err(
                n.pos,
                format!("'{}' takes no test", printable(&n.name)),
            ));
        }
        let name = n.name.as_str();
        let cmd = match name {
            "stop" => {
                self.positional(n, &[], 0)?;
                Command::Stop
            }
            "keep" => {
                let (t, _) = self.tags(n, &["flags"], 0)?;
                Command::Keep { flags: t.flags }
            }
            "discard" => {
                self.positional(n, &[], 0)?;
                Command::Discard
            }
            "redirect" => {
                let (t, p) = self.tags(n, &["copy"], 1)?;
                let address = self.string(&p[0], "the address")?;
                if !address.contains("${") && !crate::address::valid_redirect(&address) {
                    return Err(err(
                        p[0].pos(),
                        format!("'{}' is not a valid address", printable(&address)),
                    ));
                }
                Command::Redirect {
                    address,
                    copy: t.copy,
                }
            }
            "fileinto" => {
                self.need("fileinto", n.pos, "fileinto")?;
                let (t, p) = self.tags(n, &["copy", "create", "flags"], 1)?;
                let mailbox = self.string(&p[0], "the mailbox")?;
                if mailbox.is_empty() {
                    return Err(err(p[0].pos(), "the mailbox name is empty"));
                }
                Command::FileInto {
                    mailbox,
                    copy: t.copy,
                    create: t.create,
                    flags: t.flags,
                }
            }
            "reject" | "ereject" => {
                self.need(name, n.pos, name)?;
                let (_, p) = self.tags(n, &[], 1)?;
                Command::Reject {
                    reason: self.string(&p[0], "the reason")?,
                    extended: name == "ereject",
                }
            }
            "vacation" => {
                self.need("vacation", n.pos, "vacation")?;
                let (t, p) = self.tags(
                    n,
                    &[
                        "days",
                        "seconds",
                        "subject",
                        "from",
                        "addresses",
                        "mime",
                        "handle",
                    ],
                    1,
                )?;
                Command::Vacation(Box::new(VacationArgs {
                    period: t.period,
                    subject: t.subject,
                    from: t.from,
                    addresses: t.addresses.unwrap_or_default(),
                    mime: t.mime,
                    handle: t.handle,
                    reason: self.string(&p[0], "the reason")?,
                }))
            }
            "setflag" | "addflag" | "removeflag" => {
                self.need("imap4flags", n.pos, name)?;
                let op = match name {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                let (_, p) = self.tags(n, &[], usize::MAX)?;
                let (variable, flags) = match p.as_slice() {
                    [f] => (None, self.strings(f, "the flags")?),
                    [v, f] => {
                        self.need("variables", v.pos(), "a flag variable")?;
                        let v = self.string(v, "the variable name")?;
                        (
                            Some(self.variable_name(&v, p[0].pos())?),
                            self.strings(f, "the flags")?,
                        )
                    }
                    _ => return Err(err(n.pos, format!("{name} takes [variable] <flags>"))),
                };
                Command::Flags {
                    op,
                    variable,
                    flags,
                }
            }
            "set" => {
                self.need("variables", n.pos, "set")?;
                let (t, p) = self.tags(n, &["modifier"], 2)?;
                let raw = self.string(&p[0], "the variable name")?;
                let name = self.variable_name(&raw, p[0].pos())?;
                let mut modifiers = t.modifiers;
                modifiers.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
                if modifiers
                    .windows(2)
                    .any(|w| w[0].precedence() == w[1].precedence())
                {
                    return Err(err(n.pos, "two modifiers of the same precedence"));
                }
                Command::Set {
                    name,
                    value: self.string(&p[1], "the value")?,
                    modifiers,
                }
            }
            "include" => {
                self.need("include", n.pos, "include")?;
                let (t, p) = self.tags(n, &["location", "once", "optional"], 1)?;
                let name = self.string(&p[0], "the script name")?;
                if name.is_empty() || name.contains(['/', '\0', '\r', '\n']) || name.contains("${")
                {
                    return Err(err(
                        p[0].pos(),
                        format!("'{}' is not a valid script name", printable(&name)),
                    ));
                }
                Command::Include {
                    name,
                    global: t.location.unwrap_or(false),
                    once: t.once,
                    optional: t.optional,
                }
            }
            "return" => {
                self.need("include", n.pos, "return")?;
                self.positional(n, &[], 0)?;
                Command::Return
            }
            "global" => {
                self.need("include", n.pos, "global")?;
                self.need("variables", n.pos, "global")?;
                let (_, p) = self.tags(n, &[], 1)?;
                let mut names = Vec::new();
                for v in self.strings(&p[0], "the variable names")? {
                    let v = self.variable_name(&v, p[0].pos())?;
                    names.push(v.strip_prefix("global.").unwrap_or(&v).to_string());
                }
                Command::Global(names)
            }
            "addheader" => {
                self.need("editheader", n.pos, "addheader")?;
                let (t, p) = self.tags(n, &["last"], 2)?;
                let name = self.string(&p[0], "the field name")?;
                if !name.contains("${") && !crate::editheader::valid_field_name(&name) {
                    return Err(err(
                        p[0].pos(),
                        format!("'{}' is not a valid header field name", printable(&name)),
                    ));
                }
                Command::AddHeader {
                    last: t.last,
                    name,
                    value: self.string(&p[1], "the value")?,
                }
            }
            "deleteheader" => {
                self.need("editheader", n.pos, "deleteheader")?;
                let (t, p) = self.tags(n, &["comparator", "match", "index", "last"], usize::MAX)?;
                let (name, patterns) = match p.as_slice() {
                    [f] => (self.string(f, "the field name")?, None),
                    [f, v] => (self.string(f, "the field name")?, Some(self.keys(v, &t)?)),
                    _ => {
                        return Err(err(
                            n.pos,
                            "deleteheader takes <field-name> [<value-patterns>]",
                        ))
                    }
                };
                if !name.contains("${") && !crate::editheader::valid_field_name(&name) {
                    return Err(err(
                        p[0].pos(),
                        format!("'{}' is not a valid header field name", printable(&name)),
                    ));
                }
                Command::DeleteHeader {
                    index: self.index(&t, n.pos)?,
                    matcher: self.matcher(&t),
                    name,
                    patterns,
                }
            }
            _ => {
                return Err(err(
                    n.pos,
                    format!("unknown command '{}'", printable(&n.name)),
                ))
            }
        };
        Ok(cmd)
    }

    fn test(&self, n: &Node) -> Result<Test, CompileError> {
        let name = n.name.as_str();
        let no_tests = |t: &Node| {
            if t.tests.is_empty() {
                Ok(())
            } else {
                Err(err(
                    t.pos,
                    format!("'{}' takes no nested test", printable(&t.name)),
                ))
            }
        };
        let test = match name {
            "true" | "false" => {
                no_tests(n)?;
                self.positional(n, &[], 0)?;
                if name == "true" {
                    Test::True
                } else {
                    Test::False
                }
            }
            "not" => {
                self.positional(n, &[], 0)?;
                if n.tests.len() != 1 || n.test_list {
                    return Err(err(n.pos, "not takes exactly one test"));
                }
                Test::Not(Box::new(self.test(&n.tests[0])?))
            }
            "allof" | "anyof" => {
                self.positional(n, &[], 0)?;
                if !n.test_list {
                    return Err(err(
                        n.pos,
                        format!("{name} takes a test list in parentheses"),
                    ));
                }
                let tests = n
                    .tests
                    .iter()
                    .map(|t| self.test(t))
                    .collect::<Result<Vec<_>, _>>()?;
                if name == "allof" {
                    Test::AllOf(tests)
                } else {
                    Test::AnyOf(tests)
                }
            }
            "address" => {
                no_tests(n)?;
                let (t, p) = self.tags(n, &["comparator", "match", "part", "index", "last"], 2)?;
                Test::Address {
                    matcher: self.matcher(&t),
                    part: t.part.unwrap_or(AddressPart::All),
                    headers: self.header_names(&p[0])?,
                    keys: self.keys(&p[1], &t)?,
                    index: self.index(&t, n.pos)?,
                }
            }
            "envelope" => {
                no_tests(n)?;
                self.need("envelope", n.pos, "envelope")?;
                let (t, p) = self.tags(n, &["comparator", "match", "part"], 2)?;
                let fields: Vec<String> = self
                    .strings(&p[0], "the envelope parts")?
                    .into_iter()
                    .map(|f| f.to_ascii_lowercase())
                    .collect();
                for f in &fields {
                    if f != "from" && f != "to" && !f.contains("${") {
                        return Err(err(
                            p[0].pos(),
                            format!("unknown envelope part '{}' (from or to)", printable(f)),
                        ));
                    }
                }
                Test::Envelope {
                    matcher: self.matcher(&t),
                    part: t.part.unwrap_or(AddressPart::All),
                    fields,
                    keys: self.keys(&p[1], &t)?,
                }
            }
            "header" => {
                no_tests(n)?;
                let (t, p) = self.tags(n, &["comparator", "match", "index", "last"], 2)?;
                Test::Header {
                    matcher: self.matcher(&t),
                    headers: self.header_names(&p[0])?,
                    keys: self.keys(&p[1], &t)?,
                    index: self.index(&t, n.pos)?,
                }
            }
            "exists" => {
                no_tests(n)?;
                let (_, p) = self.tags(n, &[], 1)?;
                Test::Exists(self.header_names(&p[0])?)
            }
            "size" => {
                no_tests(n)?;
                let (t, _) = self.tags(n, &["size"], 0)?;
                let Some((over, limit)) = t.size else {
                    return Err(err(n.pos, "size needs :over or :under and a number"));
                };
                Test::Size { over, limit }
            }
            "body" => {
                no_tests(n)?;
                self.need("body", n.pos, "body")?;
                let (t, p) = self.tags(n, &["comparator", "match", "transform"], 1)?;
                Test::Body {
                    matcher: self.matcher(&t),
                    transform: t.transform.clone().unwrap_or(BodyTransform::Text),
                    keys: self.keys(&p[0], &t)?,
                }
            }
            "string" => {
                no_tests(n)?;
                self.need("variables", n.pos, "string")?;
                let (t, p) = self.tags(n, &["comparator", "match"], 2)?;
                Test::String {
                    matcher: self.matcher(&t),
                    sources: self.strings(&p[0], "the source")?,
                    keys: self.keys(&p[1], &t)?,
                }
            }
            "hasflag" => {
                no_tests(n)?;
                self.need("imap4flags", n.pos, "hasflag")?;
                let (t, p) = self.tags(n, &["comparator", "match"], usize::MAX)?;
                let (variables, flags) = match p.as_slice() {
                    [f] => (Vec::new(), self.keys(f, &t)?),
                    [v, f] => {
                        self.need("variables", v.pos(), "a flag variable")?;
                        let mut vars = Vec::new();
                        for name in self.strings(v, "the variable names")? {
                            vars.push(self.variable_name(&name, v.pos())?);
                        }
                        (vars, self.keys(f, &t)?)
                    }
                    _ => return Err(err(n.pos, "hasflag takes [variables] <flags>")),
                };
                Test::HasFlag {
                    matcher: self.matcher(&t),
                    variables,
                    flags,
                }
            }
            "date" => {
                no_tests(n)?;
                self.need("date", n.pos, "date")?;
                let (t, p) = self.tags(n, &["comparator", "match", "zone", "index", "last"], 3)?;
                let part = self.string(&p[1], "the date part")?.to_ascii_lowercase();
                self.date_part(&part, p[1].pos())?;
                Test::Date {
                    matcher: self.matcher(&t),
                    zone: t.zone.unwrap_or(Zone::Local),
                    index: self.index(&t, n.pos)?,
                    header: self.string(&p[0], "the header name")?,
                    part,
                    keys: self.keys(&p[2], &t)?,
                }
            }
            "currentdate" => {
                no_tests(n)?;
                self.need("date", n.pos, "currentdate")?;
                let (t, p) = self.tags(n, &["comparator", "match", "zone"], 2)?;
                if t.zone == Some(Zone::Original) {
                    return Err(err(n.pos, "currentdate takes :zone, not :originalzone"));
                }
                let part = self.string(&p[0], "the date part")?.to_ascii_lowercase();
                self.date_part(&part, p[0].pos())?;
                Test::CurrentDate {
                    matcher: self.matcher(&t),
                    zone: t.zone.unwrap_or(Zone::Local),
                    part,
                    keys: self.keys(&p[1], &t)?,
                }
            }
            "mailboxexists" => {
                no_tests(n)?;
                self.need("mailbox", n.pos, "mailboxexists")?;
                let (_, p) = self.tags(n, &[], 1)?;
                Test::MailboxExists(self.strings(&p[0], "the mailbox names")?)
            }
            "duplicate" => {
                no_tests(n)?;
                self.need("duplicate", n.pos, "duplicate")?;
                let (t, _) = self.tags(n, &["handle", "dupid", "seconds", "last"], 0)?;
                Test::Duplicate {
                    handle: t.handle,
                    id: t
                        .dup_id
                        .unwrap_or_else(|| DuplicateId::Header("message-id".into())),
                    seconds: t.period,
                    last: t.last,
                }
            }
            _ => return Err(err(n.pos, format!("unknown test '{}'", printable(&n.name)))),
        };
        Ok(test)
    }

    fn matcher(&self, t: &Tags) -> Matcher {
        Matcher {
            comparator: t.comparator.unwrap_or(Comparator::AsciiCasemap),
            match_type: t.match_type.unwrap_or(MatchType::Is),
        }
    }

    fn index(&self, t: &Tags, pos: Pos) -> Result<Option<Index>, CompileError> {
        match (t.index, t.last) {
            (Some(n), last) => Ok(Some(Index { n, last })),
            (None, true) => Err(err(pos, ":last needs :index")),
            (None, false) => Ok(None),
        }
    }

    fn date_part(&self, part: &str, pos: Pos) -> Result<(), CompileError> {
        if part.contains("${") || crate::date::PARTS.contains(&part) {
            Ok(())
        } else {
            Err(err(pos, format!("unknown date part '{}'", printable(part))))
        }
    }

    fn header_names(&self, a: &Arg) -> Result<Vec<String>, CompileError> {
        let names = self.strings(a, "the header names")?;
        for n in &names {
            if !n.contains("${") && !crate::editheader::valid_field_name(n) {
                return Err(err(
                    a.pos(),
                    format!("'{}' is not a valid header name", printable(n)),
                ));
            }
        }
        Ok(names)
    }

    /// The key list; constant regular expressions are compiled now so a
    /// bad or too large one is a compile error with its position.
    fn keys(&self, a: &Arg, t: &Tags) -> Result<Vec<String>, CompileError> {
        let keys = self.strings(a, "the key list")?;
        if t.match_type == Some(MatchType::Regex) {
            for k in &keys {
                if self.has("variables") && k.contains("${") {
                    continue;
                }
                let ci =
                    t.comparator.unwrap_or(Comparator::AsciiCasemap) == Comparator::AsciiCasemap;
                crate::matching::build_regex(k, ci, self.settings.max_regex_size)
                    .map_err(|e| err(a.pos(), e))?;
            }
        }
        Ok(keys)
    }

    fn variable_name(&self, v: &str, pos: Pos) -> Result<String, CompileError> {
        let lower = v.to_ascii_lowercase();
        let body = match lower.strip_prefix("global.") {
            Some(rest) if self.has("include") => rest,
            _ => lower.as_str(),
        };
        let ok = !body.is_empty()
            && body
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(lower)
        } else {
            Err(err(
                pos,
                format!("'{}' is not a valid variable name", printable(v)),
            ))
        }
    }

    fn positional(&self, n: &Node, _tags: &[&str], count: usize) -> Result<(), CompileError> {
        if n.args.len() != count {
            return Err(err(
                n.pos,
                format!("'{}' takes {count} argument(s)", n.name),
            ));
        }
        Ok(())
    }

    fn string(&self, a: &Arg, what: &str) -> Result<String, CompileError> {
        match a {
            Arg::Strings {
                values,
                list: false,
                ..
            } => Ok(self.decode(values[0].clone(), a.pos())?),
            Arg::Strings {
                values, list: true, ..
            } if values.len() == 1 => Ok(self.decode(values[0].clone(), a.pos())?),
            _ => Err(err(a.pos(), format!("{what} must be a string"))),
        }
    }

    fn strings(&self, a: &Arg, what: &str) -> Result<Vec<String>, CompileError> {
        match a {
            Arg::Strings { values, .. } => values
                .iter()
                .map(|v| self.decode(v.clone(), a.pos()))
                .collect(),
            _ => Err(err(
                a.pos(),
                format!("{what} must be a string or a string list"),
            )),
        }
    }

    fn number(&self, a: &Arg, what: &str) -> Result<u64, CompileError> {
        match a {
            Arg::Number(n, _) => Ok(*n),
            _ => Err(err(a.pos(), format!("{what} needs a number"))),
        }
    }

    fn decode(&self, s: String, pos: Pos) -> Result<String, CompileError> {
        if self.has("encoded-character") && s.contains("${") {
            crate::variables::decode_encoded_characters(&s).map_err(|m| err(pos, m))
        } else {
            Ok(s)
        }
    }
}
