//! `mailgate store migrate`: copies a stopped store from SQLite into
//! PostgreSQL ([`Direction::ToPostgres`]) or back
//! ([`Direction::FromPostgres`]), row for row, so that clients notice
//! nothing: account ids, password hashes, mailbox ids, UIDVALIDITY,
//! UIDNEXT, HIGHESTMODSEQ, every message's UID, flags, MODSEQ, internal
//! date and body, the expunge history of QRESYNC, the queue with its ids,
//! Sieve scripts and what Sieve delivery remembers, plugin key-value data
//! and the MTA-STS cache.
//!
//! # What is copied
//! [`TABLES`] lists every table copied, in an order where each row's
//! references are already there. The tables of either backend that are
//! not copied are in [`SQLITE_NOT_COPIED`] and [`PG_NOT_COPIED`] with the
//! reason; a test fails when a table is added to either schema without
//! being put in one of the lists. The counters that are not rows are
//! carried over too ([`Counters`]): the last UIDVALIDITY handed out (so a
//! mailbox created after the move never gets an old one) and the last
//! queue id (never reused).
//!
//! # Atomicity and the check
//! Into PostgreSQL, everything is one transaction: the rows, the
//! sequences, then the row counts compared with the source's and the
//! checks of `store check`; only if all agree is it committed, otherwise
//! it is rolled back and the database is as before. Into SQLite, the copy
//! is written to `mailgate.db.migrating` in the data directory, checked
//! the same way, and only then renamed to `mailgate.db` (a store that was
//! there is moved to `pre-migrate-<time>/` first).
//!
//! # Memory
//! The copy streams: the source is read by one task and the target
//! written by another, with at most one batch waiting between them. A
//! batch ends at [`BATCH_ROWS`] rows or once it holds [`BATCH_BYTES`]; a
//! PostgreSQL source is read [`FETCH_ROWS`] rows at a time, and a table of
//! bodies ([`Table::bodies`]) one row at a time. So at most three batches
//! exist at once (one being read, one waiting, one being written): about
//! 3 × (8 MiB + the largest message) whatever the size of the store.

use std::path::{Path, PathBuf};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use crate::postgres::PgConfig;
use crate::{StoreError, StoreResult};

/// Most rows in one batch.
pub const BATCH_ROWS: usize = 500;
/// A batch ends once its rows hold this many bytes (8 MiB).
pub const BATCH_BYTES: usize = 8 << 20;
/// Rows fetched at a time from PostgreSQL (tables without bodies).
pub const FETCH_ROWS: i32 = 500;

/// Which way to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The SQLite store of the data directory into PostgreSQL.
    ToPostgres,
    /// PostgreSQL into the SQLite store of the data directory.
    FromPostgres,
}

/// What to copy where.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The data directory holding (or to hold) `mailgate.db`.
    pub data_dir: PathBuf,
    /// The PostgreSQL database.
    pub pg: PgConfig,
    /// Which way.
    pub direction: Direction,
    /// Replace a target that holds data (PostgreSQL: its rows are
    /// deleted in the copy's transaction; SQLite: the old file is moved
    /// to `pre-migrate-<time>/`). Without it such a target is refused.
    pub force: bool,
}

/// What the copy has done so far, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Rows copied so far, of all tables, out of `total`.
    Rows {
        /// The table being copied.
        table: &'static str,
        /// Rows copied, all tables.
        done: u64,
        /// Rows in the source, all tables.
        total: u64,
    },
    /// A table is done.
    Table {
        /// Its name.
        table: &'static str,
        /// Rows copied.
        rows: u64,
    },
}

/// One table's rows in the source and in the target after the copy.
#[derive(Debug, Clone)]
pub struct TableCount {
    /// The table.
    pub table: &'static str,
    /// Rows read from the source.
    pub source: u64,
    /// Rows in the target.
    pub target: u64,
}

/// What the copy did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every table's counts.
    pub tables: Vec<TableCount>,
    /// Count mismatches and `store check` problems of the target; when
    /// not empty nothing was committed.
    pub problems: Vec<String>,
    /// Whether the copy is in place (no problems).
    pub committed: bool,
    /// SQLite target: where the store it replaced was moved.
    pub set_aside: Option<PathBuf>,
}

/// How a column's value is held on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `INTEGER` / `bigint` (an `integer` column is cast in the SQL).
    Int,
    /// `TEXT` / `text`.
    Text,
    /// `BLOB` / `bytea`.
    Bytes,
    /// `INTEGER` 0/1 / `boolean`.
    Bool,
    /// `TEXT` / `bytea` (a Sieve memory key, which may hold a NUL).
    TextBytes,
    /// Space-separated `TEXT` / `text[]` (IMAP flags).
    Flags,
    /// A JSON array in `TEXT` / `text[]` (alias targets).
    JsonList,
}

/// One value in transit.
#[derive(Debug, Clone)]
enum V {
    Null,
    I(i64),
    T(String),
    B(Vec<u8>),
    Bool(bool),
    L(Vec<String>),
}

impl V {
    fn bytes(&self) -> usize {
        match self {
            V::T(s) => s.len(),
            V::B(b) => b.len(),
            V::L(l) => l.iter().map(|s| s.len() + 1).sum(),
            _ => 8,
        }
    }
}

/// One copied table: how to read it from either side and write it to the
/// other. The selects return the columns of `kinds` in order; each insert
/// takes the listed columns (by index) as its parameters in order.
#[derive(Debug)]
pub struct Table {
    /// The table's name (the same on both sides).
    pub name: &'static str,
    kinds: &'static [Kind],
    sqlite_select: &'static str,
    pg_select: &'static str,
    sqlite_insert: &'static [(&'static str, &'static [usize])],
    pg_insert: (&'static str, &'static [usize]),
    /// Rows hold message bodies: read from PostgreSQL one at a time.
    pub bodies: bool,
}

use Kind::*;

