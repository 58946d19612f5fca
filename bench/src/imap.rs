//! The IMAP benchmark (`--imap`): SEARCH and FETCH over a large mailbox,
//! and the server's memory per idle IDLE session.
//!
//! The mailbox is filled over SMTP by the ordinary SMTP load (the fast
//! path: pipelined, 50 connections), then one IMAP session marks some
//! messages `\Seen` and `\Flagged` and times a few representative
//! commands, each run several times (the median is reported). Then many
//! sessions log in, select a mailbox and enter IDLE, and the memory of the
//! server's process tree (PSS and RSS, see [`crate::procmem`]) is read
//! before and after. The same code runs against a peer (Dovecot).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::procmem::{self, Mem};
use crate::wire::{err, trim_eol, Conn, Error, Result};

/// Read buffer of each idle connection of the load generator: they only
/// ever read short lines.
const IDLE_CLIENT_BUFFER: usize = 1024;

/// Logins in flight at once while the idle sessions are opened: each
/// costs an Argon2id verification (19 MiB, on the server's blocking
/// pool), so a handful keeps both cores busy without making the server
/// hold dozens of Argon2 buffers while its memory is measured.
const LOGINS_IN_FLIGHT: usize = 4;

/// Idle sessions opened before the "before" reading of the idle phase is
/// taken, so that one-time costs of the first logins (the blocking pool's
/// threads and their malloc arenas, Argon2's buffers) are not counted
/// per session.
const WARM_SESSIONS: usize = 100;

/// The answer to one command.
#[derive(Debug, Default)]
pub struct Response {
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    /// The rest of the tagged line.
    pub text: String,
    /// Untagged responses (`*` lines, literals included).
    pub untagged: u64,
    /// Bytes received, tagged line included.
    pub bytes: u64,
    /// The untagged responses, if asked for (literals inline).
    pub lines: Vec<Vec<u8>>,
}

impl Response {
    /// The numbers of all `* SEARCH` responses.
    pub fn search_hits(&self) -> u64 {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(b"* SEARCH"))
            .map(|rest| {
                rest.split(|&b| b == b' ' || b == b'\r' || b == b'\n')
                    .filter(|w| !w.is_empty() && w.iter().all(u8::is_ascii_digit))
                    .count() as u64
            })
            .sum()
    }

    /// The number of an untagged `* N EXISTS`, if one came.
    pub fn exists(&self) -> Option<u64> {
        self.lines.iter().find_map(|l| {
            let rest = trim_eol(l);
            let n = rest.strip_prefix("* ")?.strip_suffix(" EXISTS")?;
            n.parse().ok()
        })
    }
}

/// A minimal IMAP client: tagged commands, responses with literals.
pub struct Client<S> {
    conn: Conn<S>,
    next_tag: u32,
    line: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads the greeting (`* OK`).
    pub async fn start(stream: S, timeout: Duration, buffer: usize) -> Result<Self> {
        let mut client = Client {
            conn: Conn::with_capacity(stream, timeout, buffer),
            next_tag: 0,
            line: Vec::new(),
        };
        let greeting = client.read_response_line().await?;
        if !greeting.starts_with(b"* OK") {
            return err(format!("IMAP greeting: {}", trim_eol(&greeting)));
        }
        Ok(client)
    }

    /// Sends a command; returns its tag.
    pub async fn send(&mut self, command: &str) -> Result<String> {
        self.next_tag += 1;
        let tag = format!("b{}", self.next_tag);
        self.conn
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        Ok(tag)
    }

    /// Sends a command and reads everything up to its tagged answer;
    /// anything but `OK` is an error.
    pub async fn command(&mut self, command: &str, keep: bool) -> Result<Response> {
        let tag = self.send(command).await?;
        let r = self.until_tagged(&tag, keep).await?;
        if r.status != "OK" {
            return err(format!("IMAP {command:?}: {} {}", r.status, r.text));
        }
        Ok(r)
    }

    /// Reads responses up to the tagged one for `tag`.
    pub async fn until_tagged(&mut self, tag: &str, keep: bool) -> Result<Response> {
        let mut r = Response::default();
        loop {
            let line = self.read_response_line().await?;
            r.bytes += line.len() as u64;
            if let Some(rest) = line
                .strip_prefix(tag.as_bytes())
                .and_then(|l| l.strip_prefix(b" "))
            {
                let rest = trim_eol(rest);
                let (status, text) = rest.split_once(' ').unwrap_or((&rest, ""));
                r.status = status.to_string();
                r.text = text.to_string();
                return Ok(r);
            }
            if line.starts_with(b"* ") {
                r.untagged += 1;
                if keep {
                    r.lines.push(line);
                }
            }
        }
    }

