//! The delivery plan of one message: which copies go to which folders,
//! which addresses go to the outbound queue, or the refusal. Without
//! plugins every local recipient's copy goes to INBOX and the others to
//! the queue; with plugins the `data` hook, then `route` per recipient,
//! decide.
//!
//! # Decisions that are this file's
//! - Answered with one reply ([`Replies::One`], SMTP), a `route` reject
//!   of any recipient refuses the whole message (the sender learns of
//!   it; nothing is lost silently), and a `route` tempfail of any
//!   recipient defers the whole message (nothing is delivered, so the
//!   retry makes no duplicates). Answered per recipient
//!   ([`Replies::PerRecipient`], LMTP) a route refusal refuses that
//!   recipient only and the others are delivered.
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

use mailgate_policy::{
    AuthResults, Chain, Delivery, Hook, MessageView, Param, RecipientInfo, RouteAction,
    SessionInfo, TlsDetails, Verdict,
};
use mailgate_store::DeliveryTarget;

use crate::room::Replies;
use crate::{Envelope, Limit, LocalRecipient, RecipientCheck, Refusal, Room};

/// The folder quarantined copies go to.
pub const QUARANTINE_FOLDER: &str = "Quarantine";
/// The keyword quarantined copies carry.
pub const QUARANTINE_FLAG: &str = "$Quarantined";

/// A message accepted but kept from its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Delivered to nobody.
    Discard,
    /// Into the recipients' quarantine, with the reason.
    Quarantine(String),
}

impl Hold {
    /// The hold a verdict asks for, if any.
    pub fn of(verdict: &Verdict) -> Option<Hold> {
        match verdict {
            Verdict::Discard => Some(Hold::Discard),
            Verdict::Quarantine(why) => Some(Hold::Quarantine(why.clone())),
            _ => None,
        }
    }

    /// Quarantine is kept over discard: an operator can still look at it.
    pub fn merge(a: Option<Hold>, b: Option<Hold>) -> Option<Hold> {
        match (a, b) {
            (Some(Hold::Quarantine(q)), _) | (_, Some(Hold::Quarantine(q))) => {
                Some(Hold::Quarantine(q))
            }
            (a, b) => a.or(b),
        }
    }
}

/// What a transaction keeps for the plugins, from MAIL FROM on.
#[derive(Clone)]
pub struct TxPolicy {
    /// The chain taken at MAIL FROM (a reload never changes the plugins
    /// in the middle of a transaction).
    pub chain: Arc<Chain>,
    /// The MAIL FROM parameters as the plugins see them; the rest of the
    /// plugins' envelope is the transaction's own ([`Envelope::for_plugins`]).
    pub mail_params: Vec<Param>,
    /// The RCPT TO parameters of each recipient, by address.
    pub params: Vec<(String, Vec<Param>)>,
    /// A discard or quarantine decided so far (the session's included).
    pub hold: Option<Hold>,
}

impl std::fmt::Debug for TxPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxPolicy")
            .field("generation", &self.chain.generation())
            .field("mail_params", &self.mail_params)
            .field("hold", &self.hold)
            .finish()
    }
}

/// One local copy of the plan.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    /// Where it goes.
    pub(crate) target: DeliveryTarget,
    /// The envelope recipient it is for (its outcome on LMTP).
    pub(crate) owner: String,
    /// The account's quota, if it has one.
    pub(crate) limit: Option<Limit>,
    /// This copy's own message, `Return-Path:` included, when a Sieve
    /// script edited its header (`editheader`); `None`: the message all
    /// copies share.
    pub(crate) edited: Option<std::sync::Arc<Vec<u8>>>,
}

/// One address for the outbound queue.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The address.
    pub(crate) address: String,
    /// The envelope recipient it is for (its DSN parameters).
    pub(crate) owner: String,
    /// The next hop a plugin chose (canonical `NextHop` text).
    pub(crate) next_hop: Option<String>,
    /// A local copy kept in the queue (over quota): its folder and flags.
    pub(crate) local: Option<mailgate_store::queue::LocalTarget>,
}

