//! Exclusive maildrop locks, one per account.
//!
//! RFC 1939 §8: "the POP3 server then acquires an exclusive-access lock on
//! the maildrop, as necessary to prevent messages from being modified or
//! removed before the session enters the UPDATE state." Two POP3 sessions
//! of one account would otherwise hand out the same message numbers for
//! different messages after one of them expunged.
//!
//! The lock is the store's ([`MaildropLocks`], which every
//! [`mailgate_store::Backend`] is): in this process's memory on SQLite,
//! a PostgreSQL advisory lock that holds across nodes on a shared store.
//! This crate does not know which. The lock is held by a
//! [`MaildropGuard`], so a session that ends by a dropped connection, a
//! timeout or a panic releases it all the same. [`InProcessLocks`] is what
//! a [`crate::Pop3Context`] has until it is given the store's.

pub use mailgate_store::maildrop_lock::{InProcessLocks, MaildropGuard, MaildropLocks};