/// Every table copied, in the order they are copied (references first).
pub const TABLES: &[Table] = &[
    Table {
        name: "domains",
        kinds: &[Text, Text],
        sqlite_select: "SELECT name, catch_all FROM domains ORDER BY name",
        pg_select: "SELECT name, catch_all FROM domains ORDER BY name",
        sqlite_insert: &[("INSERT INTO domains (name, catch_all) VALUES (?1, ?2)", &[0, 1])],
        pg_insert: ("INSERT INTO domains (name, catch_all) VALUES ($1, $2)", &[0, 1]),
        bodies: false,
    },
    Table {
        name: "accounts",
        kinds: &[Int, Text, Text, Int, Int],
        sqlite_select: "SELECT id, address, password_hash, quota_bytes, created FROM accounts ORDER BY id",
        pg_select: "SELECT id, address, password_hash, quota_bytes, created FROM accounts ORDER BY id",
        sqlite_insert: &[(
            "INSERT INTO accounts (id, address, password_hash, quota_bytes, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            &[0, 1, 2, 3, 4],
        )],
        pg_insert: (
            "INSERT INTO accounts (id, address, password_hash, quota_bytes, created) VALUES ($1, $2, $3, $4, $5)",
            &[0, 1, 2, 3, 4],
        ),
        bodies: false,
    },
    Table {
        name: "aliases",
        kinds: &[Text, JsonList],
        sqlite_select: "SELECT alias, targets FROM aliases ORDER BY alias",
        pg_select: "SELECT alias, targets FROM aliases ORDER BY alias",
        sqlite_insert: &[("INSERT INTO aliases (alias, targets) VALUES (?1, ?2)", &[0, 1])],
        pg_insert: ("INSERT INTO aliases (alias, targets) VALUES ($1, $2)", &[0, 1]),
        bodies: false,
    },
    Table {
        name: "last_logins",
        kinds: &[Int, Int, Text],
        sqlite_select: "SELECT account, at, client FROM last_logins ORDER BY account",
        pg_select: "SELECT account, at, client FROM last_logins ORDER BY account",
        sqlite_insert: &[(
            "INSERT INTO last_logins (account, at, client) VALUES (?1, ?2, ?3)",
            &[0, 1, 2],
        )],
        pg_insert: (
            "INSERT INTO last_logins (account, at, client) VALUES ($1, $2, $3)",
            &[0, 1, 2],
        ),
        bodies: false,
    },
    Table {
        name: "mailboxes",
        // The last column is SQLite's `subscribed`, kept in step with
        // `subscriptions`; PostgreSQL has only `subscriptions`.
        kinds: &[Int, Int, Text, Text, Int, Int, Int, Bool],
        sqlite_select: "SELECT id, account, name, special_use, uid_validity, uid_next, highest_modseq, \
             subscribed FROM mailboxes ORDER BY id",
        pg_select: "SELECT id, account, name, special_use, uid_validity, uid_next, highest_modseq, \
             EXISTS (SELECT 1 FROM subscriptions s WHERE s.account = m.account AND s.name = m.name) \
             FROM mailboxes m ORDER BY id",
        sqlite_insert: &[(
            "INSERT INTO mailboxes (id, account, name, special_use, uid_validity, uid_next, \
             highest_modseq, subscribed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &[0, 1, 2, 3, 4, 5, 6, 7],
        )],
        pg_insert: (
            "INSERT INTO mailboxes (id, account, name, special_use, uid_validity, uid_next, \
             highest_modseq) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[0, 1, 2, 3, 4, 5, 6],
        ),
        bodies: false,
    },
    Table {
        name: "subscriptions",
        kinds: &[Int, Text],
        sqlite_select: "SELECT account, name FROM subscriptions ORDER BY account, name",
        pg_select: "SELECT account, name FROM subscriptions ORDER BY account, name",
        sqlite_insert: &[(
            "INSERT INTO subscriptions (account, name) VALUES (?1, ?2)",
            &[0, 1],
        )],
        pg_insert: (
            "INSERT INTO subscriptions (account, name) VALUES ($1, $2)",
            &[0, 1],
        ),
        bodies: false,
    },
    Table {
        // With SQLite's `blob_headers` (the header block; derived from
        // the body where a row is missing). PostgreSQL keeps each distinct
        // body once: a body equal to one copied before is not copied
        // again, and its entries point at the first
        // (`migrate_blob_map`).
        name: "blobs",
        kinds: &[Int, Int, Text, Bytes, Bytes],
        sqlite_select: "SELECT b.id, b.size, b.structure, b.data, h.header \
             FROM blobs b LEFT JOIN blob_headers h ON h.blob = b.id ORDER BY b.id",
        pg_select: "SELECT id, size, structure, data, header FROM blobs ORDER BY id",
        sqlite_insert: &[
            (
                "INSERT INTO blobs (id, size, structure, data) VALUES (?1, ?2, ?3, ?4)",
                &[0, 1, 2, 3],
            ),
            (
                "INSERT INTO blob_headers (blob, header) VALUES (?1, ?2)",
                &[0, 4],
            ),
        ],
        pg_insert: (
            "WITH ins AS (
                 INSERT INTO blobs (id, hash, size, structure, header, data)
                 VALUES ($1, sha256($4), $2, $3, $5, $4)
                 ON CONFLICT (hash) DO NOTHING RETURNING id)
             INSERT INTO migrate_blob_map (src, dst)
             SELECT $1, b.id FROM blobs b
              WHERE b.hash = sha256($4) AND NOT EXISTS (SELECT 1 FROM ins)",
            &[0, 1, 2, 3, 4],
        ),
        bodies: true,
    },
    Table {
        name: "messages",
        kinds: &[Int, Int, Int, Flags, Int, Int, Int],
        sqlite_select: "SELECT mailbox, uid, blob, flags, internal_date, size, modseq \
             FROM messages ORDER BY mailbox, uid",
        pg_select: "SELECT mailbox, uid, blob, flags, internal_date, size, modseq \
             FROM messages ORDER BY mailbox, uid",
        sqlite_insert: &[(
            "INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[0, 1, 2, 3, 4, 5, 6],
        )],
        pg_insert: (
            "INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq) \
             VALUES ($1, $2, coalesce((SELECT dst FROM migrate_blob_map WHERE src = $3), $3), \
             $4, $5, $6, $7)",
            &[0, 1, 2, 3, 4, 5, 6],
        ),
        bodies: false,
    },
    Table {
        name: "expunged",
        kinds: &[Int, Int, Int],
        sqlite_select: "SELECT mailbox, uid, modseq FROM expunged ORDER BY mailbox, uid",
        pg_select: "SELECT mailbox, uid, modseq FROM expunged ORDER BY mailbox, uid",
        sqlite_insert: &[(
            "INSERT INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
            &[0, 1, 2],
        )],
        pg_insert: (
            "INSERT INTO expunged (mailbox, uid, modseq) VALUES ($1, $2, $3)",
            &[0, 1, 2],
        ),
        bodies: false,
    },
    Table {
        name: "pop3_uidls",
        kinds: &[Int, Int, Text],
        sqlite_select: "SELECT mailbox, uid, uidl FROM pop3_uidls ORDER BY mailbox, uid",
        pg_select: "SELECT mailbox, uid, uidl FROM pop3_uidls ORDER BY mailbox, uid",
        sqlite_insert: &[(
            "INSERT INTO pop3_uidls (mailbox, uid, uidl) VALUES (?1, ?2, ?3)",
            &[0, 1, 2],
        )],
        pg_insert: (
            "INSERT INTO pop3_uidls (mailbox, uid, uidl) VALUES ($1, $2, $3)",
            &[0, 1, 2],
        ),
        bodies: false,
    },
    Table {
        // An old SQLite row without a message id shows its queue id
        // (as the SQLite store does); PostgreSQL requires one. Leases
        // are not copied: no node holds one in a stopped store.
        name: "queue",
        kinds: &[
            Int, Text, Text, Int, Int, Int, Int, Bool, Bool, Text, Bool, Bool, Bool, Bytes,
        ],
        sqlite_select: "SELECT id, coalesce(msg_id, CAST(id AS TEXT)), sender, size, created, \
             next_attempt, attempts, held, warned, envid, ret_full, smtputf8, eight_bit, data \
             FROM queue ORDER BY id",
        pg_select: "SELECT id, msg_id, sender, size, created, next_attempt, attempts::bigint, \
             held, warned, envid, ret_full, smtputf8, eight_bit, data FROM queue ORDER BY id",
        sqlite_insert: &[(
            "INSERT INTO queue (id, msg_id, sender, size, created, next_attempt, attempts, held, \
             warned, envid, ret_full, smtputf8, eight_bit, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
        )],
        pg_insert: (
            "INSERT INTO queue (id, msg_id, sender, size, created, next_attempt, attempts, held, \
             warned, envid, ret_full, smtputf8, eight_bit, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::bigint, $8, $9, $10, $11, $12, $13, $14)",
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
        ),
        bodies: true,
    },
    Table {
        name: "queue_rcpts",
        kinds: &[
            Int, Int, Text, Text, Text, Text, Text, Text, Text, Int, Text, Text, Text,
        ],
        sqlite_select: "SELECT queue, idx, address, domain, orcpt, notify, status, last_reply, \
             remote_host, updated, next_hop, local_folder, local_flags \
             FROM queue_rcpts ORDER BY queue, idx",
        pg_select: "SELECT queue, idx::bigint, address, domain, orcpt, notify, status, last_reply, \
             remote_host, updated, next_hop, local_folder, local_flags \
             FROM queue_rcpts ORDER BY queue, idx",
        sqlite_insert: &[(
            "INSERT INTO queue_rcpts (queue, idx, address, domain, orcpt, notify, status, \
             last_reply, remote_host, updated, next_hop, local_folder, local_flags) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        )],
        pg_insert: (
            "INSERT INTO queue_rcpts (queue, idx, address, domain, orcpt, notify, status, \
             last_reply, remote_host, updated, next_hop, local_folder, local_flags) \
             VALUES ($1, $2::bigint, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        ),
        bodies: false,
    },
    Table {
        name: "sieve_scripts",
        kinds: &[Int, Text, Text, Bool, Int],
        sqlite_select: "SELECT account, name, script, active, updated FROM sieve_scripts \
             ORDER BY account, name",
        pg_select: "SELECT account, name, script, active, updated FROM sieve_scripts \
             ORDER BY account, name",
        sqlite_insert: &[(
            "INSERT INTO sieve_scripts (account, name, script, active, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            &[0, 1, 2, 3, 4],
        )],
        pg_insert: (
            "INSERT INTO sieve_scripts (account, name, script, active, updated) \
             VALUES ($1, $2, $3, $4, $5)",
            &[0, 1, 2, 3, 4],
        ),
        bodies: false,
    },
    Table {
        name: "sieve_memory",
        kinds: &[Int, Text, TextBytes, Int],
        sqlite_select: "SELECT account, kind, key, expires FROM sieve_memory \
             ORDER BY account, kind, key",
        pg_select: "SELECT account, kind, key, expires FROM sieve_memory \
             ORDER BY account, kind, key",
        sqlite_insert: &[(
            "INSERT INTO sieve_memory (account, kind, key, expires) VALUES (?1, ?2, ?3, ?4)",
            &[0, 1, 2, 3],
        )],
        pg_insert: (
            "INSERT INTO sieve_memory (account, kind, key, expires) VALUES ($1, $2, $3, $4)",
            &[0, 1, 2, 3],
        ),
        bodies: false,
    },
    Table {
        name: "plugin_kv",
        kinds: &[Text, Text, Bytes, Int],
        sqlite_select: "SELECT plugin, key, value, expires FROM plugin_kv ORDER BY plugin, key",
        pg_select: "SELECT plugin, key, value, expires FROM plugin_kv ORDER BY plugin, key",
        sqlite_insert: &[(
            "INSERT INTO plugin_kv (plugin, key, value, expires) VALUES (?1, ?2, ?3, ?4)",
            &[0, 1, 2, 3],
        )],
        pg_insert: (
            "INSERT INTO plugin_kv (plugin, key, value, expires) VALUES ($1, $2, $3, $4)",
            &[0, 1, 2, 3],
        ),
        bodies: false,
    },
    Table {
        name: "plugin_kv_usage",
        kinds: &[Text, Int],
        sqlite_select: "SELECT plugin, keys FROM plugin_kv_usage ORDER BY plugin",
        pg_select: "SELECT plugin, keys FROM plugin_kv_usage ORDER BY plugin",
        sqlite_insert: &[(
            "INSERT INTO plugin_kv_usage (plugin, keys) VALUES (?1, ?2)",
            &[0, 1],
        )],
        pg_insert: (
            "INSERT INTO plugin_kv_usage (plugin, keys) VALUES ($1, $2)",
            &[0, 1],
        ),
        bodies: false,
    },
    Table {
        name: "mta_sts_cache",
        kinds: &[Text, Text, Int, Text],
        sqlite_select: "SELECT domain, id, expires, policy FROM mta_sts_cache ORDER BY domain",
        pg_select: "SELECT domain, id, expires, policy FROM mta_sts_cache ORDER BY domain",
        sqlite_insert: &[(
            "INSERT INTO mta_sts_cache (domain, id, expires, policy) VALUES (?1, ?2, ?3, ?4)",
            &[0, 1, 2, 3],
        )],
        pg_insert: (
            "INSERT INTO mta_sts_cache (domain, id, expires, policy) VALUES ($1, $2, $3, $4)",
            &[0, 1, 2, 3],
        ),
        bodies: false,
    },
];

/// SQLite tables that are not copied as tables, and why.
pub const SQLITE_NOT_COPIED: &[(&str, &str)] = &[
    (
        "meta",
        "the schema version is the target's own; the last UIDVALIDITY is carried over (Counters)",
    ),
    (
        "blob_headers",
        "copied with blobs (PostgreSQL keeps the header block in the blob's row)",
    ),
    (
        "store_events",
        "notifications between the processes of one running node, read within seconds",
    ),
    (
        "sqlite_sequence",
        "SQLite's own; the last queue id is carried over (Counters)",
    ),
];

/// PostgreSQL tables that are not copied, and why.
pub const PG_NOT_COPIED: &[(&str, &str)] = &[
    ("schema_version", "the schema version is the target's own"),
    (
        "changes",
        "the change log tells running nodes of each other's changes; a stopped store has no \
         reader for it",
    ),
    (
        "login_failures",
        "failed-login counts last minutes; SQLite keeps them in each server's memory",
    ),
    (
        "login_trust",
        "failed-login state, short-lived; SQLite keeps it in each server's memory",
    ),
];

/// The counters that are not rows: the last UIDVALIDITY given out and the
/// last queue id used (both never reused).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    last_uid_validity: i64,
    last_queue_id: i64,
}

/// What the reader hands the writer.
enum Item {
    /// Rows of `TABLES[table]`.
    Rows(usize, Vec<Vec<V>>),
    /// `TABLES[table]` is complete.
    TableEnd(usize),
    /// The counters, after every table.
    Counters(Counters),
}

/// The SQLite database file of a data directory.
fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(crate::sqlite::DB_FILE)
}

