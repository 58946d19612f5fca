//! Mail the queue holds for our own domains (bounces to local senders,
//! mostly) is stored locally instead of being sent over the network.

use async_trait::async_trait;
use mailgate_delivery::{LocalDelivery, RecipientCheck};
use mailgate_store::StoreResult;

use crate::client::RcptOutcome;

/// Local delivery as the queue runner needs it.
#[async_trait]
pub trait LocalHandoff: Send + Sync {
    /// Whether mail for `domain` stays here.
    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool>;
    /// Delivers to local recipients; one outcome per recipient, in order.
    async fn deliver(&self, sender: &str, recipients: &[String], body: &[u8]) -> Vec<RcptOutcome>;
}

#[async_trait]
impl LocalHandoff for LocalDelivery {
    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        LocalDelivery::is_local_domain(self, domain).await
    }

    async fn deliver(&self, sender: &str, recipients: &[String], body: &[u8]) -> Vec<RcptOutcome> {
        let mut outcomes = vec![RcptOutcome::Temporary(String::new()); recipients.len()];
        let mut resolved = Vec::new();
        let mut resolved_at = Vec::new();
        for (i, r) in recipients.iter().enumerate() {
            outcomes[i] = match self.check_recipient(r).await {
                Ok(RecipientCheck::Local(l)) => {
                    resolved.push(l);
                    resolved_at.push(i);
                    continue;
                }
                Ok(_) => RcptOutcome::Permanent("550 5.1.1 no such local user".into()),
                Err(e) => {
                    tracing::error!(error = %e, "relay: local recipient check failed");
                    RcptOutcome::Temporary("451 4.3.0 local error".into())
                }
            };
        }
        if resolved.is_empty() {
            return outcomes;
        }
        let result = LocalDelivery::deliver(self, sender, &resolved, body).await;
        for i in resolved_at {
            outcomes[i] = match &result {
                Ok(_) => RcptOutcome::Delivered("250 2.0.0 delivered locally".into()),
                Err(e) => {
                    tracing::error!(error = %e, "relay: local delivery failed");
                    RcptOutcome::Temporary("451 4.3.0 local delivery failed".into())
                }
            };
        }
        outcomes
    }
}
