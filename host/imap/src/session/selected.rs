//! The selected mailbox as this session's client sees it.
//!
//! The message list itself is the mailbox's [`SharedView`], held once
//! for every session that has the mailbox selected (`crate::view`). What
//! is this session's own is the version of that list its client was last
//! told about ([`Selected::msgs`], an `Arc` shared with the view and the
//! other sessions as long as nothing changed) and the keywords announced
//! in FLAGS.
//!
//! RFC 9051 §2.3.1.2: sequence numbers change only when the server says
//! so (EXPUNGE / VANISHED). [`Selected::msgs`] therefore moves to a newer
//! version only in [`Selected::sync`], which announces the difference:
//! EXPUNGE (or VANISHED under QRESYNC) for removed messages, FETCH FLAGS
//! for changed flags, EXISTS for new messages. When expunges may not be
//! announced (during FETCH, STORE or SEARCH by sequence number, RFC 9051
//! §7.5.1), the session stays on its version and announces everything at
//! the next command that allows it.

use std::collections::BTreeSet;
use std::sync::Arc;

use mailgate_imap_proto::{format_set, SequenceSet};
use mailgate_store::{MailStore, MailboxId, MessageMeta, StoreResult, Uid};

use super::CmdError;
use crate::view::{diff, SharedView, Snapshot};

/// Sizes, internal dates and MODSEQs of some messages, read from the
/// store for one command ([`Selected::details`]), in UID order.
#[derive(Debug, Default)]
pub struct Details(Vec<MessageMeta>);

impl Details {
    /// The entries read, in UID order.
    pub fn iter(&self) -> impl Iterator<Item = &MessageMeta> + '_ {
        self.0.iter()
    }

    /// The entry of `uid`, if it was read.
    pub fn of(&self, uid: Uid) -> Option<&MessageMeta> {
        self.0
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.0[i])
    }
}

/// The selected mailbox.
#[derive(Debug)]
pub struct Selected {
    /// The store's id.
    pub id: MailboxId,
    /// Its name (UTF-8).
    pub name: String,
    /// EXAMINE: nothing may change through this session.
    pub read_only: bool,
    /// UIDVALIDITY at selection.
    pub uid_validity: u32,
    /// The mailbox's list, shared with the other sessions.
    pub view: Arc<SharedView>,
    /// The version of the list the client knows, in sequence order.
    pub msgs: Arc<Snapshot>,
    /// The keywords announced in FLAGS so far.
    pub keywords: Arc<BTreeSet<String>>,
}

impl Selected {
    /// A selection of `view` at version `msgs`, whose keywords the SELECT
    /// response announced.
    pub fn new(
        id: MailboxId,
        name: String,
        read_only: bool,
        uid_validity: u32,
        view: Arc<SharedView>,
        msgs: Arc<Snapshot>,
    ) -> Selected {
        let keywords = Arc::clone(msgs.keywords());
        Selected {
            id,
            name,
            read_only,
            uid_validity,
            view,
            msgs,
            keywords,
        }
    }

    /// Takes newer entries of this session's own making (STORE, `\Seen`
    /// set by FETCH) into the client's version without moving any
    /// sequence number.
    pub fn note_own(&mut self, metas: &[MessageMeta]) {
        if !metas.is_empty() {
            self.msgs = Arc::new(self.msgs.with_entries(metas));
        }
    }

    /// Writes `FLAGS` and `PERMANENTFLAGS` if the client's version holds a
    /// keyword not announced yet (RFC 9051 §7.3.5: the client must learn
    /// the mailbox's flags before a message carries a new one).
    pub fn announce_keywords(&mut self, out: &mut Vec<u8>) {
        let now = self.msgs.keywords();
        if Arc::ptr_eq(now, &self.keywords) || **now == *self.keywords {
            return;
        }
        self.keywords = Arc::clone(now);
        let mut flags = crate::cmd::SYSTEM_FLAGS.to_string();
        for k in self.keywords.iter() {
            flags.push(' ');
            flags.push_str(k);
        }
        out.extend_from_slice(format!("* FLAGS ({flags})\r\n").as_bytes());
        if !self.read_only {
            out.extend_from_slice(
                format!("* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted\r\n").as_bytes(),
            );
        }
    }

    /// The sizes, internal dates and MODSEQs of the messages at
    /// `indexes` of the client's version, read from the store (the view
    /// does not hold them). A message expunged in the store meanwhile has
    /// none.
    pub async fn details(&self, store: &dyn MailStore, indexes: &[usize]) -> StoreResult<Details> {
        let mut uids = self.msgs.uids_of(indexes);
        uids.sort_unstable();
        uids.dedup();
        if uids.is_empty() {
            return Ok(Details::default());
        }
        Ok(Details(store.message_metas(self.id, &uids).await?))
    }

