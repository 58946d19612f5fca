//! `mailgate store check`: every invariant of the embedded store, checked.
//!
//! Each check is one query that returns a line of text per problem found,
//! so adding an invariant is adding one row to [`CHECKS`].

use rusqlite::Connection;

use crate::{MessageStructure, StoreResult};

/// The invariants, as queries returning one problem description per row.
const CHECKS: &[&str] = &[
    // SQLite's own page-level consistency; 'ok' means none.
    "SELECT 'sqlite integrity: ' || integrity_check FROM pragma_integrity_check WHERE integrity_check != 'ok'",
    "SELECT 'table ' || \"table\" || ': a row refers to a missing row of ' || parent FROM pragma_foreign_key_check",
    // Every entry has its body.
    "SELECT 'mailbox ' || m.mailbox || ' uid ' || m.uid || ': body ' || m.blob || ' is missing'
       FROM messages m LEFT JOIN blobs b ON b.id = m.blob WHERE b.id IS NULL",
    // Every body belongs to an entry (the last expunge deletes it).
    "SELECT 'body ' || id || ' belongs to no mailbox'
       FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)",
    "SELECT 'body ' || id || ': recorded size ' || size || ' but ' || length(data) || ' bytes stored'
       FROM blobs WHERE size != length(data)",
    "SELECT 'mailbox ' || m.mailbox || ' uid ' || m.uid || ': size ' || m.size || ' differs from its body''s ' || b.size
       FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.size != b.size",
    // A saved header block is the start of its body.
    "SELECT 'body ' || h.blob || ': saved header block differs from the body''s start'
       FROM blob_headers h JOIN blobs b ON b.id = h.blob
      WHERE substr(b.data, 1, length(h.header)) != h.header",
    // UIDs stay below UIDNEXT, MODSEQs at or below HIGHESTMODSEQ.
    "SELECT 'mailbox ' || mb.id || ' (' || mb.name || '): uid ' || max(m.uid) || ' is not below UIDNEXT ' || mb.uid_next
       FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id GROUP BY mb.id HAVING max(m.uid) >= mb.uid_next",
    "SELECT 'mailbox ' || mb.id || ' (' || mb.name || '): MODSEQ ' || max(m.modseq) || ' above HIGHESTMODSEQ ' || mb.highest_modseq
       FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id GROUP BY mb.id HAVING max(m.modseq) > mb.highest_modseq",
    "SELECT 'account ' || a.address || ' has no INBOX' FROM accounts a
       WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.account = a.id AND mb.name = 'INBOX')",
];

/// Runs every check; returns one line per problem found.
pub(super) fn run(c: &Connection) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    for sql in CHECKS {
        let mut st = c.prepare(sql)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        for row in rows {
            problems.push(row?);
        }
    }
    // Users' Sieve scripts (the table may be missing in a backup taken
    // by an older version): at most one active script per account, and
    // every name one a client could have given.
    let has_sieve: bool = c
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sieve_scripts'",
            [],
            |_| Ok(()),
        )
        .is_ok();
    if has_sieve {
        let mut st = c.prepare(
            "SELECT a.address, count(*) FROM sieve_scripts s JOIN accounts a ON a.id = s.account
              WHERE s.active = 1 GROUP BY s.account HAVING count(*) > 1",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (address, n) = row?;
            problems.push(format!(
                "account {address}: {n} active Sieve scripts (at most one)"
            ));
        }
        let mut st = c.prepare("SELECT account, name FROM sieve_scripts")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (account, name) = row?;
            if !crate::sieve_script_name_ok(&name) {
                problems.push(format!(
                    "account {account}: Sieve script {name:?} has an invalid name"
                ));
            }
        }
    }
    // The plugins' key-value counts (the tables may be missing in a
    // backup taken by an older version).
    if has_table(c, "plugin_kv_usage") {
        problems.extend(super::kv::check(c)?);
    }
    // Every saved structure must decode.
    let mut st = c.prepare("SELECT id, structure FROM blobs")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (id, json) = row?;
        if let Err(e) = serde_json::from_str::<MessageStructure>(&json) {
            problems.push(format!("body {id}: saved structure does not decode: {e}"));
        }
    }
    Ok(problems)
}

/// One repair `store check --repair` makes (or, in a dry run, would make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// What is wrong and what is done about it, one line.
    pub what: String,
}

