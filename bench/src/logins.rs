//! `--logins`: how fast a server takes repeated logins, the load of
//! webmail front-ends, mail clients that reconnect for every check, and
//! POP3 polling.
//!
//! Three phases, each run by `clients` connections in a loop for
//! `duration` (after one untimed round per client, so that every server
//! starts with its caches, if it has any, filled the same way):
//! - `imap login`: connect, `LOGIN`, `LOGOUT`;
//! - `imap mix`: connect, `LOGIN`, `SELECT INBOX`, `LOGOUT` (the
//!   login-per-loop IMAP mix);
//! - `pop3 session`: connect, `USER`, `PASS`, `STAT`, `QUIT`, client `i`
//!   on its own account `login<i>@<domain>` (a POP3 maildrop is locked by
//!   its session; a login refused with `[IN-USE]` because the previous
//!   session of that client has not quite ended is retried and counted
//!   apart).
//!
//! The figures: sessions per second and the latency of the password
//! command (`LOGIN`, `PASS`: from writing it to its answer).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::imap::{quote, Client};
use crate::stats::{ms, rate, Latencies};
use crate::wire::{err, Error, Result};

/// What to load, against one server.
#[derive(Debug, Clone)]
pub struct Load {
    /// Table label and `bench:` key prefix.
    pub name: String,
    pub imap: SocketAddr,
    pub pop3: SocketAddr,
    /// The IMAP account (many sessions at once).
    pub user: String,
    pub password: String,
    /// The POP3 accounts, one per client (same password).
    pub pop3_users: Vec<String>,
    pub clients: usize,
    pub duration: Duration,
    pub timeout: Duration,
}

/// The POP3 accounts for `clients` clients in `domain`.
pub fn pop3_users(domain: &str, clients: usize) -> Vec<String> {
    (0..clients).map(|i| format!("login{i}@{domain}")).collect()
}

/// One phase's figures.
#[derive(Debug, Clone)]
pub struct Phase {
    pub label: &'static str,
    /// Key stem: `login_<stem>_sessions_per_s`, ...
    pub key: &'static str,
    pub sessions: u64,
    pub elapsed: Duration,
    /// Password command latencies.
    pub login: Vec<Duration>,
    /// POP3 logins refused with `[IN-USE]` and retried.
    pub in_use: u64,
}

