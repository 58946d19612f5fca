//! Tests (RFC 5228 section 5 and each extension's tests) and the
//! matching of values against keys: the other half of [`Run`].

use regex::Regex;

use super::{decode_header, pick_index, split_flags, Run, Scope, R, REGEX_CACHE};
use crate::address;
use crate::ast::*;
use crate::date;
use crate::error::RuntimeError;
use crate::matching;
use crate::message::DuplicateCheck;

impl Run<'_> {
    // ---- tests -------------------------------------------------------

    pub(super) fn test(&mut self, scope: &mut Scope, t: &Test) -> R<bool> {
        self.charge(1)?;
        Ok(match t {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(scope, t)?,
            Test::AllOf(ts) => {
                for t in ts {
                    if !self.test(scope, t)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::AnyOf(ts) => {
                for t in ts {
                    if self.test(scope, t)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Header {
                matcher,
                headers,
                keys,
                index,
            } => {
                let values = self.headers_raw(scope, headers, *index)?;
                let values = values.iter().map(|raw| decode_header(raw)).collect();
                self.match_keys(scope, *matcher, values, keys)?
            }
            Test::Address {
                matcher,
                part,
                headers,
                keys,
                index,
            } => {
                let sep = self.settings.subaddress_separator;
                let values = self
                    .headers_raw(scope, headers, *index)?
                    .iter()
                    .flat_map(|raw| address::parse_header_addresses(raw))
                    .filter_map(|a| address::part(&a, *part, sep))
                    .collect();
                self.match_keys(scope, *matcher, values, keys)?
            }
            Test::Envelope {
                matcher,
                part,
                fields,
                keys,
            } => {
                let fields = self.expand_all(scope, fields)?;
                let mut values = Vec::new();
                for f in &fields {
                    let addr = match f.to_ascii_lowercase().as_str() {
                        "from" => &self.envelope.from,
                        "to" => &self.envelope.to,
                        _ => continue,
                    };
                    if addr.is_empty() {
                        // RFC 5228 5.4: the null reverse-path is "" whatever the part.
                        values.push(String::new());
                    } else if let Some(p) =
                        address::part(addr, *part, self.settings.subaddress_separator)
                    {
                        values.push(p);
                    }
                }
                self.match_keys(scope, *matcher, values, keys)?
            }
            Test::Exists(names) => {
                let names = self.expand_all(scope, names)?;
                names
                    .iter()
                    .all(|n| self.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n)))
            }
            Test::Size { over, limit } => {
                let size = self.msg.size();
                if *over {
                    size > *limit
                } else {
                    size < *limit
                }
            }
            Test::Body {
                matcher,
                transform,
                keys,
            } => {
                let values = self.body_values(transform)?;
                let keys = self.expand_all(scope, keys)?;
                self.match_values(scope, *matcher, values, &keys, false)?
            }
            Test::String {
                matcher,
                sources,
                keys,
            } => {
                let mut values = self.expand_all(scope, sources)?;
                if matches!(matcher.match_type, MatchType::Count(_)) {
                    values.retain(|v| !v.is_empty());
                }
                self.match_keys(scope, *matcher, values, keys)?
            }
            Test::HasFlag {
                matcher,
                variables,
                flags,
            } => {
                let values = if variables.is_empty() {
                    self.flags.clone()
                } else {
                    let vals: Vec<String> = variables
                        .iter()
                        .map(|v| scope.get(&self.globals, v))
                        .collect();
                    split_flags(&vals)
                };
                let keys = self.expand_all(scope, flags)?;
                let keys = if matches!(matcher.match_type, MatchType::Count(_)) {
                    keys
                } else {
                    keys.iter()
                        .flat_map(|k| k.split_whitespace().map(str::to_string))
                        .collect()
                };
                self.match_values(scope, *matcher, values, &keys, true)?
            }
            Test::Date {
                matcher,
                zone,
                index,
                header,
                part,
                keys,
            } => {
                let header = self.expand(scope, header)?;
                let part = self.expand(scope, part)?.to_ascii_lowercase();
                let local = self.env.now().1;
                let mut values = Vec::new();
                for raw in self.header_raw(&header, *index) {
                    let Some((ts, off)) = date::parse_header_date(&decode_header(&raw)) else {
                        continue;
                    };
                    let zone = match zone {
                        Zone::Original => off,
                        Zone::Fixed(z) => *z,
                        Zone::Local => local,
                    };
                    values.extend(date::part(ts, zone, &part));
                }
                self.match_keys(scope, *matcher, values, keys)?
            }
            Test::CurrentDate {
                matcher,
                zone,
                part,
                keys,
            } => {
                let part = self.expand(scope, part)?.to_ascii_lowercase();
                let (now, local) = self.env.now();
                let zone = match zone {
                    Zone::Fixed(z) => *z,
                    _ => local,
                };
                let values: Vec<String> = date::part(now, zone, &part).into_iter().collect();
                self.match_keys(scope, *matcher, values, keys)?
            }
            Test::MailboxExists(names) => {
                let names = self.expand_all(scope, names)?;
                names.iter().all(|n| self.env.mailbox_exists(n))
            }
            Test::Duplicate {
                handle,
                id,
                seconds,
                last,
            } => {
                let id = match id {
                    DuplicateId::UniqueId(u) => Some(self.expand(scope, u)?),
                    DuplicateId::Header(h) => self
                        .header_raw(h, None)
                        .first()
                        .map(|raw| decode_header(raw))
                        .filter(|v| !v.is_empty()),
                };
                let Some(id) = id else {
                    return Ok(false);
                };
                let handle = match handle {
                    Some(h) => self.expand(scope, h)?,
                    None => String::new(),
                };
                let period = seconds
                    .unwrap_or(self.settings.duplicate_default_period)
                    .min(self.settings.duplicate_max_period);
                let check = DuplicateCheck {
                    handle,
                    id,
                    period,
                    last: *last,
                };
                self.charge_len(check.id.len() + check.handle.len())?;
                if let Some((_, seen)) = self.out.duplicates.iter().find(|(c, _)| *c == check) {
                    return Ok(*seen);
                }
                let seen = self.env.seen_before(&check);
                self.out.duplicates.push((check, seen));
                seen
            }
        })
    }

    /// The raw values of the header fields named in `headers` (expanded),
    /// one or all of each, with their length charged.
    fn headers_raw(
        &mut self,
        scope: &Scope,
        headers: &[String],
        index: Option<Index>,
    ) -> R<Vec<String>> {
        let names = self.expand_all(scope, headers)?;
        let mut values = Vec::new();
        for n in &names {
            for raw in self.header_raw(n, index) {
                self.charge_len(raw.len())?;
                values.push(raw);
            }
        }
        Ok(values)
    }

    /// [`Self::match_values`] against `keys` once expanded, setting the
    /// match variables.
    fn match_keys(
        &mut self,
        scope: &mut Scope,
        m: Matcher,
        values: Vec<String>,
        keys: &[String],
    ) -> R<bool> {
        let keys = self.expand_all(scope, keys)?;
        self.match_values(scope, m, values, &keys, true)
    }

    /// The raw values of the header fields named `name`, one or all.
    pub(super) fn header_raw(&self, name: &str, index: Option<Index>) -> Vec<String> {
        let all: Vec<&String> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect();
        match index {
            None => all.into_iter().cloned().collect(),
            Some(ix) => pick_index(&all, ix).into_iter().cloned().collect(),
        }
    }

    pub(super) fn body_values(&mut self, transform: &BodyTransform) -> R<Vec<String>> {
        if let BodyTransform::Raw = transform {
            if self.raw_body.is_none() {
                self.raw_body = Some(self.msg.raw_body());
            }
            let raw = self.raw_body.clone().unwrap_or_default();
            self.charge_len(raw.len())?;
            return Ok(vec![raw]);
        }
        if self.body_parts.is_none() {
            let parts = self.msg.body_parts();
            let total: usize = parts.iter().map(|p| p.text.len()).sum();
            self.charge_len(total)?;
            self.body_parts = Some(parts);
        }
        let parts = self.body_parts.as_deref().unwrap_or_default();
        let wanted = |ct: &str| -> bool {
            match transform {
                BodyTransform::Text => ct.starts_with("text/"),
                BodyTransform::Content(types) => types.iter().any(|t| {
                    t.is_empty()
                        || if t.contains('/') {
                            t == ct
                        } else {
                            ct.split('/').next() == Some(t.as_str())
                        }
                }),
                BodyTransform::Raw => false,
            }
        };
        Ok(parts
            .iter()
            .filter(|p| wanted(&p.content_type))
            .map(|p| p.text.clone())
            .collect())
    }

    // ---- matching ----------------------------------------------------

    /// Matches values against keys. `set_matches`: a successful `:matches`
    /// or `:regex` sets the match variables (RFC 5229 section 3.2).
    pub(super) fn match_values(
        &mut self,
        scope: &mut Scope,
        m: Matcher,
        values: Vec<String>,
        keys: &[String],
        set_matches: bool,
    ) -> R<bool> {
        let cmp = m.comparator;
        match m.match_type {
            MatchType::Count(rel) => {
                let count = values.len().to_string();
                for k in keys {
                    self.charge(1)?;
                    if matching::relation(rel, matching::compare(cmp, &count, k)) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            MatchType::Value(rel) => self.any_pair(
                &values,
                keys,
                |v, k| 1 + ((v.len() + k.len()) / 256) as u64,
                |v, k| matching::relation(rel, matching::compare(cmp, v, k)),
            ),
            MatchType::Is => self.any_pair(
                &values,
                keys,
                |v, k| 1 + ((v.len() + k.len()) / 256) as u64,
                |v, k| matching::is(cmp, v, k),
            ),
            MatchType::Contains => self.any_pair(
                &values,
                keys,
                |v, k| 1 + (v.len() as u64 * (1 + k.len() as u64 / 16)) / 256,
                |v, k| matching::contains(cmp, v, k),
            ),
            MatchType::Matches | MatchType::Regex => {
                let wildcard = m.match_type == MatchType::Matches;
                for k in keys {
                    let (pattern, ci) = if wildcard {
                        (matching::wildcard_to_regex(k, cmp), false)
                    } else {
                        (k.clone(), cmp == Comparator::AsciiCasemap)
                    };
                    let re = self.regex(&pattern, ci)?;
                    for v in &values {
                        self.charge(1 + (v.len() as u64 * (1 + k.len() as u64 / 8)) / 128)?;
                        let haystack = if wildcard {
                            matching::fold(cmp, v)
                        } else {
                            v.clone()
                        };
                        let want_caps = set_matches && scope.variables;
                        if !want_caps {
                            if re.is_match(&haystack) {
                                return Ok(true);
                            }
                            continue;
                        }
                        if let Some(caps) = re.captures(&haystack) {
                            let mut matches = Vec::new();
                            for i in 0..caps.len().min(10) {
                                // Offsets of the folded text are those of the
                                // original: ASCII folding keeps lengths.
                                let s = caps
                                    .get(i)
                                    .map(|c| v.get(c.start()..c.end()).unwrap_or("").to_string())
                                    .unwrap_or_default();
                                matches.push(s);
                            }
                            scope.matches = matches;
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
        }
    }

    /// Whether `hit` holds for a value and a key, trying each pair in
    /// turn and charging `cost` for it first.
    fn any_pair(
        &mut self,
        values: &[String],
        keys: &[String],
        cost: impl Fn(&str, &str) -> u64,
        hit: impl Fn(&str, &str) -> bool,
    ) -> R<bool> {
        for v in values {
            for k in keys {
                self.charge(cost(v, k))?;
                if hit(v, k) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    pub(super) fn regex(&mut self, pattern: &str, ci: bool) -> R<Regex> {
        let key = (pattern.to_string(), ci);
        if let Some(r) = self.regexes.get(&key) {
            return Ok(r.clone());
        }
        self.charge_len(pattern.len() * 4)?;
        let re = matching::build_regex(pattern, ci, self.settings.max_regex_size)
            .map_err(RuntimeError::InvalidArgument)?;
        // At most REGEX_CACHE compiled expressions (each up to
        // max_regex_size) are held at once.
        if self.regexes.len() >= REGEX_CACHE {
            self.regexes.clear();
        }
        self.regexes.insert(key, re.clone());
        Ok(re)
    }
}
