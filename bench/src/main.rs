//! `mailgate-bench`: measures how fast a mail server accepts mail over
//! SMTP (each `250` after DATA meaning the message is durable) and serves
//! it back over POP3 RETR. Starts the real `mailgate` binary on loopback,
//! and can measure a peer server (e.g. Postfix + Dovecot) with the same
//! client code in the same run. See `bench/README.md`.
#![forbid(unsafe_code)]

mod cpu;
mod imap;
mod logins;
mod message;
mod pg;
mod pop3;
mod procmem;
mod server;
mod smtp;
mod stats;
mod wire;

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::stats::{ms, rate, Latencies, MB};
use crate::wire::{err, Error, Result};

/// Throughput benchmark: SMTP acceptance and POP3 RETR.
#[derive(Debug, Parser)]
#[command(name = "mailgate-bench", version, about)]
struct Args {
    /// The mailgate binary to start (copied to a temp dir first).
    #[arg(long, default_value = "target/release/mailgate", value_name = "PATH")]
    bin: PathBuf,
    /// Messages to send over SMTP (and retrieve over POP3).
    #[arg(long, default_value_t = 5000)]
    messages: u64,
    /// Concurrent SMTP connections.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Size of each message in bytes, headers included.
    #[arg(long, default_value_t = 10240)]
    size: usize,
    /// Send MAIL, RCPT and DATA one at a time instead of as one pipelined
    /// group.
    #[arg(long)]
    no_pipelining: bool,
    /// RETR commands outstanding in the pipelined POP3 pass; 0 skips it.
    #[arg(long, default_value_t = 32)]
    pop3_window: usize,
    /// Seconds any single read or write may take before the run fails.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Run mailgate with the policy plugins in this directory (every
    /// `*.wasm`, granted `config` and `log`); e.g. a copy of
    /// `plugins/target/wasm32-wasip2/release/template.wasm` for a no-op.
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Threads of the client runtime. One keeps the load generator off the
    /// server's second core on a two-core machine.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Also measure a peer server: its SMTP address (loopback only).
    #[arg(long, value_name = "HOST:PORT", requires = "peer_user")]
    peer_smtp: Option<String>,
    /// The peer's POP3 address (loopback only); needed without --imap.
    #[arg(long, value_name = "HOST:PORT", requires = "peer_smtp")]
    peer_pop3: Option<String>,
    /// The peer's IMAP address (loopback only); needed with --imap.
    #[arg(long, value_name = "HOST:PORT", requires = "peer_smtp")]
    peer_imap: Option<String>,
    /// The peer's IMAP server process (e.g. Dovecot's master): with
    /// --imap, its memory and that of all its descendants is measured.
    #[arg(long, value_name = "PID", requires = "peer_imap")]
    peer_pid: Option<u32>,
    /// The peer's SMTP server process (e.g. Postfix's master): its CPU
    /// time and that of all its descendants, from the first transaction
    /// until every message is retrievable, is reported per message
    /// beside mailgate's.
    #[arg(long, value_name = "PID", requires = "peer_smtp")]
    peer_cpu_pid: Option<u32>,
    /// Seconds to wait, after the last `250`, until every accepted message
    /// can be retrieved (a queueing MTA such as Postfix delivers after its
    /// `250`).
    #[arg(long, default_value_t = 600)]
    delivery_timeout: u64,
    /// The peer's POP3/IMAP login; also the recipient unless --peer-rcpt.
    #[arg(long, value_name = "USER", requires = "peer_smtp")]
    peer_user: Option<String>,
    /// The peer's POP3 password.
    #[arg(
        long,
        env = "MAILGATE_BENCH_PEER_PASSWORD",
        hide_env_values = true,
        requires = "peer_smtp"
    )]
    peer_password: Option<String>,
    /// The peer's envelope recipient, if not the login name.
    #[arg(long, value_name = "ADDRESS", requires = "peer_smtp")]
    peer_rcpt: Option<String>,
    /// Name of the peer in the table and the prefix of its `bench:` keys.
    #[arg(long, default_value = "peer", requires = "peer_smtp")]
    peer_name: String,
    /// Measure only the peer; do not start mailgate.
    #[arg(long, requires = "peer_smtp")]
    peer_only: bool,
    /// Run the IMAP benchmark instead: fill INBOX over SMTP, time SEARCH
    /// and FETCH, then measure memory per idle IDLE session (with
    /// --peer-smtp/--peer-imap/--peer-pid, against the peer too).
    #[arg(long)]
    imap: bool,
    /// Messages in INBOX for --imap.
    #[arg(long, default_value_t = 10_000, requires = "imap")]
    imap_messages: u64,
    /// Idle IDLE sessions for --imap (0 skips that part).
    #[arg(long, default_value_t = 5_000, requires = "imap")]
    imap_idle: usize,
    /// The mailbox the idle sessions select.
    #[arg(long, default_value = "Archive", requires = "imap")]
    imap_idle_mailbox: String,
    /// Runs of each timed IMAP command (the median is reported).
    #[arg(long, default_value_t = 3, requires = "imap")]
    imap_repeat: usize,
    /// Run the repeated-login benchmark instead: IMAP LOGIN+LOGOUT, the
    /// IMAP login mix (LOGIN, SELECT, LOGOUT) and POP3 sessions, each in a
    /// loop (with --peer-imap and --peer-pop3, against the peer too; its
    /// POP3 accounts are login0..loginN at --peer-user's domain).
    #[arg(long, conflicts_with = "imap")]
    logins: bool,
    /// Concurrent clients in each --logins phase.
    #[arg(long, default_value_t = 10, requires = "logins")]
    login_clients: usize,
    /// Seconds each --logins phase runs.
    #[arg(long, default_value_t = 10, requires = "logins")]
    login_secs: u64,
    /// mailgate's `[auth] cache_ttl` (e.g. "0" to measure logins without
    /// the credential cache); the server's default ("1h") if not given.
    #[arg(long, value_name = "DURATION")]
    auth_cache_ttl: Option<String>,
    /// mailgate's store: `sqlite` (in its data directory) or `postgres`
    /// (a private PostgreSQL cluster started for the run, with its
    /// durability defaults, or the database of --pg-url).
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// With --store postgres: this empty database instead of a private
    /// cluster (loopback only).
    #[arg(long, value_name = "URL")]
    pg_url: Option<String>,
    /// mailgate nodes sharing the store (more than one needs --store
    /// postgres): node i listens on 127.0.0.(i+1), and the SMTP
    /// connections are spread over them; POP3 and IMAP use the first.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// SMTP acceptance and POP3 on SQLite (one node), PostgreSQL (one
    /// node) and PostgreSQL (two nodes) in one run, each in a fresh
    /// store, and the ratios PostgreSQL / SQLite.
    #[arg(long, conflicts_with_all = ["imap", "logins", "peer_smtp", "pg_url", "nodes", "store"])]
    compare_stores: bool,
}

