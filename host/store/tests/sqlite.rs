//! The embedded store against its contract.

use std::sync::Arc;

use mailgate_store::*;

fn message(body: &str) -> NewMessage {
    let raw = format!("Subject: test\r\nFrom: a@b.example\r\n\r\n{body}\r\n").into_bytes();
    let structure = MessageStructure::parse(&raw);
    NewMessage {
        raw: Arc::new(raw),
        internal_date: 1_700_000_000,
        structure,
    }
}

fn inbox(account: AccountId) -> DeliveryTarget {
    DeliveryTarget {
        account,
        mailbox: "INBOX".into(),
        flags: vec![],
    }
}

async fn open() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

#[tokio::test]
async fn accounts_get_the_standard_mailboxes() {
    let (_d, s) = open().await;
    let id = s.create_account("Alice@Example.org", "hash").await.unwrap();
    let names: Vec<_> = s
        .list_mailboxes(id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.special_use))
        .collect();
    assert_eq!(names.len(), 6);
    assert!(names.contains(&("INBOX".to_string(), None)));
    assert!(names.contains(&("Junk".to_string(), Some(SpecialUse::Junk))));
    assert_eq!(
        s.account("alice@example.org").await.unwrap().unwrap().id,
        id
    );
    assert!(matches!(
        s.create_account("alice@example.org", "h").await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        s.create_account("no-at-sign", "h").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(s.mailbox(id, "inbox").await.unwrap().is_some());
}

#[tokio::test]
async fn one_body_for_many_mailboxes_and_uids_grow() {
    let (_d, s) = open().await;
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let b = s.create_account("b@x.org", "h").await.unwrap();
    let mut events = s.subscribe();
    let d1 = s
        .deliver(message("one"), &[inbox(a), inbox(b)])
        .await
        .unwrap();
    assert_eq!(d1.len(), 2);
    assert_eq!(d1[0].uid.get(), 1);
    assert_eq!(d1[1].uid.get(), 1);
    let d2 = s.deliver(message("two"), &[inbox(a)]).await.unwrap();
    assert_eq!(d2[0].uid.get(), 2);
    let list = s.list_messages(d1[0].mailbox).await.unwrap();
    assert_eq!(list.len(), 2);
    let other = s.list_messages(d1[1].mailbox).await.unwrap();
    assert_eq!(list[0].blob, other[0].blob, "stored once");
    assert!(matches!(
        events.recv().await.unwrap(),
        StoreEvent::Appended { .. }
    ));
    let raw = s
        .message_raw(d1[0].mailbox, d1[0].uid)
        .await
        .unwrap()
        .unwrap();
    assert!(raw.ends_with(b"one\r\n"));
    assert!(s
        .message_structure(d1[0].mailbox, d1[0].uid)
        .await
        .unwrap()
        .is_some());
    let info = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    assert_eq!((info.messages, info.unseen, info.uid_next), (2, 2, 3));

    // Expunging one copy keeps the body for the other; the second removes it.
    s.expunge(d1[0].mailbox, &[d1[0].uid]).await.unwrap();
    assert!(s
        .message_raw(d1[1].mailbox, d1[1].uid)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        s.expunge(d1[1].mailbox, &[d1[1].uid]).await.unwrap(),
        vec![d1[1].uid]
    );
    assert!(
        s.check().await.unwrap().is_empty(),
        "{:?}",
        s.check().await.unwrap()
    );
    // UIDs are not reused after an expunge.
    let d3 = s.deliver(message("three"), &[inbox(a)]).await.unwrap();
    assert_eq!(d3[0].uid.get(), 3);
}

#[tokio::test]
async fn flags_and_modseq() {
    let (_d, s) = open().await;
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let d = s
        .deliver(
            message("m"),
            &[DeliveryTarget {
                account: a,
                mailbox: "Junk".into(),
                flags: vec!["\\seen".into()],
            }],
        )
        .await
        .unwrap();
    let junk = s.mailbox(a, "Junk").await.unwrap().unwrap();
    assert_eq!(d[0].mailbox, junk.id);
    let meta = &s.list_messages(junk.id).await.unwrap()[0];
    assert_eq!(meta.flags, vec!["\\Seen".to_string()]);
    let before = junk.highest_modseq;
    let after = s
        .store_flags(
            junk.id,
            &[meta.uid],
            FlagChange::Add(vec!["\\Flagged".into(), "$Label1".into()]),
        )
        .await
        .unwrap();
    assert_eq!(after[0].flags, vec!["$Label1", "\\Flagged", "\\Seen"]);
    assert!(after[0].modseq > before);
    let unchanged = s
        .store_flags(junk.id, &[meta.uid], FlagChange::Add(vec!["\\Seen".into()]))
        .await
        .unwrap();
    assert_eq!(
        unchanged[0].modseq, after[0].modseq,
        "no change, no new MODSEQ"
    );
    let cleared = s
        .store_flags(junk.id, &[meta.uid], FlagChange::Set(vec![]))
        .await
        .unwrap();
    assert!(cleared[0].flags.is_empty());
    assert_eq!(s.mailbox(a, "Junk").await.unwrap().unwrap().unseen, 1);
    // A target mailbox that does not exist falls back to INBOX.
    let d = s
        .deliver(
            message("m"),
            &[DeliveryTarget {
                account: a,
                mailbox: "Nope".into(),
                flags: vec![],
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        d[0].mailbox,
        s.mailbox(a, "INBOX").await.unwrap().unwrap().id
    );
}

#[tokio::test]
async fn directory_aliases_domains_and_deletion() {
    let (_d, s) = open().await;
    s.add_domain("Example.ORG").await.unwrap();
    s.set_catch_all("example.org", Some("a@example.org"))
        .await
        .unwrap();
    assert_eq!(
        s.list_domains().await.unwrap(),
        vec![DomainInfo {
            name: "example.org".into(),
            catch_all: Some("a@example.org".into())
        }]
    );
    s.set_alias(
        "team@example.org",
        &["a@example.org".into(), "b@example.org".into()],
    )
    .await
    .unwrap();
    assert_eq!(s.alias("TEAM@example.org").await.unwrap().unwrap().len(), 2);
    assert!(s.delete_alias("team@example.org").await.unwrap());
    assert!(s.alias("team@example.org").await.unwrap().is_none());
    let a = s.create_account("a@example.org", "h").await.unwrap();
    s.deliver(message("m"), &[inbox(a)]).await.unwrap();
    assert!(s.delete_account("a@example.org").await.unwrap());
    assert!(s.account("a@example.org").await.unwrap().is_none());
    assert!(s.check().await.unwrap().is_empty());
    assert!(s.delete_domain("example.org").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_commits_and_all_land() {
    let (_d, s) = open().await;
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.deliver(message(&format!("n{i}")), &[inbox(a)])
                .await
                .unwrap()
        }));
    }
    let mut uids = std::collections::BTreeSet::new();
    for t in tasks {
        uids.insert(t.await.unwrap()[0].uid.get());
    }
    assert_eq!(uids.len(), 200);
    assert_eq!(*uids.iter().next_back().unwrap(), 200);
    assert!(s.check().await.unwrap().is_empty());
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, uid) = {
        let s = SqliteStore::open(dir.path()).unwrap();
        let a = s.create_account("a@x.org", "h").await.unwrap();
        let d = s.deliver(message("persist"), &[inbox(a)]).await.unwrap();
        (d[0].mailbox, d[0].uid)
    };
    let s = SqliteStore::open(dir.path()).unwrap();
    assert!(s
        .message_raw(mailbox, uid)
        .await
        .unwrap()
        .unwrap()
        .ends_with(b"persist\r\n"));
}

