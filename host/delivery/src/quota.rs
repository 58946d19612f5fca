//! Storage quotas (`mailgate user quota`): the one rule every path that
//! stores a message for an account applies (SMTP, LMTP, the Sent copy,
//! forwards, DSNs and bounces through the queue; IMAP APPEND/COPY apply
//! the same sum in `mailgate_imap`).
//!
//! An account's usage is the sum of the sizes of its messages in all its
//! mailboxes (what IMAP GETQUOTAROOT reports). A copy fits when usage
//! plus its size stays at or under the limit.
//!
//! The check and the store are one step for the deliveries of this
//! process: [`QuotaLocks`] holds each account with a quota from its check
//! until its copy is stored, so two deliveries cannot both take the last
//! bytes (deliveries to accounts without a quota take no lock and keep
//! the store's group commit). IMAP APPEND and another process (`mailgate
//! import`) check without it: there the overshoot is at most one message
//! each, as with Dovecot's quota plugin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailgate_store::{AccountId, Store, StoreResult};
use tokio::sync::OwnedMutexGuard;

/// One lock per account with a quota, held from the quota check until
/// the copy is stored.
#[derive(Default)]
pub struct QuotaLocks(Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<()>>>>);

impl QuotaLocks {
    /// Locks `accounts` (in id order, so that two deliveries never wait
    /// for each other's second lock); released when the guards drop.
    pub async fn lock(
        &self,
        accounts: impl IntoIterator<Item = AccountId>,
    ) -> Vec<OwnedMutexGuard<()>> {
        let mut ids: Vec<AccountId> = accounts.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let locks: Vec<_> = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            // Forget the locks nobody holds or waits for.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            ids.iter()
                .map(|id| map.entry(*id).or_default().clone())
                .collect()
        };
        let mut guards = Vec::with_capacity(locks.len());
        for l in locks {
            guards.push(l.lock_owned().await);
        }
        guards
    }
}

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

/// Whether an account has room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaCheck {
    /// It fits (or the account has no quota).
    Fits,
    /// It would pass the limit.
    Full {
        /// Bytes used now.
        used: u64,
        /// The limit.
        limit: u64,
    },
}

/// The bytes `account` uses, over all its mailboxes.
pub async fn usage(store: &dyn Store, account: AccountId) -> StoreResult<u64> {
    Ok(store
        .list_mailboxes(account)
        .await?
        .iter()
        .map(|m| m.size)
        .sum())
}

/// Whether `size` more bytes fit under `limit` for `account`.
pub async fn check(
    store: &dyn Store,
    account: AccountId,
    limit: u64,
    size: u64,
) -> StoreResult<QuotaCheck> {
    let used = usage(store, account).await?;
    Ok(if used.saturating_add(size) > limit {
        QuotaCheck::Full { used, limit }
    } else {
        QuotaCheck::Fits
    })
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
