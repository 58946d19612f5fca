//! The room where a message ends: one call, [`Room::deliver`], takes what
//! a receiving protocol collected (envelope, body, the session's facts,
//! the plugins' state) and returns a [`Report`]: the message refused as a
//! whole, or taken, with the recipients refused on their own.
//!
//! # The walk of one message (docs/architecture.md tells it too)
//! 1. The trace fields (our `Received:`, `Authentication-Results:`) are
//!    put in front of the body in the receiver's own buffer, which is
//!    then shared (never copied) with the plugins' view.
//! 2. The plan ([`crate::plan`]): without plugins each local recipient's
//!    INBOX and the queue for the others; with plugins `data` and `route`.
//! 3. Quotas ([`crate::quota`]): copies that do not fit are refused per
//!    recipient ([`Replies::PerRecipient`]); answered with one reply
//!    ([`Replies::One`]) the whole message gets `MailboxFull` if nothing
//!    else is taken, otherwise the over-quota copies go to the outbound
//!    queue for local redelivery (retried on the `[queue] retry`
//!    schedule, bounced after `max_age`: what Postfix in front of
//!    Dovecot does).
//! 4. Local copies are stored in one store call (the body once); the
//!    outbound queue gets the rest with the DSN parameters of each
//!    recipient (RFC 3461).
//! 5. The Sent copy of an authenticated submission, if asked for, and the
//!    `delivered` reports `NOTIFY=SUCCESS` asks for
//!    (`mailgate_store::queue::DeliveryReports`, written by the relay).
//!
//! Durable when it returns: the caller may say `250` for what the report
//! says was taken (RFC 5321 §6.1).

use std::sync::Arc;

use mailgate_log::list;
use mailgate_policy::{AuthResults, Hook, SessionInfo, TlsDetails};
use mailgate_store::queue::{
    DeliveryReports, FailedRecipient, LocalTarget, NewQueued, NewQueuedRecipient, OutboundQueue,
};
use mailgate_store::{Account, AccountId, DeliveryTarget, StoreError};

use crate::plan::{Outgoing, PlanInput};
use crate::quota::{self, QuotaCheck};
use crate::sieve::{Afterwards, SieveDelivery};
use crate::{Envelope, LocalDelivery, MissingTarget, RecipientCheck, Refusal, Report, TxPolicy};

/// The message a report from the room is about, as
/// [`DeliveryReports`] reads it: the envelope's sender and DSN parameters,
/// and the original's header section only (all a report from here
/// returns: a copy of the headers, not of the body).
fn report_original(envelope: &Envelope, message: &[u8], now: i64) -> NewQueued {
    let headers = &message[..mailgate_store::structure::header_block_len(message)];
    NewQueued {
        msg_id: None,
        sender: envelope.mail_from.clone(),
        recipients: Vec::new(),
        raw: Arc::new(headers.to_vec()),
        created: now,
        envid: envelope.envid.clone(),
        ret_full: envelope.ret_full,
        smtputf8: envelope.smtputf8 || !headers.is_ascii(),
        eight_bit: envelope.eight_bit,
    }
}

/// How the caller answers: the one thing the room must know about the
/// protocol, because it decides what may be refused on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replies {
    /// One reply for the whole message (SMTP).
    One,
    /// One reply per recipient (LMTP, RFC 2033 §4.2).
    PerRecipient,
}

/// This hop's trace fields, written in front of the message.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The header fields, each ending in CRLF (`Received:` first).
    pub fields: String,
    /// How many fields `fields` holds (they stay on top of what plugins
    /// add).
    pub count: usize,
    /// Inbound authentication results, for the plugins
    /// (`message.auth-results`).
    pub auth: Option<Arc<AuthResults>>,
    /// The TLS session the message arrived over, for the plugins
    /// (`message.tls`).
    pub tls: Option<Arc<TlsDetails>>,
}

/// A message received whole, as the protocol hands it to the room.
pub struct Arrival {
    /// The queue id given to it (in the reply and the log).
    pub id: String,
    /// The envelope.
    pub envelope: Envelope,
    /// The message as received (dot-unstuffed), without trace fields.
    pub body: Vec<u8>,
    /// Our trace fields.
    pub trace: Trace,
    /// The session, as the plugins see it.
    pub session: SessionInfo,
    /// The plugins' state of the transaction; `None` without plugins.
    pub policy: Option<TxPolicy>,
    /// How the caller answers.
    pub replies: Replies,
    /// The account whose `Sent` mailbox gets a copy (`[submission]
    /// save_sent` with AUTH); `None`: no copy.
    pub sent_copy: Option<Account>,
}

