//! RENAME (RFC 9051 §6.3.6).

use super::{account, mailbox_name};
use crate::names;
use crate::session::{CmdError, CmdResult, Done, Session};

/// `rename = "RENAME" SP mailbox SP mailbox`. Inferiors move with the
/// mailbox; renaming INBOX moves its messages to a new mailbox and leaves
/// INBOX empty (the store implements both rules).
pub(crate) async fn rename(s: &mut Session, from: &[u8], to: &[u8]) -> CmdResult {
    let from = mailbox_name(s, from)?;
    let to = mailbox_name(s, to)?;
    if to == "INBOX" {
        return Err(CmdError::no("ALREADYEXISTS", "INBOX always exists"));
    }
    names::validate_new(&to).map_err(|e| CmdError::no("CANNOT", e))?;
    let account = account(s)?.id;
    s.ctx.store.rename_mailbox(account, &from, &to).await?;
    Ok(Done::ok("RENAME completed"))
}