/// Where a message goes.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The message with the plugins' header edits, if any.
    pub(crate) edited: Option<Vec<u8>>,
    /// Local copies.
    pub(crate) copies: Vec<Copy>,
    /// Addresses for the outbound queue.
    pub(crate) outgoing: Vec<Outgoing>,
    /// How many copies went to quarantine (for the log).
    pub(crate) quarantined: usize,
    /// A plugin discarded the message.
    pub(crate) discarded: bool,
    /// Per recipient answers only: recipients refused at `route`.
    pub(crate) refused: Vec<(String, Refusal)>,
}

impl Plan {
    /// Each local recipient's copy into `folder`, the others to the queue.
    fn plain(envelope: &Envelope, folder: &str) -> Plan {
        let mut plan = Plan::default();
        for r in &envelope.recipients {
            match &r.local {
                Some(local) => {
                    plan.copies.extend(copies(local, &r.address, folder, &[]));
                    plan.outgoing.extend(forwards(local, &r.address));
                }
                None => plan.outgoing.push(Outgoing {
                    address: r.address.clone(),
                    owner: r.address.clone(),
                    next_hop: None,
                    local: None,
                }),
            }
        }
        plan
    }
}

/// The copies of `local` into `folder` with `flags`, for `owner`.
fn copies<'a>(
    local: &'a LocalRecipient,
    owner: &'a str,
    folder: &'a str,
    flags: &'a [String],
) -> impl Iterator<Item = Copy> + 'a {
    local.accounts.iter().map(move |&account| Copy {
        target: DeliveryTarget {
            account,
            mailbox: folder.to_string(),
            flags: flags.to_vec(),
        },
        owner: owner.to_string(),
        limit: local.limits.iter().find(|l| l.account == account).cloned(),
        edited: None,
    })
}

/// The alias targets of `local` in other domains, for the queue.
fn forwards<'a>(local: &'a LocalRecipient, owner: &'a str) -> impl Iterator<Item = Outgoing> + 'a {
    local.forwards.iter().map(move |target| Outgoing {
        address: target.clone(),
        owner: owner.to_string(),
        next_hop: None,
        local: None,
    })
}

/// The worst refusal among the recipients' routes.
#[derive(Default)]
struct Refusals {
    reject: Option<Refusal>,
    defer: Option<Refusal>,
}

/// What the plan needs from the message.
pub(crate) struct PlanInput<'a> {
    pub(crate) session: &'a SessionInfo,
    pub(crate) data: &'a Arc<Vec<u8>>,
    pub(crate) trace_fields: usize,
    pub(crate) auth: Option<Arc<AuthResults>>,
    pub(crate) tls: Option<Arc<TlsDetails>>,
    pub(crate) replies: Replies,
}

