//! The mail store of mailgate.
//!
//! # Role
//! This crate is the only code that touches the data directory. Everything
//! above it (SMTP, POP3, IMAP, delivery, the CLI) talks to the [`Store`]
//! trait, which says nothing about files or database engines, so that a
//! second backend (PostgreSQL, shared by several nodes) can be added next to
//! the embedded one without touching protocol code.
//!
//! # Invariants
//! - A call that stores or changes mail returns only once the change is
//!   durable (committed and synced to disk). Callers may acknowledge to the
//!   network (`250`, `OK`) as soon as it returns.
//! - A message delivered to several mailboxes is stored once; each mailbox
//!   holds an entry (UID, flags, MODSEQ) pointing at the stored body.
//! - UIDs in a mailbox only grow; a UID is never reused while the
//!   mailbox's UIDVALIDITY stays the same. Every change to a message entry
//!   (new, flags, expunge) takes a fresh MODSEQ from the mailbox's
//!   HIGHESTMODSEQ.
//! - Every committed change to a mailbox is announced through
//!   [`Store::subscribe`], so that open sessions can tell their clients.
//!
//! # Layout
//! - [`types`]: the plain data types passed through the trait.
//! - [`structure`]: the parsed structure of a message (envelope and MIME
//!   tree), computed once at delivery and saved with it.
//! - [`password`]: Argon2id password hashing and verification.
//! - [`queue`]: the outbound queue ([`OutboundQueue`], [`QueueStore`]),
//!   kept by the same backend.
//! - [`sqlite`]: the embedded backend (one SQLite database in WAL mode,
//!   a single writer thread that groups concurrent commits).
//! - [`postgres`]: the shared backend (one PostgreSQL database that
//!   several nodes use at once; versioned migrations, a change log read
//!   by every node).
//! - [`space`]: free space on the data directory's file system
//!   (`[limits] min_free_space`, the reserve file that keeps deleting
//!   possible on a full disk).
//! - [`SieveScripts`]: users' Sieve scripts (ManageSieve, `mailgate
//!   sieve`), kept by the same backend.
//! - [`backend`]: one handle on whichever backend `[store] backend`
//!   names ([`Backend`], [`open_backend`]), for the server and the CLI.
//! - [`kv`]: the policy plugins' key-value data ([`PluginKv`]) and the
//!   MTA-STS policy cache ([`MtaStsCache`]): the server's shared state
//!   beside the mail, kept by the same backend.
//! - [`backup`]: a consistent copy of the store taken while the server
//!   runs, and putting one back.
#![forbid(unsafe_code)]

pub mod backend;
pub mod backup;
pub mod error;
pub mod kv;
pub mod login_failures;
pub mod maildrop_lock;
pub mod migrate;
pub mod password;
pub mod postgres;
pub mod queue;
pub mod quota;
pub mod space;
pub mod sqlite;
pub mod structure;
pub mod types;

pub use backend::{open_backend, Backend, BackendConfig, BackendKind};
pub use error::{StoreError, StoreResult};
pub use kv::{KvWriteError, MtaStsCache, MtaStsEntry, PluginKv, PluginKvEntry};
pub use login_failures::{LoginFailures, LoginStanding};
pub use maildrop_lock::{InProcessLocks, MaildropGuard, MaildropLocks};
pub use postgres::{PgConfig, PgStore};
pub use queue::{OutboundQueue, QueueStore};
pub use sqlite::SqliteStore;
pub use structure::MessageStructure;
pub use types::*;

use async_trait::async_trait;
use tokio::sync::broadcast;