/// Which store the mailgate nodes run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

/// One server under test, as the client code sees it.
#[derive(Debug, Clone)]
struct Target {
    /// Table label; also the `bench:` key prefix (none for mailgate).
    name: String,
    smtp: SocketAddr,
    /// Needed for the SMTP/POP3 benchmark.
    pop3: Option<SocketAddr>,
    /// Needed for --imap.
    imap: Option<SocketAddr>,
    /// More SMTP addresses (other nodes of the same store): the
    /// connections are spread over `smtp` and these.
    smtp_more: Vec<SocketAddr>,
    /// The server process (for memory figures, --imap).
    pid: Option<u32>,
    /// The processes whose CPU time is measured over the SMTP phase
    /// (summed), and whether with their descendants (a forking server;
    /// PostgreSQL's postmaster).
    cpu: Vec<(u32, bool)>,
    user: String,
    password: String,
    rcpt: String,
}

/// The benchmark parameters shared by all targets.
#[derive(Debug, Clone)]
struct Params {
    messages: u64,
    clients: usize,
    size: usize,
    pipelining: bool,
    pop3_window: usize,
    timeout: Duration,
    delivery_timeout: Duration,
}

/// The figures for one target.
struct Report {
    name: String,
    smtp: smtp::Outcome,
    /// From the first transaction until every message could be retrieved
    /// (the SMTP phase's time if they all were at the first look).
    delivered: Duration,
    retr: pop3::Outcome,
    /// `None` if skipped (window 0 or not advertised).
    retr_pipelined: Option<pop3::Outcome>,
    /// Store size after the run, where known (mailgate only).
    store_bytes: Option<u64>,
    /// The server's CPU time (user + system) over the SMTP phase, until
    /// the last `250` and until every message was retrievable; `None`
    /// without a process to measure.
    cpu: Option<(Duration, Duration)>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    if let Some(ttl) = &args.auth_cache_ttl {
        let _ = server::AUTH_CACHE_TTL.set(ttl.clone());
    }
    let params = Params {
        messages: args.messages,
        clients: args.clients.min(args.messages as usize),
        size: args.size,
        pipelining: !args.no_pipelining,
        pop3_window: args.pop3_window,
        timeout: Duration::from_secs(args.timeout),
        delivery_timeout: Duration::from_secs(args.delivery_timeout),
    };
    if params.messages == 0 || params.clients == 0 {
        return err("--messages and --clients must be at least 1");
    }
    let runtime = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()?
    };
    // Catch SIGINT and SIGTERM from here on, so that an interrupted run
    // still returns through the guards that stop the server instead of
    // dying and leaving it behind.
    let mut interrupts = runtime.block_on(async { Interrupts::new() })?;
    if args.imap {
        return run_imap(args, &params, &runtime, &mut interrupts);
    }
    if args.logins {
        return run_logins(args, &params, &runtime, &mut interrupts);
    }
    let peer = peer_target(args)?;
    if !args.peer_only {
        check_size(&params, server::USER)?;
    }
    if let Some(peer) = &peer {
        check_size(&params, &peer.rcpt)?;
    }

    eprintln!(
        "mailgate-bench: {} messages of {} bytes over {} SMTP connections ({})",
        params.messages,
        params.size,
        params.clients,
        if params.pipelining {
            "MAIL+RCPT+DATA pipelined"
        } else {
            "lock-step commands"
        }
    );
    let mut reports = Vec::new();
    if args.compare_stores {
        let mut cluster = None;
        for (name, store, nodes) in [
            ("sqlite", StoreKind::Sqlite, 1),
            ("postgres", StoreKind::Postgres, 1),
            ("postgres_2nodes", StoreKind::Postgres, 2),
        ] {
            let deployment = Deployment {
                store,
                nodes,
                pg_url: None,
            };
            reports.push(measure_mailgate(
                args,
                &params,
                &runtime,
                &mut interrupts,
                name,
                &deployment,
                &mut cluster,
            )?);
        }
    } else if !args.peer_only {
        let deployment = Deployment {
            store: args.store,
            nodes: args.nodes,
            pg_url: args.pg_url.clone(),
        };
        let mut cluster = None;
        reports.push(measure_mailgate(
            args,
            &params,
            &runtime,
            &mut interrupts,
            "mailgate",
            &deployment,
            &mut cluster,
        )?);
    }
    if let Some(peer) = &peer {
        reports.push(runtime.block_on(interrupts.guard(measure(peer, &params)))?);
    }
    print_report(&params, &reports);
    if args.compare_stores {
        compare_stores(&reports);
    }
    Ok(())
}

