//! `mailgate store check`: every invariant of the embedded store, checked.

use rusqlite::Connection;

use crate::{MessageStructure, StoreResult};

/// Runs every check; returns one line per problem found.
pub(super) fn run(c: &Connection) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    let query = |sql: &str,
                 what: &dyn Fn(&rusqlite::Row<'_>) -> rusqlite::Result<String>|
     -> StoreResult<Vec<String>> {
        let mut st = c.prepare(sql)?;
        let rows = st.query_map([], |r| what(r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    problems.extend(query("PRAGMA integrity_check", &|r| {
        let s: String = r.get(0)?;
        Ok(format!("sqlite integrity: {s}"))
    })?);
    problems.retain(|p| p != "sqlite integrity: ok");
    problems.extend(query("PRAGMA foreign_key_check", &|r| {
        let table: String = r.get(0)?;
        let parent: String = r.get(2)?;
        Ok(format!(
            "table {table}: a row refers to a missing row of {parent}"
        ))
    })?);
    problems.extend(query(
        "SELECT m.mailbox, m.uid, m.blob FROM messages m LEFT JOIN blobs b ON b.id = m.blob WHERE b.id IS NULL",
        &|r| Ok(format!("mailbox {} uid {}: body {} is missing", r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
    )?);
    problems.extend(query(
        "SELECT id FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)",
        &|r| {
            Ok(format!(
                "body {} belongs to no mailbox",
                r.get::<_, i64>(0)?
            ))
        },
    )?);
    problems.extend(query(
        "SELECT id, size, length(data) FROM blobs WHERE size != length(data)",
        &|r| {
            Ok(format!(
                "body {}: recorded size {} but {} bytes stored",
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?
            ))
        },
    )?);
    problems.extend(query(
        "SELECT m.mailbox, m.uid, m.size, b.size FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.size != b.size",
        &|r| {
            Ok(format!(
                "mailbox {} uid {}: size {} differs from its body's {}",
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?
            ))
        },
    )?);
    problems.extend(query(
        "SELECT mb.id, mb.name, max(m.uid), mb.uid_next FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id
         GROUP BY mb.id HAVING max(m.uid) >= mb.uid_next",
        &|r| {
            Ok(format!(
                "mailbox {} ({}): uid {} is not below UIDNEXT {}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?
            ))
        },
    )?);
    problems.extend(query(
        "SELECT mb.id, mb.name, max(m.modseq), mb.highest_modseq FROM mailboxes mb JOIN messages m ON m.mailbox = mb.id
         GROUP BY mb.id HAVING max(m.modseq) > mb.highest_modseq",
        &|r| {
            Ok(format!(
                "mailbox {} ({}): MODSEQ {} above HIGHESTMODSEQ {}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?
            ))
        },
    )?);
    problems.extend(query(
        "SELECT a.address FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.account = a.id AND mb.name = 'INBOX')",
        &|r| Ok(format!("account {} has no INBOX", r.get::<_, String>(0)?)),
    )?);
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