/// What can be repaired without losing anything a user can see: each is
/// (a query listing the problems it repairs, the statement that repairs
/// them all). Each repair only rebuilds derived data (sizes, counters,
/// caches) or removes what nothing refers to; none removes a message
/// that has its body.
const REPAIRS: &[(&str, &str)] = &[
    (
        "SELECT 'body ' || id || ': belongs to no mailbox: deleted (frees ' || length(data) || ' bytes)'
           FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)",
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = blobs.id)",
    ),
    (
        "SELECT 'body ' || id || ': recorded size ' || size || ' set to the ' || length(data) || ' bytes stored'
           FROM blobs WHERE size != length(data)",
        "UPDATE blobs SET size = length(data) WHERE size != length(data)",
    ),
    (
        "SELECT 'mailbox ' || m.mailbox || ' uid ' || m.uid || ': size ' || m.size || ' set to its body''s ' || length(b.data)
           FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.size != length(b.data)",
        "UPDATE messages SET size = (SELECT length(data) FROM blobs b WHERE b.id = messages.blob)
          WHERE size != (SELECT length(data) FROM blobs b WHERE b.id = messages.blob)",
    ),
    (
        "SELECT 'body ' || h.blob || ': saved header block differs from the body''s start: removed (searches read the body)'
           FROM blob_headers h JOIN blobs b ON b.id = h.blob
          WHERE substr(b.data, 1, length(h.header)) != h.header",
        "DELETE FROM blob_headers WHERE blob IN (SELECT h.blob FROM blob_headers h JOIN blobs b ON b.id = h.blob
          WHERE substr(b.data, 1, length(h.header)) != h.header)",
    ),
    (
        "SELECT 'mailbox ' || mb.id || ' (' || mb.name || '): UIDNEXT ' || mb.uid_next || ' raised to ' || (max(m.uid) + 1)
           FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id GROUP BY mb.id HAVING max(m.uid) >= mb.uid_next",
        "UPDATE mailboxes SET uid_next = (SELECT max(uid) + 1 FROM messages m WHERE m.mailbox = mailboxes.id)
          WHERE uid_next <= (SELECT max(uid) FROM messages m WHERE m.mailbox = mailboxes.id)",
    ),
    (
        "SELECT 'mailbox ' || mb.id || ' (' || mb.name || '): HIGHESTMODSEQ ' || mb.highest_modseq || ' raised to ' || max(m.modseq)
           FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id GROUP BY mb.id HAVING max(m.modseq) > mb.highest_modseq",
        "UPDATE mailboxes SET highest_modseq = (SELECT max(modseq) FROM messages m WHERE m.mailbox = mailboxes.id)
          WHERE highest_modseq < (SELECT max(modseq) FROM messages m WHERE m.mailbox = mailboxes.id)",
    ),
];

