//! The parts of [`crate::MailStore`] that IMAP and `mailgate import`
//! added, for the PostgreSQL store: deleting, renaming and subscribing
//! mailboxes, COPY/MOVE, the expunge history for QRESYNC, the views'
//! catch-up reads, and moving mail in. Each write function runs inside
//! the caller's transaction and returns the events to announce after
//! commit; the rules are the embedded store's (`sqlite::imap`,
//! `sqlite::import`).

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::IsolationLevel;

use super::mailstore::{
    account_of, append_entry, bump_modseq, create_mailbox_in, delete_orphan_blobs, expunge_in,
    find, insert_blob, meta_from_row, META_SELECT,
};
use crate::sqlite::mailstore::normalize_mailbox_name;
use crate::{
    AccountId, ImportMessage, MailboxChanges, MailboxFlags, MailboxId, StoreError, StoreEvent,
    StoreResult, Uid,
};

fn uid_of(n: i64) -> Option<Uid> {
    u32::try_from(n).ok().and_then(Uid::new)
}

/// Creates every missing superior of `name` (`a` and `a/b` for `a/b/c`).
async fn create_parents(tx: &Transaction<'_>, account: AccountId, name: &str) -> StoreResult<()> {
    let mut end = 0;
    while let Some(i) = name[end..].find('/') {
        let parent = &name[..end + i];
        if find(tx, account, parent).await?.is_none() {
            create_mailbox_in(tx, account, parent, None).await?;
        }
        end += i + 1;
    }
    Ok(())
}

pub(super) async fn delete_mailbox(
    tx: &Transaction<'_>,
    account: AccountId,
    name: &str,
) -> StoreResult<Vec<StoreEvent>> {
    let name = normalize_mailbox_name(name)?;
    if name == "INBOX" {
        return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
    }
    let id = tx
        .query_opt(
            "SELECT id FROM mailboxes WHERE account = $1 AND name = $2 FOR UPDATE",
            &[&account, &name],
        )
        .await?
        .map(|r| r.get::<_, MailboxId>(0))
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
    let rows = tx
        .query(
            "DELETE FROM messages WHERE mailbox = $1 RETURNING uid, blob",
            &[&id],
        )
        .await?;
    let mut uids: Vec<Uid> = rows.iter().filter_map(|r| uid_of(r.get(0))).collect();
    uids.sort_unstable();
    let mut blobs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    blobs.sort_unstable();
    blobs.dedup();
    tx.execute("DELETE FROM mailboxes WHERE id = $1", &[&id])
        .await?;
    delete_orphan_blobs(tx, Some(&blobs)).await?;
    let mut events = vec![StoreEvent::MailboxesChanged { account }];
    if !uids.is_empty() {
        events.push(StoreEvent::Expunged {
            account,
            mailbox: id,
            uids,
        });
    }
    Ok(events)
}

pub(super) async fn rename_mailbox(
    tx: &Transaction<'_>,
    account: AccountId,
    from: &str,
    to: &str,
) -> StoreResult<Vec<StoreEvent>> {
    let from = normalize_mailbox_name(from)?;
    let to = normalize_mailbox_name(to)?;
    let from_id = find(tx, account, &from)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
    if find(tx, account, &to).await?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {to}")));
    }
    if to == "INBOX" || to.starts_with(&format!("{from}/")) {
        return Err(StoreError::Invalid(format!("cannot rename {from} to {to}")));
    }
    create_parents(tx, account, &to).await?;
    let mut events = vec![StoreEvent::MailboxesChanged { account }];
    if from == "INBOX" {
        // RFC 9051 §6.3.6: INBOX's messages move to a new mailbox of that
        // name (keeping their UIDs and MODSEQs, under a new UIDVALIDITY,
        // so its HIGHESTMODSEQ starts above INBOX's); INBOX stays.
        let new_id = create_mailbox_in(tx, account, &to, None).await?;
        account_of(tx, from_id, true).await?;
        let rows = tx
            .query(
                "UPDATE messages SET mailbox = $2 WHERE mailbox = $1 RETURNING uid",
                &[&from_id, &new_id],
            )
            .await?;
        let mut uids: Vec<Uid> = rows.iter().filter_map(|r| uid_of(r.get(0))).collect();
        uids.sort_unstable();
        tx.execute(
            "UPDATE mailboxes SET uid_next = (SELECT uid_next FROM mailboxes WHERE id = $1),
                 highest_modseq = greatest(highest_modseq,
                     (SELECT highest_modseq FROM mailboxes WHERE id = $1)) + 1
             WHERE id = $2",
            &[&from_id, &new_id],
        )
        .await?;
        if !uids.is_empty() {
            let modseq = bump_modseq(tx, from_id).await? as i64;
            let list: Vec<i64> = uids.iter().map(|u| i64::from(u.get())).collect();
            tx.execute(
                "INSERT INTO expunged (mailbox, uid, modseq) SELECT $1, u, $3 FROM unnest($2::bigint[]) u
                 ON CONFLICT (mailbox, uid) DO UPDATE SET modseq = excluded.modseq",
                &[&from_id, &list, &modseq],
            )
            .await?;
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
        return Ok(events);
    }
    // The mailbox and its inferiors (a prefix compared with left(), not
    // LIKE, whose wildcards may appear in names).
    let prefix = format!("{from}/");
    let moved = tx
        .query(
            "SELECT id, name FROM mailboxes WHERE account = $1
               AND (name = $2 OR left(name, char_length($3)) = $3) FOR UPDATE",
            &[&account, &from, &prefix],
        )
        .await?;
    for r in moved {
        let (id, name): (MailboxId, String) = (r.get(0), r.get(1));
        let new_name = format!("{to}{}", &name[from.len()..]);
        if find(tx, account, &new_name).await?.is_some() {
            return Err(StoreError::Exists(format!("mailbox {new_name}")));
        }
        tx.execute(
            "UPDATE mailboxes SET name = $2 WHERE id = $1",
            &[&id, &new_name],
        )
        .await?;
        // A subscription follows its mailbox (as in Dovecot).
        let n = tx
            .execute(
                "DELETE FROM subscriptions WHERE account = $1 AND name = $2",
                &[&account, &name],
            )
            .await?;
        if n > 0 {
            tx.execute(
                "INSERT INTO subscriptions (account, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&account, &new_name],
            )
            .await?;
        }
    }
    Ok(events)
}

