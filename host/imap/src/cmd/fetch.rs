//! FETCH and UID FETCH (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162
//! CHANGEDSINCE / VANISHED / MODSEQ).
//!
//! ```abnf
//! msg-att-static  = "ENVELOPE" SP envelope / "INTERNALDATE" SP date-time /
//!                   "RFC822.SIZE" SP number64 / "BODY" ["STRUCTURE"] SP body /
//!                   "BODY" section ["<" number ">"] SP nstring /
//!                   "BINARY" section-binary SP (nstring / literal8) /
//!                   "BINARY.SIZE" section-binary SP number / "UID" SP uniqueid
//! ```
//!
//! ENVELOPE, BODY and BODYSTRUCTURE come from the structure saved at
//! delivery; sections are slices of the raw message by its byte ranges.
//!
//! The answer is made in parts ([`FetchJob`]): [`start`] resolves the
//! messages and sets `\Seen`, then each [`FetchJob::step`] writes until
//! [`OUTPUT_CHUNK`] bytes are pending, and the network loop sends them
//! before the next step. A step stops between messages, between the
//! items of one message, and inside a literal, so the pending answer never
//! grows past `OUTPUT_CHUNK` plus one item's text (an ENVELOPE, a
//! BODYSTRUCTURE), whatever the command repeats: `FETCH 1:* BODY[]` on a
//! large mailbox and `FETCH 1 (BODY.PEEK[] BODY.PEEK[] ...)` on a large
//! message alike. A message's bytes are loaded once and copied once, a
//! chunk at a time, into the output (sections are ranges of the loaded
//! message, not copies); bytes made for one item (HEADER.FIELDS, decoded
//! BINARY) are made when that item is written and dropped after it.
//!
//! RFC 9051 §4.3: a `{n}` literal never carries NUL; one in a message is
//! sent as 0x80 ([`NUL_REPLACEMENT`], as Dovecot does), in every item,
//! and SEARCH matches the message as FETCH shows it. BINARY sends a part
//! holding NUL as a `literal8` with its NULs (RFC 3516 §4.2).
//!
//! [`NUL_REPLACEMENT`]: mailgate_imap_proto::response::NUL_REPLACEMENT
//!
//! Messages are loaded in batches (`BATCH`, and with bodies about one
//! chunk's worth, with header blocks messages of `HEADER_BATCH_BYTES` in
//! all), one store call each ([`MailStore::fetch_messages`]):
//! one hop to the store's blocking thread and one read transaction per
//! batch, not per message. Only what the items need is read: nothing
//! for FLAGS/UID/sizes, the saved structure for ENVELOPE/BODYSTRUCTURE
//! (no body), the header block for the message's own header sections
//! (`BODY[HEADER]`, `HEADER.FIELDS`, `RFC822.HEADER`), and the whole
//! message, without the structure, for `BODY[]` and `RFC822`.
//!
//! [`MailStore::fetch_messages`]: mailgate_store::MailStore::fetch_messages

mod section;
mod structure;

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;

use mailgate_imap_proto::response::{write_literal_data, write_literal_start, write_string};
use mailgate_imap_proto::{
    format_date_time, format_set, FetchAttr, Section, SectionSpec, SequenceSet,
};
use mailgate_store::{
    FetchedMessage, FlagChange, MailboxId, MessageMeta, MessageStructure, RawPart, Uid,
};

use super::flag_list;
use crate::session::{CmdError, Details, Done, Session};
use crate::view::Meta;
use section::{BinaryError, Data};

/// How much of the raw message the item needs, and whether it needs the
/// saved structure.
fn needs(item: &FetchAttr) -> (RawPart, bool) {
    match item {
        // The whole message: no structure needed to slice it.
        FetchAttr::Rfc822 => (RawPart::Whole, false),
        FetchAttr::Section { section, .. } if whole(section) => (RawPart::Whole, false),
        // The message's own header (not a part's): its header block,
        // which the store reads without the body.
        FetchAttr::Rfc822Header => (RawPart::Header, true),
        FetchAttr::Section { section, .. }
            if section.part.is_empty()
                && matches!(
                    section.text,
                    Some(SectionSpec::Header | SectionSpec::HeaderFields { .. })
                ) =>
        {
            (RawPart::Header, true)
        }
        FetchAttr::Rfc822Text
        | FetchAttr::Section { .. }
        | FetchAttr::Binary { .. }
        | FetchAttr::BinarySize(_) => (RawPart::Whole, true),
        FetchAttr::Envelope | FetchAttr::Body | FetchAttr::BodyStructure => (RawPart::None, true),
        _ => (RawPart::None, false),
    }
}

