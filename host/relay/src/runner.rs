//! The queue runner: takes the messages that are due, delivers each to
//! its recipients' next hops, records per-recipient outcomes, schedules
//! retries, and sends DSNs.
//!
//! RFC 5321 §4.5.4.1 (Sending Strategy):
//! > In a typical system, the program that composes a message has some
//! > method for requesting immediate attention for a new piece of outgoing
//! > mail, while mail that cannot be transmitted immediately MUST be queued
//! > and periodically retried by the sender. [...] The sender MUST delay
//! > retrying a particular destination after one attempt has failed. In
//! > general, the retry interval SHOULD be at least 30 minutes; however,
//! > more sophisticated and variable strategies will be beneficial when the
//! > SMTP client can determine the reason for non-delivery. Retries
//! > continue until the message is transmitted or the sender gives up; the
//! > give-up time generally needs to be at least 4-5 days.
//!
//! Here the waits come from [`RetrySchedule`](crate::config::RetrySchedule)
//! (the last step repeats) and the give-up time is its `max_age`.
//!
//! RFC 5321 §5.1: "When the lookup succeeds, the mapping can result in a
//! list of alternative delivery addresses rather than a single address
//! [...] the SMTP client SHOULD try at least two addresses." Every address
//! of every hop is tried in order until one opens a session.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailgate_delivery::{HandOff, MissingTarget};
use mailgate_log::list;
use mailgate_store::queue::{
    AttemptRecord, NewQueued, NewQueuedRecipient, NextHop, OutboundQueue, QueueEntry, QueueId,
    QueueStore, QueuedRecipient, RecipientStatus, RecipientUpdate,
};
use mailgate_store::StoreResult;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::tls::TlsClients;
use crate::client::{ClientError, Envelope, OutRecipient, RcptOutcome, SessionParams, SmtpClient};
use crate::clock::Clock;
use crate::config::{RelayConfig, TlsPolicy};
use crate::dkim::DkimSigner;
use crate::dsn::{self, DsnKind};
use crate::local::{LocalHandoff, LocalOutcome};
use crate::mta_sts::{self, HttpsFetcher, MtaSts};
use crate::route::{Hop, RouteError, Router};

/// Messages taken from the store per look.
const BATCH: usize = 256;

/// Who reports the success of the recipients a destination accepted
/// (RFC 3461 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acceptance {
    /// Stored in a local mailbox: a `delivered` report is ours to send.
    Local,
    /// Accepted by a next hop that does not offer DSN: we send `relayed`.
    HopWithoutDsn,
    /// Accepted by a next hop that offers DSN (and got the parameters):
    /// any success report is that hop's to send.
    HopWithDsn,
}

/// What an idle session may be reused for: the same host and address,
/// under the same TLS policy and with the same authentication (a session
/// opened opportunistically, perhaps in plain text after a failed
/// handshake, never carries mail that requires TLS).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IdleKey {
    host: String,
    addr: SocketAddr,
    tls: TlsPolicy,
    auth: bool,
}

/// An idle session kept for the next message to the same hop.
struct Idle {
    client: SmtpClient,
    since: Instant,
}

/// The outbound relay: queue runner and the [`OutboundQueue`] that the
/// submission side hands messages to.
pub struct Relay {
    store: Arc<dyn QueueStore>,
    local: Option<Arc<dyn LocalHandoff>>,
    /// Name resolution and the TLS client settings; a reload replaces
    /// them ([`Relay::set_transport`]).
    router: std::sync::RwLock<Arc<Router>>,
    tls: std::sync::RwLock<TlsClients>,
    /// The settings in force; a reload (SIGHUP) replaces them for the
    /// next queue run ([`Relay::set_config`]).
    config: std::sync::RwLock<Arc<RelayConfig>>,
    clock: Arc<dyn Clock>,
    dkim: Option<Arc<DkimSigner>>,
    mta_sts: Option<MtaSts>,
    wake: Notify,
    in_flight: Mutex<HashSet<QueueId>>,
    /// The messages whose claims [`Relay::renew_claims`] keeps: those in
    /// flight whose outcome is not being recorded yet.
    renewing: Mutex<HashSet<QueueId>>,
    idle: Mutex<HashMap<IdleKey, Vec<Idle>>>,
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    all: Arc<Semaphore>,
}

/// The parts a [`Relay`] is made of.
pub struct RelayParts {
    /// The queue.
    pub store: Arc<dyn QueueStore>,
    /// Local delivery for our own domains (bounces to local senders).
    pub local: Option<Arc<dyn LocalHandoff>>,
    /// Name resolution.
    pub router: Router,
    /// Settings.
    pub config: RelayConfig,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// TLS client configurations.
    pub tls: TlsClients,
    /// DKIM signing of outgoing mail, if configured.
    pub dkim: Option<Arc<DkimSigner>>,
    /// Where MTA-STS policies are kept across restarts and shared by the
    /// nodes of the store (`None`: in memory only).
    pub mta_sts_cache: Option<Arc<dyn mailgate_store::MtaStsCache>>,
}