/// Repairs what can be repaired safely (see [`REPAIRS`]; also recreates a
/// missing INBOX and re-derives a saved structure that does not decode),
/// inside the caller's transaction (the store's writer); with `dry_run`,
/// only reads and says what it would do (a read connection is enough). What
/// cannot be repaired safely (SQLite page damage, entries whose body is
/// gone, rows referring to missing rows) is left for `store check` to
/// report: restore those from a backup.
pub(super) fn repair(tx: &Connection, dry_run: bool) -> StoreResult<Vec<Repair>> {
    let mut done = Vec::new();
    for (list, fix) in REPAIRS {
        let found: Vec<String> = {
            let mut st = tx.prepare(list)?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if !found.is_empty() && !dry_run {
            tx.execute(fix, [])?;
        }
        done.extend(found.into_iter().map(|what| Repair { what }));
    }
    // An account without INBOX gets an empty one (every client and every
    // delivery expects it).
    let missing: Vec<(i64, String)> = {
        let mut st = tx.prepare(
            "SELECT a.id, a.address FROM accounts a
              WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.account = a.id AND mb.name = 'INBOX')",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, address) in missing {
        if !dry_run {
            super::mailstore::create_mailbox_in(tx, id, "INBOX", None)?;
        }
        done.push(Repair {
            what: format!("account {address}: had no INBOX: an empty one created"),
        });
    }
    // The plugins' key-value counts are rebuilt from the rows.
    if has_table(tx, "plugin_kv_usage") {
        let wrong = super::kv::check(tx)?;
        if !wrong.is_empty() && !dry_run {
            super::kv::repair(tx)?;
        }
        done.extend(wrong.into_iter().map(|w| Repair {
            what: format!("{w}: counted again"),
        }));
    }
    // A saved structure that does not decode is derived again from its
    // body (it is only a parse of it).
    let broken: Vec<i64> = {
        // Bodies no message refers to are deleted above (or would be).
        let mut st = tx.prepare(
            "SELECT id, structure FROM blobs b WHERE EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut ids = Vec::new();
        for row in rows {
            let (id, json) = row?;
            if serde_json::from_str::<MessageStructure>(&json).is_err() {
                ids.push(id);
            }
        }
        ids
    };
    for id in broken {
        if !dry_run {
            let raw: Vec<u8> =
                tx.query_row("SELECT data FROM blobs WHERE id = ?1", [id], |r| r.get(0))?;
            let json = serde_json::to_string(&MessageStructure::parse(&raw))
                .map_err(|e| crate::StoreError::Invalid(format!("message structure: {e}")))?;
            tx.execute(
                "UPDATE blobs SET structure = ?2 WHERE id = ?1",
                rusqlite::params![id, json],
            )?;
        }
        done.push(Repair {
            what: format!("body {id}: saved structure did not decode: derived again from the body"),
        });
    }
    Ok(done)
}

/// Whether the database has table `name`.
fn has_table(c: &Connection, name: &str) -> bool {
    c.query_row(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_finds_what_it_guards() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("t.db")).unwrap();
        crate::sqlite::schema::migrate(&c).unwrap();
        assert!(run(&c).unwrap().is_empty());
        // Break the store by hand in several ways at once.
        c.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO accounts (id, address, password_hash, created) VALUES (1, 'a@x', 'h', 0);
             INSERT INTO mailboxes (id, account, name, uid_validity, uid_next, highest_modseq) VALUES (1, 1, 'Sent', 1, 2, 1);
             INSERT INTO blobs (id, size, structure, data) VALUES (1, 5, 'not json', x'00');
             INSERT INTO blobs (id, size, structure, data) VALUES (2, 1, '{}', x'00');
             INSERT INTO blob_headers (blob, header) VALUES (1, x'01');
             INSERT INTO messages (mailbox, uid, blob, internal_date, size, modseq) VALUES (1, 2, 1, 0, 4, 9);
             INSERT INTO messages (mailbox, uid, blob, internal_date, size, modseq) VALUES (1, 1, 7, 0, 1, 1);",
        )
        .unwrap();
        let found = run(&c).unwrap().join("\n");
        for expected in [
            "body 7 is missing",
            "table messages: a row refers to a missing row of blobs",
            "body 2 belongs to no mailbox",
            "body 1: recorded size 5 but 1 bytes stored",
            "size 4 differs from its body's 5",
            "uid 2 is not below UIDNEXT 2",
            "MODSEQ 9 above HIGHESTMODSEQ 1",
            "account a@x has no INBOX",
            "body 1: saved structure does not decode",
            "body 1: saved header block differs",
        ] {
            assert!(
                found.contains(expected),
                "missing {expected:?} in:\n{found}"
            );
        }
    }

    #[test]
    fn repair_fixes_what_is_safe_and_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("t.db")).unwrap();
        crate::sqlite::schema::migrate(&c).unwrap();
        let raw = b"Subject: hi\r\n\r\nbody\r\n";
        c.execute(
            "INSERT INTO accounts (id, address, password_hash, created) VALUES (1, 'a@x', 'h', 0)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO mailboxes (id, account, name, uid_validity, uid_next, highest_modseq) VALUES (1, 1, 'Sent', 1, 2, 1)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO blobs (id, size, structure, data) VALUES (1, 99, 'not json', ?1)",
            [&raw[..]],
        )
        .unwrap();
        c.execute(
            "INSERT INTO blobs (id, size, structure, data) VALUES (2, 1, '{}', x'00')",
            [],
        )
        .unwrap();
        c.execute_batch(
            "INSERT INTO blob_headers (blob, header) VALUES (1, x'01');
             INSERT INTO messages (mailbox, uid, blob, internal_date, size, modseq) VALUES (1, 2, 1, 0, 4, 9);",
        )
        .unwrap();
        let before = run(&c).unwrap();
        assert!(!before.is_empty());
        // A dry run says what it would do and changes nothing.
        let planned = repair(&c, true).unwrap();
        assert_eq!(run(&c).unwrap(), before);
        let done = repair(&c, false).unwrap();
        assert_eq!(planned, done);
        let text = done
            .iter()
            .map(|r| r.what.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        for expected in [
            "body 2: belongs to no mailbox: deleted",
            "body 1: recorded size 99 set to the",
            "uid 2: size 4 set to its body's",
            "saved header block differs",
            "UIDNEXT 2 raised to 3",
            "HIGHESTMODSEQ 1 raised to 9",
            "account a@x: had no INBOX",
            "body 1: saved structure did not decode",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(run(&c).unwrap(), Vec::<String>::new(), "all repaired");
        assert!(repair(&c, false).unwrap().is_empty(), "nothing left to do");
        // The message is still there, with its body.
        let n: i64 = c
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