    /// Reads one response line, with the literals it announces (`{n}`
    /// at the end of a line: n bytes, then the line goes on).
    pub async fn read_response_line(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            self.line.clear();
            self.conn.read_line(&mut self.line).await?;
            out.extend_from_slice(&self.line);
            match literal_size(&self.line) {
                Some(n) => self.conn.read_exact(&mut out, n).await?,
                None => return Ok(out),
            }
        }
    }
}

/// The size of the literal announced at the end of `line` (`{n}\r\n`).
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inner[open + 1..]).ok()?.parse().ok()
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error(format!("cannot read /proc/{pid}/status: {e}")))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => err(format!("no VmRSS/VmHWM in /proc/{pid}/status")),
    }
}

/// The soft limit on open files of this process (the server it starts
/// inherits it).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    soft.parse().ok()
}

/// What the IMAP phase is given.
pub struct Load {
    /// The server's name in the output (`mailgate` or the peer's); the
    /// prefix of a peer's `bench:` keys.
    pub name: String,
    /// The IMAP listener.
    pub address: SocketAddr,
    /// Login.
    pub user: String,
    /// Password.
    pub password: String,
    /// Messages in INBOX (filled before).
    pub messages: u64,
    /// Times each timed command runs (the median is reported).
    pub repeat: usize,
    /// Idle sessions to open.
    pub idle_sessions: usize,
    /// The mailbox the idle sessions select.
    pub idle_mailbox: String,
    /// Per read or write.
    pub timeout: Duration,
    /// The server's pid, for its memory (with its descendants').
    pub pid: u32,
}

/// One timed command.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Short name (the `bench:` key is `imap_<name>_ms`).
    pub name: &'static str,
    /// The command.
    pub command: String,
    /// Median time.
    pub median: Duration,
    /// Untagged responses (FETCH) or hits (SEARCH) of the last run.
    pub count: u64,
    /// Bytes received in the last run.
    pub bytes: u64,
}

/// The figures of the IMAP phase.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Timed commands, in order.
    pub timed: Vec<Timed>,
    /// The main server process's memory (KiB) after the FETCH commands:
    /// VmRSS, VmHWM.
    pub after_fetch_kib: (u64, u64),
    /// The whole process tree after the FETCH commands.
    pub after_fetch: Mem,
    /// Idle sessions actually opened.
    pub idle_sessions: usize,
    /// The server's process tree before any idle session.
    pub idle_start: Mem,
    /// After the first [`WARM_SESSIONS`].
    pub idle_warm: Mem,
    /// With every idle session open.
    pub idle_end: Mem,
    /// How long opening them took.
    pub idle_setup: Duration,
    /// An APPEND to the idle mailbox reached an idling session.
    pub idle_verified: bool,
}

impl Outcome {
    /// Server memory per idle session, in bytes, (PSS, RSS), from the warm
    /// reading to the end (one-time costs of the first logins excluded);
    /// with no more than [`WARM_SESSIONS`] sessions (the large-mailbox
    /// rows of `peers.sh`: 10), over all of them.
    pub fn bytes_per_idle_session(&self) -> (f64, f64) {
        let n = self
            .idle_sessions
            .saturating_sub(WARM_SESSIONS.min(self.idle_sessions));
        if n == 0 {
            return self.bytes_per_idle_session_all();
        }
        procmem::per_session(self.idle_warm, self.idle_end, n)
    }

    /// Including the first sessions: (end - start) / all.
    pub fn bytes_per_idle_session_all(&self) -> (f64, f64) {
        procmem::per_session(self.idle_start, self.idle_end, self.idle_sessions)
    }
}

/// Where and as whom to log in.
#[derive(Clone)]
struct Login {
    address: SocketAddr,
    user: String,
    password: String,
    timeout: Duration,
}

impl Login {
    fn of(load: &Load) -> Login {
        Login {
            address: load.address,
            user: load.user.clone(),
            password: load.password.clone(),
            timeout: load.timeout,
        }
    }

