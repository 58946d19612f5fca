//! [`MailStore`] for the embedded store: mailboxes and messages.

use std::collections::BTreeSet;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::broadcast;

use super::SqliteStore;
use crate::{
    AccountId, Delivered, DeliveryTarget, FetchedMessage, FlagChange, ImportMessage, MailStore,
    MailboxId, MailboxInfo, MessageMeta, MessageStructure, NewMessage, RawPart, SpecialUse,
    StoreError, StoreEvent, StoreResult, Uid,
};

/// The system flags of RFC 9051 §2.3.2, in their canonical spelling.
const SYSTEM_FLAGS: &[&str] = &["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// Canonical spelling of a flag: system flags in their RFC case; keywords
/// as given. `None` for something that cannot be a flag.
pub fn canonical_flag(flag: &str) -> Option<String> {
    if flag.is_empty() || flag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    if let Some(sys) = SYSTEM_FLAGS.iter().find(|s| s.eq_ignore_ascii_case(flag)) {
        return Some((*sys).to_string());
    }
    if flag.starts_with('\\') {
        // \Recent and unknown system flags cannot be stored.
        return None;
    }
    Some(flag.to_string())
}

fn flags_to_text(flags: &BTreeSet<String>) -> String {
    flags
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn flags_from_text(text: &str) -> BTreeSet<String> {
    text.split(' ')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn canonical_set(flags: &[String]) -> BTreeSet<String> {
    flags.iter().filter_map(|f| canonical_flag(f)).collect()
}

fn special_use_text(u: Option<SpecialUse>) -> Option<&'static str> {
    u.map(SpecialUse::attribute)
}

/// Normalises a mailbox name: `INBOX` in any case is `INBOX`; other names
/// must be non-empty, without control characters, and without empty
/// hierarchy levels.
pub fn normalize_mailbox_name(name: &str) -> StoreResult<String> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    let bad = name.is_empty()
        || name.chars().any(|c| c.is_control())
        || name.split('/').any(|level| level.is_empty())
        || name.len() > 1024;
    if bad {
        return Err(StoreError::Invalid(format!("bad mailbox name {name:?}")));
    }
    // `inbox/child` keeps the canonical INBOX prefix.
    match name.split_once('/') {
        Some((first, rest)) if first.eq_ignore_ascii_case("INBOX") => Ok(format!("INBOX/{rest}")),
        _ => Ok(name.to_string()),
    }
}

/// The next UIDVALIDITY: the current time, but always larger than any
/// given before, so a mailbox deleted and created again never reuses one.
fn next_uid_validity(c: &Connection) -> StoreResult<u32> {
    let last: u32 = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'last_uid_validity'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let now = chrono::Utc::now().timestamp().clamp(1, u32::MAX as i64) as u32;
    let next = now.max(last.saturating_add(1));
    c.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_uid_validity', ?1)",
        [next.to_string()],
    )?;
    Ok(next)
}

