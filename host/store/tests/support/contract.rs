//! The store's contract, written once and run against every backend
//! (`tests/contract.rs` calls each function with an SQLite store and with
//! a PostgreSQL store). Each function takes a fresh, empty store.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mailgate_store::*;

pub fn message(body: &str) -> NewMessage {
    let raw = format!("Subject: test\r\nFrom: a@b.example\r\n\r\n{body}\r\n").into_bytes();
    let structure = MessageStructure::parse(&raw);
    NewMessage {
        raw: Arc::new(raw),
        internal_date: 1_700_000_000,
        structure,
    }
}

pub fn target(account: AccountId, mailbox: &str, flags: &[&str]) -> DeliveryTarget {
    DeliveryTarget {
        account,
        mailbox: mailbox.into(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
    }
}

fn uid(n: u32) -> Uid {
    Uid::new(n).unwrap()
}

/// The next event, waiting at most two seconds.
pub async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<StoreEvent>) -> StoreEvent {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("an event within two seconds")
        .expect("the channel is open")
}

pub async fn directory<S: Store + ?Sized>(s: Arc<S>) {
    // Domains.
    s.add_domain("Example.ORG").await.unwrap();
    s.add_domain("example.org").await.unwrap();
    assert!(matches!(
        s.add_domain("bad domain").await,
        Err(StoreError::Invalid(_))
    ));
    s.set_catch_all("example.org", Some("Postmaster@example.org"))
        .await
        .unwrap();
    s.add_domain("other.example").await.unwrap();
    let domains = s.list_domains().await.unwrap();
    assert_eq!(
        domains,
        vec![
            DomainInfo {
                name: "example.org".into(),
                catch_all: Some("postmaster@example.org".into())
            },
            DomainInfo {
                name: "other.example".into(),
                catch_all: None
            },
        ]
    );
    assert!(s.delete_domain("other.example").await.unwrap());
    assert!(!s.delete_domain("other.example").await.unwrap());

    // Accounts, with their standard mailboxes.
    let id = s
        .create_account("Alice@Example.org", "hash1")
        .await
        .unwrap();
    let names: Vec<_> = s
        .list_mailboxes(id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.special_use, m.subscribed))
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&("INBOX".to_string(), None, true)));
    assert!(names.contains(&("Junk".to_string(), Some(SpecialUse::Junk), true)));
    assert!(matches!(
        s.create_account("alice@example.org", "h").await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        s.create_account("no-at-sign", "h").await,
        Err(StoreError::Invalid(_))
    ));
    let alice = s.account("ALICE@example.org").await.unwrap().unwrap();
    assert_eq!(
        (alice.id, alice.address.as_str()),
        (id, "alice@example.org")
    );
    assert_eq!(alice.password_hash, "hash1");
    assert_eq!(alice.quota_bytes, None);
    assert!(s
        .set_password_hash("alice@example.org", "hash2")
        .await
        .unwrap());
    assert!(!s
        .set_password_hash("nobody@example.org", "x")
        .await
        .unwrap());
    assert!(s.set_quota("alice@example.org", Some(1000)).await.unwrap());
    let alice = s.account_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.quota_bytes),
        ("hash2", Some(1000))
    );
    assert!(s.set_quota("alice@example.org", None).await.unwrap());
    assert!(!s.set_quota("nobody@example.org", Some(1)).await.unwrap());
    let bob = s.create_account("bob@example.org", "h").await.unwrap();
    let all: Vec<String> = s
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(all, vec!["alice@example.org", "bob@example.org"]);

    // Aliases.
    s.set_alias(
        "Team@example.org",
        &["alice@example.org".into(), "Bob@example.org".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        s.alias("team@example.org").await.unwrap(),
        Some(vec![
            "alice@example.org".to_string(),
            "bob@example.org".to_string()
        ])
    );
    s.set_alias("team@example.org", &["bob@example.org".into()])
        .await
        .unwrap();
    assert!(matches!(
        s.set_alias("empty@example.org", &[]).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        s.list_aliases().await.unwrap(),
        vec![Alias {
            alias: "team@example.org".into(),
            targets: vec!["bob@example.org".into()]
        }]
    );
    assert!(s.delete_alias("team@example.org").await.unwrap());
    assert!(!s.delete_alias("team@example.org").await.unwrap());
    assert_eq!(s.alias("team@example.org").await.unwrap(), None);

    // Last logins: replaced at each one; none for unknown addresses.
    assert_eq!(s.last_login("alice@example.org").await.unwrap(), None);
    s.record_login("alice@example.org", 100, "192.0.2.1")
        .await
        .unwrap();
    s.record_login("Alice@example.org", 200, "2001:db8::1")
        .await
        .unwrap();
    s.record_login("nobody@example.org", 300, "192.0.2.9")
        .await
        .unwrap();
    assert_eq!(
        s.last_login("alice@example.org").await.unwrap(),
        Some(LastLogin {
            at: 200,
            client: "2001:db8::1".into()
        })
    );
    assert_eq!(s.last_login("nobody@example.org").await.unwrap(), None);

    // Deleting an account takes its mail with it.
    s.deliver(message("for bob"), &[target(bob, "INBOX", &[])])
        .await
        .unwrap();
    assert!(s.delete_account("bob@example.org").await.unwrap());
    assert!(!s.delete_account("bob@example.org").await.unwrap());
    assert!(s.account_by_id(bob).await.unwrap().is_none());
    assert!(s.list_mailboxes(bob).await.unwrap().is_empty());
    assert!(
        s.check().await.unwrap().is_empty(),
        "{:?}",
        s.check().await.unwrap()
    );
}

pub async fn delivery_and_bodies<S: Store + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let b = s.create_account("b@x.org", "h").await.unwrap();
    let mut events = s.subscribe();
    let d1 = s
        .deliver(
            message("one"),
            &[target(a, "INBOX", &[]), target(b, "INBOX", &[])],
        )
        .await
        .unwrap();
    assert_eq!(d1.len(), 2);
    assert_eq!((d1[0].account, d1[0].uid), (a, uid(1)));
    assert_eq!((d1[1].account, d1[1].uid), (b, uid(1)));
    assert_eq!(
        next_event(&mut events).await,
        StoreEvent::Appended {
            account: a,
            mailbox: d1[0].mailbox,
            uids: vec![uid(1)]
        }
    );
    // A folder that does not exist falls back to INBOX; flags are canonical.
    let d2 = s
        .deliver(
            message("two"),
            &[target(a, "No/Such", &["\\seen", "$Label", "\\Recent"])],
        )
        .await
        .unwrap();
    assert_eq!((d2[0].mailbox, d2[0].uid), (d1[0].mailbox, uid(2)));
    let list = s.list_messages(d1[0].mailbox).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[1].flags,
        vec!["$Label".to_string(), "\\Seen".to_string()]
    );
    assert!(list[1].modseq > list[0].modseq);
    let other = s.list_messages(d1[1].mailbox).await.unwrap();
    assert_eq!(list[0].blob, other[0].blob, "one body for both copies");
    assert_eq!(list[0].size, message("one").raw.len() as u64);
    assert_eq!(list[0].internal_date, 1_700_000_000);

    let raw = s.message_raw(d1[0].mailbox, uid(1)).await.unwrap().unwrap();
    assert!(raw.ends_with(b"one\r\n"));
    assert!(s
        .message_raw(d1[0].mailbox, uid(9))
        .await
        .unwrap()
        .is_none());
    let st = s.message_structure(d1[0].mailbox, uid(1)).await.unwrap();
    assert_eq!(st, Some(MessageStructure::parse(&raw)));
    let fetched = s
        .fetch_messages(
            d1[0].mailbox,
            &[uid(2), uid(9), uid(1)],
            RawPart::Header,
            true,
        )
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2);
    assert_eq!(fetched[0].uid, uid(2));
    assert_eq!(
        fetched[1].raw.as_deref(),
        Some(&b"Subject: test\r\nFrom: a@b.example\r\n\r\n"[..])
    );
    assert!(fetched[1].structure.is_some());
    let whole = s
        .fetch_messages(d1[0].mailbox, &[uid(1)], RawPart::Whole, false)
        .await
        .unwrap();
    assert_eq!(whole[0].raw.as_deref(), Some(&raw[..]));
    assert_eq!(whole[0].structure, None);
    let metas = s
        .message_metas(d1[0].mailbox, &[uid(2), uid(7)])
        .await
        .unwrap();
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].uid, uid(2));

    let info = s.mailbox(a, "inbox").await.unwrap().unwrap();
    assert_eq!((info.messages, info.unseen, info.uid_next), (2, 1, 3));
    assert_eq!(info.size, list[0].size + list[1].size);
    let state = s.mailbox_state(a, "INBOX").await.unwrap().unwrap();
    assert_eq!(
        (state.id, state.uid_next, state.highest_modseq),
        (info.id, 3, info.highest_modseq)
    );

    // Expunging one copy keeps the body for the other; UIDs not reused.
    assert_eq!(
        s.expunge(d1[0].mailbox, &[uid(1), uid(5)]).await.unwrap(),
        vec![uid(1)]
    );
    assert!(s
        .message_raw(d1[1].mailbox, uid(1))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        s.expunge(d1[1].mailbox, &[uid(1)]).await.unwrap(),
        vec![uid(1)]
    );
    let d3 = s
        .deliver(message("three"), &[target(a, "INBOX", &[])])
        .await
        .unwrap();
    assert_eq!(d3[0].uid, uid(3));
    assert!(
        s.check().await.unwrap().is_empty(),
        "{:?}",
        s.check().await.unwrap()
    );
}

