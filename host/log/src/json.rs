//! `[log] format = "json"`: one JSON object per line.
//!
//! ```json
//! {"timestamp":"…","level":"INFO","target":"mailgate_smtp::session",
//!  "fields":{"message":"…","size":1234},
//!  "spans":[{"name":"session","session":"…","client":"192.0.2.1"}]}
//! ```
//!
//! The fields are those of the text format, and so are their bounds:
//! each value is written through [`crate::escape::Bounded`] (cut to
//! [`crate::format::MAX_VALUE`], the message and `error` fields to
//! [`crate::format::MAX_MESSAGE`],
//! then `…(+N bytes)`), so a client cannot make a line huge. JSON is
//! written by `serde_json`, which escapes quotes and control characters;
//! the text format's `\xNN` escapes are kept as they are so that a value
//! reads the same in both formats.
//!
//! `tracing-subscriber`'s own `Json` formatter is not used because it
//! writes event fields unbounded.

use std::fmt::{self, Write};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::escape::Bounded;
use crate::format::bound_of;
#[cfg(test)]
use crate::format::{MAX_MESSAGE, MAX_VALUE};

/// The field formatter of the JSON log: a span's fields as one JSON
/// object (kept with the span, and copied into each event's `spans`).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

/// The event formatter of the JSON log.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonEvents;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = JsonVisitor::default();
        fields.record(&mut v);
        writer.write_str(&Value::Object(v.map).to_string())
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut v = JsonVisitor {
            map: serde_json::from_str(&current.fields).unwrap_or_default(),
        };
        fields.record(&mut v);
        current.fields = Value::Object(v.map).to_string();
        Ok(())
    }
}

impl<S, N> FormatEvent<S, N> for JsonEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), timestamp.into());
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        line.insert("fields".into(), Value::Object(fields.map));
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                let mut object = Map::new();
                object.insert("name".into(), span.name().into());
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>() {
                    // Written by JsonFields: a JSON object.
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&f.fields) {
                        object.extend(m);
                    }
                }
                spans.push(Value::Object(object));
            }
            if !spans.is_empty() {
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects fields into a JSON object, each value bounded like the text
/// format's.
#[derive(Default)]
struct JsonVisitor {
    map: Map<String, Value>,
}

impl JsonVisitor {
    fn text(&mut self, field: &Field, render: impl FnOnce(&mut Bounded<'_>) -> fmt::Result) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        let mut s = String::new();
        let mut b = Bounded::new(&mut s, bound_of(name));
        let _ = render(&mut b);
        b.finish();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.map.insert(name.to_string(), Value::String(s));
    }

    fn value(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.map.insert(name.to_string(), value);
    }
}

impl Visit for JsonVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, |b| b.write_str(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, |b| {
            write!(b, "{value}")?;
            let mut next = value.source();
            while let Some(e) = next {
                write!(b, ": {e}")?;
                next = e.source();
            }
            Ok(())
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, |b| write!(b, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::capture;

    fn logged(f: impl FnOnce()) -> Vec<Value> {
        let subscriber = |sink: crate::testing::Sink| {
            tracing_subscriber::fmt()
                .fmt_fields(JsonFields)
                .event_format(JsonEvents)
                .with_writer(move || sink.clone())
                .finish()
        };
        capture(subscriber, f)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn fields_spans_and_types() {
        let lines = logged(|| {
            let span = tracing::info_span!("session", session = "s1", client = %"192.0.2.1");
            let _g = span.enter();
            let inner = tracing::info_span!("message", queue_id = tracing::field::Empty);
            inner.record("queue_id", "q42");
            let _g2 = inner.enter();
            tracing::info!(size = 1234u64, ok = true, user = ?"bob", "message accepted");
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["level"], "INFO");
        assert_eq!(l["target"], "mailgate_log::json::tests");
        assert_eq!(l["fields"]["message"], "message accepted");
        assert_eq!(l["fields"]["size"], 1234);
        assert_eq!(l["fields"]["ok"], true);
        assert_eq!(l["fields"]["user"], "\"bob\"");
        assert_eq!(l["spans"][0]["name"], "session");
        assert_eq!(l["spans"][0]["session"], "s1");
        assert_eq!(l["spans"][0]["client"], "192.0.2.1");
        assert_eq!(l["spans"][1]["queue_id"], "q42");
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn forged_lines_and_long_values_stay_one_bounded_line() {
        let evil = format!("x\r\n{{\"level\":\"ERROR\"}}\x1b[2J{}", "A".repeat(60_000));
        let lines = logged(|| tracing::warn!(user = %evil, error = %evil, "{}", evil));
        assert_eq!(lines.len(), 1);
        let f = &lines[0]["fields"];
        let user = f["user"].as_str().unwrap();
        assert!(user.starts_with("x\\x0d\\x0a{\"level\""), "{user}");
        assert!(user.len() < MAX_VALUE + 32, "{}", user.len());
        assert!(user.ends_with("bytes)"));
        assert!(f["error"].as_str().unwrap().len() < MAX_MESSAGE + 32);
        assert!(f["message"].as_str().unwrap().len() < MAX_MESSAGE + 32);
    }
}
