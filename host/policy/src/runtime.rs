//! The wasmtime side: one [`Runtime`] (engine, linker, pooling allocator,
//! epoch ticker, compiled-component cache) and [`LoadedPlugin`]s, each a
//! validated, pre-instantiated component that calls its hooks under its
//! limits, in warm instances kept between calls or a fresh one per call.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_metrics::PluginResult;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Instance, InstancePre, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use crate::bindings::{
    self, metadata, on_auth, on_connect, on_data, on_deliver, on_helo, on_mail_from,
    on_mailbox_event, on_rcpt_to, on_route, CallLimiter, HostState, MessageHandle, PluginEnv,
};
use crate::caps::{KvStore, Resolver};
use crate::config::{FailureMode, Grant, Limits, PluginSettings, MAX_MEMORY_MB};
use crate::error::{FailureKind, LoadError, PluginFailure, PolicyError};
use crate::message::MessageView;
use crate::stats::PluginStats;
use crate::types::{Hook, HookSet};

/// How often the engine's epoch advances: the granularity of time-outs and
/// of the yields that keep a busy plugin from holding a tokio worker.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of each pooled memory kept resident between instances.
const KEEP_RESIDENT: usize = 2 << 20;

/// Warm instances kept per plugin between calls (see [`LoadedPlugin::call`]),
/// at most; fewer with a small pool.
const MAX_WARM: usize = 8;
/// Calls one instance serves before it is replaced by a fresh one.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;
/// An instance whose memory grew by more than this since it was made is
/// not kept warm: its next call starts from a fresh instance.
const MAX_WARM_MEMORY: usize = 8 << 20;

/// The WIT package the host serves.
pub const WIT_PACKAGE: &str = "mailgate:policy";
/// Its version.
pub const WIT_VERSION: &str = "0.1.4";

/// Settings of the [`Runtime`] (engine-wide).
pub struct RuntimeOptions {
    /// Plugin instances alive at once (pool slots).
    pub max_instances: u32,
    /// Meter fuel (needed for per-plugin fuel limits).
    pub fuel: bool,
    /// Compiled-component cache; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The key-value store behind capability `kv`.
    pub kv: Arc<dyn KvStore>,
    /// The resolver behind capability `dns`.
    pub resolver: Arc<dyn Resolver>,
    /// Keep instances warm between calls ([`LoadedPlugin::call`]).
    pub reuse_instances: bool,
    /// Extra trusted roots (PEM) for capability `http` over TLS.
    pub http_ca_file: Option<PathBuf>,
}