/// The end of every message: see the module doc.
pub struct Room {
    pub(crate) delivery: Arc<LocalDelivery>,
    pub(crate) outbound: Option<Arc<dyn OutboundQueue>>,
    /// Builds the `delivered` reports of `NOTIFY=SUCCESS` (the relay).
    reports: Option<Arc<dyn DeliveryReports>>,
    /// Rewrites the sender of forwarded copies (`[srs]`); `None`: the
    /// original sender goes out as it came.
    pub(crate) srs: Option<Arc<crate::srs::Srs>>,
    /// Users' Sieve scripts (`[sieve]`); `None`: not run.
    sieve: Option<Arc<SieveDelivery>>,
}

/// The folder the Sent copy goes to.
pub const SENT_FOLDER: &str = "Sent";

impl Room {
    /// A room storing through `delivery` and queueing to `outbound`
    /// (`None`: mail for other domains is refused).
    pub fn new(delivery: Arc<LocalDelivery>, outbound: Option<Arc<dyn OutboundQueue>>) -> Room {
        Room {
            delivery,
            outbound,
            reports: None,
            srs: None,
            sieve: None,
        }
    }

    /// The same room, rewriting the envelope sender of forwarded copies
    /// (alias targets and plugins' forwards or added recipients in other
    /// domains, Sieve redirects) with `srs`, so that they pass SPF at
    /// their destination.
    pub fn with_srs(mut self, srs: Option<Arc<crate::srs::Srs>>) -> Room {
        self.srs = srs;
        self
    }

    /// The same room, running each local account's active Sieve script
    /// after the plugins' plan (`crate::sieve`).
    pub fn with_sieve(mut self, sieve: Option<Arc<SieveDelivery>>) -> Room {
        self.sieve = sieve;
        self
    }

    /// The same room, sending the `delivered` reports (RFC 3464) that
    /// `NOTIFY=SUCCESS` asks for, built by `reports` (the relay, which
    /// writes every other report too) and queued like any message.
    pub fn with_reports(mut self, reports: Option<Arc<dyn DeliveryReports>>) -> Room {
        self.reports = reports;
        self
    }

    /// Plans, checks quotas, stores and queues one message; see the
    /// module doc.
    pub async fn deliver(&self, arrival: Arrival) -> Report {
        let Arrival {
            id,
            mut envelope,
            body,
            trace,
            session,
            policy,
            replies,
            sent_copy,
        } = arrival;
        let client = session.client_ip;
        let from = envelope.mail_from.clone();
        // The remote recipients the client named: sent with the sender
        // as it came; any other address for another domain is a forward.
        let client_remote: Vec<String> = envelope
            .recipients
            .iter()
            .filter(|r| r.local.is_none())
            .map(|r| r.address.clone())
            .collect();
        let rcpts: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| r.address.clone())
            .collect();
        // The trace fields go in front of the message in its own buffer
        // (one move of the bytes, into the room the receiver kept when the
        // size was announced): never a second copy of the message. When
        // no plugin reads the message, the `Return-Path:` of the local
        // copies goes there too, and the store takes this very buffer;
        // the queue and the Sent copy read past it.
        let viewed = policy
            .as_ref()
            .is_some_and(|p| p.chain.wants(Hook::Data) || p.chain.wants(Hook::Route));
        let return_path = if viewed {
            String::new()
        } else {
            crate::return_path(&from)
        };
        let rp_len = return_path.len();
        let trace_len = rp_len + trace.fields.len();
        let mut data = body;
        data.reserve_exact(trace_len);
        data.splice(0..0, return_path.bytes().chain(trace.fields.bytes()));
        let data = Arc::new(data);
        let input = PlanInput {
            session: &session,
            data: &data,
            trace_fields: trace.count,
            auth: trace.auth.clone(),
            tls: trace.tls.clone(),
            replies,
        };
        let plan = tracing::Instrument::instrument(
            self.plan(&mut envelope, policy, input),
            tracing::info_span!("message", queue_id = %id),
        )
        .await;
        let mut plan = match plan {
            Ok(plan) => plan,
            Err(why) => return Report::refused(id, why),
        };
        let size = data.len();
        if plan.discarded {
            tracing::info!(queue_id = %id, %client, %from, rcpts = %list(rcpts.iter().map(String::as_str)), size, outcome = "discarded", "delivery: message discarded by policy");
            return Report::taken(id);
        }
        // What the queue gets (no `Return-Path:`), and what the store
        // gets: the shared buffer itself when it holds one.
        let body: &[u8] = plan.edited.as_deref().unwrap_or(&data[rp_len..]);
        let stored = match plan.edited {
            None if rp_len > 0 => Stored::Prepared(data.clone()),
            _ => Stored::Plain(body),
        };
        let mut report = Report::taken(id.clone());
        report.refused = std::mem::take(&mut plan.refused);

