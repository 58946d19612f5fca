//! Addresses in headers and the envelope, and their parts
//! (RFC 5228 section 2.7.4, RFC 5233 for `:user` and `:detail`).

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};

use crate::ast::AddressPart;

/// The addr-specs in a header value (groups flattened), in order. A
/// name without an address (`undisclosed-recipients:;`) gives nothing.
pub fn parse_header_addresses(raw_value: &str) -> Vec<String> {
    let mut buf = raw_value.trim_end_matches(['\r', '\n']).to_string();
    buf.push_str("\r\n");
    let mut out = Vec::new();
    if let HeaderValue::Address(addr) = MessageStream::new(buf.as_bytes()).parse_address() {
        match addr {
            Address::List(list) => out.extend(
                list.iter()
                    .filter_map(|a| a.address.as_deref().map(str::to_string)),
            ),
            Address::Group(groups) => {
                for g in groups {
                    out.extend(
                        g.addresses
                            .iter()
                            .filter_map(|a| a.address.as_deref().map(str::to_string)),
                    );
                }
            }
        }
    }
    out
}

/// The part of `addr` a test compares, or `None` when the address has no
/// such part (`:detail` without a separator).
pub fn part(addr: &str, part: AddressPart, separator: char) -> Option<String> {
    let (local, domain) = match addr.rfind('@') {
        Some(i) => (&addr[..i], &addr[i + 1..]),
        None => (addr, ""),
    };
    match part {
        AddressPart::All => Some(addr.to_string()),
        AddressPart::LocalPart => Some(local.to_string()),
        AddressPart::Domain => Some(domain.to_string()),
        AddressPart::User => Some(local.split(separator).next().unwrap_or(local).to_string()),
        AddressPart::Detail => local.split_once(separator).map(|(_, d)| d.to_string()),
    }
}

/// Whether `addr` is a plain `local@domain` that a redirect may go to:
/// no spaces, control characters, brackets or commas; both halves given.
pub fn valid_redirect(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && addr.len() <= 320
        && addr
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"<>,;()[]\\\"".contains(c))
        && !domain.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_addresses() {
        assert_eq!(
            parse_header_addresses("\"Doe, J\" <j.doe@example.org>, bob@example.net"),
            vec!["j.doe@example.org", "bob@example.net"]
        );
        assert_eq!(
            parse_header_addresses("team: a@x.org, b@y.org;"),
            vec!["a@x.org", "b@y.org"]
        );
        assert!(parse_header_addresses("undisclosed-recipients:;").is_empty());
    }

    #[test]
    fn parts() {
        let a = "ken+sieve@example.org";
        assert_eq!(part(a, AddressPart::LocalPart, '+').unwrap(), "ken+sieve");
        assert_eq!(part(a, AddressPart::Domain, '+').unwrap(), "example.org");
        assert_eq!(part(a, AddressPart::User, '+').unwrap(), "ken");
        assert_eq!(part(a, AddressPart::Detail, '+').unwrap(), "sieve");
        assert_eq!(part("ken@x", AddressPart::Detail, '+'), None);
        assert_eq!(part("ken+@x", AddressPart::Detail, '+').unwrap(), "");
    }

    #[test]
    fn redirect_addresses() {
        assert!(valid_redirect("a@example.org"));
        assert!(!valid_redirect("a@"));
        assert!(!valid_redirect("a b@example.org"));
        assert!(!valid_redirect("a@example.org\r\nRCPT TO:<x@y>"));
        assert!(!valid_redirect("<a@example.org>"));
    }
}
