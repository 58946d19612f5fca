//! SEARCH and UID SEARCH (RFC 9051 §6.4.4), with ESEARCH results
//! (RFC 4731, and the only form IMAP4rev2 has) and RFC 7162 MODSEQ.
//!
//! Flags, sizes, dates and sets are matched against the snapshot; header
//! keys (and SENT*) load only the message's header block, which the store
//! keeps apart from the body; BODY and TEXT load the raw message. Both
//! load in batches, one store call per batch. Text matching is a case-insensitive
//! substring match (RFC 9051 §6.4.4: "In all search keys that use
//! strings, a message matches the key if the string is a substring of the
//! associated text"), on decoded text, as Dovecot does:
//! - header fields on the bytes as stored and, where they hold RFC 2047
//!   encoded words, on their decoded text too, so `SUBJECT café` finds
//!   `=?UTF-8?Q?caf=C3=A9?=`;
//! - BODY and TEXT on the text parts after content-transfer decoding
//!   (base64, quoted-printable) and conversion of their charset to UTF-8,
//!   both by `mail-parser`. Most mail needs neither (7bit/8bit, UTF-8 or
//!   US-ASCII), and for it the body is matched as stored without being
//!   parsed: a quick scan of the folded bytes for a transfer encoding or a
//!   charset that needs decoding chooses the path (`needs_decoding`).
//!   On the decoding path only text parts (and the headers of attached
//!   messages) are searched, not binary attachments.
//!
//! A message is searched as FETCH shows it: a NUL byte, which a literal
//! cannot carry (RFC 9051 §4.3), is searched as the byte FETCH sends in
//! its place ([`NUL_REPLACEMENT`]), so a search string holding NUL
//! matches nothing and a search never finds what FETCH does not show.
//!
//! `RETURN (SAVE)` (RFC 5182) keeps the result, as UIDs, for `$`.

use std::sync::Arc;

use mailgate_imap_proto::response::NUL_REPLACEMENT;
use mailgate_imap_proto::{format_set, DateOp, SearchKey, SearchReturn};
use mailgate_store::structure::header_fields;
use mailgate_store::{MessageMeta, RawPart, Uid};

use crate::session::{CmdError, CmdResult, Done, Session};
use crate::view::Meta;

/// Whether evaluating the key needs the message's bytes.
fn needs_raw(key: &SearchKey) -> bool {
    match key {
        SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentDate(..) => true,
        SearchKey::And(keys) => keys.iter().any(needs_raw),
        SearchKey::Not(k) => needs_raw(k),
        SearchKey::Or(a, b) => needs_raw(a) || needs_raw(b),
        _ => false,
    }
}

/// Whether the key reads a message's size, internal date or MODSEQ,
/// which the view does not hold.
fn needs_details(key: &SearchKey) -> bool {
    match key {
        SearchKey::Larger(_)
        | SearchKey::Smaller(_)
        | SearchKey::Modseq(_)
        | SearchKey::Date(..) => true,
        SearchKey::And(keys) => keys.iter().any(needs_details),
        SearchKey::Not(k) => needs_details(k),
        SearchKey::Or(a, b) => needs_details(a) || needs_details(b),
        _ => false,
    }
}

fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::Modseq(_) => true,
        SearchKey::And(keys) => keys.iter().any(uses_modseq),
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        _ => false,
    }
}

/// Lower-cases for case-insensitive matching (ASCII and, when the bytes
/// are UTF-8, Unicode).
fn fold(b: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_lowercase().into_bytes(),
        Err(_) => b.to_ascii_lowercase(),
    }
}

/// The decoded text of a header field value holding encoded words
/// (RFC 2047); `None` when it holds none.
fn decoded(value: &[u8]) -> Option<String> {
    if !value.windows(2).any(|w| w == b"=?") {
        return None;
    }
    let mut v = value.to_vec();
    v.extend_from_slice(b"\r\n");
    match mail_parser::parsers::MessageStream::new(&v).parse_unstructured() {
        mail_parser::HeaderValue::Text(t) => Some(t.into_owned()),
        mail_parser::HeaderValue::TextList(l) => Some(l.join(" ")),
        _ => None,
    }
}

