//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463,
//! RFC 2034).
//!
//! ```text
//! Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
//!                  Reply-code [ SP textstring ] CRLF
//! Reply-code     = %x32-35 %x30-35 %x30-39
//! ```
//!
//! RFC 2034 §4: when an enhanced code is used it is repeated on every
//! line of a multi-line reply, and it is left off the greeting and the
//! replies to HELO/EHLO.

use std::fmt;

/// An enhanced mail system status code, `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent).
    pub class: u8,
    /// The subject (0..=999).
    pub subject: u16,
    /// The detail (0..=999).
    pub detail: u16,
}

impl EnhancedCode {
    /// A code from its three parts.
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply: a three-digit code, an optional enhanced code and one
/// or more text lines.
///
/// Invariant: `lines` is never empty and no line holds CR or LF (the
/// constructors replace them with spaces), so a reply always serialises
/// to well-formed reply lines whatever text a caller puts in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

fn sanitize(text: impl Into<String>) -> String {
    let text = text.into();
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ")
    } else {
        text
    }
}

impl Reply {
    /// A one-line reply. `code` should be 200..=599; other values are
    /// clamped into that range so the output stays three digits.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Reply {
        Reply {
            code: code.clamp(200, 599),
            enhanced,
            lines: vec![sanitize(text)],
        }
    }

    /// A one-line reply with an enhanced status code.
    pub fn with_code(
        code: u16,
        class: u8,
        subject: u16,
        detail: u16,
        text: impl Into<String>,
    ) -> Reply {
        Reply::new(code, Some(EnhancedCode::new(class, subject, detail)), text)
    }

    /// Adds a line at the end (for multi-line replies).
    pub fn push_line(&mut self, text: impl Into<String>) {
        self.lines.push(sanitize(text));
    }

    /// The reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text lines (never empty).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Whether this is a 4xx or 5xx reply.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the wire form (`250-a\r\n250 b\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let mut s = format!("{}{}", self.code, sep);
            if let Some(e) = self.enhanced {
                s.push_str(&e.to_string());
                if !line.is_empty() {
                    s.push(' ');
                }
            }
            s.push_str(line);
            s.push_str("\r\n");
            out.extend_from_slice(s.as_bytes());
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// The EHLO reply (RFC 5321 §4.1.1.1): the first line names the
    /// server, one capability keyword (with its parameters) per further
    /// line. No enhanced code (RFC 2034 §4).
    ///
    /// ```text
    /// ehlo-ok-rsp = ( "250" SP Domain [ SP ehlo-greet ] CRLF )
    ///             / ( "250-" Domain [ SP ehlo-greet ] CRLF
    ///                *( "250-" ehlo-line CRLF )
    ///                "250" SP ehlo-line CRLF )
    /// ```
    pub fn ehlo<I, S>(greeting: impl Into<String>, capabilities: I) -> Reply
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut reply = Reply::new(250, None, greeting);
        for cap in capabilities {
            reply.push_line(cap);
        }
        reply
    }

    /// `220 <host> ESMTP mailgate`: the greeting (RFC 5321 §4.2, §3.1).
    pub fn greeting(host: &str) -> Reply {
        Reply::new(220, None, format!("{host} ESMTP mailgate"))
    }

    /// `250 2.0.0 Ok`.
    pub fn ok() -> Reply {
        Reply::with_code(250, 2, 0, 0, "Ok")
    }

    /// `221 2.0.0 <host> closing connection` (reply to QUIT).
    pub fn closing(host: &str) -> Reply {
        Reply::with_code(221, 2, 0, 0, format!("{host} closing connection"))
    }

    /// `354 End data with <CR><LF>.<CR><LF>`.
    pub fn start_data() -> Reply {
        Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
    }

    /// `503 5.5.1 Bad sequence of commands`.
    pub fn bad_sequence() -> Reply {
        Reply::with_code(503, 5, 5, 1, "Bad sequence of commands")
    }

    /// `502 5.5.1 Command not implemented`.
    pub fn not_implemented() -> Reply {
        Reply::with_code(502, 5, 5, 1, "Command not implemented")
    }

    /// `500 5.5.2 Line too long` (command line over the limit).
    pub fn line_too_long() -> Reply {
        Reply::with_code(500, 5, 5, 2, "Line too long")
    }

    /// `421 4.3.2 Service shutting down`.
    pub fn shutting_down(host: &str) -> Reply {
        Reply::with_code(
            421,
            4,
            3,
            2,
            format!("{host} Service shutting down, closing connection"),
        )
    }

    /// `421 4.4.2 Idle timeout`.
    pub fn idle_timeout(host: &str) -> Reply {
        Reply::with_code(
            421,
            4,
            4,
            2,
            format!("{host} Error: timeout exceeded, closing connection"),
        )
    }

    /// `421 4.7.0 Too many errors`.
    pub fn too_many_errors(host: &str) -> Reply {
        Reply::with_code(
            421,
            4,
            7,
            0,
            format!("{host} Error: too many errors, closing connection"),
        )
    }

    /// `451 4.3.0 Local error in processing` (details go to the log only).
    pub fn local_error() -> Reply {
        Reply::with_code(451, 4, 3, 0, "Local error in processing, try again later")
    }

    /// `552 5.3.4 Message size exceeds fixed maximum message size`.
    pub fn message_too_large() -> Reply {
        Reply::with_code(
            552,
            5,
            3,
            4,
            "Message size exceeds fixed maximum message size",
        )
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        assert_eq!(Reply::ok().to_bytes(), b"250 2.0.0 Ok\r\n");
    }

    #[test]
    fn multi_line_repeats_enhanced_code() {
        let mut r = Reply::with_code(214, 2, 0, 0, "first");
        r.push_line("last");
        assert_eq!(r.to_bytes(), b"214-2.0.0 first\r\n214 2.0.0 last\r\n");
    }

    #[test]
    fn ehlo_reply_has_no_enhanced_code() {
        let r = Reply::ehlo("mx.example.org", ["PIPELINING", "SIZE 10"]);
        assert_eq!(
            r.to_bytes(),
            b"250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(250, None, "a\r\n250 b");
        assert_eq!(r.to_bytes(), b"250 a  250 b\r\n");
        assert_eq!(Reply::new(7, None, "x").code(), 200);
    }
}