/// The mailgate nodes of a run and their store.
#[derive(Debug, Clone)]
struct Deployment {
    store: StoreKind,
    nodes: usize,
    /// `--pg-url`: a database of the user's instead of a private cluster.
    pg_url: Option<String>,
}

/// Running mailgate nodes (stopped when dropped, before the cluster).
struct Nodes {
    nodes: Vec<server::Mailgate>,
    /// The postmaster of the private cluster, whose tree's CPU counts.
    postmaster: Option<u32>,
}

impl Deployment {
    /// Starts the nodes (and, for PostgreSQL without --pg-url, a private
    /// cluster in `cluster` if there is none yet, with a new database).
    fn start(
        &self,
        bin: &std::path::Path,
        max_message_size: u64,
        plugins: Option<&std::path::Path>,
        cluster: &mut Option<pg::Cluster>,
    ) -> Result<Nodes> {
        if self.nodes == 0 || self.nodes > 200 {
            return err("--nodes must be 1 to 200");
        }
        if self.nodes > 1 && self.store == StoreKind::Sqlite {
            return err("more than one node needs --store postgres (SQLite is one node's)");
        }
        let (url, postmaster) = match (self.store, &self.pg_url) {
            (StoreKind::Sqlite, _) => (None, None),
            (StoreKind::Postgres, Some(url)) => {
                check_pg_url(url)?;
                (Some(url.clone()), None)
            }
            (StoreKind::Postgres, None) => {
                if cluster.is_none() {
                    eprintln!("mailgate-bench: starting a private PostgreSQL (fsync on)");
                    *cluster = Some(pg::Cluster::start()?);
                }
                let c = cluster.as_mut().expect("just started");
                eprintln!(
                    "mailgate-bench: PostgreSQL fsync={} synchronous_commit={}",
                    c.setting("fsync"),
                    c.setting("synchronous_commit")
                );
                (Some(c.create_database()?), Some(c.pid()?))
            }
        };
        let mut nodes = Vec::with_capacity(self.nodes);
        for i in 0..self.nodes {
            let ip = if self.nodes == 1 {
                "127.0.0.1".to_string()
            } else {
                format!("127.0.0.{}", i + 2)
            };
            let node = server::Node {
                ip: &ip,
                store_url: url.as_deref(),
                add_user: i == 0,
            };
            eprintln!(
                "mailgate-bench: starting {} on {ip} ({:?} store)",
                bin.display(),
                self.store
            );
            nodes.push(server::Mailgate::start_node(
                bin,
                max_message_size,
                plugins,
                &[],
                node,
            )?);
        }
        Ok(Nodes { nodes, postmaster })
    }
}

impl Nodes {
    /// The benchmark's view of the nodes: SMTP over all of them, POP3
    /// and IMAP on the first; CPU of every node and of the database.
    fn target(&mut self, name: &str) -> Target {
        let mut cpu: Vec<(u32, bool)> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.pid())
            .map(|p| (p, false))
            .collect();
        cpu.extend(self.postmaster.map(|p| (p, true)));
        let pid = self.nodes[0].pid();
        Target {
            name: name.into(),
            smtp: self.nodes[0].smtp,
            smtp_more: self.nodes[1..].iter().map(|n| n.smtp).collect(),
            pop3: Some(self.nodes[0].pop3),
            imap: Some(self.nodes[0].imap),
            pid,
            cpu,
            user: server::USER.into(),
            password: server::PASSWORD.into(),
            rcpt: server::USER.into(),
        }
    }

    /// The last lines of every node's log, for an error report.
    fn log_tail(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| n.log_tail(lines))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n--\n")
    }

    /// Stops every node (SIGTERM, SIGKILL after 10 s).
    fn stop(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            match n.stop()? {
                Some(s) if s.killed => {
                    eprintln!("mailgate-bench: mailgate ignored SIGTERM for 10 s and was killed")
                }
                Some(s) => eprintln!(
                    "mailgate-bench: mailgate stopped ({}) {:.2} s after SIGTERM",
                    s.status,
                    s.took.as_secs_f64()
                ),
                None => {}
            }
        }
        Ok(())
    }
}

/// `--pg-url` must name a server on this machine.
fn check_pg_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| Error("--pg-url must be postgres://USER@HOST:PORT/DB".into()))?;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_port = host_port.split('/').next().unwrap_or("");
    let with_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    loopback(&with_port).map(|_| ())
}