/// Accounts, domains and aliases: who exists and where their mail goes.
///
/// Addresses are compared case-insensitively in the domain part and in the
/// local part (as every mainstream server does); implementations store them
/// lower-cased.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The local domains kept in the store (the config file may name more).
    async fn list_domains(&self) -> StoreResult<Vec<DomainInfo>>;
    /// Adds a local domain; adding one that exists is not an error.
    async fn add_domain(&self, domain: &str) -> StoreResult<()>;
    /// Removes a local domain. Accounts in it are kept (and still receive
    /// mail only if the domain is also listed in the config).
    async fn delete_domain(&self, domain: &str) -> StoreResult<bool>;
    /// Sets or clears the catch-all target of a domain: mail for unknown
    /// local parts goes to `target` instead of being refused.
    async fn set_catch_all(&self, domain: &str, target: Option<&str>) -> StoreResult<()>;

    /// Creates an account with its standard mailboxes (INBOX, Sent, Drafts,
    /// Trash, Junk, Archive). `password_hash` is a PHC string (see
    /// [`password::hash_password`]).
    async fn create_account(&self, address: &str, password_hash: &str) -> StoreResult<AccountId>;
    /// Replaces the password hash of an account. `false` if there is none.
    async fn set_password_hash(&self, address: &str, password_hash: &str) -> StoreResult<bool>;
    /// Sets (`Some(bytes)`) or removes (`None`) an account's storage quota
    /// (IMAP QUOTA, RFC 9208; LMTP refuses over-quota deliveries). `false`
    /// if there is no such account.
    async fn set_quota(&self, address: &str, quota_bytes: Option<u64>) -> StoreResult<bool> {
        let _ = (address, quota_bytes);
        Err(StoreError::Invalid(
            "quotas are not supported by this store".into(),
        ))
    }
    /// Deletes an account with all its mailboxes and messages.
    async fn delete_account(&self, address: &str) -> StoreResult<bool>;
    /// All accounts, sorted by address.
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// The account with exactly this address (no alias or plus expansion).
    async fn account(&self, address: &str) -> StoreResult<Option<Account>>;
    /// The account with this id.
    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<Account>>;

    /// Adds (or replaces) an alias that expands to `targets`.
    async fn set_alias(&self, alias: &str, targets: &[String]) -> StoreResult<()>;
    /// Removes an alias. `false` if there was none.
    async fn delete_alias(&self, alias: &str) -> StoreResult<bool>;
    /// All aliases, sorted.
    async fn list_aliases(&self) -> StoreResult<Vec<Alias>>;
    /// The targets of one alias, if it exists.
    async fn alias(&self, alias: &str) -> StoreResult<Option<Vec<String>>>;
    /// Records that `address` logged in at `at` (seconds since the Unix
    /// epoch) from `client` (an IP address); replaces the previous record.
    /// Nothing happens for an unknown address.
    async fn record_login(&self, address: &str, at: i64, client: &str) -> StoreResult<()> {
        let _ = (address, at, client);
        Ok(())
    }
    /// The last recorded login of `address`, if any.
    async fn last_login(&self, address: &str) -> StoreResult<Option<LastLogin>> {
        let _ = address;
        Ok(None)
    }
}