        // Users' Sieve scripts, per local account, on the planned copies.
        let mut afterwards = Afterwards::default();
        if let Some(sieve) = &self.sieve {
            let copies = std::mem::take(&mut plan.copies);
            let ran = self
                .run_sieve(
                    sieve,
                    &id,
                    &envelope,
                    replies,
                    copies,
                    body,
                    &mut report.refused,
                    &mut afterwards,
                )
                .await;
            match ran {
                Ok(copies) => plan.copies = copies,
                Err(why) => return Report::refused(id, why),
            }
            if plan.copies.is_empty() && plan.outgoing.is_empty() && afterwards.queue.is_empty() {
                tracing::info!(%id, %client, %from, rcpts = ?rcpts, size, outcome = "discarded", "delivery: message discarded by sieve");
            }
        }

        // Quotas: each account with one stays locked from its check
        // until its copy is stored (`quota::QuotaLocks`).
        let quota_locks = self
            .delivery
            .quota_locks
            .lock(
                plan.copies
                    .iter()
                    .filter_map(|c| c.limit.as_ref())
                    .map(|l| l.account),
            )
            .await;
        let full = match self.full_accounts(&plan.copies, body.len() as u64).await {
            Ok(full) => full,
            Err(e) => {
                tracing::error!(queue_id = %id, %client, error = %e, outcome = "store error", "delivery: quota check failed");
                return Report::refused(id, Refusal::LocalError);
            }
        };
        if !full.is_empty() {
            let (over, fits): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.copies)
                .into_iter()
                .partition(|c| full.contains(&c.target.account));
            plan.copies = fits;
            match replies {
                Replies::PerRecipient => {
                    for c in &over {
                        let has_copy = plan.copies.iter().any(|k| k.owner == c.owner);
                        if !has_copy && report.refusal_of(&c.owner).is_none() {
                            report.refused.push((c.owner.clone(), Refusal::MailboxFull));
                        }
                    }
                }
                Replies::One => {
                    if plan.copies.is_empty() && plan.outgoing.is_empty() || self.outbound.is_none()
                    {
                        tracing::info!(queue_id = %id, %client, %from, rcpts = %list(rcpts.iter().map(String::as_str)), size, outcome = "over quota", "delivery: message refused: mailbox full");
                        return Report::refused(id, Refusal::MailboxFull);
                    }
                    // Kept in the queue for local redelivery, into the
                    // folder (and with the flags) planned for it.
                    for c in over {
                        let Some(limit) = c.limit else { continue };
                        if !plan.outgoing.iter().any(|o| o.address == limit.address) {
                            tracing::info!(queue_id = %id, rcpt = %c.owner, account = %limit.address, folder = %c.target.mailbox, "delivery: over quota; queued for redelivery");
                            let into = LocalTarget {
                                folder: c.target.mailbox,
                                flags: c.target.flags,
                            };
                            plan.outgoing.push(Outgoing {
                                address: limit.address,
                                owner: c.owner,
                                next_hop: None,
                                local: (!into.folder.eq_ignore_ascii_case("INBOX")
                                    || !into.flags.is_empty())
                                .then_some(into),
                            });
                        }
                    }
                }
            }
        }

        // Copies whose header a Sieve script edited (`editheader`): each
        // edited message once for its copies, before the shared one.
        let mut copies = 0;
        for (owners, stored) in self.store_sieve_edited(&plan.copies).await {
            match stored {
                Ok(n) => copies += n,
                Err(e) if replies == Replies::One || e.is_no_space() => {
                    tracing::error!(queue_id = %id, %client, %from, rcpts = %list(rcpts.iter().map(String::as_str)), size, error = %e, outcome = "store error", "delivery: delivery failed");
                    return Report::refused(id, refusal_of(&e));
                }
                Err(e) => {
                    for owner in owners {
                        tracing::error!(queue_id = %id, rcpt = %owner, error = %e, outcome = "store error", "delivery: delivery failed");
                        report.refused.push((owner, refusal_of(&e)));
                    }
                }
            }
        }
        // Local copies: one store call, the body once.
        let shared: Vec<&crate::plan::Copy> =
            plan.copies.iter().filter(|c| c.edited.is_none()).collect();
        if !shared.is_empty() {
            let targets: Vec<DeliveryTarget> = shared.iter().map(|c| c.target.clone()).collect();
            match self.store_copies(&from, &targets, &stored).await {
                Ok(d) => copies += d.len(),
                Err(e) if replies == Replies::One || e.is_no_space() => {
                    tracing::error!(queue_id = %id, %client, %from, rcpts = %list(rcpts.iter().map(String::as_str)), size, error = %e, outcome = "store error", "delivery: delivery failed");
                    return Report::refused(id, refusal_of(&e));
                }
                Err(e) => {
                    // Each recipient alone, so that one bad account does
                    // not fail the others.
                    tracing::warn!(queue_id = %id, error = %e, "delivery: storing all copies at once failed; one recipient at a time");
                    let mut owners: Vec<&str> = Vec::new();
                    for c in &shared {
                        if !owners.contains(&c.owner.as_str()) {
                            owners.push(&c.owner);
                        }
                    }
                    for owner in owners {
                        let targets: Vec<DeliveryTarget> = shared
                            .iter()
                            .filter(|c| c.owner == owner)
                            .map(|c| c.target.clone())
                            .collect();
                        match self.store_copies(&from, &targets, &stored).await {
                            Ok(d) => copies += d.len(),
                            Err(e) => {
                                tracing::error!(queue_id = %id, rcpt = %owner, error = %e, outcome = "store error", "delivery: delivery failed");
                                report.refused.push((owner.to_string(), refusal_of(&e)));
                            }
                        }
                    }
                }
            }
        }

        // Stored: the next delivery to these accounts may check now (and
        // the Sent copy below may lock its sender, who may be among them).
        drop(quota_locks);

        // The outbound queue: remote recipients, plugins' forwards and
        // relays, over-quota copies for redelivery.
        if !plan.outgoing.is_empty() {
            if let Err(e) = self
                .enqueue_all(&id, &envelope, &plan.outgoing, &client_remote, body)
                .await
            {
                tracing::error!(queue_id = %id, %client, %from, rcpts = %list(rcpts.iter().map(String::as_str)), size, error = %e, outcome = "queue error", "delivery: could not queue");
                let why = match e {
                    StoreError::NoSpace => Refusal::NoSpace,
                    _ => Refusal::LocalError,
                };
                return Report::refused(id, why);
            }
        }
        let remote: Vec<&str> = plan.outgoing.iter().map(|o| o.address.as_str()).collect();
        mailgate_metrics::recipients(
            mailgate_metrics::RecipientDisposition::DeliveredLocally,
            copies as u64,
        );
        mailgate_metrics::recipients(
            mailgate_metrics::RecipientDisposition::Queued,
            remote.len() as u64,
        );
        tracing::info!(queue_id = %id, %client, %from, nrcpt = rcpts.len(), rcpts = %list(rcpts.iter().map(String::as_str)), remote = %list(remote.iter().copied()), size, message_id = %message_id_of(body), copies, quarantined = plan.quarantined, user = session.auth_user.as_deref().unwrap_or("-"), outcome = "accepted", "delivery: message accepted");

        self.sieve_afterwards(&id, afterwards).await;
        if let Some(account) = sent_copy {
            self.save_sent_copy(&account, &data[trace_len..]).await;
        }
        self.notify_success(&envelope, &plan.copies, &report, body)
            .await;
        self.report_missing(&envelope, &report, body).await;
        report
    }

    /// The copies lost on the way (an alias target whose account is gone,
    /// [`crate::LocalRecipient::missing`]): each logged at WARN with the
    /// message's id, and reported to the sender in one `failed` DSN
    /// (`5.1.1`, naming the alias and the missing target) while the other
    /// copies are delivered: never a silent drop. A recipient refused as a
    /// whole (LMTP) already told the client; a failure to queue the report
    /// is logged only (the message itself was delivered).
    async fn report_missing(&self, envelope: &Envelope, report: &Report, message: &[u8]) {
        let mut failed = Vec::new();
        for r in &envelope.recipients {
            let Some(local) = &r.local else { continue };
            if local.missing.is_empty() || report.refusal_of(&r.address).is_some() {
                continue;
            }
            for m in &local.missing {
                tracing::warn!(
                    queue_id = %report.id,
                    rcpt = %r.address,
                    alias = %m.alias,
                    target = %m.target,
                    "delivery: alias target does not exist; that copy is returned to the sender"
                );
                let mut recipient = NewQueuedRecipient::new(m.target.clone());
                recipient.notify = r.notify.clone();
                recipient.orcpt = Some(
                    r.orcpt
                        .clone()
                        .unwrap_or_else(|| format!("rfc822;{}", r.address)),
                );
                failed.push(FailedRecipient {
                    recipient,
                    reply: m.reply(),
                });
            }
        }
        if failed.is_empty() || envelope.mail_from.is_empty() {
            return;
        }
        let (Some(reports), Some(queue)) = (&self.reports, &self.outbound) else {
            tracing::warn!(queue_id = %report.id, "delivery: no outbound queue; the sender gets no failure report for the missing alias targets");
            return;
        };
        let now = chrono::Utc::now().timestamp();
        let original = report_original(envelope, message, now);
        let Some(dsn) = reports.failed(&original, &failed, now) else {
            return;
        };
        let dsn_id = dsn.msg_id.clone().unwrap_or_default();
        match queue.enqueue(dsn).await {
            Ok(_) => {
                tracing::info!(queue_id = %dsn_id, orig = %report.id, to = %envelope.mail_from, "delivery: failure report for missing alias targets queued")
            }
            Err(e) => {
                tracing::warn!(queue_id = %report.id, error = %e, "delivery: could not queue the failure report for missing alias targets")
            }
        }
    }

    /// The `delivered` notice for the recipients that asked for one
    /// (`NOTIFY=SUCCESS`) and whose copies are stored now (not refused,
    /// not waiting in the queue for room, not quarantined). A failure is
    /// logged only: the message itself was delivered.
    async fn notify_success(
        &self,
        envelope: &Envelope,
        copies: &[crate::plan::Copy],
        report: &Report,
        message: &[u8],
    ) {
        let (Some(reports), Some(queue)) = (&self.reports, &self.outbound) else {
            return;
        };
        if envelope.mail_from.is_empty() {
            return;
        }
        let delivered: Vec<NewQueuedRecipient> = envelope
            .recipients
            .iter()
            .filter(|r| r.wants_success() && report.refusal_of(&r.address).is_none())
            .filter(|r| {
                copies
                    .iter()
                    .any(|c| c.owner == r.address && c.target.mailbox != crate::QUARANTINE_FOLDER)
            })
            .map(|r| NewQueuedRecipient {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                notify: r.notify.clone(),
                next_hop: None,
                local: None,
            })
            .collect();
        if delivered.is_empty() {
            return;
        }
        let now = chrono::Utc::now().timestamp();
        let original = report_original(envelope, message, now);
        let Some(dsn) = reports.delivered(&original, &delivered, now) else {
            return;
        };
        let dsn_id = dsn.msg_id.clone().unwrap_or_default();
        match queue.enqueue(dsn).await {
            Ok(_) => {
                tracing::info!(queue_id = %dsn_id, orig = %report.id, to = %envelope.mail_from, "delivery: success notice queued")
            }
            Err(e) => {
                tracing::warn!(queue_id = %report.id, error = %e, "delivery: could not queue the success notice")
            }
        }
    }

    /// What the users' scripts left to do once the message is taken:
    /// queue redirects, vacation replies and reject reports; put failure
    /// reports into INBOXes. Failures are logged: the message was taken.
    async fn sieve_afterwards(&self, id: &str, afterwards: Afterwards) {
        if let Some(queue) = &self.outbound {
            for (what, message) in afterwards.queue {
                match queue.enqueue(message).await {
                    Ok(qid) => tracing::info!(%id, queue_id = qid, what, "sieve: queued"),
                    Err(e) => {
                        tracing::error!(%id, what, error = %e, "sieve: could not queue")
                    }
                }
            }
        }
        for (account, text) in afterwards.reports {
            let target = crate::inbox(account);
            if let Err(e) = self.delivery.deliver_to("", &[target], &text).await {
                tracing::warn!(%id, account, error = %e, "sieve: could not store the failure report");
            }
        }
    }

    /// Stores the local copies from `stored`.
    async fn store_copies(
        &self,
        from: &str,
        targets: &[DeliveryTarget],
        stored: &Stored<'_>,
    ) -> mailgate_store::StoreResult<Vec<mailgate_store::Delivered>> {
        match stored {
            Stored::Prepared(raw) => self.delivery.deliver_prepared(targets, raw.clone()).await,
            Stored::Plain(body) => self.delivery.deliver_to(from, targets, body).await,
        }
    }

    /// The accounts among `copies` that cannot take `size` more bytes.
    /// Quarantined copies are not counted: the quarantine is the
    /// operator's, and a full mailbox must not let a message out of it.
    async fn full_accounts(
        &self,
        copies: &[crate::plan::Copy],
        size: u64,
    ) -> mailgate_store::StoreResult<Vec<AccountId>> {
        let mut full = Vec::new();
        let mut seen = Vec::new();
        for c in copies {
            let Some(limit) = &c.limit else { continue };
            if c.target.mailbox == crate::QUARANTINE_FOLDER || seen.contains(&limit.account) {
                continue;
            }
            seen.push(limit.account);
            let store = self.delivery.store().as_ref();
            if let QuotaCheck::Full { used, limit: bytes } =
                quota::check(store, limit.account, limit.bytes, size).await?
            {
                tracing::info!(rcpt = %c.owner, account = %limit.address, used, limit = bytes, size, "delivery: over quota");
                full.push(limit.account);
            }
        }
        Ok(full)
    }

    /// The queue entries for `outgoing`: one with the sender as it came
    /// (the remote recipients the client named, `client_remote`, and
    /// copies for our own domains), one with the SRS sender for the
    /// forwards (anything else for another domain), when `[srs]` is on
    /// and the sender is not in a local domain. Forwards come first: if
    /// the second entry fails, the message is refused and the client's
    /// retry may send the forwards twice (never loses them).
    async fn enqueue_all(
        &self,
        msg_id: &str,
        envelope: &Envelope,
        outgoing: &[Outgoing],
        client_remote: &[String],
        body: &[u8],
    ) -> mailgate_store::StoreResult<()> {
        let sender = envelope.mail_from.as_str();
        let rewritten = match &self.srs {
            Some(srs) => match crate::split_address(sender) {
                Some((_, domain)) if !self.delivery.is_local_domain(&domain).await? => {
                    srs.forward(sender)
                }
                _ => sender.to_string(),
            },
            None => sender.to_string(),
        };
        if rewritten == sender {
            self.enqueue(msg_id, envelope, sender, outgoing, body)
                .await?;
            return Ok(());
        }
        let mut plain = Vec::new();
        let mut forwarded = Vec::new();
        for o in outgoing {
            let named = o.address == o.owner && client_remote.contains(&o.address);
            let local = match crate::split_address(&o.address) {
                Some((_, domain)) => self.delivery.is_local_domain(&domain).await?,
                None => true,
            };
            if named || local {
                plain.push(o.clone());
            } else {
                forwarded.push(o.clone());
            }
        }
        if !forwarded.is_empty() {
            tracing::info!(queue_id = %msg_id, from = %sender, srs = %rewritten, "delivery: forwarded with the sender rewritten (SRS)");
            self.enqueue(msg_id, envelope, &rewritten, &forwarded, body)
                .await?;
        }
        if !plain.is_empty() {
            self.enqueue(msg_id, envelope, sender, &plain, body).await?;
        }
        Ok(())
    }

    /// One queue entry for `outgoing`, each recipient with the DSN
    /// parameters of the envelope recipient it is for.
    async fn enqueue(
        &self,
        msg_id: &str,
        envelope: &Envelope,
        sender: &str,
        outgoing: &[Outgoing],
        body: &[u8],
    ) -> mailgate_store::StoreResult<i64> {
        let Some(queue) = &self.outbound else {
            return Err(StoreError::Invalid(
                "mail for the outbound queue but there is none".into(),
            ));
        };
        let recipients = outgoing
            .iter()
            .map(|o| {
                let owner = envelope
                    .recipients
                    .iter()
                    .find(|r| r.address.eq_ignore_ascii_case(&o.owner));
                let orcpt = owner
                    .and_then(|r| r.orcpt.clone())
                    .or_else(|| (o.address != o.owner).then(|| format!("rfc822;{}", o.owner)));
                NewQueuedRecipient {
                    address: o.address.clone(),
                    orcpt,
                    notify: owner.and_then(|r| r.notify.clone()),
                    next_hop: o.next_hop.clone(),
                    local: o.local.clone(),
                }
            })
            .collect();
        let headers = &body[..mailgate_store::structure::header_block_len(body)];
        let smtputf8 = envelope.smtputf8
            || !sender.is_ascii()
            || outgoing.iter().any(|o| !o.address.is_ascii())
            || !headers.is_ascii();
        let message = NewQueued {
            msg_id: Some(msg_id.to_string()),
            sender: sender.to_string(),
            recipients,
            raw: Arc::new(body.to_vec()),
            created: chrono::Utc::now().timestamp(),
            envid: envelope.envid.clone(),
            ret_full: envelope.ret_full,
            smtputf8,
            eight_bit: envelope.eight_bit || !body.is_ascii(),
        };
        let id = queue.enqueue(message).await?;
        tracing::info!(queue_id = %msg_id, from = %sender, rcpts = %list(outgoing.iter().map(|o| o.address.as_str())), "delivery: queued");
        Ok(id)
    }

    /// `[submission] save_sent`: a copy of what the user submitted, marked
    /// `\Seen`, in their `Sent` mailbox, if it fits their quota. A failure
    /// here is logged only: the message itself was accepted.
    async fn save_sent_copy(&self, account: &Account, submitted: &[u8]) {
        let store = self.delivery.store().as_ref();
        let _lock = match account.quota_bytes {
            Some(_) => self.delivery.quota_locks.lock([account.id]).await,
            None => Vec::new(),
        };
        if let Some(limit) = account.quota_bytes {
            match quota::check(store, account.id, limit, submitted.len() as u64).await {
                Ok(QuotaCheck::Fits) => {}
                Ok(QuotaCheck::Full { used, limit }) => {
                    tracing::warn!(user = %account.address, used, limit, "delivery: the Sent copy is not saved: over quota");
                    return;
                }
                Err(e) => {
                    tracing::warn!(user = %account.address, error = %e, "delivery: could not save the Sent copy");
                    return;
                }
            }
        }
        let target = DeliveryTarget {
            account: account.id,
            mailbox: SENT_FOLDER.into(),
            flags: vec!["\\Seen".into()],
        };
        let raw = Arc::new(submitted.to_vec());
        if let Err(e) = self.delivery.deliver_prepared(&[target], raw).await {
            tracing::warn!(user = %account.address, error = %e, "delivery: could not save the Sent copy");
        }
    }
}

