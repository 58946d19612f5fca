//! The group commit of deliveries on PostgreSQL (`src/postgres/writer.rs`),
//! against a private PostgreSQL server started by the test.
//!
//! To put many deliveries into one batch for certain, a test holds the
//! row lock of a mailbox from a connection of its own: the writer's batch
//! that delivers there waits for it, the deliveries that come meanwhile
//! queue up, and once the lock is released they form the next batch. The
//! change log (`changes`, one row per mailbox per transaction, with the
//! transaction id) then shows which deliveries shared a transaction.

mod support;

use std::sync::Arc;
use std::time::Duration;

use mailgate_store::*;
use support::pg::PgServer;

fn message(body: &str, internal_date: i64) -> NewMessage {
    let raw = format!("Subject: test\r\n\r\n{body}\r\n").into_bytes();
    let structure = MessageStructure::parse(&raw);
    NewMessage {
        raw: Arc::new(raw),
        internal_date,
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

/// Holds the row lock of `mailbox` until [`Held::release`].
struct Held(tokio_postgres::Client);

async fn hold(server: &PgServer, db: &str, mailbox: MailboxId) -> Held {
    let c = server.connect(db).await;
    c.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM mailboxes WHERE id = {mailbox} FOR UPDATE"
    ))
    .await
    .unwrap();
    Held(c)
}

impl Held {
    async fn release(self) {
        self.0.batch_execute("COMMIT").await.unwrap();
    }
}

/// The change log's rows for `mailbox`: (transaction id, UIDs).
async fn logged(c: &tokio_postgres::Client, mailbox: MailboxId) -> Vec<(i64, Vec<i64>)> {
    c.query(
        "SELECT xid, uids FROM changes WHERE mailbox = $1 AND kind = 1 ORDER BY seq",
        &[&mailbox],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_one_commit_and_are_durable_at_the_answer() {
    const N: u32 = 100;
    let server = PgServer::start();
    let url = server.create_database("group").await;
    let a = PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
    // A second node reads what the first acknowledged.
    let b = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let account = a.create_account("a@x.org", "h").await.unwrap();
    let mailbox = a.mailbox(account, "INBOX").await.unwrap().unwrap().id;
    let held = hold(&server, "group", mailbox).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (a, b) = (a.clone(), b.clone());
        tasks.spawn(async move {
            let body = format!("group {i}");
            let d = a
                .deliver(message(&body, 1_700_000_000), &[inbox(account)])
                .await
                .unwrap();
            let raw = b
                .message_raw(d[0].mailbox, d[0].uid)
                .await
                .unwrap()
                .expect("another node reads a delivery once it is acknowledged");
            assert!(raw.ends_with(format!("{body}\r\n").as_bytes()));
            d[0].uid.get()
        });
    }
    // Every delivery is queued or waiting for the lock; none is answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tasks.len(), N as usize);
    assert!(
        tasks.try_join_next().is_none(),
        "answered before its commit"
    );
    held.release().await;
    let mut uids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        uids.push(done.unwrap());
    }
    uids.sort_unstable();
    assert_eq!(uids, (1..=N).collect::<Vec<_>>(), "unique and dense");

    // The first batch waited for the lock; all that came meanwhile
    // shared the next one: two transactions for a hundred deliveries.
    let c = server.connect("group").await;
    let rows = logged(&c, mailbox).await;
    let mut xids: Vec<i64> = rows.iter().map(|(x, _)| *x).collect();
    xids.dedup();
    assert!(rows.len() <= 2 && xids.len() == rows.len(), "{rows:?}");
    let mut announced: Vec<i64> = rows.into_iter().flat_map(|(_, u)| u).collect();
    announced.sort_unstable();
    assert_eq!(announced, (1..=i64::from(N)).collect::<Vec<_>>());
    let modseqs: Vec<i64> = c
        .query(
            "SELECT modseq FROM messages WHERE mailbox = $1 ORDER BY uid",
            &[&mailbox],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(modseqs.windows(2).all(|w| w[0] < w[1]), "{modseqs:?}");
    assert!(a.check().await.unwrap().is_empty());
}

/// What each delivery of the failing batch was answered.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Uid(u32),
    NotFound,
    Invalid,
    Database,
}