/// The SMTP and POP3 phases against mailgate deployed as `deployment`.
fn measure_mailgate(
    args: &Args,
    params: &Params,
    runtime: &tokio::runtime::Runtime,
    interrupts: &mut Interrupts,
    name: &str,
    deployment: &Deployment,
    cluster: &mut Option<pg::Cluster>,
) -> Result<Report> {
    let bin = server::resolve_binary(&args.bin);
    let mut nodes = deployment.start(
        &bin,
        (params.size as u64 * 2).max(50 << 20),
        args.plugins.as_deref(),
        cluster,
    )?;
    if let Some(dir) = &args.plugins {
        eprintln!("mailgate-bench: plugins from {}", dir.display());
    }
    let target = nodes.target(name);
    // On error `nodes` is dropped, and the guards stop the servers.
    let mut report = runtime
        .block_on(interrupts.guard(measure(&target, params)))
        .map_err(|e| match nodes.log_tail(20) {
            log if log.is_empty() => e,
            log => Error(format!("{e}\nmailgate's stderr ends:\n{log}")),
        })?;
    if deployment.store == StoreKind::Sqlite {
        report.store_bytes = Some(nodes.nodes[0].store_bytes());
    }
    nodes.stop()?;
    Ok(report)
}

/// `--compare-stores`: each PostgreSQL run against the SQLite run.
fn compare_stores(reports: &[Report]) {
    let Some(base) = reports.iter().find(|r| r.name == "sqlite") else {
        return;
    };
    for r in reports.iter().filter(|r| r.name != "sqlite") {
        compare(r, base);
        let per_s = |r: &Report| rate(r.smtp.messages as f64, r.smtp.elapsed);
        println!(
            "bench: {}_over_sqlite_smtp_accept={:.3}",
            r.name,
            per_s(r) / per_s(base)
        );
    }
}

/// `--imap`: start mailgate, fill INBOX over SMTP, then the IMAP phase;
/// then the same against the peer, if one is given, and a comparison.
fn run_imap(
    args: &Args,
    params: &Params,
    runtime: &tokio::runtime::Runtime,
    interrupts: &mut Interrupts,
) -> Result<()> {
    let peer = peer_target(args)?;
    if let Some(peer) = &peer {
        check_size(params, &peer.rcpt)?;
        if let Some(pid) = peer.pid {
            procmem::check(pid)?;
        }
    }
    let mut results = Vec::new();
    if !args.peer_only {
        check_size(params, server::USER)?;
        let bin = server::resolve_binary(&args.bin);
        // The server runs with the allocator as shipped: its login memory
        // is bounded by mailgate itself (a fixed pool of Argon2 buffers).
        let deployment = Deployment {
            store: args.store,
            nodes: args.nodes,
            pg_url: args.pg_url.clone(),
        };
        let mut cluster = None;
        let mut nodes = deployment.start(
            &bin,
            (params.size as u64 * 2).max(50 << 20),
            args.plugins.as_deref(),
            &mut cluster,
        )?;
        let mut target = nodes.target("mailgate");
        if target.pid.is_none() {
            return err("mailgate exited at once");
        }
        // Memory is the first node's alone; CPU is not measured here.
        target.cpu = Vec::new();
        let result = runtime
            .block_on(interrupts.guard(imap_target(&target, args, params)))
            .map_err(|e| match nodes.log_tail(20) {
                log if log.is_empty() => e,
                log => Error(format!("{e}\nmailgate's stderr ends:\n{log}")),
            })?;
        nodes.stop()?;
        results.push(result);
    }
    if let Some(peer) = &peer {
        results.push(runtime.block_on(interrupts.guard(imap_target(peer, args, params)))?);
    }
    for (load, outcome) in &results {
        imap::print(load, outcome);
    }
    if let [(ml, mo), (pl, po)] = &results[..] {
        imap::compare((ml, mo), (pl, po));
    }
    Ok(())
}

/// `--logins`: start mailgate with the accounts the POP3 phase needs,
/// run the login loops, then the same against the peer, and compare.
fn run_logins(
    args: &Args,
    params: &Params,
    runtime: &tokio::runtime::Runtime,
    interrupts: &mut Interrupts,
) -> Result<()> {
    let peer = peer_target(args)?;
    let clients = args.login_clients.max(1);
    let duration = Duration::from_secs(args.login_secs.max(1));
    let mut results = Vec::new();
    if !args.peer_only {
        let bin = server::resolve_binary(&args.bin);
        eprintln!("mailgate-bench: starting {}", bin.display());
        let mut mailgate = server::Mailgate::start(&bin, 50 << 20, args.plugins.as_deref())?;
        let pop3_users = logins::pop3_users(server::DOMAIN, clients);
        mailgate.add_users(&pop3_users)?;
        let load = logins::Load {
            name: "mailgate".into(),
            imap: mailgate.imap,
            pop3: mailgate.pop3,
            user: server::USER.into(),
            password: server::PASSWORD.into(),
            pop3_users,
            clients,
            duration,
            timeout: params.timeout,
        };
        let phases = runtime
            .block_on(interrupts.guard(logins::run(&load)))
            .map_err(|e| match mailgate.log_tail(20) {
                log if log.is_empty() => e,
                log => Error(format!("{e}\nmailgate's stderr ends:\n{log}")),
            })?;
        mailgate.stop()?;
        results.push(("mailgate".to_string(), phases));
    }
    if let Some(peer) = &peer {
        let (Some(imap), Some(pop3)) = (peer.imap, peer.pop3) else {
            return err("--logins with a peer needs --peer-imap and --peer-pop3");
        };
        let domain = peer.user.rsplit_once('@').map_or("", |(_, d)| d);
        let load = logins::Load {
            name: peer.name.clone(),
            imap,
            pop3,
            user: peer.user.clone(),
            password: peer.password.clone(),
            pop3_users: logins::pop3_users(domain, clients),
            clients,
            duration,
            timeout: params.timeout,
        };
        let phases = runtime.block_on(interrupts.guard(logins::run(&load)))?;
        results.push((peer.name.clone(), phases));
    }
    logins::print(&results, clients, duration);
    Ok(())
}