/// Whether a header field value contains `needle`, as written or decoded.
fn field_contains(value: &[u8], needle: &[u8]) -> bool {
    contains(value, needle) || decoded(value).is_some_and(|d| contains(d.as_bytes(), needle))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    find_folded(&fold(haystack), &fold(needle))
}

/// Whether folded `needle` occurs in folded `haystack`.
fn find_folded(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Whether a message's body must be decoded before it can be searched:
/// `folded` (the whole message, lower-cased) names a content transfer
/// encoding other than 7bit/8bit/binary, or a charset other than UTF-8
/// and US-ASCII, anywhere (so in the header of any MIME part; a mention
/// in the text only costs the slower path). Bytes that are not UTF-8
/// need a charset conversion too.
fn needs_decoding(folded: &[u8], utf8: bool) -> bool {
    if !utf8 {
        return true;
    }
    let value_after = |at: usize| {
        let rest = &folded[at..];
        let start = rest
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'"' | b'\'' | b'\r' | b'\n'))
            .unwrap_or(rest.len());
        let rest = &rest[start..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
            .unwrap_or(rest.len());
        &rest[..end]
    };
    let occurrences = |marker: &'static [u8]| {
        memchr::memmem::find_iter(folded, marker).map(move |i| i + marker.len())
    };
    let odd_encoding = occurrences(b"content-transfer-encoding:")
        .any(|at| !matches!(value_after(at), b"7bit" | b"8bit" | b"binary" | b""));
    let odd_charset = occurrences(b"charset=").any(|at| {
        !matches!(
            value_after(at),
            b"utf-8" | b"utf8" | b"us-ascii" | b"ascii" | b""
        )
    });
    odd_encoding || odd_charset
}

/// The searchable text of a message's body when it needs decoding: each
/// text part decoded to UTF-8 (and, for an attached message, its header
/// too), each piece folded, pieces separated by a line end.
fn decoded_body(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(message) = mail_parser::MessageParser::default().parse(raw) {
        body_text(&message, true, &mut out);
    }
    out
}

