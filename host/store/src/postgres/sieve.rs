//! Users' Sieve scripts ([`crate::SieveScripts`]) in the PostgreSQL
//! store, with the embedded store's rules (`sqlite::sieve`).
//!
//! `sieve_scripts(account, name, script, active, updated)` ([`SCHEMA`],
//! migration 3): one row per script, removed with its account. A partial
//! unique index keeps at most one active script per account. Every write
//! first locks the account's row (`SELECT … FOR UPDATE`), so two nodes
//! changing one account's scripts at once take turns instead of one of
//! them failing on that index.
//!
//! PostgreSQL's `text` cannot hold the NUL character: a script with one
//! is refused ([`StoreError::Invalid`]); no Sieve script needs one.

use async_trait::async_trait;
use tokio_postgres::Transaction;

use super::PgStore;
use crate::{
    sieve_script_name_ok, AccountId, SieveScriptInfo, SieveScripts, StoreError, StoreResult,
};

/// Migration 3: the scripts table and its index; see the module doc.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE sieve_scripts (
    account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name text NOT NULL,
    script text NOT NULL,
    active boolean NOT NULL DEFAULT false,
    updated bigint NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE UNIQUE INDEX sieve_scripts_one_active ON sieve_scripts (account) WHERE active;
"#;

/// [`StoreError::Invalid`] unless `name` may name a script.
fn check_name(name: &str) -> StoreResult<()> {
    if sieve_script_name_ok(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid("invalid script name".into()))
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Locks the account's row for the rest of `tx`; `false` if there is no
/// such account.
async fn lock_account(tx: &Transaction<'_>, account: AccountId) -> StoreResult<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
            &[&account],
        )
        .await?
        .is_some())
}

/// Whether the script exists, and whether it is active.
async fn state(tx: &Transaction<'_>, account: AccountId, name: &str) -> StoreResult<Option<bool>> {
    Ok(tx
        .query_opt(
            "SELECT active FROM sieve_scripts WHERE account = $1 AND name = $2",
            &[&account, &name],
        )
        .await?
        .map(|r| r.get(0)))
}

#[async_trait]
impl SieveScripts for PgStore {
    async fn sieve_list(&self, account: AccountId) -> StoreResult<Vec<SieveScriptInfo>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT name, active, octet_length(script) FROM sieve_scripts \
                 WHERE account = $1 ORDER BY name COLLATE \"C\"",
                &[&account],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SieveScriptInfo {
                name: r.get(0),
                active: r.get(1),
                size: r.get::<_, i32>(2).max(0) as u64,
            })
            .collect())
    }

    async fn sieve_get(&self, account: AccountId, name: &str) -> StoreResult<Option<String>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT script FROM sieve_scripts WHERE account = $1 AND name = $2",
            &[&account, &name],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn sieve_put(&self, account: AccountId, name: &str, script: &str) -> StoreResult<()> {
        check_name(name)?;
        if script.contains('\0') {
            return Err(StoreError::Invalid(
                "a script may not contain the NUL character".into(),
            ));
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !lock_account(&tx, account).await? {
            return Err(StoreError::NotFound(format!("account {account}")));
        }
        tx.execute(
            "INSERT INTO sieve_scripts (account, name, script, active, updated) \
             VALUES ($1, $2, $3, false, $4) \
             ON CONFLICT (account, name) DO UPDATE SET script = $3, updated = $4",
            &[&account, &name, &script, &now()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sieve_set_active(&self, account: AccountId, name: Option<&str>) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !lock_account(&tx, account).await? {
            return Ok(name.is_none());
        }
        if let Some(name) = name {
            if state(&tx, account, name).await?.is_none() {
                return Ok(false);
            }
        }
        tx.execute(
            "UPDATE sieve_scripts SET active = false WHERE account = $1 AND active",
            &[&account],
        )
        .await?;
        if let Some(name) = name {
            tx.execute(
                "UPDATE sieve_scripts SET active = true WHERE account = $1 AND name = $2",
                &[&account, &name],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn sieve_delete(&self, account: AccountId, name: &str) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !lock_account(&tx, account).await? {
            return Ok(false);
        }
        match state(&tx, account, name).await? {
            None => Ok(false),
            Some(true) => Err(StoreError::Active(name.to_string())),
            Some(false) => {
                tx.execute(
                    "DELETE FROM sieve_scripts WHERE account = $1 AND name = $2",
                    &[&account, &name],
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    }

    async fn sieve_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<bool> {
        check_name(to)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !lock_account(&tx, account).await? || state(&tx, account, from).await?.is_none() {
            return Ok(false);
        }
        if from == to {
            return Ok(true);
        }
        if state(&tx, account, to).await?.is_some() {
            return Err(StoreError::Exists(format!("script {to}")));
        }
        tx.execute(
            "UPDATE sieve_scripts SET name = $3, updated = $4 WHERE account = $1 AND name = $2",
            &[&account, &from, &to, &now()],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn sieve_active(&self, account: AccountId) -> StoreResult<Option<(String, String)>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT name, script FROM sieve_scripts WHERE account = $1 AND active",
            &[&account],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
    }
}