/// The IMAP benchmark against one target: fill its INBOX (which must be
/// empty) over SMTP, wait until IMAP sees every message, then measure.
async fn imap_target(
    target: &Target,
    args: &Args,
    params: &Params,
) -> Result<(imap::Load, imap::Outcome)> {
    let (Some(address), Some(pid)) = (target.imap, target.pid) else {
        return err(format!(
            "[{}] an IMAP address and a process id are needed",
            target.name
        ));
    };
    let load = imap::Load {
        name: target.name.clone(),
        address,
        user: target.user.clone(),
        password: target.password.clone(),
        messages: args.imap_messages,
        repeat: args.imap_repeat,
        idle_sessions: args.imap_idle,
        idle_mailbox: args.imap_idle_mailbox.clone(),
        timeout: params.timeout,
        pid,
    };
    let before = imap::inbox_count(&load).await?;
    if before != 0 {
        return err(format!(
            "[{}] INBOX of {} holds {before} messages; it must be empty",
            target.name, target.user
        ));
    }
    let fill = smtp::Load {
        address: target.smtp.to_string(),
        also: target.smtp_more.iter().map(|a| a.to_string()).collect(),
        rcpt: target.rcpt.clone(),
        messages: args.imap_messages,
        clients: params.clients.min(args.imap_messages.max(1) as usize),
        size: params.size,
        pipelining: params.pipelining,
        timeout: params.timeout,
        run_id: message::new_run_id(),
    };
    eprintln!(
        "mailgate-bench: [{}] filling INBOX with {} messages over SMTP",
        target.name, fill.messages
    );
    let filled = smtp::run(&fill).await?;
    let delivered = wait_delivered(
        &target.name,
        filled.elapsed,
        params.delivery_timeout,
        args.imap_messages,
        || imap::inbox_count(&load),
    )
    .await?;
    eprintln!(
        "mailgate-bench: [{}] filled in {:.1} s (all {}: {:.1} s)",
        target.name,
        filled.elapsed.as_secs_f64(),
        if delivered == filled.elapsed {
            "in INBOX at the last 250"
        } else {
            "in INBOX"
        },
        delivered.as_secs_f64()
    );
    let outcome = imap::run(&load).await?;
    Ok((load, outcome))
}

/// How often the peer's mailbox is looked at while it delivers.
const DELIVERY_POLL: Duration = Duration::from_millis(250);

/// Waits until `count()` reaches `want` (a queueing MTA says `250` before
/// it delivers). Returns the time from the first transaction until the
/// last message was retrievable: `accepted` (the SMTP phase's time) if all
/// were there at the first look, right after the last `250`, else that
/// plus the wait until the look that found them all.
async fn wait_delivered<F, Fut>(
    name: &str,
    accepted: Duration,
    timeout: Duration,
    want: u64,
    mut count: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let started = Instant::now();
    let mut first = true;
    loop {
        let have = count().await?;
        if have >= want {
            return Ok(if first {
                accepted
            } else {
                accepted + started.elapsed()
            });
        }
        if first {
            eprintln!("mailgate-bench: [{name}] waiting for delivery ({have} of {want} there)");
        }
        first = false;
        if started.elapsed() > timeout {
            return err(format!(
                "[{name}] only {have} of {want} messages delivered {timeout:?} after the last 250"
            ));
        }
        tokio::time::sleep(DELIVERY_POLL).await;
    }
}

/// SIGINT and SIGTERM, turned into an error of the phase that runs.
struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    /// Installs the handlers; needs a runtime context.
    fn new() -> Result<Self> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Runs `phase` unless a signal comes first (or came during the
    /// synchronous parts before: tokio keeps it pending until polled).
    async fn guard<T>(&mut self, phase: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            result = phase => result,
            _ = self.int.recv() => err("interrupted (SIGINT)"),
            _ = self.term.recv() => err("interrupted (SIGTERM)"),
        }
    }
}

/// The peer given on the command line, if any.
fn peer_target(args: &Args) -> Result<Option<Target>> {
    let (Some(smtp), Some(user)) = (&args.peer_smtp, &args.peer_user) else {
        return Ok(None);
    };
    let name = &args.peer_name;
    if name == "mailgate"
        || name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return err("--peer-name must be letters, digits and _, and not `mailgate`");
    }
    let optional = |a: &Option<String>| a.as_deref().map(loopback).transpose();
    let (pop3, imap) = (optional(&args.peer_pop3)?, optional(&args.peer_imap)?);
    if args.imap && (imap.is_none() || args.peer_pid.is_none()) {
        return err("--imap with a peer needs --peer-imap and --peer-pid");
    }
    if !args.imap && pop3.is_none() {
        return err("a peer needs --peer-pop3 (or --imap with --peer-imap)");
    }
    Ok(Some(Target {
        name: name.clone(),
        smtp: loopback(smtp)?,
        smtp_more: Vec::new(),
        pop3,
        imap,
        pid: args.peer_pid,
        cpu: args.peer_cpu_pid.map(|p| (p, true)).into_iter().collect(),
        user: user.clone(),
        password: args.peer_password.clone().unwrap_or_default(),
        rcpt: args.peer_rcpt.clone().unwrap_or_else(|| user.clone()),
    }))
}