impl Room {
    /// Runs `data` and `route` for the message; `Err` refuses it. Without
    /// a transaction policy this is the plain plan. The first
    /// `trace_fields` fields of the data are ours (they stay on top of
    /// what plugins add).
    ///
    /// Cost: the plugins' view shares the data (no copy); header edits
    /// are applied to the view and the edited message is built once,
    /// here; a hook no plugin wants costs nothing (not even an instance).
    /// `route` is called once per recipient: its arguments name the
    /// recipient, so one call cannot stand for another.
    pub(crate) async fn plan(
        &self,
        envelope: &mut Envelope,
        policy: Option<TxPolicy>,
        input: PlanInput<'_>,
    ) -> Result<Plan, Refusal> {
        let Some(p) = policy else {
            return Ok(Plan::plain(envelope, "INBOX"));
        };
        let client = input.session.client_ip;
        let chain = p.chain.clone();
        let mut hold = p.hold.clone();
        let mut plan = Plan::default();
        let mut folder = None;
        let wants_route = chain.wants(Hook::Route);
        let mut view = None;
        if chain.wants(Hook::Data) || wants_route {
            let mut v = MessageView::shared(input.data.clone())
                .with_trace_fields(input.trace_fields)
                .with_auth_results(input.auth.clone())
                .with_tls(input.tls.clone());
            if chain.wants(Hook::Data) {
                let mut penv = envelope.for_plugins(&p.mail_params);
                let before = penv.recipients.clone();
                let d = chain.data(input.session, &mut penv, &mut v).await;
                if let Some(r) = d.verdict.reply() {
                    tracing::info!(%client, hook = "data", plugin = d.by.as_deref().unwrap_or(""), reply = %r, "delivery: message refused by policy");
                    return Err(Refusal::Policy(r.clone()));
                }
                hold = Hold::merge(hold, Hold::of(&d.verdict));
                folder = d.folder;
                let after = penv.recipients.clone();
                envelope
                    .apply_edits(&self.delivery, self.outbound.is_some(), &before, &after, "")
                    .await?;
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
                let remote: Vec<&str> = envelope
                    .recipients
                    .iter()
                    .filter(|r| r.local.is_none())
                    .map(|r| r.address.as_str())
                    .collect();
                tracing::info!(%client, reason = %why, remote_held = %mailgate_log::list(remote.iter().copied()), "delivery: message quarantined by policy");
                let flags = [QUARANTINE_FLAG.to_string()];
                for r in &envelope.recipients {
                    if let Some(local) = &r.local {
                        plan.copies
                            .extend(copies(local, &r.address, QUARANTINE_FOLDER, &flags));
                    }
                }
                plan.quarantined = plan.copies.len();
                return Ok(plan);
            }
            None => {}
        }
        let default_folder = folder.unwrap_or_else(|| "INBOX".to_string());
        let (Some(view), true) = (view, wants_route) else {
            let edited = plan.edited.take();
            let mut plain = Plan::plain(envelope, &default_folder);
            plain.edited = edited;
            return Ok(plain);
        };
        let mut refusals = Refusals::default();
        let penv = envelope.for_plugins(&p.mail_params);
        for r in &envelope.recipients {
            let params = p
                .params
                .iter()
                .find(|(a, _)| *a == r.address)
                .map(|(_, params)| params.clone())
                .unwrap_or_default();
            let info = recipient_info(&r.address, params, r.local.as_ref());
            let d = chain.route(input.session, &penv, &info, &view).await;
            let mark = (plan.copies.len(), plan.outgoing.len(), plan.quarantined);
            let mut own = Refusals::default();
            for action in d.actions {
                let at = Here {
                    address: &r.address,
                    local: r.local.as_ref(),
                    default_folder: &default_folder,
                    client,
                };
                self.apply_action(action, &at, &mut plan, &mut own).await;
            }
            match input.replies {
                Replies::PerRecipient => {
                    // This recipient's own reply; nothing of its plan.
                    if let Some(why) = own.reject.or(own.defer) {
                        plan.copies.truncate(mark.0);
                        plan.outgoing.truncate(mark.1);
                        plan.quarantined = mark.2;
                        plan.refused.push((r.address.clone(), why));
                    }
                }
                Replies::One => {
                    refusals.reject = refusals.reject.or(own.reject);
                    refusals.defer = refusals.defer.or(own.defer);
                }
            }
        }
        if let Some(r) = refusals.reject.or(refusals.defer) {
            return Err(r);
        }
        Ok(plan)
    }

