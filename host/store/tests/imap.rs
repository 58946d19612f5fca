//! The store methods IMAP added: delete, rename (with the INBOX rule),
//! subscribe, append, copy, move, and the expunge history.

use std::sync::Arc;

use mailgate_store::*;

fn message(body: &str) -> NewMessage {
    let raw = format!("Subject: test\r\n\r\n{body}\r\n").into_bytes();
    let structure = MessageStructure::parse(&raw);
    NewMessage {
        raw: Arc::new(raw),
        internal_date: 1_700_000_000,
        structure,
    }
}

#[tokio::test]
async fn mailbox_operations() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let a = s.create_account("a@example.org", "hash").await.unwrap();
    let b = s.create_account("b@example.org", "hash").await.unwrap();
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    let uid = s
        .append(
            inbox.id,
            message("one"),
            &["\\Seen".into(), "\\Recent".into()],
        )
        .await
        .unwrap();
    assert_eq!(uid.get(), 1);
    let metas = s.list_messages(inbox.id).await.unwrap();
    assert_eq!(metas[0].flags, ["\\Seen"]);

    // Copy shares the body; move removes from the source and records it.
    let trash = s.mailbox(a, "Trash").await.unwrap().unwrap();
    let pairs = s.copy_messages(inbox.id, &[uid], trash.id).await.unwrap();
    assert_eq!(pairs, [(uid, Uid::new(1).unwrap())]);
    let sent = s.mailbox(a, "Sent").await.unwrap().unwrap();
    let pairs = s.move_messages(inbox.id, &[uid], sent.id).await.unwrap();
    assert_eq!(pairs.len(), 1);
    assert!(s.list_messages(inbox.id).await.unwrap().is_empty());
    assert_eq!(s.expunged_since(inbox.id, 0).await.unwrap(), [uid]);
    // Not across accounts.
    let other = s.mailbox(b, "INBOX").await.unwrap().unwrap();
    assert!(matches!(
        s.copy_messages(sent.id, &[uid], other.id).await,
        Err(StoreError::Invalid(_))
    ));

    // Rename moves inferiors and creates superiors.
    s.create_mailbox(a, "P", None).await.unwrap();
    s.create_mailbox(a, "P/Q", None).await.unwrap();
    s.rename_mailbox(a, "P", "X/Y").await.unwrap();
    let names: Vec<String> = s
        .list_mailboxes(a)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(names.contains(&"X".to_string()) && names.contains(&"X/Y/Q".to_string()));
    assert!(!names.contains(&"P".to_string()));
    assert!(matches!(
        s.rename_mailbox(a, "X", "Sent").await,
        Err(StoreError::Exists(_))
    ));
    // INBOX rename: messages move, INBOX stays.
    s.append(inbox.id, message("two"), &[]).await.unwrap();
    s.rename_mailbox(a, "INBOX", "Old").await.unwrap();
    assert!(s.list_messages(inbox.id).await.unwrap().is_empty());
    let old = s.mailbox(a, "Old").await.unwrap().unwrap();
    assert_eq!(old.messages, 1);
    assert!(old.uid_next > 1);

    s.set_subscribed(a, "Old", false).await.unwrap();
    assert!(!s.mailbox(a, "Old").await.unwrap().unwrap().subscribed);
    // Names may be subscribed without a mailbox, and stay subscribed
    // when theirs is deleted (RFC 9051 §6.3.7).
    s.set_subscribed(a, "None", true).await.unwrap();
    assert!(matches!(
        s.set_subscribed(a, "Never", false).await,
        Err(StoreError::NotFound(_))
    ));
    s.set_subscribed(a, "Old", true).await.unwrap();
    assert!(matches!(
        s.delete_mailbox(a, "INBOX").await,
        Err(StoreError::Invalid(_))
    ));
    s.delete_mailbox(a, "Old").await.unwrap();
    assert!(s.mailbox(a, "Old").await.unwrap().is_none());
    let subs = s.subscriptions(a).await.unwrap();
    assert!(subs.contains(&"Old".to_string()) && subs.contains(&"None".to_string()));
    assert!(!s
        .subscriptions(b)
        .await
        .unwrap()
        .contains(&"None".to_string()));
    // A subscription follows a renamed mailbox.
    assert!(subs.contains(&"X/Y/Q".to_string()));
    s.rename_mailbox(a, "X", "Z").await.unwrap();
    let subs = s.subscriptions(a).await.unwrap();
    assert!(subs.contains(&"Z/Y/Q".to_string()) && !subs.contains(&"X/Y/Q".to_string()));
    s.set_subscribed(a, "Old", false).await.unwrap();
    assert!(s.check().await.unwrap().is_empty());
}