/// The bytes the local copies are made of.
enum Stored<'a> {
    /// The receiver's buffer, `Return-Path:` and trace fields included:
    /// stored as it is.
    Prepared(Arc<Vec<u8>>),
    /// A message without `Return-Path:` (plugins read or edited it): the
    /// field is added in a copy.
    Plain(&'a [u8]),
}

/// At most this many bytes of a Message-ID are read for the log (the
/// log line cuts the value further, to `mailgate_log::format::MAX_VALUE`).
const MAX_LOGGED_MESSAGE_ID: usize = 998;

/// The Message-ID of `data` for the log: the first `Message-ID:` field's
/// value, unfolded and trimmed, bytes that are not UTF-8 written `\xNN`
/// (control characters are escaped by the log formatter, like every
/// field); `-` without one.
fn message_id_of(data: &[u8]) -> String {
    let block = &data[..mailgate_store::structure::header_block_len(data)];
    let fields = mailgate_store::structure::header_fields(block);
    let Some(field) = fields.iter().find(|f| f.is("Message-ID")) else {
        return "-".into();
    };
    let value: Vec<u8> = field
        .value
        .iter()
        .take(MAX_LOGGED_MESSAGE_ID)
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    match value.trim_ascii() {
        [] => "-".into(),
        v => mailgate_log::bytes(v).to_string(),
    }
}

