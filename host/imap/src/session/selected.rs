//! The selected mailbox as the client sees it: message sequence numbers
//! (positions in [`Selected::msgs`], UID order) and the flags and MODSEQ
//! last announced.
//!
//! RFC 9051 §2.3.1.2: sequence numbers change only when the server says
//! so (EXPUNGE / VANISHED). The snapshot is therefore only brought up to
//! date by [`Selected::sync`], which announces every difference it
//! applies: EXPUNGE (or VANISHED under QRESYNC) for removed messages,
//! FETCH FLAGS for changed flags, EXISTS for new messages.

use std::collections::BTreeSet;

use mailgate_imap_proto::{format_set, SequenceSet};
use mailgate_store::{MailStore, MailboxId, MessageMeta, StoreResult, Uid};

use super::CmdError;

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
    /// The messages as the client knows them, in sequence order.
    pub msgs: Vec<MessageMeta>,
    /// The store announced a change not yet applied.
    pub dirty: bool,
    /// The keywords announced in FLAGS so far.
    pub keywords: BTreeSet<String>,
    /// A keyword appeared that FLAGS has not announced yet.
    pub keywords_changed: bool,
}

impl Selected {
    /// Notes the flags of a message; a new keyword will be announced
    /// (RFC 9051 §7.3.5: the client must learn the mailbox's flags).
    pub fn note_flags(&mut self, flags: &[String]) {
        for f in flags.iter().filter(|f| !f.starts_with('\\')) {
            if self.keywords.insert(f.clone()) {
                self.keywords_changed = true;
            }
        }
    }

    /// Writes `FLAGS` and `PERMANENTFLAGS` if a keyword appeared.
    pub fn announce_keywords(&mut self, out: &mut Vec<u8>) {
        if !std::mem::take(&mut self.keywords_changed) {
            return;
        }
        let mut flags = crate::cmd::SYSTEM_FLAGS.to_string();
        for k in &self.keywords {
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
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// The largest UID, 0 if empty.
    pub fn largest_uid(&self) -> u32 {
        self.msgs.last().map_or(0, |m| m.uid.get())
    }

    /// The indexes a sequence set names. By UID: UIDs not present are
    /// ignored (RFC 9051 §6.4.9). By sequence number: a number beyond the
    /// last message is an error (RFC 9051 §6.4.5 "invalid sequence").
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, CmdError> {
        if uid {
            let largest = self.largest_uid();
            let ranges = set.resolved(largest);
            return Ok((0..self.msgs.len())
                .filter(|&i| {
                    let u = self.msgs[i].uid.get();
                    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
                })
                .collect());
        }
        let count = self.msgs.len() as u32;
        let ranges = set.resolved(count);
        if ranges.iter().any(|&(lo, hi)| lo == 0 || hi > count) {
            return Err(CmdError::Bad("Invalid message sequence number".into()));
        }
        let mut out: Vec<usize> = ranges
            .into_iter()
            .flat_map(|(lo, hi)| (lo - 1) as usize..hi as usize)
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Brings the snapshot up to date with the store, writing the
    /// untagged responses that tell the client. Expunges are held back
    /// (the messages stay in the snapshot) unless `allow_expunge`.
    pub async fn sync(
        &mut self,
        store: &dyn MailStore,
        allow_expunge: bool,
        condstore: bool,
        qresync: bool,
        out: &mut Vec<u8>,
    ) -> StoreResult<()> {
        if !self.dirty {
            return Ok(());
        }
        let current = store.list_messages(self.id).await?;
        let mut held_back = false;
        // Removed messages, from the highest sequence number down so that
        // each EXPUNGE's number is valid when the client reads it.
        if allow_expunge {
            let mut vanished = Vec::new();
            for i in (0..self.msgs.len()).rev() {
                let uid = self.msgs[i].uid;
                if current.binary_search_by_key(&uid, |m| m.uid).is_err() {
                    self.msgs.remove(i);
                    if qresync {
                        vanished.push(uid.get());
                    } else {
                        out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                    }
                }
            }
            if !vanished.is_empty() {
                vanished.reverse();
                out.extend_from_slice(
                    format!("* VANISHED {}\r\n", format_set(vanished)).as_bytes(),
                );
            }
        }
        // Flag changes, written after any new keyword is announced.
        let mut fetches = Vec::new();
        let mut changed_flags = Vec::new();
        for (i, m) in self.msgs.iter_mut().enumerate() {
            match current.binary_search_by_key(&m.uid, |c| c.uid) {
                Ok(j) if current[j].modseq != m.modseq => {
                    let c = &current[j];
                    if c.flags != m.flags {
                        let modseq = if condstore {
                            format!(" MODSEQ ({})", c.modseq)
                        } else {
                            String::new()
                        };
                        fetches.extend_from_slice(
                            format!(
                                "* {} FETCH (UID {} FLAGS ({}){modseq})\r\n",
                                i + 1,
                                c.uid,
                                c.flags.join(" ")
                            )
                            .as_bytes(),
                        );
                        changed_flags.push(c.flags.clone());
                    }
                    *m = c.clone();
                }
                Ok(_) => {}
                Err(_) => held_back = true,
            }
        }
        let largest = self.largest_uid();
        for flags in changed_flags {
            self.note_flags(&flags);
        }
        for c in current.iter().filter(|c| c.uid.get() > largest) {
            self.note_flags(&c.flags);
        }
        self.announce_keywords(out);
        out.extend_from_slice(&fetches);
        // New messages.
        let before = self.msgs.len();
        self.msgs
            .extend(current.iter().filter(|c| c.uid.get() > largest).cloned());
        if self.msgs.len() != before {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.msgs.len()).as_bytes());
        }
        self.dirty = held_back;
        Ok(())
    }
}
