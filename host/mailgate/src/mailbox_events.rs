//! The plugins' `mailbox-event` hook behind IMAP: messages users file into
//! Junk (spam) or out of it (ham) are handed to the plugins that want the
//! hook (the rspamd plugin teaches rspamd with them).
//!
//! Off the IMAP session's path: [`PolicyMailboxEvents::filed`] only spawns
//! a task, and nothing the task does reaches the IMAP client. Bounds: at
//! most [`MAX_MESSAGES_PER_COMMAND`] messages of one command are reported
//! (a COPY of a whole mailbox into Junk is not a thousand lessons), and at
//! most [`MAX_TASKS`] commands are being reported at once; past that an
//! event is dropped with a warning.

use std::sync::Arc;

use mailgate_imap::mailbox_events::{direction, Filed, FiledAs, MailboxEvents};
use mailgate_policy::{Direction, Hook, MailboxEvent, MessageView, PolicyManager};
use mailgate_store::{SpecialUse, Store};
use tokio::sync::Semaphore;

/// Messages of one command reported, at most.
pub const MAX_MESSAGES_PER_COMMAND: usize = 50;
/// Commands being reported at once, at most.
pub const MAX_TASKS: usize = 16;
/// Larger messages are not reported.
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// [`MailboxEvents`] into the policy plugins.
pub struct PolicyMailboxEvents {
    policy: Arc<PolicyManager>,
    store: Arc<dyn Store>,
    tasks: Arc<Semaphore>,
}

impl PolicyMailboxEvents {
    /// Events go to `policy`'s current chain; messages are read from
    /// `store`.
    pub fn new(policy: Arc<PolicyManager>, store: Arc<dyn Store>) -> PolicyMailboxEvents {
        PolicyMailboxEvents {
            policy,
            store,
            tasks: Arc::new(Semaphore::new(MAX_TASKS)),
        }
    }
}

/// The IMAP listeners' sink: none without plugins.
pub fn sink(
    policy: Option<&Arc<PolicyManager>>,
    store: &Arc<dyn Store>,
) -> Option<Arc<dyn MailboxEvents>> {
    let policy = policy?.clone();
    Some(Arc::new(PolicyMailboxEvents::new(policy, store.clone())))
}

impl MailboxEvents for PolicyMailboxEvents {
    fn filed(&self, event: Filed) {
        let chain = self.policy.snapshot();
        // The common case costs one look at the chain.
        if !chain.wants(Hook::MailboxEvent) {
            return;
        }
        // Into Junk is decided here; out of Junk needs the source's
        // special use, looked up in the task.
        let into_junk = event.target_use == Some(SpecialUse::Junk);
        if !into_junk && event.source.is_none() {
            return;
        }
        let Ok(permit) = self.tasks.clone().try_acquire_owned() else {
            tracing::warn!(
                account = %event.account,
                "mailbox-event: too many reports under way; this one is dropped"
            );
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let source_use = match &event.source {
                Some(name) => match store.mailbox(event.account_id, name).await {
                    Ok(Some(info)) => info.special_use,
                    // Gone already (a MOVE then DELETE): judged on the target.
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "mailbox-event: cannot read the source mailbox");
                        return;
                    }
                },
                None => None,
            };
            let Some(filed) = direction(source_use, event.target_use) else {
                return;
            };
            let hook_event = MailboxEvent {
                account: event.account.clone(),
                direction: match filed {
                    FiledAs::Spam => Direction::Spam,
                    FiledAs::Ham => Direction::Ham,
                },
                operation: event.operation.to_string(),
                source: event.source.clone(),
                target: event.target.clone(),
            };
            if event.uids.len() > MAX_MESSAGES_PER_COMMAND {
                tracing::info!(
                    account = %event.account,
                    messages = event.uids.len(),
                    "mailbox-event: only the first {MAX_MESSAGES_PER_COMMAND} messages are reported"
                );
            }
            for uid in event.uids.iter().take(MAX_MESSAGES_PER_COMMAND) {
                let raw = match store.message_raw(event.target_id, *uid).await {
                    Ok(Some(raw)) if raw.len() <= MAX_MESSAGE_BYTES => raw,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "mailbox-event: cannot read a message");
                        continue;
                    }
                };
                let view = Arc::new(MessageView::shared(Arc::new(raw)));
                let failed = chain.mailbox_event(&hook_event, view).await;
                tracing::debug!(
                    account = %event.account,
                    direction = hook_event.direction.name(),
                    failed = failed.len(),
                    "mailbox-event reported"
                );
            }
        });
    }
}