/// Copies the store as `m` says; `progress` is told as rows go by.
pub async fn migrate(
    m: &Migration,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> StoreResult<Report> {
    match m.direction {
        Direction::ToPostgres => to_postgres(m, progress).await,
        Direction::FromPostgres => from_postgres(m, progress).await,
    }
}

/// The mailgate nodes connected to the database now (their change
/// listeners, named `mailgate-listener ...`): a migration refuses to run
/// while there are any.
async fn running_nodes(c: &tokio_postgres::Client) -> StoreResult<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name LIKE 'mailgate-listener%' AND pid <> pg_backend_pid()",
        &[],
    )
    .await?
    .get(0))
}

fn nodes_error(n: i64) -> StoreError {
    StoreError::Invalid(format!(
        "{n} mailgate node(s) are running on the PostgreSQL database (their change listeners \
         are connected): stop every node first"
    ))
}

/// A pool of one connection to the database, its schema brought up to
/// date, checked that no node runs on it.
async fn pg_connect(pg: &PgConfig) -> StoreResult<deadpool_postgres::Object> {
    let client_config = pg.client_config()?;
    let connector = pg.tls.connector()?;
    let pool = pg.pool(&client_config, &connector, 1)?;
    let mut client = pool.get().await.map_err(|e| pg.connect_error(e))?;
    {
        let c: &mut tokio_postgres::Client = &mut client;
        crate::postgres::schema::migrate(c).await?;
        let n = running_nodes(c).await?;
        if n > 0 {
            return Err(nodes_error(n));
        }
    }
    Ok(client)
}