/// Resolves `HOST:PORT`, refusing anything off this machine: the benchmark
/// is a load generator and must only ever load our own loopback servers.
fn loopback(address: &str) -> Result<SocketAddr> {
    let resolved = address
        .to_socket_addrs()
        .map_err(|e| Error(format!("cannot resolve {address}: {e}")))?
        .next()
        .ok_or_else(|| Error(format!("{address} resolves to nothing")))?;
    if !resolved.ip().is_loopback() {
        return err(format!(
            "{address} is not a loopback address; the benchmark only targets this machine"
        ));
    }
    Ok(resolved)
}

/// Refuses a `--size` too small for the headers, with the longest run id
/// [`message::new_run_id`] makes.
fn check_size(params: &Params, rcpt: &str) -> Result<()> {
    let min = message::min_size("r0000000000000000000000", rcpt);
    if params.size < min {
        return err(format!(
            "--size must be at least {min} bytes (the headers alone)"
        ));
    }
    Ok(())
}

/// The SMTP phase, then the POP3 passes, against one target.
async fn measure(target: &Target, params: &Params) -> Result<Report> {
    let run_id = message::new_run_id();
    let Some(pop3) = target.pop3 else {
        return err(format!("[{}] no POP3 address", target.name));
    };
    let mailbox = pop3::Mailbox {
        address: pop3.to_string(),
        user: target.user.clone(),
        password: target.password.clone(),
        rcpt: target.rcpt.clone(),
        run_id: run_id.clone(),
        expected: params.messages,
        size: params.size,
        timeout: params.timeout,
    };
    let before = pop3::count(&mailbox).await?;
    let cpu_now = || -> Result<Option<Duration>> {
        if target.cpu.is_empty() {
            return Ok(None);
        }
        let mut sum = Duration::ZERO;
        for &(pid, tree) in &target.cpu {
            sum += if tree {
                cpu::tree(pid)?
            } else {
                cpu::process(pid)?
            };
        }
        Ok(Some(sum))
    };
    eprintln!("mailgate-bench: [{}] SMTP phase", target.name);
    let cpu_start = cpu_now()?;
    let smtp = smtp::run(&smtp::Load {
        address: target.smtp.to_string(),
        also: target.smtp_more.iter().map(|a| a.to_string()).collect(),
        rcpt: target.rcpt.clone(),
        messages: params.messages,
        clients: params.clients,
        size: params.size,
        pipelining: params.pipelining,
        timeout: params.timeout,
        run_id,
    })
    .await?;
    let cpu_accepted = cpu_now()?;
    let delivered = wait_delivered(
        &target.name,
        smtp.elapsed,
        params.delivery_timeout,
        before + params.messages,
        || pop3::count(&mailbox),
    )
    .await?;
    // mailgate delivered before each 250: its figure stays the one at
    // the last 250 (not counting the POP3 look that found them all).
    let cpu_delivered = match delivered == smtp.elapsed {
        true => cpu_accepted,
        false => cpu_now()?,
    };
    let cpu = match (cpu_start, cpu_accepted, cpu_delivered) {
        (Some(s), Some(a), Some(d)) => Some((a.saturating_sub(s), d.saturating_sub(s))),
        _ => None,
    };
    eprintln!("mailgate-bench: [{}] POP3 RETR, lock-step", target.name);
    let retr = pop3::retr_all(&mailbox, None)
        .await?
        .expect("lock-step always runs");
    let retr_pipelined = if params.pop3_window > 0 {
        eprintln!("mailgate-bench: [{}] POP3 RETR, pipelined", target.name);
        let outcome = pop3::retr_all(&mailbox, Some(params.pop3_window)).await?;
        if outcome.is_none() {
            eprintln!(
                "mailgate-bench: [{}] POP3 server does not advertise PIPELINING; skipped",
                target.name
            );
        }
        outcome
    } else {
        None
    };
    Ok(Report {
        name: target.name.clone(),
        smtp,
        delivered,
        retr,
        retr_pipelined,
        store_bytes: None,
        cpu,
    })
}