/// Whether a message loaded with its header block only holds all of the
/// header range of its saved structure.
fn header_loaded(msg: &FetchedMessage) -> bool {
    match (&msg.raw, &msg.structure) {
        (Some(raw), Some(st)) => st.root.header.end <= raw.len() as u64,
        _ => false,
    }
}

/// Whether the section is the whole message (`BODY[]`).
fn whole(section: &Section) -> bool {
    section.part.is_empty() && section.text.is_none()
}

/// Whether fetching the item sets `\Seen` (RFC 9051 §6.4.5: BODY[...],
/// BINARY[...], RFC822 and RFC822.TEXT do; PEEK forms and RFC822.HEADER
/// do not).
fn sets_seen(item: &FetchAttr) -> bool {
    matches!(
        item,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Text
            | FetchAttr::Section { peek: false, .. }
            | FetchAttr::Binary { peek: false, .. }
    )
}

/// Pending output after which a FETCH step stops and lets the network
/// loop write it.
pub const OUTPUT_CHUNK: usize = 256 * 1024;

/// Most messages loaded from the store in one call (fewer when their
/// bodies are wanted and their sizes add up to [`OUTPUT_CHUNK`]): one
/// trip to the store's blocking thread and one read transaction per
/// batch instead of per message.
const BATCH: usize = 256;

/// Header blocks are loaded in batches of messages whose sizes add up to
/// at most this (at least one message): a header block can be as large
/// as its message.
const HEADER_BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// A FETCH in progress: the messages still to answer.
#[derive(Debug)]
pub(crate) struct FetchJob {
    /// UID FETCH.
    pub(crate) uid: bool,
    items: Vec<FetchAttr>,
    /// Indexes into the snapshot, in order; `next` is the first not
    /// loaded.
    indexes: Vec<usize>,
    next: usize,
    /// Messages loaded and not yet begun: snapshot index and what was
    /// loaded (nothing when the items need nothing).
    loaded: VecDeque<(usize, Option<FetchedMessage>)>,
    /// The message whose answer is being written.
    current: Option<Current>,
    seen_now: Vec<Uid>,
    want_raw: RawPart,
    want_structure: bool,
    mailbox: MailboxId,
    /// Sizes, dates and MODSEQs read from the store, when an item or the
    /// batching needs them (the view holds only UIDs and flags).
    details: Option<Details>,
    /// The HIGHESTMODSEQ of the client's version: a MODSEQ sent is at
    /// most this (a newer change is announced with its flags later).
    modseq_cap: u64,
    /// Literal bytes written and not yet counted
    /// (`mailgate_sent_bytes_total`).
    sent: u64,
}

/// One message's `* n FETCH (...)`, partly written.
#[derive(Debug)]
struct Current {
    /// Index into the snapshot.
    index: usize,
    msg: Option<FetchedMessage>,
    /// The next item to write.
    item: usize,
    flags_sent: bool,
    /// The literal being written, if one is.
    literal: Option<Literal>,
}

/// A literal whose announcement `{n}` is written and whose bytes follow a
/// chunk at a time.
#[derive(Debug)]
struct Literal {
    data: Data,
    /// Bytes written so far.
    done: usize,
    /// A `literal8` (`~{n}`): NUL is sent as it is.
    binary: bool,
}

