//! APPEND (RFC 9051 §6.3.12, with RFC 4315 APPENDUID and RFC 7889
//! APPENDLIMIT).

use std::sync::Arc;

use mailgate_store::{MessageStructure, NewMessage};

use super::{find_mailbox, mailbox_name, quota};
use crate::session::{CmdError, CmdResult, Done, Session};

/// `append = "APPEND" SP mailbox [SP flag-list] [SP date-time] SP
/// literal`. "If the destination mailbox does not exist, a server MUST
/// return an error, and MUST NOT automatically create the mailbox" — with
/// `[TRYCREATE]`.
pub(crate) async fn append(
    s: &mut Session,
    raw: &[u8],
    flags: &[String],
    date: Option<i64>,
    message: Vec<u8>,
) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    let info = find_mailbox(s, &name)
        .await
        .map_err(|_| CmdError::no("TRYCREATE", "No such mailbox"))?;
    if message.is_empty() {
        return Err(CmdError::No(None, "Empty message".into()));
    }
    if message.len() as u64 > s.ctx.limits.max_append {
        return Err(CmdError::no("TOOBIG", "Message too large"));
    }
    if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")) {
        return Err(CmdError::Bad("\\Recent cannot be set".into()));
    }
    quota::check_room(s, message.len() as u64).await?;
    let internal_date = date.unwrap_or_else(now);
    let raw = Arc::new(message);
    let structure = MessageStructure::parse_off_thread(Arc::clone(&raw))
        .await
        .map_err(|e| CmdError::Server(format!("structure parse task: {e}")))?;
    let uid = s
        .ctx
        .store
        .append(
            info.id,
            NewMessage {
                raw,
                internal_date,
                structure,
            },
            flags,
        )
        .await?;
    Ok(Done::with_code(
        format!("APPENDUID {} {uid}", info.uid_validity),
        "APPEND completed",
    ))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
