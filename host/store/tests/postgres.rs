//! The PostgreSQL store against a private PostgreSQL server started by
//! the test (see `support/pg.rs`).

mod support;

use std::sync::Arc;

use mailgate_store::postgres::schema;
use mailgate_store::*;
use support::pg::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_starting_together_migrate_once() {
    let server = PgServer::start();
    let url = server.create_database("twonodes").await;
    let cfg = PgConfig::new(url.clone());
    // Two nodes connecting at the same moment: both succeed, and the
    // schema is created once (a second run of version 1 would fail on
    // its CREATE TABLEs).
    let (a, b) = tokio::join!(PgStore::connect(&cfg), PgStore::connect(&cfg));
    let (a, b): (Arc<PgStore>, Arc<PgStore>) = (a.unwrap(), b.unwrap());
    let client = server.connect("twonodes").await;
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = schema::MIGRATIONS.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, expected);
    drop((a, b));

    // Racing migrations directly: exactly one applies the versions.
    let db = server.create_database("race").await;
    let (mut c1, mut c2) = (server.connect("race").await, server.connect("race").await);
    let (r1, r2) = tokio::join!(schema::migrate(&mut c1), schema::migrate(&mut c2));
    let (mut r1, mut r2) = (r1.unwrap(), r2.unwrap());
    if r1.is_empty() {
        std::mem::swap(&mut r1, &mut r2);
    }
    assert_eq!(r1, expected, "{db}");
    assert!(r2.is_empty(), "the second node migrated again: {r2:?}");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let server = PgServer::start();
    let url = server.create_database("newer").await;
    PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
    let client = server.connect("newer").await;
    client
        .execute("INSERT INTO schema_version (version) VALUES (999)", &[])
        .await
        .unwrap();
    match PgStore::connect(&PgConfig::new(url)).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("999"), "{m}"),
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = PgConfig::new(format!("postgres://mailgate@127.0.0.1:{port}/x"));
    match PgStore::connect(&cfg).await {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
    // A URL that is not one.
    assert!(matches!(
        PgStore::connect(&PgConfig::new("not a url at all://")).await,
        Err(StoreError::Invalid(_))
    ));
}

/// The next event of `rx` that `want` accepts, within `secs` seconds.
async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<StoreEvent>,
    secs: u64,
    want: impl Fn(&StoreEvent) -> bool,
) -> Option<StoreEvent> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if want(&e) => return Some(e),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("event channel: {e}"),
            Err(_) => return None,
        }
    }
}