/// Creates a mailbox inside the current transaction.
pub(super) fn create_mailbox_in(
    c: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> StoreResult<MailboxId> {
    let name = normalize_mailbox_name(name)?;
    let exists = c
        .query_row(
            "SELECT 1 FROM mailboxes WHERE account = ?1 AND name = ?2",
            params![account, name],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    let validity = next_uid_validity(c)?;
    c.execute(
        "INSERT INTO mailboxes (account, name, special_use, uid_validity) VALUES (?1, ?2, ?3, ?4)",
        params![account, name, special_use_text(special_use), validity],
    )?;
    let id = c.last_insert_rowid();
    // New mailboxes start subscribed (as they always have here).
    c.execute(
        "INSERT OR IGNORE INTO subscriptions (account, name) VALUES (?1, ?2)",
        params![account, name],
    )?;
    Ok(id)
}

const MAILBOX_SELECT: &str = "SELECT mb.id, mb.account, mb.name, mb.special_use,
        EXISTS (SELECT 1 FROM subscriptions s WHERE s.account = mb.account AND s.name = mb.name),
        mb.uid_validity,
        mb.uid_next, mb.highest_modseq,
        (SELECT count(*) FROM messages m WHERE m.mailbox = mb.id),
        (SELECT count(*) FROM messages m WHERE m.mailbox = mb.id AND instr(' ' || m.flags || ' ', ' \\Seen ') = 0),
        (SELECT coalesce(sum(size), 0) FROM messages m WHERE m.mailbox = mb.id)
    FROM mailboxes mb";

/// [`MAILBOX_SELECT`] without the counters, which read every message.
const MAILBOX_STATE_SELECT: &str = "SELECT mb.id, mb.account, mb.name, mb.special_use,
        EXISTS (SELECT 1 FROM subscriptions s WHERE s.account = mb.account AND s.name = mb.name),
        mb.uid_validity, mb.uid_next, mb.highest_modseq, 0, 0, 0
    FROM mailboxes mb";

fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxInfo> {
    Ok(MailboxInfo {
        id: r.get(0)?,
        account: r.get(1)?,
        name: r.get(2)?,
        special_use: r
            .get::<_, Option<String>>(3)?
            .and_then(|s| SpecialUse::from_attribute(&s)),
        subscribed: r.get(4)?,
        uid_validity: r.get(5)?,
        uid_next: r.get(6)?,
        highest_modseq: r.get::<_, i64>(7)? as u64,
        messages: r.get(8)?,
        unseen: r.get(9)?,
        size: r.get::<_, i64>(10)? as u64,
    })
}

pub(super) fn meta_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageMeta> {
    let uid: u32 = r.get(0)?;
    Ok(MessageMeta {
        uid: Uid::new(uid).ok_or_else(|| rusqlite::Error::IntegralValueOutOfRange(0, 0))?,
        flags: flags_from_text(&r.get::<_, String>(1)?)
            .into_iter()
            .collect(),
        internal_date: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        modseq: r.get::<_, i64>(4)? as u64,
        blob: r.get(5)?,
    })
}

pub(super) const META_SELECT: &str =
    "SELECT uid, flags, internal_date, size, modseq, blob FROM messages";

/// Takes the next MODSEQ of a mailbox (inside the transaction).
pub(super) fn bump_modseq(c: &Connection, mailbox: MailboxId) -> StoreResult<u64> {
    let m: i64 = c.query_row(
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?1 RETURNING highest_modseq",
        [mailbox],
        |r| r.get(0),
    )?;
    Ok(m as u64)
}

pub(super) fn account_of(c: &Connection, mailbox: MailboxId) -> StoreResult<AccountId> {
    c.query_row(
        "SELECT account FROM mailboxes WHERE id = ?1",
        [mailbox],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

/// Stores one body with its saved structure (JSON) and its header block
/// (inside the transaction); returns the blob id.
pub(super) fn insert_blob(c: &Connection, raw: &[u8], structure: &str) -> StoreResult<i64> {
    c.prepare_cached("INSERT INTO blobs (size, structure, data) VALUES (?1, ?2, ?3)")?
        .execute(params![raw.len() as i64, structure, raw])?;
    let blob = c.last_insert_rowid();
    let header = &raw[..crate::structure::header_block_len(raw)];
    c.prepare_cached("INSERT INTO blob_headers (blob, header) VALUES (?1, ?2)")?
        .execute(params![blob, header])?;
    Ok(blob)
}

/// Inserts one stored message into one mailbox (inside the transaction).
pub(super) fn append_entry(
    c: &Connection,
    mailbox: MailboxId,
    blob: i64,
    flags: &BTreeSet<String>,
    internal_date: i64,
    size: u64,
) -> StoreResult<Uid> {
    // Cached statements: this runs for every copy of every message, and
    // compiling the SQL each time showed in the delivery profile.
    let (uid, modseq): (u32, i64) = c
        .prepare_cached(
            "UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1
             WHERE id = ?1 RETURNING uid_next - 1, highest_modseq",
        )?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))?;
    c.prepare_cached(
        "INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![mailbox, uid, blob, flags_to_text(flags), internal_date, size as i64, modseq])?;
    Uid::new(uid).ok_or_else(|| StoreError::Corrupt(format!("mailbox {mailbox} has uid_next 0")))
}

/// What [`store_flags_in`] returns: the new state of the messages that
/// passed the UNCHANGEDSINCE check, and the UIDs of those that failed it.
pub(super) type FlagsStored = (Vec<MessageMeta>, Vec<Uid>);

/// Changes the flags of some messages inside the writer's transaction.
/// With `unchanged_since` (RFC 7162 §3.1.3 UNCHANGEDSINCE), a message whose
/// MODSEQ is above it is left alone and its UID returned in the second
/// list; the check and the update happen in the same transaction, so no
/// other change can slip in between. Returns the state of every message
/// that exists and passed the check, and the events to announce.
pub(super) fn store_flags_in(
    c: &Connection,
    mailbox: MailboxId,
    uids: &[Uid],
    change: &FlagChange,
    unchanged_since: Option<u64>,
) -> StoreResult<(FlagsStored, Vec<StoreEvent>)> {
    let account = account_of(c, mailbox)?;
    let mut out = Vec::with_capacity(uids.len());
    let mut modified = Vec::new();
    let mut changed = Vec::new();
    for &uid in uids {
        let Some(mut meta) = c
            .prepare_cached(&format!("{META_SELECT} WHERE mailbox = ?1 AND uid = ?2"))?
            .query_row(params![mailbox, uid.get()], meta_from_row)
            .optional()?
        else {
            continue;
        };
        if unchanged_since.is_some_and(|limit| meta.modseq > limit) {
            modified.push(uid);
            continue;
        }
        let old: BTreeSet<String> = meta.flags.iter().cloned().collect();
        let new = match change {
            FlagChange::Set(f) => canonical_set(f),
            FlagChange::Add(f) => old.union(&canonical_set(f)).cloned().collect(),
            FlagChange::Remove(f) => old.difference(&canonical_set(f)).cloned().collect(),
        };
        if new != old {
            let modseq = bump_modseq(c, mailbox)?;
            c.execute(
                "UPDATE messages SET flags = ?3, modseq = ?4 WHERE mailbox = ?1 AND uid = ?2",
                params![mailbox, uid.get(), flags_to_text(&new), modseq as i64],
            )?;
            meta.flags = new.into_iter().collect();
            meta.modseq = modseq;
            changed.push(uid);
        }
        out.push(meta);
    }
    let events = if changed.is_empty() {
        vec![]
    } else {
        vec![StoreEvent::FlagsChanged {
            account,
            mailbox,
            uids: changed,
        }]
    };
    Ok(((out, modified), events))
}

#[async_trait]
impl MailStore for SqliteStore {
    async fn list_mailboxes(&self, account: AccountId) -> StoreResult<Vec<MailboxInfo>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "{MAILBOX_SELECT} WHERE mb.account = ?1 ORDER BY mb.name"
            ))?;
            let rows = st.query_map([account], mailbox_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn mailbox(&self, account: AccountId, name: &str) -> StoreResult<Option<MailboxInfo>> {
        let Ok(name) = normalize_mailbox_name(name) else {
            return Ok(None);
        };
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "{MAILBOX_SELECT} WHERE mb.account = ?1 AND mb.name = ?2"
            ))?
            .query_row(params![account, name], mailbox_from_row)
            .optional()?)
        })
        .await
    }

    async fn mailbox_state(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<MailboxInfo>> {
        let Ok(name) = normalize_mailbox_name(name) else {
            return Ok(None);
        };
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "{MAILBOX_STATE_SELECT} WHERE mb.account = ?1 AND mb.name = ?2"
            ))?
            .query_row(params![account, name], mailbox_from_row)
            .optional()?)
        })
        .await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<MailboxId> {
        let name = name.to_string();
        self.write(move |c| {
            let id = create_mailbox_in(c, account, &name, special_use)?;
            Ok((id, vec![StoreEvent::MailboxesChanged { account }]))
        })
        .await
    }

    async fn deliver(
        &self,
        message: NewMessage,
        targets: &[DeliveryTarget],
    ) -> StoreResult<Vec<Delivered>> {
        let targets = targets.to_vec();
        let structure = serde_json::to_string(&message.structure)
            .map_err(|e| StoreError::Invalid(format!("message structure: {e}")))?;
        let incoming = message.raw.len() as u64;
        self.write_new(incoming, move |c| {
            let size = message.raw.len() as u64;
            let blob = insert_blob(c, &message.raw, &structure)?;
            let mut delivered = Vec::with_capacity(targets.len());
            let mut events = Vec::new();
            for t in &targets {
                let wanted = normalize_mailbox_name(&t.mailbox).unwrap_or_else(|_| "INBOX".into());
                let find = |name: &str| -> StoreResult<Option<MailboxId>> {
                    Ok(c.prepare_cached(
                        "SELECT id FROM mailboxes WHERE account = ?1 AND name = ?2",
                    )?
                    .query_row(params![t.account, name], |r| r.get(0))
                    .optional()?)
                };
                let mailbox = match find(&wanted)? {
                    Some(id) => id,
                    None => find("INBOX")?.ok_or_else(|| {
                        StoreError::NotFound(format!("INBOX of account {}", t.account))
                    })?,
                };
                let uid = append_entry(
                    c,
                    mailbox,
                    blob,
                    &canonical_set(&t.flags),
                    message.internal_date,
                    size,
                )?;
                delivered.push(Delivered {
                    account: t.account,
                    mailbox,
                    uid,
                });
                events.push(StoreEvent::Appended {
                    account: t.account,
                    mailbox,
                    uids: vec![uid],
                });
            }
            Ok((delivered, events))
        })
        .await
    }

    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageMeta>> {
        self.read(move |c| {
            let mut st =
                c.prepare_cached(&format!("{META_SELECT} WHERE mailbox = ?1 ORDER BY uid"))?;
            let rows = st.query_map([mailbox], meta_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn message_metas(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageMeta>> {
        // Many UIDs: one scan of the mailbox, filtered; few: one indexed
        // lookup each, in one read transaction.
        if uids.len() > 256 {
            let mut all = self.list_messages(mailbox).await?;
            all.retain(|m| uids.binary_search(&m.uid).is_ok());
            return Ok(all);
        }
        let uids = uids.to_vec();
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let mut out = Vec::with_capacity(uids.len());
            {
                let mut st =
                    tx.prepare_cached(&format!("{META_SELECT} WHERE mailbox = ?1 AND uid = ?2"))?;
                for uid in uids {
                    if let Some(m) = st
                        .query_row(params![mailbox, uid.get()], meta_from_row)
                        .optional()?
                    {
                        out.push(m);
                    }
                }
            }
            tx.finish()?;
            Ok(out)
        })
        .await
    }

    async fn message_raw(&self, mailbox: MailboxId, uid: Uid) -> StoreResult<Option<Vec<u8>>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.mailbox = ?1 AND m.uid = ?2",
            )?
            .query_row(params![mailbox, uid.get()], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn message_structure(
        &self,
        mailbox: MailboxId,
        uid: Uid,
    ) -> StoreResult<Option<MessageStructure>> {
        let json: Option<String> = self
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT b.structure FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.mailbox = ?1 AND m.uid = ?2",
                )?
                .query_row(params![mailbox, uid.get()], |r| r.get(0))
                .optional()?)
            })
            .await?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StoreError::Corrupt(format!("message structure: {e}")))
        })
        .transpose()
    }

    async fn fetch_messages(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        raw: RawPart,
        structure: bool,
    ) -> StoreResult<Vec<FetchedMessage>> {
        let uids = uids.to_vec();
        // One trip to a blocking thread for the whole batch, one indexed
        // lookup per message, the structure decoded there too. Columns not
        // asked for are not read: a body's overflow pages stay unread
        // unless it is wanted whole (a header block is a small row of its
        // own).
        let (data, header_join) = match raw {
            RawPart::None => ("NULL", ""),
            RawPart::Header => ("h.header", " LEFT JOIN blob_headers h ON h.blob = m.blob"),
            RawPart::Whole => ("b.data", ""),
        };
        let join_blobs = structure || raw == RawPart::Whole;
        let sql = format!(
            "SELECT m.blob, {data}, {} FROM messages m{}{header_join} WHERE m.mailbox = ?1 AND m.uid = ?2",
            if structure { "b.structure" } else { "NULL" },
            if join_blobs { " JOIN blobs b ON b.id = m.blob" } else { "" },
        );
        self.read(move |c| {
            // One read transaction for the batch: the WAL read lock is
            // taken once, not per message.
            let tx = c.unchecked_transaction()?;
            let mut st = tx.prepare_cached(&sql)?;
            let mut out = Vec::with_capacity(uids.len());
            for uid in uids {
                let row = st
                    .query_row(params![mailbox, uid.get()], |r| {
                        let blob: i64 = r.get(0)?;
                        let data: Option<Vec<u8>> = r.get(1)?;
                        let parsed = r
                            .get_ref(2)?
                            .as_str_or_null()?
                            .map(serde_json::from_str::<MessageStructure>)
                            .transpose();
                        Ok((blob, data, parsed))
                    })
                    .optional()?;
                let Some((blob, mut data, parsed)) = row else {
                    continue;
                };
                if raw == RawPart::Header && data.is_none() {
                    // Stored without its header block (before they were
                    // kept, or by an older version): read it all, cut it.
                    let mut whole: Vec<u8> = tx
                        .prepare_cached("SELECT data FROM blobs WHERE id = ?1")?
                        .query_row([blob], |r| r.get(0))?;
                    whole.truncate(crate::structure::header_block_len(&whole));
                    data = Some(whole);
                }
                let parsed =
                    parsed.map_err(|e| StoreError::Corrupt(format!("message structure: {e}")))?;
                out.push(FetchedMessage {
                    uid,
                    raw: data,
                    structure: parsed,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        change: FlagChange,
    ) -> StoreResult<Vec<MessageMeta>> {
        let uids = uids.to_vec();
        self.write(move |c| {
            let ((out, _), events) = store_flags_in(c, mailbox, &uids, &change, None)?;
            Ok((out, events))
        })
        .await
    }

    async fn store_flags_unchanged_since(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        change: FlagChange,
        unchanged_since: u64,
    ) -> StoreResult<(Vec<MessageMeta>, Vec<Uid>)> {
        let uids = uids.to_vec();
        self.write(move |c| store_flags_in(c, mailbox, &uids, &change, Some(unchanged_since)))
            .await
    }

    async fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> StoreResult<Vec<Uid>> {
        let uids = uids.to_vec();
        self.write(move |c| {
            let account = account_of(c, mailbox)?;
            let mut removed = Vec::with_capacity(uids.len());
            let mut blobs = BTreeSet::new();
            for uid in uids {
                let blob: Option<i64> = c
                    .prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2 RETURNING blob")?
                    .query_row(params![mailbox, uid.get()], |r| r.get(0))
                    .optional()?;
                if let Some(blob) = blob {
                    let modseq = bump_modseq(c, mailbox)?;
                    c.execute(
                        "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
                        params![mailbox, uid.get(), modseq as i64],
                    )?;
                    blobs.insert(blob);
                    removed.push(uid);
                }
            }
            for blob in blobs {
                c.execute(
                    "DELETE FROM blobs WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE blob = ?1)",
                    [blob],
                )?;
            }
            let events = if removed.is_empty() {
                vec![]
            } else {
                vec![StoreEvent::Expunged { account, mailbox, uids: removed.clone() }]
            };
            Ok((removed, events))
        })
        .await
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        self.write(move |c| super::imap::delete_mailbox(c, account, &name))
            .await
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.write(move |c| super::imap::rename_mailbox(c, account, &from, &to))
            .await
    }

    async fn set_subscribed(
        &self,
        account: AccountId,
        name: &str,
        subscribed: bool,
    ) -> StoreResult<()> {
        let name = name.to_string();
        self.write(move |c| super::imap::set_subscribed(c, account, &name, subscribed))
            .await
    }

    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>> {
        self.read(move |c| super::imap::subscriptions(c, account))
            .await
    }

    async fn append(
        &self,
        mailbox: MailboxId,
        message: NewMessage,
        flags: &[String],
    ) -> StoreResult<Uid> {
        let structure = serde_json::to_string(&message.structure)
            .map_err(|e| StoreError::Invalid(format!("message structure: {e}")))?;
        let flags = canonical_set(flags);
        let incoming = message.raw.len() as u64;
        self.write_new(incoming, move |c| {
            super::imap::append(c, mailbox, &message, &structure, &flags)
        })
        .await
    }

    async fn append_many(
        &self,
        mailbox: MailboxId,
        messages: Vec<(NewMessage, Vec<String>)>,
    ) -> StoreResult<Vec<Uid>> {
        let mut prepared = Vec::with_capacity(messages.len());
        for (message, flags) in messages {
            let structure = serde_json::to_string(&message.structure)
                .map_err(|e| StoreError::Invalid(format!("message structure: {e}")))?;
            prepared.push((message, structure, canonical_set(&flags)));
        }
        let incoming = prepared.iter().map(|(m, _, _)| m.raw.len() as u64).sum();
        // One writer job: it runs in one savepoint, so a failure of any
        // message rolls back all of them.
        self.write_new(incoming, move |c| {
            let mut uids = Vec::with_capacity(prepared.len());
            let mut events = Vec::new();
            for (message, structure, flags) in &prepared {
                let (uid, evs) = super::imap::append(c, mailbox, message, structure, flags)?;
                uids.push(uid);
                events.extend(evs);
            }
            Ok((uids, events))
        })
        .await
    }

    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let uids = uids.to_vec();
        // New entries only (the bodies are shared), but a copy is new mail
        // to the target mailbox: refused while space is short. MOVE is
        // not, since clients delete by moving to Trash.
        self.write_new(0, move |c| {
            super::imap::copy_messages(c, from, &uids, to, false)
        })
        .await
    }

    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let uids = uids.to_vec();
        self.write(move |c| super::imap::copy_messages(c, from, &uids, to, true))
            .await
    }

    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> StoreResult<Vec<Uid>> {
        self.read(move |c| super::imap::expunged_since(c, mailbox, modseq))
            .await
    }

    async fn changes_since(
        &self,
        mailbox: MailboxId,
        modseq: u64,
    ) -> StoreResult<crate::MailboxChanges> {
        self.read(move |c| super::imap::changes_since(c, mailbox, modseq))
            .await
    }

    async fn mailbox_flags(&self, mailbox: MailboxId) -> StoreResult<crate::MailboxFlags> {
        self.read(move |c| super::imap::mailbox_flags(c, mailbox))
            .await
    }

    async fn adopt_uid_validity(&self, mailbox: MailboxId, uid_validity: u32) -> StoreResult<()> {
        self.write(move |c| super::import::adopt_uid_validity(c, mailbox, uid_validity))
            .await
    }

    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<ImportMessage>,
    ) -> StoreResult<Vec<Uid>> {
        let incoming = messages.iter().map(|m| m.message.raw.len() as u64).sum();
        let prepared = super::import::prepare(messages)?;
        // One writer job: one savepoint, so all or none.
        self.write_new(incoming, move |c| {
            super::import::import_messages(c, mailbox, &prepared)
        })
        .await
    }

    async fn raise_uid_next(&self, mailbox: MailboxId, uid_next: u32) -> StoreResult<u32> {
        self.write(move |c| super::import::raise_uid_next(c, mailbox, uid_next))
            .await
    }

    async fn pop3_uidls(&self, mailbox: MailboxId) -> StoreResult<Vec<(Uid, String)>> {
        self.read(move |c| super::import::pop3_uidls(c, mailbox))
            .await
    }

    fn check_space(&self, incoming: u64) -> StoreResult<()> {
        self.space.check(incoming)
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.subscribe_events()
    }

    async fn check(&self) -> StoreResult<Vec<String>> {
        self.read(super::check::run).await
    }
}
