//! Mailbox names: from the wire to the store and back, their validation,
//! and LIST pattern matching.
//!
//! RFC 9051 §5.1: names are UTF-8 for IMAP4rev2 clients (and for rev1
//! clients that sent `ENABLE UTF8=ACCEPT`, RFC 6855 §3); other rev1
//! clients use modified UTF-7 (RFC 3501 §5.1.3, see
//! [`mailgate_imap_proto::mutf7`]). Inside the server names are always
//! UTF-8 with `/` as the hierarchy separator.
//!
//! Names go to the store only as keys of the account's own rows; they
//! never become paths. Validation still refuses what no sane name holds
//! (control characters, wildcards, empty or dot-only levels), so a name
//! cannot confuse a later backend that maps names to files.

use mailgate_imap_proto::mutf7;

/// The hierarchy separator.
pub const SEPARATOR: char = '/';

/// Longest name accepted, in bytes.
pub const MAX_NAME: usize = 512;

/// Deepest hierarchy accepted.
pub const MAX_LEVELS: usize = 16;

/// Decodes a mailbox name as sent. `utf8`: the client speaks UTF-8 names.
/// INBOX in any case becomes `INBOX`, also as the first level.
pub fn decode(raw: &[u8], utf8: bool) -> Result<String, String> {
    let name = if utf8 {
        String::from_utf8(raw.to_vec()).map_err(|_| "mailbox name is not valid UTF-8")?
    } else {
        mutf7::decode(raw).ok_or("mailbox name is not valid modified UTF-7")?
    };
    if name.chars().any(|c| c.is_control()) {
        return Err("mailbox name contains control characters".into());
    }
    Ok(normalize_inbox(&name))
}

/// `INBOX` in any case, alone or as the first level, is `INBOX`.
pub fn normalize_inbox(name: &str) -> String {
    match name.split_once(SEPARATOR) {
        Some((first, rest)) if first.eq_ignore_ascii_case("INBOX") => format!("INBOX/{rest}"),
        None if name.eq_ignore_ascii_case("INBOX") => "INBOX".into(),
        _ => name.to_string(),
    }
}

/// Encodes a name for the wire.
pub fn encode(name: &str, utf8: bool) -> Vec<u8> {
    if utf8 {
        name.as_bytes().to_vec()
    } else {
        mutf7::encode(name).into_bytes()
    }
}

/// Checks a name a mailbox is about to get (CREATE, RENAME target).
pub fn validate_new(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("mailbox name is empty or too long".into());
    }
    if name.contains(['%', '*']) {
        return Err("mailbox names cannot contain % or *".into());
    }
    let levels: Vec<&str> = name.split(SEPARATOR).collect();
    if levels.len() > MAX_LEVELS {
        return Err("mailbox hierarchy too deep".into());
    }
    if levels
        .iter()
        .any(|l| l.is_empty() || *l == "." || *l == ".." || l.trim().is_empty())
    {
        return Err("mailbox name has an empty or dot-only level".into());
    }
    Ok(())
}

/// Whether `name` matches a LIST pattern (RFC 9051 §6.3.9: `*` matches
/// anything, `%` anything but the separator). Quadratic at worst (no
/// backtracking blow-up on hostile patterns).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // reach[j]: pattern prefix so far can match name prefix of length j.
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut on = false;
                for j in 0..=n.len() {
                    if reach[j] {
                        on = true;
                    }
                    next[j] = on;
                    if pc == '%' && j < n.len() && n[j] == SEPARATOR {
                        on = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if reach[j] && n[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
        if !reach.iter().any(|&r| r) {
            return false;
        }
    }
    reach[n.len()]
}

/// The pattern of LIST `reference pattern` (RFC 9051 §6.3.9: the
/// reference is prefixed), with a leading INBOX level normalised so that
/// `inbox*` finds `INBOX`.
pub fn full_pattern(reference: &str, pattern: &str) -> String {
    let full = format!("{reference}{pattern}");
    let upper = full.to_ascii_uppercase();
    if upper.starts_with("INBOX")
        && (full.len() == 5 || !full[5..].starts_with(|c: char| c.is_alphanumeric()))
    {
        format!("INBOX{}", &full[5..])
    } else {
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "a"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a*c", "a/b/c"));
        assert!(!matches("a%c", "a/b/c"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        let hostile = "*%".repeat(200) + "x";
        assert!(!matches(&hostile, &"a".repeat(500)));
        assert_eq!(full_pattern("", "inbox"), "INBOX");
        assert_eq!(full_pattern("", "inbox*"), "INBOX*");
        assert_eq!(full_pattern("", "inboxes"), "inboxes");
        assert_eq!(full_pattern("Work/", "%"), "Work/%");
    }

    #[test]
    fn validation() {
        for bad in [
            "", "a//b", "/a", "a/", "..", "a/../b", "a/./b", "x*", "y%", " ",
        ] {
            assert!(validate_new(bad).is_err(), "{bad:?}");
        }
        assert!(validate_new("Projects/2024 Q1/Caf\u{e9}").is_ok());
        assert!(decode(b"a\x00b", true).is_err());
        assert!(decode(b"\xff", true).is_err());
        assert!(decode("caf\u{e9}".as_bytes(), false).is_err());
        assert_eq!(decode(b"inbox/Sub", false).unwrap(), "INBOX/Sub");
        assert_eq!(decode(b"Caf&AOk-", false).unwrap(), "Caf\u{e9}");
    }
}
