//! RFC 5322 §3.4 address lists, read into the address structure of the IMAP
//! ENVELOPE (RFC 9051 §7.5.2, RFC 3501 §7.4.2), with the obsolete syntax of
//! RFC 5322 §4.4 tolerated and no input rejected.

use super::header::{string, Cursor};
use super::Address;

/// The host IMAP servers send for an address without a domain (the
/// convention of UW-IMAP, kept by Dovecot), since a NIL host would mean
/// "start of group".
pub const MISSING_HOST: &str = ".MISSING-HOST-NAME.";
/// The mailbox sent for an address without a local part, for the same
/// reason (a NIL mailbox would mean "end of group").
pub const MISSING_MAILBOX: &str = "MISSING_MAILBOX";

/// RFC 5322 §3.2.3 specials, less `(` and `"` which the cursor handles.
const SPECIALS: &[u8] = b"<>[]:;@\\,.";

#[derive(Debug)]
enum Tok {
    /// An atom (or any run of non-special bytes), as written.
    Word(Vec<u8>),
    /// A quoted string's content, quotes and quoted pairs resolved.
    Quoted(Vec<u8>),
    /// A domain literal, brackets included.
    Literal(Vec<u8>),
    /// The content of a comment.
    Comment(Vec<u8>),
    /// One special character.
    Special(u8),
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    /// Whether whitespace or a comment came before it: display names keep
    /// one space there and none elsewhere (so `John Q. Public` survives).
    space: bool,
}

fn lex(input: &[u8]) -> Vec<Token> {
    let mut c = Cursor::new(input);
    let mut out = Vec::new();
    loop {
        let before = c.pos;
        if let Some(text) = c.skip_cfws() {
            out.push(Token {
                tok: Tok::Comment(text),
                space: true,
            });
        }
        let space = c.pos > before;
        let tok = match c.peek() {
            None => break,
            Some(b'"') => Tok::Quoted(c.quoted()),
            Some(b'[') => {
                let start = c.pos;
                let len = input[start..]
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(input.len() - start, |p| p + 1);
                c.pos = start + len;
                let literal = input[start..c.pos]
                    .iter()
                    .copied()
                    .filter(|&b| b != b'\r' && b != b'\n')
                    .collect();
                Tok::Literal(literal)
            }
            Some(b) if SPECIALS.contains(&b) => {
                c.pos += 1;
                Tok::Special(b)
            }
            Some(_) => {
                let word = c.token(SPECIALS);
                if word.is_empty() {
                    // A control byte: not part of any token; drop it.
                    c.pos += 1;
                    continue;
                }
                Tok::Word(word.to_vec())
            }
        };
        out.push(Token { tok, space });
    }
    out
}

/// Parses an address list (From, To, Cc, ...). Groups (RFC 5322 §3.4
/// `display-name ":" [group-list] ";"`) become, as RFC 9051 §7.5.2 asks, a
/// start marker (mailbox = group name, host NIL), the members, and an end
/// marker (mailbox and host NIL). An empty or unparsable list gives an
/// empty vector (NIL).
pub(crate) fn parse_address_list(value: &[u8]) -> Vec<Address> {
    let tokens = lex(value);
    let mut out = Vec::new();
    let mut in_group = false;
    // Tokens of the address being read, outside angle brackets.
    let mut outside: Vec<&Token> = Vec::new();
    // Tokens inside the angle brackets, once seen.
    let mut angle: Option<Vec<&Token>> = None;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        i += 1;
        match t.tok {
            Tok::Special(b'<') if angle.is_none() => {
                let mut inside = Vec::new();
                while i < tokens.len() {
                    let t = &tokens[i];
                    i += 1;
                    if matches!(t.tok, Tok::Special(b'>')) {
                        break;
                    }
                    inside.push(t);
                }
                angle = Some(inside);
            }
            Tok::Special(b':') => {
                // Start of a group; a group left open ends here (groups
                // do not nest).
                if in_group {
                    out.push(group_end());
                }
                out.push(Address {
                    name: None,
                    adl: None,
                    mailbox: Some(phrase(&outside).unwrap_or_default()),
                    host: None,
                });
                in_group = true;
                outside.clear();
                angle = None;
            }
            Tok::Special(b',') => {
                finish(&mut out, &mut outside, &mut angle);
            }
            Tok::Special(b';') => {
                finish(&mut out, &mut outside, &mut angle);
                if in_group {
                    out.push(group_end());
                    in_group = false;
                }
            }
            _ => {
                // After `<...>` only comments matter (as a name fallback);
                // stray words there are dropped.
                if angle.is_none() || matches!(t.tok, Tok::Comment(_)) {
                    outside.push(t);
                }
            }
        }
    }
    finish(&mut out, &mut outside, &mut angle);
    if in_group {
        out.push(group_end());
    }
    out
}

fn group_end() -> Address {
    Address::default()
}

