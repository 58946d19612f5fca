//! What nodes share for sessions and logins: the POP3 maildrop lock
//! ([`MaildropLocks`], on both backends, and across two PostgreSQL nodes)
//! and the failed-login counts ([`LoginFailures`], PostgreSQL only: the
//! SQLite store has none, its limiter counts in memory).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_store::{
    Backend, LoginFailures, LoginStanding, MaildropLocks, PgConfig, PgStore, SqliteStore,
};
use support::pg::PgServer;

async fn lock_is_exclusive_per_account_and_released<S: MaildropLocks + ?Sized>(s: Arc<S>) {
    let a = s.lock_maildrop(1).await.unwrap().expect("free lock taken");
    assert_eq!(a.account(), 1);
    assert!(a.is_held());
    assert!(s.maildrop_locked_here(1));
    assert!(s.lock_maildrop(1).await.unwrap().is_none(), "taken twice");
    let b = s.lock_maildrop(2).await.unwrap().expect("another account");
    drop(a);
    // Dropped, it is free again at once for this process (the release
    // goes before the next lock).
    let a = s.lock_maildrop(1).await.unwrap().expect("free again");
    a.release().await;
    assert!(!s.maildrop_locked_here(1));
    assert!(s.lock_maildrop(1).await.unwrap().is_some());
    assert!(b.verify().await);
    b.release().await;
    assert!(!s.maildrop_locked_here(2));
}

async fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

async fn postgres(server: &PgServer, db: &str) -> Arc<PgStore> {
    let url = server.create_database(db).await;
    PgStore::connect(&PgConfig::new(url)).await.unwrap()
}

/// A second node on the database of `url`.
async fn node(url: &str) -> Arc<PgStore> {
    PgStore::connect(&PgConfig::new(url.to_string()))
        .await
        .unwrap()
}

#[tokio::test]
async fn sqlite_lock_is_exclusive_per_account_and_released() {
    let (_dir, store) = sqlite().await;
    lock_is_exclusive_per_account_and_released(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lock_is_exclusive_per_account_and_released() {
    let server = PgServer::start();
    let store = postgres(&server, "locks").await;
    lock_is_exclusive_per_account_and_released(store).await;
}

#[tokio::test]
async fn sqlite_has_no_shared_login_failures() {
    let (_dir, store) = sqlite().await;
    let backend: Arc<dyn Backend> = store;
    assert!(backend.login_failures().is_none());
}

/// Waits up to five seconds for `f` to hold.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildrop_lock_holds_across_nodes_and_goes_with_its_connection() {
    let server = PgServer::start();
    let url = server.create_database("nodes").await;
    let (a, b) = (node(&url).await, node(&url).await);
    let held = a.lock_maildrop(5).await.unwrap().expect("A takes it");
    assert!(
        b.lock_maildrop(5).await.unwrap().is_none(),
        "B took A's lock"
    );
    assert!(!b.maildrop_locked_here(5));
    // Other accounts are independent; B's lock keeps A out in turn.
    let other = b.lock_maildrop(6).await.unwrap().expect("B takes another");
    assert!(a.lock_maildrop(6).await.unwrap().is_none());
    drop(other);
    // Released (and waited for), the lock is B's to take at once.
    held.release().await;
    let on_b = b
        .lock_maildrop(5)
        .await
        .unwrap()
        .expect("B after A released");
    assert!(a.lock_maildrop(5).await.unwrap().is_none());

    // B's lock connection is ended (as PostgreSQL does when a node dies):
    // the lock is A's to take, and B's guard says it is lost.
    let admin = server.connect("nodes").await;
    let ended: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = 'nodes' AND application_name LIKE 'mailgate-pop3-locks%'
               AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 5)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1);
    let mut on_a = None;
    eventually("A takes the lock of the ended connection", async || {
        on_a = a.lock_maildrop(5).await.unwrap();
        on_a.is_some()
    })
    .await;
    eventually("B sees its lock lost", async || !on_b.is_held()).await;
    // B still counts the account as in use until its session ends, then
    // opens a new connection for the next lock.
    assert!(b.lock_maildrop(5).await.unwrap().is_none());
    drop(on_b);
    assert!(b.lock_maildrop(7).await.unwrap().is_some());
    drop(on_a);
}

/// The lock connections of the database `db` now.
async fn lock_connections(admin: &tokio_postgres::Client, db: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND application_name LIKE 'mailgate-pop3-locks%'",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_opens_one_lock_connection_and_closes_it_when_dropped() {
    let server = PgServer::start();
    let url = server.create_database("gone").await;
    let admin = server.connect("gone").await;
    let (a, b) = (node(&url).await, node(&url).await);
    // None before the first lock.
    assert_eq!(lock_connections(&admin, "gone").await, 0);
    let mut guards = Vec::new();
    for account in 1..=20 {
        guards.push(a.lock_maildrop(account).await.unwrap().unwrap());
    }
    assert!(b.lock_maildrop(9).await.unwrap().is_none());
    // Twenty locks on A, one attempt on B: one connection each.
    assert_eq!(lock_connections(&admin, "gone").await, 2);
    // The store and its guards gone, A's lock connection closes (and
    // PostgreSQL releases whatever it held).
    drop(guards);
    drop(a);
    eventually("A's lock connection closes", async || {
        lock_connections(&admin, "gone").await == 1
    })
    .await;
    assert!(b.lock_maildrop(9).await.unwrap().is_some());
}

