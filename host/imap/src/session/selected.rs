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
        for (i, before, m) in d.changed {
            // Same flags (another MODSEQ only), or this session knows a
            // newer entry of its own making: nothing to tell.
            if before.flags == m.flags || before.modseq > m.modseq {
                continue;
            }
            let modseq = if condstore {
                format!(" MODSEQ ({})", m.modseq)
            } else {
                String::new()
            };
            out.extend_from_slice(
                format!(
                    "* {} FETCH (UID {} FLAGS ({}){modseq})\r\n",
                    i + 1,
                    m.uid,
                    m.flags.join(" ")
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
