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
use std::time::Duration;

use async_trait::async_trait;

use crate::StoreResult;

/// How long a claim on a message lasts when nobody says otherwise
/// ([`QueueStore::queue_due`]; the relay's `[queue] lease` default).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// A queued message's row number in the store (`queue list`'s first
/// column; the `queue` commands take it or the message's queue id,
/// [`new_message_id`]).
pub type QueueId = i64;

/// A new queue id: what the `250 2.0.0 Ok: queued as ID` reply, the
/// `Received:` field and every log line about the message
/// (`queue_id=ID`) name it by, and what it keeps in the outbound queue
/// ([`NewQueued::msg_id`]), like Postfix's queue id. 18 upper-case hex digits: the time in microseconds
/// and a per-process counter, so ids grow with time and do not repeat
/// within one process.
pub fn new_message_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    format!("{micros:014X}{:04X}", n & 0xFFFF)
}

/// Whether `s` has the form of a [`new_message_id`] (so that it is not
/// taken for a [`QueueId`]).
pub fn is_message_id(s: &str) -> bool {
    s.len() == 18
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// A recipient of a message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueuedRecipient {
    /// The address as given in `RCPT TO` (without angle brackets).
    pub address: String,
    /// The DSN `ORCPT` parameter (RFC 3461 §4.2) as received, e.g.
    /// `rfc822;alice@example.org`.
    pub orcpt: Option<String>,
    /// The DSN `NOTIFY` parameter (RFC 3461 §4.1) as received: `NEVER`
    /// or a comma list of `SUCCESS`, `FAILURE`, `DELAY`, e.g.
    /// `FAILURE,DELAY`; `None` means the default (failures and delays).
    pub notify: Option<String>,
    /// The next hop a routing plugin chose instead of MX routing (see
    /// [`NextHop`] for the accepted forms); `None`: the recipient's
    /// domain's MX hosts (or the configured smarthost).
    pub next_hop: Option<String>,
    /// For a local copy kept in the queue (its account was over quota):
    /// the folder and flags it was planned for, used when the queue hands
    /// it back to local delivery; `None`: INBOX, no flags.
    pub local: Option<LocalTarget>,
}

impl NewQueuedRecipient {
    /// A recipient without DSN parameters, routed by MX.
    pub fn new(address: impl Into<String>) -> NewQueuedRecipient {
        NewQueuedRecipient {
            address: address.into(),
            orcpt: None,
            notify: None,
            next_hop: None,
            local: None,
        }
    }
}

/// Where a queued local copy goes when the queue delivers it locally: the
/// folder (created if missing) and the flags a plugin chose for it when
/// the message arrived (`queue_rcpts.local_folder`, `local_flags`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    /// The folder, e.g. `Lists/rust`.
    pub folder: String,
    /// The flags the copy is stored with (system flags and keywords).
    pub flags: Vec<String>,
}

/// A next hop named by a routing plugin (`relay(host)`), in the forms of
/// Postfix's transport next hop:
///
/// - `host` or `host:port`: MX lookup of `host` (its own address when it
///   has no MX), like mail to a domain;
/// - `[host]` or `[host]:port`: the addresses (A/AAAA) of `host`, no MX
///   lookup;
/// - `ip`, `ip:port`, `[ip]`, `[ip]:port` (IPv6 always in brackets when a
///   port follows: `[::1]:2525`): that address, no DNS at all.
///
/// Without a port, the relay's configured port (`[relay] port`, 25) is
/// used. Host names are lower-cased; anything else (empty, spaces, a port
/// of 0, a name that is not a DNS name) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The host name or IP address, without brackets.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// Look up MX records for `host` (the unbracketed name form).
    pub mx: bool,
}

impl NextHop {
    /// Parses the forms above; the error says why not.
    pub fn parse(s: &str) -> Result<NextHop, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("the next hop is empty".into());
        }
        let (host, port, bracketed) = if let Some(rest) = t.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{t:?}: '[' without ']'"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{t:?}: expected ':port' after ']'"))?,
                ),
            };
            (inner, port, true)
        } else if t.parse::<std::net::IpAddr>().is_ok() {
            (t, None, false)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h, Some(p), false),
                None => (t, None, false),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("{t:?}: bad port {p:?}")),
            },
        };
        let host = host.strip_prefix("IPv6:").unwrap_or(host);
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(NextHop {
                host: ip.to_string(),
                port,
                mx: false,
            });
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!("{t:?}: {host:?} is not a host name or IP address"));
        }
        Ok(NextHop {
            host: name,
            port,
            mx: !bracketed,
        })
    }
}

