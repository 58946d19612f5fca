//! Mail the queue holds for our own domains (bounces to local senders,
//! mostly) is stored locally instead of being sent over the network.

use async_trait::async_trait;
use mailgate_delivery::{HandOff, LocalDelivery, MissingTarget, Refusal};
use mailgate_store::StoreResult;

use crate::client::RcptOutcome;

/// What the local hand-off did with one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOutcome {
    /// Delivered, deferred or failed, as an SMTP reply.
    pub outcome: RcptOutcome,
    /// For a delivered recipient (an alias): its targets that reach no
    /// account. The runner reports them to the sender in this attempt's
    /// `failed` DSN; empty otherwise.
    pub missing: Vec<MissingTarget>,
}

impl LocalOutcome {
    /// An outcome without lost copies.
    pub fn of(outcome: RcptOutcome) -> LocalOutcome {
        LocalOutcome {
            outcome,
            missing: Vec::new(),
        }
    }
}

/// Local delivery as the queue runner needs it.
#[async_trait]
pub trait LocalHandoff: Send + Sync {
    /// Whether mail for `domain` stays here.
    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool>;
    /// Delivers to local recipients (each into the folder its queue entry
    /// names, INBOX by default); one outcome per recipient, in order.
    async fn deliver(&self, sender: &str, recipients: &[HandOff], body: &[u8])
        -> Vec<LocalOutcome>;
}

#[async_trait]
impl LocalHandoff for LocalDelivery {
    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        LocalDelivery::is_local_domain(self, domain).await
    }

    /// Through delivery's quota rule: an account over its quota is a
    /// temporary failure (retried on the `[queue] retry` schedule,
    /// bounced after `max_age`).
    async fn deliver(
        &self,
        sender: &str,
        recipients: &[HandOff],
        body: &[u8],
    ) -> Vec<LocalOutcome> {
        self.deliver_each(sender, recipients, body)
            .await
            .into_iter()
            .map(|outcome| match outcome {
                Ok(missing) => LocalOutcome {
                    outcome: RcptOutcome::Delivered("250 2.0.0 delivered locally".into()),
                    missing,
                },
                Err(refusal) => LocalOutcome::of(refused(refusal)),
            })
            .collect()
    }
}

/// The queue's reply for a refused local recipient.
fn refused(refusal: Refusal) -> RcptOutcome {
    match refusal {
        Refusal::MailboxFull => RcptOutcome::Temporary("452 4.2.2 mailbox full".into()),
        Refusal::NoSpace => RcptOutcome::Temporary("452 4.3.1 insufficient system storage".into()),
        Refusal::UnknownUser => RcptOutcome::Permanent("550 5.1.1 no such local user".into()),
        _ => RcptOutcome::Temporary("451 4.3.0 local delivery failed".into()),
    }
}