/// Mailboxes and the messages in them.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// The mailboxes of an account, sorted by name.
    async fn list_mailboxes(&self, account: AccountId) -> StoreResult<Vec<MailboxInfo>>;
    /// One mailbox by name (`INBOX` matches case-insensitively).
    async fn mailbox(&self, account: AccountId, name: &str) -> StoreResult<Option<MailboxInfo>>;
    /// Creates a mailbox; fails with [`StoreError::Exists`] if it exists.
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<MailboxId>;

    /// Stores one message durably in each target mailbox (the body once)
    /// and returns where it went, in the order of `targets`. Targets whose
    /// mailbox does not exist fall back to the account's INBOX.
    async fn deliver(
        &self,
        message: NewMessage,
        targets: &[DeliveryTarget],
    ) -> StoreResult<Vec<Delivered>>;

    /// The entries of a mailbox in UID order.
    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageMeta>>;
    /// The entries of the messages `uids` (ascending) that exist, in UID
    /// order: what IMAP reads for RFC822.SIZE, INTERNALDATE, MODSEQ and
    /// the SEARCH/SORT keys on them, which its in-memory mailbox views do
    /// not hold. The default reads the whole list; a backend should look
    /// the UIDs up by index.
    async fn message_metas(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageMeta>> {
        let mut all = self.list_messages(mailbox).await?;
        all.retain(|m| uids.binary_search(&m.uid).is_ok());
        Ok(all)
    }
    /// The raw bytes of a message, as delivered.
    async fn message_raw(&self, mailbox: MailboxId, uid: Uid) -> StoreResult<Option<Vec<u8>>>;
    /// The parsed structure saved at delivery.
    async fn message_structure(
        &self,
        mailbox: MailboxId,
        uid: Uid,
    ) -> StoreResult<Option<MessageStructure>>;
    /// Several messages at once (IMAP FETCH and SEARCH): for each UID of
    /// `uids` that exists, in the order given, `raw` (nothing, the header
    /// block, or the whole message) and the saved structure if
    /// `structure`; UIDs that do not exist are left out. The default asks
    /// [`MailStore::message_raw`] and [`MailStore::message_structure`] per
    /// message; a backend should answer the whole batch in one round trip,
    /// and a header block without reading the body.
    async fn fetch_messages(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        raw: RawPart,
        structure: bool,
    ) -> StoreResult<Vec<FetchedMessage>> {
        let mut out = Vec::with_capacity(uids.len());
        for &uid in uids {
            let r = if raw == RawPart::None {
                None
            } else {
                match self.message_raw(mailbox, uid).await? {
                    Some(mut r) => {
                        if raw == RawPart::Header {
                            r.truncate(structure::header_block_len(&r));
                        }
                        Some(r)
                    }
                    None => continue,
                }
            };
            let st = if structure {
                match self.message_structure(mailbox, uid).await? {
                    Some(st) => Some(st),
                    None => continue,
                }
            } else {
                None
            };
            out.push(FetchedMessage {
                uid,
                raw: r,
                structure: st,
            });
        }
        Ok(out)
    }
    /// Changes the flags of some messages; returns the new state of each
    /// message that exists.
    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        change: FlagChange,
    ) -> StoreResult<Vec<MessageMeta>>;
    /// Changes flags like [`MailStore::store_flags`], but only of the
    /// messages whose MODSEQ is at most `unchanged_since` (RFC 7162
    /// §3.1.3 UNCHANGEDSINCE): the check and the change are one atomic
    /// operation, so a change by another session cannot fall between
    /// them. Returns the new state of each message that passed and the
    /// UIDs of those that failed the check (for `[MODIFIED]`). UIDs that
    /// do not exist are in neither list.
    async fn store_flags_unchanged_since(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        change: FlagChange,
        unchanged_since: u64,
    ) -> StoreResult<(Vec<MessageMeta>, Vec<Uid>)> {
        let _ = (mailbox, uids, change, unchanged_since);
        Err(unsupported("store_flags_unchanged_since"))
    }
    /// Removes messages from a mailbox, durably. A body no mailbox refers
    /// to any more is deleted. Returns the UIDs actually removed.
    async fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> StoreResult<Vec<Uid>>;

    /// Deletes a mailbox and its messages (not its children, which keep
    /// their names). INBOX cannot be deleted ([`StoreError::Invalid`]);
    /// a missing mailbox is [`StoreError::NotFound`].
    ///
    /// The methods from here to [`MailStore::expunged_since`] were added
    /// for IMAP; their default bodies refuse, so that test doubles which do
    /// not need them keep compiling.
    async fn delete_mailbox(&self, account: AccountId, name: &str) -> StoreResult<()> {
        let _ = (account, name);
        Err(unsupported("delete_mailbox"))
    }
    /// Renames a mailbox and every mailbox below it (`a/b` moves with
    /// `a`). Renaming INBOX follows RFC 9051 §6.3.6: its messages move to
    /// a new mailbox of that name and INBOX stays, empty. The target must
    /// not exist ([`StoreError::Exists`]); missing superiors of the target
    /// are created.
    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()> {
        let _ = (account, from, to);
        Err(unsupported("rename_mailbox"))
    }
    /// Subscribes or unsubscribes a name. A name may stay subscribed
    /// after its mailbox is deleted, and may be subscribed before it
    /// exists (RFC 9051 §6.3.7); unsubscribing a name that is neither
    /// subscribed nor a mailbox is [`StoreError::NotFound`].
    async fn set_subscribed(
        &self,
        account: AccountId,
        name: &str,
        subscribed: bool,
    ) -> StoreResult<()> {
        let _ = (account, name, subscribed);
        Err(unsupported("set_subscribed"))
    }
    /// The subscribed names of an account, sorted, whether or not a
    /// mailbox has the name (RFC 5258 `\NonExistent`). By default the
    /// subscribed mailboxes.
    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>> {
        Ok(self
            .list_mailboxes(account)
            .await?
            .into_iter()
            .filter(|m| m.subscribed)
            .map(|m| m.name)
            .collect())
    }
    /// Stores one message in one mailbox with these flags (IMAP APPEND);
    /// the internal date is the message's. Returns its UID.
    async fn append(
        &self,
        mailbox: MailboxId,
        message: NewMessage,
        flags: &[String],
    ) -> StoreResult<Uid> {
        let _ = (mailbox, message, flags);
        Err(unsupported("append"))
    }
    /// Stores several messages in one mailbox in one transaction (IMAP
    /// MULTIAPPEND, RFC 3502 §6.3.11: "If the server fails to append any
    /// message, none of the messages are appended"): either all are
    /// stored, with consecutive UIDs in the order given, or none. Returns
    /// their UIDs.
    async fn append_many(
        &self,
        mailbox: MailboxId,
        messages: Vec<(NewMessage, Vec<String>)>,
    ) -> StoreResult<Vec<Uid>> {
        let _ = (mailbox, messages);
        Err(unsupported("append_many"))
    }
    /// Copies messages to another mailbox of the same account (the bodies
    /// are shared, flags and internal date kept). Returns `(source UID,
    /// new UID)` for each message that existed, in the order given.
    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let _ = (from, uids, to);
        Err(unsupported("copy_messages"))
    }
    /// Moves messages in one transaction (RFC 6851: copy, then expunge
    /// from the source). Returns `(source UID, new UID)` pairs.
    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let _ = (from, uids, to);
        Err(unsupported("move_messages"))
    }
    /// The UIDs expunged from a mailbox with a MODSEQ above `modseq`
    /// (RFC 7162 QRESYNC VANISHED), ascending.
    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> StoreResult<Vec<Uid>> {
        let _ = (mailbox, modseq);
        Err(unsupported("expunged_since"))
    }
    /// A mailbox by name like [`MailStore::mailbox`], without its
    /// counters (`messages`, `unseen` and `size` are 0): what SELECT,
    /// APPEND and COPY need, read without going through the mailbox's
    /// messages. The default asks [`MailStore::mailbox`].
    async fn mailbox_state(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<MailboxInfo>> {
        self.mailbox(account, name).await
    }
    /// What changed in a mailbox after MODSEQ `modseq`, read in one
    /// transaction: the entries whose MODSEQ is higher (new ones and
    /// changed flags), the UIDs expunged with a higher MODSEQ, and the
    /// mailbox's HIGHESTMODSEQ and UIDVALIDITY at that moment (0 if it no
    /// longer exists). IMAP's shared mailbox views are brought up to date
    /// with it (a view at MODSEQ m applies the changes after m). The
    /// default reads the whole list ([`MailStore::list_messages`]) and
    /// reports no UIDVALIDITY, so a view reloads; a store with an index on
    /// MODSEQ answers in proportion to the changes.
    async fn changes_since(&self, mailbox: MailboxId, modseq: u64) -> StoreResult<MailboxChanges> {
        let all = self.list_messages(mailbox).await?;
        let expunged = self
            .expunged_since(mailbox, modseq)
            .await
            .unwrap_or_default();
        let highest_modseq = all.iter().map(|m| m.modseq).max().unwrap_or(0).max(modseq);
        Ok(MailboxChanges {
            highest_modseq,
            uid_validity: 0,
            changed: all.into_iter().filter(|m| m.modseq > modseq).collect(),
            expunged,
        })
    }

    /// A mailbox's UIDs and flags in compact form, with HIGHESTMODSEQ and
    /// UIDVALIDITY, read in one transaction (IMAP builds a mailbox's view
    /// from it). The default asks [`MailStore::changes_since`] from 0.
    async fn mailbox_flags(&self, mailbox: MailboxId) -> StoreResult<MailboxFlags> {
        let all = self.changes_since(mailbox, 0).await?;
        Ok(MailboxFlags::from_entries(
            all.highest_modseq,
            all.uid_validity,
            all.changed.into_iter().map(|m| (m.uid, m.flags)),
        ))
    }

    /// Gives an empty mailbox the UIDVALIDITY it had on another server
    /// (moving mail in, `mailgate import`), so that the UIDs kept by
    /// [`MailStore::import_messages`] mean to clients what they meant
    /// there. Atomic: either the mailbox holds no message and its
    /// UIDVALIDITY becomes `uid_validity`, its UIDNEXT 1 and its
    /// record of expunged UIDs and POP3 UIDLs is cleared, or
    /// (it holds messages: [`StoreError::Invalid`]) nothing changes.
    /// A mailbox with the same UIDVALIDITY already is left alone.
    async fn adopt_uid_validity(&self, mailbox: MailboxId, uid_validity: u32) -> StoreResult<()> {
        let _ = (mailbox, uid_validity);
        Err(unsupported("adopt_uid_validity"))
    }
    /// Stores messages moved in from another server in one mailbox, all
    /// or none (one transaction, shared with other writers through group
    /// commit). A message whose `uid` is at least the mailbox's UIDNEXT
    /// gets exactly that UID (UIDNEXT then moves past it); any other
    /// message gets the next UID, as a delivery would. So messages given
    /// in ascending UID order into a mailbox prepared by
    /// [`MailStore::adopt_uid_validity`] keep their UIDs, gaps included.
    /// POP3 UIDLs are kept with the entries ([`MailStore::pop3_uidls`]).
    /// Returns the UIDs given, in the order of `messages`, and announces
    /// them as one [`StoreEvent::Appended`], to other processes too.
    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<ImportMessage>,
    ) -> StoreResult<Vec<Uid>> {
        let _ = (mailbox, messages);
        Err(unsupported("import_messages"))
    }
    /// Raises a mailbox's UIDNEXT to at least `uid_next` (the old
    /// server's, whose last messages may have been expunged); never
    /// lowers it. Returns the UIDNEXT after the change.
    async fn raise_uid_next(&self, mailbox: MailboxId, uid_next: u32) -> StoreResult<u32> {
        let _ = (mailbox, uid_next);
        Err(unsupported("raise_uid_next"))
    }
    /// The POP3 UIDLs kept by [`MailStore::import_messages`] for
    /// entries of a mailbox, by UID; entries not listed use mailgate's
    /// own. An entry's UIDL goes with the entry (expunge removes it).
    async fn pop3_uidls(&self, mailbox: MailboxId) -> StoreResult<Vec<(Uid, String)>> {
        let _ = mailbox;
        Ok(Vec::new())
    }

    /// Whether new mail of about `incoming` bytes (0: unknown) may be
    /// stored now: [`StoreError::NoSpace`] when the data directory's free
    /// space would fall below `[limits] min_free_space` (see [`space`]).
    /// Cheap enough for every SMTP MAIL: no I/O most of the time. The
    /// store applies the same rule itself to deliveries, APPEND, COPY and
    /// imports; deleting is never refused. By default always `Ok`.
    fn check_space(&self, incoming: u64) -> StoreResult<()> {
        let _ = incoming;
        Ok(())
    }

    /// Change notifications: every committed change to any mailbox.
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent>;

    /// Verifies the store's integrity; an empty list means consistent.
    async fn check(&self) -> StoreResult<Vec<String>>;
}

