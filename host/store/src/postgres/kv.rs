//! [`PluginKv`] and [`MtaStsCache`] for the PostgreSQL store: the policy
//! plugins' key-value data and the MTA-STS policy cache, shared by every
//! node, with the contracts of `crate::kv` (and the SQLite backend's
//! behaviour, `sqlite::kv`).
//!
//! Every write to a plugin's namespace first locks that plugin's row of
//! `plugin_kv_usage` (creating it if needed), so writes to one namespace
//! take turns across nodes: increments of one key add up, and the count
//! of keys that [`crate::kv::MAX_KEYS_PER_PLUGIN`] bounds stays exact.
//! Reads take no lock.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};

use super::PgStore;
use crate::kv::{
    check_kv_write, check_mta_sts_entry, kv_integer, KvWriteError, MtaStsCache, MtaStsEntry,
    PluginKv, PluginKvEntry, MAX_KEYS_PER_PLUGIN,
};
use crate::StoreResult;

/// Migration 5: `plugin_kv(plugin, key, value, expires)`,
/// `plugin_kv_usage(plugin, keys)` (live and not yet purged keys per
/// plugin) and `mta_sts_cache(domain, id, expires, policy)`.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE plugin_kv (
    plugin text NOT NULL,
    key text NOT NULL,
    value bytea NOT NULL,
    expires bigint,
    PRIMARY KEY (plugin, key)
);
CREATE INDEX plugin_kv_expires ON plugin_kv(expires) WHERE expires IS NOT NULL;
CREATE TABLE plugin_kv_usage (plugin text PRIMARY KEY, keys bigint NOT NULL);
CREATE TABLE mta_sts_cache (
    domain text PRIMARY KEY,
    id text NOT NULL,
    expires bigint NOT NULL,
    policy text NOT NULL
);
"#;

/// Locks `plugin`'s namespace until the commit; returns its key count.
async fn lock_plugin(tx: &Transaction<'_>, plugin: &str) -> StoreResult<i64> {
    tx.execute(
        "INSERT INTO plugin_kv_usage (plugin, keys) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        &[&plugin],
    )
    .await?;
    Ok(tx
        .query_one(
            "SELECT keys FROM plugin_kv_usage WHERE plugin = $1 FOR UPDATE",
            &[&plugin],
        )
        .await?
        .get(0))
}

/// The live value and expiry of a key.
async fn live(
    c: &impl GenericClient,
    plugin: &str,
    key: &str,
    now: i64,
) -> StoreResult<Option<(Vec<u8>, Option<i64>)>> {
    let row = c
        .query_opt(
            "SELECT value, expires FROM plugin_kv WHERE plugin = $1 AND key = $2
               AND (expires IS NULL OR expires > $3)",
            &[&plugin, &key, &now],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Removes expired keys (of one plugin, or all) and corrects the counts.
async fn purge(tx: &Transaction<'_>, plugin: Option<&str>, now: i64) -> StoreResult<usize> {
    let rows = tx
        .query(
            "DELETE FROM plugin_kv WHERE ($1::text IS NULL OR plugin = $1)
               AND expires IS NOT NULL AND expires <= $2 RETURNING plugin",
            &[&plugin, &now],
        )
        .await?;
    let mut per: std::collections::BTreeMap<String, i64> = Default::default();
    for r in &rows {
        *per.entry(r.get(0)).or_default() += 1;
    }
    for (p, n) in per {
        tx.execute(
            "UPDATE plugin_kv_usage SET keys = greatest(keys - $2, 0) WHERE plugin = $1",
            &[&p, &n],
        )
        .await?;
    }
    Ok(rows.len())
}

/// Stores one key in a locked namespace holding `used` keys;
/// `Err("keys per plugin")` when a new key does not fit.
async fn put(
    tx: &Transaction<'_>,
    plugin: &str,
    key: &str,
    value: &[u8],
    expires: Option<i64>,
    now: i64,
    used: &mut i64,
) -> StoreResult<Result<(), &'static str>> {
    let exists = tx
        .query_opt(
            "SELECT 1 FROM plugin_kv WHERE plugin = $1 AND key = $2",
            &[&plugin, &key],
        )
        .await?
        .is_some();
    if !exists {
        if *used >= MAX_KEYS_PER_PLUGIN as i64 {
            let purged = purge(tx, Some(plugin), now).await? as i64;
            *used -= purged;
            if *used >= MAX_KEYS_PER_PLUGIN as i64 {
                return Ok(Err("keys per plugin"));
            }
        }
        tx.execute(
            "UPDATE plugin_kv_usage SET keys = keys + 1 WHERE plugin = $1",
            &[&plugin],
        )
        .await?;
        *used += 1;
    }
    tx.execute(
        "INSERT INTO plugin_kv (plugin, key, value, expires) VALUES ($1, $2, $3, $4)
         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
        &[&plugin, &key, &value, &expires],
    )
    .await?;
    Ok(Ok(()))
}

/// `store check`: the counted keys of each plugin match the stored ones.
pub(super) async fn check(c: &impl GenericClient) -> StoreResult<Vec<String>> {
    let rows = c
        .query(
            "SELECT p, coalesce(u.keys, 0), coalesce(k.n, 0) FROM
               (SELECT plugin AS p FROM plugin_kv UNION SELECT plugin FROM plugin_kv_usage) ps
             LEFT JOIN plugin_kv_usage u ON u.plugin = ps.p
             LEFT JOIN (SELECT plugin, count(*) AS n FROM plugin_kv GROUP BY plugin) k ON k.plugin = ps.p
             WHERE coalesce(u.keys, 0) <> coalesce(k.n, 0)",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "plugin key-value data of {:?}: {} keys counted, {} stored",
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2)
            )
        })
        .collect())
}