impl Relay {
    /// A relay; call [`Relay::run`] to start delivering.
    pub fn new(parts: RelayParts) -> Arc<Relay> {
        let all = Arc::new(Semaphore::new(parts.config.max_concurrent.max(1)));
        let mta_sts = parts.config.mta_sts.then(|| {
            let dns = parts.router.dns().clone();
            let fetcher = HttpsFetcher::new(
                dns.clone(),
                parts.tls.verified.clone(),
                parts.config.mta_sts_port,
                parts.config.mta_sts_timeout,
            )
            .with_source_ip(parts.config.source_ip);
            let sts = MtaSts::new(dns, Arc::new(fetcher), parts.clock.clone());
            match &parts.mta_sts_cache {
                Some(store) => sts.with_store(store.clone()),
                None => sts,
            }
        });
        Arc::new(Relay {
            store: parts.store,
            local: parts.local,
            router: std::sync::RwLock::new(Arc::new(parts.router)),
            config: std::sync::RwLock::new(Arc::new(parts.config)),
            clock: parts.clock,
            tls: std::sync::RwLock::new(parts.tls),
            dkim: parts.dkim,
            mta_sts,
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            renewing: Mutex::new(HashSet::new()),
            idle: Mutex::new(HashMap::new()),
            per_destination: Mutex::new(HashMap::new()),
            all,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<RelayConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// New settings (a reload of the configuration): the attempts that
    /// start from now on use them; those under way finish with the old.
    /// The name servers and `tls_ca_file` come with
    /// [`Relay::set_transport`]; the MTA-STS switch and `max_concurrent`
    /// are read once at start and stay as they were.
    pub fn set_config(&self, config: RelayConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    /// A new resolver and TLS client settings (a reload that changed the
    /// name servers or the extra CA file): for the attempts that start
    /// from now on. MTA-STS keeps the ones it started with.
    pub fn set_transport(&self, router: Router, tls: TlsClients) {
        *self.router.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(router);
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
    }

    fn router(&self) -> Arc<Router> {
        self.router
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn tls(&self) -> TlsClients {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks the runner to look at the queue now (after an enqueue or a
    /// flush).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown` says `true`: delivers what is due, then sleeps
    /// until the next message is due, a wake-up, or the poll interval.
    /// Deliveries under way at shutdown are finished (bounded by the
    /// command timeout) so that no outcome is lost.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let renewer = tokio::spawn(self.clone().renew_claims());
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.spawn_due(&mut tasks).await {
                Ok(()) => {}
                Err(e) => tracing::error!(error = %e, "relay: cannot read the queue"),
            }
            let wait = match self.store.queue_next_due().await {
                Ok(Some(at)) => {
                    Duration::from_secs((at - self.clock.now()).clamp(0, i64::MAX) as u64)
                        .min(self.config().poll_interval)
                }
                _ => self.config().poll_interval,
            };
            // Something due now but all in flight: wait for a task.
            let wait = wait.max(Duration::from_millis(200));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        renewer.abort();
        self.close_idle().await;
    }

    /// Delivers everything due now and waits for it (tests, `queue flush`
    /// in a process without a running relay).
    pub async fn run_once(self: &Arc<Self>) -> StoreResult<()> {
        let mut tasks = JoinSet::new();
        self.spawn_due(&mut tasks).await?;
        let all_done = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            _ = all_done => {}
            _ = self.clone().renew_claims() => {}
        }
        Ok(())
    }

    /// Renews this node's claims on the messages whose attempts are under
    /// way, every third of `[queue] lease`, in one store call, for as long
    /// as it runs (the callers drop it when their attempts are done). In
    /// a store that several nodes share, a slow attempt (a receiving
    /// server that takes its time) is so never taken over by another node
    /// while this one still works on it; if this node dies, its claims run
    /// out within a lease. The embedded store claims nothing and the call
    /// does nothing.
    async fn renew_claims(self: Arc<Self>) {
        loop {
            let lease = self.config().lease;
            tokio::time::sleep((lease / 3).max(Duration::from_millis(100))).await;
            let ids: Vec<QueueId> = {
                let renewing = self.renewing.lock().unwrap_or_else(|p| p.into_inner());
                renewing.iter().copied().collect()
            };
            if ids.is_empty() {
                continue;
            }
            let kept = match self.store.queue_renew(&ids, self.clock.now(), lease).await {
                Ok(kept) => kept,
                Err(e) => {
                    tracing::warn!(error = %e, messages = ids.len(),
                        "relay: cannot renew the claims on the messages being delivered; \
                         another node may take them over when they run out");
                    continue;
                }
            };
            if kept.len() == ids.len() {
                continue;
            }
            let kept: HashSet<QueueId> = kept.into_iter().collect();
            // An attempt that is recording its outcome has left
            // `renewing` before its record ended the claim: not a loss.
            let renewing = self.renewing.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids
                .iter()
                .filter(|id| !kept.contains(id) && renewing.contains(id))
            {
                tracing::warn!(
                    queue_row = *id,
                    "relay: the claim on a message being delivered was lost (it ran out and \
                     another node took the message, or the message was deleted); its \
                     recipients may be delivered twice"
                );
            }
        }
    }

    fn stop_renewing(&self, id: QueueId) {
        self.renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Closes the sessions kept for reuse.
    pub async fn close_idle(&self) {
        let all: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.drain().flat_map(|(_, v)| v).collect()
        };
        for i in all {
            i.client.quit().await;
        }
    }

    async fn spawn_due(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> StoreResult<()> {
        let lease = self.config().lease;
        let due = self
            .store
            .queue_claim(self.clock.now(), BATCH, lease)
            .await?;
        for entry in due {
            let fresh = self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(entry.id);
            if !fresh {
                continue;
            }
            self.renewing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(entry.id);
            let relay = self.clone();
            // Every line of the attempt is in the span `relay{queue_id=ID}`,
            // the id of the `250` (docs/operations.md, *Following a
            // message in the logs*).
            let span = tracing::info_span!("relay", queue_id = %entry.msg_id);
            let task = async move {
                let id = entry.id;
                // The concurrency limits are taken per destination inside
                // the attempt (one message may have several).
                if let Err(e) = relay.attempt(entry).await {
                    // The claim stays until it runs out (a lease, on a
                    // shared store): the message is tried again then, not
                    // at once in a loop.
                    tracing::error!(error = %e, "relay: attempt not recorded");
                }
                relay.stop_renewing(id);
                relay
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            };
            tasks.spawn(tracing::Instrument::instrument(task, span));
        }
        Ok(())
    }

    /// One delivery attempt for one message: its destinations (recipient
    /// domain, or the next hop a routing plugin chose) are tried at once,
    /// each under the per-destination and global limits; then the outcomes
    /// are recorded in one transaction together with the DSN for the
    /// recipients that failed for good in this attempt.
    async fn attempt(self: &Arc<Self>, entry: QueueEntry) -> StoreResult<()> {
        if entry.is_finished() {
            // Left behind by a node that died between recording its last
            // outcomes (their reports went into the queue with them) and
            // removing it: only the removal is missing.
            self.stop_renewing(entry.id);
            self.store.queue_complete(entry.id, None).await?;
            return Ok(());
        }
        let Some(body) = self.store.queue_body(entry.id).await? else {
            return Ok(()); // deleted meanwhile
        };
        let entry = Arc::new(entry);
        let body: Arc<[u8]> = body.into();
        // One destination per recipient domain; recipients with a next hop
        // go together per next hop (and TLS policy: a `require_tls`
        // domain's recipients never share a session that may be plain).
        let mut groups: BTreeMap<(String, Option<String>, TlsPolicy), Vec<QueuedRecipient>> =
            BTreeMap::new();
        for r in entry.pending() {
            let tls = self.config().tls_policy(&r.domain);
            let key = match &r.next_hop {
                Some(hop) => (String::new(), Some(hop.clone()), tls),
                None => (r.domain.clone(), None, tls),
            };
            groups.entry(key).or_default().push(r.clone());
        }
        let mut deliveries = JoinSet::new();
        for ((domain, next_hop, tls), rcpts) in groups {
            let (relay, entry, body) = (self.clone(), entry.clone(), body.clone());
            // In the attempt's span, so that its lines (the local
            // hand-off's too) carry the queue id.
            let delivery = async move {
                let (outcomes, host, acceptance, lost) = relay
                    .deliver_domain(&entry, &body, &domain, next_hop.as_deref(), tls, &rcpts)
                    .await;
                (rcpts, outcomes, host, acceptance, lost)
            };
            deliveries.spawn(tracing::Instrument::in_current_span(delivery));
        }
        let mut updates = Vec::new();
        let mut accepted_by: HashMap<u32, Acceptance> = HashMap::new();
        let mut lost: Vec<(u32, MissingTarget)> = Vec::new();
        while let Some(done) = deliveries.join_next().await {
            match done {
                Ok((rcpts, outcomes, host, acceptance, missing)) => {
                    for (r, o) in rcpts.iter().zip(outcomes) {
                        accepted_by.insert(r.index, acceptance);
                        updates.push(self.update_for(&entry, r, o, host.clone()));
                    }
                    for (r, m) in rcpts.iter().zip(missing) {
                        lost.extend(m.into_iter().map(|m| (r.index, m)));
                    }
                }
                // Its recipients stay pending, retried on the schedule.
                Err(e) => {
                    tracing::error!(error = %e, "relay: delivery task failed")
                }
            }
        }
        updates.sort_by_key(|u| u.index);
        let now = self.clock.now();
        let next_attempt = self.next_attempt(&entry, now);
        let warn = self.delay_warning_due(&entry, &updates, now);
        // The reports this attempt owes go in with its outcomes, in one
        // transaction: a recipient reaches each event once, so it is
        // reported exactly once, without waiting for the other
        // destinations' retries.
        let seen = applied(&entry, &updates, now);
        let notices = self.notices(&seen, &body, &updates, &accepted_by, &lost, warn, now);
        let reports = notices.len();
        let record = AttemptRecord {
            at: now,
            updates,
            next_attempt,
            warned: warn,
            notices,
        };
        // The record ends the claim: stop renewing it first.
        self.stop_renewing(entry.id);
        let Some(after) = self.store.queue_record_attempt(entry.id, record).await? else {
            return Ok(());
        };
        tracing::info!(
            attempts = after.attempts,
            pending = after.pending().count(),
            reports,
            "relay: attempt recorded"
        );
        if reports > 0 {
            self.wake();
        }
        if after.is_finished() {
            self.store.queue_complete(after.id, None).await?;
        }
        Ok(())
    }

    /// The DSNs owed after an attempt (`seen`: the entry with `updates`
    /// applied), one per event, each about the recipients whose NOTIFY
    /// asks for it (RFC 3461 §4.1, §5.2): `failed` for those that failed
    /// for good now; `delivered` for those stored locally now; `relayed`
    /// for those a next hop without DSN accepted now (a hop with DSN
    /// reports success itself); `delayed` for those still pending when a
    /// delay warning is due (`warn`). The `failed` report also names the
    /// alias targets that reach no account (`lost`, by the index of the
    /// recipient delivered locally now), `Original-Recipient` the alias.
    #[allow(clippy::too_many_arguments)]
    fn notices(
        &self,
        seen: &QueueEntry,
        body: &[u8],
        updates: &[RecipientUpdate],
        accepted_by: &HashMap<u32, Acceptance>,
        lost: &[(u32, MissingTarget)],
        warn: bool,
        now: i64,
    ) -> Vec<NewQueued> {
        let now_in = |r: &QueuedRecipient, status: RecipientStatus| {
            updates
                .iter()
                .any(|u| u.index == r.index && u.status == status)
        };
        let pick = |keep: &dyn Fn(&QueuedRecipient) -> bool| -> Vec<&QueuedRecipient> {
            seen.recipients.iter().filter(|r| keep(r)).collect()
        };
        let accepted = |r: &QueuedRecipient, how: Acceptance| {
            now_in(r, RecipientStatus::Delivered) && accepted_by.get(&r.index) == Some(&how)
        };
        let retry_until = seen.created
            + i64::try_from(self.config().retry.max_age.as_secs()).unwrap_or(i64::MAX / 2);
        let lost_copies = lost_copies(seen, lost, now);
        let mut failed = pick(&|r| now_in(r, RecipientStatus::Failed));
        failed.extend(lost_copies.iter());
        let mut events = vec![
            (DsnKind::Failure, failed),
            (
                DsnKind::Delivered,
                pick(&|r| accepted(r, Acceptance::Local)),
            ),
            (
                DsnKind::Relayed,
                pick(&|r| accepted(r, Acceptance::HopWithoutDsn)),
            ),
        ];
        if warn {
            events.push((
                DsnKind::Delay { retry_until },
                pick(&|r| r.status == RecipientStatus::Pending),
            ));
        }
        events
            .into_iter()
            .filter(|(_, rcpts)| !rcpts.is_empty())
            .filter_map(|(kind, rcpts)| {
                let built = dsn::build(&self.config().hostname, seen, body, &rcpts, kind, now)?;
                // The report's own line, outside the original's span: its
                // queue id is its own, `orig` names the message it is about.
                tracing::info!(
                    parent: None,
                    queue_id = %built.msg_id.as_deref().unwrap_or("-"),
                    orig = %seen.msg_id,
                    kind = %kind.action(),
                    to = %seen.sender,
                    rcpts = %list(rcpts.iter().map(|r| r.address.as_str())),
                    "relay: delivery status notification queued"
                );
                mailgate_metrics::dsn_sent(match kind {
                    DsnKind::Failure => mailgate_metrics::DsnKind::Failure,
                    DsnKind::Delay { .. } => mailgate_metrics::DsnKind::Delay,
                    DsnKind::Relayed => mailgate_metrics::DsnKind::Relayed,
                    DsnKind::Delivered => mailgate_metrics::DsnKind::Delivered,
                });
                Some(built)
            })
            .collect()
    }

    /// When `entry` is tried next after the attempt ending at `now`.
    fn next_attempt(&self, entry: &QueueEntry, now: i64) -> i64 {
        let delay = self.config().retry.delay_after(entry.attempts + 1);
        now + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX / 2)
    }

    fn delay_warning_due(&self, entry: &QueueEntry, updates: &[RecipientUpdate], now: i64) -> bool {
        let Some(after) = self.config().retry.delay_warning else {
            return false;
        };
        !entry.warned
            && !entry.sender.is_empty()
            && now - entry.created >= after.as_secs() as i64
            && updates.iter().any(|u| u.status == RecipientStatus::Pending)
    }

    /// Turns an outcome into the stored update; past `max_age` a
    /// temporary failure becomes final.
    fn update_for(
        &self,
        entry: &QueueEntry,
        r: &QueuedRecipient,
        outcome: RcptOutcome,
        host: Option<String>,
    ) -> RecipientUpdate {
        let expired =
            self.clock.now() - entry.created >= self.config().retry.max_age.as_secs() as i64;
        let (status, reply) = match outcome {
            RcptOutcome::Delivered(t) => (RecipientStatus::Delivered, t),
            RcptOutcome::Permanent(t) => (RecipientStatus::Failed, t),
            RcptOutcome::Temporary(t) if expired => (
                RecipientStatus::Failed,
                format!("{t} (gave up after {} attempts)", entry.attempts + 1),
            ),
            RcptOutcome::Temporary(t) => (RecipientStatus::Pending, t),
        };
        mailgate_metrics::relay_attempt(match status {
            RecipientStatus::Delivered => mailgate_metrics::RelayResult::Delivered,
            RecipientStatus::Pending => mailgate_metrics::RelayResult::Deferred,
            RecipientStatus::Failed => mailgate_metrics::RelayResult::Failed,
        });
        if status == RecipientStatus::Failed {
            mailgate_metrics::recipients(mailgate_metrics::RecipientDisposition::Bounced, 1);
        }
        // One line per recipient and attempt, at INFO, with the remote
        // reply (escaped and bounded by the log formatter).
        let remote = host.as_deref().unwrap_or("-");
        let attempt = entry.attempts + 1;
        match status {
            RecipientStatus::Pending => {
                let next = self.next_attempt(entry, self.clock.now());
                tracing::info!(rcpt = %r.address, host = %remote, attempt, reply = %reply, next_attempt = %log_time(next), "relay: deferred");
            }
            RecipientStatus::Delivered => {
                tracing::info!(rcpt = %r.address, host = %remote, attempt, reply = %reply, "relay: delivered");
            }
            RecipientStatus::Failed => {
                tracing::info!(rcpt = %r.address, host = %remote, attempt, reply = %reply, "relay: failed");
            }
        }
        RecipientUpdate {
            index: r.index,
            status,
            reply: Some(reply),
            remote_host: host,
        }
    }

    fn destination_permit(&self, destination: &str) -> Arc<Semaphore> {
        let mut map = self
            .per_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config().max_per_destination.max(1))))
            .clone()
    }

    /// Delivers to the recipients of one destination: `domain`'s, locally
    /// or through its hops, or the `next_hop` a routing plugin chose (then
    /// `domain` is unused), with the `tls` policy. Returns one outcome per
    /// recipient, the host that gave them (if remote), and who reports
    /// the successes among them.
    async fn deliver_domain(
        &self,
        entry: &QueueEntry,
        body: &[u8],
        domain: &str,
        next_hop: Option<&str>,
        tls: TlsPolicy,
        rcpts: &[QueuedRecipient],
    ) -> (
        Vec<RcptOutcome>,
        Option<String>,
        Acceptance,
        Vec<Vec<MissingTarget>>,
    ) {
        let all = |o: RcptOutcome| {
            (
                vec![o; rcpts.len()],
                None,
                Acceptance::HopWithoutDsn,
                Vec::new(),
            )
        };
        if let (Some(local), None) = (&self.local, next_hop) {
            match local.is_local_domain(domain).await {
                Ok(true) => {
                    let _permit = self.all.acquire().await;
                    let copies: Vec<HandOff> = rcpts
                        .iter()
                        .map(|r| HandOff {
                            address: r.address.clone(),
                            into: r.local.clone(),
                        })
                        .collect();
                    let (outcomes, missing) = local
                        .deliver(&entry.sender, &copies, body)
                        .await
                        .into_iter()
                        .map(|LocalOutcome { outcome, missing }| (outcome, missing))
                        .unzip();
                    return (outcomes, None, Acceptance::Local, missing);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "relay: local domain check failed");
                    return all(RcptOutcome::Temporary("451 4.3.0 local error".into()));
                }
            }
        }
        let destination = next_hop.map_or_else(|| domain.to_string(), |h| format!("via {h}"));
        let semaphore = self.destination_permit(&destination);
        let _permit = semaphore.acquire().await;
        let _global = self.all.acquire().await;
        let smarthost = match next_hop {
            Some(_) => None,
            None => self.config().smarthost_for(domain).cloned(),
        };
        let hops = match (next_hop, &smarthost) {
            (Some(h), _) => match NextHop::parse(h) {
                Ok(h) => {
                    let port = h.port.unwrap_or(self.config().port);
                    if h.mx {
                        self.router().mx_hops(&h.host, port).await
                    } else {
                        self.router().host_hops(&h.host, port).await
                    }
                }
                Err(e) => {
                    return all(RcptOutcome::Permanent(format!(
                        "554 5.3.5 bad next hop: {e}"
                    )))
                }
            },
            (None, Some(s)) => self.router().host_hops(&s.host, s.port).await,
            (None, None) => self.router().mx_hops(domain, self.config().port).await,
        };
        let mut hops = match hops {
            Ok(h) => h,
            Err(e) => return all(route_outcome(&e)),
        };
        // MTA-STS (RFC 8461) applies to MX routing only: not to a
        // smarthost, a plugin's next hop, or an address literal.
        let mut tls = tls;
        let mut sts_mode = None;
        let by_mx = next_hop.is_none() && smarthost.is_none() && !domain.starts_with('[');
        if let (true, Some(sts)) = (by_mx, &self.mta_sts) {
            if let Some(policy) = sts.policy(domain).await {
                match policy.mode {
                    mta_sts::Mode::Enforce => {
                        let (ok, refused): (Vec<Hop>, Vec<Hop>) =
                            hops.into_iter().partition(|h| policy.allows(&h.host));
                        for h in &refused {
                            tracing::warn!(%domain, mx = %h.host, patterns = %policy.mx.join(", "), "relay: MTA-STS (enforce): MX host not in the policy; not tried");
                        }
                        if ok.is_empty() {
                            let names: Vec<&str> =
                                refused.iter().map(|h| h.host.as_str()).collect();
                            return all(RcptOutcome::Temporary(format!(
                                "451 4.7.5 MTA-STS policy of {domain} (enforce): no MX host matches (MX: {}; policy mx: {})",
                                names.join(", "),
                                policy.mx.join(", ")
                            )));
                        }
                        hops = ok;
                        tls = TlsPolicy::RequireVerified;
                        sts_mode = Some(mta_sts::Mode::Enforce);
                    }
                    mta_sts::Mode::Testing => {
                        for h in hops.iter().filter(|h| !policy.allows(&h.host)) {
                            tracing::warn!(%domain, mx = %h.host, patterns = %policy.mx.join(", "), "relay: MTA-STS (testing): MX host not in the policy; enforce would not try it (delivering as usual)");
                        }
                        sts_mode = Some(mta_sts::Mode::Testing);
                    }
                    mta_sts::Mode::None => {}
                }
            }
        }
        let signed;
        let body = match &self.dkim {
            Some(signer) => {
                signed = signer.sign_for(&entry.sender, body);
                signed.as_deref().unwrap_or(body)
            }
            None => body,
        };
        let recipients: Vec<OutRecipient> = rcpts
            .iter()
            .map(|r| OutRecipient {
                address: r.address.clone(),
                notify: r.notify.clone(),
                orcpt: r.orcpt.clone(),
            })
            .collect();
        let env = Envelope {
            sender: &entry.sender,
            recipients: &recipients,
            body,
            smtputf8: entry.smtputf8,
            eight_bit: entry.eight_bit,
            envid: entry.envid.as_deref(),
            ret_full: entry.ret_full,
        };
        let params = SessionParams {
            helo: self.config().hostname.clone(),
            source_ip: self.config().source_ip,
            connect_timeout: self.config().connect_timeout,
            command_timeout: self.config().command_timeout,
            tls,
            tls_clients: self.tls(),
            auth: smarthost.and_then(|s| s.auth.clone()),
        };
        let (mut outcomes, host, hop_dsn) = self
            .deliver_hops(
                &hops,
                &params,
                &env,
                (sts_mode == Some(mta_sts::Mode::Testing)).then_some(domain),
            )
            .await;
        if sts_mode == Some(mta_sts::Mode::Enforce) && host.is_none() {
            // No session opened: say why TLS was insisted on.
            for o in outcomes.iter_mut() {
                if let RcptOutcome::Temporary(t) = o {
                    t.push_str(&format!(
                        " (MTA-STS policy of {domain}: enforce, verified TLS required)"
                    ));
                }
            }
        }
        let acceptance = if hop_dsn {
            Acceptance::HopWithDsn
        } else {
            Acceptance::HopWithoutDsn
        };
        (outcomes, host, acceptance, Vec::new())
    }

    /// Opens a session with `host` at `addr`. With opportunistic TLS, a
    /// failed handshake is followed by one more connection to the same
    /// address without STARTTLS (Postfix's `may` level); with TLS required
    /// it is an error like any other (the caller moves on, and defers).
    async fn open_session(
        &self,
        addr: SocketAddr,
        host: &str,
        params: &SessionParams,
    ) -> Result<SmtpClient, ClientError> {
        match SmtpClient::connect(addr, host, params).await {
            Err(ClientError::Handshake(why)) if params.tls == TlsPolicy::Opportunistic => {
                tracing::warn!(%host, %addr, error = %why, "relay: TLS handshake failed; trying the same host again in plain text (opportunistic TLS)");
                let plain = SessionParams {
                    tls: TlsPolicy::Disabled,
                    ..params.clone()
                };
                SmtpClient::connect(addr, host, &plain).await
            }
            Err(ClientError::Handshake(why)) => {
                tracing::warn!(%host, %addr, error = %why, "relay: TLS handshake failed and TLS is required for this domain; not sent in plain text");
                Err(ClientError::Handshake(why))
            }
            other => other,
        }
    }

    /// Tries each address of each hop until one session opens, then sends
    /// the message there. Also says whether that hop offered DSN (and so
    /// received the DSN parameters).
    async fn deliver_hops(
        &self,
        hops: &[Hop],
        params: &SessionParams,
        env: &Envelope<'_>,
        sts_testing: Option<&str>,
    ) -> (Vec<RcptOutcome>, Option<String>, bool) {
        let mut last_error = String::from("no address to try");
        let mut permanent = false;
        for hop in hops {
            for ip in &hop.addrs {
                let addr = SocketAddr::new(*ip, hop.port);
                let key = IdleKey {
                    host: hop.host.clone(),
                    addr,
                    tls: params.tls,
                    auth: params.auth.is_some(),
                };
                let mut client = match self.take_idle(&key) {
                    Some(c) => c,
                    None => match self.open_session(addr, &hop.host, params).await {
                        Ok(c) => {
                            if let Some(domain) = sts_testing {
                                report_sts_testing(domain, &c);
                            }
                            c
                        }
                        Err(e) => {
                            tracing::info!(host = %hop.host, %addr, error = %e, "relay: cannot open a session");
                            permanent = e.is_permanent();
                            last_error = error_text(&hop.host, &e);
                            continue;
                        }
                    },
                };
                let hop_dsn = client.capabilities().dsn;
                return match client.send_mail(env).await {
                    Ok(outcomes) => {
                        if outcomes
                            .iter()
                            .any(|o| matches!(o, RcptOutcome::Delivered(_)))
                        {
                            mailgate_metrics::bytes_relayed(env.body.len() as u64);
                        }
                        self.keep_idle(key, client);
                        (outcomes, Some(hop.host.clone()), hop_dsn)
                    }
                    Err(e) => {
                        // The connection broke inside the transaction: not
                        // tried elsewhere now, since the peer may have taken
                        // the message (RFC 5321 §6.1 prefers a duplicate
                        // later to a loss, but not a duplicate now).
                        tracing::info!(host = %hop.host, error = %e, "relay: session failed");
                        let t = RcptOutcome::Temporary(error_text(&hop.host, &e));
                        (
                            vec![t; env.recipients.len()],
                            Some(hop.host.clone()),
                            hop_dsn,
                        )
                    }
                };
            }
        }
        let o = if permanent && hops.len() == 1 {
            RcptOutcome::Permanent(last_error)
        } else {
            RcptOutcome::Temporary(last_error)
        };
        (vec![o; env.recipients.len()], None, false)
    }

    fn take_idle(&self, key: &IdleKey) -> Option<SmtpClient> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() < self.config().idle_reuse {
                return Some(i.client);
            }
            // Too old: dropping closes the socket without QUIT, which the
            // peer has likely timed out on anyway.
        }
        None
    }

    fn keep_idle(&self, key: IdleKey, client: SmtpClient) {
        if self.config().idle_reuse.is_zero() {
            tokio::spawn(client.quit());
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(key).or_default().push(Idle {
            client,
            since: Instant::now(),
        });
    }
}