/// The engine all plugins run in.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    kv: Arc<dyn KvStore>,
    resolver: Arc<dyn Resolver>,
    http: Arc<crate::http::HttpClient>,
    fuel: bool,
    pooling: bool,
    /// Warm instances kept per plugin; 0 when `reuse_instances` is off.
    max_warm: usize,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn engine_config(options: &RuntimeOptions, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(options.fuel);
    // Host-side stack for the async fibers plugins run on; guest stack
    // stays the default (512 KiB), enough for a Rust guest.
    config.async_stack_size(2 << 20);
    if pooling {
        let n = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n);
        // A Rust wasip2 component has a handful of core instances (the
        // program and its adapter shims) but one memory.
        pool.total_core_instances(n * 8);
        pool.total_memories(n);
        pool.total_tables(n * 4);
        pool.total_stacks(n);
        pool.max_memory_size((MAX_MEMORY_MB as usize) << 20);
        // Reset the first pages of a slot by memset instead of giving them
        // back to the kernel: the next instance then takes no page faults
        // on its stack and data (most of the per-call cost otherwise).
        pool.linear_memory_keep_resident(KEEP_RESIDENT);
        // Where the kernel has the PAGEMAP_SCAN ioctl (Linux 6.7+), reset
        // only the pages the instance actually wrote instead of the whole
        // initial memory (mostly an untouched guest stack): the memset was
        // a fifth of a trivial hook call's CPU time. Elsewhere: as before.
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        // Reuse the most recently freed slots instead of cycling through a
        // hundred "warm" ones (wasmtime's default): every hook call takes a
        // fiber stack from the pool, and with the default each call ran on
        // a stack last used a hundred calls earlier. With 0 the slots in
        // use are only as many as the calls and instances alive at once
        // (no throughput difference was measurable; less stays resident).
        pool.max_unused_warm_slots(0);
        pool.table_keep_resident(64 << 10);
        pool.async_stack_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Runtime {
    /// Builds the engine (pooling allocator; falls back to on-demand
    /// allocation with a warning if the pool cannot be reserved), the
    /// linker and the epoch ticker thread.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, PolicyError> {
        let (engine, pooling) = match Engine::new(&engine_config(&options, true)) {
            Ok(e) => (e, true),
            Err(e) => {
                tracing::warn!(error = %e, "plugin instance pool unavailable, allocating on demand");
                let engine = Engine::new(&engine_config(&options, false))
                    .map_err(|e| PolicyError::Engine(e.to_string()))?;
                (engine, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PolicyError::Engine(e.to_string()))?;
        bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| PolicyError::Engine(e.to_string()))?;
        if let Some(dir) = &options.cache_dir {
            create_private_dir(dir).map_err(|e| PolicyError::Io(dir.clone(), e))?;
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PolicyError::Engine(e.to_string()))?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir: options.cache_dir,
            kv: options.kv,
            resolver: options.resolver,
            http: Arc::new(crate::http::HttpClient::new(options.http_ca_file)),
            fuel: options.fuel,
            pooling,
            // Warm instances hold pool slots: at most a sixteenth of the
            // pool per plugin, so calls of other plugins always find one.
            max_warm: if options.reuse_instances {
                (options.max_instances as usize / 16).clamp(1, MAX_WARM)
            } else {
                0
            },
            ticker_stop,
        })
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles (or loads from the cache) and validates a component:
    /// checks its imports against `grants`, pre-instantiates it, calls
    /// `describe` and `self-test`. `name` is the file stem.
    pub async fn load(
        &self,
        name: &str,
        bytes: Vec<u8>,
        settings: &PluginSettings,
        limits: Limits,
        stats: Arc<PluginStats>,
    ) -> Result<LoadedPlugin, LoadError> {
        let hash = hex(&Sha256::digest(&bytes));
        let engine = self.engine.clone();
        let cache = self.cache_dir.clone();
        let hash2 = hash.clone();
        // Compiling takes milliseconds to seconds: off the async workers.
        let component =
            tokio::task::spawn_blocking(move || compile(&engine, cache.as_deref(), &hash2, &bytes))
                .await
                .map_err(|e| LoadError::Compile(e.to_string()))??;
        let imports = check_imports(&self.engine, &component, &settings.grants)?;
        let http_allow =
            crate::http::parse_allow_list(&settings.http_allow).map_err(LoadError::Config)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let indices = HookIndices::new(&pre)?;
        let config_json = settings
            .config
            .as_ref()
            .map_or_else(|| "{}".to_string(), |v| v.to_string());
        let mut plugin = LoadedPlugin {
            name: name.to_string(),
            version: String::new(),
            plugin_name: String::new(),
            hash,
            hooks: HookSet::default(),
            imports,
            limits,
            clock: settings.grants.contains(&Grant::Clock),
            fuel: self.fuel,
            engine: self.engine.clone(),
            pre,
            indices,
            env: Arc::new(PluginEnv {
                name: name.to_string(),
                config_json,
                kv: self.kv.clone(),
                resolver: self.resolver.clone(),
                http: self.http.clone(),
                http_allow,
                http_slots: Arc::new(tokio::sync::Semaphore::new(
                    crate::http::MAX_CONCURRENT_PER_PLUGIN,
                )),
                stats: stats.clone(),
                started: Instant::now(),
                captured: std::sync::Mutex::new(None),
            }),
            stats,
            max_warm: self.max_warm,
            warm: std::sync::Mutex::new(Vec::new()),
            last_memory: std::sync::atomic::AtomicUsize::new(0),
        };
        let info = match plugin.call(Call::Describe).await {
            Ok(Answer::Info(info)) => info,
            Ok(_) => unreachable!("describe answers info"),
            Err(f) => return Err(LoadError::Describe(f.to_string())),
        };
        match plugin.call(Call::SelfTest).await {
            Ok(Answer::SelfTest(Ok(()))) => {}
            Ok(Answer::SelfTest(Err(msg))) => return Err(LoadError::SelfTest(msg)),
            Ok(_) => unreachable!("self-test answers self-test"),
            Err(f) => return Err(LoadError::SelfTest(f.to_string())),
        }
        let mut declared: HookSet = info.hooks.into();
        // `mailbox-event` is not among the 0.1.x `hooks` flags: a plugin
        // exporting the interface is asked once whether it wants it.
        if plugin.indices.mailbox_event.is_some() {
            match plugin.call(Call::WantsMailboxEvents).await {
                Ok(Answer::Wants(true)) => declared.insert(Hook::MailboxEvent),
                Ok(_) => {}
                Err(f) => return Err(LoadError::Describe(f.to_string())),
            }
        }
        for hook in declared.iter() {
            if plugin.indices.has(hook) {
                plugin.hooks.insert(hook);
            } else {
                tracing::warn!(plugin = name, %hook, "hook declared but not exported; not called");
            }
        }
        plugin.plugin_name = info.name;
        plugin.version = info.version;
        Ok(plugin)
    }
}

