//! EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1).

use mailgate_imap_proto::SequenceSet;
use mailgate_store::Uid;

use crate::session::{CmdError, CmdResult, Done, Session};

/// "The EXPUNGE command permanently removes all messages that have the
/// \Deleted flag set from the currently selected mailbox"; UID EXPUNGE
/// only those in the UID set. The EXPUNGE (or VANISHED) responses are
/// written by the session's sync, right after, like everyone else's.
pub(crate) async fn expunge(
    s: &mut Session,
    uids: Option<&SequenceSet>,
    _out: &mut Vec<u8>,
) -> CmdResult {
    let sel = s
        .selected
        .as_ref()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    if sel.read_only {
        return Err(CmdError::no("READ-ONLY", "Mailbox is read-only"));
    }
    let id = sel.id;
    let largest = sel.largest_uid();
    // The mailbox's current flags, not the client's version: another
    // session may have set \Deleted since our last sync.
    let current = sel.view.refresh(s.ctx.store.as_ref(), true).await?;
    let doomed: Vec<Uid> = current
        .iter()
        .filter(|m| m.has_flag("\\Deleted"))
        .filter(|m| uids.is_none_or(|set| set.contains(m.uid.get(), largest)))
        .map(|m| m.uid)
        .collect();
    if !doomed.is_empty() {
        s.ctx.store.expunge(id, &doomed).await?;
    }
    if let Some(sel) = s.selected.as_ref() {
        sel.view.mark_dirty();
    }
    Ok(Done::ok("EXPUNGE completed"))
}
