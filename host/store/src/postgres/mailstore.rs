//! [`MailStore`] for the PostgreSQL store: mailboxes and messages, with
//! the same contracts as the embedded store (`sqlite::mailstore`).
//!
//! Every write is one transaction on one pooled connection, except
//! deliveries: those of a node share transactions, many at a time, in
//! the group commit of [`super::writer`]. A UID or a
//! MODSEQ is taken from the mailbox row (`UPDATE mailboxes … RETURNING`),
//! whose row lock is held until the commit: two nodes writing to one
//! mailbox take turns, so UIDs and MODSEQs are unique and MODSEQ strictly
//! increasing per mailbox. Transactions that lock several mailboxes (a
//! delivery to several, MOVE) lock them in id order, and every
//! transaction locks its mailboxes before any body row, so that no two
//! of them wait for each other in a circle.
//!
//! Bodies are content-addressed: `blobs.hash` is the SHA-256 of the bytes,
//! so an identical body delivered again (by any node) is stored once.

use std::collections::BTreeSet;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tokio_postgres::Row;

use super::PgStore;
use crate::sqlite::mailstore::{canonical_flag, normalize_mailbox_name};
use crate::{
    AccountId, Delivered, DeliveryTarget, FetchedMessage, FlagChange, ImportMessage, MailStore,
    MailboxChanges, MailboxFlags, MailboxId, MailboxInfo, MessageMeta, MessageStructure,
    NewMessage, RawPart, SpecialUse, StoreError, StoreEvent, StoreResult, Uid,
};

/// Canonical, sorted, deduplicated flags.
pub(super) fn canonical_set(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter_map(|f| canonical_flag(f))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn uid_from(n: i64) -> StoreResult<Uid> {
    u32::try_from(n)
        .ok()
        .and_then(Uid::new)
        .ok_or_else(|| StoreError::Corrupt(format!("UID {n} out of range")))
}

fn structure_json(s: &MessageStructure) -> StoreResult<String> {
    serde_json::to_string(s).map_err(|e| StoreError::Invalid(format!("message structure: {e}")))
}

fn parse_structure(json: &str) -> StoreResult<MessageStructure> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("message structure: {e}")))
}

/// A new mailbox's UIDVALIDITY: the clock, but above every one given
/// before (a sequence shared by all nodes), so that a mailbox deleted and
/// created again never gets its old one back.
async fn next_uid_validity(c: &impl GenericClient) -> StoreResult<u32> {
    let v: i64 = c
        .query_one(
            "SELECT setval('uid_validity_seq',
                 greatest(nextval('uid_validity_seq'), least(extract(epoch from now())::bigint, 4294967295)))",
            &[],
        )
        .await?
        .get(0);
    u32::try_from(v).map_err(|_| StoreError::Corrupt("UIDVALIDITY sequence exhausted".into()))
}