    /// [`Selected::details`] of every message of the client's version.
    pub async fn all_details(&self, store: &dyn MailStore) -> StoreResult<Details> {
        let mut all = store.list_messages(self.id).await?;
        all.sort_unstable_by_key(|m| m.uid);
        Ok(Details(all))
    }

    /// The index (sequence number - 1) of a UID, if present.
    pub fn index_of(&self, uid: Uid) -> Option<usize> {
        self.msgs.index_of(uid)
    }

    /// The largest UID, 0 if empty.
    pub fn largest_uid(&self) -> u32 {
        self.msgs.largest_uid()
    }

    /// The indexes a sequence set names, ascending. By UID: UIDs not
    /// present are ignored (RFC 9051 §6.4.9). By sequence number: a number
    /// beyond the last message is an error (RFC 9051 §6.4.5 "invalid
    /// sequence").
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, CmdError> {
        let mut out: Vec<usize> = Vec::new();
        if uid {
            for (lo, hi) in set.resolved(self.largest_uid()) {
                let start = self.msgs.lower_bound(lo);
                let end = match hi.checked_add(1) {
                    Some(after) => self.msgs.lower_bound(after),
                    None => self.msgs.len(),
                };
                out.extend(start..end);
            }
        } else {
            let count = self.msgs.len() as u32;
            let ranges = set.resolved(count);
            if ranges.iter().any(|&(lo, hi)| lo == 0 || hi > count) {
                return Err(CmdError::Bad("Invalid message sequence number".into()));
            }
            out.extend(
                ranges
                    .into_iter()
                    .flat_map(|(lo, hi)| (lo - 1) as usize..hi as usize),
            );
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Brings the client's version up to the mailbox's current one,
    /// writing the untagged responses that tell the client. If expunges
    /// are pending and `allow_expunge` is false, nothing moves.
    pub async fn sync(
        &mut self,
        store: &dyn MailStore,
        allow_expunge: bool,
        condstore: bool,
        qresync: bool,
        out: &mut Vec<u8>,
    ) -> StoreResult<()> {
        // Entries of our own making newer than the view: read it again.
        let force = self.msgs.highest_modseq() > self.view.snapshot().highest_modseq();
        let current = self.view.refresh(store, force).await?;
        if Arc::ptr_eq(&current, &self.msgs) {
            return Ok(());
        }
        let old = Arc::clone(&self.msgs);
        let d = diff(&old, &current);
        if !d.expunged.is_empty() && !allow_expunge {
            return Ok(());
        }
        // Flag changes, written after any new keyword is announced. The
        // view is at least as new as this session's own entries (it was
        // read again above if not), so a difference is news.
        let mut changed: Vec<(usize, Uid, &[String])> = d
            .changed
            .iter()
            .filter(|(_, before, m)| before.flags != m.flags)
            .map(|&(i, _, m)| (i, m.uid, m.flags))
            .collect();
        changed.sort_unstable_by_key(|c| c.0);
        // CONDSTORE: each FETCH carries the message's MODSEQ, read from
        // the store for the changed messages only.
        let details = if condstore && !changed.is_empty() {
            let uids: Vec<Uid> = {
                let mut u: Vec<Uid> = changed.iter().map(|c| c.1).collect();
                u.sort_unstable();
                u
            };
            Details(store.message_metas(self.id, &uids).await?)
        } else {
            Details::default()
        };
        // Removed messages, from the highest sequence number down so that
        // each EXPUNGE's number is valid when the client reads it.
        if qresync {
            if !d.expunged.is_empty() {
                let uids = d.expunged.iter().map(|e| e.1.get());
                out.extend_from_slice(format!("* VANISHED {}\r\n", format_set(uids)).as_bytes());
            }
        } else {
            for (i, _) in d.expunged.iter().rev() {
                out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
            }
        }
        let known = self.msgs.len() - d.expunged.len();
        self.msgs = Arc::clone(&current);
        // Flag changes, written after any new keyword is announced.
        self.announce_keywords(out);
        for (i, uid, flags) in changed {
            let modseq = match details.of(uid) {
                Some(m) if condstore => {
                    format!(
                        " MODSEQ ({})",
                        m.modseq.min(current.highest_modseq()).max(1)
                    )
                }
                _ if condstore => format!(" MODSEQ ({})", current.highest_modseq().max(1)),
                _ => String::new(),
            };
            out.extend_from_slice(
                format!(
                    "* {} FETCH (UID {} FLAGS ({}){modseq})\r\n",
                    i + 1,
                    uid,
                    flags.join(" ")
                )
                .as_bytes(),
            );
        }
        // New messages.
        if current.len() != known {
            out.extend_from_slice(format!("* {} EXISTS\r\n", current.len()).as_bytes());
        }
        Ok(())
    }
}
