//! DELETE (RFC 9051 §6.3.5).

use super::{account, mailbox_name};
use crate::names::SEPARATOR;
use crate::session::{CmdError, CmdResult, Done, Session};

/// `delete = "DELETE" SP mailbox`. "It is an error to attempt to delete
/// INBOX or a mailbox name that does not exist." A mailbox with inferiors
/// is refused (as Dovecot does) rather than left as a `\Noselect`
/// placeholder, which this store does not have.
pub(crate) async fn delete(s: &mut Session, raw: &[u8]) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    if name == "INBOX" {
        return Err(CmdError::no("CANNOT", "INBOX cannot be deleted"));
    }
    let account = account(s)?.id;
    let all = s.ctx.store.list_mailboxes(account).await?;
    if !all.iter().any(|m| m.name == name) {
        return Err(CmdError::no("NONEXISTENT", "No such mailbox"));
    }
    let prefix = format!("{name}{SEPARATOR}");
    if all.iter().any(|m| m.name.starts_with(&prefix)) {
        return Err(CmdError::no(
            "INUSE",
            "Mailbox has children, delete them first",
        ));
    }
    s.ctx.store.delete_mailbox(account, &name).await?;
    Ok(Done::ok("DELETE completed"))
}
