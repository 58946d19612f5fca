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
//! messages and sets `\Seen`, then each [`FetchJob::step`] writes
//! messages until [`OUTPUT_CHUNK`] bytes are pending, and the network
//! loop sends them before the next step. So `FETCH 1:* BODY[]` on a large
//! mailbox never holds more than about one chunk plus one message;
//! a message's bytes are loaded once and copied once, into the output
//! (sections are slices of the loaded message, not copies).

mod section;
mod structure;

use std::borrow::Cow;
use std::sync::Arc;

use mailgate_imap_proto::response::{write_literal, write_string};
use mailgate_imap_proto::{
    format_date_time, format_set, FetchAttr, Section, SectionSpec, SequenceSet,
};
use mailgate_store::{FlagChange, MailboxId, MessageMeta, MessageStructure, Uid};

use super::flag_list;
use crate::session::{CmdError, Done, Session};
use section::BinaryError;

/// Whether the item needs the raw message / the saved structure.
fn needs(item: &FetchAttr) -> (bool, bool) {
    match item {
        FetchAttr::Rfc822 | FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => (true, true),
        FetchAttr::Section { .. } | FetchAttr::Binary { .. } | FetchAttr::BinarySize(_) => {
            (true, true)
        }
        FetchAttr::Envelope | FetchAttr::Body | FetchAttr::BodyStructure => (false, true),
        _ => (false, false),
    }
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

/// A FETCH in progress: the messages still to answer.
#[derive(Debug)]
pub(crate) struct FetchJob {
    /// UID FETCH.
    pub(crate) uid: bool,
    items: Vec<FetchAttr>,
    /// Indexes into the snapshot, in order; `next` is the first not done.
    indexes: Vec<usize>,
    next: usize,
    seen_now: Vec<Uid>,
    want_raw: bool,
    want_structure: bool,
    mailbox: MailboxId,
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
        .fold((false, false), |a, b| (a.0 || b.0, a.1 || b.1));
    let store = Arc::clone(&s.ctx.store);
    let sel = s
        .selected
        .as_mut()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    let mut indexes = sel.resolve(set, uid)?;
    if let Some(cs) = changed_since {
        indexes.retain(|&i| sel.msgs[i].modseq > cs);
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
            .map(|&i| &sel.msgs[i])
            .filter(|m| !m.has_flag("\\Seen"))
            .map(|m| m.uid)
            .collect();
        if !unseen.is_empty() {
            for meta in store
                .store_flags(sel.id, &unseen, FlagChange::Add(vec!["\\Seen".into()]))
                .await?
            {
                if let Some(i) = sel.index_of(meta.uid) {
                    seen_now.push(meta.uid);
                    sel.msgs[i] = meta;
                }
            }
        }
    }
    Ok(FetchJob {
        uid,
        items,
        indexes,
        next: 0,
        seen_now,
        want_raw,
        want_structure,
        mailbox: sel.id,
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
        let sel = s
            .selected
            .as_ref()
            .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
        while self.next < self.indexes.len() {
            if out.len() >= OUTPUT_CHUNK {
                return Ok(None);
            }
            let i = self.indexes[self.next];
            self.next += 1;
            let Some(meta) = sel.msgs.get(i) else {
                continue;
            };
            self.one(store.as_ref(), i, meta, utf8, out).await?;
        }
        Ok(Some(Done::ok(if self.uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        })))
    }

    async fn one(
        &self,
        store: &dyn mailgate_store::Store,
        i: usize,
        meta: &MessageMeta,
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CmdError> {
        let (mailbox, items, seen_now) = (self.mailbox, &self.items, &self.seen_now);
        let (want_raw, want_structure) = (self.want_raw, self.want_structure);
        let raw = if want_raw {
            match store.message_raw(mailbox, meta.uid).await? {
                Some(raw) => Some(raw),
                // Expunged by another session, not yet announced: RFC 9051
                // §7.5.1 lets us send nothing for it.
                None => return Ok(()),
            }
        } else {
            None
        };
        let st = if want_structure {
            match store.message_structure(mailbox, meta.uid).await? {
                Some(st) => Some(st),
                None => return Ok(()),
            }
        } else {
            None
        };
        // Written straight into `out`; taken back if an item fails.
        let rollback = out.len();
        out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
        let mut flags_sent = false;
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                out.push(b' ');
            }
            flags_sent |= *item == FetchAttr::Flags;
            if let Err(e) = write_item(out, item, meta, raw.as_deref(), st.as_ref(), utf8) {
                out.truncate(rollback);
                return Err(e);
            }
        }
        // RFC 9051 §6.4.5: the implicit \Seen change is reported.
        if !flags_sent && seen_now.contains(&meta.uid) {
            out.extend_from_slice(format!(" FLAGS ({})", flag_list(&meta.flags)).as_bytes());
        }
        out.extend_from_slice(b")\r\n");
        Ok(())
    }
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

fn partial(bytes: &[u8], partial: Option<(u64, u64)>) -> &[u8] {
    match partial {
        None => bytes,
        Some((origin, count)) => {
            let start = usize::try_from(origin)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = start
                .saturating_add(usize::try_from(count).unwrap_or(usize::MAX))
                .min(bytes.len());
            &bytes[start..end]
        }
    }
}

fn missing(what: &str) -> CmdError {
    CmdError::Server(format!("{what} not loaded"))
}

fn write_item(
    out: &mut Vec<u8>,
    item: &FetchAttr,
    meta: &MessageMeta,
    raw: Option<&[u8]>,
    st: Option<&MessageStructure>,
    utf8: bool,
) -> Result<(), CmdError> {
    match item {
        FetchAttr::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
        FetchAttr::Flags => {
            out.extend_from_slice(format!("FLAGS ({})", flag_list(&meta.flags)).as_bytes())
        }
        FetchAttr::InternalDate => out.extend_from_slice(
            format!("INTERNALDATE \"{}\"", format_date_time(meta.internal_date)).as_bytes(),
        ),
        FetchAttr::Rfc822Size => {
            out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes())
        }
        FetchAttr::Modseq => out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes()),
        FetchAttr::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            structure::envelope(out, &st.ok_or_else(|| missing("structure"))?.envelope, utf8);
        }
        FetchAttr::Body | FetchAttr::BodyStructure => {
            let ext = *item == FetchAttr::BodyStructure;
            out.extend_from_slice(if ext {
                b"BODYSTRUCTURE " as &[u8]
            } else {
                b"BODY "
            });
            structure::body(
                out,
                &st.ok_or_else(|| missing("structure"))?.root,
                ext,
                utf8,
            );
        }
        FetchAttr::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            write_literal(out, raw.ok_or_else(|| missing("message"))?);
        }
        FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
            let (raw, st) = (
                raw.ok_or_else(|| missing("message"))?,
                st.ok_or_else(|| missing("structure"))?,
            );
            let (name, range) = if *item == FetchAttr::Rfc822Header {
                ("RFC822.HEADER ", st.root.header)
            } else {
                ("RFC822.TEXT ", st.root.body)
            };
            out.extend_from_slice(name.as_bytes());
            write_literal(out, range.slice(raw));
        }
        FetchAttr::Section {
            section,
            partial: p,
            ..
        } => {
            let (raw, st) = (
                raw.ok_or_else(|| missing("message"))?,
                st.ok_or_else(|| missing("structure"))?,
            );
            out.extend_from_slice(b"BODY[");
            out.extend_from_slice(&section_name(section));
            out.push(b']');
            if let Some((origin, _)) = p {
                out.extend_from_slice(format!("<{origin}>").as_bytes());
            }
            out.push(b' ');
            let bytes = section::body_section(raw, st, section).unwrap_or_default();
            write_literal(out, partial(&bytes, *p));
        }
        FetchAttr::Binary {
            part, partial: p, ..
        } => {
            let (raw, st) = (
                raw.ok_or_else(|| missing("message"))?,
                st.ok_or_else(|| missing("structure"))?,
            );
            let bytes = binary(raw, st, part)?;
            let name: Vec<String> = part.iter().map(u32::to_string).collect();
            out.extend_from_slice(format!("BINARY[{}]", name.join(".")).as_bytes());
            if let Some((origin, _)) = p {
                out.extend_from_slice(format!("<{origin}>").as_bytes());
            }
            out.push(b' ');
            let bytes = partial(&bytes, *p);
            // RFC 3516 §4.2: literal8 when the data holds NUL.
            if bytes.contains(&0) {
                out.push(b'~');
            }
            write_literal(out, bytes);
        }
        FetchAttr::BinarySize(part) => {
            let (raw, st) = (
                raw.ok_or_else(|| missing("message"))?,
                st.ok_or_else(|| missing("structure"))?,
            );
            let bytes = binary(raw, st, part)?;
            let name: Vec<String> = part.iter().map(u32::to_string).collect();
            out.extend_from_slice(
                format!("BINARY.SIZE[{}] {}", name.join("."), bytes.len()).as_bytes(),
            );
        }
    }
    Ok(())
}

fn binary<'a>(
    raw: &'a [u8],
    st: &MessageStructure,
    part: &[u32],
) -> Result<Cow<'a, [u8]>, CmdError> {
    match section::binary_section(raw, st, part) {
        Ok(b) => Ok(b),
        Err(BinaryError::Missing) => Err(CmdError::No(None, "No such body part".into())),
        Err(BinaryError::UnknownEncoding) => Err(CmdError::no(
            "UNKNOWN-CTE",
            "Unknown content transfer encoding",
        )),
    }
}
