//! Plain data passed through the [`crate::Store`] trait. No engine types.

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::structure::MessageStructure;

/// An account's id in the store.
pub type AccountId = i64;
/// A mailbox's id in the store (unique across accounts).
pub type MailboxId = i64;

/// A message's UID within one mailbox (RFC 9051 §2.3.1.1): never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(pub NonZeroU32);

impl Uid {
    /// A UID from a number; `None` for zero.
    pub fn new(n: u32) -> Option<Uid> {
        NonZeroU32::new(n).map(Uid)
    }
    /// The number.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A local domain kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// The domain, lower-case.
    pub name: String,
    /// Where mail for unknown local parts goes, if anywhere.
    pub catch_all: Option<String>,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Its address, lower-case.
    pub address: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Storage quota in bytes, if any.
    pub quota_bytes: Option<u64>,
}

/// One of an account's Sieve scripts, as listed (ManageSieve
/// LISTSCRIPTS, `mailgate sieve list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveScriptInfo {
    /// Its name (see [`crate::sieve_script_name_ok`]).
    pub name: String,
    /// Whether it is the account's active script (the one run at delivery).
    pub active: bool,
    /// Its size in bytes (UTF-8).
    pub size: u64,
}

/// An account's last recorded login (`mailgate user show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastLogin {
    /// When, in seconds since the Unix epoch.
    pub at: i64,
    /// The client's IP address.
    pub client: String,
}

/// An alias and what it expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The alias address, lower-case.
    pub alias: String,
    /// The addresses it expands to.
    pub targets: Vec<String>,
}

/// The special-use attribute of a mailbox (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\Sent`
    Sent,
    /// `\Drafts`
    Drafts,
    /// `\Trash`
    Trash,
    /// `\Junk`
    Junk,
    /// `\Archive`
    Archive,
}

impl SpecialUse {
    /// The RFC 6154 attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
    /// Parses an attribute such as `\Sent` (case-insensitive).
    pub fn from_attribute(s: &str) -> Option<SpecialUse> {
        [
            SpecialUse::Sent,
            SpecialUse::Drafts,
            SpecialUse::Trash,
            SpecialUse::Junk,
            SpecialUse::Archive,
        ]
        .into_iter()
        .find(|u| u.attribute().eq_ignore_ascii_case(s))
    }
}

/// The mailboxes every new account gets, with their special use.
pub const DEFAULT_MAILBOXES: &[(&str, Option<SpecialUse>)] = &[
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

/// A mailbox and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Its id.
    pub id: MailboxId,
    /// The owning account.
    pub account: AccountId,
    /// Full name, hierarchy separated by `/`; `INBOX` is always upper-case.
    pub name: String,
    /// Special use, if any.
    pub special_use: Option<SpecialUse>,
    /// Whether the user subscribed to it.
    pub subscribed: bool,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// The UID the next message will get.
    pub uid_next: u32,
    /// The highest MODSEQ of any change in this mailbox (RFC 7162).
    pub highest_modseq: u64,
    /// Number of messages.
    pub messages: u32,
    /// Number of messages without `\Seen`.
    pub unseen: u32,
    /// Sum of the message sizes in bytes.
    pub size: u64,
}

/// A message to store: its bytes, when it arrived, and its structure.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The whole message as it will be served (trace headers included).
    pub raw: Arc<Vec<u8>>,
    /// The internal date (arrival time), seconds since the Unix epoch.
    pub internal_date: i64,
    /// The parsed structure; computed by the caller with
    /// [`MessageStructure::parse`] so that it can happen outside the writer.
    pub structure: MessageStructure,
}

/// Where one copy of a delivered message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTarget {
    /// The account.
    pub account: AccountId,
    /// The mailbox name; falls back to INBOX if it does not exist.
    pub mailbox: String,
    /// Initial flags (system flags like `\Seen` and keywords).
    pub flags: Vec<String>,
}

/// Where one copy of a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The account.
    pub account: AccountId,
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The UID the message got there.
    pub uid: Uid,
}

/// One message entry in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Its UID.
    pub uid: Uid,
    /// Flags and keywords, e.g. `\Seen`, `$Forwarded`; sorted, no duplicates.
    pub flags: Vec<String>,
    /// Arrival time, seconds since the Unix epoch.
    pub internal_date: i64,
    /// Size in bytes of the raw message.
    pub size: u64,
    /// The MODSEQ of the last change to this entry.
    pub modseq: u64,
    /// The stored body's id (the same for every copy of one delivery).
    pub blob: i64,
}

impl MessageMeta {
    /// Whether the entry carries this flag (case-insensitive).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// How much of each message's bytes [`crate::MailStore::fetch_messages`]
/// loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RawPart {
    /// None.
    None,
    /// The header block: up to and including the first empty line
    /// ([`crate::structure::header_block_len`]; the whole message if it
    /// has none).
    Header,
    /// The whole message, as delivered.
    Whole,
}