/// A time in the log: UTC, `YYYY-MM-DDTHH:MM:SSZ` (as `queue list
/// --json` writes it).
fn log_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `entry` as it stands once `updates` (this attempt's outcomes, at
/// `now`) are applied to its pending recipients, as the store will record
/// them.
/// The alias targets found missing when their alias was delivered
/// locally (`lost`: the recipient's index and the target), as failed
/// recipients of `seen` for its `failed` report: the recipient's `NOTIFY`,
/// `Original-Recipient` its `ORCPT` or else its own address (the alias),
/// the reply [`MissingTarget::reply`].
fn lost_copies(seen: &QueueEntry, lost: &[(u32, MissingTarget)], now: i64) -> Vec<QueuedRecipient> {
    lost.iter()
        .filter_map(|(index, m)| {
            let r = seen.recipients.iter().find(|r| r.index == *index)?;
            Some(QueuedRecipient {
                index: r.index,
                address: m.target.clone(),
                domain: m
                    .target
                    .rsplit_once('@')
                    .map_or_else(String::new, |(_, d)| d.to_string()),
                orcpt: Some(
                    r.orcpt
                        .clone()
                        .unwrap_or_else(|| format!("rfc822;{}", r.address)),
                ),
                notify: r.notify.clone(),
                status: RecipientStatus::Failed,
                last_reply: Some(m.reply()),
                remote_host: None,
                local: None,
                updated: Some(now),
                next_hop: None,
            })
        })
        .collect()
}

fn applied(entry: &QueueEntry, updates: &[RecipientUpdate], now: i64) -> QueueEntry {
    let mut after = entry.clone();
    for r in after.recipients.iter_mut() {
        if r.status != RecipientStatus::Pending {
            continue;
        }
        if let Some(u) = updates.iter().find(|u| u.index == r.index) {
            r.status = u.status;
            r.last_reply.clone_from(&u.reply);
            r.remote_host.clone_from(&u.remote_host);
            r.updated = Some(now);
        }
    }
    after
}

/// MTA-STS `testing` mode (RFC 8461 §5): what `enforce` would have
/// refused about a session, logged at WARN. Under `enforce` the session
/// is verified TLS already and nothing is logged.
fn report_sts_testing(domain: &str, c: &SmtpClient) {
    let problem = if !c.is_tls() {
        Some("no TLS".to_string())
    } else {
        c.cert_problem()
            .map(|p| format!("certificate not valid: {p}"))
    };
    if let Some(problem) = problem {
        tracing::warn!(%domain, mx = %c.host(), %problem, "relay: MTA-STS (testing): enforce would refuse this session (delivering as usual)");
    }
}

fn error_text(host: &str, e: &ClientError) -> String {
    match e {
        ClientError::Rejected(r) => format!("{} (from {host})", r.summary()),
        other => format!("451 4.4.1 {host}: {other}"),
    }
}

fn route_outcome(e: &RouteError) -> RcptOutcome {
    if e.is_temporary() {
        RcptOutcome::Temporary(e.reply_text())
    } else {
        RcptOutcome::Permanent(e.reply_text())
    }
}

#[async_trait]
impl OutboundQueue for Relay {
    /// Stores the message (DKIM is applied when it is sent) and wakes the
    /// runner.
    async fn enqueue(&self, message: NewQueued) -> StoreResult<QueueId> {
        let id = self.store.enqueue(message).await?;
        self.wake();
        Ok(id)
    }
}

impl Relay {
    /// Queues `data` from `mail_from` (empty for `<>`) for `recipients`,
    /// created now, with the SMTPUTF8 and 8-bit flags worked out from the
    /// envelope and the bytes; durable when it returns. This is what the
    /// submission session's hand-off calls.
    pub async fn submit(
        &self,
        mail_from: &str,
        recipients: &[String],
        data: &[u8],
    ) -> StoreResult<QueueId> {
        let routed: Vec<(String, Option<String>)> =
            recipients.iter().map(|r| (r.clone(), None)).collect();
        self.submit_routed(mail_from, &routed, data).await
    }

    /// [`Relay::submit`] with a next hop per recipient (`None`: MX
    /// routing), as a routing plugin's `relay(host)` chose it; a next hop
    /// that is not a [`NextHop`] is refused (`StoreError::Invalid`).
    pub async fn submit_routed(
        &self,
        mail_from: &str,
        recipients: &[(String, Option<String>)],
        data: &[u8],
    ) -> StoreResult<QueueId> {
        let smtputf8 = !mail_from.is_ascii() || recipients.iter().any(|(r, _)| !r.is_ascii()) || {
            let headers = dsn::header_section(data);
            !headers.is_ascii()
        };
        let message = NewQueued {
            msg_id: None,
            sender: mail_from.to_string(),
            recipients: recipients
                .iter()
                .map(|(r, hop)| NewQueuedRecipient {
                    next_hop: hop.clone(),
                    ..NewQueuedRecipient::new(r.clone())
                })
                .collect(),
            raw: Arc::new(data.to_vec()),
            created: self.clock.now(),
            envid: None,
            ret_full: None,
            smtputf8,
            eight_bit: !data.is_ascii(),
        };
        self.enqueue(message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(index: u32, status: RecipientStatus) -> QueuedRecipient {
        QueuedRecipient {
            index,
            address: format!("r{index}@b.test"),
            domain: "b.test".into(),
            orcpt: None,
            notify: None,
            status,
            last_reply: None,
            remote_host: None,
            updated: None,
            next_hop: None,
            local: None,
        }
    }

    #[test]
    fn applied_changes_only_pending_recipients() {
        let entry = QueueEntry {
            id: 1,
            msg_id: "1".into(),
            sender: "a@a.test".into(),
            size: 1,
            created: 0,
            next_attempt: 0,
            attempts: 0,
            held: false,
            warned: false,
            envid: None,
            ret_full: None,
            smtputf8: false,
            eight_bit: false,
            recipients: vec![
                rcpt(0, RecipientStatus::Failed),
                rcpt(1, RecipientStatus::Pending),
                rcpt(2, RecipientStatus::Pending),
            ],
        };
        let update = |index, status| RecipientUpdate {
            index,
            status,
            reply: Some("550 5.1.1 no".into()),
            remote_host: Some("mx.b.test".into()),
        };
        let after = applied(
            &entry,
            &[
                update(0, RecipientStatus::Delivered),
                update(1, RecipientStatus::Failed),
            ],
            42,
        );
        assert_eq!(after.recipients[0].status, RecipientStatus::Failed);
        assert_eq!(after.recipients[0].updated, None, "a final state sticks");
        assert_eq!(after.recipients[1].status, RecipientStatus::Failed);
        assert_eq!(after.recipients[1].updated, Some(42));
        assert_eq!(
            after.recipients[1].remote_host.as_deref(),
            Some("mx.b.test")
        );
        assert_eq!(after.recipients[2].status, RecipientStatus::Pending);
        assert_eq!(after.recipients[2].last_reply, None);
    }
}