/// Ends the address being read, if there is one, and pushes it.
fn finish<'a>(
    out: &mut Vec<Address>,
    outside: &mut Vec<&'a Token>,
    angle: &mut Option<Vec<&'a Token>>,
) {
    let outside_tokens = std::mem::take(outside);
    let address = match angle.take() {
        Some(inside) => {
            // name-addr: [display-name] "<" [route] addr-spec ">"
            let name = phrase(&outside_tokens)
                .or_else(|| first_comment(&outside_tokens))
                .or_else(|| first_comment(&inside));
            let (adl, spec) = split_route(&inside);
            let (mailbox, host) = addr_spec(spec);
            if mailbox.is_none() && host.is_none() {
                if name.is_none() {
                    // `<>`: nothing to show.
                    return;
                }
                Address {
                    name,
                    adl,
                    mailbox: Some(MISSING_MAILBOX.to_owned()),
                    host: Some(MISSING_HOST.to_owned()),
                }
            } else {
                Address {
                    name,
                    adl,
                    mailbox: Some(mailbox.unwrap_or_else(|| MISSING_MAILBOX.to_owned())),
                    host: Some(host.unwrap_or_else(|| MISSING_HOST.to_owned())),
                }
            }
        }
        None => {
            // A bare addr-spec; a comment after it is the customary
            // display name (`user@host (Full Name)`).
            let (mailbox, host) = addr_spec(&outside_tokens);
            if mailbox.is_none() && host.is_none() {
                return;
            }
            Address {
                name: first_comment(&outside_tokens),
                adl: None,
                mailbox: Some(mailbox.unwrap_or_else(|| MISSING_MAILBOX.to_owned())),
                host: Some(host.unwrap_or_else(|| MISSING_HOST.to_owned())),
            }
        }
    };
    out.push(address);
}

/// Splits an obsolete source route (`@a,@b:`, RFC 5322 §4.4 obs-route) off
/// the content of angle brackets. The route is returned as written, without
/// whitespace, as IMAP's addr-adl.
fn split_route<'a, 'b>(inside: &'b [&'a Token]) -> (Option<String>, &'b [&'a Token]) {
    let first = inside
        .iter()
        .position(|t| !matches!(t.tok, Tok::Comment(_)));
    let starts_with_at = first.is_some_and(|f| matches!(inside[f].tok, Tok::Special(b'@')));
    if !starts_with_at {
        return (None, inside);
    }
    match inside
        .iter()
        .position(|t| matches!(t.tok, Tok::Special(b':')))
    {
        Some(colon) => {
            let route = join(&inside[..colon]);
            let route = if route.is_empty() { None } else { Some(route) };
            (route, &inside[colon + 1..])
        }
        None => (None, inside),
    }
}

/// Splits `local-part "@" domain` at the first `@`; each side is joined
/// without whitespace and comments, quoted strings unquoted (the client
/// quotes again when it needs to).
fn addr_spec(tokens: &[&Token]) -> (Option<String>, Option<String>) {
    let at = tokens
        .iter()
        .position(|t| matches!(t.tok, Tok::Special(b'@')));
    let (local, domain) = match at {
        Some(at) => (&tokens[..at], Some(&tokens[at + 1..])),
        None => (tokens, None),
    };
    let non_empty = |s: String| if s.is_empty() { None } else { Some(s) };
    (non_empty(join(local)), domain.map(join).and_then(non_empty))
}

/// Concatenates tokens without whitespace, skipping comments.
fn join(tokens: &[&Token]) -> String {
    let mut bytes = Vec::new();
    for t in tokens {
        push_token(&mut bytes, &t.tok);
    }
    string(&bytes)
}

fn push_token(bytes: &mut Vec<u8>, tok: &Tok) {
    match tok {
        Tok::Word(w) | Tok::Quoted(w) | Tok::Literal(w) => bytes.extend_from_slice(w),
        Tok::Special(b) => bytes.push(*b),
        Tok::Comment(_) => {}
    }
}

/// A display name (RFC 5322 phrase) as written: quoted strings unquoted,
/// encoded words (RFC 2047) left encoded for the client to decode, runs of
/// whitespace and comments reduced to one space.
fn phrase(tokens: &[&Token]) -> Option<String> {
    let mut bytes = Vec::new();
    let mut pending_space = false;
    for t in tokens {
        if let Tok::Comment(_) = t.tok {
            pending_space = true;
            continue;
        }
        if !bytes.is_empty() && (t.space || pending_space) {
            bytes.push(b' ');
        }
        pending_space = false;
        push_token(&mut bytes, &t.tok);
    }
    let name = string(super::header::trim(&bytes));
    if name.is_empty() {
        None
    } else {
        Some(name)
    }
}

fn first_comment(tokens: &[&Token]) -> Option<String> {
    tokens.iter().find_map(|t| match &t.tok {
        Tok::Comment(text) => {
            let text = string(super::header::trim(text));
            if text.is_empty() {
                None
            } else {
                Some(text)
            }
        }
        _ => None,
    })
}