/// What a store error means for one recipient.
fn refusal_of(e: &StoreError) -> Refusal {
    match e {
        StoreError::NotFound(_) => Refusal::UnknownUser,
        StoreError::NoSpace => Refusal::NoSpace,
        _ => Refusal::LocalError,
    }
}

/// One local recipient of a queued message, as the queue hands it back
/// to local delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOff {
    /// The address queued (an account's, for a copy kept over quota).
    pub address: String,
    /// The folder and flags the copy was planned for when the message
    /// arrived (a plugin's choice, kept in the queue with the copy);
    /// `None`: INBOX.
    pub into: Option<LocalTarget>,
}

impl From<&str> for HandOff {
    /// Into INBOX.
    fn from(address: &str) -> HandOff {
        HandOff {
            address: address.to_string(),
            into: None,
        }
    }
}

impl LocalDelivery {
    /// Delivers to local `recipients` one by one, each into its folder
    /// (INBOX unless the queue kept one with it) with the quota rule (the
    /// queue runner's hand-off: bounces to local senders, over-quota
    /// copies redelivered, mail for our domains a plugin routed through
    /// the queue). One outcome per recipient, in order: `Err(MailboxFull)`
    /// is temporary (the queue tries again), `Err(UnknownUser)` permanent.
    /// An alias list with one full account waits whole: a copy to the
    /// others now and the list again later would duplicate. A delivered
    /// recipient comes with the alias targets on its way that reach no
    /// account ([`crate::LocalRecipient::missing`], each logged at WARN):
    /// found by the attempt that delivers the other copies, so the caller
    /// reports them to the sender once (the queue's `failed` DSN).
    pub async fn deliver_each(
        &self,
        sender: &str,
        recipients: &[HandOff],
        body: &[u8],
    ) -> Vec<Result<Vec<MissingTarget>, Refusal>> {
        let mut out = Vec::with_capacity(recipients.len());
        for r in recipients {
            out.push(self.deliver_one(sender, r, body).await);
        }
        out
    }