/// The indices of a component's exported hook functions.
struct HookIndices {
    meta: metadata::GuestIndices,
    connect: Option<on_connect::GuestIndices>,
    helo: Option<on_helo::GuestIndices>,
    auth: Option<on_auth::GuestIndices>,
    mail_from: Option<on_mail_from::GuestIndices>,
    rcpt_to: Option<on_rcpt_to::GuestIndices>,
    data: Option<on_data::GuestIndices>,
    route: Option<on_route::GuestIndices>,
    mailbox_event: Option<on_mailbox_event::GuestIndices>,
    /// The system Sieve plugin's hook (world `sieve-filter`).
    deliver: Option<on_deliver::GuestIndices>,
}

impl HookIndices {
    fn new(pre: &InstancePre<HostState>) -> Result<HookIndices, LoadError> {
        // Each hook interface is optional: a missing one is simply absent.
        Ok(HookIndices {
            meta: metadata::GuestIndices::new(pre)
                .map_err(|e| LoadError::Link(format!("no metadata export: {e:#}")))?,
            connect: on_connect::GuestIndices::new(pre).ok(),
            helo: on_helo::GuestIndices::new(pre).ok(),
            auth: on_auth::GuestIndices::new(pre).ok(),
            mail_from: on_mail_from::GuestIndices::new(pre).ok(),
            rcpt_to: on_rcpt_to::GuestIndices::new(pre).ok(),
            data: on_data::GuestIndices::new(pre).ok(),
            route: on_route::GuestIndices::new(pre).ok(),
            mailbox_event: on_mailbox_event::GuestIndices::new(pre).ok(),
            deliver: on_deliver::GuestIndices::new(pre).ok(),
        })
    }

    fn has(&self, hook: Hook) -> bool {
        match hook {
            Hook::Connect => self.connect.is_some(),
            Hook::Helo => self.helo.is_some(),
            Hook::Auth => self.auth.is_some(),
            Hook::MailFrom => self.mail_from.is_some(),
            Hook::RcptTo => self.rcpt_to.is_some(),
            Hook::Data => self.data.is_some(),
            Hook::Route => self.route.is_some(),
            Hook::MailboxEvent => self.mailbox_event.is_some(),
            Hook::Deliver => self.deliver.is_some(),
            Hook::Load => true,
        }
    }
}

/// A loaded, validated plugin.
pub struct LoadedPlugin {
    name: String,
    plugin_name: String,
    version: String,
    hash: String,
    hooks: HookSet,
    imports: Vec<String>,
    limits: Limits,
    clock: bool,
    fuel: bool,
    engine: Engine,
    pre: InstancePre<HostState>,
    indices: HookIndices,
    env: Arc<PluginEnv>,
    stats: Arc<PluginStats>,
    /// How many instances may wait warm; 0 with `[plugins]
    /// reuse_instances = false`.
    max_warm: usize,
    /// Instances that finished their last call cleanly, ready for the next.
    warm: std::sync::Mutex<Vec<Warm>>,
    /// The linear memory the last call's instance had grown to, bytes
    /// (for `mailgate plugin run`).
    last_memory: std::sync::atomic::AtomicUsize,
}

