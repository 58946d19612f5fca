//! Comparators (RFC 4790 as used by RFC 5228 2.7.3) and match types:
//! `:is`, `:contains`, `:matches`, `:regex`, `:value`.
//!
//! `:matches` and `:regex` run on the `regex` crate, whose engines take
//! time linear in the input: no pattern can make a match backtrack
//! exponentially. Patterns are bounded by `Settings::max_regex_size`.

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};

use crate::ast::{Comparator, Relation};

/// Builds a regular expression under the size limit. The error text is
/// for the script's author.
pub fn build_regex(
    pattern: &str,
    case_insensitive: bool,
    size_limit: usize,
) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(size_limit)
        .dfa_size_limit(size_limit)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(n) => {
                format!("regular expression too large (over the limit of {n} bytes)")
            }
            regex::Error::Syntax(s) => {
                let first = s.lines().last().unwrap_or("syntax error");
                format!(
                    "invalid regular expression: {}",
                    crate::error::printable(first)
                )
            }
            _ => "invalid regular expression".to_string(),
        })
}

/// A `:matches` pattern as an anchored regular expression: `*` is a lazy
/// group, `?` one character, `\` makes the next character literal.
/// Under `i;ascii-casemap` the pattern is folded; the caller folds the value.
pub fn wildcard_to_regex(pattern: &str, cmp: Comparator) -> String {
    let pattern = if cmp == Comparator::AsciiCasemap {
        pattern.to_ascii_lowercase()
    } else {
        pattern.to_string()
    };
    let mut re = String::from("(?s)^");
    let mut chars = pattern.chars();
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("(.*?)"),
            '?' => re.push_str("(.)"),
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(n.encode_utf8(&mut buf)));
                }
            }
            c => re.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
    re.push('$');
    re
}

/// The value the comparator sees: folded for `i;ascii-casemap`.
pub fn fold(cmp: Comparator, s: &str) -> String {
    if cmp == Comparator::AsciiCasemap {
        s.to_ascii_lowercase()
    } else {
        s.to_string()
    }
}

/// `i;ascii-numeric`: the leading digits without leading zeros, or `None`
/// (positive infinity) when the string does not start with a digit.
fn numeric(s: &str) -> Option<&str> {
    let digits = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() {
        None
    } else {
        let trimmed = digits.trim_start_matches('0');
        Some(if trimmed.is_empty() { "0" } else { trimmed })
    }
}

/// Orders two strings under a comparator.
pub fn compare(cmp: Comparator, a: &str, b: &str) -> Ordering {
    match cmp {
        Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
        Comparator::AsciiCasemap => a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase())),
        Comparator::AsciiNumeric => match (numeric(a), numeric(b)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        },
    }
}

/// `:is`.
pub fn is(cmp: Comparator, value: &str, key: &str) -> bool {
    compare(cmp, value, key) == Ordering::Equal
}

/// `:contains` (never with `i;ascii-numeric`: the compiler refuses it).
pub fn contains(cmp: Comparator, value: &str, key: &str) -> bool {
    match cmp {
        Comparator::AsciiCasemap => fold(cmp, value).contains(&fold(cmp, key)),
        _ => value.contains(key),
    }
}

/// Whether an ordering satisfies a relation.
pub fn relation(rel: Relation, ord: Ordering) -> bool {
    match rel {
        Relation::Gt => ord == Ordering::Greater,
        Relation::Ge => ord != Ordering::Less,
        Relation::Lt => ord == Ordering::Less,
        Relation::Le => ord != Ordering::Greater,
        Relation::Eq => ord == Ordering::Equal,
        Relation::Ne => ord != Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Comparator::*;

    #[test]
    fn comparators() {
        assert!(is(AsciiCasemap, "Hello", "hELLO"));
        assert!(!is(Octet, "Hello", "hello"));
        assert!(is(AsciiNumeric, "007", "7"));
        assert!(is(AsciiNumeric, "abc", "xyz"));
        assert_eq!(compare(AsciiNumeric, "10", "9"), Ordering::Greater);
        assert_eq!(
            compare(AsciiNumeric, "x", "99999999999999999999999"),
            Ordering::Greater
        );
        assert_eq!(compare(AsciiNumeric, "12abc", "12"), Ordering::Equal);
        assert!(contains(AsciiCasemap, "Free MONEY now", "money"));
        assert!(!contains(Octet, "Free MONEY now", "money"));
    }

    #[test]
    fn wildcards() {
        let re = Regex::new(&wildcard_to_regex("[*] *", AsciiCasemap)).unwrap();
        let caps = re.captures("[acme-users] [fwd] version").unwrap();
        assert_eq!(&caps[1], "acme-users");
        assert_eq!(&caps[2], "[fwd] version");
        let re = Regex::new(&wildcard_to_regex("a\\*b?", Octet)).unwrap();
        assert!(re.is_match("a*bc"));
        assert!(!re.is_match("axbc"));
    }

    #[test]
    fn regex_limits() {
        assert!(build_regex("(a+)+$", false, 1 << 20).is_ok());
        let e = build_regex("(((a{100}){100}){100})", false, 1 << 20).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!(build_regex("(", false, 1 << 20)
            .unwrap_err()
            .contains("invalid"));
    }
}
