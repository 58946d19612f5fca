//! [`Directory`] for the PostgreSQL store: domains, accounts, aliases and
//! last logins. The same rules as the embedded store (addresses and
//! domains lower-cased and validated alike: `sqlite::directory`).

use async_trait::async_trait;
use tokio_postgres::Row;

use super::mailstore::create_mailbox_in;
use super::{is_unique_violation, normalize, PgStore};
use crate::sqlite::directory::{validate_address, validate_domain};
use crate::{
    Account, AccountId, Alias, Directory, DomainInfo, LastLogin, StoreError, StoreEvent,
    StoreResult, DEFAULT_MAILBOXES,
};

const ACCOUNT_COLUMNS: &str = "id, address, password_hash, quota_bytes";

fn account_from_row(r: &Row) -> Account {
    Account {
        id: r.get(0),
        address: r.get(1),
        password_hash: r.get(2),
        quota_bytes: r.get::<_, Option<i64>>(3).map(|q| q.max(0) as u64),
    }
}

#[async_trait]
impl Directory for PgStore {
    async fn list_domains(&self) -> StoreResult<Vec<DomainInfo>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT name, catch_all FROM domains ORDER BY name", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| DomainInfo {
                name: r.get(0),
                catch_all: r.get(1),
            })
            .collect())
    }

    async fn add_domain(&self, domain: &str) -> StoreResult<()> {
        let domain = normalize(domain);
        validate_domain(&domain)?;
        let c = self.client().await?;
        c.execute(
            "INSERT INTO domains (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&domain],
        )
        .await?;
        Ok(())
    }

    async fn delete_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = normalize(domain);
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM domains WHERE name = $1", &[&domain])
            .await?
            > 0)
    }

    async fn set_catch_all(&self, domain: &str, target: Option<&str>) -> StoreResult<()> {
        let domain = normalize(domain);
        validate_domain(&domain)?;
        let target = target.map(normalize);
        if let Some(t) = &target {
            validate_address(t)?;
        }
        let c = self.client().await?;
        c.execute(
            "INSERT INTO domains (name, catch_all) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET catch_all = excluded.catch_all",
            &[&domain, &target],
        )
        .await?;
        Ok(())
    }

    async fn create_account(&self, address: &str, password_hash: &str) -> StoreResult<AccountId> {
        let address = normalize(address);
        validate_address(&address)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let inserted = tx
            .query_opt(
                "INSERT INTO accounts (address, password_hash, created)
                 VALUES ($1, $2, extract(epoch from now())::bigint)
                 ON CONFLICT (address) DO NOTHING RETURNING id",
                &[&address, &password_hash],
            )
            .await;
        let id: AccountId = match inserted {
            Ok(Some(r)) => r.get(0),
            Ok(None) => return Err(StoreError::Exists(format!("account {address}"))),
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Exists(format!("account {address}")))
            }
            Err(e) => return Err(e.into()),
        };
        for (name, special) in DEFAULT_MAILBOXES {
            create_mailbox_in(&tx, id, name, *special).await?;
        }
        self.commit(tx, vec![StoreEvent::MailboxesChanged { account: id }])
            .await?;
        Ok(id)
    }

    async fn set_password_hash(&self, address: &str, password_hash: &str) -> StoreResult<bool> {
        let address = normalize(address);
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE accounts SET password_hash = $2 WHERE address = $1",
            &[&address, &password_hash],
        )
        .await?
            > 0)
    }

    async fn set_quota(&self, address: &str, quota_bytes: Option<u64>) -> StoreResult<bool> {
        let address = normalize(address);
        let quota = quota_bytes.map(|q| q.min(i64::MAX as u64) as i64);
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE accounts SET quota_bytes = $2 WHERE address = $1",
            &[&address, &quota],
        )
        .await?
            > 0)
    }

    async fn delete_account(&self, address: &str) -> StoreResult<bool> {
        let address = normalize(address);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT id FROM accounts WHERE address = $1 FOR UPDATE",
                &[&address],
            )
            .await?
        else {
            return Ok(false);
        };
        let id: AccountId = row.get(0);
        // Its mailboxes first (in id order, as every writer locks them),
        // and the bodies its entries use.
        tx.execute(
            "SELECT 1 FROM mailboxes WHERE account = $1 ORDER BY id FOR UPDATE",
            &[&id],
        )
        .await?;
        let blobs: Vec<i64> = tx
            .query(
                "SELECT DISTINCT m.blob FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox
                  WHERE mb.account = $1",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The entries go with the mailboxes (cascade); then the bodies no
        // entry refers to any more.
        tx.execute("DELETE FROM accounts WHERE id = $1", &[&id])
            .await?;
        super::mailstore::delete_orphan_blobs(&tx, Some(&blobs)).await?;
        self.commit(tx, vec![StoreEvent::MailboxesChanged { account: id }])
            .await?;
        Ok(true)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY address"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(account_from_row).collect())
    }

    async fn account(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = normalize(address);
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = $1"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&address])
            .await?
            .as_ref()
            .map(account_from_row))
    }

    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<Account>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&id])
            .await?
            .as_ref()
            .map(account_from_row))
    }

    async fn set_alias(&self, alias: &str, targets: &[String]) -> StoreResult<()> {
        let alias = normalize(alias);
        validate_address(&alias)?;
        if targets.is_empty() {
            return Err(StoreError::Invalid(
                "an alias needs at least one target".into(),
            ));
        }
        let targets: Vec<String> = targets.iter().map(|t| normalize(t)).collect();
        for t in &targets {
            validate_address(t)?;
        }
        let c = self.client().await?;
        c.execute(
            "INSERT INTO aliases (alias, targets) VALUES ($1, $2)
             ON CONFLICT (alias) DO UPDATE SET targets = excluded.targets",
            &[&alias, &targets],
        )
        .await?;
        Ok(())
    }

    async fn delete_alias(&self, alias: &str) -> StoreResult<bool> {
        let alias = normalize(alias);
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM aliases WHERE alias = $1", &[&alias])
            .await?
            > 0)
    }

    async fn list_aliases(&self) -> StoreResult<Vec<Alias>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT alias, targets FROM aliases ORDER BY alias", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Alias {
                alias: r.get(0),
                targets: r.get(1),
            })
            .collect())
    }

    async fn alias(&self, alias: &str) -> StoreResult<Option<Vec<String>>> {
        let alias = normalize(alias);
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT targets FROM aliases WHERE alias = $1")
            .await?;
        Ok(c.query_opt(&st, &[&alias]).await?.map(|r| r.get(0)))
    }

    async fn record_login(&self, address: &str, at: i64, client: &str) -> StoreResult<()> {
        let address = normalize(address);
        let c = self.client().await?;
        c.execute(
            "INSERT INTO last_logins (account, at, client)
             SELECT id, $2, $3 FROM accounts WHERE address = $1
             ON CONFLICT (account) DO UPDATE SET at = excluded.at, client = excluded.client",
            &[&address, &at, &client],
        )
        .await?;
        Ok(())
    }

    async fn last_login(&self, address: &str) -> StoreResult<Option<LastLogin>> {
        let address = normalize(address);
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT l.at, l.client FROM last_logins l JOIN accounts a ON a.id = l.account
             WHERE a.address = $1",
            &[&address],
        )
        .await?
        .map(|r| LastLogin {
            at: r.get(0),
            client: r.get(1),
        }))
    }
}
