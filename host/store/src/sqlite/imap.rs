//! The parts of [`crate::MailStore`] that IMAP added: deleting, renaming
//! and subscribing mailboxes, APPEND, COPY/MOVE, and the expunge history
//! for QRESYNC. Each function runs inside the writer's transaction (or on
//! a read connection) and returns the events to announce after commit.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::mailstore::{
    account_of, append_entry, bump_modseq, create_mailbox_in, flags_from_text, insert_blob,
    meta_from_row, normalize_mailbox_name, META_SELECT,
};
use crate::{
    AccountId, MailboxChanges, MailboxId, NewMessage, StoreError, StoreEvent, StoreResult, Uid,
};

/// Indexes by MODSEQ, so that [`changes_since`] reads only what changed
/// (IMAP's shared mailbox views catch up with it after every change).
/// Additive and idempotent, no version: created on open where missing
/// (on a large existing store, once, at the first open by this version).
pub(crate) const CHANGE_INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox, modseq);
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox, modseq);
"#;

type Written<T> = StoreResult<(T, Vec<StoreEvent>)>;

/// The id of a mailbox by normalised name.
fn find(c: &Connection, account: AccountId, name: &str) -> StoreResult<Option<MailboxId>> {
    Ok(
        c.prepare_cached("SELECT id FROM mailboxes WHERE account = ?1 AND name = ?2")?
            .query_row(params![account, name], |r| r.get(0))
            .optional()?,
    )
}

/// Creates every missing superior of `name` (`a` and `a/b` for `a/b/c`).
fn create_parents(c: &Connection, account: AccountId, name: &str) -> StoreResult<()> {
    let mut end = 0;
    while let Some(i) = name[end..].find('/') {
        let parent = &name[..end + i];
        if find(c, account, parent)?.is_none() {
            create_mailbox_in(c, account, parent, None)?;
        }
        end += i + 1;
    }
    Ok(())
}

/// Deletes the bodies among `blobs` that no entry refers to any more.
fn drop_orphans(c: &Connection, blobs: &BTreeSet<i64>) -> StoreResult<()> {
    for blob in blobs {
        c.execute(
            "DELETE FROM blobs WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE blob = ?1)",
            [blob],
        )?;
    }
    Ok(())
}

