//! The verified-credential cache: repeated logins without Argon2id.
//!
//! After a password has been verified against an account's stored hash,
//! the cache keeps, for `ttl`, one keyed hash per account:
//! `HMAC-SHA256(key, account, stored hash, password)`, with a key drawn at
//! random when the process starts and never written anywhere. A later
//! login whose account, stored hash (read from the store at every login)
//! and password give the same HMAC is right without Argon2id; anything
//! else is verified as usual. In the spirit of Dovecot's `auth_cache`:
//! - neither the password nor anything derived from it without the secret
//!   key is kept; a memory dump does not give an offline guessing target
//!   cheaper than the Argon2id hashes in the store;
//! - a password change or an account removal takes effect at once, in
//!   this process or another one (the `mailgate user` command): the
//!   stored hash is part of what is hashed, and a removed account has no
//!   stored hash to look up;
//! - failures are never cached (and still count in the limiter, which
//!   runs before the cache is looked at);
//! - at most [`MAX_ENTRIES`] entries (one per account that logged in
//!   within `ttl`); when full, expired entries go first, then those
//!   closest to expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::SystemRandom;

/// Entries kept at most (one per account).
pub const MAX_ENTRIES: usize = 100_000;

/// Keyed hashes of verified credentials, per account.
pub struct CredentialCache {
    key: hmac::Key,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    tag: [u8; 32],
    expires: Instant,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CredentialCache {
    /// A cache that remembers verified credentials for `ttl` (zero: never).
    pub fn new(ttl: Duration) -> CredentialCache {
        let (key, ttl) = match hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()) {
            Ok(key) => (key, ttl),
            Err(_) => {
                // Without a secret key the entries would be an offline
                // guessing target: the cache stays off.
                tracing::error!("no random key for the credential cache; cache off");
                (hmac::Key::new(hmac::HMAC_SHA256, &[0; 32]), Duration::ZERO)
            }
        };
        CredentialCache {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long entries live (zero: the cache is off).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn tag(&self, account: &str, stored_hash: &str, password: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length-prefixed, so that no two different triples hash alike.
        for part in [account, stored_hash] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.update(password.as_bytes());
        ctx.sign()
    }

    /// Whether `password` was verified for `account` with this
    /// `stored_hash` within the last `ttl`.
    pub fn contains(&self, account: &str, stored_hash: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entries.get(account) else {
            return false;
        };
        if entry.expires <= now {
            entries.remove(account);
            return false;
        }
        let tag = entry.tag;
        drop(entries);
        constant_time_eq(self.tag(account, stored_hash, password).as_ref(), &tag)
    }

    /// Remembers that `password` is right for `account` with `stored_hash`.
    pub fn insert(&self, account: &str, stored_hash: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut tag = [0u8; 32];
        tag.copy_from_slice(self.tag(account, stored_hash, password).as_ref());
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(account) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            account.to_string(),
            Entry {
                tag,
                expires: now + self.ttl,
            },
        );
    }

    /// Entries held now (expired ones included until looked at).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Equality of two tags in a time that does not depend on where they
/// differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_only_for_the_same_account_hash_and_password() {
        let c = CredentialCache::new(Duration::from_secs(60));
        assert!(!c.contains("a@x", "$h1", "pw"));
        c.insert("a@x", "$h1", "pw");
        assert!(c.contains("a@x", "$h1", "pw"));
        assert!(!c.contains("a@x", "$h1", "pW"));
        assert!(
            !c.contains("a@x", "$h2", "pw"),
            "a new stored hash must miss"
        );
        assert!(!c.contains("b@x", "$h1", "pw"));
        // Field boundaries are part of the hash.
        c.insert("ab", "c", "d");
        assert!(!c.contains("a", "bc", "d"));
    }

    #[test]
    fn zero_ttl_is_off_and_entries_expire() {
        let c = CredentialCache::new(Duration::ZERO);
        c.insert("a@x", "$h", "pw");
        assert!(!c.contains("a@x", "$h", "pw"));
        assert!(c.is_empty());
        let c = CredentialCache::new(Duration::from_millis(20));
        c.insert("a@x", "$h", "pw");
        assert!(c.contains("a@x", "$h", "pw"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!c.contains("a@x", "$h", "pw"));
        assert!(c.is_empty());
    }

    #[test]
    fn the_key_differs_per_process_instance() {
        let a = CredentialCache::new(Duration::from_secs(60));
        let b = CredentialCache::new(Duration::from_secs(60));
        assert_ne!(
            a.tag("a@x", "$h", "pw").as_ref(),
            b.tag("a@x", "$h", "pw").as_ref()
        );
    }
}