impl Phase {
    pub fn per_second(&self) -> f64 {
        rate(self.sessions as f64, self.elapsed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ImapLogin,
    ImapMix,
    Pop3,
}

/// Runs the three phases against one server.
pub async fn run(load: &Load) -> Result<Vec<Phase>> {
    let mut out = Vec::new();
    for (kind, label, key) in [
        (Kind::ImapLogin, "imap login+logout", "imap"),
        (Kind::ImapMix, "imap login mix", "imap_mix"),
        (Kind::Pop3, "pop3 session", "pop3"),
    ] {
        eprintln!(
            "mailgate-bench: [{}] {label}: {} clients for {:.0} s",
            load.name,
            load.clients,
            load.duration.as_secs_f64()
        );
        out.push(phase(load, kind, label, key).await?);
    }
    Ok(out)
}

async fn phase(load: &Load, kind: Kind, label: &'static str, key: &'static str) -> Result<Phase> {
    // One untimed round each: caches filled, connections warm.
    for i in 0..load.clients {
        session(load, kind, i).await?;
    }
    let start = Instant::now();
    let deadline = start + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..load.clients {
        let load = load.clone();
        tasks.spawn(async move {
            let (mut sessions, mut logins, mut in_use) = (0u64, Vec::new(), 0u64);
            while Instant::now() < deadline {
                let (login, retried) = session(&load, kind, i).await?;
                sessions += 1;
                logins.push(login);
                in_use += retried;
            }
            Ok::<_, Error>((sessions, logins, in_use))
        });
    }
    let mut phase = Phase {
        label,
        key,
        sessions: 0,
        elapsed: Duration::ZERO,
        login: Vec::new(),
        in_use: 0,
    };
    while let Some(joined) = tasks.join_next().await {
        let (sessions, logins, in_use) =
            joined.map_err(|e| Error(format!("a login client failed: {e}")))??;
        phase.sessions += sessions;
        phase.login.extend(logins);
        phase.in_use += in_use;
    }
    phase.elapsed = start.elapsed();
    Ok(phase)
}

/// One whole session; returns the password command's latency and how many
/// times a POP3 login found the maildrop still locked.
async fn session(load: &Load, kind: Kind, client: usize) -> Result<(Duration, u64)> {
    match kind {
        Kind::ImapLogin | Kind::ImapMix => {
            let stream = TcpStream::connect(load.imap).await?;
            let _ = stream.set_nodelay(true);
            let mut c = Client::start(stream, load.timeout, 4096).await?;
            let command = format!("LOGIN {} {}", quote(&load.user), quote(&load.password));
            let t = Instant::now();
            c.command(&command, false).await?;
            let login = t.elapsed();
            if kind == Kind::ImapMix {
                c.command("SELECT INBOX", false).await?;
            }
            c.command("LOGOUT", false).await?;
            Ok((login, 0))
        }
        Kind::Pop3 => {
            let user = &load.pop3_users[client % load.pop3_users.len()];
            let mut retried = 0;
            loop {
                let stream = TcpStream::connect(load.pop3).await?;
                let _ = stream.set_nodelay(true);
                let (mut s, _) = crate::pop3::Session::start(stream, load.timeout).await?;
                let t = Instant::now();
                if s.login(user, &load.password).await? {
                    let login = t.elapsed();
                    s.stat().await?;
                    s.quit().await;
                    return Ok((login, retried));
                }
                retried += 1;
                if retried > 100 {
                    return err(format!("[{}] {user}: maildrop locked 100 times", load.name));
                }
                s.quit().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Prints the table and the `bench:` keys of every server, then, for two,
/// the ratios.
pub fn print(results: &[(String, Vec<Phase>)], clients: usize, duration: Duration) {
    println!();
    println!(
        "repeated logins: {clients} clients per phase, {:.0} s each",
        duration.as_secs_f64()
    );
    println!(
        "{:<15} {:<20} {:>9} {:>11} {:>12} {:>12} {:>8}",
        "server", "phase", "sessions", "sessions/s", "login p50 ms", "login p99 ms", "in-use"
    );
    for (name, phases) in results {
        for p in phases {
            let l = Latencies::new(p.login.clone());
            println!(
                "{:<15} {:<20} {:>9} {:>11.1} {:>12.2} {:>12.2} {:>8}",
                name,
                p.label,
                p.sessions,
                p.per_second(),
                ms(l.percentile(50.0)),
                ms(l.percentile(99.0)),
                p.in_use
            );
        }
    }
    println!();
    println!("bench: login_clients={clients}");
    println!("bench: login_secs={:.0}", duration.as_secs_f64());
    for (name, phases) in results {
        let prefix = if name == "mailgate" {
            String::new()
        } else {
            format!("{name}_")
        };
        for p in phases {
            let l = Latencies::new(p.login.clone());
            println!(
                "bench: {prefix}login_{}_sessions_per_s={:.1}",
                p.key,
                p.per_second()
            );
            println!(
                "bench: {prefix}login_{}_p50_ms={:.3}",
                p.key,
                ms(l.percentile(50.0))
            );
            println!(
                "bench: {prefix}login_{}_p99_ms={:.3}",
                p.key,
                ms(l.percentile(99.0))
            );
        }
    }
    if let [(m, mine), (peer, theirs)] = results {
        println!();
        println!("{m} / {peer} (target: sessions/s ratio >= 1.5)");
        for (a, b) in mine.iter().zip(theirs) {
            let (la, lb) = (
                Latencies::new(a.login.clone()),
                Latencies::new(b.login.clone()),
            );
            let ratio = a.per_second() / b.per_second().max(f64::MIN_POSITIVE);
            println!(
                "{:<20} sessions/s {:>9.1} / {:>9.1} = {:>5.2} (higher is better); login p50 {:.2} / {:.2} ms",
                a.label,
                a.per_second(),
                b.per_second(),
                ratio,
                ms(la.percentile(50.0)),
                ms(lb.percentile(50.0)),
            );
            println!("bench: login_{}_ratio={ratio:.3}", a.key);
        }
    }
}
