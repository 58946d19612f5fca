//! Moving mail in from another server (`mailgate import`): UIDVALIDITY,
//! UIDs and POP3 UIDLs kept, so that clients do not notice the move.
//!
//! - `pop3_uidls(mailbox, uid, uidl)`: the POP3 unique-id an entry had on
//!   the old server. A trigger removes the row with its entry (expunge,
//!   move, mailbox deletion), so a UIDL never outlives its message.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::mailstore::{account_of, bump_modseq, canonical_set, insert_blob};
use crate::{valid_pop3_uidl, ImportMessage, MailboxId, StoreError, StoreEvent, StoreResult, Uid};

type Written<T> = StoreResult<(T, Vec<StoreEvent>)>;

/// The table and its trigger; additive and idempotent (no version: older
/// versions ignore the table and serve their own UIDLs).
pub(crate) const POP3_UIDLS: &str = r#"
CREATE TABLE IF NOT EXISTS pop3_uidls (
    mailbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    uidl TEXT NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS pop3_uidls_follow_entry AFTER DELETE ON messages
BEGIN
    DELETE FROM pop3_uidls WHERE mailbox = old.mailbox AND uid = old.uid;
END;
"#;

/// See [`crate::MailStore::adopt_uid_validity`].
pub(super) fn adopt_uid_validity(
    c: &Connection,
    mailbox: MailboxId,
    uid_validity: u32,
) -> Written<()> {
    if uid_validity == 0 {
        return Err(StoreError::Invalid("UIDVALIDITY 0 is not allowed".into()));
    }
    let account = account_of(c, mailbox)?;
    let (current, messages): (u32, i64) = c.query_row(
        "SELECT uid_validity, (SELECT count(*) FROM messages WHERE mailbox = ?1) FROM mailboxes WHERE id = ?1",
        [mailbox],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if current == uid_validity {
        return Ok(((), vec![]));
    }
    if messages > 0 {
        return Err(StoreError::Invalid(format!(
            "mailbox {mailbox} holds {messages} messages; only an empty mailbox can take another UIDVALIDITY"
        )));
    }
    bump_modseq(c, mailbox)?;
    c.execute(
        "UPDATE mailboxes SET uid_validity = ?2, uid_next = 1 WHERE id = ?1",
        params![mailbox, uid_validity],
    )?;
    c.execute("DELETE FROM expunged WHERE mailbox = ?1", [mailbox])?;
    c.execute("DELETE FROM pop3_uidls WHERE mailbox = ?1", [mailbox])?;
    // UIDVALIDITYs the store hands out later stay above every one it
    // adopted, so a mailbox deleted and created again never reuses one.
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('last_uid_validity', ?1)
         ON CONFLICT(key) DO UPDATE SET value = ?1
         WHERE CAST(value AS INTEGER) < CAST(?1 AS INTEGER)",
        [uid_validity.to_string()],
    )?;
    Ok(((), vec![StoreEvent::MailboxesChanged { account }]))
}

/// One message ready for the writer: its structure already encoded.
pub(super) struct Prepared {
    pub(super) message: ImportMessage,
    pub(super) structure: String,
    pub(super) flags: BTreeSet<String>,
}

/// Encodes what can be encoded outside the writer; refuses a bad UIDL.
pub(super) fn prepare(messages: Vec<ImportMessage>) -> StoreResult<Vec<Prepared>> {
    messages
        .into_iter()
        .map(|m| {
            if let Some(u) = &m.pop3_uidl {
                if !valid_pop3_uidl(u) {
                    return Err(StoreError::Invalid(
                        "a POP3 UIDL must be 1 to 70 printable ASCII characters".into(),
                    ));
                }
            }
            let structure = serde_json::to_string(&m.message.structure)
                .map_err(|e| StoreError::Invalid(format!("message structure: {e}")))?;
            let flags = canonical_set(&m.flags);
            Ok(Prepared {
                message: m,
                structure,
                flags,
            })
        })
        .collect()
}

/// See [`crate::MailStore::import_messages`].
pub(super) fn import_messages(
    c: &Connection,
    mailbox: MailboxId,
    messages: &[Prepared],
) -> Written<Vec<Uid>> {
    let account = account_of(c, mailbox)?;
    let mut uids = Vec::with_capacity(messages.len());
    for p in messages {
        let raw = &p.message.message.raw;
        let blob = insert_blob(c, raw, &p.structure)?;
        let uid_next: u32 = c
            .prepare_cached("SELECT uid_next FROM mailboxes WHERE id = ?1")?
            .query_row([mailbox], |r| r.get(0))?;
        let uid = match p.message.uid {
            Some(u) if u.get() >= uid_next => u.get(),
            _ => uid_next,
        };
        let next = uid
            .checked_add(1)
            .ok_or_else(|| StoreError::Invalid("UID space of the mailbox exhausted".into()))?;
        let modseq: i64 = c
            .prepare_cached(
                "UPDATE mailboxes SET uid_next = ?2, highest_modseq = highest_modseq + 1
                 WHERE id = ?1 RETURNING highest_modseq",
            )?
            .query_row(params![mailbox, next], |r| r.get(0))?;
        let flags = p
            .flags
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        c.prepare_cached(
            "INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            mailbox,
            uid,
            blob,
            flags,
            p.message.message.internal_date,
            raw.len() as i64,
            modseq
        ])?;
        if let Some(uidl) = &p.message.pop3_uidl {
            c.prepare_cached(
                "INSERT OR REPLACE INTO pop3_uidls (mailbox, uid, uidl) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![mailbox, uid, uidl])?;
        }
        uids.push(
            Uid::new(uid)
                .ok_or_else(|| StoreError::Corrupt(format!("mailbox {mailbox}: UID 0")))?,
        );
    }
    let events = if uids.is_empty() {
        vec![]
    } else {
        vec![StoreEvent::Appended {
            account,
            mailbox,
            uids: uids.clone(),
        }]
    };
    Ok((uids, events))
}

/// See [`crate::MailStore::raise_uid_next`].
pub(super) fn raise_uid_next(c: &Connection, mailbox: MailboxId, uid_next: u32) -> Written<u32> {
    let now: Option<u32> = c
        .query_row(
            "UPDATE mailboxes SET uid_next = max(uid_next, ?2) WHERE id = ?1 RETURNING uid_next",
            params![mailbox, uid_next],
            |r| r.get(0),
        )
        .optional()?;
    let now = now.ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
    Ok((now, vec![]))
}

/// See [`crate::MailStore::pop3_uidls`].
pub(super) fn pop3_uidls(c: &Connection, mailbox: MailboxId) -> StoreResult<Vec<(Uid, String)>> {
    let mut st =
        c.prepare_cached("SELECT uid, uidl FROM pop3_uidls WHERE mailbox = ?1 ORDER BY uid")?;
    let rows = st.query_map([mailbox], |r| {
        Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (uid, uidl) = row?;
        if let Some(uid) = Uid::new(uid) {
            out.push((uid, uidl));
        }
    }
    Ok(out)
}
