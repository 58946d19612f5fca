//! The tagged arguments (`:is`, `:comparator "..."`, `:days 3`, ...):
//! which exist, which exclude each other, which extension each needs.

use std::collections::HashSet;

use super::{err, Compiler};
use crate::ast::*;
use crate::error::{printable, CompileError};
use crate::lexer::Pos;
use crate::parser::{Arg, Node};

/// The tags that one command or test accepts, and what was given.
#[derive(Default)]
pub(super) struct Tags {
    pub(super) comparator: Option<Comparator>,
    pub(super) match_type: Option<MatchType>,
    pub(super) part: Option<AddressPart>,
    pub(super) index: Option<u64>,
    pub(super) last: bool,
    pub(super) zone: Option<Zone>,
    pub(super) size: Option<(bool, u64)>,
    pub(super) copy: bool,
    pub(super) create: bool,
    pub(super) flags: Option<Vec<String>>,
    pub(super) period: Option<u64>,
    pub(super) subject: Option<String>,
    pub(super) from: Option<String>,
    pub(super) addresses: Option<Vec<String>>,
    pub(super) mime: bool,
    pub(super) handle: Option<String>,
    pub(super) location: Option<bool>,
    pub(super) once: bool,
    pub(super) optional: bool,
    pub(super) transform: Option<BodyTransform>,
    pub(super) dup_id: Option<DuplicateId>,
    pub(super) modifiers: Vec<Modifier>,
}

impl Compiler<'_> {
    /// Reads the tagged arguments (which come first), then checks that
    /// `count` positional arguments follow (`usize::MAX`: any number,
    /// checked by the caller).
    pub(super) fn tags(
        &self,
        n: &Node,
        allowed: &[&str],
        count: usize,
    ) -> Result<(Tags, Vec<Arg>), CompileError> {
        let mut t = Tags::default();
        let mut args = n.args.iter().peekable();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(Arg::Tag(tag, pos)) = args.peek() {
            let (tag, pos) = (tag.clone(), *pos);
            args.next();
            let group = tag_group(&tag);
            if !allowed.contains(&group) {
                return Err(err(
                    pos,
                    format!("'{}' does not take :{}", n.name, printable(&tag)),
                ));
            }
            if !seen.insert(group.to_string()) && group != "modifier" {
                return Err(err(
                    pos,
                    format!("a second {} tag (:{})", group_label(group), printable(&tag)),
                ));
            }
            if group == "modifier" && !seen.insert(tag.clone()) {
                return Err(err(pos, format!(":{} given twice", printable(&tag))));
            }
            let mut value = || {
                args.next()
                    .ok_or_else(|| err(pos, format!(":{} needs a value", printable(&tag))))
            };
            match tag.as_str() {
                "comparator" => {
                    let v = self.string(value()?, ":comparator")?;
                    t.comparator = Some(match v.to_ascii_lowercase().as_str() {
                        "i;octet" => Comparator::Octet,
                        "i;ascii-casemap" => Comparator::AsciiCasemap,
                        "i;ascii-numeric" => {
                            self.need("comparator-i;ascii-numeric", pos, "i;ascii-numeric")?;
                            Comparator::AsciiNumeric
                        }
                        _ => {
                            return Err(err(pos, format!("unknown comparator '{}'", printable(&v))))
                        }
                    });
                }
                "is" => t.match_type = Some(MatchType::Is),
                "contains" => t.match_type = Some(MatchType::Contains),
                "matches" => t.match_type = Some(MatchType::Matches),
                "regex" => {
                    self.need("regex", pos, ":regex")?;
                    t.match_type = Some(MatchType::Regex)
                }
                "count" | "value" => {
                    self.need("relational", pos, &format!(":{tag}"))?;
                    let v = self.string(value()?, &format!(":{tag}"))?;
                    let rel = match v.to_ascii_lowercase().as_str() {
                        "gt" => Relation::Gt,
                        "ge" => Relation::Ge,
                        "lt" => Relation::Lt,
                        "le" => Relation::Le,
                        "eq" => Relation::Eq,
                        "ne" => Relation::Ne,
                        _ => {
                            return Err(err(
                                pos,
                                format!("unknown relational operator '{}'", printable(&v)),
                            ))
                        }
                    };
                    t.match_type = Some(if tag == "count" {
                        MatchType::Count(rel)
                    } else {
                        MatchType::Value(rel)
                    });
                }
                "all" => t.part = Some(AddressPart::All),
                "localpart" => t.part = Some(AddressPart::LocalPart),
                "domain" => t.part = Some(AddressPart::Domain),
                "user" | "detail" => {
                    self.need("subaddress", pos, &format!(":{tag}"))?;
                    t.part = Some(if tag == "user" {
                        AddressPart::User
                    } else {
                        AddressPart::Detail
                    });
                }
                "index" => {
                    // deleteheader has :index without the index extension (RFC 5293 4).
                    if !self.has("editheader") || n.name != "deleteheader" {
                        self.need("index", pos, ":index")?;
                    }
                    let n = self.number(value()?, ":index")?;
                    if n == 0 {
                        return Err(err(pos, ":index counts from 1"));
                    }
                    t.index = Some(n);
                }
                "last" => {
                    if !self.has("index") && !self.has("duplicate") && !self.has("editheader") {
                        return Err(err(pos, ":last needs require \"index\""));
                    }
                    t.last = true;
                }
                "zone" => {
                    let v = self.string(value()?, ":zone")?;
                    t.zone = Some(Zone::Fixed(crate::date::parse_zone(&v).ok_or_else(
                        || err(pos, format!("'{}' is not a zone like +0100", printable(&v))),
                    )?));
                }
                "originalzone" => t.zone = Some(Zone::Original),
                "over" | "under" => {
                    let n = self.number(value()?, &format!(":{tag}"))?;
                    t.size = Some((tag == "over", n));
                }
                "copy" => {
                    self.need("copy", pos, ":copy")?;
                    t.copy = true;
                }
                "create" => {
                    self.need("mailbox", pos, ":create")?;
                    t.create = true;
                }
                "flags" => {
                    self.need("imap4flags", pos, ":flags")?;
                    t.flags = Some(self.strings(value()?, ":flags")?);
                }
                "days" => t.period = Some(self.number(value()?, ":days")?.saturating_mul(86_400)),
                "seconds" => {
                    if !self.has("vacation-seconds") && !self.has("duplicate") {
                        return Err(err(pos, ":seconds needs require \"vacation-seconds\""));
                    }
                    t.period = Some(self.number(value()?, ":seconds")?);
                }
                "subject" => t.subject = Some(self.string(value()?, ":subject")?),
                "from" => t.from = Some(self.string(value()?, ":from")?),
                "addresses" => t.addresses = Some(self.strings(value()?, ":addresses")?),
                "mime" => t.mime = true,
                "handle" => t.handle = Some(self.string(value()?, ":handle")?),
                "personal" => t.location = Some(false),
                "global" => t.location = Some(true),
                "once" => t.once = true,
                "optional" => t.optional = true,
                "raw" => t.transform = Some(BodyTransform::Raw),
                "text" => t.transform = Some(BodyTransform::Text),
                "content" => {
                    t.transform = Some(BodyTransform::Content(
                        self.strings(value()?, ":content")?
                            .into_iter()
                            .map(|s| s.to_ascii_lowercase())
                            .collect(),
                    ))
                }
                "header" => {
                    let h = self.string(value()?, ":header")?;
                    t.dup_id = Some(DuplicateId::Header(h.to_ascii_lowercase()));
                }
                "uniqueid" => {
                    t.dup_id = Some(DuplicateId::UniqueId(self.string(value()?, ":uniqueid")?))
                }
                "lower" => t.modifiers.push(Modifier::Lower),
                "upper" => t.modifiers.push(Modifier::Upper),
                "lowerfirst" => t.modifiers.push(Modifier::LowerFirst),
                "upperfirst" => t.modifiers.push(Modifier::UpperFirst),
                "quotewildcard" => t.modifiers.push(Modifier::QuoteWildcard),
                "quoteregex" => {
                    self.need("regex", pos, ":quoteregex")?;
                    t.modifiers.push(Modifier::QuoteRegex)
                }
                "length" => t.modifiers.push(Modifier::Length),
                _ => unreachable_tag(&tag, pos)?,
            }
        }
        let rest: Vec<Arg> = args.cloned().collect();
        if let Some(Arg::Tag(tag, pos)) = rest.iter().find(|a| matches!(a, Arg::Tag(..))) {
            return Err(err(
                *pos,
                format!(":{} must come before the other arguments", printable(tag)),
            ));
        }
        if count != usize::MAX && rest.len() != count {
            return Err(err(
                n.pos,
                format!(
                    "'{}' takes {count} positional argument(s), {} given",
                    n.name,
                    rest.len()
                ),
            ));
        }
        if let (
            Some(Comparator::AsciiNumeric),
            Some(MatchType::Contains | MatchType::Matches | MatchType::Regex),
        ) = (t.comparator, t.match_type)
        {
            return Err(err(
                n.pos,
                "i;ascii-numeric works only with :is, :count and :value",
            ));
        }
        Ok((t, rest))
    }
}

