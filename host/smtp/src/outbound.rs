//! The hand-off of mail for other domains to the outbound queue.
//!
//! Only an authenticated submission may name recipients outside the local
//! domains. The session collects them and, at the end of the message,
//! gives the message to an [`OutboundQueue`]; `250` is said only after
//! [`OutboundQueue::enqueue`] returned, so the queue must have made the
//! message durable by then (RFC 5321 §6.1). The queue itself (retries,
//! DNS, delivery status notifications) lives in the relay crate; the
//! binary connects the two.

use async_trait::async_trait;

/// Why the queue could not take a message; the client gets `451 4.3.0`
/// and tries again later.
#[derive(Debug, thiserror::Error)]
#[error("outbound queue: {0}")]
pub struct QueueError(pub String);

/// The id the queue gave a message (for logs and the `250` reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueId(pub String);

/// The outbound queue, as the SMTP session sees it.
#[async_trait]
pub trait OutboundQueue: Send + Sync {
    /// Takes `data` (the message with our `Received:` header) from
    /// `mail_from` (empty for `<>`) for the remote `recipients`, each with
    /// the next hop a routing plugin chose (`relay(host)`), or `None` for
    /// MX routing. Must return only once the message is durable.
    async fn enqueue(
        &self,
        mail_from: &str,
        recipients: &[(String, Option<String>)],
        data: &[u8],
    ) -> Result<QueueId, QueueError>;
}
