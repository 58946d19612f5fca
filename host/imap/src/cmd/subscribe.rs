//! SUBSCRIBE and UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8).

use super::{account, mailbox_name};
use crate::session::{CmdResult, Done, Session};

/// `subscribe = "SUBSCRIBE" SP mailbox`; `unsubscribe` likewise. The
/// store keeps subscriptions on the mailbox rows, so only existing
/// mailboxes can be subscribed (`NO [NONEXISTENT]` otherwise).
pub(crate) async fn subscribe(s: &mut Session, raw: &[u8], on: bool) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    let account = account(s)?.id;
    s.ctx.store.set_subscribed(account, &name, on).await?;
    Ok(Done::ok(if on {
        "SUBSCRIBE completed"
    } else {
        "UNSUBSCRIBE completed"
    }))
}
