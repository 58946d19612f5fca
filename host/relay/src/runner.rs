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
use mailgate_store::queue::{
    AttemptRecord, NewQueued, OutboundQueue, QueueEntry, QueueId, QueueStore, QueuedRecipient,
    RecipientStatus, RecipientUpdate,
};
use mailgate_store::StoreResult;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::tls::TlsClients;
use crate::client::{ClientError, Envelope, OutRecipient, RcptOutcome, SessionParams, SmtpClient};
use crate::clock::Clock;
use crate::config::RelayConfig;
use crate::dkim::DkimSigner;
use crate::dsn::{self, DsnKind};
use crate::local::LocalHandoff;
use crate::route::{Hop, RouteError, Router};

/// Messages taken from the store per look.
const BATCH: usize = 256;

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
    router: Router,
    config: RelayConfig,
    clock: Arc<dyn Clock>,
    tls: TlsClients,
    dkim: Option<Arc<DkimSigner>>,
    wake: Notify,
    in_flight: Mutex<HashSet<QueueId>>,
    idle: Mutex<HashMap<(String, SocketAddr), Vec<Idle>>>,
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
}

impl Relay {
    /// A relay; call [`Relay::run`] to start delivering.
    pub fn new(parts: RelayParts) -> Arc<Relay> {
        let all = Arc::new(Semaphore::new(parts.config.max_concurrent.max(1)));
        Arc::new(Relay {
            store: parts.store,
            local: parts.local,
            router: parts.router,
            config: parts.config,
            clock: parts.clock,
            tls: parts.tls,
            dkim: parts.dkim,
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            idle: Mutex::new(HashMap::new()),
            per_destination: Mutex::new(HashMap::new()),
            all,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &RelayConfig {
        &self.config
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
                        .min(self.config.poll_interval)
                }
                _ => self.config.poll_interval,
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
        self.close_idle().await;
    }

    /// Delivers everything due now and waits for it (tests, `queue flush`
    /// in a process without a running relay).
    pub async fn run_once(self: &Arc<Self>) -> StoreResult<()> {
        let mut tasks = JoinSet::new();
        self.spawn_due(&mut tasks).await?;
        while tasks.join_next().await.is_some() {}
        Ok(())
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
        let due = self.store.queue_due(self.clock.now(), BATCH).await?;
        for entry in due {
            let fresh = self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(entry.id);
            if !fresh {
                continue;
            }
            let relay = self.clone();
            tasks.spawn(async move {
                let id = entry.id;
                let permit = relay.all.clone().acquire_owned().await;
                if let Err(e) = relay.attempt(entry).await {
                    tracing::error!(queue_id = id, error = %e, "relay: attempt not recorded");
                }
                drop(permit);
                relay
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            });
        }
        Ok(())
    }

    /// One delivery attempt for one message.
    async fn attempt(&self, entry: QueueEntry) -> StoreResult<()> {
        let Some(body) = self.store.queue_body(entry.id).await? else {
            return Ok(()); // deleted meanwhile
        };
        let mut by_domain: BTreeMap<String, Vec<&QueuedRecipient>> = BTreeMap::new();
        for r in entry.pending() {
            by_domain.entry(r.domain.clone()).or_default().push(r);
        }
        let mut updates = Vec::new();
        for (domain, rcpts) in by_domain {
            let (outcomes, host) = self.deliver_domain(&entry, &body, &domain, &rcpts).await;
            for (r, o) in rcpts.iter().zip(outcomes) {
                updates.push(self.update_for(&entry, r, o, host.clone()));
            }
        }
        let now = self.clock.now();
        let attempts = entry.attempts + 1;
        let next_attempt = now
            + i64::try_from(self.config.retry.delay_after(attempts).as_secs())
                .unwrap_or(i64::MAX / 2);
        let warn = self.delay_warning_due(&entry, &updates, now);
        let record = AttemptRecord {
            at: now,
            updates,
            next_attempt,
            warned: warn,
        };
        let Some(after) = self.store.queue_record_attempt(entry.id, record).await? else {
            return Ok(());
        };
        tracing::info!(
            queue_id = after.id,
            attempts = after.attempts,
            pending = after.pending().count(),
            "relay: attempt recorded"
        );
        if after.is_finished() {
            let failed: Vec<&QueuedRecipient> = after
                .recipients
                .iter()
                .filter(|r| r.status == RecipientStatus::Failed)
                .collect();
            let bounce = dsn::build(
                &self.config.hostname,
                &after,
                &body,
                &failed,
                DsnKind::Failure,
                now,
            );
            self.store.queue_complete(after.id, bounce).await?;
            self.wake();
        } else if warn {
            let pending: Vec<&QueuedRecipient> = after.pending().collect();
            let retry_until = after.created
                + i64::try_from(self.config.retry.max_age.as_secs()).unwrap_or(i64::MAX / 2);
            if let Some(warning) = dsn::build(
                &self.config.hostname,
                &after,
                &body,
                &pending,
                DsnKind::Delay { retry_until },
                now,
            ) {
                self.store.enqueue(warning).await?;
                self.wake();
            }
        }
        Ok(())
    }

    fn delay_warning_due(&self, entry: &QueueEntry, updates: &[RecipientUpdate], now: i64) -> bool {
        let Some(after) = self.config.retry.delay_warning else {
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
            self.clock.now() - entry.created >= self.config.retry.max_age.as_secs() as i64;
        let (status, reply) = match outcome {
            RcptOutcome::Delivered(t) => (RecipientStatus::Delivered, t),
            RcptOutcome::Permanent(t) => (RecipientStatus::Failed, t),
            RcptOutcome::Temporary(t) if expired => (
                RecipientStatus::Failed,
                format!("{t} (gave up after {} attempts)", entry.attempts + 1),
            ),
            RcptOutcome::Temporary(t) => (RecipientStatus::Pending, t),
        };
        if status != RecipientStatus::Pending {
            tracing::info!(queue_id = entry.id, rcpt = %r.address, status = status.as_str(), reply = %reply, "relay: recipient done");
        }
        RecipientUpdate {
            index: r.index,
            status,
            reply: Some(reply),
            remote_host: host,
        }
    }

    fn destination_permit(&self, domain: &str) -> Arc<Semaphore> {
        let mut map = self
            .per_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(domain.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_per_destination.max(1))))
            .clone()
    }

    /// Delivers to the recipients of one domain: locally, or through the
    /// hops found for it. Returns one outcome per recipient and the host
    /// that gave them, if remote.
    async fn deliver_domain(
        &self,
        entry: &QueueEntry,
        body: &[u8],
        domain: &str,
        rcpts: &[&QueuedRecipient],
    ) -> (Vec<RcptOutcome>, Option<String>) {
        if let Some(local) = &self.local {
            match local.is_local_domain(domain).await {
                Ok(true) => {
                    let addrs: Vec<String> = rcpts.iter().map(|r| r.address.clone()).collect();
                    return (local.deliver(&entry.sender, &addrs, body).await, None);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "relay: local domain check failed");
                    let t = RcptOutcome::Temporary("451 4.3.0 local error".into());
                    return (vec![t; rcpts.len()], None);
                }
            }
        }
        let semaphore = self.destination_permit(domain);
        let _permit = semaphore.acquire().await;
        let smarthost = self.config.smarthost_for(domain);
        let hops = match smarthost {
            Some(s) => self.router.host_hops(&s.host, s.port).await,
            None => self.router.mx_hops(domain, self.config.port).await,
        };
        let hops = match hops {
            Ok(h) => h,
            Err(e) => return (vec![route_outcome(&e); rcpts.len()], None),
        };
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
            helo: self.config.hostname.clone(),
            source_ip: self.config.source_ip,
            connect_timeout: self.config.connect_timeout,
            command_timeout: self.config.command_timeout,
            tls: self.config.tls_policy(domain),
            tls_clients: self.tls.clone(),
            auth: smarthost.and_then(|s| s.auth.clone()),
        };
        self.deliver_hops(&hops, &params, &env).await
    }

    /// Tries each address of each hop until one session opens, then sends
    /// the message there.
    async fn deliver_hops(
        &self,
        hops: &[Hop],
        params: &SessionParams,
        env: &Envelope<'_>,
    ) -> (Vec<RcptOutcome>, Option<String>) {
        let mut last_error = String::from("no address to try");
        let mut permanent = false;
        for hop in hops {
            for ip in &hop.addrs {
                let addr = SocketAddr::new(*ip, hop.port);
                let key = (hop.host.clone(), addr);
                let mut client = match self.take_idle(&key) {
                    Some(c) => c,
                    None => match SmtpClient::connect(addr, &hop.host, params).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::info!(host = %hop.host, %addr, error = %e, "relay: cannot open a session");
                            permanent = e.is_permanent();
                            last_error = error_text(&hop.host, &e);
                            continue;
                        }
                    },
                };
                return match client.send_mail(env).await {
                    Ok(outcomes) => {
                        self.keep_idle(key, client);
                        (outcomes, Some(hop.host.clone()))
                    }
                    Err(e) => {
                        // The connection broke inside the transaction: not
                        // tried elsewhere now, since the peer may have taken
                        // the message (RFC 5321 §6.1 prefers a duplicate
                        // later to a loss, but not a duplicate now).
                        tracing::info!(host = %hop.host, error = %e, "relay: session failed");
                        let t = RcptOutcome::Temporary(error_text(&hop.host, &e));
                        (vec![t; env.recipients.len()], Some(hop.host.clone()))
                    }
                };
            }
        }
        let o = if permanent && hops.len() == 1 {
            RcptOutcome::Permanent(last_error)
        } else {
            RcptOutcome::Temporary(last_error)
        };
        (vec![o; env.recipients.len()], None)
    }

    fn take_idle(&self, key: &(String, SocketAddr)) -> Option<SmtpClient> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() < self.config.idle_reuse {
                return Some(i.client);
            }
            // Too old: dropping closes the socket without QUIT, which the
            // peer has likely timed out on anyway.
        }
        None
    }

    fn keep_idle(&self, key: (String, SocketAddr), client: SmtpClient) {
        if self.config.idle_reuse.is_zero() {
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
        let smtputf8 = !mail_from.is_ascii() || recipients.iter().any(|r| !r.is_ascii()) || {
            let headers = dsn::header_section(data);
            !headers.is_ascii()
        };
        let message = NewQueued {
            sender: mail_from.to_string(),
            recipients: recipients
                .iter()
                .map(|r| mailgate_store::queue::NewQueuedRecipient::new(r.clone()))
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