    async fn open(&self, buffer: usize) -> Result<Client<TcpStream>> {
        let stream = TcpStream::connect(self.address).await?;
        let _ = stream.set_nodelay(true);
        let mut c = Client::start(stream, self.timeout, buffer).await?;
        let command = format!("LOGIN {} {}", quote(&self.user), quote(&self.password));
        c.command(&command, false).await?;
        Ok(c)
    }
}

/// The number of messages in INBOX (`STATUS INBOX (MESSAGES)`), in a
/// session of its own.
pub async fn inbox_count(load: &Load) -> Result<u64> {
    let mut c = Login::of(load).open(IDLE_CLIENT_BUFFER).await?;
    let r = c.command("STATUS INBOX (MESSAGES)", true).await?;
    let _ = c.command("LOGOUT", false).await;
    r.lines
        .iter()
        .find_map(|l| status_messages(&trim_eol(l)))
        .ok_or_else(|| Error("STATUS INBOX: no MESSAGES in the answer".into()))
}

/// `n` from `* STATUS mailbox (... MESSAGES n ...)`.
fn status_messages(line: &str) -> Option<u64> {
    let items = line.strip_prefix("* STATUS ")?;
    let inner = &items[items.rfind('(')? + 1..];
    let mut words = inner.trim_end_matches(')').split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("MESSAGES") {
            return words.next()?.parse().ok();
        }
    }
    None
}

pub(crate) fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs `command` `repeat` times; the median time and the last answer.
async fn timed(
    c: &mut Client<TcpStream>,
    name: &'static str,
    command: String,
    repeat: usize,
    search: bool,
) -> Result<Timed> {
    let mut times = Vec::new();
    let mut last = Response::default();
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        last = c.command(&command, search).await?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let count = if search {
        last.search_hits()
    } else {
        last.untagged
    };
    eprintln!(
        "mailgate-bench: imap {name}: {:.1} ms ({count} {})",
        times[times.len() / 2].as_secs_f64() * 1e3,
        if search { "hits" } else { "responses" }
    );
    Ok(Timed {
        name,
        command,
        median: times[times.len() / 2],
        count,
        bytes: last.bytes,
    })
}

/// The IMAP phase against a mailbox already holding `load.messages`
/// messages of the benchmark (sequence numbers 0..N in their Subject).
pub async fn run(load: &Load) -> Result<Outcome> {
    let mut out = Outcome::default();
    let mut c = Login::of(load).open(64 * 1024).await?;
    let sel = c.command("SELECT INBOX", true).await?;
    let n = load.messages;
    match sel.exists() {
        Some(e) if e == n => {}
        other => return err(format!("INBOX has {other:?} messages, expected {n}")),
    }
    // Some flags, so that flag searches have something to find: the
    // first half \Seen, the first tenth \Flagged.
    let half = (n / 2).max(1);
    let tenth = (n / 10).max(1);
    out.timed.push(
        timed(
            &mut c,
            "store_seen_half",
            format!("STORE 1:{half} +FLAGS.SILENT (\\Seen)"),
            1,
            false,
        )
        .await?,
    );
    c.command(&format!("STORE 1:{tenth} +FLAGS.SILENT (\\Flagged)"), false)
        .await?;
    let r = load.repeat;
    let probe = n / 2;
    let searches = [
        (
            "search_subject",
            format!("SEARCH SUBJECT \"message {probe:010}\""),
        ),
        ("search_from", "SEARCH FROM \"bench-sender\"".to_string()),
        (
            "search_text_absent",
            "SEARCH TEXT \"no-such-text-anywhere\"".to_string(),
        ),
        ("search_unseen", "SEARCH UNSEEN".to_string()),
        ("search_flagged", "SEARCH FLAGGED".to_string()),
        ("search_since", "SEARCH SINCE 1-Jan-2020".to_string()),
        (
            "search_unseen_since_larger",
            "SEARCH UNSEEN SINCE 1-Jan-2020 LARGER 100".to_string(),
        ),
    ];
    for (name, command) in searches {
        out.timed.push(timed(&mut c, name, command, r, true).await?);
    }
    let fetches = [
        ("fetch_flags", "FETCH 1:* FLAGS"),
        (
            "fetch_envelope_bodystructure",
            "FETCH 1:* (ENVELOPE BODYSTRUCTURE)",
        ),
        ("fetch_body", "FETCH 1:* BODY.PEEK[]"),
    ];
    for (name, command) in fetches {
        let t = timed(&mut c, name, command.to_string(), r, false).await?;
        if t.count != n {
            return err(format!("{command}: {} responses, expected {n}", t.count));
        }
        out.timed.push(t);
    }
    out.after_fetch_kib = memory_kib(load.pid)?;
    out.after_fetch = procmem::tree(load.pid)?;
    idle_phase(load, &mut c, &mut out).await?;
    c.command("LOGOUT", false).await?;
    Ok(out)
}

