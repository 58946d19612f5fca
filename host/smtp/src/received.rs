//! The `Received:` trace header (RFC 5321 §4.4) and queue ids.
//!
//! ```text
//! Time-stamp-line  = "Received:" FWS Stamp <CRLF>
//! Stamp          = From-domain By-domain Opt-info [CFWS] ";"
//!                  FWS date-time
//! From-domain    = "FROM" FWS Extended-Domain
//! By-domain      = CFWS "BY" FWS Extended-Domain
//! Extended-Domain  = Domain /
//!                  ( Domain FWS "(" TCP-info ")" ) /
//!                  ( address-literal FWS "(" TCP-info ")" )
//! TCP-info       = address-literal / ( Domain FWS address-literal )
//! Opt-info       = [Via] [With] [ID] [For]
//!                  [Additional-Registered-Clauses]
//! With           = CFWS "WITH" FWS Protocol
//! ID             = CFWS "ID" FWS ( Atom / msg-id )
//! For            = CFWS "FOR" FWS ( Path / Mailbox )
//! ```

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `with` protocol name (RFC 3848, RFC 6531 §3.7.3).
pub fn with_protocol(extended: bool, utf8: bool, tls: bool, authenticated: bool) -> &'static str {
    match (extended, utf8, tls, authenticated) {
        (false, ..) => "SMTP",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, true, true) => "UTF8SMTPSA",
        (true, false, false, false) => "ESMTP",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, false) => "ESMTPS",
        (true, false, true, true) => "ESMTPSA",
    }
}

/// The address literal for a peer address (`[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`); IPv4-mapped IPv6 shows as IPv4.
pub fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// What goes into one `Received:` line.
pub struct Stamp<'a> {
    /// The EHLO/HELO name the client gave.
    pub helo: &'a str,
    /// The client's address.
    pub peer: IpAddr,
    /// The client's forward-confirmed name (`crate::reverse`), if any.
    pub reverse_name: Option<&'a str>,
    /// Our host name.
    pub hostname: &'a str,
    /// From [`with_protocol`].
    pub protocol: &'a str,
    /// The queue id.
    pub id: &'a str,
    /// The recipient, named only when there is exactly one (naming
    /// several would disclose Bcc recipients to each other).
    pub for_recipient: Option<&'a str>,
    /// RFC 5322 date-time.
    pub date: String,
}

impl Stamp<'_> {
    /// The header line, folded, ending in CRLF. TCP-info names the
    /// client by its forward-confirmed name, or `unknown` without one
    /// (as Postfix writes).
    pub fn header(&self) -> String {
        let mut h = format!(
            "Received: from {} ({} {})\r\n\tby {} (mailgate) with {} id {}",
            self.helo,
            self.reverse_name.unwrap_or("unknown"),
            address_literal(self.peer),
            self.hostname,
            self.protocol,
            self.id
        );
        if let Some(rcpt) = self.for_recipient {
            h.push_str(&format!("\r\n\tfor <{rcpt}>"));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", self.date));
        h
    }
}

/// The current date-time in RFC 5322 form.
pub fn now_rfc5322() -> String {
    chrono::Utc::now().to_rfc2822()
}

/// A new queue id, unique within this host: microseconds since the epoch
/// and a process-wide counter, in upper-case hex (an RFC 5321 Atom).
pub fn new_queue_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = chrono::Utc::now().timestamp_micros().max(0) as u64;
    format!("{micros:014X}{:04X}", n & 0xFFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmed_name_replaces_unknown() {
        let stamp = Stamp {
            helo: "client.example",
            peer: "192.0.2.1".parse().unwrap(),
            reverse_name: Some("mail.example.net"),
            hostname: "mx.example.org",
            protocol: "ESMTP",
            id: "ABC",
            for_recipient: None,
            date: "Sat, 29 Nov 2025 10:00:00 +0000".into(),
        };
        assert!(stamp
            .header()
            .starts_with("Received: from client.example (mail.example.net [192.0.2.1])\r\n"));
    }

    #[test]
    fn header_form() {
        let stamp = Stamp {
            helo: "client.example",
            peer: "192.0.2.1".parse().unwrap(),
            reverse_name: None,
            hostname: "mx.example.org",
            protocol: with_protocol(true, false, false, false),
            id: "ABC",
            for_recipient: Some("alice@example.org"),
            date: "Sat, 29 Nov 2025 10:00:00 +0000".into(),
        };
        assert_eq!(
            stamp.header(),
            "Received: from client.example (unknown [192.0.2.1])\r\n\tby mx.example.org (mailgate) with ESMTP id ABC\r\n\tfor <alice@example.org>;\r\n\tSat, 29 Nov 2025 10:00:00 +0000\r\n"
        );
    }

    #[test]
    fn protocols_and_literals() {
        assert_eq!(with_protocol(false, true, true, true), "SMTP");
        assert_eq!(with_protocol(true, true, false, false), "UTF8SMTP");
        assert_eq!(with_protocol(true, false, true, true), "ESMTPSA");
        assert_eq!(
            address_literal("::ffff:10.0.0.1".parse().unwrap()),
            "[10.0.0.1]"
        );
        assert_eq!(
            address_literal("2001:db8::1".parse().unwrap()),
            "[IPv6:2001:db8::1]"
        );
        assert_ne!(new_queue_id(), new_queue_id());
    }
}