/// `fetch = "FETCH" SP sequence-set SP (...) [fetch-modifiers]`: checks
/// the command, writes VANISHED (EARLIER), sets `\Seen`, and returns the
/// job that writes the FETCH responses.
pub(crate) async fn start(
    s: &mut Session,
    uid: bool,
    set: &SequenceSet,
    mut items: Vec<FetchAttr>,
    changed_since: Option<u64>,
    vanished: bool,
    out: &mut Vec<u8>,
) -> Result<FetchJob, CmdError> {
    if vanished && !(uid && s.qresync && changed_since.is_some()) {
        // RFC 7162 §3.2.6: VANISHED needs UID FETCH, QRESYNC and
        // CHANGEDSINCE.
        return Err(CmdError::Bad(
            "VANISHED needs UID FETCH with CHANGEDSINCE after ENABLE QRESYNC".into(),
        ));
    }
    if changed_since.is_some() || items.contains(&FetchAttr::Modseq) {
        s.condstore = true;
    }
    // RFC 9051 §6.4.8: UID FETCH always returns UID; RFC 7162 §3.1.4.1:
    // CHANGEDSINCE implies MODSEQ.
    if uid && !items.contains(&FetchAttr::Uid) {
        items.insert(0, FetchAttr::Uid);
    }
    if changed_since.is_some() && !items.contains(&FetchAttr::Modseq) {
        items.push(FetchAttr::Modseq);
    }
    let (want_raw, want_structure) = items
        .iter()
        .map(needs)
        .fold((RawPart::None, false), |a, b| (a.0.max(b.0), a.1 || b.1));
    let store = Arc::clone(&s.ctx.store);
    let sel = s
        .selected
        .as_mut()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    let mut indexes = sel.resolve(set, uid)?;
    let want_details = changed_since.is_some()
        || want_raw == RawPart::Whole
        || items.iter().any(|i| {
            matches!(
                i,
                FetchAttr::InternalDate | FetchAttr::Rfc822Size | FetchAttr::Modseq
            )
        });
    let details = if want_details {
        Some(sel.details(store.as_ref(), &indexes).await?)
    } else {
        None
    };
    if let (Some(cs), Some(details)) = (changed_since, details.as_ref()) {
        let msgs = &sel.msgs;
        indexes.retain(|&i| {
            msgs.get(i)
                .and_then(|m| details.of(m.uid))
                .is_some_and(|d| d.modseq > cs)
        });
        if vanished {
            let largest = sel.largest_uid();
            let gone: Vec<u32> = store
                .expunged_since(sel.id, cs)
                .await?
                .into_iter()
                .map(Uid::get)
                .filter(|&u| set.contains(u, largest))
                .collect();
            if !gone.is_empty() {
                out.extend_from_slice(
                    format!("* VANISHED (EARLIER) {}\r\n", format_set(gone)).as_bytes(),
                );
            }
        }
    }
    // Set \Seen first, in one store call, so the FLAGS sent are final.
    let mut seen_now = Vec::new();
    if !sel.read_only && items.iter().any(sets_seen) {
        let unseen: Vec<Uid> = indexes
            .iter()
            .filter_map(|&i| sel.msgs.get(i))
            .filter(|m| !m.has_flag("\\Seen"))
            .map(|m| m.uid)
            .collect();
        if !unseen.is_empty() {
            let updated = store
                .store_flags(sel.id, &unseen, FlagChange::Add(vec!["\\Seen".into()]))
                .await?;
            seen_now.extend(
                updated
                    .iter()
                    .filter(|m| sel.index_of(m.uid).is_some())
                    .map(|m| m.uid),
            );
            sel.note_own(&updated);
        }
    }
    Ok(FetchJob {
        sent: 0,
        uid,
        items,
        indexes,
        next: 0,
        loaded: VecDeque::new(),
        current: None,
        seen_now,
        want_raw,
        want_structure,
        mailbox: sel.id,
        details,
        modseq_cap: sel.msgs.highest_modseq(),
    })
}