fn message(body: &str) -> NewMessage {
    let raw = format!("Subject: test\r\n\r\n{body}\r\n").into_bytes();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_reaches_the_other_even_across_a_reconnect() {
    let server = PgServer::start();
    let url = server.create_database("nodes").await;
    let a = PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
    let b = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let mut on_b = b.subscribe();
    let account = a.create_account("a@x.org", "h").await.unwrap();
    assert_eq!(
        wait_for(&mut on_b, 1, |_| true).await,
        Some(StoreEvent::MailboxesChanged { account })
    );

    // A delivery on A wakes B within a second.
    let d = a.deliver(message("one"), &[inbox(account)]).await.unwrap();
    let mailbox = d[0].mailbox;
    let got = wait_for(&mut on_b, 1, |_| true).await;
    assert_eq!(
        got,
        Some(StoreEvent::Appended {
            account,
            mailbox,
            uids: vec![d[0].uid]
        })
    );

    // B's listener connection is killed; a change made meanwhile is
    // announced once it has reconnected, and only once.
    let admin = server.connect("nodes").await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&b.listener_application_name()],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "B's listener connection was found");
    a.store_flags(mailbox, &[d[0].uid], FlagChange::Add(vec!["\\Seen".into()]))
        .await
        .unwrap();
    let got = wait_for(&mut on_b, 10, |_| true).await;
    assert_eq!(
        got,
        Some(StoreEvent::FlagsChanged {
            account,
            mailbox,
            uids: vec![d[0].uid]
        })
    );
    assert_eq!(
        wait_for(&mut on_b, 1, |_| true).await,
        None,
        "announced twice"
    );
    // A's own changes reach A's sessions once (from A, not again from
    // the log).
    let mut on_a = a.subscribe();
    a.expunge(mailbox, &[d[0].uid]).await.unwrap();
    assert!(matches!(
        wait_for(&mut on_a, 1, |_| true).await,
        Some(StoreEvent::Expunged { .. })
    ));
    assert_eq!(wait_for(&mut on_a, 1, |_| true).await, None);
    assert!(matches!(
        wait_for(&mut on_b, 1, |_| true).await,
        Some(StoreEvent::Expunged { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_late_is_not_skipped() {
    // A transaction that wrote to the log first but commits after a
    // later one: the listener must not move past it.
    let server = PgServer::start();
    let url = server.create_database("late").await;
    let a = PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
    let b = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let account = a.create_account("a@x.org", "h").await.unwrap();
    let mut on_b = b.subscribe();
    let mut slow = server.connect("late").await;
    let tx = slow.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO changes (origin, kind, account, mailbox, uids) VALUES ('slow', 2, $1, 1, '{7}')",
        &[&account],
    )
    .await
    .unwrap();
    // A later change commits first.
    let d = a.deliver(message("one"), &[inbox(account)]).await.unwrap();
    let early = wait_for(&mut on_b, 1, |e| {
        !matches!(e, StoreEvent::MailboxesChanged { .. })
    })
    .await;
    assert_eq!(
        early, None,
        "the later change was announced before the earlier one committed"
    );
    tx.commit().await.unwrap();
    let first = wait_for(&mut on_b, 6, |e| {
        !matches!(e, StoreEvent::MailboxesChanged { .. })
    })
    .await;
    assert_eq!(
        first,
        Some(StoreEvent::FlagsChanged {
            account,
            mailbox: 1,
            uids: vec![Uid::new(7).unwrap()]
        })
    );
    let second = wait_for(&mut on_b, 2, |e| {
        !matches!(e, StoreEvent::MailboxesChanged { .. })
    })
    .await;
    assert_eq!(
        second,
        Some(StoreEvent::Appended {
            account,
            mailbox: d[0].mailbox,
            uids: vec![d[0].uid]
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_delivering_to_one_mailbox_get_distinct_uids_and_modseqs() {
    let server = PgServer::start();
    let url = server.create_database("uids").await;
    let a = PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
    let b = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let account = a.create_account("a@x.org", "h").await.unwrap();
    let other = a.create_account("b@x.org", "h").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        // Half of them to both accounts, the other half in the other
        // order (mailbox locks are taken in id order: no deadlock).
        let targets = if i % 4 < 2 {
            vec![inbox(account), inbox(other)]
        } else {
            vec![inbox(other), inbox(account)]
        };
        // The same body every fourth time: stored once, shared.
        let body = if i % 4 == 0 {
            "same".to_string()
        } else {
            format!("message {i}")
        };
        tasks.push(tokio::spawn(async move {
            node.deliver(message(&body), &targets).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mailbox = a.mailbox(account, "INBOX").await.unwrap().unwrap();
    let list = a.list_messages(mailbox.id).await.unwrap();
    let uids: Vec<u32> = list.iter().map(|m| m.uid.get()).collect();
    assert_eq!(uids, (1..=40).collect::<Vec<_>>());
    let mut modseqs: Vec<u64> = list.iter().map(|m| m.modseq).collect();
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), 40, "a MODSEQ was given twice");
    assert_eq!(mailbox.uid_next, 41);
    assert!(mailbox.highest_modseq >= *modseqs.last().unwrap());
    // Ten deliveries of one body: one row.
    let admin = server.connect("uids").await;
    let blobs: i64 = admin
        .query_one("SELECT count(*) FROM blobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(blobs, 31);
    assert!(
        a.check().await.unwrap().is_empty(),
        "{:?}",
        a.check().await.unwrap()
    );
}

#[tokio::test]
async fn the_password_comes_from_the_password_file_or_the_url() {
    let server = PgServer::start();
    server.create_database("pw").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{}\n", support::pg::PASSWORD)).unwrap();
    let cfg = PgConfig::new(server.url_without_password("pw"))
        .with_password_file(&file)
        .unwrap();
    assert!(!format!("{cfg:?}").contains(support::pg::PASSWORD));
    PgStore::connect(&cfg).await.unwrap();
    // The URL's password works too.
    PgStore::connect(&PgConfig::new(server.url("pw")))
        .await
        .unwrap();
    // No password, or a wrong one: refused, and no store.
    let none = PgStore::connect(&PgConfig::new(server.url_without_password("pw"))).await;
    assert!(none.is_err(), "{:?}", none.as_ref().map(|_| ()));
    std::fs::write(&file, "wrong\n").unwrap();
    let wrong = PgConfig::new(server.url("pw"))
        .with_password_file(&file)
        .unwrap();
    match PgStore::connect(&wrong).await {
        Err(e) => assert!(!e.to_string().contains("wrong"), "{e}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    // An empty file is a configuration error.
    std::fs::write(&file, "\n").unwrap();
    assert!(matches!(
        PgConfig::new(server.url("pw")).with_password_file(&file),
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_nodes_add_up() {
    let server = PgServer::start();
    let url = server.create_database("kv").await;
    let a = PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
    let b = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            node.kv_increment("ratelimit", "10.0.0.1", 1, Some(2_000), 1_000)
                .await
                .unwrap()
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=40).collect::<Vec<i64>>(),
        "each increment saw its own sum"
    );
    assert_eq!(
        b.kv_get("ratelimit", "10.0.0.1", 1_000).await.unwrap(),
        Some(b"40".to_vec())
    );
    assert!(a.check().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_concurrent_change_reaches_the_other_node_once() {
    let server = PgServer::start();
    let url = server.create_database("many").await;
    let a = PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
    let b = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let account = a.create_account("a@x.org", "h").await.unwrap();
    let mut on_b = b.subscribe();
    // Deliveries from both nodes at once (B's own are announced by B),
    // committing in an order of their own.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let node = if i % 3 == 0 { b.clone() } else { a.clone() };
        tasks.push(tokio::spawn(async move {
            node.deliver(message(&format!("m{i}")), &[inbox(account)])
                .await
                .unwrap()[0]
                .uid
        }));
    }
    let mut expected = Vec::new();
    for t in tasks {
        expected.push(t.await.unwrap());
    }
    expected.sort_unstable();
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        match wait_for(&mut on_b, 5, |e| matches!(e, StoreEvent::Appended { .. })).await {
            Some(StoreEvent::Appended { uids, .. }) => seen.extend(uids),
            _ => break,
        }
    }
    assert_eq!(
        wait_for(&mut on_b, 1, |e| matches!(e, StoreEvent::Appended { .. })).await,
        None
    );
    seen.sort_unstable();
    assert_eq!(seen, expected, "each delivery announced on B exactly once");
}
