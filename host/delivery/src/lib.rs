//! Delivery: where every message ends.
//!
//! # Role
//! Between a protocol that received a message (SMTP, LMTP) and the store
//! and the outbound queue: decides whether an address is local and who it
//! belongs to (at RCPT), and owns the end of a message ([`Room`]): the
//! plugins' `data` and `route`, the quota rule, storing the message once
//! for all its local recipients, queueing the rest, the Sent copy and the
//! success notices. The protocols only turn bytes into [`Arrival`] and
//! the [`Report`] into replies.
//!
//! # Invariants
//! - [`Room::deliver`] returns only when what it reports as taken is
//!   durable (stored, or in the queue); a refused message left nothing
//!   behind.
//! - No copy is stored past an account's quota (see [`quota`] for the
//!   rule and its one race).
//! - The body is not copied on the way: the trace fields (and, without
//!   plugins reading the message, the `Return-Path:`) are written into
//!   the receiver's buffer, which the plugins' view and the store share.
//!
//! # Layout
//! - `lib.rs`: [`LocalDelivery`], recipient resolution and storing.
//! - `envelope.rs`: [`Envelope`] and [`Recipient`] (with DSN parameters).
//! - `room.rs`: [`Room`], [`Arrival`], [`Replies`];
//!   the queue's local hand-off (`LocalDelivery::deliver_each`).
//! - `plan.rs`: the plan (`data`, `route`, quarantine), [`TxPolicy`].
//! - [`quota`]: the quota rule.
//! - `outcome.rs`: [`Refusal`] and [`Report`].
//! - [`sieve`]: users' Sieve scripts at delivery, carried out in the room.
//!
//! # Recipient resolution, in order
//! 1. The domain must be local (named in the config, or added with
//!    `mailgate domain add`); otherwise the address is [`RecipientCheck::NotLocal`].
//! 2. An account with exactly that address.
//! 3. An alias with exactly that address, expanded recursively (at most
//!    [`MAX_ALIAS_DEPTH`] levels; loops are cut). Targets in other
//!    domains are forwarded ([`LocalRecipient::forwards`]).
//! 4. Plus-addressing: `alice+news@example.org` resolves as `alice@example.org`
//!    (steps 2 and 3), keeping the tag `news` for routing.
//! 5. The domain's catch-all target, if one is set.
//! 6. Otherwise [`RecipientCheck::UnknownUser`].
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mailgate_store::{
    AccountId, Delivered, DeliveryTarget, MessageStructure, NewMessage, Store, StoreError,
    StoreResult,
};

mod envelope;
mod outcome;
mod plan;
pub mod quota;
mod room;
pub mod sieve;
pub mod srs;

pub use envelope::{Envelope, Recipient};
pub use outcome::{Refusal, Report};
pub use plan::{recipient_info, Hold, TxPolicy, QUARANTINE_FLAG, QUARANTINE_FOLDER};
pub use quota::{Limit, QuotaCheck};
pub use room::{Arrival, HandOff, Replies, Room, Trace, SENT_FOLDER};
pub use sieve::{ScriptSource, SieveDelivery};

/// How deep aliases may nest.
pub const MAX_ALIAS_DEPTH: usize = 8;

/// A local recipient after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRecipient {
    /// The address as the client gave it (lower-cased).
    pub address: String,
    /// The plus-address tag, if the address had one (`news` in `alice+news@...`).
    pub tag: Option<String>,
    /// The accounts it reaches (several for an alias list), no duplicates,
    /// lowest id first.
    pub accounts: Vec<AccountId>,
    /// The address of the first of `accounts`, as resolution found it (what
    /// policy plugins see as the recipient's account), so that nobody needs
    /// to look it up again later in the transaction.
    pub account_address: Option<String>,
    /// The accounts of `accounts` that have a storage quota, with their
    /// address and limit, as resolution read them (so the quota check
    /// costs no account look-up; accounts without a quota cost nothing).
    pub limits: Vec<Limit>,
    /// Alias targets on the way that reach nothing: neither an account
    /// nor an alias (an account deleted after the alias was made). The
    /// other copies are delivered; the sender gets a failure report for
    /// each of these (the room's `report_missing`).
    pub missing: Vec<MissingTarget>,
    /// Alias targets in other domains (lower-cased): forwarded through
    /// the outbound queue, with the sender rewritten by SRS
    /// ([`crate::srs`]) when `[srs]` is on.
    pub forwards: Vec<String>,
}