/// An instance of a plugin with the store it lives in, between calls.
struct Warm {
    store: Store<HostState>,
    instance: Instance,
    calls: u32,
}

/// One hook call's arguments (generated types; crate-internal).
pub(crate) enum Call {
    Describe,
    SelfTest,
    Connect(bindings::mailgate::policy::types::Session),
    Helo(bindings::mailgate::policy::types::Session),
    Auth(
        bindings::mailgate::policy::types::Session,
        bindings::mailgate::policy::types::AuthAttempt,
    ),
    MailFrom(
        bindings::mailgate::policy::types::Session,
        bindings::mailgate::policy::types::Envelope,
    ),
    RcptTo(
        bindings::mailgate::policy::types::Session,
        bindings::mailgate::policy::types::Envelope,
        bindings::mailgate::policy::types::Recipient,
    ),
    Data(
        bindings::mailgate::policy::types::Session,
        bindings::mailgate::policy::types::Envelope,
        Arc<MessageView>,
    ),
    Route(
        bindings::mailgate::policy::types::Session,
        bindings::mailgate::policy::types::Envelope,
        bindings::mailgate::policy::types::Recipient,
        Arc<MessageView>,
        Vec<on_route::Action>,
    ),
    /// `on-mailbox-event.wants` at load.
    WantsMailboxEvents,
    MailboxEvent(on_mailbox_event::Event, Arc<MessageView>),
    /// `on-deliver.deliver` (the system Sieve plugin).
    Deliver(on_deliver::Request, Arc<MessageView>),
}

impl Call {
    fn hook(&self) -> Hook {
        match self {
            Call::Describe | Call::SelfTest | Call::WantsMailboxEvents => Hook::Load,
            Call::MailboxEvent(..) => Hook::MailboxEvent,
            Call::Deliver(..) => Hook::Deliver,
            Call::Connect(..) => Hook::Connect,
            Call::Helo(..) => Hook::Helo,
            Call::Auth(..) => Hook::Auth,
            Call::MailFrom(..) => Hook::MailFrom,
            Call::RcptTo(..) => Hook::RcptTo,
            Call::Data(..) => Hook::Data,
            Call::Route(..) => Hook::Route,
        }
    }
}

/// One hook call's answer.
pub(crate) enum Answer {
    Info(metadata::PluginInfo),
    SelfTest(Result<(), String>),
    Outcome(bindings::mailgate::policy::types::Outcome),
    Route(Option<Vec<on_route::Action>>),
    Wants(bool),
    /// `mailbox-event`: its error text, if any.
    Done(Result<(), String>),
    /// `deliver`: the actions, or why the script failed.
    Delivered(Result<on_deliver::Response, on_deliver::Failure>),
}