pub(super) fn delete_mailbox(c: &Connection, account: AccountId, name: &str) -> Written<()> {
    let name = normalize_mailbox_name(name)?;
    if name == "INBOX" {
        return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
    }
    let id =
        find(c, account, &name)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
    let mut uids = Vec::new();
    let mut blobs = BTreeSet::new();
    {
        let mut st = c.prepare_cached("SELECT uid, blob FROM messages WHERE mailbox = ?1")?;
        let rows = st.query_map([id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (uid, blob) = row?;
            uids.extend(Uid::new(uid));
            blobs.insert(blob);
        }
    }
    c.execute("DELETE FROM messages WHERE mailbox = ?1", [id])?;
    c.execute("DELETE FROM expunged WHERE mailbox = ?1", [id])?;
    c.execute("DELETE FROM mailboxes WHERE id = ?1", [id])?;
    drop_orphans(c, &blobs)?;
    let mut events = vec![StoreEvent::MailboxesChanged { account }];
    if !uids.is_empty() {
        events.push(StoreEvent::Expunged {
            account,
            mailbox: id,
            uids,
        });
    }
    Ok(((), events))
}

pub(super) fn rename_mailbox(
    c: &Connection,
    account: AccountId,
    from: &str,
    to: &str,
) -> Written<()> {
    let from = normalize_mailbox_name(from)?;
    let to = normalize_mailbox_name(to)?;
    let from_id =
        find(c, account, &from)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
    if find(c, account, &to)?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {to}")));
    }
    if to == "INBOX" || to.starts_with(&format!("{from}/")) {
        return Err(StoreError::Invalid(format!("cannot rename {from} to {to}")));
    }
    create_parents(c, account, &to)?;
    let mut events = vec![StoreEvent::MailboxesChanged { account }];
    if from == "INBOX" {
        // RFC 9051 §6.3.6: "all messages in INBOX are moved to a new
        // mailbox with the given name, leaving INBOX empty"; its inferiors
        // stay. The new mailbox keeps the UIDs (it has a new UIDVALIDITY).
        let new_id = create_mailbox_in(c, account, &to, None)?;
        let uids: Vec<Uid> = c
            .prepare_cached("SELECT uid FROM messages WHERE mailbox = ?1 ORDER BY uid")?
            .query_map([from_id], |r| r.get::<_, u32>(0))?
            .filter_map(|r| r.ok().and_then(Uid::new))
            .collect();
        c.execute(
            "UPDATE messages SET mailbox = ?2 WHERE mailbox = ?1",
            params![from_id, new_id],
        )?;
        c.execute(
            "UPDATE mailboxes SET uid_next = (SELECT uid_next FROM mailboxes WHERE id = ?1),
                 highest_modseq = max(highest_modseq,
                     (SELECT highest_modseq FROM mailboxes WHERE id = ?1)) + 1
             WHERE id = ?2",
            params![from_id, new_id],
        )?;
        if !uids.is_empty() {
            let modseq = bump_modseq(c, from_id)?;
            for uid in &uids {
                c.execute(
                    "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
                    params![from_id, uid.get(), modseq as i64],
                )?;
            }
            events.push(StoreEvent::Expunged {
                account,
                mailbox: from_id,
                uids: uids.clone(),
            });
            events.push(StoreEvent::Appended {
                account,
                mailbox: new_id,
                uids,
            });
        }
        return Ok(((), events));
    }
    // The mailbox and its inferiors: compare a prefix with substr rather
    // than LIKE, whose wildcards may appear in names.
    let prefix = format!("{from}/");
    let moved: Vec<(MailboxId, String)> = c
        .prepare_cached(
            "SELECT id, name FROM mailboxes WHERE account = ?1
               AND (name = ?2 OR substr(name, 1, length(?3)) = ?3)",
        )?
        .query_map(params![account, from, prefix], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, name) in moved {
        let new_name = format!("{to}{}", &name[from.len()..]);
        if find(c, account, &new_name)?.is_some() {
            return Err(StoreError::Exists(format!("mailbox {new_name}")));
        }
        c.execute(
            "UPDATE mailboxes SET name = ?2 WHERE id = ?1",
            params![id, new_name],
        )?;
        // A subscription follows its mailbox (as in Dovecot).
        let moved = c.execute(
            "DELETE FROM subscriptions WHERE account = ?1 AND name = ?2",
            params![account, name],
        )?;
        if moved > 0 {
            c.execute(
                "INSERT OR IGNORE INTO subscriptions (account, name) VALUES (?1, ?2)",
                params![account, new_name],
            )?;
        }
    }
    Ok(((), events))
}