// ---- values -------------------------------------------------------------

fn corrupt(table: &str, col: usize, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}, column {}: {why}", col + 1))
}

/// Column `i` of a SQLite row as `kind`.
fn from_sqlite(table: &str, i: usize, kind: Kind, v: SqlValue) -> StoreResult<V> {
    Ok(match (kind, v) {
        (_, SqlValue::Null) => V::Null,
        (Int, SqlValue::Integer(n)) => V::I(n),
        (Bool, SqlValue::Integer(n)) => V::Bool(n != 0),
        (Text, SqlValue::Text(s)) => V::T(s),
        (Bytes | TextBytes, SqlValue::Blob(b)) => V::B(b),
        (Bytes | TextBytes, SqlValue::Text(s)) => V::B(s.into_bytes()),
        (Flags, SqlValue::Text(s)) => V::L(s.split_whitespace().map(str::to_string).collect()),
        (JsonList, SqlValue::Text(s)) => V::L(
            serde_json::from_str(&s)
                .map_err(|e| corrupt(table, i, format!("not a JSON list: {e}")))?,
        ),
        (k, other) => {
            return Err(corrupt(
                table,
                i,
                format!("{:?} where {k:?} was expected", other.data_type()),
            ))
        }
    })
}

/// A value as a SQLite parameter.
fn to_sqlite(table: &str, i: usize, kind: Kind, v: &V) -> StoreResult<SqlValue> {
    Ok(match (kind, v) {
        (_, V::Null) => SqlValue::Null,
        (_, V::I(n)) => SqlValue::Integer(*n),
        (_, V::Bool(b)) => SqlValue::Integer(i64::from(*b)),
        (_, V::T(s)) => SqlValue::Text(s.clone()),
        (TextBytes, V::B(b)) => SqlValue::Text(
            String::from_utf8(b.clone())
                .map_err(|_| corrupt(table, i, "a key that is not UTF-8"))?,
        ),
        (_, V::B(b)) => SqlValue::Blob(b.clone()),
        (JsonList, V::L(l)) => {
            SqlValue::Text(serde_json::to_string(l).map_err(|e| corrupt(table, i, e))?)
        }
        (_, V::L(l)) => SqlValue::Text(l.join(" ")),
    })
}

