//! The end of a message under policy: the `data` hook, then `route` per
//! recipient, turned into a [`Plan`]: which copies go to which folders,
//! which addresses go to the outbound queue, or the reply that refuses
//! the message.
//!
//! # Decisions that are this file's
//! - One reply answers DATA for every recipient, and we send no bounces
//!   ourselves, so a `route` reject of any recipient refuses the whole
//!   message (the sender learns of it; nothing is lost silently), and a
//!   `route` tempfail of any recipient defers the whole message (nothing
//!   is delivered, so the retry makes no duplicates). Not on LMTP, which
//!   answers each recipient: there a route refusal refuses that recipient
//!   only and the others are delivered.
//! - Quarantine: the copy goes to the recipient's `Quarantine` folder
//!   (created if missing), flagged `$Quarantined`, never to INBOX; a
//!   POP3 client never sees it, an IMAP client or the operator can.
//!   Copies for other domains are not sent while quarantined.
//! - Forward and added recipients in other domains go to the outbound
//!   queue; without one the message is deferred (`451 4.3.0`) and logged.
//! - `relay(host)` sends that recipient's copy (local or remote) through
//!   the outbound queue to `host` instead of its MX hosts; the forms of
//!   `host` are `mailgate_store::queue::NextHop`'s. A malformed one, or no
//!   outbound queue, defers the message (`451`), logged at WARN.

use std::sync::Arc;

use mailgate_delivery::{LocalRecipient, RecipientCheck, Target};
use mailgate_policy::{AuthResults, Delivery, Hook, MessageView, RouteAction};
use mailgate_smtp_proto::Reply;

use crate::policy::{no_outbound, recipient_info, smtp_reply, Hold};
use crate::session::{Session, Transaction};

/// The folder quarantined copies go to.
pub(crate) const QUARANTINE_FOLDER: &str = "Quarantine";
/// The keyword quarantined copies carry.
pub(crate) const QUARANTINE_FLAG: &str = "$Quarantined";

/// Where a message goes.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The message with the plugins' header edits, if any.
    pub(crate) edited: Option<Vec<u8>>,
    /// Local copies.
    pub(crate) local: Vec<Target>,
    /// Addresses for the outbound queue.
    pub(crate) remote: Vec<String>,
    /// How many copies went to quarantine (for the log).
    pub(crate) quarantined: usize,
    /// A plugin discarded the message.
    pub(crate) discarded: bool,
    /// Addresses for the outbound queue with the next hop a plugin's
    /// `relay` chose (canonical `NextHop` text).
    pub(crate) relayed: Vec<(String, String)>,
    /// LMTP only: recipients refused at `route` (reject or tempfail),
    /// each with its own reply; the others are delivered.
    pub(crate) refused: Vec<(String, Reply)>,
}

impl Plan {
    /// Without plugins: each local recipient's INBOX, the remote ones to
    /// the queue.
    pub(crate) fn plain(tx: &Transaction) -> Plan {
        Plan {
            local: inbox_targets(&tx.recipients),
            remote: tx.remote.clone(),
            ..Plan::default()
        }
    }
}

fn inbox_targets(recipients: &[LocalRecipient]) -> Vec<Target> {
    recipients
        .iter()
        .flat_map(|r| r.accounts.iter().copied())
        .map(Target::inbox)
        .collect()
}

fn quarantine_targets(r: &LocalRecipient) -> impl Iterator<Item = Target> + '_ {
    r.accounts.iter().map(|&account| Target {
        account,
        folder: QUARANTINE_FOLDER.into(),
        flags: vec![QUARANTINE_FLAG.into()],
    })
}

/// The worst refusal among the recipients' routes.
#[derive(Default)]
struct Refusals {
    reject: Option<Reply>,
    defer: Option<Reply>,
}