fn print_report(params: &Params, reports: &[Report]) {
    println!();
    println!(
        "{} messages x {} bytes, {} SMTP connections ({}), POP3 window {}",
        params.messages,
        params.size,
        params.clients,
        if params.pipelining {
            "MAIL+RCPT+DATA pipelined"
        } else {
            "lock-step"
        },
        params.pop3_window
    );
    println!(
        "{:<15} {:<22} {:>7} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8}",
        "server", "phase", "msgs", "MB", "secs", "msgs/s", "MB/s", "p50 ms", "p99 ms"
    );
    for r in reports {
        let ack = Latencies::new(r.smtp.data_ack.clone());
        let smtp_phase = if r.smtp.pipelined {
            "smtp accept (pipel.)"
        } else {
            "smtp accept"
        };
        row(
            &r.name,
            smtp_phase,
            r.smtp.messages,
            r.smtp.bytes,
            r.smtp.elapsed,
            Some(&ack),
        );
        row(
            &r.name,
            "smtp until retrievable",
            r.smtp.messages,
            r.smtp.bytes,
            r.delivered,
            None,
        );
        row(
            &r.name,
            "pop3 retr",
            r.retr.messages,
            r.retr.bytes,
            r.retr.elapsed,
            None,
        );
        if let Some(p) = &r.retr_pipelined {
            let phase = format!("pop3 retr (window {})", p.window.unwrap_or(1));
            row(&r.name, &phase, p.messages, p.bytes, p.elapsed, None);
        }
    }
    println!();
    for r in reports {
        let ack = Latencies::new(r.smtp.data_ack.clone());
        let txn = Latencies::new(r.smtp.transaction.clone());
        println!(
            "{}: DATA ack (end of data -> 250) p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             whole transaction (MAIL -> 250) p50 {:.2} ms, p99 {:.2} ms",
            r.name,
            ms(ack.percentile(50.0)),
            ms(ack.percentile(90.0)),
            ms(ack.percentile(99.0)),
            ms(ack.max()),
            ms(txn.percentile(50.0)),
            ms(txn.percentile(99.0)),
        );
        println!(
            "{}: POP3 verified {} messages byte for byte{}{}",
            r.name,
            params.messages,
            if r.retr.foreign > 0 {
                format!(", plus {} older messages", r.retr.foreign)
            } else {
                String::new()
            },
            if r.retr.list_mismatches > 0 {
                format!(
                    "; WARNING: {} retrieved sizes differ from LIST",
                    r.retr.list_mismatches
                )
            } else {
                String::new()
            },
        );
        if let Some((accepted, delivered)) = r.cpu {
            println!(
                "{}: server CPU (user + system, /proc) {:.0} µs per message until the last 250, \
                 {:.0} µs per message until all retrievable",
                r.name,
                cpu::per_message(accepted, r.smtp.messages),
                cpu::per_message(delivered, r.smtp.messages),
            );
        }
        if let Some(bytes) = r.store_bytes {
            println!(
                "{}: store on disk after the run {:.1} MB ({:.0} bytes per message)",
                r.name,
                bytes as f64 / MB,
                bytes as f64 / params.messages as f64
            );
        }
    }
    println!();
    println!("bench: messages={}", params.messages);
    println!("bench: clients={}", params.clients);
    println!("bench: size_bytes={}", params.size);
    println!("bench: smtp_pipelining={}", params.pipelining);
    for r in reports {
        // mailgate's keys are unprefixed; a peer's carry its name.
        let p = if r.name == "mailgate" {
            String::new()
        } else {
            format!("{}_", r.name)
        };
        let ack = Latencies::new(r.smtp.data_ack.clone());
        let msgs = |o: u64, d: Duration| rate(o as f64, d);
        let mbs = |b: u64, d: Duration| rate(b as f64 / MB, d);
        println!(
            "bench: {p}smtp_accept_msgs_per_s={:.1}",
            msgs(r.smtp.messages, r.smtp.elapsed)
        );
        println!(
            "bench: {p}smtp_accept_mb_per_s={:.2}",
            mbs(r.smtp.bytes, r.smtp.elapsed)
        );
        println!(
            "bench: {p}smtp_delivered_msgs_per_s={:.1}",
            msgs(r.smtp.messages, r.delivered)
        );
        println!(
            "bench: {p}smtp_data_ack_p50_ms={:.3}",
            ms(ack.percentile(50.0))
        );
        println!(
            "bench: {p}smtp_data_ack_p99_ms={:.3}",
            ms(ack.percentile(99.0))
        );
        println!(
            "bench: {p}pop3_retr_msgs_per_s={:.1}",
            msgs(r.retr.messages, r.retr.elapsed)
        );
        println!(
            "bench: {p}pop3_retr_mb_per_s={:.2}",
            mbs(r.retr.bytes, r.retr.elapsed)
        );
        if let Some((accepted, delivered)) = r.cpu {
            println!(
                "bench: {p}smtp_server_cpu_us_per_msg={:.1}",
                cpu::per_message(accepted, r.smtp.messages)
            );
            println!(
                "bench: {p}smtp_delivered_server_cpu_us_per_msg={:.1}",
                cpu::per_message(delivered, r.smtp.messages)
            );
        }
        if let Some(o) = &r.retr_pipelined {
            println!(
                "bench: {p}pop3_retr_pipelined_msgs_per_s={:.1}",
                msgs(o.messages, o.elapsed)
            );
            println!(
                "bench: {p}pop3_retr_pipelined_mb_per_s={:.2}",
                mbs(o.bytes, o.elapsed)
            );
        }
    }
    if let [m, p] = reports {
        if m.name == "mailgate" {
            compare(m, p);
        }
    }
}

