//! [`Directory`] for the embedded store: domains, accounts, aliases.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{mailstore::create_mailbox_in, normalize, SqliteStore};
use crate::{
    Account, AccountId, Alias, Directory, DomainInfo, StoreError, StoreEvent, StoreResult,
    DEFAULT_MAILBOXES,
};

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        address: r.get(1)?,
        password_hash: r.get(2)?,
        quota_bytes: r.get::<_, Option<i64>>(3)?.map(|q| q.max(0) as u64),
    })
}

const ACCOUNT_COLUMNS: &str = "id, address, password_hash, quota_bytes";

fn parse_targets(json: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("alias targets: {e}")))
}

pub(crate) fn validate_address(address: &str) -> StoreResult<()> {
    let valid = match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !address
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("not an address: {address:?}")))
    }
}

pub(crate) fn validate_domain(domain: &str) -> StoreResult<()> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "not a domain name: {domain:?}"
        )))
    }
}

#[async_trait]
impl Directory for SqliteStore {
    async fn list_domains(&self) -> StoreResult<Vec<DomainInfo>> {
        self.read_now(|c| {
            let mut st = c.prepare_cached("SELECT name, catch_all FROM domains ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(DomainInfo {
                    name: r.get(0)?,
                    catch_all: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    async fn add_domain(&self, domain: &str) -> StoreResult<()> {
        let domain = normalize(domain);
        validate_domain(&domain)?;
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO domains (name) VALUES (?1)",
                [&domain],
            )?;
            Ok(((), vec![]))
        })
        .await
    }

    async fn delete_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = normalize(domain);
        self.write(move |c| {
            Ok((
                c.execute("DELETE FROM domains WHERE name = ?1", [&domain])? > 0,
                vec![],
            ))
        })
        .await
    }

    async fn set_catch_all(&self, domain: &str, target: Option<&str>) -> StoreResult<()> {
        let domain = normalize(domain);
        validate_domain(&domain)?;
        let target = target.map(normalize);
        if let Some(t) = &target {
            validate_address(t)?;
        }
        self.write(move |c| {
            c.execute(
                "INSERT INTO domains (name, catch_all) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET catch_all = excluded.catch_all",
                params![domain, target],
            )?;
            Ok(((), vec![]))
        })
        .await
    }

    async fn create_account(&self, address: &str, password_hash: &str) -> StoreResult<AccountId> {
        let address = normalize(address);
        validate_address(&address)?;
        let hash = password_hash.to_string();
        self.write(move |c| {
            let exists: bool = c
                .query_row("SELECT 1 FROM accounts WHERE address = ?1", [&address], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if exists {
                return Err(StoreError::Exists(format!("account {address}")));
            }
            c.execute(
                "INSERT INTO accounts (address, password_hash, created) VALUES (?1, ?2, strftime('%s','now'))",
                params![address, hash],
            )?;
            let id = c.last_insert_rowid();
            for (name, special) in DEFAULT_MAILBOXES {
                create_mailbox_in(c, id, name, *special)?;
            }
            Ok((id, vec![StoreEvent::MailboxesChanged { account: id }]))
        })
        .await
    }

    async fn set_password_hash(&self, address: &str, password_hash: &str) -> StoreResult<bool> {
        let address = normalize(address);
        let hash = password_hash.to_string();
        self.write(move |c| {
            let n = c.execute(
                "UPDATE accounts SET password_hash = ?2 WHERE address = ?1",
                params![address, hash],
            )?;
            Ok((n > 0, vec![]))
        })
        .await
    }

    async fn set_quota(&self, address: &str, quota_bytes: Option<u64>) -> StoreResult<bool> {
        let address = normalize(address);
        let quota = quota_bytes.map(|q| q.min(i64::MAX as u64) as i64);
        self.write(move |c| {
            let n = c.execute(
                "UPDATE accounts SET quota_bytes = ?2 WHERE address = ?1",
                params![address, quota],
            )?;
            Ok((n > 0, vec![]))
        })
        .await
    }

    async fn delete_account(&self, address: &str) -> StoreResult<bool> {
        let address = normalize(address);
        self.write(move |c| {
            let id: Option<AccountId> = c
                .query_row(
                    "SELECT id FROM accounts WHERE address = ?1",
                    [&address],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Ok((false, vec![]));
            };
            // Entries first (cascade from mailboxes), then the bodies no one
            // refers to any more.
            c.execute("DELETE FROM accounts WHERE id = ?1", [id])?;
            delete_orphan_blobs(c)?;
            Ok((true, vec![StoreEvent::MailboxesChanged { account: id }]))
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY address"
            ))?;
            let rows = st.query_map([], account_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn account(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = normalize(address);
        self.read_now(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = ?1"
            ))?
            .query_row([&address], account_from_row)
            .optional()?)
        })
    }

    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.read_now(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
            ))?
            .query_row([id], account_from_row)
            .optional()?)
        })
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
        let json =
            serde_json::to_string(&targets).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO aliases (alias, targets) VALUES (?1, ?2)",
                params![alias, json],
            )?;
            Ok(((), vec![]))
        })
        .await
    }

    async fn delete_alias(&self, alias: &str) -> StoreResult<bool> {
        let alias = normalize(alias);
        self.write(move |c| {
            Ok((
                c.execute("DELETE FROM aliases WHERE alias = ?1", [&alias])? > 0,
                vec![],
            ))
        })
        .await
    }

    async fn list_aliases(&self) -> StoreResult<Vec<Alias>> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT alias, targets FROM aliases ORDER BY alias")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (alias, json) = row?;
                out.push(Alias {
                    alias,
                    targets: parse_targets(&json)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn alias(&self, alias: &str) -> StoreResult<Option<Vec<String>>> {
        let alias = normalize(alias);
        self.read_now(move |c| {
            let json: Option<String> = c
                .prepare_cached("SELECT targets FROM aliases WHERE alias = ?1")?
                .query_row([&alias], |r| r.get(0))
                .optional()?;
            json.map(|j| parse_targets(&j)).transpose()
        })
    }

    async fn record_login(&self, address: &str, at: i64, client: &str) -> StoreResult<()> {
        self.record_login_sqlite(address, at, client).await
    }

    async fn last_login(&self, address: &str) -> StoreResult<Option<crate::LastLogin>> {
        self.last_login_sqlite(address).await
    }
}

/// Deletes every body that no mailbox entry refers to.
pub(super) fn delete_orphan_blobs(c: &Connection) -> StoreResult<usize> {
    Ok(c.execute(
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = blobs.id)",
        [],
    )?)
}