/// Each account's Sieve scripts (RFC 5228), kept for ManageSieve (RFC
/// 5804), `mailgate sieve` and delivery, which runs the active one.
///
/// A script is stored as the text the user gave; whether it compiles is
/// the caller's business (the store does not know the language). At most
/// one script per account is active. Names are compared exactly (case
/// matters, as in Dovecot) and must pass [`sieve_script_name_ok`]
/// ([`StoreError::Invalid`] otherwise). Each method is one transaction;
/// deleting an account deletes its scripts.
#[async_trait]
pub trait SieveScripts: Send + Sync {
    /// The scripts of an account, sorted by name.
    async fn sieve_list(&self, account: AccountId) -> StoreResult<Vec<SieveScriptInfo>>;
    /// The text of one script, if it exists.
    async fn sieve_get(&self, account: AccountId, name: &str) -> StoreResult<Option<String>>;
    /// Stores a script, replacing the text of one with the same name (which
    /// keeps its active state) or adding a new, inactive one. Durable when
    /// it returns.
    async fn sieve_put(&self, account: AccountId, name: &str, script: &str) -> StoreResult<()>;
    /// Makes `name` the active script and every other one inactive (at
    /// most one active script per account); `None` deactivates. `false` if
    /// `name` does not exist (nothing changes then).
    async fn sieve_set_active(&self, account: AccountId, name: Option<&str>) -> StoreResult<bool>;
    /// Deletes a script. `false` if it does not exist; the active script
    /// cannot be deleted ([`StoreError::Active`]).
    async fn sieve_delete(&self, account: AccountId, name: &str) -> StoreResult<bool>;
    /// Renames a script, keeping its active state. `false` if `from` does
    /// not exist; [`StoreError::Exists`] if `to` does.
    async fn sieve_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<bool>;
    /// The active script: (name, text).
    async fn sieve_active(&self, account: AccountId) -> StoreResult<Option<(String, String)>>;
}

