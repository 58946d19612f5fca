//! Users' Sieve scripts ([`SieveScripts`]) and what Sieve delivery
//! remembers ([`SieveMemory`]): one contract, run against both backends
//! (SQLite in a temporary directory, PostgreSQL in a private server:
//! `support/pg.rs`).

mod support;

use std::sync::Arc;

use mailgate_store::{
    Directory, PgConfig, PgStore, SieveMemory, SieveScripts, SqliteStore, StoreError,
};
use support::pg::PgServer;

async fn put_list_get_replace<S: Directory + SieveScripts + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@example.org", "x").await.unwrap();
    assert!(s.sieve_list(a).await.unwrap().is_empty());
    s.sieve_put(a, "b", "keep;").await.unwrap();
    s.sieve_put(a, "a", "discard;").await.unwrap();
    s.sieve_put(a, "B", "keep;").await.unwrap();
    let l = s.sieve_list(a).await.unwrap();
    assert_eq!(
        l.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["B", "a", "b"],
        "sorted by bytes"
    );
    assert!(l.iter().all(|i| !i.active));
    assert_eq!(l[1].size, 8);
    s.sieve_put(a, "a", "stop; # é").await.unwrap();
    assert_eq!(s.sieve_get(a, "a").await.unwrap().unwrap(), "stop; # é");
    assert_eq!(
        s.sieve_list(a).await.unwrap()[1].size,
        10,
        "bytes, not chars"
    );
    assert_eq!(s.sieve_get(a, "A").await.unwrap(), None, "names are exact");
    assert_eq!(s.sieve_get(a + 1, "a").await.unwrap(), None, "per account");
}

async fn one_active_and_deactivate<S: Directory + SieveScripts + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@example.org", "x").await.unwrap();
    s.sieve_put(a, "one", "keep;").await.unwrap();
    s.sieve_put(a, "two", "keep;").await.unwrap();
    assert_eq!(s.sieve_active(a).await.unwrap(), None);
    assert!(!s.sieve_set_active(a, Some("nope")).await.unwrap());
    assert!(s.sieve_set_active(a, Some("one")).await.unwrap());
    assert!(s.sieve_set_active(a, Some("two")).await.unwrap());
    let act: Vec<_> = s
        .sieve_list(a)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.active)
        .collect();
    assert_eq!(act.len(), 1);
    assert_eq!(act[0].name, "two");
    // Replacing the text keeps it active.
    s.sieve_put(a, "two", "discard;").await.unwrap();
    assert_eq!(
        s.sieve_active(a).await.unwrap(),
        Some(("two".into(), "discard;".into()))
    );
    assert!(s.sieve_set_active(a, None).await.unwrap());
    assert_eq!(s.sieve_active(a).await.unwrap(), None);
}

async fn delete_refuses_the_active_script<S: Directory + SieveScripts + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@example.org", "x").await.unwrap();
    s.sieve_put(a, "x", "keep;").await.unwrap();
    s.sieve_set_active(a, Some("x")).await.unwrap();
    assert!(matches!(
        s.sieve_delete(a, "x").await,
        Err(StoreError::Active(_))
    ));
    assert_eq!(s.sieve_active(a).await.unwrap().unwrap().0, "x");
    s.sieve_set_active(a, None).await.unwrap();
    assert!(s.sieve_delete(a, "x").await.unwrap());
    assert!(!s.sieve_delete(a, "x").await.unwrap());
}

async fn rename_keeps_active_and_refuses_existing<S: Directory + SieveScripts + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@example.org", "x").await.unwrap();
    s.sieve_put(a, "x", "keep;").await.unwrap();
    s.sieve_put(a, "y", "keep;").await.unwrap();
    s.sieve_set_active(a, Some("x")).await.unwrap();
    assert!(matches!(
        s.sieve_rename(a, "x", "y").await,
        Err(StoreError::Exists(_))
    ));
    assert!(!s.sieve_rename(a, "nope", "z").await.unwrap());
    assert!(s.sieve_rename(a, "x", "x").await.unwrap());
    assert!(s.sieve_rename(a, "x", "z").await.unwrap());
    assert_eq!(s.sieve_active(a).await.unwrap().unwrap().0, "z");
    assert_eq!(s.sieve_get(a, "x").await.unwrap(), None);
    assert!(matches!(
        s.sieve_rename(a, "z", "").await,
        Err(StoreError::Invalid(_))
    ));
}