#[tokio::test]
async fn batched_fetch_and_header_blocks() {
    let (dir, s) = open().await;
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let mut uids = Vec::new();
    let mut mailbox = 0;
    for body in ["one", "two", "three"] {
        let d = s.deliver(message(body), &[inbox(a)]).await.unwrap();
        mailbox = d[0].mailbox;
        uids.push(d[0].uid);
    }
    // Asked out of order with a UID that does not exist: the order is
    // kept, the missing one left out.
    let missing = Uid::new(99).unwrap();
    let asked = [uids[2], missing, uids[0]];
    let got = s
        .fetch_messages(mailbox, &asked, RawPart::Whole, true)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].uid, uids[2]);
    assert_eq!(
        got[0].raw.as_deref(),
        s.message_raw(mailbox, uids[2]).await.unwrap().as_deref()
    );
    assert_eq!(
        got[1].structure,
        s.message_structure(mailbox, uids[0]).await.unwrap()
    );
    let only_structure = s
        .fetch_messages(mailbox, &uids, RawPart::None, true)
        .await
        .unwrap();
    assert!(only_structure
        .iter()
        .all(|m| m.raw.is_none() && m.structure.is_some()));
    let neither = s
        .fetch_messages(mailbox, &asked, RawPart::None, false)
        .await
        .unwrap();
    assert_eq!(neither.len(), 2);

    let header = b"Subject: test\r\nFrom: a@b.example\r\n\r\n".to_vec();
    let headers = s
        .fetch_messages(mailbox, &asked, RawPart::Header, true)
        .await
        .unwrap();
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0].uid, uids[2]);
    assert_eq!(headers[0].raw.as_deref(), Some(&header[..]));
    assert_eq!(headers[1].raw.as_deref(), Some(&header[..]));
    assert!(headers[1].structure.is_some());
    assert!(s.check().await.unwrap().is_empty());

    // A body stored without its header block (by an older version) is
    // read whole and cut.
    let c = rusqlite::Connection::open(dir.path().join("mailgate.db")).unwrap();
    c.execute("DELETE FROM blob_headers", []).unwrap();
    drop(c);
    let headers = s
        .fetch_messages(mailbox, &uids[..1], RawPart::Header, false)
        .await
        .unwrap();
    assert_eq!(headers[0].raw.as_deref(), Some(&header[..]));

    // Expunging removes the header block with the body.
    s.deliver(message("four"), &[inbox(a)]).await.unwrap();
    let all: Vec<Uid> = s
        .list_messages(mailbox)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    s.expunge(mailbox, &all).await.unwrap();
    let c = rusqlite::Connection::open(dir.path().join("mailgate.db")).unwrap();
    let left: i64 = c
        .query_row("SELECT count(*) FROM blob_headers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
    assert!(s.check().await.unwrap().is_empty());
}