/// mailgate's figures over the peer's, phase by phase.
fn compare(m: &Report, p: &Report) {
    println!();
    println!("{} vs {} (ratio = {} / {})", m.name, p.name, m.name, p.name);
    println!(
        "{:<44} {:>12} {:>12} {:>8}  better",
        "what", m.name, p.name, "ratio"
    );
    let line = |what: &str, mv: f64, pv: f64, higher_better: bool| {
        let ratio = if pv > 0.0 {
            format!("{:.2}", mv / pv)
        } else {
            "-".into()
        };
        println!(
            "{what:<44} {mv:>12.2} {pv:>12.2} {ratio:>8}  {}",
            if higher_better { "higher" } else { "lower" }
        );
    };
    let per_s = |n: u64, d: Duration| rate(n as f64, d);
    line(
        "SMTP accept msgs/s (at the 250)",
        per_s(m.smtp.messages, m.smtp.elapsed),
        per_s(p.smtp.messages, p.smtp.elapsed),
        true,
    );
    line(
        "SMTP msgs/s until all retrievable",
        per_s(m.smtp.messages, m.delivered),
        per_s(p.smtp.messages, p.delivered),
        true,
    );
    if let (Some((_, mc)), Some((_, pc))) = (m.cpu, p.cpu) {
        line(
            "server CPU µs/msg until all retrievable",
            cpu::per_message(mc, m.smtp.messages),
            cpu::per_message(pc, p.smtp.messages),
            false,
        );
    }
    let (ma, pa) = (
        Latencies::new(m.smtp.data_ack.clone()),
        Latencies::new(p.smtp.data_ack.clone()),
    );
    line(
        "SMTP DATA ack p50 ms",
        ms(ma.percentile(50.0)),
        ms(pa.percentile(50.0)),
        false,
    );
    line(
        "SMTP DATA ack p99 ms",
        ms(ma.percentile(99.0)),
        ms(pa.percentile(99.0)),
        false,
    );
    line(
        "POP3 RETR msgs/s, lock-step",
        per_s(m.retr.messages, m.retr.elapsed),
        per_s(p.retr.messages, p.retr.elapsed),
        true,
    );
    if let (Some(mo), Some(po)) = (&m.retr_pipelined, &p.retr_pipelined) {
        line(
            &format!("POP3 RETR msgs/s, {} in flight", mo.window.unwrap_or(1)),
            per_s(mo.messages, mo.elapsed),
            per_s(po.messages, po.elapsed),
            true,
        );
    }
}

fn row(
    server: &str,
    phase: &str,
    messages: u64,
    bytes: u64,
    elapsed: Duration,
    latency: Option<&Latencies>,
) {
    let (p50, p99) = match latency {
        Some(l) => (
            format!("{:.2}", ms(l.percentile(50.0))),
            format!("{:.2}", ms(l.percentile(99.0))),
        ),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{:<15} {:<22} {:>7} {:>8.2} {:>8.2} {:>9.1} {:>7.2} {:>8} {:>8}",
        server,
        phase,
        messages,
        bytes as f64 / MB,
        elapsed.as_secs_f64(),
        rate(messages as f64, elapsed),
        rate(bytes as f64 / MB, elapsed),
        p50,
        p99
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_delivery() {
        let accepted = Duration::from_millis(5);
        let long = Duration::from_secs(5);
        // All there at the first look: the SMTP phase's time.
        let d = wait_delivered("t", accepted, long, 3, || async { Ok(3) })
            .await
            .unwrap();
        assert_eq!(d, accepted);
        // Delivered later: more than the SMTP phase's time.
        let looks = std::cell::Cell::new(0u64);
        let d = wait_delivered("t", accepted, long, 3, || {
            looks.set(looks.get() + 1);
            let n = looks.get();
            async move { Ok(n) }
        })
        .await
        .unwrap();
        assert_eq!(looks.get(), 3);
        assert!(d >= accepted + 2 * DELIVERY_POLL);
        // Never: an error after the timeout.
        let e = wait_delivered("t", accepted, Duration::ZERO, 3, || async { Ok(1) })
            .await
            .unwrap_err();
        assert!(e.0.contains("only 1 of 3"), "{e}");
    }

    #[test]
    fn only_loopback_peers() {
        assert!(loopback("127.0.0.1:25").is_ok());
        assert!(loopback("[::1]:25").is_ok());
        assert!(loopback("localhost:25").is_ok());
        assert!(loopback("192.0.2.1:25").is_err());
    }

    #[test]
    fn peer_flags_parse() {
        let args = Args::try_parse_from([
            "b",
            "--peer-smtp",
            "127.0.0.1:2525",
            "--peer-pop3",
            "127.0.0.1:1110",
            "--peer-user",
            "u@x.test",
            "--peer-password",
            "pw",
            "--peer-name",
            "postfix",
        ])
        .unwrap();
        let t = peer_target(&args).unwrap().unwrap();
        assert_eq!(t.name, "postfix");
        assert_eq!(t.rcpt, "u@x.test");
        assert!(Args::try_parse_from(["b", "--peer-pop3", "127.0.0.1:1"]).is_err());
        // A peer needs POP3 for the SMTP/POP3 benchmark, IMAP and a pid
        // for --imap.
        let smtp_only = ["b", "--peer-smtp", "127.0.0.1:2525", "--peer-user", "u"];
        assert!(peer_target(&Args::try_parse_from(smtp_only).unwrap()).is_err());
        let imap = Args::try_parse_from(smtp_only.into_iter().chain([
            "--imap",
            "--peer-imap",
            "127.0.0.1:143",
        ]))
        .unwrap();
        assert!(peer_target(&imap).is_err());
        let imap = Args::try_parse_from(smtp_only.into_iter().chain([
            "--imap",
            "--peer-imap",
            "127.0.0.1:143",
            "--peer-pid",
            "42",
        ]))
        .unwrap();
        let t = peer_target(&imap).unwrap().unwrap();
        assert_eq!(
            (t.imap.unwrap().port(), t.pid, t.pop3),
            (143, Some(42), None)
        );
        assert!(peer_target(&Args::try_parse_from(["b"]).unwrap())
            .unwrap()
            .is_none());
    }
}