fn answer(r: StoreResult<Vec<Delivered>>) -> Answer {
    match r {
        Ok(d) => Answer::Uid(d[0].uid.get()),
        Err(StoreError::NotFound(_)) => Answer::NotFound,
        Err(StoreError::Invalid(_)) => Answer::Invalid,
        Err(StoreError::Database(_)) => Answer::Database,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delivery_fails_alone() {
    let server = PgServer::start();
    let url = server.create_database("fail").await;
    let s = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    let c = server.connect("fail").await;
    let a = s.create_account("a@x.org", "h").await.unwrap();
    let full = s.create_account("full@x.org", "h").await.unwrap();
    let lost = s.create_account("lost@x.org", "h").await.unwrap();
    let a_inbox = s.mailbox(a, "INBOX").await.unwrap().unwrap().id;
    let full_inbox = s.mailbox(full, "INBOX").await.unwrap().unwrap().id;
    // One UID left in `full`'s INBOX; `lost` has no INBOX any more.
    c.execute(
        "UPDATE mailboxes SET uid_next = 4294967295 WHERE id = $1",
        &[&full_inbox],
    )
    .await
    .unwrap();
    c.execute(
        "DELETE FROM mailboxes WHERE account = $1 AND name = 'INBOX'",
        &[&lost],
    )
    .await
    .unwrap();
    // The database itself refuses entries dated 42: a failure no check
    // before the write can see, so the batch fails and is tried again
    // delivery by delivery.
    c.batch_execute(
        "CREATE FUNCTION refuse_42() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.internal_date = 42 THEN RAISE EXCEPTION 'refused by the test'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_42 BEFORE INSERT ON messages
           FOR EACH ROW EXECUTE FUNCTION refuse_42();",
    )
    .await
    .unwrap();

    // Round 1: one batch holding good deliveries, one the database
    // refuses, two for one last UID and one for an account without INBOX.
    let run = |jobs: Vec<(&'static str, AccountId, i64)>| {
        let s = s.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (label, account, date) in jobs {
                let s = s.clone();
                tasks.spawn(async move {
                    let r = s.deliver(message(label, date), &[inbox(account)]).await;
                    (label, answer(r))
                });
            }
            tasks
        }
    };
    let held = hold(&server, "fail", a_inbox).await;
    let blocker = run(vec![("blocker", a, 1)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut jobs = vec![
        ("refused", a, 42),
        ("full 1", full, 1),
        ("full 2", full, 1),
        ("lost", lost, 1),
    ];
    for label in ["good 1", "good 2", "good 3", "good 4", "good 5"] {
        jobs.push((label, a, 1));
    }
    let mut tasks = run(jobs).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    held.release().await;
    let mut answers = Vec::new();
    for mut set in [blocker] {
        while let Some(done) = set.join_next().await {
            answers.push(done.unwrap());
        }
    }
    while let Some(done) = tasks.join_next().await {
        answers.push(done.unwrap());
    }
    answers.sort();
    let by = |prefix: &str| -> Vec<&Answer> {
        answers
            .iter()
            .filter(|(l, _)| l.starts_with(prefix))
            .map(|(_, a)| a)
            .collect()
    };
    assert_eq!(by("blocker"), vec![&Answer::Uid(1)]);
    assert_eq!(by("refused"), vec![&Answer::Database]);
    assert_eq!(by("lost"), vec![&Answer::NotFound]);
    let mut fulls = by("full");
    fulls.sort();
    assert_eq!(fulls, vec![&Answer::Uid(4294967295), &Answer::Invalid]);
    let mut goods: Vec<&Answer> = by("good");
    goods.sort();
    let expected: Vec<Answer> = (2..=6).map(Answer::Uid).collect();
    assert_eq!(
        goods,
        expected.iter().collect::<Vec<_>>(),
        "the refused delivery took no UID"
    );

    // Round 2, without the refusing trigger: deliveries that fail their
    // checks are left out, and the others still share one commit.
    c.batch_execute("DROP TRIGGER refuse_42 ON messages")
        .await
        .unwrap();
    let held = hold(&server, "fail", a_inbox).await;
    let blocker = run(vec![("blocker", a, 1)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut jobs = vec![("full", full, 1), ("lost", lost, 1)];
    for label in ["good 1", "good 2", "good 3"] {
        jobs.push((label, a, 1));
    }
    let mut tasks = run(jobs).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = logged(&c, a_inbox).await.len();
    held.release().await;
    let mut answers = Vec::new();
    for mut set in [blocker] {
        while let Some(done) = set.join_next().await {
            answers.push(done.unwrap());
        }
    }
    while let Some(done) = tasks.join_next().await {
        answers.push(done.unwrap());
    }
    answers.sort();
    let labels: Vec<(&str, &Answer)> = answers.iter().map(|(l, a)| (*l, a)).collect();
    assert_eq!(labels[0], ("blocker", &Answer::Uid(7)));
    assert_eq!(labels[1], ("full", &Answer::Invalid));
    assert_eq!(labels[5], ("lost", &Answer::NotFound));
    let mut goods: Vec<&Answer> = labels[2..5].iter().map(|(_, a)| *a).collect();
    goods.sort();
    assert_eq!(
        goods,
        vec![&Answer::Uid(8), &Answer::Uid(9), &Answer::Uid(10)]
    );
    let rows = logged(&c, a_inbox).await;
    // The blocker's batch, then one row for the three good ones.
    assert_eq!(rows.len(), before + 2, "{rows:?}");
    assert_eq!(rows.last().unwrap().1, vec![8, 9, 10]);
    assert_eq!(
        s.check().await.unwrap(),
        vec!["account lost@x.org has no INBOX".to_string()]
    );
}