const WINDOW: Duration = Duration::from_secs(60);
const TRUST: Duration = Duration::from_secs(30 * 24 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_two_nodes_add_up_and_expire_with_the_window() {
    let server = PgServer::start();
    let url = server.create_database("failures").await;
    let (a, b) = (node(&url).await, node(&url).await);
    let (a, b): (Arc<dyn LoginFailures>, Arc<dyn LoginFailures>) = (
        Arc::<PgStore>::clone(&a).login_failures().unwrap(),
        Arc::<PgStore>::clone(&b).login_failures().unwrap(),
    );
    let standing = |c, a| LoginStanding {
        client_failures: c,
        account_failures: a,
        trusted: false,
    };
    assert_eq!(
        a.login_standing("192.0.2.1", "u@x", WINDOW, TRUST)
            .await
            .unwrap(),
        standing(0, 0)
    );
    assert_eq!(
        a.record_login_failure("192.0.2.1", "u@x", WINDOW, 10, 1000)
            .await
            .unwrap(),
        (1, 1)
    );
    assert_eq!(
        b.record_login_failure("192.0.2.2", "u@x", WINDOW, 10, 1000)
            .await
            .unwrap(),
        (1, 2)
    );
    assert_eq!(
        b.record_login_failure("192.0.2.1", "v@x", WINDOW, 10, 1000)
            .await
            .unwrap(),
        (2, 1)
    );
    assert_eq!(
        b.login_standing("192.0.2.1", "u@x", WINDOW, TRUST)
            .await
            .unwrap(),
        standing(2, 2)
    );
    // A window of one second: the counts are over after it, and the next
    // failure starts a new window at one (and deletes the dead rows).
    let short = Duration::from_secs(1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        a.login_standing("192.0.2.1", "u@x", short, TRUST)
            .await
            .unwrap(),
        standing(0, 0)
    );
    assert_eq!(
        a.record_login_failure("192.0.2.9", "w@x", short, 10, 1000)
            .await
            .unwrap(),
        (1, 1)
    );
    let admin = server.connect("failures").await;
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM login_failures", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2, "expired rows left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_row_cap_only_refusing_counts_are_kept() {
    let server = PgServer::start();
    let url = server.create_database("cap").await;
    let s = node(&url).await;
    for _ in 0..3 {
        s.record_login_failure("198.51.100.1", "a@x", WINDOW, 3, 1_000_000)
            .await
            .unwrap();
    }
    // A fresh node checks the row count at its first failure.
    let t = node(&url).await;
    t.record_login_failure("198.51.100.2", "b@x", WINDOW, 3, 2)
        .await
        .unwrap();
    let admin = server.connect("cap").await;
    let mut keys: Vec<String> = admin
        .query("SELECT kind || ':' || key FROM login_failures", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["a:a@x", "c:198.51.100.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_clients_are_shared_and_bounded_per_account() {
    let server = PgServer::start();
    let url = server.create_database("trust").await;
    let (a, b) = (node(&url).await, node(&url).await);
    a.record_trusted_client("10.0.0.1", "u@x", 3, TRUST)
        .await
        .unwrap();
    assert!(
        b.login_standing("10.0.0.1", "u@x", WINDOW, TRUST)
            .await
            .unwrap()
            .trusted
    );
    assert!(
        !b.login_standing("10.0.0.1", "other@x", WINDOW, TRUST)
            .await
            .unwrap()
            .trusted
    );
    for i in 2..=4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        b.record_trusted_client(&format!("10.0.0.{i}"), "u@x", 3, TRUST)
            .await
            .unwrap();
    }
    // Three kept: the oldest went.
    assert!(
        !a.login_standing("10.0.0.1", "u@x", WINDOW, TRUST)
            .await
            .unwrap()
            .trusted
    );
    assert!(
        a.login_standing("10.0.0.4", "u@x", WINDOW, TRUST)
            .await
            .unwrap()
            .trusted
    );
    // Past the trust period, no longer trusted (and deleted).
    let short = Duration::from_secs(1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        !a.login_standing("10.0.0.4", "u@x", WINDOW, short)
            .await
            .unwrap()
            .trusted
    );
    a.record_trusted_client("10.0.0.5", "v@x", 3, short)
        .await
        .unwrap();
    let admin = server.connect("trust").await;
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM login_trust", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}
