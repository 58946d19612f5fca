//! What a script looks at — the message, its envelope — and what it asks
//! the host: the time, other scripts, folders, the duplicate record.

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// The message being delivered.
pub trait Message {
    /// Every header field in order: the name as written and the value as
    /// in the message (folded or not; RFC 2047 words not yet decoded).
    fn headers(&self) -> Vec<(String, String)>;
    /// The size in octets (`size` test).
    fn size(&self) -> u64;
    /// The body after the header, undecoded (`body :raw`).
    fn raw_body(&self) -> String;
    /// The leaf MIME parts with their content type (lowercase `type/subtype`)
    /// and decoded text; a non-text part has empty text.
    fn body_parts(&self) -> Vec<BodyPart>;
}

/// One leaf MIME part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    /// `type/subtype`, lowercase.
    pub content_type: String,
    /// The decoded text (HTML turned into text); empty for binary parts.
    pub text: String,
}

/// The SMTP envelope of this delivery (RFC 5228 section 5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `MAIL FROM`, empty for the null sender `<>`.
    pub from: String,
    /// The `RCPT TO` that caused this delivery.
    pub to: String,
}

/// Where an included script lives (RFC 6609 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// `:personal` (the default): the user's own scripts.
    Personal,
    /// `:global`: scripts the administrator provides.
    Global,
}

/// A `duplicate` test's question (RFC 7352).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateCheck {
    /// `:handle`, empty when not given.
    pub handle: String,
    /// The identifying value (Message-ID by default).
    pub id: String,
    /// The period in seconds.
    pub period: u64,
    /// `:last`: the period counts from the last time seen, not the first.
    pub last: bool,
}

/// What the host answers while a script runs. Every method has a default
/// that suits a host without that feature.
pub trait Environment {
    /// Now, as seconds since 1970 UTC, and the local zone in minutes east
    /// of UTC (`currentdate`, and `date` without `:zone`).
    fn now(&self) -> (i64, i32) {
        (0, 0)
    }
    /// The source of an included script, or `None` when it does not exist.
    fn script(&self, _location: Location, _name: &str) -> Option<String> {
        None
    }
    /// Whether the user's folder exists (`mailboxexists`).
    fn mailbox_exists(&self, _name: &str) -> bool {
        false
    }
    /// Whether this id was seen within the period (`duplicate`). The host
    /// records it only after the run succeeds, from
    /// [`Outcome::duplicates`](crate::Outcome::duplicates).
    fn seen_before(&self, _check: &DuplicateCheck) -> bool {
        false
    }
}

/// A host that answers with the defaults (tests, `sieve check`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnvironment;

impl Environment for NoEnvironment {}

/// A message held in memory as its raw bytes.
#[derive(Debug, Clone)]
pub struct MessageData {
    raw: Vec<u8>,
}

impl MessageData {
    /// Wraps the raw message (CRLF or LF line ends).
    pub fn new(raw: impl Into<Vec<u8>>) -> Self {
        MessageData { raw: raw.into() }
    }

    /// Where the body starts: after the first empty line.
    fn body_start(&self) -> usize {
        let r = &self.raw;
        let mut i = 0;
        let mut line_start = true;
        while i < r.len() {
            if line_start {
                if r[i..].starts_with(b"\r\n") {
                    return i + 2;
                }
                if r[i] == b'\n' {
                    return i + 1;
                }
            }
            line_start = r[i] == b'\n';
            i += 1;
        }
        r.len()
    }
}

impl Message for MessageData {
    fn headers(&self) -> Vec<(String, String)> {
        let head = String::from_utf8_lossy(&self.raw[..self.body_start()]);
        let mut out: Vec<(String, String)> = Vec::new();
        for line in head.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = out.last_mut() {
                    v.push_str("\r\n");
                    v.push_str(line);
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim_end();
                if crate::editheader::valid_field_name(name) {
                    out.push((name.to_string(), value.to_string()));
                }
            }
        }
        out
    }

    fn size(&self) -> u64 {
        self.raw.len() as u64
    }

    fn raw_body(&self) -> String {
        String::from_utf8_lossy(&self.raw[self.body_start()..]).into_owned()
    }

    fn body_parts(&self) -> Vec<BodyPart> {
        let Some(msg) = MessageParser::default().parse(&self.raw) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for part in &msg.parts {
            let content_type = part
                .content_type()
                .map(|ct| {
                    format!("{}/{}", ct.c_type, ct.c_subtype.as_deref().unwrap_or(""))
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|| "text/plain".into());
            let text = match &part.body {
                PartType::Text(t) => t.to_string(),
                PartType::Html(h) => mail_parser::decoders::html::html_to_text(h),
                PartType::Multipart(_) | PartType::Message(_) => continue,
                PartType::Binary(_) | PartType::InlineBinary(_) => String::new(),
            };
            out.push(BodyPart { content_type, text });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_body() {
        let m = MessageData::new("Subject: a\r\n b\r\nX-A: 1\r\nbroken line\r\n\r\nbody\r\n");
        assert_eq!(
            m.headers(),
            vec![
                ("Subject".to_string(), " a\r\n b".to_string()),
                ("X-A".to_string(), " 1".to_string())
            ]
        );
        assert_eq!(m.raw_body(), "body\r\n");
        let parts = m.body_parts();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].text.trim_end(), "body");
        let lf = MessageData::new("A: b\n\nx\n");
        assert_eq!(lf.raw_body(), "x\n");
    }
}
