//! [`open_backend`] opens the store `[store]` names; the handle serves
//! every trait the server takes from it, on PostgreSQL as on SQLite (the
//! SQLite side is a unit test in `src/backend.rs`).

mod support;

use std::sync::Arc;

use mailgate_store::queue::QueueStore;
use mailgate_store::{
    open_backend, Backend, BackendConfig, BackendKind, PgConfig, SieveScripts, Store,
};
use support::pg::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_opens_through_the_backend_handle() {
    let server = PgServer::start();
    let url = server.create_database("backend").await;
    let backend: Arc<dyn Backend> = open_backend(&BackendConfig::Postgres(PgConfig::new(url)))
        .await
        .unwrap();
    assert_eq!(backend.kind(), BackendKind::Postgres);
    assert_eq!(
        backend.location(),
        format!("postgres://127.0.0.1:{}/backend", server.port())
    );
    backend.probe_write().await.unwrap();
    backend.announce_to_other_processes();
    let store: Arc<dyn Store> = backend.clone();
    let id = store.create_account("a@example.org", "h").await.unwrap();
    let scripts: Arc<dyn SieveScripts> = backend.clone();
    scripts.sieve_put(id, "s", "keep;").await.unwrap();
    let queue: Arc<dyn QueueStore> = backend.clone();
    assert!(queue.queue_list().await.unwrap().is_empty());
    assert!(store.check().await.unwrap().is_empty());
    // Not there yet on PostgreSQL: said plainly.
    let e = backend.repair(true).await.unwrap_err().to_string();
    assert!(e.contains("postgres"), "{e}");
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_not_a_hang() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = PgConfig::new(format!("postgres://mailgate@127.0.0.1:{port}/x"));
    let started = std::time::Instant::now();
    let r = open_backend(&BackendConfig::Postgres(cfg)).await;
    assert!(r.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
