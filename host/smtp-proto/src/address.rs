//! Paths, mailboxes and domains (RFC 5321 §4.1.2, §4.1.3), with the
//! SMTPUTF8 extensions of RFC 6531 §3.3.
//!
//! ```text
//! Reverse-path   = Path / "<>"
//! Forward-path   = Path
//! Path           = "<" [ A-d-l ":" ] Mailbox ">"
//! A-d-l          = At-domain *( "," At-domain )
//! At-domain      = "@" Domain
//! Domain         = sub-domain *("." sub-domain)
//! sub-domain     = Let-dig [Ldh-str]          ; RFC 6531: =/ U-label
//! Let-dig        = ALPHA / DIGIT
//! Ldh-str        = *( ALPHA / DIGIT / "-" ) Let-dig
//! address-literal  = "[" ( IPv4-address-literal /
//!                    IPv6-address-literal /
//!                    General-address-literal ) "]"
//! Mailbox        = Local-part "@" ( Domain / address-literal )
//! Local-part     = Dot-string / Quoted-string
//! Dot-string     = Atom *("."  Atom)
//! Atom           = 1*atext                    ; RFC 6531: atext =/ UTF8-non-ascii
//! Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
//! QcontentSMTP   = qtextSMTP / quoted-pairSMTP
//! quoted-pairSMTP  = %d92 %d32-126
//! qtextSMTP      = %d32-33 / %d35-91 / %d93-126 ; RFC 6531: =/ UTF8-non-ascii
//! IPv6-address-literal  = "IPv6:" IPv6-addr
//! General-address-literal  = Standardized-tag ":" 1*dcontent
//! Standardized-tag  = Ldh-str
//! dcontent       = %d33-90 / %d94-126
//! ```
//!
//! Source routes (`<@a,@b:user@c>`) are parsed and kept in
//! [`Path::route`], but they mean nothing to us (RFC 5321 §3.6.1 says to
//! ignore them): the mailbox is `user@c`. `%` and `!` are ordinary atext
//! characters of a local part; no percent-hack or bang-path routing is
//! ever inferred from them.
//!
//! All parsing works on `&str` (the caller already checked UTF-8); any
//! byte >= 0x80 is part of a UTF-8 sequence and counts as
//! `UTF8-non-ascii`. The parsers only slice at ASCII bytes, so they can
//! never split a character, and never index out of range.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The domain part of a mailbox, or an EHLO argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name as sent (case preserved; may hold U-labels).
    Domain(String),
    /// `[192.0.2.1]`
    Ipv4(Ipv4Addr),
    /// `[IPv6:2001:db8::1]`
    Ipv6(Ipv6Addr),
    /// `[tag:content]`, a General-address-literal.
    General {
        /// The standardized tag.
        tag: String,
        /// The content after the colon.
        content: String,
    },
}

impl Host {
    /// Whether the host is all ASCII (a U-label needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        match self {
            Host::Domain(d) => d.is_ascii(),
            _ => true,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "[{a}]"),
            Host::Ipv6(a) => write!(f, "[IPv6:{a}]"),
            Host::General { tag, content } => write!(f, "[{tag}:{content}]"),
        }
    }
}

/// `Local-part "@" ( Domain / address-literal )`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part exactly as sent: a Dot-string, or a Quoted-string
    /// with its quotes and backslashes (so that [`Mailbox`]'s `Display`
    /// gives back a valid address).
    pub local_part: String,
    /// The domain or address literal.
    pub host: Host,
}

impl Mailbox {
    /// Whether the address is all ASCII. If not, the transaction needs
    /// the SMTPUTF8 parameter (RFC 6531 §3.4).
    pub fn is_ascii(&self) -> bool {
        self.local_part.is_ascii() && self.host.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.host)
    }
}

/// `"<" [ A-d-l ":" ] Mailbox ">"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// The source route's domains (`a`, `b` in `<@a,@b:user@c>`), usually
    /// empty. Kept for logs only; never used for routing.
    pub route: Vec<String>,
    /// The mailbox.
    pub mailbox: Mailbox,
}

