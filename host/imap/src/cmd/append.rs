//! APPEND (RFC 9051 §6.3.12, with RFC 4315 APPENDUID, RFC 7889
//! APPENDLIMIT, RFC 3502 MULTIAPPEND and RFC 6855 §4 `UTF8 (literal8)`).

use std::sync::Arc;

use mailgate_imap_proto::{format_set, AppendMessage};
use mailgate_store::{MessageStructure, NewMessage};

use super::{find_mailbox_state, mailbox_name, quota};
use crate::session::{CmdError, CmdResult, Done, Session};

/// `append = "APPEND" SP mailbox 1*append-message`. "If the destination
/// mailbox does not exist, a server MUST return an error, and MUST NOT
/// automatically create the mailbox" — with `[TRYCREATE]`.
///
/// MULTIAPPEND (RFC 3502 §6.3.11): "If the server fails to append any
/// message, none of the messages are appended": every message is checked
/// first, then all are stored in one store transaction. APPENDUID then
/// carries the set of new UIDs (RFC 4315 §3).
///
/// `UTF8 (~{n}...)` (RFC 6855 §4) is accepted as advertised by
/// UTF8=ACCEPT; the message is stored as sent (the store keeps UTF-8
/// header fields as they are).
pub(crate) async fn append(s: &mut Session, raw: &[u8], messages: Vec<AppendMessage>) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    let info = find_mailbox_state(s, &name)
        .await
        .map_err(|_| CmdError::no("TRYCREATE", "No such mailbox"))?;
    let mut total: u64 = 0;
    for m in &messages {
        if m.message.is_empty() {
            return Err(CmdError::No(None, "Empty message".into()));
        }
        if m.message.len() as u64 > s.ctx.limits.max_append {
            return Err(CmdError::no("TOOBIG", "Message too large"));
        }
        if m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")) {
            return Err(CmdError::Bad("\\Recent cannot be set".into()));
        }
        total = total.saturating_add(m.message.len() as u64);
    }
    // Held until the messages are stored (dropped at the end).
    let _quota = quota::reserve_room(s, total).await?;
    let mut prepared = Vec::with_capacity(messages.len());
    for m in messages {
        let internal_date = m.date.unwrap_or_else(now);
        let raw = Arc::new(m.message);
        let structure = MessageStructure::parse_off_thread(Arc::clone(&raw))
            .await
            .map_err(|e| CmdError::Server(format!("structure parse task: {e}")))?;
        prepared.push((
            NewMessage {
                raw,
                internal_date,
                structure,
            },
            m.flags,
        ));
    }
    let uids = if prepared.len() == 1 {
        let (message, flags) = prepared.remove(0);
        vec![s.ctx.store.append(info.id, message, &flags).await?]
    } else {
        s.ctx.store.append_many(info.id, prepared).await?
    };
    crate::mailbox_events::appended(s, &info, uids.clone());
    Ok(Done::with_code(
        format!(
            "APPENDUID {} {}",
            info.uid_validity,
            format_set(uids.iter().map(|u| u.get()))
        ),
        "APPEND completed",
    ))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