fn body_text(message: &mail_parser::Message<'_>, top: bool, out: &mut Vec<u8>) {
    if !top {
        // An attached message's header is part of the enclosing body.
        let root = message.root_part();
        let raw = message.raw_message();
        let header = raw
            .get(root.offset_header as usize..root.offset_body as usize)
            .unwrap_or_default();
        out.extend_from_slice(&fold(header));
        for h in &root.headers {
            if let Some(t) = h.value().as_text() {
                out.extend_from_slice(&fold(t.as_bytes()));
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    for part in &message.parts {
        match &part.body {
            mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => {
                out.extend_from_slice(&fold(t.as_bytes()));
                out.extend_from_slice(b"\r\n");
            }
            mail_parser::PartType::Message(inner) => body_text(inner, false, out),
            _ => {}
        }
    }
}

/// What BODY and TEXT search in one message, computed once per message
/// whatever the number of keys, the decoded text only when a body is
/// searched and needs it.
struct BodyText<'a> {
    raw: &'a [u8],
    /// The whole message, folded.
    folded: Vec<u8>,
    /// Where the body starts in `folded`.
    body_start: usize,
    /// The decoded body text, folded; `None`: the body as stored is its
    /// text (the fast path).
    decoded: std::cell::OnceCell<Option<Vec<u8>>>,
}

impl<'a> BodyText<'a> {
    fn new(raw: &'a [u8]) -> BodyText<'a> {
        let folded = fold(raw);
        let body_start = header_end(&folded);
        BodyText {
            raw,
            folded,
            body_start,
            decoded: std::cell::OnceCell::new(),
        }
    }

    fn body_contains(&self, needle: &[u8]) -> bool {
        let decoded = self.decoded.get_or_init(|| {
            let utf8 = std::str::from_utf8(self.raw).is_ok();
            needs_decoding(&self.folded, utf8).then(|| decoded_body(self.raw))
        });
        match decoded {
            Some(d) => find_folded(d, needle),
            None => find_folded(&self.folded[self.body_start..], needle),
        }
    }

    fn header_contains(&self, needle: &[u8]) -> bool {
        find_folded(&self.folded[..self.body_start], needle)
    }
}

/// Where the header ends (after the blank line).
fn header_end(raw: &[u8]) -> usize {
    let crlf = memchr::memmem::find(raw, b"\r\n\r\n").map(|p| p + 4);
    let lf = memchr::memmem::find(raw, b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => raw.len(),
    }
}

/// The day of an RFC 5322 Date (`[Mon, ] 7 Feb 1994 21:52:25 -0800`),
/// disregarding time and zone as RFC 9051 §6.4.4 says for SENT* keys.
fn sent_day(raw: &[u8]) -> Option<i64> {
    let header = &raw[..header_end(raw)];
    let field = header_fields(header).into_iter().find(|f| f.is("Date"))?;
    let value = String::from_utf8_lossy(field.value).into_owned();
    let value = value
        .split_once(',')
        .map_or(value.as_str(), |(_, rest)| rest);
    let words: Vec<&str> = value.split_whitespace().collect();
    let [d, m, y, ..] = words[..] else {
        return None;
    };
    mailgate_imap_proto::parse::parse_date_text(&format!("{d}-{m}-{y}"))
}

struct Ctx<'a> {
    seq: u32,
    count: u32,
    largest_uid: u32,
    meta: Meta<'a>,
    /// Size, internal date and MODSEQ, read from the store when the key
    /// needs them ([`needs_details`]).
    details: Option<&'a MessageMeta>,
    raw: Option<&'a [u8]>,
    /// BODY/TEXT haystacks, made on first use.
    text: std::cell::OnceCell<Option<BodyText<'a>>>,
}

impl<'a> Ctx<'a> {
    fn text(&self) -> Option<&BodyText<'a>> {
        self.text
            .get_or_init(|| self.raw.map(BodyText::new))
            .as_ref()
    }
}

fn matches(key: &SearchKey, c: &Ctx<'_>) -> bool {
    let m = c.meta;
    let (internal_date, size, modseq) = c
        .details
        .map_or((0, 0, 0), |d| (d.internal_date, d.size, d.modseq));
    let day = internal_date.div_euclid(86_400);
    match key {
        SearchKey::And(keys) => keys.iter().all(|k| matches(k, c)),
        SearchKey::All | SearchKey::Old => true,
        SearchKey::Recent => false,
        SearchKey::New => false,
        SearchKey::Flag(f) => m.has_flag(f),
        SearchKey::NotFlag(f) => !m.has_flag(f),
        SearchKey::Larger(n) => c.details.is_some() && size > *n,
        SearchKey::Smaller(n) => c.details.is_some() && size < *n,
        SearchKey::Seq(set) => set.contains(c.seq, c.count),
        SearchKey::Uid(set) => set.contains(m.uid.get(), c.largest_uid),
        SearchKey::Not(k) => !matches(k, c),
        SearchKey::Or(a, b) => matches(a, c) || matches(b, c),
        SearchKey::Modseq(n) => c.details.is_some() && modseq >= *n,
        SearchKey::Date(op, d) => c.details.is_some() && compare(*op, day, *d),
        SearchKey::SentDate(op, d) => c
            .raw
            .and_then(sent_day)
            .is_some_and(|sent| compare(*op, sent, *d)),
        SearchKey::Header(name, needle) => c.raw.is_some_and(|raw| {
            let header = &raw[..header_end(raw)];
            header_fields(header)
                .iter()
                .any(|f| f.is(name) && field_contains(f.value, needle))
        }),
        SearchKey::Body(needle) => c.text().is_some_and(|t| t.body_contains(&fold(needle))),
        SearchKey::Text(needle) => c.raw.zip(c.text()).is_some_and(|(raw, t)| {
            let needle = fold(needle);
            t.header_contains(&needle)
                || t.body_contains(&needle)
                || header_fields(&raw[..header_end(raw)]).iter().any(|f| {
                    decoded(f.value).is_some_and(|d| find_folded(&fold(d.as_bytes()), &needle))
                })
        }),
    }
}

fn compare(op: DateOp, day: i64, wanted: i64) -> bool {
    match op {
        DateOp::Before => day < wanted,
        DateOp::On => day == wanted,
        DateOp::Since => day >= wanted,
    }
}

/// The indexes (sequence number - 1) of the selected mailbox's messages
/// that match `key`, ascending. Also used by SORT and THREAD.
pub(crate) async fn matching(s: &Session, key: &SearchKey) -> Result<Vec<usize>, CmdError> {
    let store = Arc::clone(&s.ctx.store);
    let sel = s
        .selected
        .as_ref()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    let load = needs_raw(key);
    // Header keys (and SENT*) read only the header block, which the
    // store keeps apart from the body; BODY and TEXT need the message.
    let headers_only = load && only_headers(key);
    let count = sel.msgs.len() as u32;
    let largest_uid = sel.largest_uid();
    let mut found = Vec::new();
    if flags_only(key) {
        // Decided once per distinct flag list of the mailbox.
        let (lists, ids) = sel.msgs.flag_lists();
        let verdict: Vec<bool> = lists
            .iter()
            .map(|flags| {
                let meta = Meta {
                    uid: Uid(std::num::NonZeroU32::MIN),
                    flags,
                };
                let c = Ctx {
                    seq: 1,
                    count,
                    largest_uid,
                    meta,
                    details: None,
                    raw: None,
                    text: std::cell::OnceCell::new(),
                };
                matches(key, &c)
            })
            .collect();
        found.extend(
            ids.enumerate()
                .filter(|&(_, id)| verdict.get(id).copied().unwrap_or(false))
                .map(|(i, _)| i),
        );
        return Ok(found);
    }
    // Sizes, dates and MODSEQs are in the store, not in the view: read
    // once for the whole list when the key or the batching needs them.
    let details = if load || needs_details(key) {
        Some(sel.all_details(store.as_ref()).await?)
    } else {
        None
    };
    let details_of = |uid: Uid| details.as_ref().and_then(|d| d.of(uid));
    if !load {
        // Flags, sizes, dates, sets: one pass over the list.
        for (i, meta) in sel.msgs.iter().enumerate() {
            let c = Ctx {
                seq: i as u32 + 1,
                count,
                largest_uid,
                meta,
                details: details_of(meta.uid),
                raw: None,
                text: std::cell::OnceCell::new(),
            };
            if matches(key, &c) {
                found.push(i);
            }
        }
        return Ok(found);
    }
    let mut next = 0;
    while next < sel.msgs.len() {
        // A batch per store call: up to LOAD_BATCH messages, whole
        // messages only up to about LOAD_BYTES, header blocks of
        // messages up to about HEADER_LOAD_BYTES.
        let start = next;
        let mut bytes = 0u64;
        let mut sizes = sel
            .msgs
            .iter_from(start)
            .map(|m| details_of(m.uid).map_or(0, |d| d.size));
        while next < sel.msgs.len() && next - start < LOAD_BATCH {
            let budget = if headers_only {
                HEADER_LOAD_BYTES
            } else {
                LOAD_BYTES
            };
            if load && next > start && bytes >= budget {
                break;
            }
            bytes += sizes.next().unwrap_or(0);
            next += 1;
        }
        let metas: Vec<Meta<'_>> = sel.msgs.iter_from(start).take(next - start).collect();
        let loaded = if !load {
            Vec::new()
        } else {
            let part = if headers_only {
                RawPart::Header
            } else {
                RawPart::Whole
            };
            let uids: Vec<Uid> = metas.iter().map(|m| m.uid).collect();
            store.fetch_messages(sel.id, &uids, part, false).await?
        };
        // In the order asked; one expunged meanwhile is missing and is
        // matched without its bytes, as before.
        let mut loaded = loaded.into_iter().peekable();
        for (n, meta) in metas.iter().enumerate() {
            let mut raw = loaded.next_if(|m| m.uid == meta.uid).and_then(|m| m.raw);
            if let Some(raw) = raw.as_mut() {
                as_fetch_shows(raw);
            }
            let i = start + n;
            let c = Ctx {
                seq: i as u32 + 1,
                count,
                largest_uid,
                meta: *meta,
                details: details_of(meta.uid),
                raw: raw.as_deref(),
                text: std::cell::OnceCell::new(),
            };
            if matches(key, &c) {
                found.push(i);
            }
        }
    }
    Ok(found)
}

/// Replaces each NUL as FETCH does.
fn as_fetch_shows(raw: &mut [u8]) {
    let mut at = 0;
    while let Some(i) = memchr::memchr(0, &raw[at..]) {
        raw[at + i] = NUL_REPLACEMENT;
        at += i + 1;
    }
}

/// Messages loaded from the store per call while searching.
const LOAD_BATCH: usize = 256;
/// Bytes of whole messages loaded per call (at least one message).
const LOAD_BYTES: u64 = 1 << 20;
/// Header blocks loaded per call: of messages whose sizes add up to this
/// (a header block can be as large as its message; most are small).
const HEADER_LOAD_BYTES: u64 = 16 << 20;

/// Whether the key reads nothing but the message's flags.
fn flags_only(key: &SearchKey) -> bool {
    match key {
        SearchKey::Flag(_)
        | SearchKey::NotFlag(_)
        | SearchKey::All
        | SearchKey::Old
        | SearchKey::New
        | SearchKey::Recent => true,
        SearchKey::And(keys) => keys.iter().all(flags_only),
        SearchKey::Not(k) => flags_only(k),
        SearchKey::Or(a, b) => flags_only(a) && flags_only(b),
        _ => false,
    }
}

/// Whether every key that needs the message's bytes reads only its
/// header block (HEADER, SUBJECT, FROM, TO, CC, BCC, SENT*).
fn only_headers(key: &SearchKey) -> bool {
    match key {
        SearchKey::Body(_) | SearchKey::Text(_) => false,
        SearchKey::And(keys) => keys.iter().all(only_headers),
        SearchKey::Not(k) => only_headers(k),
        SearchKey::Or(a, b) => only_headers(a) && only_headers(b),
        _ => true,
    }
}

/// `search = "SEARCH" [search-return-opts] SP search-program`
pub(crate) async fn search(
    s: &mut Session,
    uid: bool,
    ret: Option<&[SearchReturn]>,
    key: &SearchKey,
    out: &mut Vec<u8>,
) -> CmdResult {
    let with_modseq = uses_modseq(key);
    if with_modseq {
        s.condstore = true;
    }
    let save = ret.is_some_and(|r| r.contains(&SearchReturn::Save));
    if save {
        // RFC 5182 §2.1: a SEARCH with SAVE that fails leaves `$` empty.
        s.saved.clear();
    }
    let indexes = matching(s, key).await?;
    let sel = s
        .selected
        .as_ref()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    // MODSEQs only when the answer carries one (RFC 7162 §3.1.5).
    let details = if with_modseq {
        Some(sel.details(s.ctx.store.as_ref(), &indexes).await?)
    } else {
        None
    };
    let cap = sel.msgs.highest_modseq();
    let found: Vec<(u32, u64)> = indexes
        .iter()
        .map(|&i| {
            let m = sel.msgs.at(i);
            let modseq = details
                .as_ref()
                .and_then(|d| d.of(m.uid))
                .map_or(0, |d| d.modseq.min(cap));
            (if uid { m.uid.get() } else { i as u32 + 1 }, modseq)
        })
        .collect();
    let max_modseq = found.iter().map(|f| f.1).max();
    if save {
        // RFC 5182 §2.4: with MIN and/or MAX but neither ALL nor COUNT,
        // only those messages are saved.
        let r = ret.unwrap_or_default();
        let whole = r
            .iter()
            .any(|o| matches!(o, SearchReturn::All | SearchReturn::Count))
            || !r
                .iter()
                .any(|o| matches!(o, SearchReturn::Min | SearchReturn::Max));
        let uids: Vec<_> = indexes.iter().map(|&i| sel.msgs.at(i).uid).collect();
        let kept = if whole {
            uids
        } else {
            let mut k = Vec::new();
            if r.contains(&SearchReturn::Min) {
                k.extend(uids.first().copied());
            }
            if r.contains(&SearchReturn::Max) {
                k.extend(uids.last().copied());
            }
            k.dedup();
            k
        };
        s.saved = kept;
    }
    // IMAP4rev2 has only ESEARCH (RFC 9051 §7.3.4); a rev2 client without
    // RETURN gets `RETURN (ALL)`.
    let ret: Option<Vec<SearchReturn>> = match ret {
        Some([]) => Some(vec![SearchReturn::All]),
        // RFC 5182 §2.1: SAVE alone returns no ESEARCH response.
        Some([SearchReturn::Save]) => {
            return Ok(Done::ok(if uid {
                "UID SEARCH completed, result saved"
            } else {
                "SEARCH completed, result saved"
            }))
        }
        Some(r) => Some(r.to_vec()),
        None if s.rev2 => Some(vec![SearchReturn::All]),
        None => None,
    };
    match ret {
        None => {
            let mut line = String::from("* SEARCH");
            for (n, _) in &found {
                line.push_str(&format!(" {n}"));
            }
            if let (true, Some(m)) = (with_modseq, max_modseq) {
                line.push_str(&format!(" (MODSEQ {m})"));
            }
            line.push_str("\r\n");
            out.extend_from_slice(line.as_bytes());
        }
        Some(ret) => {
            let mut line = String::from("* ESEARCH (TAG ");
            let mut tag = Vec::new();
            mailgate_imap_proto::response::write_string(&mut tag, s.tag.as_bytes(), false);
            line.push_str(&String::from_utf8_lossy(&tag));
            line.push(')');
            if uid {
                line.push_str(" UID");
            }
            let numbers: Vec<u32> = found.iter().map(|f| f.0).collect();
            if !numbers.is_empty() {
                for r in &ret {
                    match r {
                        SearchReturn::Min => line.push_str(&format!(" MIN {}", numbers[0])),
                        SearchReturn::Max => {
                            line.push_str(&format!(" MAX {}", numbers[numbers.len() - 1]))
                        }
                        SearchReturn::All => {
                            line.push_str(&format!(" ALL {}", format_set(numbers.iter().copied())))
                        }
                        SearchReturn::Count | SearchReturn::Save => {}
                    }
                }
            }
            if ret.contains(&SearchReturn::Count) {
                line.push_str(&format!(" COUNT {}", numbers.len()));
            }
            if let (true, Some(m)) = (with_modseq, max_modseq) {
                line.push_str(&format!(" MODSEQ {m}"));
            }
            line.push_str("\r\n");
            out.extend_from_slice(line.as_bytes());
        }
    }
    Ok(Done::ok(if uid {
        "UID SEARCH completed"
    } else {
        "SEARCH completed"
    }))
}