#[tokio::test]
async fn unchanged_since_is_checked_with_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let a = s.create_account("a@example.org", "hash").await.unwrap();
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    let one = s.append(inbox.id, message("one"), &[]).await.unwrap();
    let two = s.append(inbox.id, message("two"), &[]).await.unwrap();
    let before = s.list_messages(inbox.id).await.unwrap();
    let limit = before[1].modseq;
    // Someone else changes message one.
    s.store_flags(inbox.id, &[one], FlagChange::Add(vec!["\\Seen".into()]))
        .await
        .unwrap();
    let missing = Uid::new(99).unwrap();
    let (done, failed) = s
        .store_flags_unchanged_since(
            inbox.id,
            &[one, two, missing],
            FlagChange::Add(vec!["\\Flagged".into()]),
            limit,
        )
        .await
        .unwrap();
    assert_eq!(failed, [one]);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].uid, &done[0].flags[..]),
        (two, &["\\Flagged".to_string()][..])
    );
    let now = s.list_messages(inbox.id).await.unwrap();
    assert_eq!(now[0].flags, ["\\Seen"]);
    // UNCHANGEDSINCE 0 fails for every message (RFC 7162 §3.1.3).
    let (done, failed) = s
        .store_flags_unchanged_since(inbox.id, &[one, two], FlagChange::Set(vec![]), 0)
        .await
        .unwrap();
    assert!(done.is_empty());
    assert_eq!(failed, [one, two]);
}

#[tokio::test]
async fn append_many_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let a = s.create_account("a@example.org", "hash").await.unwrap();
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    let uids = s
        .append_many(
            inbox.id,
            vec![
                (message("one"), vec!["\\Seen".into()]),
                (message("two"), vec![]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(uids.iter().map(|u| u.get()).collect::<Vec<_>>(), [1, 2]);
    let metas = s.list_messages(inbox.id).await.unwrap();
    assert_eq!(metas.len(), 2);
    assert_eq!(metas[0].flags, ["\\Seen"]);
    // The second message cannot get a UID (UIDs are 32 bits): the first,
    // which could, is not stored either.
    let db = rusqlite::Connection::open(dir.path().join("mailgate.db")).unwrap();
    db.execute(
        "UPDATE mailboxes SET uid_next = 4294967295 WHERE id = ?1",
        [inbox.id],
    )
    .unwrap();
    assert!(s
        .append_many(
            inbox.id,
            vec![(message("x"), vec![]), (message("y"), vec![])]
        )
        .await
        .is_err());
    assert_eq!(s.list_messages(inbox.id).await.unwrap().len(), 2);
    let after = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    assert_eq!(after.uid_next, 4294967295);
    assert!(s.check().await.unwrap().is_empty());
}

/// `changes_since`: what a view at MODSEQ m must apply to reach
/// HIGHESTMODSEQ, read in one transaction.
#[tokio::test]
async fn changes_since_is_the_modseq_delta() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let a = s.create_account("a@example.org", "hash").await.unwrap();
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    let mut uids = Vec::new();
    for i in 0..5 {
        uids.push(
            s.append(inbox.id, message(&format!("m{i}")), &[])
                .await
                .unwrap(),
        );
    }
    let all = s.changes_since(inbox.id, 0).await.unwrap();
    assert_eq!(all.changed.iter().map(|m| m.uid).collect::<Vec<_>>(), uids);
    assert_eq!(all.uid_validity, inbox.uid_validity);
    assert!(all.expunged.is_empty());
    let m = all.highest_modseq;
    assert_eq!(
        m,
        s.mailbox(a, "INBOX").await.unwrap().unwrap().highest_modseq
    );

    // Nothing since m.
    let none = s.changes_since(inbox.id, m).await.unwrap();
    assert!(none.changed.is_empty() && none.expunged.is_empty());
    assert_eq!(none.highest_modseq, m);

    // A flag change, an expunge, an append: exactly those, by UID.
    s.store_flags(
        inbox.id,
        &[uids[3]],
        FlagChange::Add(vec!["\\Flagged".into()]),
    )
    .await
    .unwrap();
    s.expunge(inbox.id, &[uids[1]]).await.unwrap();
    let new = s.append(inbox.id, message("new"), &[]).await.unwrap();
    let d = s.changes_since(inbox.id, m).await.unwrap();
    assert_eq!(
        d.changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [uids[3], new]
    );
    assert_eq!(d.changed[0].flags, ["\\Flagged"]);
    assert_eq!(d.expunged, [uids[1]]);
    assert!(d.highest_modseq > m);
    assert_eq!(
        d.highest_modseq,
        s.mailbox(a, "INBOX").await.unwrap().unwrap().highest_modseq
    );

    // A mailbox that is gone: UIDVALIDITY 0.
    let gone = s.changes_since(9_999, 0).await.unwrap();
    assert_eq!(gone, MailboxChanges::default());
}