/// Column `i` of a PostgreSQL row as `kind`.
fn from_pg(table: &str, row: &tokio_postgres::Row, i: usize, kind: Kind) -> StoreResult<V> {
    let e = |e: tokio_postgres::Error| corrupt(table, i, e);
    Ok(match kind {
        Int => row
            .try_get::<_, Option<i64>>(i)
            .map_err(e)?
            .map_or(V::Null, V::I),
        Bool => row
            .try_get::<_, Option<bool>>(i)
            .map_err(e)?
            .map_or(V::Null, V::Bool),
        Text => row
            .try_get::<_, Option<String>>(i)
            .map_err(e)?
            .map_or(V::Null, V::T),
        Bytes | TextBytes => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(e)?
            .map_or(V::Null, V::B),
        Flags | JsonList => row
            .try_get::<_, Option<Vec<String>>>(i)
            .map_err(e)?
            .map_or(V::Null, V::L),
    })
}

/// A value as a PostgreSQL parameter of `kind`.
fn to_pg(kind: Kind, v: &V) -> Box<dyn ToSql + Sync + Send> {
    match (kind, v) {
        (Int, V::I(n)) => Box::new(*n),
        (Int, _) => Box::new(None::<i64>),
        (Bool, V::Bool(b)) => Box::new(*b),
        (Bool, _) => Box::new(None::<bool>),
        (Text, V::T(s)) => Box::new(s.clone()),
        (Text, _) => Box::new(None::<String>),
        (Bytes | TextBytes, V::B(b)) => Box::new(b.clone()),
        (Bytes | TextBytes, V::T(s)) => Box::new(s.clone().into_bytes()),
        (Bytes | TextBytes, _) => Box::new(None::<Vec<u8>>),
        (Flags | JsonList, V::L(l)) => Box::new(l.clone()),
        (Flags | JsonList, _) => Box::new(None::<Vec<String>>),
    }
}

/// Fills in what one side has and the other derives: the header block of
/// a body whose SQLite row has none.
fn complete(table: &Table, row: &mut [V]) {
    if table.name == "blobs" {
        if let (V::B(data), V::Null) = (&row[3], &row[4]) {
            let header = data[..crate::structure::header_block_len(data)].to_vec();
            row[4] = V::B(header);
        }
    }
}

/// Batches rows: full at [`BATCH_ROWS`] rows or [`BATCH_BYTES`].
struct Batcher {
    rows: Vec<Vec<V>>,
    bytes: usize,
}

impl Batcher {
    fn new() -> Batcher {
        Batcher {
            rows: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a row; returns the batch when it is full.
    fn push(&mut self, row: Vec<V>) -> Option<Vec<Vec<V>>> {
        self.bytes += row.iter().map(V::bytes).sum::<usize>();
        self.rows.push(row);
        if self.rows.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.bytes = 0;
            Some(std::mem::take(&mut self.rows))
        } else {
            None
        }
    }

    fn rest(&mut self) -> Option<Vec<Vec<V>>> {
        self.bytes = 0;
        (!self.rows.is_empty()).then(|| std::mem::take(&mut self.rows))
    }
}

// ---- SQLite → PostgreSQL --------------------------------------------------

/// Reads the SQLite store (one read transaction) and sends its rows.
fn read_sqlite(path: &Path, tx: &mpsc::Sender<StoreResult<Item>>) -> StoreResult<()> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("BEGIN")?;
    let send = |item: Item| tx.blocking_send(Ok(item)).map_err(|_| StoreError::Closed);
    for (t, table) in TABLES.iter().enumerate() {
        let mut st = conn.prepare(table.sqlite_select)?;
        let mut rows = st.query([])?;
        let mut batch = Batcher::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(table.kinds.len());
            for (i, kind) in table.kinds.iter().enumerate() {
                row.push(from_sqlite(table.name, i, *kind, r.get::<_, SqlValue>(i)?)?);
            }
            complete(table, &mut row);
            if let Some(b) = batch.push(row) {
                send(Item::Rows(t, b))?;
            }
        }
        if let Some(b) = batch.rest() {
            send(Item::Rows(t, b))?;
        }
        send(Item::TableEnd(t))?;
    }
    let last_uid_validity: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_uid_validity'), 0), \
                coalesce((SELECT max(uid_validity) FROM mailboxes), 0))",
        [],
        |r| r.get(0),
    )?;
    let last_queue_id: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0), \
                coalesce((SELECT max(id) FROM queue), 0))",
        [],
        |r| r.get(0),
    )?;
    send(Item::Counters(Counters {
        last_uid_validity,
        last_queue_id,
    }))?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// Row counts of every table of the SQLite file (its source counts).
