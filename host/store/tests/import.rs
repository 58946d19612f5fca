//! Moving mail in: UIDVALIDITY, UIDs and POP3 UIDLs kept
//! (`MailStore::adopt_uid_validity`, `import_messages`, `raise_uid_next`,
//! `pop3_uidls`), and their notifications reaching another process's store.

use std::sync::Arc;
use std::time::Duration;

use mailgate_store::{
    Directory, ImportMessage, MailStore, MessageStructure, NewMessage, SqliteStore, StoreError,
    StoreEvent, Uid,
};

fn message(subject: &str) -> NewMessage {
    let raw = format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes();
    NewMessage {
        structure: MessageStructure::parse(&raw),
        raw: Arc::new(raw),
        internal_date: 1_700_000_000,
    }
}

fn imported(subject: &str, uid: Option<u32>, uidl: Option<&str>) -> ImportMessage {
    ImportMessage {
        message: message(subject),
        flags: vec!["\\Seen".into(), "$Forwarded".into()],
        uid: uid.and_then(Uid::new),
        pop3_uidl: uidl.map(str::to_string),
    }
}

#[tokio::test]
async fn uids_uidvalidity_and_uidls_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let a = s.create_account("a@example.org", "hash").await.unwrap();
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    s.adopt_uid_validity(inbox.id, 1234).await.unwrap();
    let uids = s
        .import_messages(
            inbox.id,
            vec![
                imported("one", Some(3), Some("00000003000004D2")),
                imported("two", Some(7), None),
                // Below UIDNEXT: cannot keep it, takes the next.
                imported("three", Some(5), None),
            ],
        )
        .await
        .unwrap();
    let got: Vec<u32> = uids.iter().map(|u| u.get()).collect();
    assert_eq!(got, [3, 7, 8]);
    assert_eq!(s.raise_uid_next(inbox.id, 20).await.unwrap(), 20);
    assert_eq!(s.raise_uid_next(inbox.id, 2).await.unwrap(), 20);
    let mb = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    assert_eq!((mb.uid_validity, mb.uid_next, mb.messages), (1234, 20, 3));
    let metas = s.list_messages(inbox.id).await.unwrap();
    assert_eq!(metas[0].flags, ["$Forwarded", "\\Seen"]);
    assert_eq!(metas[0].internal_date, 1_700_000_000);
    assert_eq!(
        s.pop3_uidls(inbox.id).await.unwrap(),
        [(Uid::new(3).unwrap(), "00000003000004D2".to_string())]
    );
    // A mailbox with messages keeps its UIDVALIDITY.
    assert!(matches!(
        s.adopt_uid_validity(inbox.id, 99).await,
        Err(StoreError::Invalid(_))
    ));
    // The UIDL goes with its entry.
    s.expunge(inbox.id, &[Uid::new(3).unwrap()]).await.unwrap();
    assert!(s.pop3_uidls(inbox.id).await.unwrap().is_empty());
    assert!(s.check().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let a = s.create_account("a@example.org", "hash").await.unwrap();
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    let bad = imported("bad", None, Some("has space"));
    let r = s
        .import_messages(inbox.id, vec![imported("ok", None, None), bad])
        .await;
    assert!(r.is_err());
    assert_eq!(s.list_messages(inbox.id).await.unwrap().len(), 0);
}

#[tokio::test]
async fn another_process_hears_of_an_import() {
    let dir = tempfile::tempdir().unwrap();
    let server = SqliteStore::open(dir.path()).unwrap();
    let a = server
        .create_account("a@example.org", "hash")
        .await
        .unwrap();
    let inbox = server.mailbox(a, "INBOX").await.unwrap().unwrap();
    let mut events = server.subscribe();
    // Let the watcher note where the table ends.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let cli = SqliteStore::open(dir.path()).unwrap();
    cli.announce_to_other_processes();
    let uids = cli
        .import_messages(inbox.id, vec![imported("one", None, None)])
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("the server's store announces the CLI's import")
        .unwrap();
    assert_eq!(
        ev,
        StoreEvent::Appended {
            account: a,
            mailbox: inbox.id,
            uids
        }
    );
}

#[tokio::test]
async fn an_adopted_uidvalidity_is_never_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let a = s.create_account("a@example.org", "hash").await.unwrap();
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    // A source server whose UIDVALIDITYs run ahead of the clock.
    let adopted = u32::MAX - 10;
    s.adopt_uid_validity(inbox.id, adopted).await.unwrap();
    s.create_mailbox(a, "Later", None).await.unwrap();
    let created = s.mailbox(a, "Later").await.unwrap().unwrap();
    assert!(
        created.uid_validity > adopted,
        "{} must be above the adopted {adopted}",
        created.uid_validity
    );
}