/// Subscribes or unsubscribes a name. Subscriptions are names, kept
/// apart from the mailboxes (RFC 9051 §6.3.7: a server "SHOULD NOT
/// unilaterally remove an existing mailbox name from the subscription
/// list even if a mailbox by that name no longer exists"), so a name may
/// be subscribed whether or not a mailbox has it, as in Dovecot.
/// Unsubscribing a name that is neither subscribed nor a mailbox is
/// [`StoreError::NotFound`]. The `mailboxes.subscribed` column is kept
/// in step for older versions reading the same database.
pub(super) fn set_subscribed(
    c: &Connection,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> Written<()> {
    let name = normalize_mailbox_name(name)?;
    if subscribed {
        c.execute(
            "INSERT OR IGNORE INTO subscriptions (account, name) VALUES (?1, ?2)",
            params![account, name],
        )?;
    } else {
        let removed = c.execute(
            "DELETE FROM subscriptions WHERE account = ?1 AND name = ?2",
            params![account, name],
        )?;
        if removed == 0 && find(c, account, &name)?.is_none() {
            return Err(StoreError::NotFound(format!("mailbox {name}")));
        }
    }
    c.execute(
        "UPDATE mailboxes SET subscribed = ?3 WHERE account = ?1 AND name = ?2",
        params![account, name, subscribed],
    )?;
    Ok(((), vec![StoreEvent::MailboxesChanged { account }]))
}

/// The subscribed names of an account, sorted.
pub(super) fn subscriptions(c: &Connection, account: AccountId) -> StoreResult<Vec<String>> {
    let mut st =
        c.prepare_cached("SELECT name FROM subscriptions WHERE account = ?1 ORDER BY name")?;
    let rows = st.query_map([account], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Creates the `subscriptions` table of a store that has none yet and
/// fills it from `mailboxes.subscribed`, in one transaction (a store
/// opened by an older version gets it on its next open with this one).
pub(crate) fn migrate_subscriptions(c: &Connection) -> StoreResult<()> {
    c.execute_batch("SAVEPOINT subscriptions_migration")?;
    let result = (|| -> StoreResult<()> {
        let exists: i64 = c.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'subscriptions'",
            [],
            |r| r.get(0),
        )?;
        if exists == 0 {
            c.execute_batch(
                "CREATE TABLE subscriptions (
                     account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
                     name TEXT NOT NULL,
                     PRIMARY KEY (account, name)
                 ) WITHOUT ROWID;
                 INSERT OR IGNORE INTO subscriptions (account, name)
                     SELECT account, name FROM mailboxes WHERE subscribed != 0;",
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            c.execute_batch("RELEASE subscriptions_migration")?;
            Ok(())
        }
        Err(e) => {
            let _ = c.execute_batch(
                "ROLLBACK TO subscriptions_migration; RELEASE subscriptions_migration",
            );
            Err(e)
        }
    }
}

pub(super) fn append(
    c: &Connection,
    mailbox: MailboxId,
    message: &NewMessage,
    structure: &str,
    flags: &BTreeSet<String>,
) -> Written<Uid> {
    let account = account_of(c, mailbox)?;
    let size = message.raw.len() as u64;
    let blob = insert_blob(c, &message.raw, structure)?;
    let uid = append_entry(c, mailbox, blob, flags, message.internal_date, size)?;
    Ok((
        uid,
        vec![StoreEvent::Appended {
            account,
            mailbox,
            uids: vec![uid],
        }],
    ))
}

pub(super) fn copy_messages(
    c: &Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
    remove: bool,
) -> Written<Vec<(Uid, Uid)>> {
    let account = account_of(c, from)?;
    if account_of(c, to)? != account {
        return Err(StoreError::Invalid(
            "messages can only be copied within one account".into(),
        ));
    }
    let mut pairs = Vec::with_capacity(uids.len());
    for &uid in uids {
        let Some(meta) = c
            .prepare_cached(&format!("{META_SELECT} WHERE mailbox = ?1 AND uid = ?2"))?
            .query_row(params![from, uid.get()], meta_from_row)
            .optional()?
        else {
            continue;
        };
        let flags: BTreeSet<String> = meta.flags.into_iter().collect();
        let new = append_entry(c, to, meta.blob, &flags, meta.internal_date, meta.size)?;
        if remove {
            c.execute(
                "DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2",
                params![from, uid.get()],
            )?;
            let modseq = bump_modseq(c, from)?;
            c.execute(
                "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
                params![from, uid.get(), modseq as i64],
            )?;
        }
        pairs.push((uid, new));
    }
    let mut events = Vec::new();
    if !pairs.is_empty() {
        events.push(StoreEvent::Appended {
            account,
            mailbox: to,
            uids: pairs.iter().map(|p| p.1).collect(),
        });
        if remove {
            events.push(StoreEvent::Expunged {
                account,
                mailbox: from,
                uids: pairs.iter().map(|p| p.0).collect(),
            });
        }
    }
    Ok((pairs, events))
}

pub(super) fn expunged_since(
    c: &Connection,
    mailbox: MailboxId,
    modseq: u64,
) -> StoreResult<Vec<Uid>> {
    let mut st = c.prepare_cached(
        "SELECT uid FROM expunged WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid",
    )?;
    let rows = st.query_map(params![mailbox, modseq as i64], |r| r.get::<_, u32>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.extend(Uid::new(r?));
    }
    Ok(out)
}

/// [`crate::MailStore::mailbox_flags`]: the UIDs and flags of a mailbox
/// in key order, each distinct flags text parsed once.
pub(super) fn mailbox_flags(
    c: &Connection,
    mailbox: MailboxId,
) -> StoreResult<crate::MailboxFlags> {
    let tx = c.unchecked_transaction()?;
    let Some((highest_modseq, uid_validity)) = tx
        .prepare_cached("SELECT highest_modseq, uid_validity FROM mailboxes WHERE id = ?1")?
        .query_row([mailbox], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?))
        })
        .optional()?
    else {
        return Ok(crate::MailboxFlags::default());
    };
    let mut out = crate::MailboxFlags {
        highest_modseq: highest_modseq as u64,
        uid_validity,
        ..Default::default()
    };
    let mut index: std::collections::HashMap<String, u32> = Default::default();
    {
        let mut st =
            tx.prepare_cached("SELECT uid, flags FROM messages WHERE mailbox = ?1 ORDER BY uid")?;
        let mut rows = st.query([mailbox])?;
        while let Some(r) = rows.next()? {
            let uid: u32 = r.get(0)?;
            let Some(uid) = Uid::new(uid) else {
                continue;
            };
            let text = r.get_ref(1)?.as_str().unwrap_or_default();
            let i = match index.get(text) {
                Some(&i) => i,
                None => {
                    let i = out.lists.len() as u32;
                    out.lists.push(flags_from_text(text).into_iter().collect());
                    index.insert(text.to_string(), i);
                    i
                }
            };
            out.messages.push((uid, i));
        }
    }
    tx.finish()?;
    Ok(out)
}

