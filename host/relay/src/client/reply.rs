//! Reading server replies (RFC 5321 §4.2), without I/O.
//!
//! ```text
//! Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
//!                  Reply-code [ SP textstring ] CRLF
//! Reply-code     = %x32-35 %x30-35 %x30-39
//! ```
//!
//! A reply is gathered line by line: [`ReplyParser::push_line`] takes one
//! line (CRLF removed) and says whether the reply is complete. Lines whose
//! code differs from the first line's, or that do not start with three
//! digits, make the reply malformed; the parser never panics and bounds the
//! number of lines it keeps.

use std::fmt;

/// Lines kept from one multi-line reply; more are dropped (an EHLO reply
/// has a dozen; a hostile server could send millions).
pub const MAX_REPLY_LINES: usize = 128;

/// A reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, after the code and separator.
    pub lines: Vec<String>,
}

impl ServerReply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3xx (e.g. `354` after DATA).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: do not repeat.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    /// The enhanced status code (RFC 3463) at the start of the first line,
    /// if there is one and its class matches the reply code's.
    pub fn enhanced(&self) -> Option<(u8, u16, u16)> {
        let first = self.lines.first()?;
        let word = first.split(' ').next()?;
        let mut parts = word.split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || u16::from(class) != self.code / 100 {
            return None;
        }
        Some((class, subject, detail))
    }
    /// A one-line summary for logs, the queue and DSNs: `550 5.1.1 text`.
    pub fn summary(&self) -> String {
        let text = self.lines.join(" ");
        let text: String = text.chars().filter(|c| !c.is_control()).take(500).collect();
        if text.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, text)
        }
    }
}

impl fmt::Display for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// A line that is not a reply line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply line: {0:?}")]
pub struct MalformedReply(pub String);

/// Gathers the lines of one reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// An empty parser.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Takes one line without its CRLF. `Ok(Some(reply))` once the last
    /// line arrived (the parser is then empty again), `Ok(None)` while more
    /// lines are due.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<ServerReply>, MalformedReply> {
        let text = String::from_utf8_lossy(line);
        let bytes = line;
        let code_ok = bytes.len() >= 3
            && (b'2'..=b'5').contains(&bytes[0])
            && bytes[1].is_ascii_digit()
            && bytes[2].is_ascii_digit();
        if !code_ok {
            return Err(MalformedReply(text.into_owned()));
        }
        let code = u16::from(bytes[0] - b'0') * 100
            + u16::from(bytes[1] - b'0') * 10
            + u16::from(bytes[2] - b'0');
        if self.code.is_some_and(|c| c != code) {
            return Err(MalformedReply(text.into_owned()));
        }
        self.code = Some(code);
        let (last, rest) = match bytes.get(3) {
            None => (true, ""),
            Some(b' ') => (true, text.get(4..).unwrap_or("")),
            Some(b'-') => (false, text.get(4..).unwrap_or("")),
            Some(_) => return Err(MalformedReply(text.into_owned())),
        };
        if self.lines.len() < MAX_REPLY_LINES {
            self.lines.push(rest.to_string());
        }
        if last {
            self.code = None;
            Ok(Some(ServerReply {
                code,
                lines: std::mem::take(&mut self.lines),
            }))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Option<ServerReply>, MalformedReply> {
        let mut p = ReplyParser::new();
        let mut last = Ok(None);
        for l in lines {
            last = p.push_line(l.as_bytes());
        }
        last
    }

    #[test]
    fn single_and_multi_line() {
        let r = parse(&["250 2.1.0 Ok"]).unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced(), Some((2, 1, 0)));
        let r = parse(&["250-mx.b.test", "250-PIPELINING", "250 SIZE 100"])
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, vec!["mx.b.test", "PIPELINING", "SIZE 100"]);
        assert_eq!(r.enhanced(), None);
        let r = parse(&["354"]).unwrap().unwrap();
        assert!(r.is_intermediate());
        assert_eq!(r.summary(), "354");
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse(&["hello"]).is_err());
        assert!(parse(&["25"]).is_err());
        assert!(parse(&["650 x"]).is_err());
        assert!(parse(&["250x"]).is_err());
        assert!(parse(&["250-a", "251 b"]).is_err());
    }

    #[test]
    fn enhanced_code_class_must_match() {
        let r = parse(&["550 4.1.1 odd"]).unwrap().unwrap();
        assert_eq!(r.enhanced(), None);
        let r = parse(&["451 4.3.0 later"]).unwrap().unwrap();
        assert!(r.is_transient());
        assert_eq!(r.summary(), "451 4.3.0 later");
    }

    #[test]
    fn never_panics_on_noise() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut p = ReplyParser::new();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            let line: Vec<u8> = (0..len)
                .map(|i| [b'2', b'5', b'0', b'-', b' ', 0xff, b'x'][(seed >> (i * 3)) as usize % 7])
                .collect();
            if p.push_line(&line).is_err() {
                p = ReplyParser::new();
            }
        }
    }
}