/// An alias target that reaches no account (see
/// [`LocalRecipient::missing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTarget {
    /// The alias that names it (the innermost one, for nested aliases).
    pub alias: String,
    /// The target as the alias names it (lower-cased).
    pub target: String,
}

impl MissingTarget {
    /// The reply a failure report gives for this lost copy (its
    /// `Diagnostic-Code`; `5.1.1` its `Status`): the one wording for the
    /// SMTP/LMTP path and the queue's local hand-off alike.
    pub fn reply(&self) -> String {
        format!(
            "550 5.1.1 <{}>: no such user here; alias <{}> names it",
            self.target, self.alias
        )
    }
}

/// What expanding an address found: the accounts it reaches (id, address
/// and quota) and the targets that reach nothing.
#[derive(Default)]
struct Found {
    accounts: BTreeMap<AccountId, (String, Option<u64>)>,
    missing: Vec<MissingTarget>,
    forwards: Vec<String>,
}

/// The verdict on one recipient address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientCheck {
    /// A local address that reaches at least one account.
    Local(LocalRecipient),
    /// A local domain, but nobody there by that name.
    UnknownUser,
    /// Not one of our domains.
    NotLocal,
}

/// Resolves recipients and delivers messages into the store.
pub struct LocalDelivery {
    store: Arc<dyn Store>,
    /// The configuration's `domains`; replaced on a reload (SIGHUP).
    config_domains: std::sync::RwLock<Arc<Vec<String>>>,
    /// The quota check and the store as one step per account; shared
    /// with the IMAP sessions ([`LocalDelivery::quota_locks`]).
    pub(crate) quota_locks: Arc<quota::QuotaLocks>,
}

/// Splits `local@domain` at the last `@`, lower-casing the domain.
pub fn split_address(address: &str) -> Option<(&str, String)> {
    let at = address.rfind('@')?;
    let (local, domain) = (&address[..at], &address[at + 1..]);
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some((local, domain.trim_end_matches('.').to_lowercase()))
}

impl LocalDelivery {
    /// Delivery over `store`, with the local domains named in the config.
    pub fn new(store: Arc<dyn Store>, config_domains: &[String]) -> LocalDelivery {
        LocalDelivery {
            store,
            config_domains: std::sync::RwLock::new(Arc::new(lower(config_domains))),
            quota_locks: Arc::default(),
        }
    }

    /// The per-account quota locks of this server's deliveries: IMAP
    /// APPEND, COPY and MOVE take the same ones around their check and
    /// store (`mailgate_store::quota`).
    pub fn quota_locks(&self) -> &Arc<quota::QuotaLocks> {
        &self.quota_locks
    }

