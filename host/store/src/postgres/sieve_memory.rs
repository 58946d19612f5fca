//! What Sieve delivery remembers per account ([`crate::SieveMemory`]) in
//! the PostgreSQL store, with the embedded store's rules
//! (`sqlite::sieve_memory`): vacation replies sent, `duplicate` ids, the
//! script versions whose failure the user was told about.
//!
//! One table, `sieve_memory(account, kind, key, expires)` ([`SCHEMA`],
//! migration 4), removed with the account. `key` is `bytea`: a vacation
//! key joins the sender and the handle with a NUL, which `text` cannot
//! hold. Rows past `expires` are ignored and removed when the account's
//! rows of that kind are next written. Each method is one transaction; two
//! nodes asking [`SieveMemory::sieve_vacation_due`] for the same sender at
//! once get one `true` between them (the primary key decides).

use async_trait::async_trait;

use super::PgStore;
use crate::sqlite::sieve_memory::MAX_DUPLICATE_KEYS;
use crate::{AccountId, SieveMemory, StoreResult};

/// Migration 4: see the module doc.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE sieve_memory (
    account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind text NOT NULL,
    key bytea NOT NULL,
    expires bigint NOT NULL,
    PRIMARY KEY (account, kind, key)
);
"#;

const VACATION: &str = "vacation";
const DUPLICATE: &str = "duplicate";
const FAILURE: &str = "failure";

/// `now + period`, saturating.
fn expiry(now: i64, period: u64) -> i64 {
    now.saturating_add(i64::try_from(period).unwrap_or(i64::MAX))
}

impl PgStore {
    /// Whether `key` of `kind` is remembered (not expired); if not,
    /// remembers it until `expires`. One transaction.
    async fn remember_once(
        &self,
        account: AccountId,
        kind: &str,
        key: &[u8],
        now: i64,
        expires: i64,
    ) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "DELETE FROM sieve_memory WHERE account = $1 AND kind = $2 AND expires <= $3",
            &[&account, &kind, &now],
        )
        .await?;
        let n = tx
            .execute(
                "INSERT INTO sieve_memory (account, kind, key, expires) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&account, &kind, &key, &expires],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl SieveMemory for PgStore {
    async fn sieve_vacation_due(
        &self,
        account: AccountId,
        sender: &str,
        handle: &str,
        period: u64,
        now: i64,
    ) -> StoreResult<bool> {
        let key = format!("{}\u{0}{}", sender.to_ascii_lowercase(), handle);
        self.remember_once(account, VACATION, key.as_bytes(), now, expiry(now, period))
            .await
    }

    async fn sieve_duplicates(&self, account: AccountId, now: i64) -> StoreResult<Vec<String>> {
        let c = self.client().await?;
        let limit = MAX_DUPLICATE_KEYS as i64;
        let rows = c
            .query(
                "SELECT key FROM sieve_memory WHERE account = $1 AND kind = $2 AND expires > $3 \
                 ORDER BY expires DESC LIMIT $4",
                &[&account, &DUPLICATE, &now, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| String::from_utf8_lossy(r.get::<_, &[u8]>(0)).into_owned())
            .collect())
    }

    async fn sieve_remember_duplicates(
        &self,
        account: AccountId,
        keys: &[(String, u64)],
        now: i64,
    ) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "DELETE FROM sieve_memory WHERE account = $1 AND kind = $2 AND expires <= $3",
            &[&account, &DUPLICATE, &now],
        )
        .await?;
        let st = tx
            .prepare(
                "INSERT INTO sieve_memory (account, kind, key, expires) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account, kind, key) DO UPDATE SET expires = excluded.expires",
            )
            .await?;
        for (key, period) in keys {
            tx.execute(
                &st,
                &[&account, &DUPLICATE, &key.as_bytes(), &expiry(now, *period)],
            )
            .await?;
        }
        let limit = MAX_DUPLICATE_KEYS as i64;
        tx.execute(
            "DELETE FROM sieve_memory WHERE account = $1 AND kind = $2 AND key NOT IN \
             (SELECT key FROM sieve_memory WHERE account = $1 AND kind = $2 \
              ORDER BY expires DESC LIMIT $3)",
            &[&account, &DUPLICATE, &limit],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sieve_failure_is_new(&self, account: AccountId, version: &str) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "INSERT INTO sieve_memory (account, kind, key, expires) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&account, &FAILURE, &version.as_bytes(), &i64::MAX],
            )
            .await?;
        if n == 1 {
            tx.execute(
                "DELETE FROM sieve_memory WHERE account = $1 AND kind = $2 AND key <> $3",
                &[&account, &FAILURE, &version.as_bytes()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}