/// A frozen clock: what WASI's clocks read without the `clock` grant.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl LoadedPlugin {
    /// The file stem (the name in the config).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The name the plugin gives itself.
    pub fn plugin_name(&self) -> &str {
        &self.plugin_name
    }
    /// The version the plugin gives.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// SHA-256 of the component file, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }
    /// The hooks that will be called.
    pub fn hooks(&self) -> HookSet {
        self.hooks
    }
    /// The component's imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }
    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// Its counters.
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.stats
    }

    /// Whether the component exports `hook`'s interface (asked for or not).
    pub fn exports(&self, hook: Hook) -> bool {
        self.indices.has(hook)
    }

    /// Whether `hook` is called for this plugin.
    pub fn wants(&self, hook: Hook) -> bool {
        self.hooks.contains(hook)
    }

    /// The linear memory the last call's instance had grown to, in bytes.
    pub fn last_memory(&self) -> usize {
        self.last_memory.load(Ordering::Relaxed)
    }

    /// Starts keeping this plugin's log lines for [`LoadedPlugin::take_logs`]
    /// (`mailgate plugin run`); they still go to the log too.
    pub fn capture_logs(&self) {
        *self.env.captured.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// The log lines (level, text) kept since the last call of this, if
    /// [`LoadedPlugin::capture_logs`] was called.
    pub fn take_logs(&self) -> Vec<(&'static str, String)> {
        self.env
            .captured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// What a failure means under this plugin's failure mode.
    pub fn failure_mode(&self) -> FailureMode {
        self.limits.failure
    }

    fn new_store(&self) -> Store<HostState> {
        let mut wasi = WasiCtxBuilder::new();
        if !self.clock {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        let memory = self.limits.memory_bytes as usize;
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: CallLimiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory)
                    .table_elements(100_000)
                    .instances(64)
                    .tables(64)
                    .memories(4)
                    .build(),
                memory_bytes: memory,
                hit: false,
                grown_to: 0,
                initial: 0,
            },
            env: self.env.clone(),
            deadline: Instant::now() + self.limits.timeout,
            dns_lookups: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
    }

    /// Calls one hook under the plugin's limits. Never panics and never
    /// traps the host: every failure is a [`PluginFailure`], logged here
    /// with plugin, version and hook.
    ///
    /// Instances are kept warm: an instance whose call ended cleanly serves
    /// later calls (one at a time, from any session) instead of a new one
    /// being made for each call, which is what makes a hook call cost about
    /// a microsecond rather than the tens of an instantiation. An instance
    /// is thrown away, never reused, after a trap, a time-out, a limit hit
    /// or any other failure, after [`MAX_CALLS_PER_INSTANCE`] calls, when
    /// its memory grew by more than [`MAX_WARM_MEMORY`], and when the plugin is
    /// replaced (a reload); at most [`MAX_WARM`] wait per plugin (a
    /// sixteenth of the pool's slots when that is fewer). The
    /// load-time `describe` and `self-test` calls always run in an instance
    /// of their own that is then dropped.
    pub(crate) async fn call(&self, call: Call) -> Result<Answer, PluginFailure> {
        let hook = call.hook();
        let started = Instant::now();
        let keep = self.max_warm > 0
            && !matches!(
                call,
                Call::Describe | Call::SelfTest | Call::WantsMailboxEvents
            );
        let reused = if keep { self.take_warm() } else { None };
        let (mut store, instance, calls) = match reused {
            Some(w) => (w.store, Some(w.instance), w.calls),
            None => (self.new_store(), None, 0),
        };
        store.data_mut().limits.hit = false;
        if let (true, Some(fuel)) = (self.fuel, self.limits.fuel) {
            // Cannot fail: fuel metering is on in this engine.
            let _ = store.set_fuel(fuel);
        }
        let deadline = started + self.limits.timeout;
        store.data_mut().deadline = deadline;
        store.data_mut().dns_lookups = 0;
        store.set_epoch_deadline(1);
        // At every tick: past the deadline, interrupt (a trap); otherwise
        // yield to tokio so a busy plugin never holds a worker for long.
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        // The outer timeout also bounds time spent in async host calls
        // (DNS), which the epoch does not see.
        let grace = self.limits.timeout + 2 * EPOCH_TICK;
        let result = tokio::time::timeout(grace, self.run(&mut store, instance, call)).await;
        let limit_hit = store.data().limits.hit;
        self.last_memory
            .store(store.data().limits.grown_to, Ordering::Relaxed);
        let outcome = match result {
            Ok(Ok(done)) => Ok(done),
            Err(_) => Err(FailureKind::Timeout),
            Ok(Err(e)) => Err(match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => FailureKind::Timeout,
                Some(Trap::OutOfFuel) => FailureKind::Fuel,
                _ if limit_hit => FailureKind::Memory,
                Some(trap) => FailureKind::Trap(format!("{trap}: {e:#}")),
                None => FailureKind::Trap(format!("{e:#}")),
            }),
        };
        // A clean call may leave its instance warm; a failed one (and its
        // store) is dropped here: returning it to the pool is part of the
        // call's cost.
        let outcome = outcome.map(|(answer, instance)| {
            let calls = calls + 1;
            let limits = &store.data().limits;
            let small = limits.grown_to.saturating_sub(limits.initial) <= MAX_WARM_MEMORY;
            if keep && small && calls < MAX_CALLS_PER_INSTANCE {
                self.put_warm(Warm {
                    store,
                    instance,
                    calls,
                });
            }
            answer
        });
        let elapsed = started.elapsed();
        let failed = outcome.is_err();
        let timeout = matches!(outcome, Err(FailureKind::Timeout));
        self.stats.record(elapsed, failed, timeout);
        let result = outcome
            .as_ref()
            .map_or_else(FailureKind::metric, |_| PluginResult::Ok);
        mailgate_metrics::plugin_call(&self.name, hook.name(), result, elapsed);
        outcome.map_err(|kind| self.failure(hook, kind, elapsed))
    }

    fn take_warm(&self) -> Option<Warm> {
        self.warm.lock().ok()?.pop()
    }

    fn put_warm(&self, warm: Warm) {
        if let Ok(mut list) = self.warm.lock() {
            if list.len() < self.max_warm {
                list.push(warm);
            }
        }
    }

    /// Builds, logs and returns a failure of this plugin at `hook`.
    pub(crate) fn failure(
        &self,
        hook: Hook,
        kind: FailureKind,
        elapsed: Duration,
    ) -> PluginFailure {
        let failure = PluginFailure {
            plugin: self.name.clone(),
            version: self.version.clone(),
            hook,
            kind,
        };
        tracing::warn!(
            plugin = %self.name,
            version = %self.version,
            %hook,
            elapsed_us = elapsed.as_micros() as u64,
            failure_mode = self.limits.failure.as_str(),
            "plugin failed: {}",
            failure.kind
        );
        failure
    }

    /// Records an answer the host refused (invalid edits) as a failure.
    pub(crate) fn invalid_answer(&self, hook: Hook, why: String) -> PluginFailure {
        self.stats.record(Duration::ZERO, true, false);
        mailgate_metrics::plugin_call(
            &self.name,
            hook.name(),
            PluginResult::InvalidAnswer,
            Duration::ZERO,
        );
        self.failure(hook, FailureKind::InvalidAnswer(why), Duration::ZERO)
    }

    async fn run(
        &self,
        store: &mut Store<HostState>,
        instance: Option<Instance>,
        call: Call,
    ) -> wasmtime::Result<(Answer, Instance)> {
        let instance = match instance {
            Some(i) => i,
            None => self.pre.instantiate_async(&mut *store).await?,
        };
        let answer = self.dispatch(store, &instance, call).await?;
        Ok((answer, instance))
    }

    async fn dispatch(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
        call: Call,
    ) -> wasmtime::Result<Answer> {
        let ix = &self.indices;
        let missing = || wasmtime::Error::msg("hook not exported");
        Ok(match call {
            Call::Describe => {
                let g = ix.meta.load(&mut *store, instance)?;
                Answer::Info(g.call_describe(&mut *store).await?)
            }
            Call::SelfTest => {
                let g = ix.meta.load(&mut *store, instance)?;
                Answer::SelfTest(g.call_self_test(&mut *store).await?)
            }
            Call::Connect(s) => {
                let g = ix
                    .connect
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                Answer::Outcome(g.call_connect(&mut *store, &s).await?)
            }
            Call::Helo(s) => {
                let g = ix
                    .helo
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                Answer::Outcome(g.call_helo(&mut *store, &s).await?)
            }
            Call::Auth(s, a) => {
                let g = ix
                    .auth
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                Answer::Outcome(g.call_auth(&mut *store, &s, &a).await?)
            }
            Call::MailFrom(s, e) => {
                let g = ix
                    .mail_from
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                Answer::Outcome(g.call_mail_from(&mut *store, &s, &e).await?)
            }
            Call::RcptTo(s, e, r) => {
                let g = ix
                    .rcpt_to
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                Answer::Outcome(g.call_rcpt_to(&mut *store, &s, &e, &r).await?)
            }
            Call::Data(s, e, m) => {
                let g = ix
                    .data
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                let (handle, lent) = lend(store, m)?;
                let answer = g.call_data(&mut *store, &s, &e, handle).await;
                lent.take_back(store);
                Answer::Outcome(answer?)
            }
            Call::Route(s, e, r, m, current) => {
                let g = ix
                    .route
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                let (handle, lent) = lend(store, m)?;
                let answer = g
                    .call_route(&mut *store, &s, &e, &r, handle, &current)
                    .await;
                lent.take_back(store);
                Answer::Route(answer?)
            }
            Call::WantsMailboxEvents => {
                let g = ix
                    .mailbox_event
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                Answer::Wants(g.call_wants(&mut *store).await?)
            }
            Call::MailboxEvent(event, m) => {
                let g = ix
                    .mailbox_event
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                let (handle, lent) = lend(store, m)?;
                let answer = g.call_mailbox_event(&mut *store, &event, handle).await;
                lent.take_back(store);
                Answer::Done(answer?)
            }
            Call::Deliver(request, m) => {
                let g = ix
                    .deliver
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, instance)?;
                let (handle, lent) = lend(store, m)?;
                let answer = g.call_deliver(&mut *store, &request, handle).await;
                lent.take_back(store);
                Answer::Delivered(answer?)
            }
        })
    }
}

