//! The PostgreSQL store as a [`Backend`]: what the server and the CLI ask
//! of a store beyond the mail traits.
//!
//! - `probe_write` (`/healthz/ready`): one transaction that is given a
//!   transaction id and committed, so PostgreSQL writes and flushes a
//!   commit record to its WAL; it fails when no connection can be had, on
//!   a read-only standby ("cannot assign TransactionIds during recovery")
//!   and when the server cannot write its WAL.
//! - `[limits] min_free_space` does not apply (the database server's disk
//!   is watched there); `announce_to_other_processes` needs nothing: every
//!   change is in the change log that every node reads (`notify`).
//! - `store check --repair` is not there yet (the default refuses).

use std::sync::Arc;

use async_trait::async_trait;

use super::PgStore;
use crate::backend::{Backend, BackendKind};
use crate::StoreResult;

#[async_trait]
impl Backend for PgStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Postgres
    }

    /// `postgres://HOST:PORT/DATABASE` from the client configuration (no
    /// user, no password).
    fn location(&self) -> String {
        let c = &self.client_config;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let db = c.get_dbname().or(c.get_user()).unwrap_or("");
        format!("postgres://{host}:{port}/{db}")
    }

    async fn probe_write(&self) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.query_one("SELECT pg_current_xact_id()::text", &[])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every node counts failed logins in the same tables
    /// ([`super::login_limits`]).
    fn login_failures(self: Arc<Self>) -> Option<Arc<dyn crate::LoginFailures>> {
        Some(self)
    }
}