fn sqlite_counts(conn: &Connection) -> StoreResult<Vec<u64>> {
    TABLES
        .iter()
        .map(|t| {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| {
                r.get(0)
            })?;
            Ok(n.max(0) as u64)
        })
        .collect()
}

async fn to_postgres(
    m: &Migration,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> StoreResult<Report> {
    let path = db_path(&m.data_dir);
    if !path.is_file() {
        return Err(StoreError::NotFound(format!(
            "the SQLite store {}",
            path.display()
        )));
    }
    // Brings an older store's schema up to date (as a server start would).
    drop(crate::SqliteStore::open(&m.data_dir)?);
    let source_counts = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            let c = Connection::open_with_flags(&p, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            sqlite_counts(&c)
        })
        .await
        .map_err(|_| StoreError::Closed)??
    };
    let total: u64 = source_counts.iter().sum();

    let mut client = pg_connect(&m.pg).await?;
    let tx = client.transaction().await?;
    // Nothing in the target unless told.
    let mut holding = Vec::new();
    for t in TABLES {
        let any: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", t.name), &[])
            .await?
            .get(0);
        if any {
            holding.push(t.name);
        }
    }
    if !holding.is_empty() {
        if !m.force {
            return Err(StoreError::Invalid(format!(
                "the PostgreSQL database is not empty ({} hold rows): use --force to replace \
                 its contents",
                holding.join(", ")
            )));
        }
        let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        tx.batch_execute(&format!(
            "TRUNCATE {}, changes RESTART IDENTITY CASCADE",
            names.join(", ")
        ))
        .await?;
    }
    tx.batch_execute(
        "CREATE TEMP TABLE migrate_blob_map (src bigint PRIMARY KEY, dst bigint NOT NULL) \
         ON COMMIT DROP",
    )
    .await?;

    let (sender, mut items) = mpsc::channel::<StoreResult<Item>>(1);
    let reader = {
        let path = path.clone();
        std::thread::Builder::new()
            .name("migrate-read".into())
            .spawn(move || {
                if let Err(e) = read_sqlite(&path, &sender) {
                    let _ = sender.blocking_send(Err(e));
                }
            })
            .map_err(StoreError::Io)?
    };
    let mut statements = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        statements.push(tx.prepare(t.pg_insert.0).await?);
    }
    let mut done = 0u64;
    let mut counters = None;
    let mut table_rows = vec![0u64; TABLES.len()];
    let result: StoreResult<()> = async {
        while let Some(item) = items.recv().await {
            match item? {
                Item::Rows(t, rows) => {
                    let table = &TABLES[t];
                    let cols = table.pg_insert.1;
                    for row in &rows {
                        let params: Vec<Box<dyn ToSql + Sync + Send>> = cols
                            .iter()
                            .map(|&i| to_pg(table.kinds[i], &row[i]))
                            .collect();
                        let refs: Vec<&(dyn ToSql + Sync)> = params
                            .iter()
                            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                            .collect();
                        tx.execute(&statements[t], &refs).await?;
                    }
                    done += rows.len() as u64;
                    table_rows[t] += rows.len() as u64;
                    progress(Progress::Rows {
                        table: table.name,
                        done,
                        total,
                    });
                }
                Item::TableEnd(t) => progress(Progress::Table {
                    table: TABLES[t].name,
                    rows: table_rows[t],
                }),
                Item::Counters(c) => counters = Some(c),
            }
        }
        Ok(())
    }
    .await;
    drop(items);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    result?;
    let counters = counters
        .ok_or_else(|| StoreError::Corrupt("the SQLite reader stopped before the end".into()))?;

    // Sequences: past every id copied, and past the counters.
    for (table, column) in [("accounts", "id"), ("mailboxes", "id"), ("blobs", "id")] {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), max({column})) \
                 FROM {table} HAVING max({column}) IS NOT NULL"
            ),
            &[],
        )
        .await?;
    }
    if counters.last_queue_id > 0 {
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('queue', 'id'), \
             greatest($1::bigint, coalesce((SELECT max(id) FROM queue), 0)))",
            &[&counters.last_queue_id],
        )
        .await?;
    }
    if counters.last_uid_validity > 0 {
        tx.execute(
            "SELECT setval('uid_validity_seq', least($1::bigint, 4294967295))",
            &[&counters.last_uid_validity],
        )
        .await?;
    }

    // The same counts, and `store check`, before anything is committed.
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    for (t, source) in TABLES.iter().zip(&source_counts) {
        let target: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
            .await?
            .get(0);
        let target = target.max(0) as u64;
        // Equal bodies are kept once in PostgreSQL.
        let ok = if t.name == "blobs" {
            target <= *source
        } else {
            target == *source
        };
        if !ok {
            problems.push(format!(
                "{}: {} rows in the SQLite store but {} copied",
                t.name, source, target
            ));
        }
        tables.push(TableCount {
            table: t.name,
            source: *source,
            target,
        });
    }
    problems.extend(crate::postgres::check::run(&tx).await?);
    let committed = problems.is_empty();
    if committed {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(Report {
        tables,
        problems,
        committed,
        set_aside: None,
    })
}

// ---- PostgreSQL → SQLite --------------------------------------------------