pub(super) async fn set_subscribed(
    tx: &Transaction<'_>,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> StoreResult<Vec<StoreEvent>> {
    let name = normalize_mailbox_name(name)?;
    if subscribed {
        tx.execute(
            "INSERT INTO subscriptions (account, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&account, &name],
        )
        .await?;
    } else {
        let removed = tx
            .execute(
                "DELETE FROM subscriptions WHERE account = $1 AND name = $2",
                &[&account, &name],
            )
            .await?;
        if removed == 0 && find(tx, account, &name).await?.is_none() {
            return Err(StoreError::NotFound(format!("mailbox {name}")));
        }
    }
    Ok(vec![StoreEvent::MailboxesChanged { account }])
}

pub(super) async fn copy_messages(
    tx: &Transaction<'_>,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
    remove: bool,
) -> StoreResult<(Vec<(Uid, Uid)>, Vec<StoreEvent>)> {
    // Both rows locked, in id order (see the module docs of `mailstore`).
    let rows = tx
        .query(
            "SELECT id, account FROM mailboxes WHERE id = ANY ($1) ORDER BY id FOR UPDATE",
            &[&vec![from, to]],
        )
        .await?;
    let account_of_id = |id: MailboxId| {
        rows.iter()
            .find(|r| r.get::<_, MailboxId>(0) == id)
            .map(|r| r.get::<_, AccountId>(1))
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {id}")))
    };
    let account = account_of_id(from)?;
    if account_of_id(to)? != account {
        return Err(StoreError::Invalid(
            "messages can only be copied within one account".into(),
        ));
    }
    let wanted: Vec<i64> = uids.iter().map(|u| i64::from(u.get())).collect();
    let found = tx
        .query(
            &format!("{META_SELECT} WHERE mailbox = $1 AND uid = ANY ($2)"),
            &[&from, &wanted],
        )
        .await?;
    let mut metas = std::collections::HashMap::new();
    for r in &found {
        let m = meta_from_row(r)?;
        metas.insert(m.uid, m);
    }
    let mut pairs = Vec::with_capacity(metas.len());
    for uid in uids {
        let Some(meta) = metas.remove(uid) else {
            continue;
        };
        let new = append_entry(
            tx,
            to,
            meta.blob,
            &meta.flags,
            meta.internal_date,
            meta.size,
        )
        .await?;
        pairs.push((*uid, new));
    }
    if remove && !pairs.is_empty() {
        let moved: Vec<Uid> = pairs.iter().map(|p| p.0).collect();
        // The bodies stay: the new entries use them.
        expunge_in(tx, from, &moved).await?;
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

pub(super) async fn expunged_since(
    c: &impl GenericClient,
    mailbox: MailboxId,
    modseq: u64,
) -> StoreResult<Vec<Uid>> {
    let rows = c
        .query(
            "SELECT uid FROM expunged WHERE mailbox = $1 AND modseq > $2 ORDER BY uid",
            &[&mailbox, &(modseq.min(i64::MAX as u64) as i64)],
        )
        .await?;
    Ok(rows.iter().filter_map(|r| uid_of(r.get(0))).collect())
}

/// A read-only transaction that sees one snapshot for all its reads.
async fn snapshot(c: &mut deadpool_postgres::Client) -> StoreResult<Transaction<'_>> {
    Ok(c.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

async fn mailbox_head(tx: &Transaction<'_>, mailbox: MailboxId) -> StoreResult<Option<(u64, u32)>> {
    Ok(tx
        .query_opt(
            "SELECT highest_modseq, uid_validity FROM mailboxes WHERE id = $1",
            &[&mailbox],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u32)))
}

pub(super) async fn changes_since(
    c: &mut deadpool_postgres::Client,
    mailbox: MailboxId,
    modseq: u64,
) -> StoreResult<MailboxChanges> {
    let tx = snapshot(c).await?;
    let Some((highest_modseq, uid_validity)) = mailbox_head(&tx, mailbox).await? else {
        return Ok(MailboxChanges::default());
    };
    let rows = tx
        .query(
            &format!("{META_SELECT} WHERE mailbox = $1 AND modseq > $2 ORDER BY uid"),
            &[&mailbox, &(modseq.min(i64::MAX as u64) as i64)],
        )
        .await?;
    let changed = rows
        .iter()
        .map(meta_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    let expunged = expunged_since(&tx, mailbox, modseq).await?;
    tx.commit().await?;
    Ok(MailboxChanges {
        highest_modseq,
        uid_validity,
        changed,
        expunged,
    })
}

pub(super) async fn mailbox_flags(
    c: &mut deadpool_postgres::Client,
    mailbox: MailboxId,
) -> StoreResult<MailboxFlags> {
    let tx = snapshot(c).await?;
    let Some((highest_modseq, uid_validity)) = mailbox_head(&tx, mailbox).await? else {
        return Ok(MailboxFlags::default());
    };
    let rows = tx
        .query(
            "SELECT uid, flags FROM messages WHERE mailbox = $1 ORDER BY uid",
            &[&mailbox],
        )
        .await?;
    tx.commit().await?;
    Ok(MailboxFlags::from_entries(
        highest_modseq,
        uid_validity,
        rows.iter()
            .filter_map(|r| uid_of(r.get(0)).map(|u| (u, r.get::<_, Vec<String>>(1)))),
    ))
}

pub(super) async fn adopt_uid_validity(
    tx: &Transaction<'_>,
    mailbox: MailboxId,
    uid_validity: u32,
) -> StoreResult<Vec<StoreEvent>> {
    if uid_validity == 0 {
        return Err(StoreError::Invalid("UIDVALIDITY 0 is not allowed".into()));
    }
    let account = account_of(tx, mailbox, true).await?;
    let row = tx
        .query_one(
            "SELECT uid_validity, (SELECT count(*) FROM messages WHERE mailbox = $1)
               FROM mailboxes WHERE id = $1",
            &[&mailbox],
        )
        .await?;
    let (current, messages): (i64, i64) = (row.get(0), row.get(1));
    if current == i64::from(uid_validity) {
        return Ok(vec![]);
    }
    if messages > 0 {
        return Err(StoreError::Invalid(format!(
            "mailbox {mailbox} holds {messages} messages; only an empty mailbox can take another UIDVALIDITY"
        )));
    }
    bump_modseq(tx, mailbox).await?;
    tx.execute(
        "UPDATE mailboxes SET uid_validity = $2, uid_next = 1 WHERE id = $1",
        &[&mailbox, &i64::from(uid_validity)],
    )
    .await?;
    tx.execute("DELETE FROM expunged WHERE mailbox = $1", &[&mailbox])
        .await?;
    tx.execute("DELETE FROM pop3_uidls WHERE mailbox = $1", &[&mailbox])
        .await?;
    // Later UIDVALIDITYs stay above this one.
    tx.execute(
        "SELECT setval('uid_validity_seq', greatest($1, (SELECT last_value FROM uid_validity_seq)))",
        &[&i64::from(uid_validity)],
    )
    .await?;
    Ok(vec![StoreEvent::MailboxesChanged { account }])
}

pub(super) async fn import_messages(
    tx: &Transaction<'_>,
    mailbox: MailboxId,
    messages: &[(ImportMessage, String, Vec<String>)],
) -> StoreResult<(Vec<Uid>, Vec<StoreEvent>)> {
    let account = account_of(tx, mailbox, true).await?;
    let mut uids = Vec::with_capacity(messages.len());
    for (m, structure, flags) in messages {
        let raw = &m.message.raw;
        let blob = insert_blob(tx, raw, structure).await?;
        let uid_next: i64 = tx
            .query_one("SELECT uid_next FROM mailboxes WHERE id = $1", &[&mailbox])
            .await?
            .get(0);
        let uid = match m.uid {
            Some(u) if i64::from(u.get()) >= uid_next => i64::from(u.get()),
            _ => uid_next,
        };
        if uid >= u32::MAX as i64 {
            return Err(StoreError::Invalid(
                "UID space of the mailbox exhausted".into(),
            ));
        }
        let modseq: i64 = tx
            .query_one(
                "UPDATE mailboxes SET uid_next = $2, highest_modseq = highest_modseq + 1
                 WHERE id = $1 RETURNING highest_modseq",
                &[&mailbox, &(uid + 1)],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &mailbox,
                &uid,
                &blob,
                flags,
                &m.message.internal_date,
                &(raw.len() as i64),
                &modseq,
            ],
        )
        .await?;
        if let Some(uidl) = &m.pop3_uidl {
            tx.execute(
                "INSERT INTO pop3_uidls (mailbox, uid, uidl) VALUES ($1, $2, $3)
                 ON CONFLICT (mailbox, uid) DO UPDATE SET uidl = excluded.uidl",
                &[&mailbox, &uid, uidl],
            )
            .await?;
        }
        uids.extend(uid_of(uid));
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