async fn bad_names_and_unknown_accounts_are_refused<S: Directory + SieveScripts + ?Sized>(
    s: Arc<S>,
) {
    let a = s.create_account("a@example.org", "x").await.unwrap();
    for bad in ["", "a\nb", "x\u{7f}", "x\u{2028}", &"n".repeat(256)] {
        assert!(
            matches!(
                s.sieve_put(a, bad, "keep;").await,
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    s.sieve_put(a, &"n".repeat(255), "keep;").await.unwrap();
    assert!(matches!(
        s.sieve_put(a + 99, "x", "keep;").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn deleting_the_account_deletes_its_scripts_and_memory<
    S: Directory + SieveScripts + SieveMemory + ?Sized,
>(
    s: Arc<S>,
) {
    let a = s.create_account("a@example.org", "x").await.unwrap();
    s.sieve_put(a, "x", "keep;").await.unwrap();
    s.sieve_set_active(a, Some("x")).await.unwrap();
    s.sieve_remember_duplicates(a, &[("k".into(), 100)], 0)
        .await
        .unwrap();
    assert!(s.sieve_failure_is_new(a, "v1").await.unwrap());
    assert!(s.delete_account("a@example.org").await.unwrap());
    assert!(s.sieve_list(a).await.unwrap().is_empty());
    assert!(s.sieve_duplicates(a, 0).await.unwrap().is_empty());
    let b = s.create_account("a@example.org", "x").await.unwrap();
    assert!(s.sieve_list(b).await.unwrap().is_empty());
    assert!(s.sieve_duplicates(b, 0).await.unwrap().is_empty());
    assert!(s.sieve_failure_is_new(b, "v1").await.unwrap());
}

async fn vacation_duplicates_and_failures<S: Directory + SieveMemory + ?Sized>(s: Arc<S>) {
    let a = s.create_account("a@example.org", "x").await.unwrap();
    let b = s.create_account("b@example.org", "x").await.unwrap();
    // One vacation reply per sender and handle per period.
    assert!(s
        .sieve_vacation_due(a, "X@r.test", "h", 100, 1000)
        .await
        .unwrap());
    assert!(!s
        .sieve_vacation_due(a, "x@r.test", "h", 100, 1050)
        .await
        .unwrap());
    assert!(s
        .sieve_vacation_due(a, "x@r.test", "other", 100, 1050)
        .await
        .unwrap());
    assert!(s
        .sieve_vacation_due(b, "x@r.test", "h", 100, 1050)
        .await
        .unwrap());
    assert!(s
        .sieve_vacation_due(a, "x@r.test", "h", 100, 1100)
        .await
        .unwrap());
    assert!(!s
        .sieve_vacation_due(a, "x@r.test", "h", u64::MAX, 1150)
        .await
        .unwrap());
    // Duplicate ids: remembered for their period, per account, newest
    // first; remembering again moves the expiry.
    s.sieve_remember_duplicates(a, &[("k1".into(), 10), ("k2".into(), 100)], 0)
        .await
        .unwrap();
    assert_eq!(s.sieve_duplicates(a, 5).await.unwrap(), ["k2", "k1"]);
    assert_eq!(s.sieve_duplicates(a, 50).await.unwrap(), ["k2"]);
    assert!(s.sieve_duplicates(b, 5).await.unwrap().is_empty());
    s.sieve_remember_duplicates(a, &[("k1".into(), 1000)], 50)
        .await
        .unwrap();
    assert_eq!(s.sieve_duplicates(a, 500).await.unwrap(), ["k1"]);
    s.sieve_remember_duplicates(a, &[], 50).await.unwrap();
    // A failure is news once per version; a new version forgets the old.
    assert!(s.sieve_failure_is_new(a, "v1").await.unwrap());
    assert!(!s.sieve_failure_is_new(a, "v1").await.unwrap());
    assert!(s.sieve_failure_is_new(a, "v2").await.unwrap());
    assert!(s.sieve_failure_is_new(a, "v1").await.unwrap());
    assert!(s.sieve_failure_is_new(b, "v2").await.unwrap());
}

async fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

async fn postgres() -> (PgServer, Arc<PgStore>) {
    let server = PgServer::start();
    let url = server.create_database("sieve").await;
    let store = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    (server, store)
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, store) = super::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_server, store) = super::postgres().await;
                    super::$case(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    put_list_get_replace,
    one_active_and_deactivate,
    delete_refuses_the_active_script,
    rename_keeps_active_and_refuses_existing,
    bad_names_and_unknown_accounts_are_refused,
    deleting_the_account_deletes_its_scripts_and_memory,
    vacation_duplicates_and_failures,
);

/// Two nodes activating scripts of one account at the same moment: both
/// succeed (they take turns on the account's row), and one script ends
/// up active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_activating_at_once_leave_one_active_script() {
    let server = PgServer::start();
    let url = server.create_database("sieve2").await;
    let cfg = PgConfig::new(url);
    let a = PgStore::connect(&cfg).await.unwrap();
    let b = PgStore::connect(&cfg).await.unwrap();
    let acct = a.create_account("a@example.org", "x").await.unwrap();
    for name in ["one", "two"] {
        a.sieve_put(acct, name, "keep;").await.unwrap();
    }
    for _ in 0..20 {
        let (ra, rb) = tokio::join!(
            a.sieve_set_active(acct, Some("one")),
            b.sieve_set_active(acct, Some("two"))
        );
        assert!(ra.unwrap() && rb.unwrap());
        let active = a
            .sieve_list(acct)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.active)
            .count();
        assert_eq!(active, 1);
    }
    // And the vacation memory gives one reply between them.
    let (va, vb) = tokio::join!(
        a.sieve_vacation_due(acct, "x@r.test", "h", 100, 1000),
        b.sieve_vacation_due(acct, "x@r.test", "h", 100, 1000)
    );
    assert!(va.unwrap() ^ vb.unwrap(), "exactly one reply is due");
}
