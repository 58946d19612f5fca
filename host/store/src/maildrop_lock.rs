//! The POP3 maildrop lock: one session at a time per account, on every
//! node that shares the store.
//!
//! RFC 1939 §8: "the POP3 server then acquires an exclusive-access lock on
//! the maildrop, as necessary to prevent messages from being modified or
//! removed before the session enters the UPDATE state." Two POP3 sessions
//! of one account would otherwise hand out the same message numbers for
//! different messages after one of them expunged.
//!
//! [`MaildropLocks`] is the seam: the POP3 server asks the store
//! ([`crate::Backend`] is a `MaildropLocks`) and never knows which backend
//! answers.
//! - SQLite (one server per data directory): [`InProcessLocks`], a set
//!   of account ids in memory.
//! - PostgreSQL: a session-level advisory lock per account, held on one
//!   connection per node that is kept for the locks alone (see
//!   [`crate::postgres`]'s `maildrop_lock` module), so the lock holds
//!   across nodes and a node that dies releases its locks with its
//!   connection.
//!
//! A lock is held by a [`MaildropGuard`]: a session that ends by a
//! dropped connection, a timeout or a panic releases it all the same.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::{AccountId, StoreResult};

/// Takes and reports maildrop locks.
#[async_trait]
pub trait MaildropLocks: Send + Sync {
    /// Takes the maildrop lock of `account`: `Ok(None)` if a session
    /// (on this node or another) holds it; an error if the store cannot
    /// tell now (the database is unreachable).
    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<Option<MaildropGuard>>;

    /// Whether a session of this process holds the lock of `account`.
    fn maildrop_locked_here(&self, account: AccountId) -> bool;
}

/// What a store keeps of a lock it handed out: how to give it back and
/// how to check it.
pub trait LockHandle: Send + Sync {
    /// Gives the lock back (called once); the receiver, if any, is told
    /// when the store has.
    fn release(self: Box<Self>) -> Option<oneshot::Receiver<()>>;

    /// Asks the store whether the lock still holds; `None`: the guard's
    /// flag is the whole truth.
    fn verify(&self) -> Option<oneshot::Receiver<bool>> {
        None
    }
}

/// Holds the maildrop lock of one account until dropped.
pub struct MaildropGuard {
    account: AccountId,
    /// Cleared when the lock was lost while held (the connection that
    /// held it on the database broke).
    held: Arc<AtomicBool>,
    handle: Option<Box<dyn LockHandle>>,
}

impl MaildropGuard {
    /// A guard of `account`'s lock; `handle` gives it back once, when the
    /// guard is dropped or [`MaildropGuard::release`]d. `held` says
    /// whether the lock still holds.
    pub fn new(
        account: AccountId,
        held: Arc<AtomicBool>,
        handle: impl LockHandle + 'static,
    ) -> MaildropGuard {
        MaildropGuard {
            account,
            held,
            handle: Some(Box::new(handle)),
        }
    }

    /// The account whose maildrop is locked.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Gives the lock back and returns once the store has (dropping the
    /// guard gives it back too, but a shared store may take a moment
    /// after). POP3 calls this before it answers QUIT, so that a client
    /// that logs in again at once, on any node, finds the maildrop free.
    pub async fn release(mut self) {
        if let Some(done) = self.handle.take().and_then(|h| h.release()) {
            let _ = done.await;
        }
    }

    /// Whether the lock still holds, asking the store (one round trip on
    /// a shared store): POP3 asks before it removes anything at QUIT, so
    /// that a lock lost a moment ago is not missed.
    pub async fn verify(&self) -> bool {
        if !self.is_held() {
            return false;
        }
        match self.handle.as_ref().and_then(|h| h.verify()) {
            Some(answer) => answer.await.unwrap_or(false),
            None => self.is_held(),
        }
    }

    /// Whether the lock still holds. `false` only on a shared store whose
    /// lock connection broke while the session ran: another node may have
    /// taken the lock since.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for MaildropGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildropGuard")
            .field("account", &self.account)
            .field("held", &self.is_held())
            .finish()
    }
}

impl Drop for MaildropGuard {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.release();
        }
    }
}

/// The locks of one process, in memory (the SQLite store's: one server
/// per data directory, so the process is the whole world).
#[derive(Debug, Default)]
pub struct InProcessLocks {
    held: Arc<Mutex<HashSet<AccountId>>>,
}

impl InProcessLocks {
    /// No lock held.
    pub fn new() -> InProcessLocks {
        InProcessLocks::default()
    }

    /// Takes the lock of `account`, or `None` if another session has it.
    pub fn try_lock(&self, account: AccountId) -> Option<MaildropGuard> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if !held.insert(account) {
            return None;
        }
        Some(MaildropGuard::new(
            account,
            Arc::new(AtomicBool::new(true)),
            InProcessHandle {
                set: Arc::clone(&self.held),
                account,
            },
        ))
    }

    /// Whether some session holds the lock of `account`.
    pub fn is_locked(&self, account: AccountId) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&account)
    }
}

/// An in-process lock: an entry of the set.
struct InProcessHandle {
    set: Arc<Mutex<HashSet<AccountId>>>,
    account: AccountId,
}

impl LockHandle for InProcessHandle {
    fn release(self: Box<Self>) -> Option<oneshot::Receiver<()>> {
        // A poisoned mutex still holds a valid set; never leave a lock
        // behind because some other thread panicked.
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.account);
        None
    }
}

#[async_trait]
impl MaildropLocks for InProcessLocks {
    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<Option<MaildropGuard>> {
        Ok(self.try_lock(account))
    }

    fn maildrop_locked_here(&self, account: AccountId) -> bool {
        self.is_locked(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_per_account_and_released_on_drop() {
        let locks = InProcessLocks::new();
        let a = locks.try_lock(1).unwrap();
        assert_eq!(a.account(), 1);
        assert!(a.is_held());
        assert!(locks.try_lock(1).is_none());
        let b = locks.try_lock(2).unwrap();
        assert!(locks.is_locked(1) && locks.is_locked(2));
        drop(a);
        assert!(!locks.is_locked(1));
        assert!(locks.try_lock(1).is_some()); // dropped at once again
        drop(b);
        assert!(!locks.is_locked(2));
    }

    #[tokio::test]
    async fn release_gives_the_lock_back() {
        let locks = InProcessLocks::new();
        let a = locks.lock_maildrop(7).await.unwrap().unwrap();
        assert!(a.verify().await);
        assert!(locks.lock_maildrop(7).await.unwrap().is_none());
        a.release().await;
        assert!(!locks.maildrop_locked_here(7));
        assert!(locks.lock_maildrop(7).await.unwrap().is_some());
    }
}