impl Session {
    /// Runs `data` and `route` for the message `data` (our `Received:`
    /// included) of `tx`; `Err(reply)` refuses it. Without a transaction
    /// policy this is [`Plan::plain`]. The first `trace_fields` fields of
    /// `data` are ours (they stay on top of what plugins add); `auth` is
    /// what inbound verification found (`message.auth-results`).
    ///
    /// On LMTP a `route` refusal refuses only that recipient
    /// ([`Plan::refused`]): each recipient has its own reply there.
    ///
    /// Cost: the plugins' view shares `data` (no copy); header edits are
    /// applied to the view, and the edited message is built once, here; a
    /// hook no plugin of the chain wants costs nothing (not even an
    /// instance); the recipients' account addresses come from RCPT TO.
    /// `route` is called once per recipient: its arguments name the
    /// recipient, so one call cannot stand for another.
    pub(crate) async fn policy_plan(
        &self,
        tx: &mut Transaction,
        data: &Arc<Vec<u8>>,
        trace_fields: usize,
        auth: Option<Arc<AuthResults>>,
    ) -> Result<Plan, Reply> {
        let Some(p) = tx.policy.clone() else {
            return Ok(Plan::plain(tx));
        };
        let client = self.peer.ip();
        let (chain, mut envelope) = (p.chain.clone(), p.envelope.clone());
        let mut hold = p.hold.clone();
        let mut plan = Plan::default();
        let mut folder = None;
        let wants_route = chain.wants(Hook::Route);
        let mut view = None;
        if chain.wants(Hook::Data) || wants_route {
            let session = self.session_info();
            let mut v = MessageView::shared(data.clone())
                .with_trace_fields(trace_fields)
                .with_auth_results(auth);
            if chain.wants(Hook::Data) {
                let before = envelope.recipients.clone();
                let d = chain.data(&session, &mut envelope, &mut v).await;
                if let Some(r) = d.verdict.reply() {
                    tracing::info!(%client, hook = "data", plugin = d.by.as_deref().unwrap_or(""), reply = %r, "smtp: message refused by policy");
                    return Err(smtp_reply(r));
                }
                hold = Hold::merge(hold, Hold::of(&d.verdict));
                folder = d.folder;
                let after = envelope.recipients.clone();
                self.apply_recipient_edits(tx, &before, &after, "").await?;
            }
            if v.is_edited() {
                let mut edited = Vec::new();
                v.write_to(&mut edited);
                plan.edited = Some(edited);
            }
            view = Some(v);
        }
        match hold {
            Some(Hold::Discard) => {
                plan.discarded = true;
                return Ok(plan);
            }
            Some(Hold::Quarantine(why)) => {
                tracing::info!(%client, reason = %why, remote_held = ?tx.remote, "smtp: message quarantined by policy");
                plan.local = tx.recipients.iter().flat_map(quarantine_targets).collect();
                plan.quarantined = plan.local.len();
                return Ok(plan);
            }
            None => {}
        }
        let default_folder = folder.unwrap_or_else(|| "INBOX".to_string());
        let (Some(view), true) = (view, wants_route) else {
            plan.local = inbox_targets(&tx.recipients);
            for t in &mut plan.local {
                t.folder.clone_from(&default_folder);
            }
            plan.remote = tx.remote.clone();
            return Ok(plan);
        };
        let session = self.session_info();
        let mut refusals = Refusals::default();
        let locals: Vec<Option<&LocalRecipient>> = tx.recipients.iter().map(Some).collect();
        let remotes = tx.remote.iter().map(|_| None);
        let addresses = tx
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .chain(tx.remote.iter().map(String::as_str));
        for (address, local) in addresses.zip(locals.into_iter().chain(remotes)) {
            let params = p
                .params
                .iter()
                .find(|(a, _)| a == address)
                .map(|(_, params)| params.clone())
                .unwrap_or_default();
            let info = recipient_info(address, params, local);
            let d = chain.route(&session, &envelope, &info, &view).await;
            let mark = (
                plan.local.len(),
                plan.remote.len(),
                plan.relayed.len(),
                plan.quarantined,
            );
            let mut own = Refusals::default();
            for action in d.actions {
                self.apply_action(action, address, local, &default_folder, &mut plan, &mut own)
                    .await;
            }
            if self.ctx.lmtp {
                // This recipient's own reply; nothing of its plan.
                if let Some(r) = own.reject.or(own.defer) {
                    plan.local.truncate(mark.0);
                    plan.remote.truncate(mark.1);
                    plan.relayed.truncate(mark.2);
                    plan.quarantined = mark.3;
                    plan.refused.push((address.to_string(), r));
                }
            } else {
                refusals.reject = refusals.reject.or(own.reject);
                refusals.defer = refusals.defer.or(own.defer);
            }
        }
        if let Some(r) = refusals.reject.or(refusals.defer) {
            return Err(r);
        }
        Ok(plan)
    }

