//! Users' Sieve scripts ([`crate::SieveScripts`]).
//!
//! `sieve_scripts(account, name, script, active, updated)`: one row per
//! script, removed with its account (`ON DELETE CASCADE`). A partial
//! unique index keeps at most one active script per account, so even a
//! bug above cannot activate two. Additive and idempotent, no schema
//! version (older versions ignore the table).

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::{
    sieve_script_name_ok, AccountId, SieveScriptInfo, SieveScripts, StoreError, StoreResult,
};

/// The table and its index; see the module doc.
pub(crate) const SIEVE_SCRIPTS: &str = r#"
CREATE TABLE IF NOT EXISTS sieve_scripts (
    account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    script TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL,
    PRIMARY KEY (account, name)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS sieve_scripts_one_active
    ON sieve_scripts(account) WHERE active = 1;
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

fn exists(c: &Connection, account: AccountId, name: &str) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM sieve_scripts WHERE account = ?1 AND name = ?2")?
            .query_row(params![account, name], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

#[async_trait]
impl SieveScripts for SqliteStore {
    async fn sieve_list(&self, account: AccountId) -> StoreResult<Vec<SieveScriptInfo>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT name, active, length(CAST(script AS BLOB)) FROM sieve_scripts
                 WHERE account = ?1 ORDER BY name",
            )?;
            let rows = st.query_map([account], |r| {
                Ok(SieveScriptInfo {
                    name: r.get(0)?,
                    active: r.get::<_, i64>(1)? != 0,
                    size: r.get::<_, i64>(2)?.max(0) as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn sieve_get(&self, account: AccountId, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT script FROM sieve_scripts WHERE account = ?1 AND name = ?2",
            )?
            .query_row(params![account, name], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn sieve_put(&self, account: AccountId, name: &str, script: &str) -> StoreResult<()> {
        check_name(name)?;
        let name = name.to_string();
        let script = script.to_string();
        self.space.check(script.len() as u64)?;
        self.write(move |c| {
            let known: bool = c
                .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                .query_row([account], |_| Ok(()))
                .optional()?
                .is_some();
            if !known {
                return Err(StoreError::NotFound(format!("account {account}")));
            }
            c.prepare_cached(
                "INSERT INTO sieve_scripts (account, name, script, active, updated)
                 VALUES (?1, ?2, ?3, 0, ?4)
                 ON CONFLICT (account, name) DO UPDATE SET script = ?3, updated = ?4",
            )?
            .execute(params![account, name, script, now()])?;
            Ok(((), vec![]))
        })
        .await
    }

    async fn sieve_set_active(&self, account: AccountId, name: Option<&str>) -> StoreResult<bool> {
        let name = name.map(str::to_string);
        self.write(move |c| {
            if let Some(name) = &name {
                if !exists(c, account, name)? {
                    return Ok((false, vec![]));
                }
            }
            c.prepare_cached(
                "UPDATE sieve_scripts SET active = 0 WHERE account = ?1 AND active = 1",
            )?
            .execute([account])?;
            if let Some(name) = &name {
                c.prepare_cached(
                    "UPDATE sieve_scripts SET active = 1 WHERE account = ?1 AND name = ?2",
                )?
                .execute(params![account, name])?;
            }
            Ok((true, vec![]))
        })
        .await
    }

    async fn sieve_delete(&self, account: AccountId, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |c| {
            let active: Option<i64> = c
                .prepare_cached(
                    "SELECT active FROM sieve_scripts WHERE account = ?1 AND name = ?2",
                )?
                .query_row(params![account, name], |r| r.get(0))
                .optional()?;
            match active {
                None => Ok((false, vec![])),
                Some(a) if a != 0 => Err(StoreError::Active(name)),
                Some(_) => {
                    c.prepare_cached("DELETE FROM sieve_scripts WHERE account = ?1 AND name = ?2")?
                        .execute(params![account, name])?;
                    Ok((true, vec![]))
                }
            }
        })
        .await
    }

    async fn sieve_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<bool> {
        check_name(to)?;
        let from = from.to_string();
        let to = to.to_string();
        self.write(move |c| {
            if !exists(c, account, &from)? {
                return Ok((false, vec![]));
            }
            if from == to {
                return Ok((true, vec![]));
            }
            if exists(c, account, &to)? {
                return Err(StoreError::Exists(format!("script {to}")));
            }
            c.prepare_cached(
                "UPDATE sieve_scripts SET name = ?3, updated = ?4 WHERE account = ?1 AND name = ?2",
            )?
            .execute(params![account, from, to, now()])?;
            Ok((true, vec![]))
        })
        .await
    }

    async fn sieve_active(&self, account: AccountId) -> StoreResult<Option<(String, String)>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT name, script FROM sieve_scripts WHERE account = ?1 AND active = 1",
            )?
            .query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::{Directory, SieveScripts, SqliteStore, StoreError};

    async fn store() -> (tempfile::TempDir, std::sync::Arc<SqliteStore>, i64) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let id = s.create_account("a@example.org", "x").await.unwrap();
        (dir, s, id)
    }

    #[tokio::test]
    async fn put_list_get_replace() {
        let (_d, s, a) = store().await;
        assert!(s.sieve_list(a).await.unwrap().is_empty());
        s.sieve_put(a, "b", "keep;").await.unwrap();
        s.sieve_put(a, "a", "discard;").await.unwrap();
        let l = s.sieve_list(a).await.unwrap();
        assert_eq!(
            l.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(l.iter().all(|i| !i.active));
        assert_eq!(l[0].size, 8);
        s.sieve_put(a, "a", "stop; # é").await.unwrap();
        assert_eq!(s.sieve_get(a, "a").await.unwrap().unwrap(), "stop; # é");
        assert_eq!(s.sieve_list(a).await.unwrap()[0].size, 10);
        assert_eq!(s.sieve_get(a, "A").await.unwrap(), None, "names are exact");
        assert_eq!(s.sieve_get(a + 1, "a").await.unwrap(), None, "per account");
    }

    #[tokio::test]
    async fn one_active_and_deactivate() {
        let (_d, s, a) = store().await;
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

    #[tokio::test]
    async fn delete_refuses_the_active_script() {
        let (_d, s, a) = store().await;
        s.sieve_put(a, "x", "keep;").await.unwrap();
        s.sieve_set_active(a, Some("x")).await.unwrap();
        assert!(matches!(
            s.sieve_delete(a, "x").await,
            Err(StoreError::Active(_))
        ));
        s.sieve_set_active(a, None).await.unwrap();
        assert!(s.sieve_delete(a, "x").await.unwrap());
        assert!(!s.sieve_delete(a, "x").await.unwrap());
    }

    #[tokio::test]
    async fn rename_keeps_active_and_refuses_existing() {
        let (_d, s, a) = store().await;
        s.sieve_put(a, "x", "keep;").await.unwrap();
        s.sieve_put(a, "y", "keep;").await.unwrap();
        s.sieve_set_active(a, Some("x")).await.unwrap();
        assert!(matches!(
            s.sieve_rename(a, "x", "y").await,
            Err(StoreError::Exists(_))
        ));
        assert!(!s.sieve_rename(a, "nope", "z").await.unwrap());
        assert!(s.sieve_rename(a, "x", "z").await.unwrap());
        assert_eq!(s.sieve_active(a).await.unwrap().unwrap().0, "z");
        assert!(matches!(
            s.sieve_rename(a, "z", "").await,
            Err(StoreError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn bad_names_and_unknown_accounts_are_refused() {
        let (_d, s, a) = store().await;
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

    #[tokio::test]
    async fn store_check_sees_bad_script_rows() {
        use crate::MailStore;
        let (_d, s, a) = store().await;
        s.sieve_put(a, "ok", "keep;").await.unwrap();
        assert!(s.check().await.unwrap().is_empty());
        // A row no client could have written (an older version, a hand edit).
        s.write(move |c| {
            c.execute(
                "INSERT INTO sieve_scripts (account, name, script, active, updated)
                 VALUES (?1, 'a\nb', 'keep;', 0, 0)",
                [a],
            )?;
            Ok(((), vec![]))
        })
        .await
        .unwrap();
        let problems = s.check().await.unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("invalid name"), "{problems:?}");
    }

    #[tokio::test]
    async fn deleting_the_account_deletes_its_scripts() {
        let (_d, s, a) = store().await;
        s.sieve_put(a, "x", "keep;").await.unwrap();
        s.sieve_set_active(a, Some("x")).await.unwrap();
        assert!(s.delete_account("a@example.org").await.unwrap());
        let b = s.create_account("a@example.org", "x").await.unwrap();
        assert!(s.sieve_list(b).await.unwrap().is_empty());
        let n: i64 = s
            .read(|c| Ok(c.query_row("SELECT count(*) FROM sieve_scripts", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
