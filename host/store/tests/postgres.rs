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