/// The longest Sieve script name, in characters (RFC 5804 §1.6 asks
/// servers to allow at least 128 octets; Dovecot allows 255 characters).
pub const MAX_SIEVE_SCRIPT_NAME: usize = 255;

/// Whether `name` may name a Sieve script (RFC 5804 §1.6): not empty, at
/// most [`MAX_SIEVE_SCRIPT_NAME`] characters, no control characters
/// (U+0000–U+001F, U+007F–U+009F) and no line or paragraph separator
/// (U+2028, U+2029).
pub fn sieve_script_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_SIEVE_SCRIPT_NAME
        && !name
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// The error of a trait method this store does not implement.
fn unsupported(what: &str) -> StoreError {
    StoreError::Invalid(format!("{what} is not supported by this store"))
}

/// What Sieve delivery remembers per account, apart from the scripts:
/// vacation replies sent, `duplicate` ids, failures reported. Each method
/// is one transaction; deleting an account forgets its rows. `now` and
/// expiries are seconds since the Unix epoch.
#[async_trait]
pub trait SieveMemory: Send + Sync {
    /// Whether a vacation reply may go to `sender` for `handle` now: `true`
    /// (and remembered for `period` seconds) when none went within the
    /// period, `false` otherwise (RFC 5230 §4.2).
    async fn sieve_vacation_due(
        &self,
        account: AccountId,
        sender: &str,
        handle: &str,
        period: u64,
        now: i64,
    ) -> StoreResult<bool>;
    /// The `duplicate` keys remembered now (the newest
    /// [`sqlite::sieve_memory::MAX_DUPLICATE_KEYS`]).
    async fn sieve_duplicates(&self, account: AccountId, now: i64) -> StoreResult<Vec<String>>;
    /// Remembers `duplicate` keys, each for its period in seconds from now.
    async fn sieve_remember_duplicates(
        &self,
        account: AccountId,
        keys: &[(String, u64)],
        now: i64,
    ) -> StoreResult<()>;
    /// Whether the failure of this script version (`version`: a hash of
    /// its text) is news: `true` the first time (remembered; earlier
    /// versions are forgotten), `false` after.
    async fn sieve_failure_is_new(&self, account: AccountId, version: &str) -> StoreResult<bool>;
}