impl Path {
    /// Whether the path is all ASCII (route included).
    pub fn is_ascii(&self) -> bool {
        self.mailbox.is_ascii() && self.route.iter().all(|d| d.is_ascii())
    }
}

/// The argument of MAIL FROM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: the null sender of bounces and notifications.
    Null,
    /// A sender address.
    Path(Path),
}

impl ReversePath {
    /// Whether the path is all ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Path(p) => p.is_ascii(),
        }
    }

    /// The address (`""` for the null path), as stored in `Return-Path:`.
    pub fn address(&self) -> String {
        match self {
            ReversePath::Null => String::new(),
            ReversePath::Path(p) => p.mailbox.to_string(),
        }
    }
}

/// The argument of RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3): the
    /// postmaster of this server.
    Postmaster,
    /// A recipient address.
    Path(Path),
}

impl ForwardPath {
    /// Whether the path is all ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ForwardPath::Postmaster => true,
            ForwardPath::Path(p) => p.is_ascii(),
        }
    }
}

/// A byte cursor over a `&str`.
pub(crate) struct Cursor<'a> {
    pub(crate) s: &'a str,
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }
    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    /// What is left; `pos` always sits on a char boundary because it
    /// only moves over whole UTF-8 sequences or ASCII bytes.
    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }
    /// Advances while `pred` holds; returns the slice passed over.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !pred(b) {
                break;
            }
            self.pos += 1;
        }
        // Predicates accept either all bytes >= 0x80 or none, so the
        // stop position is a char boundary; `get` guards anyway.
        self.s.get(start..self.pos).unwrap_or("")
    }
}

/// RFC 5322 atext, plus UTF8-non-ascii (RFC 6531).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// How much the domain parser tolerates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// RFC 5321 Domain, for addresses.
    Address,
    /// Also `_` in labels: EHLO names from misconfigured Windows hosts
    /// are common and refusing them gains nothing.
    Ehlo,
}

/// Parses a Domain (see the module ABNF) at the cursor.
fn parse_domain(cur: &mut Cursor<'_>, strictness: Strictness) -> Result<String, &'static str> {
    let start = cur.pos;
    loop {
        let label = cur.take_while(|b| {
            b.is_ascii_alphanumeric()
                || b == b'-'
                || b >= 0x80
                || (b == b'_' && strictness == Strictness::Ehlo)
        });
        if label.is_empty() {
            return Err("empty domain label");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with '-'");
        }
        if label.is_ascii() && label.len() > 63 {
            return Err("domain label too long");
        }
        if !cur.eat(b'.') {
            break;
        }
    }
    let domain = &cur.s[start..cur.pos];
    if domain.len() > 255 {
        return Err("domain too long");
    }
    Ok(domain.to_string())
}

/// Parses `"[" ... "]"` at the cursor (which sits on the `[`).
fn parse_address_literal(cur: &mut Cursor<'_>) -> Result<Host, &'static str> {
    if !cur.eat(b'[') {
        return Err("expected '['");
    }
    let content = cur.take_while(|b| (33..=126).contains(&b) && !matches!(b, b'[' | b']' | b'\\'));
    if !cur.eat(b']') {
        return Err("unterminated address literal");
    }
    if content
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("IPv6:"))
    {
        return content[5..]
            .parse::<Ipv6Addr>()
            .map(Host::Ipv6)
            .map_err(|_| "invalid IPv6 address literal");
    }
    if content.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return content
            .parse::<Ipv4Addr>()
            .map(Host::Ipv4)
            .map_err(|_| "invalid IPv4 address literal");
    }
    let Some((tag, rest)) = content.split_once(':') else {
        return Err("invalid address literal");
    };
    let tag_ok = !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !tag.ends_with('-');
    if !tag_ok || rest.is_empty() {
        return Err("invalid general address literal");
    }
    Ok(Host::General {
        tag: tag.to_string(),
        content: rest.to_string(),
    })
}

/// Parses `Domain / address-literal`.
pub(crate) fn parse_host(
    cur: &mut Cursor<'_>,
    strictness: Strictness,
) -> Result<Host, &'static str> {
    if cur.peek() == Some(b'[') {
        parse_address_literal(cur)
    } else {
        parse_domain(cur, strictness).map(Host::Domain)
    }
}

