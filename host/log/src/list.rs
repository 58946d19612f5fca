//! Several values in one log field: `rcpts=bob@b.test, carol@c.test`
//! instead of Rust's debug form (`["bob@b.test", "carol@c.test"]`).

/// At most this many items of a list are written in one field; the rest
/// are counted (`…(+N more)`). Each value is then escaped and the whole
/// field cut to [`crate::format::MAX_VALUE`] bytes like any other.
pub const MAX_ITEMS: usize = 10;

/// `items` comma-separated, at most [`MAX_ITEMS`] of them, for one log
/// field (log it with `%`: the formatter escapes and bounds it); `-` for
/// none.
pub fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        if i >= MAX_ITEMS {
            more += 1;
            continue;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
    if more > 0 {
        out.push_str(&format!(", …(+{more} more)"));
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_plain_and_bounded() {
        assert_eq!(list([]), "-");
        assert_eq!(list(["a@b.test"]), "a@b.test");
        assert_eq!(list(["a@b.test", "c@d.test"]), "a@b.test, c@d.test");
        let many: Vec<String> = (0..25).map(|i| format!("u{i}@b.test")).collect();
        let text = list(many.iter().map(String::as_str));
        assert!(text.starts_with("u0@b.test, u1@b.test"));
        assert!(text.contains("u9@b.test") && !text.contains("u10@"));
        assert!(text.ends_with(", …(+15 more)"), "{text}");
    }
}