impl std::fmt::Display for NextHop {
    /// The canonical form (what the queue stores and shows).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.mx, self.port) {
            (true, None) => write!(f, "{}", self.host),
            (true, Some(p)) => write!(f, "{}:{p}", self.host),
            (false, None) => write!(f, "[{}]", self.host),
            (false, Some(p)) => write!(f, "[{}]:{p}", self.host),
        }
    }
}

/// A message to put in the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueued {
    /// The queue id its log lines carry (`queue_id=`, [`new_message_id`]):
    /// the one the `250` named, or a new one for a report the relay
    /// writes; `None`: the store makes one.
    pub msg_id: Option<String>,
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
    /// The DSN `ENVID` (RFC 3461 §4.4) as received (xtext, e.g.
    /// `QQ314159+2B1`), if the client gave one.
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
    /// DSN `ORCPT`, as received (`addr-type;xtext`).
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
    /// The next hop chosen for it by a routing plugin (canonical
    /// [`NextHop`] text); `None`: MX routing.
    pub next_hop: Option<String>,
    /// Where its local copy goes (see [`NewQueuedRecipient::local`]).
    pub local: Option<LocalTarget>,
}

/// A queued message without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Its id.
    pub id: QueueId,
    /// Its queue id in the log ([`NewQueued::msg_id`]); the [`QueueId`]
    /// in decimal for a message queued by a version without them.
    pub msg_id: String,
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
    /// Set when a delay warning was due with this attempt (whether or
    /// not a recipient's NOTIFY wanted it): none is sent again.
    pub warned: bool,
    /// The DSNs this attempt owes (failures, successes, the delay
    /// warning), enqueued in the same transaction as the recipients'
    /// statuses, so each event of a recipient is reported exactly once.
    /// Not enqueued if the message is gone.
    pub notices: Vec<NewQueued>,
}

/// What the submission side needs: put a message in the queue, durably.
#[async_trait]
pub trait OutboundQueue: Send + Sync {
    /// Stores the message and its recipients durably and returns its id.
    /// The message is due at once (`created`). Fails with
    /// [`crate::StoreError::Invalid`] if there is no recipient, or a
    /// recipient's next hop is not a [`NextHop`] (stored in its canonical
    /// form otherwise).
    async fn enqueue(&self, message: NewQueued) -> StoreResult<QueueId>;
}

/// Builds the success reports local delivery owes (RFC 3461 `NOTIFY=SUCCESS`,
/// RFC 3464 `Action: delivered`). Implemented by the relay (which writes
/// every other report too); the delivery side holds it as a trait object,
/// so it needs no dependency on the relay.
pub trait DeliveryReports: Send + Sync {
    /// The `delivered` report about `recipients` of `message` (the ones
    /// now stored in a local mailbox), to enqueue in the same step as the
    /// delivery; `None` when none is owed (the sender is `<>`, or no
    /// recipient's `NOTIFY` holds `SUCCESS`). Only `sender`, `envid`,
    /// `ret_full`, `smtputf8`, `eight_bit`, `created` and `raw` of
    /// `message` are read (its own recipient list is not).
    fn delivered(
        &self,
        message: &NewQueued,
        recipients: &[NewQueuedRecipient],
        now: i64,
    ) -> Option<NewQueued>;

    /// The `failed` report about copies of `message` that were lost on
    /// the way to a local mailbox while the message itself was accepted
    /// (an alias naming an account that no longer exists), each with the
    /// reply that explains it; `None` when none is owed (the sender is
    /// `<>`, or no recipient's `NOTIFY` asks for failures). Reads
    /// `message` as [`DeliveryReports::delivered`] does. The default
    /// makes none.
    fn failed(
        &self,
        message: &NewQueued,
        recipients: &[FailedRecipient],
        now: i64,
    ) -> Option<NewQueued> {
        let _ = (message, recipients, now);
        None
    }
}

/// A recipient a `failed` report is about ([`DeliveryReports::failed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The address that failed, with the DSN parameters of the envelope
    /// recipient it came from (`ORCPT` names that one).
    pub recipient: NewQueuedRecipient,
    /// Why, as an SMTP reply (`550 5.1.1 ...`): its status code goes in
    /// the report's `Status:` field.
    pub reply: String,
}