/// A message lent to one call (WIT `borrow<message>`): its entry in the
/// store's resource table, which the guest can never drop itself.
struct Lent(u32);

/// Puts `view` into the store's resource table for one call.
fn lend(
    store: &mut Store<HostState>,
    view: Arc<MessageView>,
) -> wasmtime::Result<(Resource<MessageHandle>, Lent)> {
    let handle = store.data_mut().table.push(MessageHandle(view))?;
    let lent = Lent(handle.rep());
    Ok((handle, lent))
}

impl Lent {
    /// Removes the entry once the call returned. A warm instance's store
    /// outlives the call: without this every message a warm instance was
    /// lent (the whole received message, shared with the session) stayed
    /// in memory until the instance was retired, up to
    /// [`MAX_CALLS_PER_INSTANCE`] of them.
    fn take_back(self, store: &mut Store<HostState>) {
        // Fails only if the entry is already gone (nothing held then).
        let _ = store
            .data_mut()
            .table
            .delete(Resource::<MessageHandle>::new_own(self.0));
    }
}

/// Which imports a component has, refusing any it was not granted.
fn check_imports(
    engine: &Engine,
    component: &Component,
    grants: &[Grant],
) -> Result<Vec<String>, LoadError> {
    let mut names = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        names.push(name.to_string());
        if name.starts_with("wasi:") {
            // Served with an empty context: no files, sockets or env.
            continue;
        }
        let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            return Err(LoadError::UnknownImport(name.to_string()));
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if !crate::config::serves_wit(WIT_VERSION, version) {
            return Err(LoadError::Version {
                import: name.to_string(),
                served: WIT_VERSION,
            });
        }
        match iface {
            "types" | "message" => {}
            other => match Grant::ALL.iter().find(|g| g.interface() == other) {
                Some(g) if grants.contains(g) => {}
                Some(g) => return Err(LoadError::NotGranted(*g)),
                None => return Err(LoadError::UnknownImport(name.to_string())),
            },
        }
    }
    Ok(names)
}

