//! The same protocol over the real SQLite store: deletions at QUIT are
//! durable (visible after reopening) and unique-ids survive a restart.

mod common;

use std::sync::Arc;

use common::*;
use mailgate_store::{
    password, DeliveryTarget, Directory, MailStore, MessageStructure, NewMessage, SqliteStore,
    Store,
};

async fn deliver(store: &SqliteStore, account: i64, raw: &[u8]) {
    let message = NewMessage {
        raw: Arc::new(raw.to_vec()),
        internal_date: 1_700_000_000,
        structure: MessageStructure::parse(raw),
    };
    let target = DeliveryTarget {
        account,
        mailbox: "INBOX".into(),
        flags: Vec::new(),
    };
    store.deliver(message, &[target]).await.unwrap();
}

fn ctx_over(store: Arc<SqliteStore>) -> Arc<mailgate_pop3::Pop3Context> {
    let store: Arc<dyn Store> = store;
    Arc::new(context(store, fast_limits()).0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_expunges_durably_and_uidl_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.add_domain("example.org").await.unwrap();
    let alice = store
        .create_account(ALICE, &password::hash_password(PASSWORD))
        .await
        .unwrap();
    for m in [MSG1, MSG2, MSG3] {
        deliver(&store, alice, m).await;
    }

    let ctx = ctx_over(Arc::clone(&store));
    let mut c = Client::login(&ctx, ALICE).await;
    let total = MSG1.len() + MSG2.len() + MSG3.len();
    assert_eq!(c.cmd("STAT").await, format!("+OK 3 {total}"));
    assert_eq!(c.cmd("UIDL").await, "+OK Unique-id listing follows");
    let uidl = c.body().await;
    assert_eq!(uidl.len(), 3);
    assert_eq!(c.cmd("RETR 2").await, format!("+OK {} octets", MSG2.len()));
    let want: &[u8] =
        b"From: b@x\r\nSubject: two\r\n\r\n..starts with dot\r\n...two dots\r\n..\r\nend\r\n.\r\n";
    assert_eq!(c.body_raw().await, want);
    assert_eq!(c.cmd("DELE 1").await, "+OK message 1 deleted");
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    c.hang_up().await;
    drop(ctx);
    drop(store);

    // Reopen: the deletion is on disk, and the ids of the rest are the same.
    let store = SqliteStore::open(dir.path()).unwrap();
    let inbox = store.mailbox(alice, "INBOX").await.unwrap().unwrap();
    assert_eq!(store.list_messages(inbox.id).await.unwrap().len(), 2);
    let ctx = ctx_over(store);
    let mut c = Client::login(&ctx, ALICE).await;
    assert_eq!(c.cmd("UIDL").await, "+OK Unique-id listing follows");
    let after: Vec<String> = c
        .body()
        .await
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    let before: Vec<String> = uidl[1..]
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(after, before);
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
}