    async fn deliver_one(
        &self,
        sender: &str,
        r: &HandOff,
        body: &[u8],
    ) -> Result<Vec<MissingTarget>, Refusal> {
        let address = r.address.as_str();
        let local = match self.check_recipient(address).await {
            Ok(RecipientCheck::Local(l)) => l,
            Ok(_) => return Err(Refusal::UnknownUser),
            Err(e) => {
                tracing::error!(rcpt = %address, error = %e, "delivery: local recipient check failed");
                return Err(Refusal::LocalError);
            }
        };
        let size = body.len() as u64;
        let _lock = self
            .quota_locks
            .lock(local.limits.iter().map(|l| l.account))
            .await;
        let mut targets = Vec::with_capacity(local.accounts.len());
        for &account in &local.accounts {
            if let Some(l) = local.limits.iter().find(|l| l.account == account) {
                match quota::check(self.store().as_ref(), account, l.bytes, size).await {
                    Ok(QuotaCheck::Fits) => {}
                    Ok(QuotaCheck::Full { used, limit }) => {
                        // All or nothing: a copy to the others now and
                        // the whole list again later would duplicate.
                        tracing::info!(rcpt = %address, account = %l.address, used, limit, size, "delivery: over quota; left in the queue");
                        return Err(Refusal::MailboxFull);
                    }
                    Err(e) => {
                        tracing::error!(rcpt = %address, error = %e, "delivery: quota check failed");
                        return Err(Refusal::LocalError);
                    }
                }
            }
            targets.push(match &r.into {
                Some(t) => DeliveryTarget {
                    account,
                    mailbox: t.folder.clone(),
                    flags: t.flags.clone(),
                },
                None => crate::inbox(account),
            });
        }
        self.deliver_to(sender, &targets, body).await.map_err(|e| {
            tracing::error!(rcpt = %address, error = %e, "delivery: local delivery failed");
            refusal_of(&e)
        })?;
        for m in &local.missing {
            tracing::warn!(
                rcpt = %address,
                alias = %m.alias,
                target = %m.target,
                "delivery: alias target does not exist; that copy is returned to the sender"
            );
        }
        Ok(local.missing)
    }
}

#[cfg(test)]
mod tests {
    use super::message_id_of;

    #[test]
    fn message_id_for_the_log() {
        let m = b"Received: x\r\nMessage-ID:\r\n <a.1@example.org>\r\nSubject: s\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(
            message_id_of(m),
            "<a.1@example.org>",
            "unfolded, header only"
        );
        assert_eq!(message_id_of(b"Subject: s\r\n\r\n"), "-");
        assert_eq!(message_id_of(b"message-id:   \r\n\r\n"), "-");
        // Bytes that are not UTF-8 are written `\xNN` here; control
        // characters are left to the log formatter, which escapes every
        // field (mailgate_log). A huge one is cut.
        let evil = message_id_of(b"Message-ID: <\x1b[31m\xff@x>\r\n\r\n");
        assert_eq!(evil, "<\u{1b}[31m\\xff@x>");
        let mut long = b"Message-ID: <".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100_000));
        long.extend_from_slice(b">\r\n\r\n");
        assert!(message_id_of(&long).len() <= super::MAX_LOGGED_MESSAGE_ID);
    }
}