/// One message as [`crate::MailStore::fetch_messages`] returns it: what
/// was asked for, `None` for what was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// Its UID.
    pub uid: Uid,
    /// The raw bytes asked for (whole or the header block).
    pub raw: Option<Vec<u8>>,
    /// The structure saved at delivery.
    pub structure: Option<MessageStructure>,
}

/// How [`crate::MailStore::store_flags`] changes flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagChange {
    /// Replace all flags.
    Set(Vec<String>),
    /// Add these.
    Add(Vec<String>),
    /// Remove these.
    Remove(Vec<String>),
}

/// A committed change, announced to every open session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// New messages arrived in a mailbox.
    Appended {
        /// The account.
        account: AccountId,
        /// The mailbox.
        mailbox: MailboxId,
        /// Their UIDs.
        uids: Vec<Uid>,
    },
    /// Flags changed.
    FlagsChanged {
        /// The account.
        account: AccountId,
        /// The mailbox.
        mailbox: MailboxId,
        /// The UIDs whose flags changed.
        uids: Vec<Uid>,
    },
    /// Messages were removed.
    Expunged {
        /// The account.
        account: AccountId,
        /// The mailbox.
        mailbox: MailboxId,
        /// The UIDs removed.
        uids: Vec<Uid>,
    },
    /// Mailboxes were created, deleted or renamed.
    MailboxesChanged {
        /// The account.
        account: AccountId,
    },
}

/// One message for [`crate::MailStore::import_messages`]: a message moved
/// in from another server, with what its clients already know of it.
#[derive(Debug, Clone)]
pub struct ImportMessage {
    /// The message (its internal date is the one the old server gave it).
    pub message: NewMessage,
    /// Flags and keywords, e.g. `\Seen`, `$Forwarded`.
    pub flags: Vec<String>,
    /// The UID it had on the old server, to be kept if it can be (see
    /// [`crate::MailStore::import_messages`]).
    pub uid: Option<Uid>,
    /// The POP3 UIDL it had on the old server, served instead of
    /// mailgate's own (`<uidvalidity>.<uid>`) so that POP3 clients which
    /// "leave mail on the server" do not download it again. At most
    /// [`MAX_POP3_UIDL`] printable ASCII characters (RFC 1939 §7).
    pub pop3_uidl: Option<String>,
}

/// The longest POP3 unique-id (RFC 1939 §7: "one to 70 characters").
pub const MAX_POP3_UIDL: usize = 70;

/// Whether `s` can be a POP3 unique-id (RFC 1939 §7: 1 to 70 characters
/// in the range 0x21 to 0x7E).
pub fn valid_pop3_uidl(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_POP3_UIDL && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// A mailbox's UIDs and flags, compact: each distinct flag list once and
/// each message as its UID and the index of its list. What IMAP reads to
/// build a mailbox's view on SELECT ([`crate::MailStore::mailbox_flags`]):
/// a few bytes a message, not a [`MessageMeta`] each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxFlags {
    /// The mailbox's HIGHESTMODSEQ when it was read.
    pub highest_modseq: u64,
    /// Its UIDVALIDITY; 0 if the mailbox no longer exists.
    pub uid_validity: u32,
    /// The distinct flag lists, each sorted, no duplicates.
    pub lists: Vec<Vec<String>>,
    /// Each message's UID and the index of its list in `lists`,
    /// ascending by UID.
    pub messages: Vec<(Uid, u32)>,
}

impl MailboxFlags {
    /// The compact form of entries (ascending by UID).
    pub fn from_entries(
        highest_modseq: u64,
        uid_validity: u32,
        entries: impl IntoIterator<Item = (Uid, Vec<String>)>,
    ) -> MailboxFlags {
        let mut index: std::collections::HashMap<Vec<String>, u32> = Default::default();
        let mut out = MailboxFlags {
            highest_modseq,
            uid_validity,
            ..MailboxFlags::default()
        };
        for (uid, flags) in entries {
            let i = match index.get(&flags) {
                Some(&i) => i,
                None => {
                    let i = out.lists.len() as u32;
                    out.lists.push(flags.clone());
                    index.insert(flags, i);
                    i
                }
            };
            out.messages.push((uid, i));
        }
        out
    }
}

/// What changed in a mailbox after a MODSEQ
/// ([`crate::MailStore::changes_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxChanges {
    /// The mailbox's HIGHESTMODSEQ when the changes were read: applying
    /// them brings a view up to exactly this MODSEQ.
    pub highest_modseq: u64,
    /// The mailbox's UIDVALIDITY; 0 if the mailbox no longer exists. A
    /// view made under another UIDVALIDITY cannot apply the changes and
    /// reloads the whole list.
    pub uid_validity: u32,
    /// Entries with a higher MODSEQ (appended, or flags changed),
    /// ascending by UID.
    pub changed: Vec<MessageMeta>,
    /// UIDs expunged with a higher MODSEQ, ascending.
    pub expunged: Vec<Uid>,
}