    /// Replaces the configuration's local domains (SIGHUP): recipients
    /// checked from now on see the new list.
    pub fn set_config_domains(&self, domains: &[String]) {
        let fresh = Arc::new(lower(domains));
        *self
            .config_domains
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// The configuration's local domains in force (lower-cased).
    pub fn config_domains(&self) -> Arc<Vec<String>> {
        self.config_domains
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The store this delivers into.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether `domain` is one of ours.
    pub async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.trim_end_matches('.').to_lowercase();
        if self.config_domains().contains(&domain) {
            return Ok(true);
        }
        Ok(self
            .store
            .list_domains()
            .await?
            .iter()
            .any(|d| d.name == domain))
    }

    /// Resolves one recipient address (see the crate doc for the order).
    pub async fn check_recipient(&self, address: &str) -> StoreResult<RecipientCheck> {
        let address = address.to_lowercase();
        let Some((local, domain)) = split_address(&address) else {
            return Ok(RecipientCheck::UnknownUser);
        };
        // The stored domains are read at most once per recipient: here for
        // a domain not in the config, else only if a catch-all is needed.
        let mut stored = None;
        if !self.config_domains().contains(&domain) {
            let list = self.store.list_domains().await?;
            if !list.iter().any(|d| d.name == domain) {
                return Ok(RecipientCheck::NotLocal);
            }
            stored = Some(list);
        }
        let mut found = Found::default();
        if self
            .expand(&address, 0, &mut found, &mut BTreeSet::new())
            .await?
        {
            return Ok(local_recipient(&address, None, found));
        }
        if let Some((base, tag)) = local.split_once('+') {
            if !base.is_empty() {
                let base_address = format!("{base}@{domain}");
                found = Found::default();
                if self
                    .expand(&base_address, 0, &mut found, &mut BTreeSet::new())
                    .await?
                {
                    return Ok(local_recipient(&address, Some(tag.to_string()), found));
                }
            }
        }
        let stored = match stored {
            Some(list) => list,
            None => self.store.list_domains().await?,
        };
        let catch_all = stored
            .into_iter()
            .find(|d| d.name == domain)
            .and_then(|d| d.catch_all);
        if let Some(target) = catch_all {
            let target = target.to_lowercase();
            found = Found::default();
            if self
                .expand(&target, 0, &mut found, &mut BTreeSet::new())
                .await?
            {
                return Ok(local_recipient(&address, None, found));
            }
            // Logged like a dangling alias target; the client hears
            // `550 5.1.1` (nothing is accepted, so nothing is dropped).
            tracing::warn!(
                rcpt = %address,
                catch_all = %target,
                "delivery: catch-all target reaches no account (deleted or missing)"
            );
        }
        Ok(RecipientCheck::UnknownUser)
    }

    /// Adds the accounts `address` reaches to `out` (id and address), and
    /// the alias targets on the way that reach nothing at all;
    /// `false` if it reaches none. Follows aliases up to [`MAX_ALIAS_DEPTH`], never twice through
    /// the same alias.
    fn expand<'a>(
        &'a self,
        address: &'a str,
        depth: usize,
        out: &'a mut Found,
        seen: &'a mut BTreeSet<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<bool>> + Send + 'a>> {
        Box::pin(async move {
            if let Some(account) = self.store.account(address).await? {
                out.accounts
                    .insert(account.id, (account.address, account.quota_bytes));
                return Ok(true);
            }
            if depth >= MAX_ALIAS_DEPTH || !seen.insert(address.to_string()) {
                return Ok(false);
            }
            let Some(targets) = self.store.alias(address).await? else {
                return Ok(false);
            };
            let mut any = false;
            for target in targets {
                let target = target.to_lowercase();
                if let Some((_, domain)) = split_address(&target) {
                    if !self.is_local_domain(&domain).await? {
                        // Forwarded to another domain (the room queues it).
                        if !out.forwards.contains(&target) {
                            out.forwards.push(target);
                        }
                        any = true;
                        continue;
                    }
                }
                let reached = self.expand(&target, depth + 1, out, seen).await?;
                if !reached
                    && self.store.account(&target).await?.is_none()
                    && self.store.alias(&target).await?.is_none()
                {
                    // Gone (or never there): a lost copy, which the room
                    // reports to the sender. A loop or a too deep nesting
                    // loses nothing that another path does not deliver.
                    out.missing.push(MissingTarget {
                        alias: address.to_string(),
                        target: target.clone(),
                    });
                }
                if !reached {
                    // `mailgate user del` refuses this; data from before
                    // that, or a loop, still must not fail silently.
                    tracing::warn!(
                        alias = %address,
                        target = %target,
                        "delivery: alias target reaches no account (deleted, missing or a loop); no copy for it"
                    );
                }
                any |= reached;
            }
            Ok(any)
        })
    }

    /// Stores `data` (the message as received, trace fields included)
    /// once for all `targets`, with a `Return-Path:` for `mail_from`
    /// prepended (a copy of the bytes: [`LocalDelivery::deliver_prepared`]
    /// avoids it). Durable when it returns.
    pub async fn deliver_to(
        &self,
        mail_from: &str,
        targets: &[DeliveryTarget],
        data: &[u8],
    ) -> StoreResult<Vec<Delivered>> {
        let mut raw = Vec::with_capacity(data.len() + mail_from.len() + 20);
        raw.extend_from_slice(return_path(mail_from).as_bytes());
        raw.extend_from_slice(data);
        self.deliver_prepared(targets, Arc::new(raw)).await
    }

    /// Stores `raw` as it is (for delivered mail the room has put its
    /// `Return-Path:` in it already) once for all `targets` (the buffer
    /// itself, no copy): a folder that does not exist yet is created (like
    /// Sieve `fileinto :create`); the same (account, folder) twice gets one
    /// copy with the flags of both. Durable when it returns.
    pub async fn deliver_prepared(
        &self,
        targets: &[DeliveryTarget],
        raw: Arc<Vec<u8>>,
    ) -> StoreResult<Vec<Delivered>> {
        let mut merged: Vec<DeliveryTarget> = Vec::with_capacity(targets.len());
        for t in targets {
            let same = merged
                .iter_mut()
                .find(|m| m.account == t.account && m.mailbox.eq_ignore_ascii_case(&t.mailbox));
            match same {
                Some(m) => {
                    for f in &t.flags {
                        if !m.flags.contains(f) {
                            m.flags.push(f.clone());
                        }
                    }
                }
                None => merged.push(t.clone()),
            }
        }
        if merged.is_empty() {
            return Ok(vec![]);
        }
        for t in &merged {
            self.ensure_mailbox(t.account, &t.mailbox).await?;
        }
        let targets = merged;
        let structure = MessageStructure::parse_off_thread(raw.clone())
            .await
            .unwrap_or_default();
        let message = NewMessage {
            raw,
            internal_date: chrono::Utc::now().timestamp(),
            structure,
        };
        self.store.deliver(message, &targets).await
    }
}

impl LocalDelivery {
    /// Creates `name` in `account` if it does not exist (a concurrent
    /// delivery creating it first is fine).
    async fn ensure_mailbox(&self, account: AccountId, name: &str) -> StoreResult<()> {
        if name.eq_ignore_ascii_case("INBOX") || self.store.mailbox(account, name).await?.is_some()
        {
            return Ok(());
        }
        match self.store.create_mailbox(account, name, None).await {
            Ok(_) | Err(StoreError::Exists(_)) => {
                tracing::info!(account, mailbox = name, "delivery: mailbox created");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn local_recipient(address: &str, tag: Option<String>, found: Found) -> RecipientCheck {
    let Found {
        accounts,
        missing,
        forwards,
    } = found;
    let account_address = accounts.values().next().map(|(a, _)| a.clone());
    let limits = accounts
        .iter()
        .filter_map(|(&account, (address, quota))| {
            quota.map(|bytes| Limit {
                account,
                address: address.clone(),
                bytes,
            })
        })
        .collect();
    RecipientCheck::Local(LocalRecipient {
        address: address.to_string(),
        tag,
        accounts: accounts.into_keys().collect(),
        account_address,
        limits,
        missing,
        forwards,
    })
}

fn lower(domains: &[String]) -> Vec<String> {
    domains
        .iter()
        .map(|d| d.trim().trim_end_matches('.').to_lowercase())
        .collect()
}

/// The `Return-Path:` field final delivery adds (RFC 5321 §4.4).
pub fn return_path(mail_from: &str) -> String {
    format!("Return-Path: <{mail_from}>\r\n")
}

/// The account's INBOX, no flags.
pub fn inbox(account: AccountId) -> DeliveryTarget {
    DeliveryTarget {
        account,
        mailbox: "INBOX".into(),
        flags: Vec::new(),
    }
}
