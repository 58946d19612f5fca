//! Users filing messages as spam or not spam: COPY, MOVE and APPEND into
//! the `\Junk` special-use mailbox, and COPY/MOVE out of it, are reported
//! to a [`MailboxEvents`] sink (the policy plugins' `mailbox-event` hook in
//! the server; nothing without one).
//!
//! The IMAP command never waits for the sink and never fails because of
//! it: [`MailboxEvents::filed`] must return at once (the server's sink
//! spawns a task). Which way a message was filed is [`direction`].

use std::sync::Arc;

use mailgate_store::{MailboxId, MailboxInfo, SpecialUse, Uid};

use crate::session::Session;

/// Which way a user filed messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiledAs {
    /// Into Junk.
    Spam,
    /// Out of Junk.
    Ham,
}

/// Messages that arrived in a mailbox by COPY, MOVE or APPEND.
#[derive(Debug, Clone)]
pub struct Filed {
    /// The account's address.
    pub account: String,
    /// The account's id.
    pub account_id: mailgate_store::AccountId,
    /// `copy`, `move` or `append`.
    pub operation: &'static str,
    /// The mailbox they came from (none for APPEND).
    pub source: Option<String>,
    /// The mailbox they are in now.
    pub target: String,
    /// Its id.
    pub target_id: MailboxId,
    /// Its special use.
    pub target_use: Option<SpecialUse>,
    /// Their UIDs in `target`.
    pub uids: Vec<Uid>,
}

/// Where [`Filed`] events go.
pub trait MailboxEvents: Send + Sync {
    /// Messages arrived in a mailbox. Must return at once: the IMAP
    /// session calls this before its tagged reply.
    fn filed(&self, event: Filed);
}

/// Spam when the target is Junk (and the source is not); ham when the
/// source is Junk and the target is neither Junk nor Trash (deleting a
/// spam is not calling it ham); otherwise not a filing at all.
pub fn direction(source: Option<SpecialUse>, target: Option<SpecialUse>) -> Option<FiledAs> {
    match (source, target) {
        (Some(SpecialUse::Junk), Some(SpecialUse::Junk)) => None,
        (_, Some(SpecialUse::Junk)) => Some(FiledAs::Spam),
        (Some(SpecialUse::Junk), Some(SpecialUse::Trash)) => None,
        (Some(SpecialUse::Junk), _) => Some(FiledAs::Ham),
        _ => None,
    }
}

/// COPY or MOVE from the selected mailbox into `target` completed with
/// `uids` (their UIDs in `target`).
pub(crate) fn copied(s: &Session, target: &MailboxInfo, uids: Vec<Uid>, is_move: bool) {
    let Some(source) = s.selected.as_ref().map(|sel| sel.name.as_str()) else {
        return;
    };
    let operation = if is_move { "move" } else { "copy" };
    notify(s, operation, Some(source), target, uids);
}

/// APPEND into `target` completed with `uids`.
pub(crate) fn appended(s: &Session, target: &MailboxInfo, uids: Vec<Uid>) {
    // Only an APPEND into Junk is a filing (there is no source).
    if target.special_use == Some(SpecialUse::Junk) {
        notify(s, "append", None, target, uids);
    }
}

fn notify(
    s: &Session,
    operation: &'static str,
    source: Option<&str>,
    target: &MailboxInfo,
    uids: Vec<Uid>,
) {
    let (Some(sink), Some(account)) = (s.ctx.mailbox_events.as_ref(), s.account.as_ref()) else {
        return;
    };
    if uids.is_empty() || source == Some(target.name.as_str()) {
        return;
    }
    let sink: &Arc<dyn MailboxEvents> = sink;
    sink.filed(Filed {
        account: account.address.clone(),
        account_id: account.id,
        operation,
        source: source.map(str::to_string),
        target: target.name.clone(),
        target_id: target.id,
        target_use: target.special_use,
        uids,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_way_a_message_was_filed() {
        use SpecialUse::*;
        assert_eq!(direction(None, Some(Junk)), Some(FiledAs::Spam));
        assert_eq!(direction(Some(Sent), Some(Junk)), Some(FiledAs::Spam));
        assert_eq!(direction(Some(Junk), None), Some(FiledAs::Ham));
        assert_eq!(direction(Some(Junk), Some(Archive)), Some(FiledAs::Ham));
        assert_eq!(direction(Some(Junk), Some(Trash)), None);
        assert_eq!(direction(Some(Junk), Some(Junk)), None);
        assert_eq!(direction(None, None), None);
        assert_eq!(direction(None, Some(Trash)), None);
    }
}