/// Opens the idle sessions and reads the server's memory.
async fn idle_phase(load: &Load, main: &mut Client<TcpStream>, out: &mut Outcome) -> Result<()> {
    if load.idle_sessions == 0 {
        return Ok(());
    }
    if let Some(limit) = open_files_limit() {
        let needed = load.idle_sessions as u64 + 64;
        if limit < needed {
            return err(format!(
                "{} idle sessions need about {needed} open files, the limit is {limit}: \
                 raise it (`ulimit -n {needed}`) or lower --imap-idle",
                load.idle_sessions
            ));
        }
    }
    // The idle mailbox may have to be made first (mailgate has `Archive`
    // from the start; a peer may not): a refusal (it exists) is fine.
    let tag = main
        .send(&format!("CREATE {}", quote(&load.idle_mailbox)))
        .await?;
    main.until_tagged(&tag, false).await?;
    out.idle_start = procmem::tree(load.pid)?;
    let started = Instant::now();
    let gate = std::sync::Arc::new(Semaphore::new(LOGINS_IN_FLIGHT));
    let mut sessions: Vec<(Client<TcpStream>, String)> = Vec::with_capacity(load.idle_sessions);
    let mut opened = 0;
    for batch_end in [WARM_SESSIONS.min(load.idle_sessions), load.idle_sessions] {
        let mut tasks = JoinSet::new();
        for _ in opened..batch_end {
            let gate = std::sync::Arc::clone(&gate);
            let (login, mailbox) = (Login::of(load), load.idle_mailbox.clone());
            tasks.spawn(async move {
                let permit = gate.acquire_owned().await.expect("never closed");
                let mut c = login.open(IDLE_CLIENT_BUFFER).await?;
                drop(permit);
                c.command(&format!("SELECT {}", quote(&mailbox)), false)
                    .await?;
                let tag = c.send("IDLE").await?;
                let line = c.read_response_line().await?;
                if !line.starts_with(b"+") {
                    return err(format!("IDLE: {}", trim_eol(&line)));
                }
                Ok::<_, Error>((c, tag))
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let session = joined.map_err(|e| Error(format!("idle session task: {e}")))??;
            sessions.push(session);
            if sessions.len().is_multiple_of(1000) {
                eprintln!(
                    "mailgate-bench: [{}] imap idle sessions: {} open",
                    load.name,
                    sessions.len()
                );
            }
        }
        opened = batch_end;
        if opened == WARM_SESSIONS.min(load.idle_sessions) {
            settle().await;
            out.idle_warm = procmem::tree(load.pid)?;
        }
    }
    out.idle_setup = started.elapsed();
    out.idle_sessions = sessions.len();
    settle().await;
    out.idle_end = procmem::tree(load.pid)?;
    // One new message in the idle mailbox must reach an idling session
    // at once (they are idling, not merely connected).
    main.command(
        &format!(
            "APPEND {} {{21+}}\r\nSubject: idle check\r\n",
            quote(&load.idle_mailbox)
        ),
        false,
    )
    .await?;
    // (A few untagged lines may come first, e.g. `* OK Still here`; a
    // server without change notification for this many sessions may only
    // notice the message at its next poll, within the read timeout.)
    if let Some((c, _)) = sessions.last_mut() {
        for _ in 0..5 {
            let line = c.read_response_line().await?;
            if trim_eol(&line).ends_with(" EXISTS") {
                out.idle_verified = true;
                break;
            }
        }
    }
    // Leave politely only through a few; the rest just close (the server
    // sees end of stream, as with a client that goes away).
    for (c, tag) in sessions.iter_mut().take(10) {
        c.conn.write_all(b"DONE\r\n").await?;
        let mut r = c.until_tagged(tag, false).await?;
        if r.status != "OK" {
            r.text.insert_str(0, "DONE: ");
            return err(r.text);
        }
    }
    Ok(())
}

/// Lets the server finish what the last answers started (freeing
/// temporary buffers) before its memory is read.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Prints the figures and `bench:` lines of one server.
pub fn print(load: &Load, o: &Outcome) {
    let name = &load.name;
    println!();
    println!(
        "{name} IMAP: {} messages in INBOX; each command {} times, median",
        load.messages, load.repeat
    );
    println!(
        "{:<30} {:>10} {:>9} {:>10}  command",
        "what", "ms", "count", "MB"
    );
    for t in &o.timed {
        println!(
            "{:<30} {:>10.1} {:>9} {:>10.2}  {}",
            t.name,
            t.median.as_secs_f64() * 1e3,
            t.count,
            t.bytes as f64 / crate::stats::MB,
            t.command
        );
    }
    println!(
        "{name} memory after the FETCHes: main process VmRSS {} KiB, peak (VmHWM) {} KiB; \
         all {} processes: PSS {} KiB, RSS {} KiB",
        o.after_fetch_kib.0,
        o.after_fetch_kib.1,
        o.after_fetch.processes,
        o.after_fetch.pss_kib,
        o.after_fetch.rss_kib
    );
    if o.idle_sessions > 0 {
        let (pss, rss) = o.bytes_per_idle_session();
        let (pss_all, rss_all) = o.bytes_per_idle_session_all();
        println!(
            "{name}: {} idle sessions (LOGIN, SELECT {}, IDLE) opened in {:.1} s; \
             new mail reached an idling session: {}",
            o.idle_sessions,
            load.idle_mailbox,
            o.idle_setup.as_secs_f64(),
            if o.idle_verified { "yes" } else { "NO" }
        );
        for (what, m) in [
            ("before", o.idle_start),
            ("after the first", o.idle_warm),
            ("with all", o.idle_end),
        ] {
            let what = if what == "after the first" {
                format!("{what} {WARM_SESSIONS}")
            } else {
                what.to_string()
            };
            println!(
                "{name}:   {what:<20} {:>6} processes, PSS {:>9} KiB, RSS {:>9} KiB",
                m.processes, m.pss_kib, m.rss_kib
            );
        }
        println!(
            "{name}: per idle session: PSS {pss:.0} bytes, RSS {rss:.0} bytes \
             (counting the first {WARM_SESSIONS}: PSS {pss_all:.0}, RSS {rss_all:.0})"
        );
    }
    println!();
    let mut keys = BTreeMap::new();
    keys.insert("imap_messages".to_string(), load.messages.to_string());
    for t in &o.timed {
        keys.insert(
            format!("imap_{}_ms", t.name),
            format!("{:.2}", t.median.as_secs_f64() * 1e3),
        );
    }
    if let Some(t) = o.timed.iter().find(|t| t.name == "fetch_body") {
        keys.insert(
            "imap_fetch_body_mb_per_s".into(),
            format!(
                "{:.1}",
                crate::stats::rate(t.bytes as f64 / crate::stats::MB, t.median)
            ),
        );
    }
    keys.insert(
        "imap_server_rss_after_fetch_kib".into(),
        o.after_fetch_kib.0.to_string(),
    );
    keys.insert(
        "imap_server_peak_rss_kib".into(),
        o.after_fetch_kib.1.to_string(),
    );
    keys.insert(
        "imap_server_pss_after_fetch_kib".into(),
        o.after_fetch.pss_kib.to_string(),
    );
    if o.idle_sessions > 0 {
        let (pss, rss) = o.bytes_per_idle_session();
        keys.insert("imap_idle_sessions".into(), o.idle_sessions.to_string());
        keys.insert("imap_idle_bytes_per_session".into(), format!("{pss:.0}"));
        keys.insert(
            "imap_idle_rss_bytes_per_session".into(),
            format!("{rss:.0}"),
        );
        keys.insert(
            "imap_idle_pss_before_kib".into(),
            o.idle_start.pss_kib.to_string(),
        );
        keys.insert(
            "imap_idle_pss_after_kib".into(),
            o.idle_end.pss_kib.to_string(),
        );
        keys.insert(
            "imap_idle_rss_before_kib".into(),
            o.idle_start.rss_kib.to_string(),
        );
        keys.insert(
            "imap_idle_rss_after_kib".into(),
            o.idle_end.rss_kib.to_string(),
        );
        keys.insert(
            "imap_idle_processes".into(),
            o.idle_end.processes.to_string(),
        );
        keys.insert("imap_idle_verified".into(), o.idle_verified.to_string());
    }
    // mailgate's keys are unprefixed; a peer's carry its name.
    let prefix = if name == "mailgate" {
        String::new()
    } else {
        format!("{name}_")
    };
    for (k, v) in keys {
        println!("bench: {prefix}{k}={v}");
    }
}

/// The comparison table: each timed command and the memory per idle
/// session, mailgate's figure over the peer's (lower is better for all).
pub fn compare(mailgate: (&Load, &Outcome), peer: (&Load, &Outcome)) {
    let (ml, mo) = mailgate;
    let (pl, po) = peer;
    println!();
    println!(
        "IMAP, mailgate vs {} ({} messages; ratio = mailgate / {}, below 1 means mailgate is faster or smaller)",
        pl.name, ml.messages, pl.name
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8}",
        "what",
        "mailgate",
        pl.name.as_str(),
        "ratio"
    );
    let ratio = |m: f64, p: f64| {
        if p > 0.0 {
            format!("{:.2}", m / p)
        } else {
            "-".into()
        }
    };
    for t in &mo.timed {
        let Some(p) = po.timed.iter().find(|p| p.name == t.name) else {
            continue;
        };
        let (m, p) = (t.median.as_secs_f64() * 1e3, p.median.as_secs_f64() * 1e3);
        println!(
            "{:<40} {:>11.1} ms {:>11.1} ms {:>8}",
            t.command,
            m,
            p,
            ratio(m, p)
        );
    }
    if mo.idle_sessions > 0 && po.idle_sessions > 0 {
        let (m_pss, m_rss) = mo.bytes_per_idle_session();
        let (p_pss, p_rss) = po.bytes_per_idle_session();
        println!(
            "{:<40} {:>8.0} bytes {:>8.0} bytes {:>8}",
            format!(
                "idle IDLE session, PSS ({} / {})",
                mo.idle_sessions, po.idle_sessions
            ),
            m_pss,
            p_pss,
            ratio(m_pss, p_pss)
        );
        println!(
            "{:<40} {:>8.0} bytes {:>8.0} bytes {:>8}",
            "idle IDLE session, RSS (sum)",
            m_rss,
            p_rss,
            ratio(m_rss, p_rss)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn status_message_counts() {
        assert_eq!(
            status_messages("* STATUS INBOX (MESSAGES 10000)"),
            Some(10000)
        );
        assert_eq!(
            status_messages("* STATUS \"a (b)\" (UIDNEXT 5 MESSAGES 3)"),
            Some(3)
        );
        assert_eq!(status_messages("* STATUS INBOX (UIDNEXT 5)"), None);
        assert_eq!(status_messages("* 3 EXISTS"), None);
    }

    #[test]
    fn literal_sizes() {
        assert_eq!(literal_size(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_size(b"* 1 FETCH (FLAGS ())\r\n"), None);
        assert_eq!(literal_size(b"{x}\r\n"), None);
    }

    #[tokio::test]
    async fn reads_literals_and_search_hits() {
        let (client, mut server) = tokio::io::duplex(4096);
        server
            .write_all(
                b"* OK hi\r\n* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n* SEARCH 1 2 3\r\n* 4 EXISTS\r\nb1 OK done\r\n",
            )
            .await
            .unwrap();
        let mut c = Client::start(client, Duration::from_secs(5), 64)
            .await
            .unwrap();
        let r = c.command("X", true).await.unwrap();
        assert_eq!(r.untagged, 3);
        assert_eq!(r.lines[0], b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n");
        assert_eq!(r.search_hits(), 3);
        assert_eq!(r.exists(), Some(4));
        let mut sent = vec![0u8; 6];
        tokio::io::AsyncReadExt::read_exact(&mut server, &mut sent)
            .await
            .unwrap();
        assert_eq!(sent, b"b1 X\r\n");
    }

    #[test]
    fn reads_own_memory() {
        let (rss, hwm) = memory_kib(std::process::id()).unwrap();
        assert!(rss > 0 && hwm >= rss);
        assert!(open_files_limit().is_some());
    }
}