/// Writes the rows it receives into the new SQLite file at `path` (one
/// transaction), then compares counts and runs `store check`; returns
/// the counts and the problems, committed only if there are none.
fn write_sqlite(
    path: &Path,
    source_counts: &[u64],
    items: &mut mpsc::Receiver<StoreResult<Item>>,
) -> StoreResult<(Vec<TableCount>, Vec<String>)> {
    let conn = Connection::open(path)?;
    // The file is renamed into place only after the check: no journal is
    // needed while it is written (a crash leaves a file that is removed
    // at the next run).
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    crate::sqlite::schema::migrate(&conn)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch("BEGIN")?;
    let mut counters = None;
    while let Some(item) = items.blocking_recv() {
        match item? {
            Item::Rows(t, rows) => {
                let table = &TABLES[t];
                for (sql, cols) in table.sqlite_insert {
                    let mut st = conn.prepare_cached(sql)?;
                    for row in &rows {
                        let params = cols
                            .iter()
                            .map(|&i| to_sqlite(table.name, i, table.kinds[i], &row[i]))
                            .collect::<StoreResult<Vec<_>>>()?;
                        st.execute(rusqlite::params_from_iter(params))?;
                    }
                }
            }
            Item::TableEnd(_) => {}
            Item::Counters(c) => counters = Some(c),
        }
    }
    let counters =
        counters.ok_or_else(|| StoreError::Corrupt("the reader stopped before the end".into()))?;
    if counters.last_uid_validity > 0 {
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_uid_validity', ?1)",
            [counters.last_uid_validity.to_string()],
        )?;
    }
    if counters.last_queue_id > 0 {
        let n = conn.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'queue'",
            [counters.last_queue_id],
        )?;
        if n == 0 {
            conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('queue', ?1)",
                [counters.last_queue_id],
            )?;
        }
    }
    let target_counts = sqlite_counts(&conn)?;
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    for ((t, source), target) in TABLES.iter().zip(source_counts).zip(&target_counts) {
        if source != target {
            problems.push(format!(
                "{}: {} rows in PostgreSQL but {} copied",
                t.name, source, target
            ));
        }
        tables.push(TableCount {
            table: t.name,
            source: *source,
            target: *target,
        });
    }
    problems.extend(crate::sqlite::check_connection(&conn)?);
    if problems.is_empty() {
        conn.execute_batch("COMMIT")?;
        // The store runs in WAL mode; the file is made durable before it
        // is renamed into place.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        drop(conn);
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(StoreError::Io)?;
    }
    // With problems nothing is committed: the caller removes the file
    // (written without a journal, it is not rolled back).
    Ok((tables, problems))
}

/// Whether the SQLite store at `path` holds any row of [`TABLES`].
fn sqlite_holding(path: &Path) -> StoreResult<Vec<&'static str>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let counts = sqlite_counts(&conn)?;
    Ok(TABLES
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(t, _)| t.name)
        .collect())
}

/// Removes a file and SQLite's companions of it (`-wal`, `-shm`,
/// `-journal`), those that exist.
fn remove_db_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn from_postgres(
    m: &Migration,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> StoreResult<Report> {
    crate::sqlite::create_private_dir(&m.data_dir).map_err(StoreError::Io)?;
    let path = db_path(&m.data_dir);
    let existing = if path.is_file() {
        // Brings an older store's schema up to date, so that its tables
        // can be counted.
        drop(crate::SqliteStore::open(&m.data_dir)?);
        let p = path.clone();
        let holding = tokio::task::spawn_blocking(move || sqlite_holding(&p))
            .await
            .map_err(|_| StoreError::Closed)??;
        if !holding.is_empty() && !m.force {
            return Err(StoreError::Invalid(format!(
                "the SQLite store {} is not empty ({} hold rows): use --force to replace it \
                 (it is moved to {}/pre-migrate-<time>/, not deleted)",
                path.display(),
                holding.join(", "),
                m.data_dir.display()
            )));
        }
        Some(!holding.is_empty())
    } else {
        None
    };

    let mut client = pg_connect(&m.pg).await?;
    let tx = client.transaction().await?;
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let mut source_counts = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
            .await?
            .get(0);
        source_counts.push(n.max(0) as u64);
    }
    let total: u64 = source_counts.iter().sum();

    let temp = m
        .data_dir
        .join(format!("{}.migrating", crate::sqlite::DB_FILE));
    remove_db_files(&temp).map_err(StoreError::Io)?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(StoreError::Io)?;
    }
    let (sender, mut items) = mpsc::channel::<StoreResult<Item>>(1);
    let writer = {
        let temp = temp.clone();
        let counts = source_counts.clone();
        std::thread::Builder::new()
            .name("migrate-write".into())
            .spawn(move || write_sqlite(&temp, &counts, &mut items))
            .map_err(StoreError::Io)?
    };
    let read: StoreResult<()> = async {
        let mut done = 0u64;
        for (t, table) in TABLES.iter().enumerate() {
            let st = tx.prepare(table.pg_select).await?;
            let portal = tx.bind(&st, &[]).await?;
            let fetch = if table.bodies { 1 } else { FETCH_ROWS };
            let mut batch = Batcher::new();
            let mut rows_of_table = 0u64;
            loop {
                let rows = tx.query_portal(&portal, fetch).await?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    let row = table
                        .kinds
                        .iter()
                        .enumerate()
                        .map(|(i, k)| from_pg(table.name, r, i, *k))
                        .collect::<StoreResult<Vec<V>>>()?;
                    if let Some(b) = batch.push(row) {
                        let n = b.len() as u64;
                        sender
                            .send(Ok(Item::Rows(t, b)))
                            .await
                            .map_err(|_| StoreError::Closed)?;
                        done += n;
                        rows_of_table += n;
                        progress(Progress::Rows {
                            table: table.name,
                            done,
                            total,
                        });
                    }
                }
            }
            if let Some(b) = batch.rest() {
                let n = b.len() as u64;
                sender
                    .send(Ok(Item::Rows(t, b)))
                    .await
                    .map_err(|_| StoreError::Closed)?;
                done += n;
                rows_of_table += n;
                progress(Progress::Rows {
                    table: table.name,
                    done,
                    total,
                });
            }
            sender
                .send(Ok(Item::TableEnd(t)))
                .await
                .map_err(|_| StoreError::Closed)?;
            progress(Progress::Table {
                table: table.name,
                rows: rows_of_table,
            });
        }
        let row = tx
            .query_one(
                "SELECT greatest(
                     (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM uid_validity_seq),
                     coalesce((SELECT max(uid_validity) FROM mailboxes), 0)),
                   greatest(
                     coalesce((SELECT max(id) FROM queue), 0),
                     (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM queue_id_seq))",
                &[],
            )
            .await?;
        sender
            .send(Ok(Item::Counters(Counters {
                last_uid_validity: row.get(0),
                last_queue_id: row.get(1),
            })))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(())
    }
    .await;
    if let Err(e) = &read {
        let _ = sender.send(Err(StoreError::Invalid(e.to_string()))).await;
    }
    drop(sender);
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| StoreError::Closed)?
        .map_err(|_| StoreError::Closed)?;
    let _ = tx.rollback().await;
    let (tables, problems) = match (read, written) {
        // The writer's error first: the reader only saw it go away.
        (Err(StoreError::Closed), Err(e)) | (Err(e), _) | (Ok(()), Err(e)) => {
            let _ = remove_db_files(&temp);
            return Err(e);
        }
        (Ok(()), Ok(w)) => w,
    };
    if !problems.is_empty() {
        let _ = remove_db_files(&temp);
        return Ok(Report {
            tables,
            problems,
            committed: false,
            set_aside: None,
        });
    }
    // Into place: a store with data is moved aside, an empty one removed.
    let mut set_aside = None;
    match existing {
        Some(true) => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let aside = m.data_dir.join(format!("pre-migrate-{stamp}"));
            crate::sqlite::create_private_dir(&aside).map_err(StoreError::Io)?;
            for suffix in ["", "-wal", "-shm"] {
                let name = format!("{}{suffix}", crate::sqlite::DB_FILE);
                let from = m.data_dir.join(&name);
                if from.exists() {
                    std::fs::rename(&from, aside.join(&name)).map_err(StoreError::Io)?;
                }
            }
            set_aside = Some(aside);
        }
        Some(false) => remove_db_files(&path).map_err(StoreError::Io)?,
        None => {}
    }
    std::fs::rename(&temp, &path).map_err(StoreError::Io)?;
    std::fs::File::open(&m.data_dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::Io)?;
    Ok(Report {
        tables,
        problems,
        committed: true,
        set_aside,
    })
}

