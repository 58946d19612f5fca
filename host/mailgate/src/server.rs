//! `mailgate serve`: open the store, bind the listeners, run sessions,
//! stop cleanly on SIGTERM.
//!
//! # Shutdown
//! On SIGTERM (or SIGINT) the listeners close at once, so no new
//! connection is accepted. Every session is told through a watch channel:
//! an idle session says goodbye (`421 4.3.2` in SMTP) and closes; a
//! session in the middle of a transaction finishes it first. The server
//! waits for the sessions up to `shutdown_timeout` seconds, then exits.
//! Nothing acknowledged can be lost either way: a `250` is only said after
//! the store's commit.
//!
//! # TLS
//! With a `[tls]` table the certificate is loaded once at start (the
//! server refuses to start without it) and shared by every listener:
//! STARTTLS on `smtp`, `submission` and `imap`, STLS on `pop3`, implicit
//! TLS on `submissions`, `pop3s` and `imaps`. The files are watched and reloaded when
//! they change, and on SIGHUP; sessions already open keep their TLS.
//!
//! # Reload
//! SIGHUP also re-reads the configuration file (`Reloader`): each
//! listener's session settings are built again and swapped in for the
//! sessions that start afterwards, the local domains, the connection
//! limits and the relay's settings are replaced in place, and keys that
//! need a restart are logged and kept (`crate::reload` has the list).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::Authenticator;
use mailgate_delivery::LocalDelivery;
use mailgate_pop3::Pop3Context;
use mailgate_smtp::{Role, SenderGrants, SmtpContext, SmtpLimits};
use mailgate_store::{Backend, Store};
use mailgate_tls::{Acceptor, Alpn, Certificates, TlsMode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::connections;
use crate::reload::Live;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory is in use by another `mailgate serve`.
    #[error("the data directory {0} is in use by another mailgate server")]
    Locked(String),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] mailgate_store::StoreError),
    /// A listener could not be bound.
    #[error("cannot listen for {protocol} on {address}: {source}")]
    Bind {
        /// Which listener.
        protocol: &'static str,
        /// The configured address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] mailgate_tls::TlsError),
    /// The outbound relay could not be set up (`[relay]`, `[queue]`,
    /// `[[dkim]]`).
    #[error("{0}")]
    Relay(#[from] crate::relay::RelaySetupError),
    /// The policy runtime could not start (`[plugins]`).
    #[error("plugins: {0}")]
    Policy(#[from] mailgate_policy::PolicyError),
    /// The files of an older version (plugins' key-value data, MTA-STS
    /// cache) could not be moved into the store.
    #[error("moving older files into the store: {0}")]
    Import(#[from] crate::shared_state::ImportError),
    /// The system Sieve plugin could not be loaded (`[sieve] plugin`).
    #[error("sieve plugin: {0}")]
    Sieve(String),
    /// Anything else from the operating system.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// `user`/`group`, or the data directory's owner (`crate::privileges`).
    #[error("{0}")]
    Privileges(#[from] crate::privileges::PrivilegeError),
    /// A configuration value the file check did not see (built in code).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Counts the sessions that are running, so shutdown can wait for them.
#[derive(Default)]
struct SessionTracker {
    active: AtomicUsize,
    idle: Notify,
}

struct SessionGuard(Arc<SessionTracker>);

impl SessionTracker {
    fn enter(self: &Arc<Self>) -> SessionGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The shared parts every session is built from.
#[derive(Clone)]
pub struct Services {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Users' Sieve scripts (the same store), for ManageSieve.
    pub sieve_scripts: Arc<dyn mailgate_store::SieveScripts>,
    /// Local delivery.
    pub delivery: Arc<LocalDelivery>,
    /// Authentication for all protocols.
    pub auth: Arc<Authenticator>,
    /// Where mail for other domains goes (and over-quota copies kept
    /// for local redelivery): the relay's queue, which wakes the runner.
    pub outbound: Arc<dyn mailgate_store::queue::OutboundQueue>,
    /// Builds the `delivered` reports of `NOTIFY=SUCCESS`: the relay.
    pub reports: Arc<dyn mailgate_store::queue::DeliveryReports>,
    /// The policy plugins (`None` without `[plugins]`).
    pub policy: Option<Arc<mailgate_policy::PolicyManager>>,
    /// The IMAP mailbox views, one registry for every IMAP listener (a
    /// mailbox is held once whether its sessions came in on 143 or 993).
    pub imap_views: Arc<mailgate_imap::view::MailboxViews>,
    /// Users' Sieve scripts at delivery (`None`: not run).
    pub sieve: Option<Arc<mailgate_delivery::SieveDelivery>>,
    /// The POP3 maildrop locks: the store's (across nodes on a shared
    /// store), the same for every POP3 listener and across reloads.
    pub maildrop_locks: Arc<dyn mailgate_store::MaildropLocks>,
    /// The failed-login counts the nodes of a shared store share (`None`:
    /// counted in this process only).
    pub login_failures: Option<Arc<dyn mailgate_store::LoginFailures>>,
}

/// Takes the data directory's lock file so that two servers never share
/// one store. Held for the life of the returned file (also by `mailgate
/// store restore`, which must not run under a server).
pub(crate) fn lock_data_dir(config: &Config) -> Result<std::fs::File, ServerError> {
    mailgate_store::sqlite::create_private_dir(&config.data_dir)?;
    crate::private::tighten_and_log(config);
    let path = config.data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ServerError::Locked(config.data_dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// A bound listener and the protocol it serves.
struct Bound {
    protocol: &'static str,
    listener: TcpListener,
}

async fn bind(
    protocol: &'static str,
    address: &Option<String>,
) -> Result<Option<Bound>, ServerError> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address.as_str())
        .await
        .map_err(|source| ServerError::Bind {
            protocol,
            address: address.clone(),
            source,
        })?;
    Ok(Some(Bound { protocol, listener }))
}

/// Binds every configured listener, in a fixed order.
async fn bind_all(config: &Config) -> Result<Vec<Bound>, ServerError> {
    let mut bound = Vec::new();
    for (protocol, address) in config.listen.mail_listeners() {
        if let Some(b) = bind(protocol, address).await? {
            bound.push(b);
        }
    }
    Ok(bound)
}

/// `user` and `group`: drops root now that the listeners are bound, then
/// checks that the data directory belongs to whoever the server runs as.
fn drop_privileges(
    config: &Config,
    addresses: &[(&'static str, SocketAddr)],
) -> Result<(), ServerError> {
    use crate::privileges::{check_data_dir, drop_after_bind, RunAs};
    let run_as = RunAs::resolve(config.user.as_deref(), config.group.as_deref())?;
    let bound: Vec<SocketAddr> = addresses.iter().map(|(_, a)| *a).collect();
    drop_after_bind(run_as.as_ref(), &bound)?;
    check_data_dir(&config.data_dir)?;
    Ok(())
}

/// Runs the server until SIGTERM or SIGINT. `on_ready` is called with the
/// bound addresses once every listener is open.
pub async fn run(
    config: Config,
    on_ready: impl FnOnce(&[(&'static str, SocketAddr)]),
) -> Result<(), ServerError> {
    let mut signals = StopSignals::install()?;
    // The listeners are bound first, so that a server started as root has
    // its privileged ports before it drops to `user`, and every file it
    // opens or creates from here on belongs to that user.
    let bound = bind_all(&config).await?;
    let metrics_listener = crate::monitoring::bind(config.listen.metrics.as_deref()).await?;
    let mut addresses: Vec<(&'static str, SocketAddr)> = bound
        .iter()
        .map(|b| Ok((b.protocol, b.listener.local_addr()?)))
        .collect::<Result<_, std::io::Error>>()?;
    if let Some(m) = &metrics_listener {
        addresses.push(("metrics", m.local_addr()?));
    }
    // Read before root is dropped: `[store] password_file` may be
    // readable by root only, like a TLS key.
    let backend_config = config
        .store
        .backend_config(&config.data_dir)
        .map_err(|e| ServerError::Config(crate::config::ConfigError::Invalid(e)))?;
    drop_privileges(&config, &addresses)?;
    let _lock = lock_data_dir(&config)?;
    // For `mailgate plugin reload`; removed at exit.
    let _pid = crate::plugins::PidFile::create(&config.data_dir)?;
    let store: Arc<dyn Backend> = mailgate_store::open_backend(&backend_config).await?;
    tracing::info!(backend = %store.kind(), location = %store.location(), "store: open");
    store.set_min_free_space(config.limits.min_free_space());
    // The plugins' key-value data and the MTA-STS cache live in the
    // store; the files older versions kept them in are moved in once.
    let kv: Arc<dyn mailgate_store::PluginKv> = store.clone();
    let mta_sts: Arc<dyn mailgate_store::MtaStsCache> = store.clone();
    crate::shared_state::import_old_files(&config.data_dir, &*kv, &*mta_sts).await?;
    crate::shared_state::spawn_purge(kv.clone());
    let policy = crate::plugins::start(&config, kv).await?;
    let queue_store: Arc<dyn mailgate_store::queue::QueueStore> = store.clone();
    let probe_store = store.clone();
    let sieve = crate::sieve_delivery::start(&config, store.clone())
        .await
        .map_err(ServerError::Sieve)?;
    let sieve_scripts: Arc<dyn mailgate_store::SieveScripts> = store.clone();
    let maildrop_locks: Arc<dyn mailgate_store::MaildropLocks> = store.clone();
    let login_failures = store.clone().login_failures();
    let store: Arc<dyn Store> = store;
    let delivery = Arc::new(LocalDelivery::new(store.clone(), &config.domains));
    let relay = crate::relay::build(&config, queue_store, mta_sts, delivery.clone())?;
    // What a reload (SIGHUP) swaps its new settings into.
    let (reload_store, reload_relay) = (probe_store.clone(), relay.clone());
    let services = Arc::new(Services {
        store: store.clone(),
        sieve_scripts,
        delivery,
        reports: relay.clone(),
        outbound: relay.clone(),
        policy: policy.clone(),
        imap_views: Arc::new(mailgate_imap::view::MailboxViews::new()),
        sieve,
        auth: Arc::new(authenticator(&config, &store, login_failures.clone())),
        maildrop_locks,
        login_failures,
    });
    let certs = load_certificates(&config)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let tracker = Arc::new(SessionTracker::default());

    for (protocol, address) in &addresses {
        tracing::info!(protocol, %address, "listening");
    }

    let mut accept_loops = Vec::new();
    let mut accepting = Vec::new();
    let connections = connections::Server::new(config.limits.max_connections);
    let mut live_listeners = Vec::new();
    for b in bound {
        let protocol = b.protocol;
        let context = Arc::new(Live::new(listener_context(
            protocol,
            &config,
            &services,
            certs.as_ref(),
            &shutdown_rx,
        )?));
        let serve = runner(protocol, context.clone());
        let listener =
            connections::Listener::new(connections.clone(), config.limits.max_connections_per_ip);
        live_listeners.push(LiveListener {
            protocol,
            context,
            connections: listener.clone(),
        });
        let limits = Limits {
            listener,
            refusal: refusal(protocol, &config.hostname),
            proxy: config
                .listen
                .proxy
                .enabled(protocol)
                .then(|| config.trusted_proxies().map(Arc::new))
                .transpose()?,
        };
        let (alive, accept) = crate::monitoring::Alive::watch(accept_loop(
            b.listener,
            protocol,
            tracker.clone(),
            limits,
            shutdown_rx.clone(),
            serve,
        ));
        accepting.push((protocol, alive));
        accept_loops.push(tokio::spawn(accept));
    }
    if let Some(certs) = &certs {
        tokio::spawn(certs.clone().watch(
            mailgate_tls::certs::DEFAULT_WATCH_INTERVAL,
            shutdown_rx.clone(),
        ));
    }
    // The relay starts with the listeners: mail queued before a restart
    // goes out now, and submissions from here on are woken at once.
    // `mailgate queue flush` wakes it through <data_dir>/queue.sock.
    crate::wake::listen(&config.data_dir, relay.clone(), shutdown_rx.clone());
    let (relay_alive, relay_run) = crate::monitoring::Alive::watch(relay.run(shutdown_rx.clone()));
    let relay_task = tokio::spawn(relay_run);
    if let Some(listener) = metrics_listener {
        let probe = crate::monitoring::ServerProbe {
            store: probe_store.clone(),
            queue: probe_store,
            listeners: accepting,
            relay: Some(relay_alive),
        };
        crate::monitoring::serve(listener, probe, shutdown_rx.clone());
    }
    if let Some(policy) = &policy {
        crate::plugins::watch(policy, &config, shutdown_rx.clone());
    }
    on_ready(&addresses);
    crate::notify::notify(crate::notify::State::Ready);

    let mut reload_plugins = crate::plugins::on_sighup(policy);
    let hup_certs = certs.clone();
    let mut reloader = Reloader {
        config: config.clone(),
        services: services.clone(),
        certs: certs.clone(),
        shutdown: shutdown_rx.clone(),
        listeners: live_listeners,
        connections,
        store: reload_store,
        relay: reload_relay,
    };
    signals
        .wait(move || {
            if let Some(certs) = hup_certs.clone() {
                // Reading and parsing the PEM files is blocking file I/O.
                tokio::task::spawn_blocking(move || certs.reload_logged("SIGHUP"));
            }
            let applied = reloader.reload();
            reload_plugins(applied);
        })
        .await;
    crate::notify::notify(crate::notify::State::Stopping);
    tracing::info!(
        sessions = tracker.active.load(Ordering::SeqCst),
        "shutting down: no new connections"
    );
    let _ = shutdown_tx.send(true);
    for l in accept_loops {
        let _ = l.await;
    }
    let grace = Duration::from_secs(config.shutdown_timeout);
    if tokio::time::timeout(grace, tracker.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = tracker.active.load(Ordering::SeqCst),
            "shutdown: sessions still open after {}s; closing them",
            grace.as_secs()
        );
    }
    // The relay finishes the deliveries under way so that their outcomes
    // are recorded; one cut short is retried at the next start (the peer
    // may then get it twice, which RFC 5321 §6.1 prefers to a loss).
    if tokio::time::timeout(grace, relay_task).await.is_err() {
        tracing::warn!(
            "shutdown: deliveries still under way after {}s; retried at next start",
            grace.as_secs()
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The certificate of `[tls]`, if configured; the development profile's
/// self-signed one is made first if missing.
fn load_certificates(config: &Config) -> Result<Option<Arc<Certificates>>, ServerError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    if tls.self_signed {
        if let Some(dir) = tls.cert.parent() {
            std::fs::create_dir_all(dir)?;
        }
        mailgate_tls::ensure_self_signed(&config.hostname, &tls.cert, &tls.key)?;
    }
    let certs = Certificates::load(&tls.cert, &tls.key)?;
    tracing::info!(cert = %tls.cert.display(), fingerprint = %certs.fingerprint(), "tls: certificate loaded");
    Ok(Some(certs))
}

/// One listener's session settings, as a reload replaces them.
enum ListenerContext {
    Smtp(Arc<SmtpContext>),
    Imap(Arc<mailgate_imap::ImapContext>),
    Pop3(Arc<Pop3Context>),
    ManageSieve(Arc<mailgate_managesieve::ManageSieveContext>),
}

/// What a reload changes on one listener: the settings of its new
/// sessions and its per-client connection limit.
struct LiveListener {
    protocol: &'static str,
    context: Arc<Live<ListenerContext>>,
    connections: Arc<connections::Listener>,
}

/// SIGHUP's state: the configuration in force and the parts it applies
/// to (see `crate::reload` for what applies live and what needs a
/// restart).
struct Reloader {
    config: Config,
    services: Arc<Services>,
    certs: Option<Arc<Certificates>>,
    shutdown: watch::Receiver<bool>,
    listeners: Vec<LiveListener>,
    connections: Arc<connections::Server>,
    store: Arc<dyn Backend>,
    relay: Arc<mailgate_relay::Relay>,
}

impl Reloader {
    /// Reads the configuration file again and applies it; returns the
    /// configuration now in force when the file loaded (for the plugins),
    /// `None` when there is no file or it has an error (the running
    /// configuration is kept, and the error logged on one line).
    fn reload(&mut self) -> Option<Config> {
        let Some(path) = self.config.source.clone() else {
            tracing::info!("reload: no configuration file (development profile); only the certificate and the plugins reload");
            return None;
        };
        let fresh = match crate::cli::config_check::load(&path) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(
                    error = %crate::reload::one_line_error(&path, &e),
                    "reload: configuration not reloaded; the running configuration is kept"
                );
                return None;
            }
        };
        let restart = crate::reload::restart_keys(&self.config, &fresh);
        for key in &restart {
            tracing::warn!(key = %key, "reload: key {key} changed: restart needed to apply");
        }
        let fresh = crate::reload::keep_restart_keys(&self.config, fresh);
        let changed = crate::reload::changed_sections(&self.config, &fresh);
        match self.apply(&fresh) {
            Ok(()) => {
                tracing::info!(
                    file = %path.display(),
                    changed = %if changed.is_empty() { "nothing".to_string() } else { changed.join(",") },
                    restart_needed = %if restart.is_empty() { "none".to_string() } else { restart.join(",") },
                    "reload: configuration applied; new sessions and the next queue run use it"
                );
                self.config = fresh.clone();
                Some(fresh)
            }
            Err(e) => {
                tracing::error!(
                    file = %path.display(),
                    error = %crate::reload::one_line_error(&path, &e.to_string()),
                    "reload: configuration not applied; the running configuration is kept"
                );
                None
            }
        }
    }

    /// Builds everything `config` needs first (the step that can fail),
    /// then swaps it in.
    fn apply(&mut self, config: &Config) -> Result<(), ServerError> {
        let mut services = self.services.clone();
        if config.auth != self.config.auth {
            let mut fresh = (*services).clone();
            fresh.auth = Arc::new(authenticator(
                config,
                &fresh.store,
                fresh.login_failures.clone(),
            ));
            services = Arc::new(fresh);
        }
        // `[sieve]`: the limits, `editheader`, `time_zone` and the global
        // scripts of users' scripts at delivery, for new sessions.
        if config.sieve != self.config.sieve {
            if let Some(current) = &services.sieve {
                let mut fresh = (*services).clone();
                fresh.sieve = Some(Arc::new(
                    crate::sieve_delivery::reconfigure(current, config)
                        .map_err(ServerError::Sieve)?,
                ));
                services = Arc::new(fresh);
            }
        }
        let contexts = self
            .listeners
            .iter()
            .map(|l| {
                listener_context(
                    l.protocol,
                    config,
                    &services,
                    self.certs.as_ref(),
                    &self.shutdown,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let relay =
            crate::relay::relay_config(config).map_err(crate::relay::RelaySetupError::from)?;
        let (old, new) = (&self.config.relay, &config.relay);
        let transport = if old.nameservers != new.nameservers || old.tls_ca_file != new.tls_ca_file
        {
            Some(crate::relay::transport(config, &relay)?)
        } else {
            None
        };
        // Nothing below fails.
        self.relay.set_config(relay);
        if let Some((router, tls)) = transport {
            self.relay.set_transport(router, tls);
        }
        crate::reload::apply_domains(&services.delivery, config);
        self.store
            .set_min_free_space(config.limits.min_free_space());
        self.connections.set_max(config.limits.max_connections);
        for (l, context) in self.listeners.iter().zip(contexts) {
            l.connections
                .set_max_per_client(config.limits.max_connections_per_ip);
            l.context.set(context);
        }
        self.services = services;
        Ok(())
    }
}

/// The authenticator of `[auth]`, shared by every protocol; counting
/// failed logins in `shared` too when the store's nodes share them.
fn authenticator(
    config: &Config,
    store: &Arc<dyn Store>,
    shared: Option<Arc<dyn mailgate_store::LoginFailures>>,
) -> Authenticator {
    let auth = Authenticator::new(store.clone(), config.auth.limiter());
    let auth = match shared {
        Some(shared) => auth.with_shared_failures(shared),
        None => auth,
    };
    auth.with_plaintext_policy(config.auth.plaintext())
        // Checked by `Config::validate` when the file was read.
        .with_cache_ttl(
            config
                .auth
                .cache_ttl()
                .unwrap_or(mailgate_auth::DEFAULT_CACHE_TTL),
        )
}

/// A boxed session future: what an accept loop runs per connection.
type SessionFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
/// What an accept loop calls per connection.
type Runner = Box<dyn Fn(TcpStream, SocketAddr) -> SessionFuture + Send + Sync>;

/// The per-connection function of one listener: each connection gets
/// the settings in force when it arrives (a reload replaces them).
fn runner(protocol: &'static str, context: Arc<Live<ListenerContext>>) -> Runner {
    Box::new(move |stream, peer| {
        let current = context.get();
        match &*current {
            ListenerContext::Imap(ctx) => {
                Box::pin(mailgate_imap::serve_connection(stream, peer, ctx.clone()))
            }
            ListenerContext::Pop3(ctx) => {
                Box::pin(mailgate_pop3::serve_connection(stream, peer, ctx.clone()))
            }
            ListenerContext::ManageSieve(ctx) => Box::pin(mailgate_managesieve::serve_connection(
                stream,
                peer,
                ctx.clone(),
            )),
            ListenerContext::Smtp(ctx) => {
                let ctx = ctx.clone();
                Box::pin(async move {
                    if let Err(e) = mailgate_smtp::serve_connection(stream, peer, ctx).await {
                        tracing::debug!(protocol, %peer, error = %e, "connection ended with an i/o error");
                    }
                })
            }
        }
    })
}

/// The session settings of one listener from `config`: its protocol,
/// role and TLS mode.
fn listener_context(
    protocol: &'static str,
    config: &Config,
    services: &Services,
    certs: Option<&Arc<Certificates>>,
    shutdown: &watch::Receiver<bool>,
) -> Result<ListenerContext, ServerError> {
    let acceptor = |alpn| certs.map(|c| Acceptor::new(c, alpn)).transpose();
    let mode = |implicit: bool, acceptor: Option<Acceptor>| match acceptor {
        None => TlsMode::None,
        Some(a) if implicit => TlsMode::Implicit(a),
        Some(a) => TlsMode::StartTls(a),
    };
    let implicit = matches!(protocol, "submissions" | "pop3s" | "imaps");
    if protocol.starts_with("imap") {
        let mut ctx = imap_context(config, services, shutdown.clone());
        ctx.tls = mode(implicit, acceptor(Alpn::Imap)?);
        return Ok(ListenerContext::Imap(Arc::new(ctx)));
    }
    if protocol.starts_with("pop3") {
        let mut ctx = pop3_context(config, services, shutdown.clone());
        ctx.tls = mode(implicit, acceptor(Alpn::Pop3)?);
        return Ok(ListenerContext::Pop3(Arc::new(ctx)));
    }
    if protocol == "managesieve" {
        let mut ctx = managesieve_context(config, services, shutdown.clone())?;
        ctx.tls = mode(false, acceptor(Alpn::None)?);
        return Ok(ListenerContext::ManageSieve(Arc::new(ctx)));
    }
    let mut ctx = smtp_context(config, services, shutdown.clone());
    ctx.tls = mode(implicit, acceptor(Alpn::None)?);
    // Our own hosts (Postfix's mynetworks): relay without AUTH on smtp
    // and submission; the session ignores the list on lmtp.
    ctx.trusted_networks = Arc::new(config.trusted_networks()?);
    if protocol == "smtp" {
        let dns = inbound_dns(config)?;
        ctx.verifier = inbound_verifier(config, dns.as_deref())?;
        ctx.sender_domains = sender_domain_check(config, dns)?;
    } else if protocol == "lmtp" {
        // RFC 2033: local delivery from a trusted mail system; no TLS,
        // no AUTH, no relaying (the MX rules), one reply per recipient.
        ctx.role = Role::Lmtp;
        ctx.tls = TlsMode::None;
    } else {
        ctx.role = Role::Submission;
        ctx.authenticator = Some(services.auth.clone());
        ctx.sender_grants = Arc::new(SenderGrants::new(config.submission.senders.clone()));
        ctx.save_sent = config.submission.save_sent;
    }
    ctx.policy = services.policy.clone();
    ctx.srs = config.srs.build(&config.domains)?;
    ctx.reverse = reverse_lookup(config)?;
    ctx.listener = mailgate_metrics::Listener::from_key(protocol);
    // Every listener's room may queue: copies over quota wait there for
    // local redelivery, and plugins may forward to other domains (route
    // `forward`, `add-recipient`). A client still cannot name another
    // domain without AUTH (RCPT checks that).
    ctx.outbound = Some(services.outbound.clone());
    ctx.reports = Some(services.reports.clone());
    ctx.sieve = services.sieve.clone();
    Ok(ListenerContext::Smtp(Arc::new(ctx)))
}

/// The resolver of the `smtp` listener's `[inbound]` checks, asking the
/// `[relay] nameservers` (one cache for SPF/DKIM/DMARC and the sender
/// domain); `None` when neither check is on.
fn inbound_dns(config: &Config) -> Result<Option<Arc<mailgate_relay::HickoryDns>>, ServerError> {
    if !config.inbound.verify && !config.inbound.reject_unknown_sender_domain {
        return Ok(None);
    }
    let relay = crate::relay::relay_config(config).map_err(crate::relay::RelaySetupError::from)?;
    let dns = mailgate_relay::HickoryDns::new(&relay.nameservers, relay.dns_timeout)
        .map_err(crate::relay::RelaySetupError::from)?;
    Ok(Some(Arc::new(dns)))
}

/// `[inbound] reverse_lookup`: the client's confirmed name at connect
/// (every SMTP listener), through the `[relay] nameservers`; `None` when
/// off.
fn reverse_lookup(
    config: &Config,
) -> Result<Option<Arc<mailgate_smtp::ReverseLookup>>, ServerError> {
    if !config.inbound.reverse_lookup {
        return Ok(None);
    }
    let relay = crate::relay::relay_config(config).map_err(crate::relay::RelaySetupError::from)?;
    let dns = mailgate_relay::HickoryDns::new(&relay.nameservers, relay.dns_timeout)
        .map_err(crate::relay::RelaySetupError::from)?;
    Ok(Some(Arc::new(mailgate_smtp::ReverseLookup::new(Arc::new(
        dns,
    )))))
}

/// `[inbound] reject_unknown_sender_domain`: the DNS check of the
/// sender's domain at MAIL on the `smtp` listener; `None` when off.
fn sender_domain_check(
    config: &Config,
    dns: Option<Arc<mailgate_relay::HickoryDns>>,
) -> Result<Option<Arc<mailgate_smtp::SenderDomainCheck>>, ServerError> {
    let Some(dns) = dns.filter(|_| config.inbound.reject_unknown_sender_domain) else {
        return Ok(None);
    };
    let timeout = config
        .inbound
        .timeout()
        .map_err(crate::relay::RelaySetupError::from)?;
    Ok(Some(Arc::new(mailgate_smtp::SenderDomainCheck::new(
        dns, timeout,
    ))))
}

/// `[inbound]`: the SPF, DKIM and DMARC verifier of the `smtp` listener,
/// asking `dns`; `None` unless `verify` is on.
fn inbound_verifier(
    config: &Config,
    dns: Option<&mailgate_relay::HickoryDns>,
) -> Result<Option<Arc<mailgate_smtp::Verifier>>, ServerError> {
    let Some(dns) = dns.filter(|_| config.inbound.verify) else {
        return Ok(None);
    };
    let mut verifier = mailgate_smtp::Verifier::new(dns.authenticator(), config.hostname.clone());
    verifier.timeout = config
        .inbound
        .timeout()
        .map_err(crate::relay::RelaySetupError::from)?;
    verifier.dmarc_reject = config.inbound.dmarc_reject;
    Ok(Some(Arc::new(verifier)))
}

/// The SMTP settings from the configuration (MX role, no TLS yet).
fn smtp_context(
    config: &Config,
    services: &Services,
    shutdown: watch::Receiver<bool>,
) -> SmtpContext {
    let l = &config.limits;
    let limits = SmtpLimits {
        max_message_size: l.max_message_size,
        max_recipients: l.max_recipients,
        max_command_line: l.max_command_line,
        max_data_line: l.max_line_length,
        idle_timeout: config.idle_timeout(),
        max_errors: l.max_errors,
        command_timeout: Duration::from_secs(l.command_timeout),
        min_transfer_rate: l.min_transfer_rate,
        transfer_grace: mailgate_smtp::context::TRANSFER_GRACE,
    };
    let mut ctx = SmtpContext::new(
        config.hostname.clone(),
        services.delivery.clone(),
        limits,
        shutdown,
    );
    if let Some(first) = config.domains.first() {
        ctx.postmaster_domain = first.clone();
    }
    ctx
}

/// The POP3 settings from the configuration. RFC 1939 §3 asks for an
/// autologout timer of at least ten minutes, so POP3 never closes an idle
/// session sooner than that, whatever `idle_timeout` says.
fn pop3_context(
    config: &Config,
    services: &Services,
    shutdown: watch::Receiver<bool>,
) -> Pop3Context {
    let mut ctx = Pop3Context::new(
        config.hostname.clone(),
        services.store.clone(),
        services.auth.clone(),
        shutdown,
    );
    ctx.locks = services.maildrop_locks.clone();
    ctx.idle_timeout = config.idle_timeout().max(Duration::from_secs(600));
    ctx.command_timeout = Duration::from_secs(config.limits.command_timeout);
    ctx
}

/// The ManageSieve settings from the configuration: `[sieve]` (scripts
/// are compiled with the settings delivery uses; the largest literal is
/// `max_script_size`), the idle and command timeouts of `[limits]`.
fn managesieve_context(
    config: &Config,
    services: &Services,
    shutdown: watch::Receiver<bool>,
) -> Result<mailgate_managesieve::ManageSieveContext, ServerError> {
    let mut ctx = mailgate_managesieve::ManageSieveContext::new(
        config.hostname.clone(),
        services.sieve_scripts.clone(),
        services.auth.clone(),
        shutdown,
    );
    ctx.settings = config.sieve.settings()?;
    ctx.max_scripts = config.sieve.max_scripts;
    ctx.idle_timeout = config.idle_timeout();
    ctx.command_timeout = Duration::from_secs(config.limits.command_timeout);
    Ok(ctx)
}

/// The IMAP settings from the configuration: APPEND takes messages up
/// to `limits.max_message_size` (announced as APPENDLIMIT), a command
/// must arrive within `limits.command_timeout` and an APPEND message at
/// `limits.min_transfer_rate`. The
/// autologout timer stays at the crate's 30 minutes (RFC 9051 §5.4 asks
/// for at least that), whatever `idle_timeout` says.
fn imap_context(
    config: &Config,
    services: &Services,
    shutdown: watch::Receiver<bool>,
) -> mailgate_imap::ImapContext {
    let mut ctx = mailgate_imap::ImapContext::new(
        config.hostname.clone(),
        services.store.clone(),
        services.auth.clone(),
        shutdown,
    );
    ctx.limits.max_append = config.limits.max_message_size;
    ctx.idle_timeout = ctx.idle_timeout.max(config.idle_timeout());
    ctx.command_timeout = Duration::from_secs(config.limits.command_timeout);
    ctx.min_transfer_rate = config.limits.min_transfer_rate;
    ctx.views = services.imap_views.clone();
    ctx.quota_locks = services.delivery.quota_locks().clone();
    ctx.mailbox_events = crate::mailbox_events::sink(services.policy.as_ref(), &services.store);
    ctx
}

/// A listener's connection limits and what it says over them.
struct Limits {
    listener: Arc<connections::Listener>,
    /// The reply to a connection over a limit, before it is closed;
    /// `None` on implicit-TLS listeners, which close at once.
    refusal: Option<Vec<u8>>,
    /// `[listen.proxy]` on for this listener: the addresses whose PROXY
    /// header is read (`limits.proxy_from`); others are closed at once.
    proxy: Option<Arc<crate::proxy_protocol::TrustedProxies>>,
}

/// What a listener says to a connection over `max_connections` or
/// `max_connections_per_ip` before closing it. An implicit-TLS listener
/// (`submissions`, `pop3s`, `imaps`) says nothing: the reply would need
/// the TLS handshake, whose cost is what the limits are there to spare,
/// so the connection is closed before it (the client sees a failed
/// handshake, and tries again later like after any network error).
fn refusal(protocol: &str, hostname: &str) -> Option<Vec<u8>> {
    let text = "Too many connections, try again later";
    match protocol {
        "submissions" | "pop3s" | "imaps" => None,
        // RFC 3206 §4: SYS/TEMP, a problem on the server that may go away.
        "pop3" => Some(format!("-ERR [SYS/TEMP] {text}\r\n")),
        // RFC 9051 §7.1: UNAVAILABLE, a temporary failure of the server.
        "imap" => Some(format!("* BYE [UNAVAILABLE] {text}\r\n")),
        // RFC 5804 §1.3: TRYLATER, a temporary failure.
        "managesieve" => Some(format!("BYE (TRYLATER) \"{text}\"\r\n")),
        // RFC 5321 §3.1 and §4.2.3 (421 at the greeting), RFC 3463
        // 4.7.0; LMTP (RFC 2033) answers the same.
        _ => Some(format!("421 4.7.0 {hostname} {text}\r\n")),
    }
    .map(String::into_bytes)
}

/// Says `reply` (if any) to a connection that is refused and closes it.
/// The reply is written once, without waiting: a fresh connection's send
/// buffer is empty, and a client that does not read must not hold the
/// accept loop or a task.
fn refuse(stream: TcpStream, reply: Option<&[u8]>) {
    use std::io::Write;
    if let (Some(reply), Ok(stream)) = (reply, stream.into_std()) {
        let _ = (&stream).write(reply);
    }
}

/// Accepts connections until shutdown, one task per session, each
/// holding a [`connections::Permit`] for as long as it runs.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    protocol: &'static str,
    tracker: Arc<SessionTracker>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let limits = Arc::new(limits);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if limits.proxy.is_some() => {
                    // The real client is known only after the header: read
                    // it in a task of its own (bounded in size and time),
                    // then count the client against the limits.
                    let (limits, tracker, serve) = (limits.clone(), tracker.clone(), serve.clone());
                    tokio::spawn(async move {
                        if let Some((stream, client)) = proxied(stream, peer, protocol, &limits).await {
                            start_session(stream, client, protocol, &limits, &tracker, &*serve);
                        }
                    });
                }
                Ok((stream, peer)) => start_session(stream, peer, protocol, &limits, &tracker, &*serve),
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment
                    // rather than spin, and keep serving.
                    tracing::warn!(protocol, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// A connection on a `[listen.proxy]` listener: the client address its
/// PROXY header names, or `None` (connection closed, logged) when it comes
/// from an address outside `limits.proxy_from` or its header is wrong.
async fn proxied(
    mut stream: TcpStream,
    peer: SocketAddr,
    protocol: &'static str,
    limits: &Limits,
) -> Option<(TcpStream, SocketAddr)> {
    let trusted = limits.proxy.as_ref()?;
    if !trusted.contains(peer.ip()) {
        // Logged once a minute per address, like the connection limits.
        let client = connections::Client::of(peer.ip());
        if let Some(unlogged) = limits.listener.server().log_refusal(client) {
            tracing::warn!(
                protocol,
                %peer,
                unlogged,
                "connection refused: a PROXY protocol listener and the address is not in limits.proxy_from"
            );
        }
        return None;
    }
    match crate::proxy_protocol::read_header(&mut stream).await {
        Ok(Some(client)) => {
            tracing::debug!(protocol, proxy = %peer, %client, "PROXY header read");
            Some((stream, client))
        }
        // LOCAL or UNKNOWN: the proxy's own connection (a health check).
        Ok(None) => Some((stream, peer)),
        Err(e) => {
            tracing::warn!(protocol, proxy = %peer, error = %e, "connection closed: bad PROXY protocol header");
            None
        }
    }
}

/// Admits a connection from `peer` under the listener's limits and runs
/// its session in a task of its own, or refuses it.
fn start_session<F, Fut>(
    stream: TcpStream,
    peer: SocketAddr,
    protocol: &'static str,
    limits: &Limits,
    tracker: &Arc<SessionTracker>,
    serve: &F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = connections::Client::of(peer.ip());
    let permit = match limits.listener.admit(client) {
        Ok(permit) => permit,
        Err(refused) => {
            refuse(stream, limits.refusal.as_deref());
            crate::monitoring::count_refusal(protocol, refused);
            if let Some(unlogged) = limits.listener.server().log_refusal(client) {
                tracing::warn!(
                    protocol,
                    %client,
                    limit = refused.key(),
                    unlogged,
                    "connection refused: too many connections (logged once a minute per client)"
                );
            }
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let guard = tracker.enter();
    let counted = crate::monitoring::count_session(protocol);
    let session = serve(stream, peer);
    tokio::spawn(async move {
        // Both go when the task ends, whatever way it ends
        // (the permit also when the runtime drops it).
        let _permit = permit;
        let _guard = guard;
        let _counted = counted;
        session.await;
    });
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment this is created.
/// Created before the listeners are announced, so that a SIGTERM sent as
/// soon as `mailgate: ready` is printed already gets the clean shutdown
/// instead of the default action (which kills the process).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, ServerError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT. SIGHUP (which must not kill the
    /// server) calls `on_hup`: the configuration, the certificate and the
    /// plugins reload.
    async fn wait(&mut self, mut on_hup: impl FnMut()) {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM received"); return }
                _ = self.int.recv() => { tracing::info!("SIGINT received"); return }
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the configuration, the certificate and the plugins");
                    on_hup();
                }
            }
        }
    }
}
