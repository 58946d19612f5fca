//! Storage quotas (`mailgate user quota`): the one rule every path that
//! stores a message for an account applies (SMTP, LMTP, the Sent copy,
//! forwards, DSNs and bounces through the queue, IMAP APPEND/COPY/MOVE).
//! The sum and the lock are `mailgate_store::quota` (re-exported here),
//! so that IMAP, which does not deliver, shares them; this module adds
//! what delivery needs on top: an account's [`Limit`] as recipient
//! resolution found it, and the RCPT-time check.
//!
//! The check and the store are one step for every writer of this
//! process: [`QuotaLocks`] (one per server, shared by the room and the
//! IMAP sessions) holds each account with a quota from its check until
//! its copy is stored, so two deliveries, or a delivery and an APPEND,
//! cannot both take the last bytes (accounts without a quota take no
//! lock and keep the store's group commit). Another process (`mailgate
//! import`) checks without it: there the overshoot is at most one
//! message, as with Dovecot's quota plugin.

pub use mailgate_store::quota::{check, usage, QuotaCheck, QuotaLocks};

use mailgate_store::{AccountId, Store, StoreResult};

/// An account's quota, as recipient resolution found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The account.
    pub account: AccountId,
    /// Its address (where an over-quota copy is queued for redelivery).
    pub address: String,
    /// The limit in bytes.
    pub bytes: u64,
}

/// The RCPT-time check (RFC 1870 §6.3 spirit: refuse early what would be
/// refused after the data): `Full` when every account the recipient
/// reaches is full already (no byte left), or cannot take the `SIZE=`
/// the client announced. An alias list is refused only if none of its
/// accounts has room.
pub async fn check_recipient(
    store: &dyn Store,
    recipient: &crate::LocalRecipient,
    size: Option<u64>,
) -> StoreResult<QuotaCheck> {
    if recipient.limits.len() < recipient.accounts.len() {
        // One account has no quota: it always has room.
        return Ok(QuotaCheck::Fits);
    }
    let mut last = QuotaCheck::Fits;
    for l in &recipient.limits {
        // "Already over": not even one more byte fits.
        match check(store, l.account, l.bytes, size.unwrap_or(1)).await? {
            QuotaCheck::Fits => return Ok(QuotaCheck::Fits),
            full => last = full,
        }
    }
    Ok(last)
}
