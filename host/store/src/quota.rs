//! Storage quotas (`mailgate user quota`): the sum every path that adds
//! mail to an account checks, and the lock that makes the check and the
//! store one step.
//!
//! An account's usage is the sum of the sizes of its messages in all its
//! mailboxes (what IMAP GETQUOTAROOT reports). A copy fits when usage
//! plus its size stays at or under the limit.
//!
//! [`QuotaLocks`] holds an account with a quota from its check until its
//! copy is stored, so two writers in this process cannot both take its
//! last bytes: deliveries (`mailgate_delivery`'s room and the queue's
//! local hand-off), the Sent copy, and IMAP APPEND, COPY and MOVE share
//! one `QuotaLocks` per server. Writes to accounts without a quota take
//! no lock and keep the store's group commit. Another process writing to
//! the same data directory (`mailgate import`) checks without it: there
//! the overshoot is at most one message, as with Dovecot's quota plugin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::{AccountId, Store, StoreResult};

/// One lock per account with a quota, held from the quota check until
/// the copy is stored.
#[derive(Default)]
pub struct QuotaLocks(Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<()>>>>);

impl std::fmt::Debug for QuotaLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaLocks").finish_non_exhaustive()
    }
}

impl QuotaLocks {
    /// Locks `accounts` (in id order, so that two writers never wait for
    /// each other's second lock); released when the guards drop.
    pub async fn lock(
        &self,
        accounts: impl IntoIterator<Item = AccountId>,
    ) -> Vec<OwnedMutexGuard<()>> {
        let mut ids: Vec<AccountId> = accounts.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Vec::new();
        }
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
