//! The tables of the PostgreSQL store and their versioned migrations.
//!
//! [`MIGRATIONS`] is an ordered list of `(version, sql)`. [`migrate`]
//! applies, in ONE transaction, every entry whose version is above the
//! highest one recorded in `schema_version`, after taking a
//! transaction-scoped advisory lock ([`MIGRATION_LOCK`]): when several
//! nodes start at once, the first one migrates and the others wait for
//! its commit, then find nothing left to do. A failed migration rolls
//! back whole; nothing is half applied.
//!
//! A database whose highest version is above the last entry here was
//! migrated by a newer mailgate: [`migrate`] refuses it
//! ([`StoreError::Corrupt`]) rather than run on a schema it does not
//! know.
//!
//! Add a migration by appending `(next version, sql)`; never edit an
//! entry that has been released.
//!
//! # Tables (version 1)
//! - `domains(name, catch_all)`, `accounts(id, address, password_hash,
//!   quota_bytes, created)`, `aliases(alias, targets text[])`,
//!   `last_logins(account, at, client)`: the directory.
//! - `uid_validity_seq`: a sequence; a new mailbox's UIDVALIDITY is the
//!   larger of the clock and the sequence's next value, so that it is
//!   unique across nodes and never reused (see `mailstore`).
//! - `mailboxes(id, account, name, special_use, uid_validity, uid_next,
//!   highest_modseq)`: UIDs and MODSEQs are taken from the mailbox row in
//!   the transaction of the change (`UPDATE … RETURNING`), so allocation
//!   is atomic across nodes and MODSEQ strictly increases per mailbox.
//! - `subscriptions(account, name)`: IMAP subscriptions (may outlive the
//!   mailbox).
//! - `blobs(id, hash, size, structure, header, data)`: one row per
//!   distinct body, content-addressed by `hash` (SHA-256 of the bytes);
//!   `id` is what [`crate::MessageMeta::blob`] reports.
//! - `messages(mailbox, uid, blob, flags text[], internal_date, size,
//!   modseq)`: one row per entry; `flags` sorted, no duplicates.
//! - `expunged(mailbox, uid, modseq)`: for QRESYNC's VANISHED.
//! - `pop3_uidls(mailbox, uid, uidl)`: UIDLs kept by `mailgate import`.
//! - `changes(seq, xid, origin, account, mailbox, modseq, kind, uids,
//!   created)`: the change log, written in the transaction of every
//!   change and read by the listener of every node (see `notify`).

use tokio_postgres::Client;

use crate::{StoreError, StoreResult};

/// The key of the advisory lock held while migrating (any constant
/// shared by every mailgate node; "mailgate" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x6d61_696c_6761_7465;

/// Version 1: the directory, mailboxes, messages, blobs and change log.
const V1: &str = r#"
CREATE TABLE domains (name text PRIMARY KEY, catch_all text);
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    address text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    quota_bytes bigint,
    created bigint NOT NULL
);
CREATE TABLE aliases (alias text PRIMARY KEY, targets text[] NOT NULL);
CREATE TABLE last_logins (
    account bigint PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    at bigint NOT NULL,
    client text NOT NULL
);
CREATE SEQUENCE uid_validity_seq MINVALUE 1 MAXVALUE 4294967295;
CREATE TABLE mailboxes (
    id bigserial PRIMARY KEY,
    account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name text NOT NULL,
    special_use text,
    uid_validity bigint NOT NULL,
    uid_next bigint NOT NULL DEFAULT 1,
    highest_modseq bigint NOT NULL DEFAULT 1,
    UNIQUE (account, name)
);
CREATE TABLE subscriptions (
    account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name text NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE TABLE blobs (
    id bigserial PRIMARY KEY,
    hash bytea NOT NULL UNIQUE,
    size bigint NOT NULL,
    structure text NOT NULL,
    header bytea NOT NULL,
    data bytea NOT NULL
);
CREATE TABLE messages (
    mailbox bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid bigint NOT NULL,
    blob bigint NOT NULL REFERENCES blobs(id),
    flags text[] NOT NULL DEFAULT '{}',
    internal_date bigint NOT NULL,
    size bigint NOT NULL,
    modseq bigint NOT NULL,
    PRIMARY KEY (mailbox, uid)
);
CREATE INDEX messages_blob ON messages(blob);
CREATE INDEX messages_modseq ON messages(mailbox, modseq);
CREATE TABLE expunged (
    mailbox bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid bigint NOT NULL,
    modseq bigint NOT NULL,
    PRIMARY KEY (mailbox, uid)
);
CREATE INDEX expunged_modseq ON expunged(mailbox, modseq);
CREATE TABLE pop3_uidls (
    mailbox bigint NOT NULL,
    uid bigint NOT NULL,
    uidl text NOT NULL,
    PRIMARY KEY (mailbox, uid),
    FOREIGN KEY (mailbox, uid) REFERENCES messages(mailbox, uid)
        ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE changes (
    seq bigserial PRIMARY KEY,
    xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    origin text NOT NULL,
    account bigint NOT NULL,
    mailbox bigint,
    modseq bigint NOT NULL DEFAULT 0,
    kind smallint NOT NULL,
    uids bigint[] NOT NULL DEFAULT '{}',
    created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_order ON changes(xid, seq);
CREATE INDEX changes_created ON changes(created);
"#;

/// Every migration, in order: `(version, sql)`. Version 2: the outbound
/// queue (`queue`, `queue_rcpts`: see [`super::queue`]); 3: users' Sieve
/// scripts (`sieve_scripts`); 4: what Sieve delivery remembers
/// (`sieve_memory`); 5: plugin key-value data and the MTA-STS cache
/// (`kv`); 6: shared failed-login counts (`login_limits`).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1),
    (2, super::queue::SCHEMA),
    (3, super::sieve::SCHEMA),
    (4, super::sieve_memory::SCHEMA),
    (5, super::kv::SCHEMA),
    (6, super::login_limits::SCHEMA),
];

/// The schema version this code writes (the last entry of [`MIGRATIONS`]).
pub fn schema_version() -> i64 {
    MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0)
}

/// Brings the database up to [`schema_version`], once across all nodes
/// (see the module docs). Returns the versions applied by this call.
pub async fn migrate(client: &mut Client) -> StoreResult<Vec<i64>> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version bigint PRIMARY KEY,
             applied timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    let newest = schema_version();
    if current > newest {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this mailgate ({newest}); upgrade mailgate"
        )));
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    if !applied.is_empty() {
        tracing::info!(versions = ?applied, "store: database schema migrated");
    }
    Ok(applied)
}
