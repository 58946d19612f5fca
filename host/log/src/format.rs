//! [`SafeFields`]: the `FormatFields` of the mailgate log.
//!
//! It writes fields in the text format of `tracing-subscriber`'s
//! `DefaultFields` (`message name=value name="text"`, a `&str` value in
//! quotes, a `%`/`?` value as it renders, `r#` cut from raw names, the
//! `log.*` fields of the `log` bridge left out), with two differences:
//! every value and the message go through [`crate::escape`], and each is
//! cut to a bound. Both happen here, once, for every call site there is
//! or will be: a call site cannot write a raw control character.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

use crate::escape::Bounded;

/// Longest field value in a log line, in bytes after escaping (then
/// `…(+N bytes)`).
pub const MAX_VALUE: usize = 256;
/// Longest message, and longest `error` value (server errors carry
/// context, e.g. a plugin's trap), in bytes after escaping.
pub const MAX_MESSAGE: usize = 1024;

/// The log's field formatter: escapes and bounds every value.
#[derive(Debug, Default, Clone, Copy)]
pub struct SafeFields;

impl<'w> FormatFields<'w> for SafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = SafeVisitor {
            writer,
            first: true,
            result: Ok(()),
            scratch: String::new(),
        };
        fields.record(&mut v);
        v.result
    }
}

struct SafeVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
    /// One value, escaped and cut, before it goes to the writer.
    scratch: String,
}

/// The bound of a field's value.
pub(crate) fn bound_of(name: &str) -> usize {
    if name == "message" || name == "error" || name.ends_with("_error") {
        MAX_MESSAGE
    } else {
        MAX_VALUE
    }
}

impl SafeVisitor<'_> {
    /// Writes `name=` (or nothing, for the message) and then the value,
    /// which `render` writes into an escaping, bounded buffer.
    fn field(&mut self, field: &Field, render: impl FnOnce(&mut Bounded<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        self.scratch.clear();
        let mut b = Bounded::new(&mut self.scratch, bound_of(name));
        // A value whose Display fails is written as far as it got.
        let _ = render(&mut b);
        b.finish();
        let w = &mut self.writer;
        let mut r = if self.first {
            Ok(())
        } else {
            w.write_char(' ')
        };
        self.first = false;
        if r.is_ok() && name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            r = if w.has_ansi_escapes() {
                write!(w, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")
            } else {
                write!(w, "{name}=")
            };
        }
        self.result = r.and_then(|()| w.write_str(&self.scratch));
    }
}

impl Visit for SafeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |b| b.write_str(value));
        } else {
            self.field(field, |b| write!(b, "{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let name = field.name();
        self.field(field, |b| {
            write!(b, "{value}")?;
            if let Some(source) = value.source() {
                write!(b, " {name}.sources=[")?;
                let mut next = Some(source);
                let mut first = true;
                while let Some(e) = next {
                    if !first {
                        b.write_str(", ")?;
                    }
                    first = false;
                    write!(b, "{e}")?;
                    next = e.source();
                }
                b.write_str("]")?;
            }
            Ok(())
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |b| write!(b, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{capture, Sink};
    use std::io;

    fn logged(f: impl FnOnce()) -> String {
        let subscriber = |sink: Sink| {
            tracing_subscriber::fmt()
                .fmt_fields(SafeFields)
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .finish()
        };
        capture(subscriber, f)
    }

    #[test]
    fn keeps_the_default_format() {
        let user = "bob@example.test";
        let out = logged(
            || tracing::info!(client = %"127.0.0.1", user, n = 3, ok = true, r#type = "x", "imap login"),
        );
        assert_eq!(
            out,
            " INFO imap login client=127.0.0.1 user=\"bob@example.test\" n=3 ok=true type=\"x\"\n"
        );
    }

    #[test]
    fn forged_lines_are_escaped_everywhere() {
        let evil = "x\r\n2026-12-07T11:00:00Z  INFO imap login user=bob\x1b[2J";
        let out = logged(|| {
            tracing::warn!(user = %evil, quoted = evil, dbg = ?evil, "failed for {}", evil);
        });
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(!out.contains('\r') && !out.contains('\x1b'), "{out:?}");
        assert!(
            out.contains("user=x\\x0d\\x0a2026-12-07T11:00:00Z  INFO imap login user=bob\\x1b[2J"),
            "{out:?}"
        );
        assert!(out.contains("failed for x\\x0d\\x0a2026"), "{out:?}");
        // Debug-quoted values keep Rust's own escapes.
        assert!(out.contains("quoted=\"x\\r\\n2026"), "{out:?}");
    }

    #[test]
    fn values_are_bounded() {
        let long = "A".repeat(60_000);
        let out = logged(|| tracing::warn!(user = %long, error = %long, "{}", long));
        assert!(out.len() < 3000, "{} bytes", out.len());
        assert!(
            out.contains(&format!(
                "user={}…(+{} bytes)",
                "A".repeat(256),
                60_000 - 256
            )),
            "{out}"
        );
        assert!(out.contains(&format!(
            "error={}…(+{} bytes)",
            "A".repeat(1024),
            60_000 - 1024
        )));
    }

    #[test]
    fn errors_with_sources() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer\nline")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(io::Error::other("inner\x1b"));
        let out = logged(|| tracing::error!(error = &e as &dyn std::error::Error, "boom"));
        assert_eq!(
            out,
            "ERROR boom error=outer\\x0aline error.sources=[inner\\x1b]\n"
        );
    }
}
