//! `mailgate store check` for the PostgreSQL store: the invariants of the
//! embedded store's check (`sqlite::check`) that PostgreSQL does not
//! enforce itself (foreign keys and page checksums are its business),
//! each one query returning a line per problem.

use deadpool_postgres::GenericClient;

use crate::StoreResult;

const CHECKS: &[&str] = &[
    // Every body belongs to an entry (the last expunge deletes it).
    "SELECT 'body ' || id || ' belongs to no mailbox'
       FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)",
    "SELECT 'body ' || id || ': recorded size ' || size || ' but ' || octet_length(data) || ' bytes stored'
       FROM blobs WHERE size != octet_length(data)",
    "SELECT 'body ' || id || ': its content address is not the SHA-256 of its bytes'
       FROM blobs WHERE hash != sha256(data)",
    "SELECT 'mailbox ' || m.mailbox || ' uid ' || m.uid || ': size ' || m.size || ' differs from its body''s ' || b.size
       FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.size != b.size",
    "SELECT 'body ' || id || ': saved header block differs from the body''s start'
       FROM blobs WHERE substr(data, 1, octet_length(header)) != header",
    // UIDs stay below UIDNEXT, MODSEQs at or below HIGHESTMODSEQ.
    "SELECT 'mailbox ' || mb.id || ' (' || mb.name || '): uid ' || max(m.uid) || ' is not below UIDNEXT ' || mb.uid_next
       FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id GROUP BY mb.id HAVING max(m.uid) >= mb.uid_next",
    "SELECT 'mailbox ' || mb.id || ' (' || mb.name || '): MODSEQ ' || max(m.modseq) || ' above HIGHESTMODSEQ ' || mb.highest_modseq
       FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id GROUP BY mb.id HAVING max(m.modseq) > mb.highest_modseq",
    "SELECT 'mailbox ' || mb.id || ' (' || mb.name || '): expunged MODSEQ ' || max(e.modseq) || ' above HIGHESTMODSEQ ' || mb.highest_modseq
       FROM mailboxes mb JOIN expunged e ON e.mailbox = mb.id GROUP BY mb.id HAVING max(e.modseq) > mb.highest_modseq",
    "SELECT 'account ' || a.address || ' has no INBOX' FROM accounts a
       WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.account = a.id AND mb.name = 'INBOX')",
];

/// Runs every check; returns one line per problem found.
pub async fn run(c: &impl GenericClient) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    for sql in CHECKS {
        for row in c.query(*sql, &[]).await? {
            problems.push(row.get(0));
        }
    }
    Ok(problems)
}
