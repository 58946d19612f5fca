//! The outbound queue: messages accepted for remote recipients, kept
//! durably until every recipient has a final outcome.
//!
//! # Role
//! The SMTP submission session (or a routing plugin) hands a message for
//! remote recipients to [`OutboundQueue::enqueue`] and may say `250` as soon
//! as it returns: the message is then committed to disk. The relay's queue
//! runner (`mailgate-relay`) drives the rest through [`QueueStore`]: it asks
//! for the messages that are due, tries them, records each attempt's
//! per-recipient outcomes, and finally removes the message, in the same
//! transaction enqueueing the bounce (DSN) if one is owed, so that a crash
//! can neither lose a bounce nor send it twice.
//!
//! # Model
//! A queued message has one body, one envelope sender (empty for `<>`) and
//! one or more recipients. The retry schedule is per message
//! (`attempts`, `next_attempt`); the outcome is per recipient
//! ([`RecipientStatus`]): a recipient delivered or failed for good is never
//! tried again, so a retry after a partial success sends no duplicates.
//! Times are seconds since the Unix epoch, always passed in by the caller
//! (the relay's clock is injectable for tests).

use std::sync::Arc;

use async_trait::async_trait;

use crate::StoreResult;

/// A queued message's id in the store.
pub type QueueId = i64;

/// A recipient of a message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueuedRecipient {
    /// The address as given in `RCPT TO` (without angle brackets).
    pub address: String,
    /// The DSN `ORCPT` parameter (RFC 3461 §4.2) as received, e.g.
    /// `rfc822;alice@example.org`.
    pub orcpt: Option<String>,
    /// The DSN `NOTIFY` parameter (RFC 3461 §4.1) as received, e.g.
    /// `FAILURE,DELAY`; `None` means the default (failures only).
    pub notify: Option<String>,
}

impl NewQueuedRecipient {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> NewQueuedRecipient {
        NewQueuedRecipient {
            address: address.into(),
            orcpt: None,
            notify: None,
        }
    }
}

/// A message to put in the outbound queue.
#[derive(Debug, Clone)]
pub struct NewQueued {
    /// The envelope sender without angle brackets; empty for `<>` (a
    /// bounce, which is never bounced in turn).
    pub sender: String,
    /// The recipients; at least one.
    pub recipients: Vec<NewQueuedRecipient>,
    /// The message as it will be sent (trace headers included, no
    /// dot-stuffing).
    pub raw: Arc<Vec<u8>>,
    /// When it was accepted, seconds since the Unix epoch; also when its
    /// first attempt is due.
    pub created: i64,
    /// The DSN `ENVID` (RFC 3461 §4.4), if the client gave one.
    pub envid: Option<String>,
    /// The DSN `RET` (RFC 3461 §4.3): `true` for `FULL`, `false` for
    /// `HDRS`, `None` when not given.
    pub ret_full: Option<bool>,
    /// The message needs SMTPUTF8 (RFC 6531): the envelope or headers hold
    /// UTF-8.
    pub smtputf8: bool,
    /// The body holds 8-bit data (`BODY=8BITMIME`, RFC 6152).
    pub eight_bit: bool,
}

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientStatus {
    /// Not delivered yet; tried again at the message's next attempt.
    Pending,
    /// Accepted by the next hop (or delivered locally): final.
    Delivered,
    /// Failed for good: final; a DSN is owed unless the sender is `<>`.
    Failed,
}

impl RecipientStatus {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "pending",
            RecipientStatus::Delivered => "delivered",
            RecipientStatus::Failed => "failed",
        }
    }
    /// Parses the stored word.
    pub fn parse(s: &str) -> Option<RecipientStatus> {
        match s {
            "pending" => Some(RecipientStatus::Pending),
            "delivered" => Some(RecipientStatus::Delivered),
            "failed" => Some(RecipientStatus::Failed),
            _ => None,
        }
    }
    /// Whether no further attempt will be made.
    pub fn is_final(self) -> bool {
        self != RecipientStatus::Pending
    }
}

/// One recipient of a queued message and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// Its position in the message's recipient list (0-based); stable.
    pub index: u32,
    /// The address.
    pub address: String,
    /// The domain part, lower-case (what MX routing uses).
    pub domain: String,
    /// DSN `ORCPT`, as received.
    pub orcpt: Option<String>,
    /// DSN `NOTIFY`, as received.
    pub notify: Option<String>,
    /// Where it stands.
    pub status: RecipientStatus,
    /// The last reply or error about it (e.g. `550 5.1.1 No such user`).
    pub last_reply: Option<String>,
    /// The host that gave `last_reply`, if it came from a remote server.
    pub remote_host: Option<String>,
    /// When the status last changed, seconds since the Unix epoch.
    pub updated: Option<i64>,
}

