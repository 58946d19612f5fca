//! The maildrop of a session: INBOX as it was at login, with DELE marks.
//!
//! RFC 1939 §5: "Each message in the maildrop is assigned a message-number
//! [...] the first message in the maildrop is message 1, the second is
//! message 2, and so on" and "messages marked as deleted are not counted"
//! in STAT and LIST. RFC 1939 §7 (UIDL): the unique-id "persists across
//! sessions"; ours is `<uidvalidity>.<uid>` of the store entry, which only
//! changes if the mailbox is recreated (and then must change). A message
//! moved in from another server (`mailgate import`) keeps the unique-id it
//! had there, so that clients leaving mail on the server do not download
//! it again ([`Maildrop::with_uidls`]).

use mailgate_store::{MailboxId, MessageMeta, Uid};

use crate::locks::MaildropGuard;

/// One message of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its UID in INBOX.
    pub uid: Uid,
    /// Its size in octets, as stored.
    pub size: u64,
    /// Whether DELE marked it.
    pub deleted: bool,
    /// The unique-id kept from another server, if any.
    pub uidl: Option<String>,
}

/// Why a message number names no message the client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Zero, or beyond the last message.
    #[error("no such message")]
    NoSuchMessage,
    /// The message is marked as deleted.
    #[error("message {0} already deleted")]
    Deleted(u32),
}

/// The open maildrop: holds the lock for as long as it lives.
#[derive(Debug)]
pub struct Maildrop {
    _lock: MaildropGuard,
    mailbox: MailboxId,
    uid_validity: u32,
    entries: Vec<Entry>,
}

impl Maildrop {
    /// A maildrop of `messages` (sorted by UID here, whatever order they
    /// come in), under the lock `lock`.
    pub fn new(
        lock: MaildropGuard,
        mailbox: MailboxId,
        uid_validity: u32,
        messages: &[MessageMeta],
    ) -> Maildrop {
        let mut entries: Vec<Entry> = messages
            .iter()
            .map(|m| Entry {
                uid: m.uid,
                size: m.size,
                deleted: false,
                uidl: None,
            })
            .collect();
        entries.sort_by_key(|e| e.uid);
        Maildrop {
            _lock: lock,
            mailbox,
            uid_validity,
            entries,
        }
    }

    /// The maildrop with the unique-ids kept from another server
    /// ([`mailgate_store::MailStore::pop3_uidls`]) served instead of ours.
    pub fn with_uidls(mut self, uidls: Vec<(Uid, String)>) -> Maildrop {
        for (uid, uidl) in uidls {
            if let Ok(i) = self.entries.binary_search_by_key(&uid, |e| e.uid) {
                self.entries[i].uidl = Some(uidl);
            }
        }
        self
    }

    /// Whether the maildrop lock still holds, asking the store (see
    /// [`MaildropGuard::verify`]).
    pub async fn lock_held(&self) -> bool {
        self._lock.verify().await
    }

    /// Ends the maildrop and gives its lock back, returning once the
    /// store has (see [`MaildropGuard::release`]).
    pub async fn release_lock(self) {
        self._lock.release().await;
    }

    /// The INBOX's id.
    pub fn mailbox(&self) -> MailboxId {
        self.mailbox
    }

    /// Number and total size of the messages not marked as deleted (STAT).
    pub fn stat(&self) -> (usize, u64) {
        self.visible()
            .fold((0, 0), |(n, size), (_, e)| (n + 1, size + e.size))
    }

    /// The messages not marked as deleted, with their numbers.
    pub fn visible(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.all().filter(|(_, e)| !e.deleted)
    }

    /// The message numbered `n`, unless it does not exist or is deleted.
    pub fn get(&self, n: u32) -> Result<&Entry, LookupError> {
        let e = self.entry(n).ok_or(LookupError::NoSuchMessage)?;
        if e.deleted {
            return Err(LookupError::Deleted(n));
        }
        Ok(e)
    }

    /// Marks message `n` as deleted.
    pub fn mark_deleted(&mut self, n: u32) -> Result<(), LookupError> {
        self.get(n)?;
        if let Some(e) = n
            .checked_sub(1)
            .and_then(|i| self.entries.get_mut(i as usize))
        {
            e.deleted = true;
        }
        Ok(())
    }

    /// Unmarks every message (RSET).
    pub fn reset(&mut self) {
        self.entries.iter_mut().for_each(|e| e.deleted = false);
    }

    /// The UIDs marked as deleted, in order.
    pub fn marked(&self) -> Vec<Uid> {
        self.entries
            .iter()
            .filter(|e| e.deleted)
            .map(|e| e.uid)
            .collect()
    }

    /// The UIDL unique-id of an entry: the one kept from another server,
    /// else `<uidvalidity>.<uid>` (RFC 1939 §7: 1 to 70 characters in the
    /// range 0x21 to 0x7E; the store checks kept ones).
    pub fn unique_id(&self, e: &Entry) -> String {
        match &e.uidl {
            Some(u) => u.clone(),
            None => format!("{}.{}", self.uid_validity, e.uid),
        }
    }

    fn entry(&self, n: u32) -> Option<&Entry> {
        n.checked_sub(1).and_then(|i| self.entries.get(i as usize))
    }

    fn all(&self) -> impl Iterator<Item = (u32, &Entry)> {
        // A store never holds 2^32 messages in one mailbox, but be exact.
        self.entries
            .iter()
            .enumerate()
            .map_while(|(i, e)| u32::try_from(i + 1).ok().map(|n| (n, e)))
    }
}
