//! The server's EHLO reply as a set of capabilities (RFC 5321 §4.1.1.1).
//!
//! ```text
//! ehlo-line   = ehlo-keyword *( SP ehlo-param )
//! ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//! ```

use super::reply::ServerReply;

/// What the next hop said it supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3461.
    pub dsn: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// RFC 1870: `Some(0)` means SIZE without a limit, `None` no SIZE.
    pub size: Option<u64>,
    /// RFC 4954: the SASL mechanisms offered, upper-case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the lines after the first (which names the server).
    pub fn from_reply(reply: &ServerReply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "AUTH" => caps
                    .auth
                    .extend(words.map(|m| m.to_ascii_uppercase()).take(32)),
                _ => {}
            }
        }
        caps
    }

    /// Whether a message of `size` bytes is over the advertised limit.
    pub fn too_large(&self, size: u64) -> bool {
        matches!(self.size, Some(limit) if limit > 0 && size > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keywords_case_insensitively() {
        let reply = ServerReply {
            code: 250,
            lines: [
                "mx.b.test greets you",
                "pipelining",
                "SIZE 1000",
                "8BITMIME",
                "STARTTLS",
                "AUTH PLAIN login",
                "X-UNKNOWN 1",
            ]
            .map(String::from)
            .to_vec(),
        };
        let c = Capabilities::from_reply(&reply);
        assert!(c.pipelining && c.starttls && c.eight_bit_mime && !c.smtputf8);
        assert_eq!(c.size, Some(1000));
        assert!(c.too_large(1001) && !c.too_large(1000));
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN"]);
        let bare = Capabilities::from_reply(&ServerReply {
            code: 250,
            lines: vec!["x".into(), "SIZE".into()],
        });
        assert_eq!(bare.size, Some(0));
        assert!(!bare.too_large(u64::MAX));
    }
}
