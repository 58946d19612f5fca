//! Exclusive maildrop locks, one per account.
//!
//! RFC 1939 §8: "the POP3 server then acquires an exclusive-access lock on
//! the maildrop, as necessary to prevent messages from being modified or
//! removed before the session enters the UPDATE state." Two POP3 sessions
//! of one account would otherwise hand out the same message numbers for
//! different messages after one of them expunged.
//!
//! The lock lives in this process only (there is one POP3 listener per
//! store). It is held by a [`MaildropGuard`], so a session that ends by a
//! dropped connection, a timeout or a panic releases it all the same.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use mailgate_store::AccountId;

/// The set of accounts whose maildrop is open in some session.
#[derive(Debug, Default)]
pub struct MaildropLocks {
    held: Mutex<HashSet<AccountId>>,
}

impl MaildropLocks {
    /// No lock held.
    pub fn new() -> MaildropLocks {
        MaildropLocks::default()
    }

    /// Takes the lock of `account`, or `None` if another session has it.
    pub fn try_lock(self: &Arc<Self>, account: AccountId) -> Option<MaildropGuard> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.insert(account) {
            Some(MaildropGuard {
                locks: Arc::clone(self),
                account,
            })
        } else {
            None
        }
    }

    /// Whether some session holds the lock of `account`.
    pub fn is_locked(&self, account: AccountId) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&account)
    }
}

/// Holds the maildrop lock of one account until dropped.
#[derive(Debug)]
pub struct MaildropGuard {
    locks: Arc<MaildropLocks>,
    account: AccountId,
}

impl MaildropGuard {
    /// The account whose maildrop is locked.
    pub fn account(&self) -> AccountId {
        self.account
    }
}

impl Drop for MaildropGuard {
    fn drop(&mut self) {
        // A poisoned mutex still holds a valid set; never leave a lock
        // behind because some other thread panicked.
        self.locks
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_per_account_and_released_on_drop() {
        let locks = Arc::new(MaildropLocks::new());
        let a = locks.try_lock(1).unwrap();
        assert_eq!(a.account(), 1);
        assert!(locks.try_lock(1).is_none());
        let b = locks.try_lock(2).unwrap();
        assert!(locks.is_locked(1) && locks.is_locked(2));
        drop(a);
        assert!(!locks.is_locked(1));
        assert!(locks.try_lock(1).is_some()); // dropped at once again
        drop(b);
        assert!(!locks.is_locked(2));
    }
}
