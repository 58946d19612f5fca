//! The plugins' key-value data ([`crate::PluginKv`]) and the MTA-STS
//! policy cache ([`crate::MtaStsCache`]) in the embedded store.
//!
//! - `plugin_kv(plugin, key, value, expires)`: one row per key; `expires`
//!   in Unix seconds, `NULL` for never. A row at or past its expiry is
//!   ignored by readers and removed when its plugin next needs room, or
//!   by [`crate::PluginKv::kv_purge_expired`].
//! - `plugin_kv_usage(plugin, keys)`: the number of rows of each plugin,
//!   kept in step by every write, so that the bound on keys per plugin
//!   costs one point read instead of a count.
//! - `mta_sts_cache(domain, id, expires, policy)`: one row per domain.
//!
//! Reads are point look-ups on the calling thread (like the directory's);
//! writes go through the writer's group commit.

use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::kv::{
    check_kv_write, check_mta_sts_entry, kv_integer, KvWriteError, MtaStsCache, MtaStsEntry,
    PluginKv, PluginKvEntry, MAX_KEYS_PER_PLUGIN,
};
use crate::StoreResult;

/// The tables; additive and idempotent, no schema version (an older
/// mailgate ignores them).
pub(crate) const KV_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS plugin_kv (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires INTEGER,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS plugin_kv_usage (
    plugin TEXT PRIMARY KEY,
    keys INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mta_sts_cache (
    domain TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    expires INTEGER NOT NULL,
    policy TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// A live row: (value, expires).
fn live(c: &Connection, plugin: &str, key: &str, now: i64) -> StoreResult<Option<Row>> {
    let row = c
        .prepare_cached("SELECT value, expires FROM plugin_kv WHERE plugin = ?1 AND key = ?2")?
        .query_row(params![plugin, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.filter(|(_, e): &Row| e.is_none_or(|x| x > now)))
}

type Row = (Vec<u8>, Option<i64>);

/// Stores a row inside the writer's transaction, keeping the per-plugin
/// count and its bound. `Ok(Err(what))`: refused for a bound, nothing
/// changed; `Err`: the store failed (the job fails, its savepoint is
/// rolled back).
fn put(
    c: &Connection,
    plugin: &str,
    key: &str,
    value: &[u8],
    expires: Option<i64>,
    now: i64,
) -> StoreResult<Result<(), &'static str>> {
    let exists = c
        .prepare_cached("SELECT 1 FROM plugin_kv WHERE plugin = ?1 AND key = ?2")?
        .exists(params![plugin, key])?;
    if !exists {
        let used: i64 = c
            .prepare_cached("SELECT keys FROM plugin_kv_usage WHERE plugin = ?1")?
            .query_row([plugin], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        if used >= MAX_KEYS_PER_PLUGIN as i64 && purge(c, Some(plugin), now)? == 0 {
            return Ok(Err("keys per plugin"));
        }
        let used: i64 = c
            .prepare_cached("SELECT keys FROM plugin_kv_usage WHERE plugin = ?1")?
            .query_row([plugin], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        if used >= MAX_KEYS_PER_PLUGIN as i64 {
            return Ok(Err("keys per plugin"));
        }
        c.prepare_cached(
            "INSERT INTO plugin_kv_usage (plugin, keys) VALUES (?1, 1)
             ON CONFLICT (plugin) DO UPDATE SET keys = keys + 1",
        )?
        .execute([plugin])?;
    }
    c.prepare_cached(
        "INSERT INTO plugin_kv (plugin, key, value, expires) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
    )?
    .execute(params![plugin, key, value, expires])?;
    Ok(Ok(()))
}

/// Removes the expired rows of one plugin (or all), keeping the counts.
fn purge(c: &Connection, plugin: Option<&str>, now: i64) -> StoreResult<usize> {
    let n = c
        .prepare_cached(
            "DELETE FROM plugin_kv WHERE (?1 IS NULL OR plugin = ?1)
             AND expires IS NOT NULL AND expires <= ?2",
        )?
        .execute(params![plugin, now])?;
    if n > 0 {
        recount(c, plugin)?;
    }
    Ok(n)
}

/// Rebuilds `plugin_kv_usage` from the rows (of one plugin, or all).
fn recount(c: &Connection, plugin: Option<&str>) -> StoreResult<()> {
    c.execute(
        "DELETE FROM plugin_kv_usage WHERE ?1 IS NULL OR plugin = ?1",
        [plugin],
    )?;
    c.execute(
        "INSERT INTO plugin_kv_usage (plugin, keys)
         SELECT plugin, count(*) FROM plugin_kv WHERE ?1 IS NULL OR plugin = ?1 GROUP BY plugin",
        [plugin],
    )?;
    Ok(())
}

/// `store check`: the per-plugin counts match the rows. One line per
/// plugin that differs.
pub(crate) fn check(c: &Connection) -> StoreResult<Vec<String>> {
    let mut st = c.prepare(
        "SELECT p, COALESCE(u.keys, 0), COALESCE(k.n, 0) FROM
           (SELECT plugin AS p FROM plugin_kv UNION SELECT plugin FROM plugin_kv_usage)
         LEFT JOIN plugin_kv_usage u ON u.plugin = p
         LEFT JOIN (SELECT plugin, count(*) AS n FROM plugin_kv GROUP BY plugin) k ON k.plugin = p
         WHERE COALESCE(u.keys, 0) <> COALESCE(k.n, 0)",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (plugin, counted, actual) = row?;
        out.push(format!(
            "plugin key-value data of {plugin:?}: {counted} keys counted, {actual} stored"
        ));
    }
    Ok(out)
}

/// `store check --repair`: rebuilds the counts.
pub(crate) fn repair(c: &Connection) -> StoreResult<()> {
    recount(c, None)
}

#[async_trait::async_trait]
impl PluginKv for SqliteStore {
    async fn kv_get(&self, plugin: &str, key: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        self.read_now(|c| Ok(live(c, plugin, key, now)?.map(|(v, _)| v)))
    }

    async fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        now: i64,
    ) -> Result<(), KvWriteError> {
        check_kv_write(plugin, key, value.len())?;
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |c| Ok((put(c, &plugin, &key, &value, expires, now)?, vec![])))
            .await?
            .map_err(KvWriteError::TooLarge)
    }

    async fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        expires: Option<i64>,
        now: i64,
    ) -> Result<i64, KvWriteError> {
        check_kv_write(plugin, key, 0)?;
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |c| {
            let (old, old_expires) = match live(c, &plugin, &key, now)? {
                Some((v, e)) => (kv_integer(&v), e),
                None => (0, None),
            };
            let new = old.saturating_add(delta);
            let expires = expires.or(old_expires);
            let stored = put(c, &plugin, &key, new.to_string().as_bytes(), expires, now)?;
            Ok((stored.map(|()| new), vec![]))
        })
        .await?
        .map_err(KvWriteError::TooLarge)
    }

    async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<()> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM plugin_kv WHERE plugin = ?1 AND key = ?2")?
                .execute(params![plugin, key])?;
            if n > 0 {
                c.prepare_cached("UPDATE plugin_kv_usage SET keys = keys - 1 WHERE plugin = ?1")?
                    .execute([&plugin])?;
            }
            Ok(((), vec![]))
        })
        .await
    }

    async fn kv_import(&self, entries: Vec<PluginKvEntry>, now: i64) -> StoreResult<usize> {
        self.write(move |c| {
            let mut stored = 0;
            for e in &entries {
                if e.expires.is_some_and(|x| x <= now)
                    || check_kv_write(&e.plugin, &e.key, e.value.len()).is_err()
                {
                    continue;
                }
                if put(c, &e.plugin, &e.key, &e.value, e.expires, now)?.is_ok() {
                    stored += 1;
                }
            }
            Ok((stored, vec![]))
        })
        .await
    }

    async fn kv_purge_expired(&self, now: i64) -> StoreResult<usize> {
        self.write(move |c| Ok((purge(c, None, now)?, vec![])))
            .await
    }
}