#[async_trait]
impl SieveMemory for SqliteStore {
    async fn sieve_vacation_due(
        &self,
        account: AccountId,
        sender: &str,
        handle: &str,
        period: u64,
        now: i64,
    ) -> StoreResult<bool> {
        let key = format!("{}\u{0}{}", sender.to_ascii_lowercase(), handle);
        let expires = now.saturating_add(i64::try_from(period).unwrap_or(i64::MAX));
        self.sieve_remember_once(account, "vacation", key, now, expires)
            .await
    }

    async fn sieve_duplicates(&self, account: AccountId, now: i64) -> StoreResult<Vec<String>> {
        self.sieve_keys(account, "duplicate", now).await
    }

    async fn sieve_remember_duplicates(
        &self,
        account: AccountId,
        keys: &[(String, u64)],
        now: i64,
    ) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys = keys
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    now.saturating_add(i64::try_from(*p).unwrap_or(i64::MAX)),
                )
            })
            .collect();
        self.sieve_set_keys(account, "duplicate", keys, now).await
    }

    async fn sieve_failure_is_new(&self, account: AccountId, version: &str) -> StoreResult<bool> {
        let new = self
            .sieve_remember_once(account, "failure", version.to_string(), i64::MIN, i64::MAX)
            .await?;
        if new {
            self.sieve_forget_others(account, "failure", version.to_string())
                .await?;
        }
        Ok(new)
    }
}

/// The whole store: what protocol code is given.
pub trait Store: Directory + MailStore {}
impl<T: Directory + MailStore> Store for T {}
