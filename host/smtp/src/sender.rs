//! Which envelope senders an authenticated user may use.
//!
//! A user may send as:
//! 1. their own address, and its plus-addresses (`alice+list@...`);
//! 2. any alias whose expansion reaches their account (directly or
//!    through other aliases, at most [`MAX_ALIAS_DEPTH`] levels): mail to
//!    it reaches them, so it is theirs to answer from. A domain's
//!    catch-all does **not** count, or one user could send as every
//!    unknown address of the domain;
//! 3. whatever `[submission.senders]` grants them: whole addresses, or
//!    `@domain` for every address of a domain.
//!
//! The null sender `<>` is allowed: vacation replies and notifications
//! use it, and it impersonates nobody.

use std::collections::{BTreeSet, HashMap};

use mailgate_delivery::{split_address, MAX_ALIAS_DEPTH};
use mailgate_store::{Store, StoreResult};

/// Extra senders granted per user (`[submission.senders]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderGrants {
    grants: HashMap<String, Vec<String>>,
}

impl SenderGrants {
    /// Grants from `user address -> [address or @domain]`; case is
    /// ignored.
    pub fn new(grants: HashMap<String, Vec<String>>) -> SenderGrants {
        SenderGrants {
            grants: grants
                .into_iter()
                .map(|(user, list)| {
                    (
                        user.to_lowercase(),
                        list.into_iter().map(|s| s.to_lowercase()).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Whether `user` was granted `sender` in the configuration.
    pub fn grants(&self, user: &str, sender: &str) -> bool {
        let Some(list) = self.grants.get(&user.to_lowercase()) else {
            return false;
        };
        let sender = sender.to_lowercase();
        let domain = split_address(&sender).map(|(_, d)| d);
        list.iter().any(|g| match g.strip_prefix('@') {
            Some(d) => domain.as_deref() == Some(d),
            None => *g == sender,
        })
    }
}

/// Whether `sender` (lower-cased, non-empty) belongs to the account
/// `user` by rules 1 and 2 of the module documentation.
pub async fn owns_address(store: &dyn Store, user: &str, sender: &str) -> StoreResult<bool> {
    let sender = sender.to_lowercase();
    let mut candidates = vec![sender.clone()];
    if let Some((local, domain)) = split_address(&sender) {
        if let Some((base, _tag)) = local.split_once('+') {
            if !base.is_empty() {
                candidates.push(format!("{base}@{domain}"));
            }
        }
    }
    for start in candidates {
        if start == user || reaches(store, &start, user).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether alias `alias` expands (recursively) to `user`.
async fn reaches(store: &dyn Store, alias: &str, user: &str) -> StoreResult<bool> {
    let mut seen = BTreeSet::new();
    let mut level = vec![alias.to_string()];
    for _ in 0..=MAX_ALIAS_DEPTH {
        let mut next = Vec::new();
        for address in level {
            if !seen.insert(address.clone()) {
                continue;
            }
            if let Some(targets) = store.alias(&address).await? {
                for t in targets {
                    let t = t.to_lowercase();
                    if t == user {
                        return Ok(true);
                    }
                    next.push(t);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_by_address_and_domain() {
        let g = SenderGrants::new(HashMap::from([(
            "Boss@Example.org".to_string(),
            vec![
                "info@example.org".to_string(),
                "@Sales.example.org".to_string(),
            ],
        )]));
        assert!(g.grants("boss@example.org", "INFO@example.org"));
        assert!(g.grants("boss@example.org", "anyone@sales.example.org"));
        assert!(!g.grants("boss@example.org", "anyone@example.org"));
        assert!(!g.grants("other@example.org", "info@example.org"));
    }
}