/// What changed in `mailbox` after `modseq`, in one read transaction (so
/// that the entries, the expunged UIDs and HIGHESTMODSEQ agree with each
/// other). A mailbox that does not exist (deleted meanwhile) has
/// UIDVALIDITY 0 and nothing changed.
pub(super) fn changes_since(
    c: &Connection,
    mailbox: MailboxId,
    modseq: u64,
) -> StoreResult<MailboxChanges> {
    let tx = c.unchecked_transaction()?;
    let Some((highest_modseq, uid_validity)) = tx
        .prepare_cached("SELECT highest_modseq, uid_validity FROM mailboxes WHERE id = ?1")?
        .query_row([mailbox], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?))
        })
        .optional()?
    else {
        return Ok(MailboxChanges::default());
    };
    // From MODSEQ 0 (a whole view; every entry has a MODSEQ above 0): the
    // table in key order. Otherwise the few rows above `modseq` through
    // the MODSEQ index, then sorted by UID.
    let mut changed = if modseq == 0 {
        tx.prepare_cached(&format!("{META_SELECT} WHERE mailbox = ?1 ORDER BY uid"))?
            .query_map(params![mailbox], meta_from_row)?
            .collect::<Result<Vec<_>, _>>()?
    } else {
        tx.prepare_cached(&format!("{META_SELECT} WHERE mailbox = ?1 AND modseq > ?2"))?
            .query_map(params![mailbox, modseq as i64], meta_from_row)?
            .collect::<Result<Vec<_>, _>>()?
    };
    changed.sort_unstable_by_key(|m| m.uid);
    let expunged = expunged_since(&tx, mailbox, modseq)?;
    tx.finish()?;
    Ok(MailboxChanges {
        highest_modseq: highest_modseq as u64,
        uid_validity,
        changed,
        expunged,
    })
}