impl FetchJob {
    /// Writes FETCH responses until [`OUTPUT_CHUNK`] bytes are pending in
    /// `out` or every message is done; `Ok(Some(done))` at the end.
    pub(crate) async fn step(
        &mut self,
        s: &mut Session,
        out: &mut Vec<u8>,
    ) -> Result<Option<Done>, CmdError> {
        let utf8 = s.utf8;
        let store = Arc::clone(&s.ctx.store);
        let listener = match s.ctx.tls {
            mailgate_tls::TlsMode::Implicit(_) => mailgate_metrics::Listener::Imaps,
            _ => mailgate_metrics::Listener::Imap,
        };
        let sel = s
            .selected
            .as_ref()
            .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
        loop {
            if out.len() >= OUTPUT_CHUNK {
                return Ok(None);
            }
            if let Some(index) = self.current.as_ref().map(|c| c.index) {
                let Some(meta) = sel.msgs.get(index) else {
                    // The snapshot does not change during a FETCH.
                    return Err(CmdError::Server("message left the snapshot".into()));
                };
                if self.write_some(meta, out, utf8) {
                    self.current = None;
                }
                if self.sent > 0 {
                    mailgate_metrics::bytes_sent(listener, std::mem::take(&mut self.sent));
                }
                continue;
            }
            if let Some((index, msg)) = self.loaded.pop_front() {
                let Some(meta) = sel.msgs.get(index) else {
                    continue;
                };
                if self
                    .details
                    .as_ref()
                    .is_some_and(|d| d.of(meta.uid).is_none())
                {
                    // Expunged in the store meanwhile (RFC 9051 §7.5.1).
                    continue;
                }
                if let Some(msg) = &msg {
                    // Anything that can fail is found before a byte of
                    // this message's answer is written.
                    check_items(&self.items, msg)?;
                }
                let _ = write!(out, "* {} FETCH (", index + 1);
                self.current = Some(Current {
                    index,
                    msg,
                    item: 0,
                    flags_sent: false,
                    literal: None,
                });
                continue;
            }
            if self.next >= self.indexes.len() {
                break;
            }
            if self.want_raw == RawPart::None && !self.want_structure {
                self.loaded.push_back((self.indexes[self.next], None));
                self.next += 1;
                continue;
            }
            // The next batch: up to BATCH messages, and with bodies no
            // more than about what fits before the output is written.
            let room = OUTPUT_CHUNK.saturating_sub(out.len()) as u64;
            let mut batch: Vec<(usize, Meta<'_>)> = Vec::new();
            let mut bytes = 0u64;
            while self.next < self.indexes.len() && batch.len() < BATCH {
                let budget = match self.want_raw {
                    RawPart::Whole => room,
                    // A header block is at most its message's size; most
                    // are small, so the budget is larger.
                    RawPart::Header => HEADER_BATCH_BYTES,
                    RawPart::None => u64::MAX,
                };
                if !batch.is_empty() && bytes >= budget {
                    break;
                }
                let i = self.indexes[self.next];
                self.next += 1;
                if let Some(meta) = sel.msgs.get(i) {
                    bytes += self
                        .details
                        .as_ref()
                        .and_then(|d| d.of(meta.uid))
                        .map_or(0, |d| d.size);
                    batch.push((i, meta));
                }
            }
            let uids: Vec<Uid> = batch.iter().map(|(_, m)| m.uid).collect();
            let loaded = store
                .fetch_messages(self.mailbox, &uids, self.want_raw, self.want_structure)
                .await?;
            // In the order asked; a message expunged by another session,
            // not yet announced, is missing: RFC 9051 §7.5.1 lets us send
            // nothing for it.
            let mut loaded = loaded.into_iter().peekable();
            for (i, meta) in batch {
                let Some(mut msg) = loaded.next_if(|m| m.uid == meta.uid) else {
                    continue;
                };
                if self.want_raw == RawPart::Header && !header_loaded(&msg) {
                    // The saved header range goes past the header block
                    // (damaged input): the whole message then.
                    match store.message_raw(self.mailbox, meta.uid).await? {
                        Some(raw) => msg.raw = Some(raw),
                        None => continue,
                    }
                }
                self.loaded.push_back((i, Some(msg)));
            }
        }
        Ok(Some(Done::ok(if self.uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        })))
    }

    /// Writes the next piece of the current message's answer: a chunk of
    /// the literal under way, one item, or the end. Returns whether the
    /// message is done.
    fn write_some(&mut self, meta: Meta<'_>, out: &mut Vec<u8>, utf8: bool) -> bool {
        let Some(cur) = self.current.as_mut() else {
            return true;
        };
        let raw = cur
            .msg
            .as_ref()
            .and_then(|m| m.raw.as_deref())
            .unwrap_or_default();
        if let Some(lit) = cur.literal.as_mut() {
            let bytes = lit.data.bytes(raw);
            let room = OUTPUT_CHUNK.saturating_sub(out.len()).max(1);
            let end = lit.done.saturating_add(room).min(bytes.len());
            let chunk = bytes.get(lit.done..end).unwrap_or_default();
            if lit.binary {
                out.extend_from_slice(chunk);
            } else {
                write_literal_data(out, chunk);
            }
            self.sent += chunk.len() as u64;
            lit.done = end;
            if end >= bytes.len() {
                cur.literal = None;
            }
            return false;
        }
        if let Some(item) = self.items.get(cur.item) {
            if cur.item > 0 {
                out.push(b' ');
            }
            cur.item += 1;
            cur.flags_sent |= *item == FetchAttr::Flags;
            let st = cur.msg.as_ref().and_then(|m| m.structure.as_ref());
            let details = self.details.as_ref().and_then(|d| d.of(meta.uid));
            cur.literal = write_item(out, item, meta, (details, self.modseq_cap), raw, st, utf8);
            return false;
        }
        // RFC 9051 §6.4.5: the implicit \Seen change is reported.
        if !cur.flags_sent && self.seen_now.contains(&meta.uid) {
            let _ = write!(out, " FLAGS ({})", flag_list(meta.flags));
        }
        out.extend_from_slice(b")\r\n");
        true
    }
}

