//! COPY (RFC 9051 §6.4.7) and MOVE (RFC 6851), with RFC 4315 COPYUID.

use mailgate_imap_proto::response::write_untagged;
use mailgate_imap_proto::{format_set, SequenceSet};
use mailgate_store::Uid;

use super::{find_mailbox_state, mailbox_name, quota};
use crate::session::{CmdError, CmdResult, Done, Session};

/// `copy = "COPY" SP sequence-set SP mailbox`; `move` likewise. A missing
/// target is `NO [TRYCREATE]`. RFC 6851 §4.3: MOVE sends COPYUID in an
/// untagged OK *before* the EXPUNGE responses (which the session's sync
/// writes after this handler), then the tagged OK.
pub(crate) async fn copy(
    s: &mut Session,
    uid: bool,
    set: &SequenceSet,
    raw: &[u8],
    is_move: bool,
    out: &mut Vec<u8>,
) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    let sel = s
        .selected
        .as_ref()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    if is_move && sel.read_only {
        return Err(CmdError::no("READ-ONLY", "Mailbox is read-only"));
    }
    let indexes = sel.resolve(set, uid)?;
    let uids: Vec<Uid> = indexes.iter().map(|&i| sel.msgs.at(i).uid).collect();
    // Sizes from the store (the view holds only UIDs and flags).
    let bytes: u64 = sel
        .details(s.ctx.store.as_ref(), &indexes)
        .await?
        .iter()
        .map(|m| m.size)
        .sum();
    let source = sel.id;
    let target = find_mailbox_state(s, &name)
        .await
        .map_err(|_| CmdError::no("TRYCREATE", "No such mailbox"))?;
    let verb = if is_move { "MOVE" } else { "COPY" };
    if uids.is_empty() {
        return Ok(Done::ok(format!("No messages, {verb} completed")));
    }
    // Held until the copies are stored.
    let quota = match is_move && target.id == source {
        true => Vec::new(),
        false => quota::reserve_room(s, bytes).await?,
    };
    let pairs = if is_move {
        s.ctx.store.move_messages(source, &uids, target.id).await?
    } else {
        s.ctx.store.copy_messages(source, &uids, target.id).await?
    };
    drop(quota);
    if pairs.is_empty() {
        return Ok(Done::ok(format!("No messages left, {verb} completed")));
    }
    crate::mailbox_events::copied(s, &target, pairs.iter().map(|p| p.1).collect(), is_move);
    // RFC 4315 §3: the two sets correspond in order; runs are written
    // `a:b` (ascending in both, so the order survives).
    let code = format!(
        "COPYUID {} {} {}",
        target.uid_validity,
        format_set(pairs.iter().map(|p| p.0 .0.get())),
        format_set(pairs.iter().map(|p| p.1 .0.get())),
    );
    if is_move {
        write_untagged(out, &format!("OK [{code}] Moved"));
        if let Some(sel) = s.selected.as_ref() {
            sel.view.mark_dirty();
        }
        Ok(Done::ok("MOVE completed"))
    } else {
        Ok(Done::with_code(code, "COPY completed"))
    }
}