/// Parses a whole EHLO/HELO argument: `Domain / address-literal`,
/// nothing after it.
pub fn parse_ehlo_host(s: &str) -> Option<Host> {
    let mut cur = Cursor::new(s);
    let host = parse_host(&mut cur, Strictness::Ehlo).ok()?;
    cur.rest().is_empty().then_some(host)
}

/// Parses a Local-part at the cursor; returns it as sent.
fn parse_local_part(cur: &mut Cursor<'_>) -> Result<String, &'static str> {
    let start = cur.pos;
    if cur.eat(b'"') {
        loop {
            match cur.peek() {
                None => return Err("unterminated quoted string"),
                Some(b'"') => {
                    cur.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    cur.pos += 1;
                    match cur.peek() {
                        Some(b) if (32..=126).contains(&b) => cur.pos += 1,
                        _ => return Err("invalid quoted pair"),
                    }
                }
                Some(b) if (32..=126).contains(&b) || b >= 0x80 => cur.pos += 1,
                Some(_) => return Err("invalid character in quoted string"),
            }
        }
    } else {
        loop {
            if cur.take_while(is_atext).is_empty() {
                return Err("invalid local part");
            }
            if !cur.eat(b'.') {
                break;
            }
        }
    }
    Ok(cur.s[start..cur.pos].to_string())
}

/// Parses a Mailbox at the cursor.
fn parse_mailbox(cur: &mut Cursor<'_>) -> Result<Mailbox, &'static str> {
    let local_part = parse_local_part(cur)?;
    if !cur.eat(b'@') {
        return Err("missing '@domain'");
    }
    let host = parse_host(cur, Strictness::Address)?;
    Ok(Mailbox { local_part, host })
}

/// Parses a Path (the cursor sits on `<`).
fn parse_path(cur: &mut Cursor<'_>) -> Result<Path, &'static str> {
    if !cur.eat(b'<') {
        return Err("address must be enclosed in <>");
    }
    let mut route = Vec::new();
    if cur.peek() == Some(b'@') {
        loop {
            if !cur.eat(b'@') {
                return Err("invalid source route");
            }
            route.push(parse_domain(cur, Strictness::Address)?);
            if !cur.eat(b',') {
                break;
            }
        }
        if !cur.eat(b':') {
            return Err("invalid source route");
        }
    }
    let mailbox = parse_mailbox(cur)?;
    if !cur.eat(b'>') {
        return Err("address must be enclosed in <>");
    }
    Ok(Path { route, mailbox })
}

/// Parses a Reverse-path at the start of `s`; returns it and the rest.
pub(crate) fn parse_reverse_path(s: &str) -> Result<(ReversePath, &str), &'static str> {
    if let Some(rest) = s.strip_prefix("<>") {
        return Ok((ReversePath::Null, rest));
    }
    let mut cur = Cursor::new(s);
    let path = parse_path(&mut cur)?;
    Ok((ReversePath::Path(path), cur.rest()))
}

/// Parses a Forward-path (or `<Postmaster>`) at the start of `s`;
/// returns it and the rest.
///
/// ```text
/// rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
///        Forward-path ) [SP Rcpt-parameters] CRLF
/// ```
pub(crate) fn parse_forward_path(s: &str) -> Result<(ForwardPath, &str), &'static str> {
    if s.get(..12)
        .is_some_and(|h| h.eq_ignore_ascii_case("<postmaster>"))
    {
        return Ok((ForwardPath::Postmaster, &s[12..]));
    }
    let mut cur = Cursor::new(s);
    let path = parse_path(&mut cur)?;
    Ok((ForwardPath::Path(path), cur.rest()))
}

/// Parses a whole string as a bare mailbox (`user@example.org`, no angle
/// brackets), e.g. to validate configuration.
pub fn parse_mailbox_str(s: &str) -> Option<Mailbox> {
    let mut cur = Cursor::new(s);
    let m = parse_mailbox(&mut cur).ok()?;
    cur.rest().is_empty().then_some(m)
}