/// The names of the tables of a new SQLite store (for the test that
/// every table is accounted for).
pub fn sqlite_tables(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut st =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// Whether `table` of either backend is accounted for: copied, or listed
/// with the reason it is not.
pub fn accounted_for(table: &str) -> bool {
    TABLES.iter().any(|t| t.name == table)
        || SQLITE_NOT_COPIED.iter().any(|(n, _)| *n == table)
        || PG_NOT_COPIED.iter().any(|(n, _)| *n == table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table of a new SQLite store is copied or listed as not
    /// copied: a table added to the schema without a thought for `store
    /// migrate` fails here.
    #[test]
    fn every_sqlite_table_is_accounted_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(dir.path()).unwrap();
        let conn = Connection::open(store.path()).unwrap();
        let tables = sqlite_tables(&conn).unwrap();
        for t in &tables {
            assert!(
                TABLES.iter().any(|c| c.name == t) || SQLITE_NOT_COPIED.iter().any(|(n, _)| n == t),
                "SQLite table {t} is neither in migrate::TABLES nor in SQLITE_NOT_COPIED"
            );
        }
        for c in TABLES {
            assert!(
                tables.iter().any(|t| t == c.name),
                "migrate::TABLES names {}, which the SQLite store does not have",
                c.name
            );
            assert!(c.kinds.len() >= c.pg_insert.1.len());
            for (_, cols) in c.sqlite_insert {
                assert!(cols.iter().all(|&i| i < c.kinds.len()), "{}", c.name);
            }
            assert!(
                c.pg_insert.1.iter().all(|&i| i < c.kinds.len()),
                "{}",
                c.name
            );
        }
        // The selects run on a real store and return the declared columns.
        for c in TABLES {
            let st = conn.prepare(c.sqlite_select).unwrap();
            assert_eq!(st.column_count(), c.kinds.len(), "{}", c.name);
        }
    }

    #[test]
    fn values_cross_over() {
        use Kind::{Flags, Int, JsonList, TextBytes};
        // Flags and alias targets change form; a NUL in a key survives.
        let flags =
            from_sqlite("messages", 3, Flags, SqlValue::Text("\\Seen $Junk".into())).unwrap();
        assert!(matches!(&flags, V::L(l) if l == &["\\Seen", "$Junk"]));
        assert_eq!(
            to_sqlite("messages", 3, Flags, &flags).unwrap(),
            SqlValue::Text("\\Seen $Junk".into())
        );
        let empty = from_sqlite("messages", 3, Flags, SqlValue::Text(String::new())).unwrap();
        assert!(matches!(&empty, V::L(l) if l.is_empty()));
        let targets = from_sqlite(
            "aliases",
            1,
            JsonList,
            SqlValue::Text("[\"a@x\",\"b@x\"]".into()),
        )
        .unwrap();
        assert_eq!(
            to_sqlite("aliases", 1, JsonList, &targets).unwrap(),
            SqlValue::Text("[\"a@x\",\"b@x\"]".into())
        );
        let key = from_sqlite(
            "sieve_memory",
            2,
            TextBytes,
            SqlValue::Text("a@x\0h".into()),
        )
        .unwrap();
        assert!(matches!(&key, V::B(b) if b == b"a@x\0h"));
        assert_eq!(
            to_sqlite("sieve_memory", 2, TextBytes, &key).unwrap(),
            SqlValue::Text("a@x\0h".into())
        );
        assert!(from_sqlite("accounts", 0, Int, SqlValue::Text("x".into())).is_err());
        assert!(from_sqlite("aliases", 1, JsonList, SqlValue::Text("{".into())).is_err());
    }

    #[test]
    fn batches_are_bounded() {
        let mut b = Batcher::new();
        let mut full = 0;
        for _ in 0..BATCH_ROWS * 2 {
            if b.push(vec![V::I(1)]).is_some() {
                full += 1;
            }
        }
        assert_eq!(full, 2);
        assert!(b.rest().is_none());
        // A big body closes the batch at once.
        let big = b.push(vec![V::B(vec![0; BATCH_BYTES])]).unwrap();
        assert_eq!(big.len(), 1);
    }
}
