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
}
