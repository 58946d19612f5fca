//! The tables of the embedded store and their migrations.
//!
//! - `meta(key, value)`: `schema_version`, `last_uid_validity`.
//! - `domains(name, catch_all)`: local domains added from the CLI.
//! - `accounts(id, address, password_hash, quota_bytes, created)`.
//! - `aliases(alias, targets)`: targets as a JSON array.
//! - `mailboxes(id, account, name, special_use, subscribed, uid_validity,
//!   uid_next, highest_modseq)`: one row per mailbox, unique per account.
//! - `blobs(id, size, structure, data)`: one row per stored message body;
//!   `structure` is the JSON of [`crate::MessageStructure`].
//! - `messages(mailbox, uid, blob, flags, internal_date, size, modseq)`:
//!   one row per message in a mailbox; `flags` space-separated and sorted.
//! - `expunged(mailbox, uid, modseq)`: what was removed and when, for
//!   IMAP QRESYNC (RFC 7162 VANISHED).
//! - Version 2 adds the outbound queue (see [`crate::queue`]):
//!   `queue(id, sender, created, next_attempt, attempts, held, warned,
//!   envid, ret_full, smtputf8, eight_bit, size, data)`, one row per queued
//!   message with its body; `queue_rcpts(queue, idx, address, domain,
//!   orcpt, notify, status, last_reply, remote_host, updated)`, one row per
//!   recipient, removed with its message.
//! - `subscriptions(account, name)`: the IMAP subscriptions, names that
//!   may outlive their mailbox (created on open where missing, filled from
//!   `mailboxes.subscribed`, which is still kept in step).
//! - `blob_headers(blob, header)`: the header block of each body (up to
//!   the first empty line) for IMAP header searches, written with the
//!   body (created on open where missing; bodies stored before, or by an
//!   older version, have no row and are searched by reading them whole).
//! - `pop3_uidls(mailbox, uid, uidl)`: POP3 UIDLs kept from another
//!   server by `mailgate import` (see `import`); created on open where
//!   missing.
//! - `store_events(seq, origin, created, kind, account, mailbox, uids)`:
//!   change notifications left for other processes ([`super::notify`]);
//!   created on open where missing.
//! - Version 3 adds `queue_rcpts.next_hop`: the next hop a routing plugin
//!   chose for the recipient (`NULL`: MX routing). Older stores gain the
//!   column empty, so their queued mail keeps MX routing.
//! - `queue_rcpts.local_folder`, `local_flags` (added on open where
//!   missing, no version): where a local copy kept in the queue because
//!   its account was over quota goes when it is redelivered (the folder
//!   and flags the plugins chose); `NULL`: INBOX.
//! - `sieve_scripts(account, name, script, active, updated)`: users'
//!   Sieve scripts, at most one active per account (see `sieve`);
//!   created on open where missing.
//! - `plugin_kv(plugin, key, value, expires)`, `plugin_kv_usage(plugin,
//!   keys)` and `mta_sts_cache(domain, id, expires, policy)`: the
//!   plugins' key-value data and the MTA-STS policy cache (see `kv`);
//!   created on open where missing.

use rusqlite::Connection;

use crate::StoreResult;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 3;

pub(crate) const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, catch_all TEXT);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    quota_bytes INTEGER,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, targets TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY,
    account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 1,
    uid_validity INTEGER NOT NULL,
    uid_next INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account, name)
);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    structure TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    mailbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    blob INTEGER NOT NULL REFERENCES blobs(id),
    flags TEXT NOT NULL DEFAULT '',
    internal_date INTEGER NOT NULL,
    size INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_blob ON messages(blob);