/// The queue runner's and the admin CLI's view of the queue.
#[async_trait]
pub trait QueueStore: OutboundQueue {
    /// Messages not held, with a pending recipient, whose next attempt is
    /// at or before `now`; oldest due first, at most `limit`. A store that
    /// several nodes share also *claims* what it returns, so that no other
    /// node is given the same messages until this node records an attempt
    /// or the claim runs out (PostgreSQL: a lease, see
    /// `postgres::queue`); the embedded store has one runner and claims
    /// nothing.
    async fn queue_due(&self, now: i64, limit: usize) -> StoreResult<Vec<QueueEntry>>;
    /// [`QueueStore::queue_due`] with claims that last `lease` from `now`
    /// (`queue_due` itself claims for [`DEFAULT_LEASE`]). A shared store
    /// also returns messages left with no pending recipient (a node died
    /// between recording their last outcomes and removing them), for the
    /// caller to remove with [`QueueStore::queue_complete`]. The default,
    /// for a store that claims nothing, is `queue_due`.
    async fn queue_claim(
        &self,
        now: i64,
        limit: usize,
        lease: Duration,
    ) -> StoreResult<Vec<QueueEntry>> {
        let _ = lease;
        self.queue_due(now, limit).await
    }
    /// Extends this node's claims on `ids` to `now + lease` (a delivery
    /// attempt still under way) and returns the ids whose claim this node
    /// still holds; the others were taken over by another node after
    /// their claim ran out, or are gone. The default, for a store that
    /// claims nothing, returns every id.
    async fn queue_renew(
        &self,
        ids: &[QueueId],
        now: i64,
        lease: Duration,
    ) -> StoreResult<Vec<QueueId>> {
        let _ = (now, lease);
        Ok(ids.to_vec())
    }
    /// The earliest `next_attempt` of a message not held, if any (the
    /// runner sleeps until then); for a message claimed by a node, the
    /// end of its claim if that is later.
    async fn queue_next_due(&self) -> StoreResult<Option<i64>>;
    /// The row of the message whose log queue id is `msg_id`
    /// ([`new_message_id`]), if it is queued.
    async fn queue_find(&self, msg_id: &str) -> StoreResult<Option<QueueId>>;
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

#[cfg(test)]
mod tests {
    use super::NextHop;

    fn hop(s: &str) -> (String, Option<u16>, bool) {
        let h = NextHop::parse(s).unwrap();
        (h.host, h.port, h.mx)
    }

    #[test]
    fn next_hop_forms() {
        assert_eq!(hop("Relay.Example."), ("relay.example".into(), None, true));
        assert_eq!(
            hop("relay.example:587"),
            ("relay.example".into(), Some(587), true)
        );
        assert_eq!(
            hop("[relay.example]"),
            ("relay.example".into(), None, false)
        );
        assert_eq!(
            hop("[relay.example]:2525"),
            ("relay.example".into(), Some(2525), false)
        );
        assert_eq!(hop("127.0.0.3"), ("127.0.0.3".into(), None, false));
        assert_eq!(
            hop("127.0.0.3:2525"),
            ("127.0.0.3".into(), Some(2525), false)
        );
        assert_eq!(
            hop("[127.0.0.3]:2525"),
            ("127.0.0.3".into(), Some(2525), false)
        );
        assert_eq!(hop("[::1]:2525"), ("::1".into(), Some(2525), false));
        assert_eq!(hop("[IPv6:::1]"), ("::1".into(), None, false));
        assert_eq!(hop("::1"), ("::1".into(), None, false));
        for bad in [
            "",
            " ",
            "host:",
            "host:0",
            "host:70000",
            "[host",
            "[host]x",
            "[host]:",
            "a b",
            "-bad.example",
            "bad..example",
            "host:25:25",
            "ex@mple",
            "[]",
        ] {
            assert!(NextHop::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_hop_canonical_text_parses_back() {
        for s in [
            "relay.example",
            "relay.example:587",
            "[relay.example]",
            "[relay.example]:25",
            "[127.0.0.3]:2525",
            "[::1]:2525",
            "[10.0.0.1]",
        ] {
            let h = NextHop::parse(s).unwrap();
            assert_eq!(h.to_string(), s);
            assert_eq!(NextHop::parse(&h.to_string()).unwrap(), h);
        }
        assert_eq!(
            NextHop::parse("127.0.0.3:2525").unwrap().to_string(),
            "[127.0.0.3]:2525"
        );
    }
}