#[async_trait::async_trait]
impl MtaStsCache for SqliteStore {
    async fn mta_sts_get(&self, domain: &str, now: i64) -> StoreResult<Option<MtaStsEntry>> {
        self.read_now(|c| {
            Ok(c.prepare_cached(
                "SELECT id, expires, policy FROM mta_sts_cache WHERE domain = ?1 AND expires > ?2",
            )?
            .query_row(params![domain, now], |r| {
                Ok(MtaStsEntry {
                    id: r.get(0)?,
                    expires: r.get(1)?,
                    policy: r.get(2)?,
                })
            })
            .optional()?)
        })
    }

    async fn mta_sts_put(&self, domain: &str, entry: MtaStsEntry, now: i64) -> StoreResult<()> {
        check_mta_sts_entry(domain, &entry)?;
        let domain = domain.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM mta_sts_cache WHERE expires <= ?1", [now])?;
            c.execute(
                "INSERT OR REPLACE INTO mta_sts_cache (domain, id, expires, policy)
                 VALUES (?1, ?2, ?3, ?4)",
                params![domain, entry.id, entry.expires, entry.policy],
            )?;
            Ok(((), vec![]))
        })
        .await
    }

    async fn mta_sts_remove(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.to_string();
        self.write(move |c| {
            let n = c.execute("DELETE FROM mta_sts_cache WHERE domain = ?1", [domain])?;
            Ok((n > 0, vec![]))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::kv::{MAX_KEY, MAX_VALUE};
    use crate::{
        KvWriteError, MailStore, MtaStsCache, MtaStsEntry, PluginKv, PluginKvEntry, SqliteStore,
    };

    const NOW: i64 = 1_000_000;

    #[tokio::test]
    async fn kv_counts_expires_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.kv_increment("p", "n", 2, None, NOW).await.unwrap(), 2);
        assert_eq!(s.kv_increment("p", "n", 3, None, NOW).await.unwrap(), 5);
        assert_eq!(s.kv_get("other", "n", NOW).await.unwrap(), None);
        s.kv_set("p", "gone", b"x".to_vec(), Some(NOW), NOW)
            .await
            .unwrap();
        assert_eq!(s.kv_get("p", "gone", NOW).await.unwrap(), None);
        s.kv_set("p", "k", b"v".to_vec(), Some(NOW + 10), NOW)
            .await
            .unwrap();
        assert_eq!(
            s.kv_get("p", "k", NOW + 9).await.unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(s.kv_get("p", "k", NOW + 10).await.unwrap(), None);
        // An increment keeps the live value's expiry unless given one; an
        // expired value counts from 0; text that is no integer is 0.
        s.kv_increment("p", "c", 1, Some(NOW + 5), NOW)
            .await
            .unwrap();
        assert_eq!(s.kv_increment("p", "c", 1, None, NOW).await.unwrap(), 2);
        assert_eq!(s.kv_get("p", "c", NOW + 5).await.unwrap(), None);
        assert_eq!(s.kv_increment("p", "c", 1, None, NOW + 5).await.unwrap(), 1);
        s.kv_set("p", "t", b" x".to_vec(), None, NOW).await.unwrap();
        assert_eq!(s.kv_increment("p", "t", 4, None, NOW).await.unwrap(), 4);
        s.kv_set("p", "m", i64::MAX.to_string().into_bytes(), None, NOW)
            .await
            .unwrap();
        assert_eq!(
            s.kv_increment("p", "m", 1, None, NOW).await.unwrap(),
            i64::MAX
        );
        s.kv_delete("p", "k").await.unwrap();
        s.kv_delete("p", "never").await.unwrap();
        assert!(matches!(
            s.kv_set("p", &"k".repeat(MAX_KEY + 1), vec![], None, NOW)
                .await,
            Err(KvWriteError::TooLarge("key"))
        ));
        assert!(matches!(
            s.kv_set("p", "big", vec![0; MAX_VALUE + 1], None, NOW)
                .await,
            Err(KvWriteError::TooLarge("value"))
        ));
        s.kv_set("p", &"k".repeat(MAX_KEY), vec![0; MAX_VALUE], None, NOW)
            .await
            .unwrap();
        assert_eq!(s.check().await.unwrap(), Vec::<String>::new());
        drop(s);
        let again = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            again.kv_get("p", "n", NOW).await.unwrap(),
            Some(b"5".to_vec())
        );
        assert_eq!(again.kv_get("p", "k", NOW).await.unwrap(), None);
        assert_eq!(again.check().await.unwrap(), Vec::<String>::new());
    }

    /// The bound on keys per plugin: full means refused, unless expired
    /// keys can make room; other plugins are not affected.
    #[tokio::test]
    async fn keys_per_plugin_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let max = crate::kv::MAX_KEYS_PER_PLUGIN;
        let entries = (0..max)
            .map(|i| PluginKvEntry {
                plugin: "p".into(),
                key: format!("k{i}"),
                value: b"1".to_vec(),
                // The first ten expire at NOW + 1.
                expires: (i < 10).then_some(NOW + 1),
            })
            .collect();
        assert_eq!(s.kv_import(entries, NOW).await.unwrap(), max);
        assert!(matches!(
            s.kv_set("p", "new", b"x".to_vec(), None, NOW).await,
            Err(KvWriteError::TooLarge("keys per plugin"))
        ));
        // Replacing a key that exists is no new key.
        s.kv_set("p", "k50", b"2".to_vec(), None, NOW)
            .await
            .unwrap();
        s.kv_set("q", "new", b"x".to_vec(), None, NOW)
            .await
            .unwrap();
        // Once ten expired, ten new keys fit, the eleventh does not.
        for i in 0..10 {
            s.kv_increment("p", &format!("new{i}"), 1, None, NOW + 1)
                .await
                .unwrap();
        }
        assert!(s
            .kv_increment("p", "one more", 1, None, NOW + 1)
            .await
            .is_err());
        s.kv_delete("p", "k50").await.unwrap();
        s.kv_increment("p", "one more", 1, None, NOW + 1)
            .await
            .unwrap();
        assert_eq!(s.check().await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn concurrent_increments_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    for _ in 0..50 {
                        s.kv_increment("p", "n", 1, None, NOW).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            s.kv_get("p", "n", NOW).await.unwrap(),
            Some(b"200".to_vec())
        );
    }

    #[tokio::test]
    async fn import_skips_expired_and_oversized_entries_and_purge_empties() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let e = |key: &str, value: &[u8], expires| PluginKvEntry {
            plugin: "p".into(),
            key: key.into(),
            value: value.to_vec(),
            expires,
        };
        let n = s
            .kv_import(
                vec![
                    e("a", b"1", None),
                    e("b", b"2", Some(NOW - 1)),
                    e(&"x".repeat(MAX_KEY + 1), b"3", None),
                    e("c", b"3", Some(NOW + 5)),
                ],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(s.kv_get("p", "a", NOW).await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.kv_purge_expired(NOW + 5).await.unwrap(), 1);
        assert_eq!(s.kv_purge_expired(NOW + 5).await.unwrap(), 0);
        assert_eq!(s.check().await.unwrap(), Vec::<String>::new());
    }

    /// `store check` notices counts out of step and `--repair` rebuilds
    /// them.
    #[tokio::test]
    async fn check_and_repair_the_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.kv_set("p", "a", b"1".to_vec(), None, NOW).await.unwrap();
        s.write(|c| {
            c.execute("UPDATE plugin_kv_usage SET keys = 7", [])?;
            Ok(((), vec![]))
        })
        .await
        .unwrap();
        let problems = s.check().await.unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("7 keys counted, 1 stored"));
        assert_eq!(s.repair(false).await.unwrap().len(), 1);
        assert_eq!(s.check().await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn mta_sts_cache_by_domain() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let entry = |id: &str, expires| MtaStsEntry {
            id: id.into(),
            expires,
            policy: "version: STSv1\nmode: enforce\nmx: mx.d.test\nmax_age: 100\n".into(),
        };
        assert_eq!(s.mta_sts_get("d.test", NOW).await.unwrap(), None);
        s.mta_sts_put("d.test", entry("1", NOW + 100), NOW)
            .await
            .unwrap();
        s.mta_sts_put("old.test", entry("1", NOW + 1), NOW)
            .await
            .unwrap();
        s.mta_sts_put("d.test", entry("2", NOW + 100), NOW)
            .await
            .unwrap();
        assert_eq!(
            s.mta_sts_get("d.test", NOW).await.unwrap(),
            Some(entry("2", NOW + 100))
        );
        assert_eq!(s.mta_sts_get("d.test", NOW + 100).await.unwrap(), None);
        // A put drops every expired entry.
        s.mta_sts_put("e.test", entry("1", NOW + 100), NOW + 1)
            .await
            .unwrap();
        assert!(!s.mta_sts_remove("old.test").await.unwrap());
        assert!(s.mta_sts_remove("e.test").await.unwrap());
        assert!(s
            .mta_sts_put("d.test", entry(&"9".repeat(33), NOW + 1), NOW)
            .await
            .is_err());
        let long = format!("{}.test", "d".repeat(crate::kv::MAX_MTA_STS_DOMAIN - 4));
        assert!(s
            .mta_sts_put(&long, entry("1", NOW + 1), NOW)
            .await
            .is_err());
        s.mta_sts_put(&long[1..], entry("1", NOW + 1), NOW)
            .await
            .unwrap();
        let mut big = entry("3", NOW + 1);
        big.policy = "x".repeat(crate::kv::MAX_MTA_STS_POLICY + 1);
        assert!(s.mta_sts_put("d.test", big, NOW).await.is_err());
    }

    /// A store made before these tables existed gains them at open, and
    /// a backup holds what they hold.
    #[tokio::test]
    async fn an_old_store_gains_the_tables_and_backups_hold_them() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let c = rusqlite::Connection::open(dir.path().join(super::super::DB_FILE)).unwrap();
        c.execute_batch(
            "DROP TABLE plugin_kv; DROP TABLE plugin_kv_usage; DROP TABLE mta_sts_cache;",
        )
        .unwrap();
        drop(c);
        let s = SqliteStore::open(dir.path()).unwrap();
        s.kv_set("p", "k", b"v".to_vec(), None, NOW).await.unwrap();
        let entry = MtaStsEntry {
            id: "1".into(),
            expires: NOW + 100,
            policy: "version: STSv1\n".into(),
        };
        s.mta_sts_put("d.test", entry.clone(), NOW).await.unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let dest = elsewhere.path().join("backup");
        crate::backup::backup(dir.path(), &dest, &mut |_| {}).unwrap();
        drop(s);
        let copy = SqliteStore::open(&dest).unwrap();
        assert_eq!(
            copy.kv_get("p", "k", NOW).await.unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(copy.mta_sts_get("d.test", NOW).await.unwrap(), Some(entry));
        assert_eq!(copy.check().await.unwrap(), Vec::<String>::new());
    }

    /// What one increment costs (run with `--ignored --nocapture`, in a
    /// release build to compare with other figures).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn increment_cost() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            s.kv_increment("p", "n", 1, None, NOW).await.unwrap();
        }
        let one = t.elapsed() / n;
        let t = std::time::Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    for _ in 0..n / 16 {
                        s.kv_increment("p", &format!("k{i}"), 1, None, NOW)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let shared = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            s.kv_get("p", "n", NOW).await.unwrap();
        }
        let get = t.elapsed() / n;
        println!("kv increment, one caller: {one:?}; 16 callers: {shared:?} each; get: {get:?}");
    }
}
