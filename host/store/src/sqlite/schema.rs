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

use rusqlite::Connection;

use crate::StoreResult;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = r#"
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

/// Creates the tables of a new store, or checks the version of an old one.
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
        Some(_) => {}
    }
    Ok(())
}
