//! The store's contract (`support/contract.rs`) run against both
//! backends: each case once on SQLite in a temporary directory and once
//! on PostgreSQL in a private server (`support/pg.rs`).

mod support;

use std::sync::Arc;

use mailgate_store::{PgConfig, PgStore, SqliteStore};
use support::contract;
use support::pg::PgServer;

async fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

async fn postgres() -> (PgServer, Arc<PgStore>) {
    let server = PgServer::start();
    let url = server.create_database("contract").await;
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
                    super::contract::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_server, store) = super::postgres().await;
                    super::contract::$case(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    directory,
    delivery_and_bodies,
    flags_and_modseq,
    mailbox_operations,
    import,
    plugin_kv_and_mta_sts,
    concurrent_deliveries,
);