CREATE TABLE IF NOT EXISTS expunged (
    mailbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
"#;

/// Version 2: the outbound queue. `next_attempt` is indexed because the
/// runner asks "what is due now" on every wake-up. `AUTOINCREMENT` because
/// a queue id must never be reused: a bounce taking the id of the message
/// it reports on could be deleted by a late `queue delete` of the original.
pub(crate) const SCHEMA_V2: &str = r#"
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    created INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    warned INTEGER NOT NULL DEFAULT 0,
    envid TEXT,
    ret_full INTEGER,
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    eight_bit INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_next_attempt ON queue(next_attempt);
CREATE TABLE IF NOT EXISTS queue_rcpts (
    queue INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    domain TEXT NOT NULL,
    orcpt TEXT,
    notify TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    last_reply TEXT,
    remote_host TEXT,
    updated INTEGER,
    PRIMARY KEY (queue, idx)
) WITHOUT ROWID;
"#;

/// Creates the tables of a new store, or checks the version of an old one
/// and brings it up to [`SCHEMA_VERSION`] (version 1 stores get the queue
/// tables).
pub fn migrate(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(SCHEMA_V1)?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    match version.and_then(|v| v.parse::<i64>().ok()) {
        None => {
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(crate::StoreError::Corrupt(format!(
                "the store has schema version {v}, newer than this mailgate ({SCHEMA_VERSION}); upgrade mailgate"
            )));
        }
        Some(v) if v < SCHEMA_VERSION => {
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(_) => {}
    }
    // Version 2's tables, for new and migrated stores alike; `IF NOT
    // EXISTS` makes this idempotent, so a crash between creating them and
    // stamping the version is harmless.
    conn.execute_batch(SCHEMA_V2)?;
    // Version 3's column, added only where missing (idempotent likewise).
    if !has_column(conn, "queue_rcpts", "next_hop")? {
        conn.execute_batch("ALTER TABLE queue_rcpts ADD COLUMN next_hop TEXT")?;
    }
    // The folder and flags of a local copy kept in the queue (over
    // quota); additive and idempotent, no version: an older version
    // ignores them and delivers such a copy into INBOX.
    if !has_column(conn, "queue_rcpts", "local_folder")? {
        conn.execute_batch(
            "ALTER TABLE queue_rcpts ADD COLUMN local_folder TEXT; \
             ALTER TABLE queue_rcpts ADD COLUMN local_flags TEXT;",
        )?;
    }
    // Each queued message's message id (`msg=` in the log, the id of the
    // `250`); additive and idempotent, no version (older versions ignore
    // the column; their rows have none and show their queue id).
    if !has_column(conn, "queue", "msg_id")? {
        conn.execute_batch("ALTER TABLE queue ADD COLUMN msg_id TEXT")?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS queue_msg_id ON queue(msg_id)")?;
    // IMAP subscriptions apart from mailboxes; idempotent, no version.
    super::imap::migrate_subscriptions(conn)?;
    // Header blocks for header searches; additive and idempotent, no
    // version (older versions ignore the table; bodies they store have no
    // row, and searches then read the whole body).
    conn.execute_batch(BLOB_HEADERS)?;
    // Imported POP3 UIDLs and other processes' change notifications;
    // additive and idempotent likewise.
    conn.execute_batch(super::import::POP3_UIDLS)?;
    conn.execute_batch(super::notify::STORE_EVENTS)?;
    // MODSEQ indexes for IMAP's shared mailbox views; idempotent likewise.
    conn.execute_batch(super::imap::CHANGE_INDEXES)?;
    // Each account's last login (`user show`); additive likewise.
    conn.execute_batch(super::logins::LAST_LOGINS)?;
    // Users' Sieve scripts (ManageSieve, `mailgate sieve`); additive
    // likewise.
    conn.execute_batch(super::sieve::SIEVE_SCRIPTS)?;
    // What Sieve delivery remembers (vacation, duplicate, failure
    // reports); additive likewise.
    conn.execute_batch(super::sieve_memory::SIEVE_MEMORY)?;
    // The plugins' key-value data and the MTA-STS policy cache (once
    // files in the data directory); additive likewise.
    conn.execute_batch(super::kv::KV_TABLES)?;
    Ok(())
}

/// `blob_headers(blob, header)`: the header block of a stored body (see
/// [`crate::structure::header_block_len`]), kept apart from `blobs` so
/// that header searches read a small row instead of the body's overflow
/// pages. Removed with its body (`ON DELETE CASCADE`).
pub(crate) const BLOB_HEADERS: &str = r#"
CREATE TABLE IF NOT EXISTS blob_headers (
    blob INTEGER PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
    header BLOB NOT NULL
);
"#;

fn has_column(conn: &Connection, table: &str, column: &str) -> StoreResult<bool> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names.iter().any(|n| n == column))
}