#[async_trait]
impl PluginKv for PgStore {
    async fn kv_get(&self, plugin: &str, key: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let c = self.client().await?;
        Ok(live(&c, plugin, key, now).await?.map(|(v, _)| v))
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
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(crate::StoreError::from)?;
        let mut used = lock_plugin(&tx, plugin).await?;
        put(&tx, plugin, key, &value, expires, now, &mut used)
            .await?
            .map_err(KvWriteError::TooLarge)?;
        tx.commit().await.map_err(crate::StoreError::from)?;
        Ok(())
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
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(crate::StoreError::from)?;
        let mut used = lock_plugin(&tx, plugin).await?;
        let (old, old_expires) = match live(&tx, plugin, key, now).await? {
            Some((v, e)) => (kv_integer(&v), e),
            None => (0, None),
        };
        let new = old.saturating_add(delta);
        let expires = expires.or(old_expires);
        put(
            &tx,
            plugin,
            key,
            new.to_string().as_bytes(),
            expires,
            now,
            &mut used,
        )
        .await?
        .map_err(KvWriteError::TooLarge)?;
        tx.commit().await.map_err(crate::StoreError::from)?;
        Ok(new)
    }

    async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_plugin(&tx, plugin).await?;
        let n = tx
            .execute(
                "DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2",
                &[&plugin, &key],
            )
            .await?;
        if n > 0 {
            tx.execute(
                "UPDATE plugin_kv_usage SET keys = keys - 1 WHERE plugin = $1",
                &[&plugin],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn kv_import(&self, entries: Vec<PluginKvEntry>, now: i64) -> StoreResult<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut used: std::collections::HashMap<String, i64> = Default::default();
        let mut stored = 0;
        // Namespaces locked in name order (no two imports wait in a circle).
        let mut plugins: Vec<&str> = entries.iter().map(|e| e.plugin.as_str()).collect();
        plugins.sort_unstable();
        plugins.dedup();
        for p in plugins {
            if check_kv_write(p, "", 0).is_ok() {
                used.insert(p.to_string(), lock_plugin(&tx, p).await?);
            }
        }
        for e in &entries {
            if e.expires.is_some_and(|x| x <= now)
                || check_kv_write(&e.plugin, &e.key, e.value.len()).is_err()
            {
                continue;
            }
            let Some(n) = used.get_mut(&e.plugin) else {
                continue;
            };
            if put(&tx, &e.plugin, &e.key, &e.value, e.expires, now, n)
                .await?
                .is_ok()
            {
                stored += 1;
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn kv_purge_expired(&self, now: i64) -> StoreResult<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = purge(&tx, None, now).await?;
        tx.commit().await?;
        Ok(n)
    }
}

#[async_trait]
impl MtaStsCache for PgStore {
    async fn mta_sts_get(&self, domain: &str, now: i64) -> StoreResult<Option<MtaStsEntry>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT id, expires, policy FROM mta_sts_cache WHERE domain = $1 AND expires > $2",
            &[&domain, &now],
        )
        .await?
        .map(|r| MtaStsEntry {
            id: r.get(0),
            expires: r.get(1),
            policy: r.get(2),
        }))
    }

    async fn mta_sts_put(&self, domain: &str, entry: MtaStsEntry, now: i64) -> StoreResult<()> {
        check_mta_sts_entry(domain, &entry)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("DELETE FROM mta_sts_cache WHERE expires <= $1", &[&now])
            .await?;
        tx.execute(
            "INSERT INTO mta_sts_cache (domain, id, expires, policy) VALUES ($1, $2, $3, $4)
             ON CONFLICT (domain) DO UPDATE
               SET id = excluded.id, expires = excluded.expires, policy = excluded.policy",
            &[&domain, &entry.id, &entry.expires, &entry.policy],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mta_sts_remove(&self, domain: &str) -> StoreResult<bool> {
        let c = self.client().await?;
        Ok(
            c.execute("DELETE FROM mta_sts_cache WHERE domain = $1", &[&domain])
                .await?
                > 0,
        )
    }
}