    /// Adds one route action of `address`'s plan to `plan`.
    async fn apply_action(
        &self,
        action: RouteAction,
        address: &str,
        local: Option<&LocalRecipient>,
        default_folder: &str,
        plan: &mut Plan,
        refusals: &mut Refusals,
    ) {
        let client = self.peer.ip();
        match action {
            RouteAction::Deliver(Delivery {
                account,
                folder,
                flags,
            }) => {
                let folder = folder.unwrap_or_else(|| default_folder.to_string());
                let accounts = match (account, local) {
                    (Some(other), _) => self.local_accounts(&other).await,
                    (None, Some(r)) => r.accounts.clone(),
                    (None, None) => {
                        // A remote recipient's default plan: send it on.
                        plan.remote.push(address.to_string());
                        return;
                    }
                };
                plan.local
                    .extend(accounts.into_iter().map(|account| Target {
                        account,
                        folder: folder.clone(),
                        flags: flags.clone(),
                    }));
            }
            RouteAction::Forward(to) => {
                tracing::info!(%client, rcpt = %address, forward = ?to, "smtp: forwarded by policy");
                for target in to {
                    match self.ctx.delivery.check_recipient(&target).await {
                        Ok(RecipientCheck::Local(r)) => plan.local.extend(inbox_targets(&[r])),
                        Ok(RecipientCheck::NotLocal) if self.ctx.outbound.is_some() => {
                            plan.remote.push(target)
                        }
                        Ok(RecipientCheck::NotLocal) => {
                            tracing::warn!(%client, rcpt = %address, forward = %target, "smtp: policy forwards to another domain but there is no outbound queue; deferred");
                            refusals.defer.get_or_insert_with(no_outbound);
                        }
                        Ok(RecipientCheck::UnknownUser) => {
                            tracing::warn!(%client, rcpt = %address, forward = %target, "smtp: policy forwards to an unknown local address; ignored")
                        }
                        Err(e) => {
                            tracing::error!(%client, forward = %target, error = %e, "smtp: recipient check failed");
                            refusals.defer.get_or_insert_with(Reply::local_error);
                        }
                    }
                }
            }
            RouteAction::Relay(host) => {
                if self.ctx.outbound.is_none() {
                    tracing::warn!(%client, rcpt = %address, %host, "smtp: policy relays through a next hop but there is no outbound queue; deferred");
                    refusals.defer.get_or_insert_with(no_outbound);
                    return;
                }
                match mailgate_store::queue::NextHop::parse(&host) {
                    Ok(hop) => {
                        tracing::info!(%client, rcpt = %address, next_hop = %hop, "smtp: relayed through a next hop by policy");
                        plan.relayed.push((address.to_string(), hop.to_string()));
                    }
                    Err(e) => {
                        tracing::warn!(%client, rcpt = %address, %host, error = %e, "smtp: policy named a malformed next hop; deferred");
                        refusals.defer.get_or_insert_with(|| {
                            Reply::with_code(
                                451,
                                4,
                                3,
                                5,
                                "next hop misconfigured; try again later",
                            )
                        });
                    }
                }
            }
            RouteAction::Discard => {
                tracing::info!(%client, rcpt = %address, "smtp: copy discarded by policy");
            }
            RouteAction::Quarantine(why) => {
                tracing::info!(%client, rcpt = %address, reason = %why, "smtp: copy quarantined by policy");
                if let Some(r) = local {
                    let before = plan.local.len();
                    plan.local.extend(quarantine_targets(r));
                    plan.quarantined += plan.local.len() - before;
                }
            }
            RouteAction::Reject(r) => {
                tracing::info!(%client, rcpt = %address, reply = %r, "smtp: recipient refused by policy at route");
                refusals.reject.get_or_insert_with(|| smtp_reply(&r));
            }
            RouteAction::Tempfail(r) => {
                tracing::info!(%client, rcpt = %address, reply = %r, "smtp: recipient deferred by policy at route");
                refusals.defer.get_or_insert_with(|| smtp_reply(&r));
            }
        }
    }

    /// The accounts a local address reaches (empty, logged, if none).
    async fn local_accounts(&self, address: &str) -> Vec<mailgate_store::AccountId> {
        match self.ctx.delivery.check_recipient(address).await {
            Ok(RecipientCheck::Local(r)) => r.accounts,
            other => {
                tracing::warn!(client = %self.peer.ip(), account = %address, result = ?other.map(|_| ()), "smtp: policy delivers to an account that is not local; ignored");
                Vec::new()
            }
        }
    }
}