/// Checks that every item can be answered from what was loaded, so that a
/// message's answer, once begun, is always finished. `NO` for a BINARY
/// part that does not exist or cannot be decoded (RFC 3516 §4.3).
fn check_items(items: &[FetchAttr], msg: &FetchedMessage) -> Result<(), CmdError> {
    for item in items {
        let (raw, structure) = needs(item);
        if raw != RawPart::None && msg.raw.is_none() {
            return Err(missing("message"));
        }
        let st = msg.structure.as_ref();
        if structure && st.is_none() {
            return Err(missing("structure"));
        }
        if let (FetchAttr::Binary { part, .. } | FetchAttr::BinarySize(part), Some(st)) = (item, st)
        {
            section::binary_check(st, part).map_err(binary_error)?;
        }
    }
    Ok(())
}

/// The section spec as echoed in the response (`1.HEADER.FIELDS (A B)`).
fn section_name(section: &Section) -> Vec<u8> {
    let mut name: Vec<String> = section.part.iter().map(u32::to_string).collect();
    match &section.text {
        None => {}
        Some(SectionSpec::Header) => name.push("HEADER".into()),
        Some(SectionSpec::Text) => name.push("TEXT".into()),
        Some(SectionSpec::Mime) => name.push("MIME".into()),
        Some(SectionSpec::HeaderFields { not, fields }) => {
            let mut out = Vec::new();
            out.extend_from_slice(if *not {
                b"HEADER.FIELDS.NOT (" as &[u8]
            } else {
                b"HEADER.FIELDS ("
            });
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                // Echoed as sent: an atom when it is one, else a string.
                let atom = !f.is_empty()
                    && f.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
                if atom {
                    out.extend_from_slice(f.as_bytes());
                } else {
                    write_string(&mut out, f.as_bytes(), true);
                }
            }
            out.push(b')');
            name.push(String::from_utf8_lossy(&out).into_owned());
        }
    }
    name.join(".").into_bytes()
}

fn missing(what: &str) -> CmdError {
    CmdError::Server(format!("{what} not loaded"))
}

fn binary_error(e: BinaryError) -> CmdError {
    match e {
        BinaryError::Missing => CmdError::No(None, "No such body part".into()),
        BinaryError::UnknownEncoding => {
            CmdError::no("UNKNOWN-CTE", "Unknown content transfer encoding")
        }
    }
}

/// Announces a literal of `data` and returns it, for its bytes to follow
/// in chunks. `binary`: a `literal8` if the bytes hold NUL (BINARY).
fn literal(out: &mut Vec<u8>, data: Data, raw: &[u8], binary: bool) -> Option<Literal> {
    let bytes = data.bytes(raw);
    // RFC 3516 §4.2: literal8 when the data holds NUL.
    let binary = binary && bytes.contains(&0);
    write_literal_start(out, bytes.len() as u64, binary);
    Some(Literal {
        data,
        done: 0,
        binary,
    })
}