    /// Adds one route action of a recipient's plan to `plan`.
    async fn apply_action(
        &self,
        action: RouteAction,
        at: &Here<'_>,
        plan: &mut Plan,
        refusals: &mut Refusals,
    ) {
        let (client, address) = (at.client, at.address);
        match action {
            RouteAction::Deliver(Delivery {
                account,
                folder,
                flags,
            }) => {
                let folder = folder.unwrap_or_else(|| at.default_folder.to_string());
                let other;
                let local = match (account, at.local) {
                    (Some(account), _) => {
                        other = self.resolve(&account, client).await;
                        match &other {
                            Some(l) => l,
                            None => return,
                        }
                    }
                    (None, Some(r)) => {
                        // The recipient's own plan: its alias's forwards too.
                        plan.outgoing.extend(forwards(r, address));
                        r
                    }
                    (None, None) => {
                        // A remote recipient's default plan: send it on.
                        plan.outgoing.push(Outgoing {
                            address: address.to_string(),
                            owner: address.to_string(),
                            next_hop: None,
                            local: None,
                        });
                        return;
                    }
                };
                plan.copies.extend(copies(local, address, &folder, &flags));
            }
            RouteAction::Forward(to) => {
                tracing::info!(%client, rcpt = %address, forward = %mailgate_log::list(to.iter().map(String::as_str)), "delivery: forwarded by policy");
                for target in to {
                    match self.delivery.check_recipient(&target).await {
                        Ok(RecipientCheck::Local(r)) => {
                            plan.copies.extend(copies(&r, address, "INBOX", &[]))
                        }
                        Ok(RecipientCheck::NotLocal) if self.outbound.is_some() => {
                            plan.outgoing.push(Outgoing {
                                address: target,
                                owner: address.to_string(),
                                next_hop: None,
                                local: None,
                            })
                        }
                        Ok(RecipientCheck::NotLocal) => {
                            tracing::warn!(%client, rcpt = %address, forward = %target, "delivery: policy forwards to another domain but there is no outbound queue; deferred");
                            refusals.defer.get_or_insert(Refusal::NoOutbound);
                        }
                        Ok(RecipientCheck::UnknownUser) => {
                            tracing::warn!(%client, rcpt = %address, forward = %target, "delivery: policy forwards to an unknown local address; ignored")
                        }
                        Err(e) => {
                            tracing::error!(%client, forward = %target, error = %e, "delivery: recipient check failed");
                            refusals.defer.get_or_insert(Refusal::LocalError);
                        }
                    }
                }
            }
            RouteAction::Relay(host) => {
                if self.outbound.is_none() {
                    tracing::warn!(%client, rcpt = %address, %host, "delivery: policy relays through a next hop but there is no outbound queue; deferred");
                    refusals.defer.get_or_insert(Refusal::NoOutbound);
                    return;
                }
                match mailgate_store::queue::NextHop::parse(&host) {
                    Ok(hop) => {
                        tracing::info!(%client, rcpt = %address, next_hop = %hop, "delivery: relayed through a next hop by policy");
                        plan.outgoing.push(Outgoing {
                            address: address.to_string(),
                            owner: address.to_string(),
                            next_hop: Some(hop.to_string()),
                            local: None,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%client, rcpt = %address, %host, error = %e, "delivery: policy named a malformed next hop; deferred");
                        refusals.defer.get_or_insert(Refusal::BadNextHop);
                    }
                }
            }
            RouteAction::Discard => {
                tracing::info!(%client, rcpt = %address, "delivery: copy discarded by policy");
            }
            RouteAction::Quarantine(why) => {
                tracing::info!(%client, rcpt = %address, reason = %why, "delivery: copy quarantined by policy");
                if let Some(r) = at.local {
                    let before = plan.copies.len();
                    let flags = [QUARANTINE_FLAG.to_string()];
                    plan.copies
                        .extend(copies(r, address, QUARANTINE_FOLDER, &flags));
                    plan.quarantined += plan.copies.len() - before;
                }
            }
            RouteAction::Reject(r) => {
                tracing::info!(%client, rcpt = %address, reply = %r, "delivery: recipient refused by policy at route");
                refusals.reject.get_or_insert(Refusal::Policy(r));
            }
            RouteAction::Tempfail(r) => {
                tracing::info!(%client, rcpt = %address, reply = %r, "delivery: recipient deferred by policy at route");
                refusals.defer.get_or_insert(Refusal::Policy(r));
            }
        }
    }

    /// The local recipient an account address a plugin named resolves to
    /// (`None`, logged, if it is not local).
    async fn resolve(&self, address: &str, client: std::net::IpAddr) -> Option<LocalRecipient> {
        match self.delivery.check_recipient(address).await {
            Ok(RecipientCheck::Local(r)) => Some(r),
            other => {
                let why = match other {
                    Ok(_) => "not a local account".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(%client, account = %address, result = %why, "delivery: policy delivers to an account that is not local; ignored");
                None
            }
        }
    }
}

/// The recipient whose route actions are being applied.
struct Here<'a> {
    address: &'a str,
    local: Option<&'a LocalRecipient>,
    default_folder: &'a str,
    client: std::net::IpAddr,
}

/// The recipient as `rcpt-to` and `route` see it. The account's address
/// comes from the resolution at RCPT TO (`LocalRecipient::account_address`),
/// so neither hook costs a store look-up.
pub fn recipient_info(
    address: &str,
    params: Vec<Param>,
    local: Option<&LocalRecipient>,
) -> RecipientInfo {
    RecipientInfo {
        address: address.to_lowercase(),
        params,
        account: local.and_then(|l| l.account_address.clone()),
        tag: local.and_then(|l| l.tag.clone()),
    }
}
