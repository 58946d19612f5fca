//! STATUS (RFC 9051 §6.3.11, RFC 8438 STATUS=SIZE, RFC 7162
//! HIGHESTMODSEQ); also used by LIST-STATUS.

use mailgate_imap_proto::StatusItem;
use mailgate_store::MailboxInfo;

use super::{find_mailbox, mailbox_name, write_mailbox};
use crate::session::{CmdError, CmdResult, Done, Session};

/// `status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"`
pub(crate) async fn status(
    s: &mut Session,
    raw: &[u8],
    items: &[StatusItem],
    out: &mut Vec<u8>,
) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    let info = find_mailbox(s, &name).await?;
    write_status(s, &info, items, out).await?;
    Ok(Done::ok("STATUS completed"))
}

/// Writes `* STATUS name (items)`.
pub(crate) async fn write_status(
    s: &mut Session,
    info: &MailboxInfo,
    items: &[StatusItem],
    out: &mut Vec<u8>,
) -> Result<(), CmdError> {
    let deleted = if items.contains(&StatusItem::Deleted) {
        let msgs = s.ctx.store.list_messages(info.id).await?;
        msgs.iter().filter(|m| m.has_flag("\\Deleted")).count()
    } else {
        0
    };
    if items.contains(&StatusItem::HighestModseq) {
        s.condstore = true;
    }
    let values: Vec<String> = items
        .iter()
        .map(|&item| {
            let v = match item {
                StatusItem::Messages => u64::from(info.messages),
                StatusItem::UidNext => u64::from(info.uid_next),
                StatusItem::UidValidity => u64::from(info.uid_validity),
                StatusItem::Unseen => u64::from(info.unseen),
                StatusItem::Deleted => deleted as u64,
                StatusItem::Size => info.size,
                StatusItem::Recent => 0,
                StatusItem::HighestModseq => info.highest_modseq,
            };
            format!("{} {v}", item.name())
        })
        .collect();
    out.extend_from_slice(b"* STATUS ");
    write_mailbox(out, s, &info.name);
    out.extend_from_slice(format!(" ({})\r\n", values.join(" ")).as_bytes());
    Ok(())
}