/// The cache key part that changes with the engine: wasmtime's own
/// compatibility hash (version, target, settings) plus this crate's version.
fn engine_key(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    h.finish()
}

/// Compiles `bytes`, through the on-disk cache when there is one.
fn compile(
    engine: &Engine,
    cache: Option<&Path>,
    hash: &str,
    bytes: &[u8],
) -> Result<Component, LoadError> {
    let path = cache.map(|dir| dir.join(format!("{hash}-{:016x}.cwasm", engine_key(engine))));
    if let Some(path) = &path {
        if path.exists() {
            match load_cached(engine, path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unusable cache entry, recompiling");
                }
            }
        }
    }
    let component =
        Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    if let Some(path) = &path {
        // A failed cache write costs a recompile next start, nothing more.
        let written = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|b| {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, b)?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write plugin cache");
        }
    }
    Ok(component)
}

/// Loads a compiled component from the cache.
#[allow(unsafe_code)]
fn load_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
    // output, because it maps it as executable code. That holds here: the
    // cache directory is created by the host with mode 0700 and written
    // only by `compile` above (from `Component::serialize`, via a rename,
    // so never half-written); the name carries the SHA-256 of the source
    // component and the engine's compatibility hash, so an entry is only
    // ever read by the engine configuration that wrote it for exactly
    // those bytes; and wasmtime itself still checks the header (version,
    // target, settings) and refuses a mismatch, which lands in the
    // recompile path. Plugins never see this directory.
    unsafe { Component::deserialize_file(engine, path) }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