pub async fn flags_and_modseq<S: Store + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let d = s
        .deliver(message("m"), &[target(a, "INBOX", &[])])
        .await
        .unwrap();
    let d2 = s
        .deliver(message("n"), &[target(a, "INBOX", &[])])
        .await
        .unwrap();
    let mb = d[0].mailbox;
    let before = s.mailbox(a, "INBOX").await.unwrap().unwrap().highest_modseq;
    let mut events = s.subscribe();
    let out = s
        .store_flags(
            mb,
            &[uid(1), uid(9)],
            FlagChange::Add(vec!["\\seen".into(), "$X".into()]),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, vec!["$X".to_string(), "\\Seen".to_string()]);
    assert!(out[0].modseq > before);
    assert_eq!(
        next_event(&mut events).await,
        StoreEvent::FlagsChanged {
            account: a,
            mailbox: mb,
            uids: vec![uid(1)]
        }
    );
    // No change: no new MODSEQ.
    let same = s
        .store_flags(mb, &[uid(1)], FlagChange::Add(vec!["\\Seen".into()]))
        .await
        .unwrap();
    assert_eq!(same[0].modseq, out[0].modseq);
    let removed = s
        .store_flags(
            mb,
            &[uid(1)],
            FlagChange::Remove(vec!["$x".into(), "$X".into()]),
        )
        .await
        .unwrap();
    assert_eq!(removed[0].flags, vec!["\\Seen".to_string()]);
    let set = s
        .store_flags(mb, &[uid(1)], FlagChange::Set(vec!["\\Flagged".into()]))
        .await
        .unwrap();
    assert_eq!(set[0].flags, vec!["\\Flagged".to_string()]);

    // UNCHANGEDSINCE: uid 1 changed after `before`, uid 2 did not.
    let (ok, failed) = s
        .store_flags_unchanged_since(
            mb,
            &[uid(1), d2[0].uid],
            FlagChange::Add(vec!["\\Answered".into()]),
            before,
        )
        .await
        .unwrap();
    assert_eq!(failed, vec![uid(1)]);
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].uid, d2[0].uid);

    // The change log as the views read it.
    let changes = s.changes_since(mb, before).await.unwrap();
    assert_eq!(
        changes.changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![uid(1), uid(2)]
    );
    assert!(changes.expunged.is_empty());
    let top = changes.highest_modseq;
    assert!(s.changes_since(mb, top).await.unwrap().changed.is_empty());
    assert_ne!(changes.uid_validity, 0);
    s.expunge(mb, &[uid(2)]).await.unwrap();
    let after = s.changes_since(mb, top).await.unwrap();
    assert_eq!(after.expunged, vec![uid(2)]);
    assert!(after.highest_modseq > top);
    assert_eq!(s.expunged_since(mb, top).await.unwrap(), vec![uid(2)]);
    assert!(s
        .expunged_since(mb, after.highest_modseq)
        .await
        .unwrap()
        .is_empty());
    let flags = s.mailbox_flags(mb).await.unwrap();
    assert_eq!(flags.highest_modseq, after.highest_modseq);
    assert_eq!(flags.messages.len(), 1);
    assert_eq!(
        flags.lists[flags.messages[0].1 as usize],
        vec!["\\Flagged".to_string()]
    );
    // A mailbox that does not exist: UIDVALIDITY 0.
    assert_eq!(s.changes_since(999_999, 0).await.unwrap().uid_validity, 0);
}