/// A queued message without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Its id.
    pub id: QueueId,
    /// The envelope sender; empty for `<>`.
    pub sender: String,
    /// Size of the body in bytes.
    pub size: u64,
    /// When it was accepted.
    pub created: i64,
    /// When the next attempt is due.
    pub next_attempt: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Held by the administrator: not tried until released.
    pub held: bool,
    /// Whether a delay warning was sent already.
    pub warned: bool,
    /// DSN `ENVID`.
    pub envid: Option<String>,
    /// DSN `RET`.
    pub ret_full: Option<bool>,
    /// Needs SMTPUTF8.
    pub smtputf8: bool,
    /// Holds 8-bit data.
    pub eight_bit: bool,
    /// Its recipients in their original order.
    pub recipients: Vec<QueuedRecipient>,
}

impl QueueEntry {
    /// The recipients still pending.
    pub fn pending(&self) -> impl Iterator<Item = &QueuedRecipient> {
        self.recipients
            .iter()
            .filter(|r| r.status == RecipientStatus::Pending)
    }
    /// Whether every recipient has a final outcome.
    pub fn is_finished(&self) -> bool {
        self.recipients.iter().all(|r| r.status.is_final())
    }
}

/// The outcome of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientUpdate {
    /// The recipient's [`QueuedRecipient::index`].
    pub index: u32,
    /// Its new status (`Pending` after a temporary failure).
    pub status: RecipientStatus,
    /// The reply or error to remember.
    pub reply: Option<String>,
    /// The host that answered, if remote.
    pub remote_host: Option<String>,
}

/// What one attempt did to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt ended.
    pub at: i64,
    /// Per-recipient outcomes; recipients not named keep their state.
    pub updates: Vec<RecipientUpdate>,
    /// When to try again (ignored once no recipient is pending).
    pub next_attempt: i64,
    /// Set when a delay warning was sent with this attempt.
    pub warned: bool,
}

/// What the submission side needs: put a message in the queue, durably.
#[async_trait]
pub trait OutboundQueue: Send + Sync {
    /// Stores the message and its recipients durably and returns its id.
    /// The message is due at once (`created`). Fails with
    /// [`crate::StoreError::Invalid`] if there is no recipient.
    async fn enqueue(&self, message: NewQueued) -> StoreResult<QueueId>;
}

/// The queue runner's and the admin CLI's view of the queue.
#[async_trait]
pub trait QueueStore: OutboundQueue {
    /// Messages not held, with a pending recipient, whose next attempt is
    /// at or before `now`; oldest due first, at most `limit`.
    async fn queue_due(&self, now: i64, limit: usize) -> StoreResult<Vec<QueueEntry>>;
    /// The earliest `next_attempt` of a message not held, if any (the
    /// runner sleeps until then).
    async fn queue_next_due(&self) -> StoreResult<Option<i64>>;
    /// One message without its body.
    async fn queue_entry(&self, id: QueueId) -> StoreResult<Option<QueueEntry>>;
    /// The body of one message.
    async fn queue_body(&self, id: QueueId) -> StoreResult<Option<Vec<u8>>>;
    /// Every queued message, oldest first (`mailgate queue list`).
    async fn queue_list(&self) -> StoreResult<Vec<QueueEntry>>;
    /// Records an attempt: applies the per-recipient updates, counts the
    /// attempt and sets the next one. Returns the entry as it now stands,
    /// `None` if the message is gone (deleted meanwhile).
    async fn queue_record_attempt(
        &self,
        id: QueueId,
        attempt: AttemptRecord,
    ) -> StoreResult<Option<QueueEntry>>;
    /// Removes a finished message and, in the same transaction, enqueues
    /// `bounce` (the DSN owed to its sender) if given. Returns the bounce's
    /// id if one was enqueued; if the message was already gone (deleted by
    /// the administrator meanwhile) nothing is enqueued.
    async fn queue_complete(
        &self,
        id: QueueId,
        bounce: Option<NewQueued>,
    ) -> StoreResult<Option<QueueId>>;
    /// Holds (`true`) or releases (`false`) a message. `false` if there is
    /// no such message.
    async fn queue_set_held(&self, id: QueueId, held: bool) -> StoreResult<bool>;
    /// Deletes a message without any bounce. `false` if there was none.
    async fn queue_delete(&self, id: QueueId) -> StoreResult<bool>;
    /// Makes one message (or every message not held, for `None`) due at
    /// `now`. Returns how many were changed.
    async fn queue_flush(&self, id: Option<QueueId>, now: i64) -> StoreResult<usize>;
}