/// Writes one item, or its name and the announcement of its literal,
/// whose bytes the caller writes from what is returned. What an item
/// needs was checked ([`check_items`]); should it still be missing, the
/// item comes out empty rather than half-written.
fn write_item(
    out: &mut Vec<u8>,
    item: &FetchAttr,
    meta: Meta<'_>,
    // Size, date and MODSEQ from the store, and the most MODSEQ to show.
    (details, modseq_cap): (Option<&MessageMeta>, u64),
    raw: &[u8],
    st: Option<&MessageStructure>,
    utf8: bool,
) -> Option<Literal> {
    match item {
        FetchAttr::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
        FetchAttr::Flags => {
            out.extend_from_slice(format!("FLAGS ({})", flag_list(meta.flags)).as_bytes())
        }
        FetchAttr::InternalDate => out.extend_from_slice(
            format!(
                "INTERNALDATE \"{}\"",
                format_date_time(details.map_or(0, |d| d.internal_date))
            )
            .as_bytes(),
        ),
        FetchAttr::Rfc822Size => out
            .extend_from_slice(format!("RFC822.SIZE {}", details.map_or(0, |d| d.size)).as_bytes()),
        FetchAttr::Modseq => out.extend_from_slice(
            format!(
                "MODSEQ ({})",
                details
                    .map_or(modseq_cap, |d| d.modseq.min(modseq_cap))
                    .max(1)
            )
            .as_bytes(),
        ),
        FetchAttr::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            match st {
                Some(st) => structure::envelope(out, &st.envelope, utf8),
                None => out.extend_from_slice(b"NIL"),
            }
        }
        FetchAttr::Body | FetchAttr::BodyStructure => {
            let ext = *item == FetchAttr::BodyStructure;
            out.extend_from_slice(if ext {
                b"BODYSTRUCTURE " as &[u8]
            } else {
                b"BODY "
            });
            match st {
                Some(st) => structure::body(out, &st.root, ext, utf8),
                None => out.extend_from_slice(b"NIL"),
            }
        }
        FetchAttr::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            return literal(out, Data::Range(0..raw.len()), raw, false);
        }
        FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
            let header = *item == FetchAttr::Rfc822Header;
            out.extend_from_slice(if header {
                b"RFC822.HEADER " as &[u8]
            } else {
                b"RFC822.TEXT "
            });
            let data = match st {
                Some(st) => Data::of(if header { st.root.header } else { st.root.body }, raw),
                None => Data::Owned(Vec::new()),
            };
            return literal(out, data, raw, false);
        }
        FetchAttr::Section {
            section,
            partial: p,
            ..
        } => {
            out.extend_from_slice(b"BODY[");
            out.extend_from_slice(&section_name(section));
            out.push(b']');
            if let Some((origin, _)) = p {
                out.extend_from_slice(format!("<{origin}>").as_bytes());
            }
            out.push(b' ');
            let data = if whole(section) {
                Some(Data::Range(0..raw.len()))
            } else {
                st.and_then(|st| section::body_section(raw, st, section))
            };
            let data = data.unwrap_or(Data::Owned(Vec::new()));
            return literal(out, data.partial(*p), raw, false);
        }
        FetchAttr::Binary {
            part, partial: p, ..
        } => {
            let name: Vec<String> = part.iter().map(u32::to_string).collect();
            out.extend_from_slice(format!("BINARY[{}]", name.join(".")).as_bytes());
            if let Some((origin, _)) = p {
                out.extend_from_slice(format!("<{origin}>").as_bytes());
            }
            out.push(b' ');
            let data = st
                .and_then(|st| section::binary_section(raw, st, part).ok())
                .unwrap_or(Data::Owned(Vec::new()));
            return literal(out, data.partial(*p), raw, true);
        }
        FetchAttr::BinarySize(part) => {
            let size = st
                .and_then(|st| section::binary_section(raw, st, part).ok())
                .map_or(0, |d| d.bytes(raw).len());
            let name: Vec<String> = part.iter().map(u32::to_string).collect();
            out.extend_from_slice(format!("BINARY.SIZE[{}] {size}", name.join(".")).as_bytes());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(part: &[u32], text: Option<SectionSpec>) -> FetchAttr {
        FetchAttr::Section {
            section: Section {
                part: part.to_vec(),
                text,
            },
            partial: None,
            peek: true,
        }
    }

    #[test]
    fn what_each_item_loads() {
        let fields = SectionSpec::HeaderFields {
            not: false,
            fields: vec!["Subject".into()],
        };
        for (item, want) in [
            (FetchAttr::Flags, (RawPart::None, false)),
            (FetchAttr::Envelope, (RawPart::None, true)),
            (FetchAttr::BodyStructure, (RawPart::None, true)),
            (FetchAttr::Rfc822, (RawPart::Whole, false)),
            (section(&[], None), (RawPart::Whole, false)),
            (FetchAttr::Rfc822Header, (RawPart::Header, true)),
            (
                section(&[], Some(SectionSpec::Header)),
                (RawPart::Header, true),
            ),
            (section(&[], Some(fields.clone())), (RawPart::Header, true)),
            (
                section(&[], Some(SectionSpec::Text)),
                (RawPart::Whole, true),
            ),
            (section(&[1], None), (RawPart::Whole, true)),
            (section(&[1], Some(fields)), (RawPart::Whole, true)),
            (FetchAttr::Rfc822Text, (RawPart::Whole, true)),
        ] {
            assert_eq!(needs(&item), want, "{item:?}");
        }
    }
}
