//! Header names and the rules of `addheader`/`deleteheader` (RFC 5293).

/// RFC 5322 field name: printable ASCII except `:`, at least one.
pub fn valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 997
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Headers a script may neither add nor delete (RFC 5293 section 7):
/// the trace and loop-prevention headers other systems rely on.
pub fn protected(name: &str) -> bool {
    name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("auto-submitted")
}

/// An added value as one line: line breaks and other control characters
/// become spaces (the host folds long lines when it writes the header).
pub fn clean_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert!(valid_field_name("X-Sieve"));
        assert!(!valid_field_name("X Sieve"));
        assert!(!valid_field_name("X:"));
        assert!(!valid_field_name(""));
        assert!(protected("RECEIVED"));
        assert_eq!(clean_value("a\r\nb"), "a  b");
    }
}
