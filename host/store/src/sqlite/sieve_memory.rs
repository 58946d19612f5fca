//! What Sieve delivery remembers per account (`mailgate_store::SieveMemory`):
//! vacation replies sent (one per sender per period, RFC 5230 §4.2), the
//! `duplicate` extension's ids (RFC 7352), and the script versions whose
//! failure the user was told about. Apart from the scripts themselves
//! (`sieve_scripts`, kept by ManageSieve and `mailgate sieve`).
//!
//! One table, `sieve_memory(account, kind, key, expires)`; rows past
//! `expires` are ignored and removed when the account's rows of that
//! kind are next read. Removed with the account.

use rusqlite::params;

use super::SqliteStore;
use crate::{AccountId, StoreResult};

/// `sieve_memory`; additive and idempotent, no schema version.
pub(crate) const SIEVE_MEMORY: &str = r#"
CREATE TABLE IF NOT EXISTS sieve_memory (
    account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (account, kind, key)
) WITHOUT ROWID;
"#;

/// Most `duplicate` keys kept per account: the oldest go first.
pub const MAX_DUPLICATE_KEYS: usize = 10_000;

impl SqliteStore {
    /// Whether `key` of `kind` is remembered (not expired); if not,
    /// remembers it until `expires`. One transaction: two deliveries at
    /// once cannot both see "not remembered".
    pub(crate) async fn sieve_remember_once(
        &self,
        account: AccountId,
        kind: &'static str,
        key: String,
        now: i64,
        expires: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM sieve_memory WHERE account = ?1 AND kind = ?2 AND expires <= ?3",
                params![account, kind, now],
            )?;
            let n = c.execute(
                "INSERT OR IGNORE INTO sieve_memory (account, kind, key, expires)
                 VALUES (?1, ?2, ?3, ?4)",
                params![account, kind, key, expires],
            )?;
            Ok((n == 1, vec![]))
        })
        .await
    }

    /// The unexpired keys of `kind`.
    pub(crate) async fn sieve_keys(
        &self,
        account: AccountId,
        kind: &'static str,
        now: i64,
    ) -> StoreResult<Vec<String>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT key FROM sieve_memory WHERE account = ?1 AND kind = ?2 AND expires > ?3
                 ORDER BY expires DESC LIMIT ?4",
            )?;
            let keys = st
                .query_map(
                    params![account, kind, now, MAX_DUPLICATE_KEYS as i64],
                    |r| r.get(0),
                )?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(keys)
        })
        .await
    }

    /// Remembers `keys` (key, expires), replacing their expiry; drops
    /// expired rows of `kind` and the oldest beyond [`MAX_DUPLICATE_KEYS`].
    pub(crate) async fn sieve_set_keys(
        &self,
        account: AccountId,
        kind: &'static str,
        keys: Vec<(String, i64)>,
        now: i64,
    ) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM sieve_memory WHERE account = ?1 AND kind = ?2 AND expires <= ?3",
                params![account, kind, now],
            )?;
            for (key, expires) in &keys {
                c.execute(
                    "INSERT OR REPLACE INTO sieve_memory (account, kind, key, expires)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![account, kind, key, expires],
                )?;
            }
            c.execute(
                "DELETE FROM sieve_memory WHERE account = ?1 AND kind = ?2 AND key NOT IN
                 (SELECT key FROM sieve_memory WHERE account = ?1 AND kind = ?2
                  ORDER BY expires DESC LIMIT ?3)",
                params![account, kind, MAX_DUPLICATE_KEYS as i64],
            )?;
            Ok(((), vec![]))
        })
        .await
    }

    /// Forgets every key of `kind` but `keep`.
    pub(crate) async fn sieve_forget_others(
        &self,
        account: AccountId,
        kind: &'static str,
        keep: String,
    ) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM sieve_memory WHERE account = ?1 AND kind = ?2 AND key <> ?3",
                params![account, kind, keep],
            )?;
            Ok(((), vec![]))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::{Directory, SieveMemory, SqliteStore};

    #[tokio::test]
    async fn vacation_duplicates_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
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
        // Duplicate ids: remembered for their period, per account.
        s.sieve_remember_duplicates(a, &[("k1".into(), 10), ("k2".into(), 100)], 0)
            .await
            .unwrap();
        assert_eq!(s.sieve_duplicates(a, 5).await.unwrap(), ["k2", "k1"]);
        assert_eq!(s.sieve_duplicates(a, 50).await.unwrap(), ["k2"]);
        assert!(s.sieve_duplicates(b, 5).await.unwrap().is_empty());
        // A failure is news once per version.
        assert!(s.sieve_failure_is_new(a, "v1").await.unwrap());
        assert!(!s.sieve_failure_is_new(a, "v1").await.unwrap());
        assert!(s.sieve_failure_is_new(a, "v2").await.unwrap());
        // Deleting the account forgets everything.
        s.delete_account("a@example.org").await.unwrap();
        let n: i64 = s
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM sieve_memory WHERE account = ?1",
                    [a],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