pub async fn mailbox_operations<S: Store + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let work = s.create_mailbox(a, "Work", None).await.unwrap();
    assert!(matches!(
        s.create_mailbox(a, "Work", None).await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        s.create_mailbox(a, "a//b", None).await,
        Err(StoreError::Invalid(_))
    ));
    s.create_mailbox(a, "Work/Old", None).await.unwrap();
    let w = s.mailbox(a, "Work").await.unwrap().unwrap();
    assert_eq!((w.id, w.uid_next, w.messages), (work, 1, 0));

    // Rename moves the children; missing superiors of the target appear.
    s.rename_mailbox(a, "Work", "Projects/Work").await.unwrap();
    assert!(s.mailbox(a, "Work").await.unwrap().is_none());
    assert_eq!(
        s.mailbox(a, "Projects/Work").await.unwrap().unwrap().id,
        work
    );
    assert!(s.mailbox(a, "Projects/Work/Old").await.unwrap().is_some());
    assert!(s.mailbox(a, "Projects").await.unwrap().is_some());
    assert!(matches!(
        s.rename_mailbox(a, "Projects/Work", "Sent").await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        s.rename_mailbox(a, "Nope", "Other").await,
        Err(StoreError::NotFound(_))
    ));

    // Subscriptions are names and may outlive their mailbox.
    s.set_subscribed(a, "Projects/Work", false).await.unwrap();
    s.set_subscribed(a, "Future", true).await.unwrap();
    let subs = s.subscriptions(a).await.unwrap();
    assert!(subs.contains(&"Future".to_string()));
    assert!(!subs.contains(&"Projects/Work".to_string()));
    assert!(matches!(
        s.set_subscribed(a, "Never", false).await,
        Err(StoreError::NotFound(_))
    ));

    // APPEND, MULTIAPPEND, COPY, MOVE.
    let u = s
        .append(work, message("appended"), &["\\Draft".into()])
        .await
        .unwrap();
    assert_eq!(u, uid(1));
    let many = s
        .append_many(
            work,
            vec![
                (message("m1"), vec![]),
                (message("m2"), vec!["\\Seen".into()]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(many, vec![uid(2), uid(3)]);
    let inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap().id;
    let copied = s
        .copy_messages(work, &[uid(3), uid(1), uid(8)], inbox)
        .await
        .unwrap();
    assert_eq!(copied, vec![(uid(3), uid(1)), (uid(1), uid(2))]);
    let inbox_list = s.list_messages(inbox).await.unwrap();
    assert_eq!(inbox_list[0].flags, vec!["\\Seen".to_string()]);
    let moved = s.move_messages(work, &[uid(2)], inbox).await.unwrap();
    assert_eq!(moved, vec![(uid(2), uid(3))]);
    let left: Vec<Uid> = s
        .list_messages(work)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![uid(1), uid(3)]);
    assert_eq!(s.expunged_since(work, 0).await.unwrap(), vec![uid(2)]);

    // Delete: not INBOX; a missing one is NotFound; its mail goes.
    assert!(matches!(
        s.delete_mailbox(a, "inbox").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.delete_mailbox(a, "Nope").await,
        Err(StoreError::NotFound(_))
    ));
    s.delete_mailbox(a, "Projects/Work").await.unwrap();
    assert!(s.mailbox(a, "Projects/Work").await.unwrap().is_none());
    assert!(s.mailbox(a, "Projects/Work/Old").await.unwrap().is_some());
    // A mailbox created again gets another UIDVALIDITY.
    let again = s.create_mailbox(a, "Projects/Work", None).await.unwrap();
    assert_ne!(
        s.changes_since(again, 0).await.unwrap().uid_validity,
        w.uid_validity
    );

    // Renaming INBOX moves its messages and leaves it empty.
    s.rename_mailbox(a, "INBOX", "Old Inbox").await.unwrap();
    assert_eq!(s.mailbox(a, "INBOX").await.unwrap().unwrap().messages, 0);
    assert_eq!(
        s.mailbox(a, "Old Inbox").await.unwrap().unwrap().messages,
        3
    );
    assert!(
        s.check().await.unwrap().is_empty(),
        "{:?}",
        s.check().await.unwrap()
    );
}

pub async fn import<S: Store + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let mb = s.create_mailbox(a, "Imported", None).await.unwrap();
    s.adopt_uid_validity(mb, 12345).await.unwrap();
    let imported = s
        .import_messages(
            mb,
            vec![
                ImportMessage {
                    message: message("old 1"),
                    flags: vec!["\\Seen".into()],
                    uid: Some(uid(5)),
                    pop3_uidl: Some("UIDL-5".into()),
                },
                ImportMessage {
                    message: message("old 2"),
                    flags: vec![],
                    uid: Some(uid(9)),
                    pop3_uidl: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(imported, vec![uid(5), uid(9)]);
    let info = s.mailbox(a, "Imported").await.unwrap().unwrap();
    assert_eq!((info.uid_validity, info.uid_next), (12345, 10));
    assert_eq!(
        s.pop3_uidls(mb).await.unwrap(),
        vec![(uid(5), "UIDL-5".to_string())]
    );
    assert!(matches!(
        s.adopt_uid_validity(mb, 999).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.raise_uid_next(mb, 20).await.unwrap(), 20);
    assert_eq!(s.raise_uid_next(mb, 15).await.unwrap(), 20);
    let d = s
        .deliver(message("new"), &[target(a, "Imported", &[])])
        .await
        .unwrap();
    assert_eq!(d[0].uid, uid(20));
    assert!(matches!(
        s.import_messages(
            mb,
            vec![ImportMessage {
                message: message("x"),
                flags: vec![],
                uid: None,
                pop3_uidl: Some("has space".into()),
            }]
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    // The UIDL goes with its entry.
    s.expunge(mb, &[uid(5)]).await.unwrap();
    assert!(s.pop3_uidls(mb).await.unwrap().is_empty());
    assert!(
        s.check().await.unwrap().is_empty(),
        "{:?}",
        s.check().await.unwrap()
    );
}

pub async fn plugin_kv_and_mta_sts<S>(s: Arc<S>)
where
    S: Store + PluginKv + MtaStsCache + ?Sized + 'static,
{
    use mailgate_store::kv::{MAX_KEY, MAX_VALUE};
    const NOW: i64 = 1_000_000;
    assert_eq!(s.kv_increment("p", "n", 2, None, NOW).await.unwrap(), 2);
    assert_eq!(s.kv_increment("p", "n", 3, None, NOW).await.unwrap(), 5);
    assert_eq!(s.kv_get("other", "n", NOW).await.unwrap(), None);
    s.kv_set("p", "gone", b"x".to_vec(), Some(NOW), NOW)
        .await
        .unwrap();
    assert_eq!(s.kv_get("p", "gone", NOW).await.unwrap(), None);
    s.kv_set("p", "k", b"v".to_vec(), Some(NOW + 10), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.kv_get("p", "k", NOW + 9).await.unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(s.kv_get("p", "k", NOW + 10).await.unwrap(), None);
    // An increment keeps the live expiry unless given one.
    s.kv_increment("p", "c", 1, Some(NOW + 5), NOW)
        .await
        .unwrap();
    assert_eq!(s.kv_increment("p", "c", 1, None, NOW).await.unwrap(), 2);
    assert_eq!(s.kv_get("p", "c", NOW + 5).await.unwrap(), None);
    assert_eq!(s.kv_increment("p", "c", 1, None, NOW + 5).await.unwrap(), 1);
    // Not an integer: 0; saturating.
    s.kv_set("p", "t", b" x".to_vec(), None, NOW).await.unwrap();
    assert_eq!(s.kv_increment("p", "t", 4, None, NOW).await.unwrap(), 4);
    s.kv_set("p", "m", i64::MAX.to_string().into_bytes(), None, NOW)
        .await
        .unwrap();
    assert_eq!(
        s.kv_increment("p", "m", 1, None, NOW).await.unwrap(),
        i64::MAX
    );
    s.kv_delete("p", "k").await.unwrap();
    s.kv_delete("p", "never").await.unwrap();
    assert!(matches!(
        s.kv_set("p", &"k".repeat(MAX_KEY + 1), vec![], None, NOW)
            .await,
        Err(KvWriteError::TooLarge("key"))
    ));
    assert!(matches!(
        s.kv_set("p", "big", vec![0; MAX_VALUE + 1], None, NOW)
            .await,
        Err(KvWriteError::TooLarge("value"))
    ));
    s.kv_set("p", &"k".repeat(MAX_KEY), vec![0; MAX_VALUE], None, NOW)
        .await
        .unwrap();
    // Concurrent increments of one key add up.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.kv_increment("p", "hits", 1, None, NOW).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        s.kv_get("p", "hits", NOW).await.unwrap(),
        Some(b"20".to_vec())
    );
    // Import skips expired and oversized entries, replaces existing keys.
    let stored = s
        .kv_import(
            vec![
                PluginKvEntry {
                    plugin: "q".into(),
                    key: "a".into(),
                    value: b"1".to_vec(),
                    expires: None,
                },
                PluginKvEntry {
                    plugin: "q".into(),
                    key: "old".into(),
                    value: b"1".to_vec(),
                    expires: Some(NOW - 1),
                },
                PluginKvEntry {
                    plugin: "q".into(),
                    key: "x".repeat(MAX_KEY + 1),
                    value: vec![],
                    expires: None,
                },
                PluginKvEntry {
                    plugin: "p".into(),
                    key: "n".into(),
                    value: b"42".to_vec(),
                    expires: Some(NOW + 100),
                },
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(stored, 2);
    assert_eq!(s.kv_get("p", "n", NOW).await.unwrap(), Some(b"42".to_vec()));
    // "gone" (expired at once) and the imported "n".
    assert_eq!(s.kv_purge_expired(NOW + 100).await.unwrap(), 2);
    assert_eq!(s.kv_get("p", "n", NOW).await.unwrap(), None);
    assert!(
        s.check().await.unwrap().is_empty(),
        "{:?}",
        s.check().await.unwrap()
    );

    // The MTA-STS cache.
    let entry = MtaStsEntry {
        id: "20240101".into(),
        expires: NOW + 60,
        policy: "version: STSv1\nmode: enforce\n".into(),
    };
    s.mta_sts_put("example.org", entry.clone(), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.mta_sts_get("example.org", NOW).await.unwrap(),
        Some(entry.clone())
    );
    assert_eq!(s.mta_sts_get("example.org", NOW + 60).await.unwrap(), None);
    let newer = MtaStsEntry {
        id: "20240202".into(),
        ..entry.clone()
    };
    s.mta_sts_put("example.org", newer.clone(), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.mta_sts_get("example.org", NOW).await.unwrap(),
        Some(newer)
    );
    // A put drops every expired entry.
    s.mta_sts_put("other.example", entry.clone(), NOW + 61)
        .await
        .unwrap();
    assert!(!s.mta_sts_remove("example.org").await.unwrap());
    assert!(s.mta_sts_remove("other.example").await.unwrap());
    let too_long = MtaStsEntry {
        id: "x".repeat(33),
        ..entry
    };
    assert!(matches!(
        s.mta_sts_put("example.org", too_long, NOW).await,
        Err(StoreError::Invalid(_))
    ));
}

/// Many deliveries at once (on PostgreSQL they share group commits, on
/// SQLite the writer's): every one acknowledged is readable at once, and
/// the UIDs of each mailbox are unique and dense, with MODSEQs distinct.
pub async fn concurrent_deliveries<S: Store + ?Sized + 'static>(s: Arc<S>) {
    const N: usize = 120;
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let b = s.create_account("b@x.org", "h").await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let s = s.clone();
        tasks.spawn(async move {
            // Every fourth one has a second copy, to another account.
            let mut targets = vec![target(a, "INBOX", &[])];
            if i % 4 == 0 {
                targets.push(target(b, "Junk", &["\\Seen"]));
            }
            let body = format!("concurrent {i}");
            let delivered = s.deliver(message(&body), &targets).await.unwrap();
            assert_eq!(delivered.len(), targets.len());
            // Acknowledged means stored: readable right away.
            for d in &delivered {
                let raw = s
                    .message_raw(d.mailbox, d.uid)
                    .await
                    .unwrap()
                    .expect("a delivery is readable once acknowledged");
                assert!(raw.ends_with(format!("{body}\r\n").as_bytes()));
            }
            delivered
        });
    }
    let mut inbox = Vec::new();
    let mut junk = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let delivered = done.unwrap();
        inbox.push(delivered[0].uid.get());
        if let Some(d) = delivered.get(1) {
            assert_eq!(d.account, b);
            junk.push(d.uid.get());
        }
    }
    inbox.sort_unstable();
    junk.sort_unstable();
    assert_eq!(inbox, (1..=N as u32).collect::<Vec<_>>());
    assert_eq!(junk, (1..=N.div_ceil(4) as u32).collect::<Vec<_>>());
    let mailbox = s.mailbox(a, "INBOX").await.unwrap().unwrap();
    assert_eq!(
        (mailbox.messages, mailbox.uid_next),
        (N as u32, N as u32 + 1)
    );
    let list = s.list_messages(mailbox.id).await.unwrap();
    let mut modseqs: Vec<u64> = list.iter().map(|m| m.modseq).collect();
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), N, "one MODSEQ per entry");
    assert!(*modseqs.last().unwrap() <= mailbox.highest_modseq);
    let junk_box = s.mailbox(b, "Junk").await.unwrap().unwrap();
    let junk_list = s.list_messages(junk_box.id).await.unwrap();
    assert!(junk_list
        .iter()
        .all(|m| m.flags == vec!["\\Seen".to_string()]));
    assert!(
        s.check().await.unwrap().is_empty(),
        "{:?}",
        s.check().await.unwrap()
    );
}
