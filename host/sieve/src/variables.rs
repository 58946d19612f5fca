//! Strings with references: `${name}` and `${1}` (RFC 5229 section 3),
//! `${hex:..}` and `${unicode:..}` (RFC 5228 section 2.4.2.4), and the
//! `set` modifiers (RFC 5229 section 4.1).

use crate::ast::Modifier;

/// A reference inside `${...}`.
#[derive(Debug, PartialEq, Eq)]
pub enum Ref<'a> {
    /// `${3}`: a match variable (leading zeros allowed).
    Match(usize),
    /// `${name}` or `${namespace.name}`, lowercased by the caller.
    Named(&'a str),
}

/// Expands every valid reference in `s` with `lookup`; anything that only
/// looks like a reference stays as written. `max` bounds the result (in
/// bytes, cut at a character boundary).
pub fn expand(s: &str, max: usize, mut lookup: impl FnMut(Ref<'_>) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end) if valid_ref(&after[..end]) => {
                let inner = &after[..end];
                let value = if inner.bytes().all(|b| b.is_ascii_digit()) {
                    Ref::Match(inner.parse().unwrap_or(usize::MAX))
                } else {
                    Ref::Named(inner)
                };
                out.push_str(&lookup(value));
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
        if out.len() > max {
            break;
        }
    }
    out.push_str(rest);
    truncate(&mut out, max);
    out
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn valid_ref(inner: &str) -> bool {
    if inner.is_empty() {
        return false;
    }
    if inner.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    inner.split('.').all(|part| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Decodes `${hex: 41 42}` and `${unicode: 1F600}` sequences; a sequence
/// that is not well formed stays as written; a code point that is not a
/// Unicode scalar value (a surrogate, above 10FFFF) is an error.
pub fn decode_encoded_characters(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let decoded = after
            .find('}')
            .and_then(|end| decode_one(&after[..end]).map(|text| (text, end)));
        match decoded {
            Some((Ok(text), end)) => {
                out.push_str(&text);
                rest = &after[end + 1..];
            }
            Some((Err(e), _)) => return Err(e),
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `hex:..` or `unicode:..` body; `None` when not well formed.
fn decode_one(inner: &str) -> Option<Result<String, String>> {
    let (kind, body) = inner.split_once(':')?;
    let items: Vec<&str> = body
        .split([' ', '\t', '\r', '\n'])
        .filter(|x| !x.is_empty())
        .collect();
    match kind.to_ascii_lowercase().as_str() {
        "hex" => {
            let mut bytes = Vec::new();
            for item in &items {
                if item.len() > 2 || !item.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                bytes.push(u8::from_str_radix(item, 16).ok()?);
            }
            Some(String::from_utf8(bytes).map_err(|_| "${hex:...} is not UTF-8".to_string()))
        }
        "unicode" => {
            let mut text = String::new();
            for item in &items {
                if item.len() > 6 || !item.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let cp = u32::from_str_radix(item, 16).ok()?;
                match char::from_u32(cp) {
                    Some(c) => text.push(c),
                    None => {
                        return Some(Err(format!(
                            "U+{cp:X} in ${{unicode:...}} is not a character"
                        )))
                    }
                }
            }
            Some(Ok(text))
        }
        _ => None,
    }
}

/// Applies `set` modifiers, highest precedence first (the compiler sorted them).
pub fn apply_modifiers(value: String, modifiers: &[Modifier]) -> String {
    let mut v = value;
    for m in modifiers {
        v = match m {
            Modifier::Lower => v.to_lowercase(),
            Modifier::Upper => v.to_uppercase(),
            Modifier::LowerFirst => first_char(&v, |c| c.to_lowercase().collect()),
            Modifier::UpperFirst => first_char(&v, |c| c.to_uppercase().collect()),
            Modifier::QuoteWildcard => quote(&v, |c| matches!(c, '*' | '?' | '\\')),
            Modifier::QuoteRegex => quote(&v, |c| "\\^$.[]|()?*+{}".contains(c)),
            Modifier::Length => v.chars().count().to_string(),
        };
    }
    v
}

fn first_char(s: &str, f: impl Fn(char) -> String) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => f(c) + chars.as_str(),
        None => String::new(),
    }
}

fn quote(s: &str, special: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let look = |r: Ref<'_>| match r {
            Ref::Match(1) => "one".to_string(),
            Ref::Named("a") => "A".to_string(),
            _ => String::new(),
        };
        assert_eq!(expand("x${a}y${1}${01}${2}", 100, look), "xAyoneone");
        assert_eq!(expand("${", 100, look), "${");
        assert_eq!(expand("${a b}${a}", 100, look), "${a b}A");
        assert_eq!(expand("$${a}}", 100, look), "$A}");
        assert_eq!(expand("${a}${a}${a}", 2, look), "AA");
    }

    #[test]
    fn encoded() {
        assert_eq!(decode_encoded_characters("${hex: 40 41}x").unwrap(), "@Ax");
        assert_eq!(
            decode_encoded_characters("${UNICODE:1F600 20}").unwrap(),
            "\u{1F600} "
        );
        assert_eq!(
            decode_encoded_characters("${hex:zz}${hex:4}").unwrap(),
            "${hex:zz}\u{4}"
        );
        assert!(decode_encoded_characters("${unicode:D800}").is_err());
        assert!(decode_encoded_characters("${hex:ff}").is_err());
    }

    #[test]
    fn modifiers() {
        use Modifier::*;
        assert_eq!(
            apply_modifiers("juMBlEd lETters".into(), &[Lower, UpperFirst]),
            "Jumbled letters"
        );
        assert_eq!(
            apply_modifiers("a*b?".into(), &[QuoteWildcard, Length]),
            "6"
        );
        assert_eq!(apply_modifiers("a.b".into(), &[QuoteRegex]), "a\\.b");
    }
}