/// Tags that exclude each other share a group.
fn tag_group(tag: &str) -> &'static str {
    match tag {
        "comparator" => "comparator",
        "is" | "contains" | "matches" | "regex" | "count" | "value" => "match",
        "all" | "localpart" | "domain" | "user" | "detail" => "part",
        "index" => "index",
        "last" => "last",
        "zone" | "originalzone" => "zone",
        "over" | "under" => "size",
        "copy" => "copy",
        "create" => "create",
        "flags" => "flags",
        "days" | "seconds" => "seconds",
        "subject" => "subject",
        "from" => "from",
        "addresses" => "addresses",
        "mime" => "mime",
        "handle" => "handle",
        "personal" | "global" => "location",
        "once" => "once",
        "optional" => "optional",
        "raw" | "text" | "content" => "transform",
        "header" | "uniqueid" => "dupid",
        "lower" | "upper" | "lowerfirst" | "upperfirst" | "quotewildcard" | "quoteregex"
        | "length" => "modifier",
        _ => "unknown",
    }
}

fn group_label(group: &str) -> &str {
    match group {
        "match" => "match type",
        "part" => "address part",
        "seconds" => "period",
        "location" => "location",
        "transform" => "body transform",
        "dupid" => ":header/:uniqueid",
        g => g,
    }
}

fn unreachable_tag(tag: &str, pos: Pos) -> Result<(), CompileError> {
    Err(err(pos, format!("unknown tag :{}", printable(tag))))
}