/// Creates a mailbox inside the transaction (subscribed, as in SQLite).
pub(super) async fn create_mailbox_in(
    c: &impl GenericClient,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> StoreResult<MailboxId> {
    let name = normalize_mailbox_name(name)?;
    let validity = i64::from(next_uid_validity(c).await?);
    let special = special_use.map(SpecialUse::attribute);
    let row = c
        .query_opt(
            "INSERT INTO mailboxes (account, name, special_use, uid_validity)
             VALUES ($1, $2, $3, $4) ON CONFLICT (account, name) DO NOTHING RETURNING id",
            &[&account, &name, &special, &validity],
        )
        .await?;
    let Some(row) = row else {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    };
    c.execute(
        "INSERT INTO subscriptions (account, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&account, &name],
    )
    .await?;
    Ok(row.get(0))
}

const MAILBOX_SELECT: &str = "SELECT mb.id, mb.account, mb.name, mb.special_use,
        EXISTS (SELECT 1 FROM subscriptions s WHERE s.account = mb.account AND s.name = mb.name),
        mb.uid_validity, mb.uid_next, mb.highest_modseq,
        (SELECT count(*) FROM messages m WHERE m.mailbox = mb.id),
        (SELECT count(*) FROM messages m WHERE m.mailbox = mb.id AND NOT ('\\Seen' = ANY (m.flags))),
        (SELECT coalesce(sum(size), 0)::bigint FROM messages m WHERE m.mailbox = mb.id)
    FROM mailboxes mb";

const MAILBOX_STATE_SELECT: &str = "SELECT mb.id, mb.account, mb.name, mb.special_use,
        EXISTS (SELECT 1 FROM subscriptions s WHERE s.account = mb.account AND s.name = mb.name),
        mb.uid_validity, mb.uid_next, mb.highest_modseq, 0::bigint, 0::bigint, 0::bigint
    FROM mailboxes mb";

fn mailbox_from_row(r: &Row) -> MailboxInfo {
    MailboxInfo {
        id: r.get(0),
        account: r.get(1),
        name: r.get(2),
        special_use: r
            .get::<_, Option<String>>(3)
            .and_then(|s| SpecialUse::from_attribute(&s)),
        subscribed: r.get(4),
        uid_validity: r.get::<_, i64>(5) as u32,
        uid_next: r.get::<_, i64>(6).min(u32::MAX as i64) as u32,
        highest_modseq: r.get::<_, i64>(7) as u64,
        messages: r.get::<_, i64>(8) as u32,
        unseen: r.get::<_, i64>(9) as u32,
        size: r.get::<_, i64>(10) as u64,
    }
}

pub(super) const META_SELECT: &str =
    "SELECT uid, flags, internal_date, size, modseq, blob FROM messages";

pub(super) fn meta_from_row(r: &Row) -> StoreResult<MessageMeta> {
    Ok(MessageMeta {
        uid: uid_from(r.get(0))?,
        flags: r.get(1),
        internal_date: r.get(2),
        size: r.get::<_, i64>(3) as u64,
        modseq: r.get::<_, i64>(4) as u64,
        blob: r.get(5),
    })
}

fn metas(rows: &[Row]) -> StoreResult<Vec<MessageMeta>> {
    rows.iter().map(meta_from_row).collect()
}

/// The owner of a mailbox, locking its row until the commit when `lock`.
pub(super) async fn account_of(
    c: &impl GenericClient,
    mailbox: MailboxId,
    lock: bool,
) -> StoreResult<AccountId> {
    let sql = if lock {
        "SELECT account FROM mailboxes WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT account FROM mailboxes WHERE id = $1"
    };
    c.query_opt(sql, &[&mailbox])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

/// Takes the next MODSEQ of a mailbox (inside the transaction).
pub(super) async fn bump_modseq(c: &impl GenericClient, mailbox: MailboxId) -> StoreResult<u64> {
    let m: i64 = c
        .query_one(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING highest_modseq",
            &[&mailbox],
        )
        .await?
        .get(0);
    Ok(m as u64)
}

/// Stores a body once (by its SHA-256) and returns its id; an identical
/// body stored before, by any node, is reused.
pub(super) async fn insert_blob(
    c: &impl GenericClient,
    raw: &[u8],
    structure: &str,
) -> StoreResult<i64> {
    let hash = Sha256::digest(raw).to_vec();
    let header = &raw[..crate::structure::header_block_len(raw)];
    let size = raw.len() as i64;
    // DO UPDATE (a no-op) rather than DO NOTHING, so that the id comes
    // back when the body exists, and so that the row is locked against a
    // concurrent deletion of the last entry using it.
    let st = c
        .prepare_cached(
            "INSERT INTO blobs (hash, size, structure, header, data) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash RETURNING id",
        )
        .await?;
    Ok(c.query_one(&st, &[&hash, &size, &structure, &header, &raw])
        .await?
        .get(0))
}

/// Inserts one entry with the mailbox's next UID and MODSEQ.
pub(super) async fn append_entry(
    c: &impl GenericClient,
    mailbox: MailboxId,
    blob: i64,
    flags: &[String],
    internal_date: i64,
    size: u64,
) -> StoreResult<Uid> {
    let st = c
        .prepare_cached(
            "UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1
             WHERE id = $1 RETURNING uid_next - 1, highest_modseq",
        )
        .await?;
    let row = c
        .query_opt(&st, &[&mailbox])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
    let (uid, modseq): (i64, i64) = (row.get(0), row.get(1));
    if uid > u32::MAX as i64 {
        return Err(StoreError::Invalid(
            "UID space of the mailbox exhausted".into(),
        ));
    }
    let st = c
        .prepare_cached(
            "INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    c.execute(
        &st,
        &[
            &mailbox,
            &uid,
            &blob,
            &flags,
            &internal_date,
            &(size as i64),
            &modseq,
        ],
    )
    .await?;
    uid_from(uid)
}

/// Deletes the bodies no entry refers to: those of `only` (the ones just
/// released), or all of them.
pub(super) async fn delete_orphan_blobs(
    c: &impl GenericClient,
    only: Option<&[i64]>,
) -> StoreResult<u64> {
    Ok(match only {
        Some(ids) => {
            c.execute(
                "DELETE FROM blobs b WHERE b.id = ANY ($1)
                   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)",
                &[&ids],
            )
            .await?
        }
        None => {
            c.execute(
                "DELETE FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)",
                &[],
            )
            .await?
        }
    })
}

/// Removes entries from a mailbox (its row locked by the caller) with a
/// MODSEQ each, remembered for QRESYNC; returns the UIDs removed and the
/// bodies they used.
pub(super) async fn expunge_in(
    c: &impl GenericClient,
    mailbox: MailboxId,
    uids: &[Uid],
) -> StoreResult<(Vec<Uid>, Vec<i64>)> {
    let mut removed = Vec::with_capacity(uids.len());
    let mut blobs = Vec::new();
    for uid in uids {
        let n = i64::from(uid.get());
        let Some(row) = c
            .query_opt(
                "DELETE FROM messages WHERE mailbox = $1 AND uid = $2 RETURNING blob",
                &[&mailbox, &n],
            )
            .await?
        else {
            continue;
        };
        blobs.push(row.get::<_, i64>(0));
        let modseq = bump_modseq(c, mailbox).await? as i64;
        c.execute(
            "INSERT INTO expunged (mailbox, uid, modseq) VALUES ($1, $2, $3)
             ON CONFLICT (mailbox, uid) DO UPDATE SET modseq = excluded.modseq",
            &[&mailbox, &n, &modseq],
        )
        .await?;
        removed.push(*uid);
    }
    blobs.sort_unstable();
    blobs.dedup();
    Ok((removed, blobs))
}

/// What [`store_flags_in`] returns: the new state of the messages that
/// passed the UNCHANGEDSINCE check, and the UIDs of those that failed.
type FlagsStored = (Vec<MessageMeta>, Vec<Uid>);

async fn store_flags_in(
    tx: &Transaction<'_>,
    mailbox: MailboxId,
    uids: &[Uid],
    change: &FlagChange,
    unchanged_since: Option<u64>,
) -> StoreResult<(FlagsStored, Vec<StoreEvent>)> {
    // The mailbox row locked first: flag changes of one mailbox take
    // turns, so the UNCHANGEDSINCE check and the change are one step.
    let account = account_of(tx, mailbox, true).await?;
    let wanted: Vec<i64> = uids.iter().map(|u| i64::from(u.get())).collect();
    let rows = tx
        .query(
            &format!("{META_SELECT} WHERE mailbox = $1 AND uid = ANY ($2)"),
            &[&mailbox, &wanted],
        )
        .await?;
    let mut found: std::collections::HashMap<Uid, MessageMeta> = Default::default();
    for r in &rows {
        let m = meta_from_row(r)?;
        found.insert(m.uid, m);
    }
    let mut out = Vec::with_capacity(found.len());
    let mut modified = Vec::new();
    let mut changed = Vec::new();
    for uid in uids {
        let Some(mut meta) = found.remove(uid) else {
            continue;
        };
        if unchanged_since.is_some_and(|limit| meta.modseq > limit) {
            modified.push(*uid);
            continue;
        }
        let old: BTreeSet<String> = meta.flags.iter().cloned().collect();
        let new: BTreeSet<String> = match change {
            FlagChange::Set(f) => canonical_set(f).into_iter().collect(),
            FlagChange::Add(f) => old
                .union(&canonical_set(f).into_iter().collect())
                .cloned()
                .collect(),
            FlagChange::Remove(f) => old
                .difference(&canonical_set(f).into_iter().collect())
                .cloned()
                .collect(),
        };
        if new != old {
            let modseq = bump_modseq(tx, mailbox).await?;
            let flags: Vec<String> = new.into_iter().collect();
            tx.execute(
                "UPDATE messages SET flags = $3, modseq = $4 WHERE mailbox = $1 AND uid = $2",
                &[&mailbox, &i64::from(uid.get()), &flags, &(modseq as i64)],
            )
            .await?;
            meta.flags = flags;
            meta.modseq = modseq;
            changed.push(*uid);
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

/// One delivery inside the caller's transaction (not committed): the
/// entries and the events to record and announce. The group commit of
/// [`super::writer`] stores batches of deliveries its own way, and uses
/// this for a delivery tried again alone after a failed batch.
pub(super) async fn deliver_in(
    tx: &impl GenericClient,
    message: &NewMessage,
    structure: &str,
    targets: &[DeliveryTarget],
) -> StoreResult<(Vec<Delivered>, Vec<StoreEvent>)> {
    // Resolve each target's mailbox (INBOX when the one named does
    // not exist), then take the UIDs in mailbox id order: two
    // deliveries to the same mailboxes never wait for each other.
    let mut resolved = Vec::with_capacity(targets.len());
    for t in targets {
        let wanted = normalize_mailbox_name(&t.mailbox).unwrap_or_else(|_| "INBOX".into());
        let mailbox = match find(tx, t.account, &wanted).await? {
            Some(id) => id,
            None => find(tx, t.account, "INBOX")
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("INBOX of account {}", t.account)))?,
        };
        resolved.push(mailbox);
    }
    // The mailbox rows first, in id order, then the body: every
    // transaction takes mailbox locks before a body's (an expunge
    // deleting the last copy of this very body holds its mailbox,
    // then the body), so none waits for another in a circle.
    let mut ids = resolved.clone();
    ids.sort_unstable();
    ids.dedup();
    tx.execute(
        "SELECT 1 FROM mailboxes WHERE id = ANY ($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await?;
    let blob = insert_blob(tx, &message.raw, structure).await?;
    let size = message.raw.len() as u64;
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&i| resolved[i]);
    let mut uids = vec![None; targets.len()];
    for i in order {
        let uid = append_entry(
            tx,
            resolved[i],
            blob,
            &canonical_set(&targets[i].flags),
            message.internal_date,
            size,
        )
        .await?;
        uids[i] = Some(uid);
    }
    let mut delivered = Vec::with_capacity(targets.len());
    let mut events = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let uid = uids[i].ok_or(StoreError::Closed)?;
        delivered.push(Delivered {
            account: t.account,
            mailbox: resolved[i],
            uid,
        });
        events.push(StoreEvent::Appended {
            account: t.account,
            mailbox: resolved[i],
            uids: vec![uid],
        });
    }
    Ok((delivered, events))
}

/// The id of a mailbox by normalised name.
pub(super) async fn find(
    c: &impl GenericClient,
    account: AccountId,
    name: &str,
) -> StoreResult<Option<MailboxId>> {
    Ok(c.query_opt(
        "SELECT id FROM mailboxes WHERE account = $1 AND name = $2",
        &[&account, &name],
    )
    .await?
    .map(|r| r.get(0)))
}

#[async_trait]
impl MailStore for PgStore {
    async fn list_mailboxes(&self, account: AccountId) -> StoreResult<Vec<MailboxInfo>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("{MAILBOX_SELECT} WHERE mb.account = $1 ORDER BY mb.name"),
                &[&account],
            )
            .await?;
        Ok(rows.iter().map(mailbox_from_row).collect())
    }

    async fn mailbox(&self, account: AccountId, name: &str) -> StoreResult<Option<MailboxInfo>> {
        let Ok(name) = normalize_mailbox_name(name) else {
            return Ok(None);
        };
        let c = self.client().await?;
        Ok(c.query_opt(
            &format!("{MAILBOX_SELECT} WHERE mb.account = $1 AND mb.name = $2"),
            &[&account, &name],
        )
        .await?
        .as_ref()
        .map(mailbox_from_row))
    }

    async fn mailbox_state(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<MailboxInfo>> {
        let Ok(name) = normalize_mailbox_name(name) else {
            return Ok(None);
        };
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "{MAILBOX_STATE_SELECT} WHERE mb.account = $1 AND mb.name = $2"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&account, &name])
            .await?
            .as_ref()
            .map(mailbox_from_row))
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<MailboxId> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let id = create_mailbox_in(&tx, account, name, special_use).await?;
        self.commit(tx, vec![StoreEvent::MailboxesChanged { account }])
            .await?;
        Ok(id)
    }

    async fn deliver(
        &self,
        message: NewMessage,
        targets: &[DeliveryTarget],
    ) -> StoreResult<Vec<Delivered>> {
        if targets.is_empty() {
            // Nowhere to go: no body is stored for no entry.
            return Ok(Vec::new());
        }
        let structure = structure_json(&message.structure)?;
        // The node's group commit (`writer`): returns once committed.
        self.writer
            .deliver(message, structure, targets.to_vec())
            .await
    }

    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageMeta>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("{META_SELECT} WHERE mailbox = $1 ORDER BY uid"),
                &[&mailbox],
            )
            .await?;
        metas(&rows)
    }

    async fn message_metas(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageMeta>> {
        let wanted: Vec<i64> = uids.iter().map(|u| i64::from(u.get())).collect();
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("{META_SELECT} WHERE mailbox = $1 AND uid = ANY ($2) ORDER BY uid"),
                &[&mailbox, &wanted],
            )
            .await?;
        metas(&rows)
    }

    async fn message_raw(&self, mailbox: MailboxId, uid: Uid) -> StoreResult<Option<Vec<u8>>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob
              WHERE m.mailbox = $1 AND m.uid = $2",
            &[&mailbox, &i64::from(uid.get())],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn message_structure(
        &self,
        mailbox: MailboxId,
        uid: Uid,
    ) -> StoreResult<Option<MessageStructure>> {
        let c = self.client().await?;
        let json: Option<String> = c
            .query_opt(
                "SELECT b.structure FROM messages m JOIN blobs b ON b.id = m.blob
                  WHERE m.mailbox = $1 AND m.uid = $2",
                &[&mailbox, &i64::from(uid.get())],
            )
            .await?
            .map(|r| r.get(0));
        json.map(|j| parse_structure(&j)).transpose()
    }

    async fn fetch_messages(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        raw: RawPart,
        structure: bool,
    ) -> StoreResult<Vec<FetchedMessage>> {
        // One round trip for the batch; only the columns asked for.
        let data = match raw {
            RawPart::None => "NULL::bytea",
            RawPart::Header => "b.header",
            RawPart::Whole => "b.data",
        };
        let st = if structure {
            "b.structure"
        } else {
            "NULL::text"
        };
        let wanted: Vec<i64> = uids.iter().map(|u| i64::from(u.get())).collect();
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT m.uid, {data}, {st} FROM messages m JOIN blobs b ON b.id = m.blob
                      WHERE m.mailbox = $1 AND m.uid = ANY ($2)"
                ),
                &[&mailbox, &wanted],
            )
            .await?;
        let mut found: std::collections::HashMap<Uid, (Option<Vec<u8>>, Option<String>)> =
            Default::default();
        for r in &rows {
            found.insert(uid_from(r.get(0))?, (r.get(1), r.get(2)));
        }
        let mut out = Vec::with_capacity(found.len());
        for uid in uids {
            let Some((data, json)) = found.remove(uid) else {
                continue;
            };
            out.push(FetchedMessage {
                uid: *uid,
                raw: data,
                structure: json.map(|j| parse_structure(&j)).transpose()?,
            });
        }
        Ok(out)
    }

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        change: FlagChange,
    ) -> StoreResult<Vec<MessageMeta>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let ((out, _), events) = store_flags_in(&tx, mailbox, uids, &change, None).await?;
        self.commit(tx, events).await?;
        Ok(out)
    }

    async fn store_flags_unchanged_since(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        change: FlagChange,
        unchanged_since: u64,
    ) -> StoreResult<(Vec<MessageMeta>, Vec<Uid>)> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (out, events) =
            store_flags_in(&tx, mailbox, uids, &change, Some(unchanged_since)).await?;
        self.commit(tx, events).await?;
        Ok(out)
    }

    async fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> StoreResult<Vec<Uid>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let account = account_of(&tx, mailbox, true).await?;
        let (removed, blobs) = expunge_in(&tx, mailbox, uids).await?;
        delete_orphan_blobs(&tx, Some(&blobs)).await?;
        let events = if removed.is_empty() {
            vec![]
        } else {
            vec![StoreEvent::Expunged {
                account,
                mailbox,
                uids: removed.clone(),
            }]
        };
        self.commit(tx, events).await?;
        Ok(removed)
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let events = super::imap::delete_mailbox(&tx, account, name).await?;
        self.commit(tx, events).await
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let events = super::imap::rename_mailbox(&tx, account, from, to).await?;
        self.commit(tx, events).await
    }

    async fn set_subscribed(
        &self,
        account: AccountId,
        name: &str,
        subscribed: bool,
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let events = super::imap::set_subscribed(&tx, account, name, subscribed).await?;
        self.commit(tx, events).await
    }

    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT name FROM subscriptions WHERE account = $1 ORDER BY name",
            &[&account],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    async fn append(
        &self,
        mailbox: MailboxId,
        message: NewMessage,
        flags: &[String],
    ) -> StoreResult<Uid> {
        let uids = self
            .append_many(mailbox, vec![(message, flags.to_vec())])
            .await?;
        uids.into_iter().next().ok_or(StoreError::Closed)
    }

    async fn append_many(
        &self,
        mailbox: MailboxId,
        messages: Vec<(NewMessage, Vec<String>)>,
    ) -> StoreResult<Vec<Uid>> {
        let mut prepared = Vec::with_capacity(messages.len());
        for (message, flags) in messages {
            let structure = structure_json(&message.structure)?;
            prepared.push((message, structure, canonical_set(&flags)));
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let account = account_of(&tx, mailbox, true).await?;
        let mut uids = Vec::with_capacity(prepared.len());
        for (message, structure, flags) in &prepared {
            let blob = insert_blob(&tx, &message.raw, structure).await?;
            uids.push(
                append_entry(
                    &tx,
                    mailbox,
                    blob,
                    flags,
                    message.internal_date,
                    message.raw.len() as u64,
                )
                .await?,
            );
        }
        let events = uids
            .iter()
            .map(|u| StoreEvent::Appended {
                account,
                mailbox,
                uids: vec![*u],
            })
            .collect();
        self.commit(tx, events).await?;
        Ok(uids)
    }

    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (pairs, events) = super::imap::copy_messages(&tx, from, uids, to, false).await?;
        self.commit(tx, events).await?;
        Ok(pairs)
    }

    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (pairs, events) = super::imap::copy_messages(&tx, from, uids, to, true).await?;
        self.commit(tx, events).await?;
        Ok(pairs)
    }

    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> StoreResult<Vec<Uid>> {
        let c = self.client().await?;
        super::imap::expunged_since(&c, mailbox, modseq).await
    }

    async fn changes_since(&self, mailbox: MailboxId, modseq: u64) -> StoreResult<MailboxChanges> {
        let mut c = self.client().await?;
        super::imap::changes_since(&mut c, mailbox, modseq).await
    }

    async fn mailbox_flags(&self, mailbox: MailboxId) -> StoreResult<MailboxFlags> {
        let mut c = self.client().await?;
        super::imap::mailbox_flags(&mut c, mailbox).await
    }

    async fn adopt_uid_validity(&self, mailbox: MailboxId, uid_validity: u32) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let events = super::imap::adopt_uid_validity(&tx, mailbox, uid_validity).await?;
        self.commit(tx, events).await
    }

    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<ImportMessage>,
    ) -> StoreResult<Vec<Uid>> {
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            if let Some(u) = &m.pop3_uidl {
                if !crate::valid_pop3_uidl(u) {
                    return Err(StoreError::Invalid(
                        "a POP3 UIDL must be 1 to 70 printable ASCII characters".into(),
                    ));
                }
            }
            let structure = structure_json(&m.message.structure)?;
            let flags = canonical_set(&m.flags);
            prepared.push((m, structure, flags));
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (uids, events) = super::imap::import_messages(&tx, mailbox, &prepared).await?;
        self.commit(tx, events).await?;
        Ok(uids)
    }

    async fn raise_uid_next(&self, mailbox: MailboxId, uid_next: u32) -> StoreResult<u32> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "UPDATE mailboxes SET uid_next = greatest(uid_next, $2) WHERE id = $1 RETURNING uid_next",
                &[&mailbox, &i64::from(uid_next)],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
        Ok(row.get::<_, i64>(0).min(u32::MAX as i64) as u32)
    }

    async fn pop3_uidls(&self, mailbox: MailboxId) -> StoreResult<Vec<(Uid, String)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT uid, uidl FROM pop3_uidls WHERE mailbox = $1 ORDER BY uid",
                &[&mailbox],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((uid_from(r.get(0))?, r.get(1))))
            .collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    async fn check(&self) -> StoreResult<Vec<String>> {
        let c = self.client().await?;
        let mut problems = super::check::run(&c).await?;
        problems.extend(super::kv::check(&c).await?);
        Ok(problems)
    }
}
