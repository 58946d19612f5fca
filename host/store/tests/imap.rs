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
    assert!(matches!(
        s.set_subscribed(a, "None", true).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_mailbox(a, "INBOX").await,
        Err(StoreError::Invalid(_))
    ));
    s.delete_mailbox(a, "Old").await.unwrap();
    assert!(s.mailbox(a, "Old").await.unwrap().is_none());
    assert!(s.check().await.unwrap().is_empty());
}
