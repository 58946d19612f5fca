//! Running the real `mailgate` binary: a private copy of it, a config and
//! data directory in a temp dir, one account made through the CLI, and
//! `mailgate serve` under a guard that stops it on every path out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::wire::{err, Error, Result};

/// The account the benchmark creates, sends to and downloads from.
pub const USER: &str = "bench@bench.test";
/// Its password (the server listens on loopback only, in a temp dir).
pub const PASSWORD: &str = "bench-password-1";
/// The benchmark's mail domain.
pub const DOMAIN: &str = "bench.test";

/// `[auth] cache_ttl` for every server the run starts (`--auth-cache-ttl`);
/// unset: the server's default.
pub static AUTH_CACHE_TTL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How long SIGTERM gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `mailgate serve` gets to print `mailgate: ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one admin command (hashing a password included) may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// How a guarded process ended.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether it had to be killed because SIGTERM did not stop it in time.
    pub killed: bool,
    /// From SIGTERM to exit (zero if it had already exited).
    pub took: Duration,
}

/// Owns a child process and makes sure it is gone when dropped, on error
/// and panic paths too: SIGTERM first, SIGKILL after [`STOP_GRACE`].
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> Self {
        ChildGuard { child: Some(child) }
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is only taken by stop()")
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_timeout(&mut self, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it is still running
    /// after [`STOP_GRACE`]. Idempotent; `Ok(None)` once already stopped.
    pub fn stop(&mut self) -> std::io::Result<Option<Stopped>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            return Ok(Some(Stopped {
                status,
                killed: false,
                took: Duration::ZERO,
            }));
        }
        // The process has not been reaped, so its pid cannot have been
        // reused. SIGTERM goes through kill(1): std can only send SIGKILL,
        // and a signal call of our own would need `unsafe` or a new crate.
        let started = Instant::now();
        let termed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let exited = if termed {
            self.wait_timeout(STOP_GRACE)?
        } else {
            None
        };
        let child = self.child.as_mut().expect("still here");
        let stopped = match exited {
            Some(status) => Stopped {
                status,
                killed: false,
                took: started.elapsed(),
            },
            None => {
                child.kill()?;
                Stopped {
                    status: child.wait()?,
                    killed: true,
                    took: started.elapsed(),
                }
            }
        };
        self.child = None;
        Ok(Some(stopped))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            // Last resort: SIGKILL without ceremony.
            eprintln!("mailgate-bench: stopping a child process: {e}");
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The configuration file, as mailgate reads it.
#[derive(Serialize)]
struct Config<'a> {
    hostname: &'a str,
    data_dir: &'a Path,
    domains: [&'a str; 1],
    listen: Listen<'a>,
    limits: Limits,
    /// Passwords without TLS from loopback (POP3 logs in in clear).
    auth: Auth,
    /// SPF/DKIM/DMARC checks off: the benchmark measures acceptance, and
    /// the checks would query the system's resolver for its test domain.
    inbound: Inbound,
    /// `--plugins DIR`: policy plugins (every `*.wasm` in DIR).
    #[serde(skip_serializing_if = "Option::is_none")]
    plugins: Option<Plugins<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plugin: Vec<PluginEntry>,
    /// `--store postgres`: the shared database.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreSection<'a>>,
}

/// `[store]` for PostgreSQL (the backend is still behind `experimental`).
#[derive(Serialize)]
struct StoreSection<'a> {
    backend: &'static str,
    url: &'a str,
    experimental: bool,
}

/// Where and on what one node runs.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// The loopback address its listeners bind (port 0: chosen by the system).
    pub ip: &'a str,
    /// `Some(url)`: the PostgreSQL store at `url` instead of SQLite in the
    /// node's data directory.
    pub store_url: Option<&'a str>,
    /// Whether to create the benchmark account (once per store: a second
    /// node on the same database finds it there).
    pub add_user: bool,
}

impl Default for Node<'_> {
    fn default() -> Self {
        Node {
            ip: "127.0.0.1",
            store_url: None,
            add_user: true,
        }
    }
}

#[derive(Serialize)]
struct Inbound {
    verify: bool,
    /// Off: the benchmark's sender domain (`client.test`) is not in DNS.
    reject_unknown_sender_domain: bool,
}

#[derive(Serialize)]
struct Auth {
    trust_loopback: bool,
    /// High, so that thousands of logins in a row (the IMAP idle phase)
    /// can never be throttled.
    max_failures: u32,
    /// `--auth-cache-ttl`; the server's default when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_ttl: Option<String>,
}

#[derive(Serialize)]
struct Plugins<'a> {
    dir: &'a Path,
}

/// Every plugin of the directory may read its config and log (the
/// example filters import `config`).
#[derive(Serialize)]
struct PluginEntry {
    name: String,
    grants: [&'static str; 2],
    /// From `<stem>.config.toml` beside the component, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<toml::Value>,
}

/// The `[[plugin]]` entries for the components in `dir`; a file
/// `<stem>.config.toml` beside `<stem>.wasm` is that plugin's `config`.
fn plugin_entries(dir: &Path) -> Result<Vec<PluginEntry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("wasm") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                let config_file = dir.join(format!("{stem}.config.toml"));
                let config = match std::fs::read_to_string(&config_file) {
                    Ok(text) => Some(toml::from_str::<toml::Value>(&text).map_err(|e| {
                        std::io::Error::other(format!("{}: {e}", config_file.display()))
                    })?),
                    Err(_) => None,
                };
                out.push(PluginEntry {
                    name: stem.to_string(),
                    grants: ["config", "log"],
                    config,
                });
            }
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct Listen<'a> {
    smtp: &'a str,
    pop3: &'a str,
    imap: &'a str,
}

#[derive(Serialize)]
struct Limits {
    max_recipients: u32,
    max_message_size: u64,
    /// Every benchmark client comes from 127.0.0.1 (thousands of idle
    /// IMAP sessions in the memory phase): the per-address cap is lifted
    /// to the server-wide one.
    max_connections_per_ip: usize,
}

/// A running `mailgate serve` in its own temp dir.
pub struct Mailgate {
    // Field order matters: fields drop in declaration order, and the
    // server must be stopped before its data directory is removed.
    guard: ChildGuard,
    dir: tempfile::TempDir,
    /// The SMTP listener.
    pub smtp: SocketAddr,
    /// The POP3 listener.
    pub pop3: SocketAddr,
    /// The IMAP listener (plain text; loopback may log in without TLS).
    pub imap: SocketAddr,
}

impl Mailgate {
    /// Starts mailgate from `binary` and creates the benchmark account.
    /// `max_message_size` must allow the benchmark's messages.
    pub fn start(binary: &Path, max_message_size: u64, plugins: Option<&Path>) -> Result<Self> {
        Self::start_with_env(binary, max_message_size, plugins, &[])
    }

    /// [`Mailgate::start`] with extra environment variables for `serve`.
    pub fn start_with_env(
        binary: &Path,
        max_message_size: u64,
        plugins: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_node(binary, max_message_size, plugins, env, Node::default())
    }

    /// [`Mailgate::start_with_env`] on the address and store of `node`.
    pub fn start_node(
        binary: &Path,
        max_message_size: u64,
        plugins: Option<&Path>,
        env: &[(&str, &str)],
        node: Node<'_>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("mailgate-bench-")
            .tempdir()?;
        // A private copy, so that a `cargo build` by someone else sharing
        // target/ cannot replace the binary during the run.
        let bin = dir.path().join("mailgate");
        std::fs::copy(binary, &bin)
            .map_err(|e| Error(format!("cannot copy {}: {e}", binary.display())))?;
        let data_dir = dir.path().join("data");
        let config_path = dir.path().join("mailgate.toml");
        let any_port = format!("{}:0", node.ip);
        let config = Config {
            hostname: DOMAIN,
            data_dir: &data_dir,
            domains: [DOMAIN],
            listen: Listen {
                smtp: &any_port,
                pop3: &any_port,
                imap: &any_port,
            },
            limits: Limits {
                max_recipients: 100,
                max_message_size,
                max_connections_per_ip: 10_000,
            },
            auth: Auth {
                trust_loopback: true,
                max_failures: 1_000_000,
                cache_ttl: AUTH_CACHE_TTL.get().cloned(),
            },
            inbound: Inbound {
                verify: false,
                reject_unknown_sender_domain: false,
            },
            plugins: plugins.map(|dir| Plugins { dir }),
            plugin: plugins.map(plugin_entries).transpose()?.unwrap_or_default(),
            store: node.store_url.map(|url| StoreSection {
                backend: "postgres",
                url,
                experimental: true,
            }),
        };
        let text =
            toml::to_string(&config).map_err(|e| Error(format!("cannot write the config: {e}")))?;
        std::fs::write(&config_path, text)?;

        if node.add_user {
            add_user(&bin, &config_path, USER, PASSWORD)?;
        }

        let stderr_path = dir.path().join("serve.stderr");
        let child = Command::new(&bin)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .map_err(|e| Error(format!("cannot start {}: {e}", bin.display())))?;
        let mut guard = ChildGuard::new(child);
        let stdout = guard.child().stdout.take().expect("piped");
        let (smtp, pop3, imap) = wait_ready(stdout).map_err(|e| {
            let status = guard.stop().ok().flatten().map(|s| s.status.to_string());
            Error(format!(
                "mailgate serve did not start ({e}); exit: {}; its stderr ends:\n{}",
                status.unwrap_or_else(|| "?".into()),
                tail(&stderr_path, 20)
            ))
        })?;
        Ok(Mailgate {
            guard,
            dir,
            smtp,
            pop3,
            imap,
        })
    }

    /// Bytes under the data directory (the store on disk).
    pub fn store_bytes(&self) -> u64 {
        dir_size(&self.dir.path().join("data"))
    }

    /// The server's process id (for /proc/PID/status), while it runs.
    pub fn pid(&mut self) -> Option<u32> {
        let child = self.guard.child.as_mut()?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s).
    pub fn stop(&mut self) -> Result<Option<Stopped>> {
        Ok(self.guard.stop()?)
    }

    /// Creates more accounts (with the CLI, while the server runs), all
    /// with [`PASSWORD`].
    pub fn add_users(&self, users: &[String]) -> Result<()> {
        let (bin, config) = (
            self.dir.path().join("mailgate"),
            self.dir.path().join("mailgate.toml"),
        );
        for user in users {
            add_user(&bin, &config, user, PASSWORD)?;
        }
        Ok(())
    }

    /// The end of the server's log, for error reports.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.path().join("serve.stderr"), lines)
    }
}

/// `mailgate user add USER --password-stdin`, with a deadline.
fn add_user(bin: &Path, config: &Path, user: &str, password: &str) -> Result<()> {
    let mut child = Command::new(bin)
        .args(["user", "add", user, "--password-stdin", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error(format!("cannot run {}: {e}", bin.display())))?;
    let mut stdin = child.stdin.take().expect("piped");
    let (mut stdout, mut stderr) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let mut guard = ChildGuard::new(child);
    stdin.write_all(format!("{password}\n").as_bytes())?;
    drop(stdin);
    let Some(status) = guard.wait_timeout(CLI_TIMEOUT)? else {
        return err(format!(
            "`mailgate user add` did not finish within {CLI_TIMEOUT:?}"
        ));
    };
    // The output is a line or two, so it fit in the pipes while we waited.
    let mut output = String::new();
    let _ = stdout.read_to_string(&mut output);
    let _ = stderr.read_to_string(&mut output);
    if !status.success() {
        return err(format!(
            "`mailgate user add {user}` failed ({status}): {}",
            output.trim()
        ));
    }
    Ok(())
}

/// Reads `mailgate: listening PROTO on ADDR` lines up to `mailgate: ready`.
fn wait_ready(stdout: std::process::ChildStdout) -> Result<(SocketAddr, SocketAddr, SocketAddr)> {
    let (tx, rx) = mpsc::channel();
    // A thread, because std offers no read with a timeout on a pipe. It
    // keeps reading after `ready` so the server can never block on a full
    // stdout pipe, and ends when the server closes it.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let (mut smtp, mut pop3, mut imap) = (None, None, None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return err(format!("no `mailgate: ready` within {START_TIMEOUT:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return err("it exited before `mailgate: ready`")
            }
        };
        match parse_stdout_line(&line) {
            Some(Announcement::Listening("smtp", addr)) => smtp = Some(addr),
            Some(Announcement::Listening("pop3", addr)) => pop3 = Some(addr),
            Some(Announcement::Listening("imap", addr)) => imap = Some(addr),
            Some(Announcement::Listening(..)) | None => {}
            Some(Announcement::Ready) => break,
        }
    }
    match (smtp, pop3, imap) {
        (Some(s), Some(p), Some(i)) => Ok((s, p, i)),
        _ => err("`mailgate: ready` came without an smtp, a pop3 and an imap listener"),
    }
}

/// A line that `mailgate serve` prints on stdout.
#[derive(Debug, PartialEq, Eq)]
enum Announcement<'a> {
    Listening(&'a str, SocketAddr),
    Ready,
}

fn parse_stdout_line(line: &str) -> Option<Announcement<'_>> {
    let rest = line.trim_end().strip_prefix("mailgate: ")?;
    if rest == "ready" {
        return Some(Announcement::Ready);
    }
    let (protocol, address) = rest.strip_prefix("listening ")?.split_once(" on ")?;
    Some(Announcement::Listening(protocol, address.parse().ok()?))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `--bin` as given if it exists; a relative path that does not exist
/// from the current directory is tried from the workspace root, so the
/// default works from any directory inside the workspace.
pub fn resolve_binary(bin: &Path) -> PathBuf {
    if bin.is_relative() && !bin.exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let candidate = root.join(bin);
        if candidate.exists() {
            return candidate;
        }
    }
    bin.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_announcements() {
        assert_eq!(
            parse_stdout_line("mailgate: listening smtp on 127.0.0.1:40123"),
            Some(Announcement::Listening(
                "smtp",
                "127.0.0.1:40123".parse().unwrap()
            ))
        );
        assert_eq!(
            parse_stdout_line("mailgate: listening pop3 on [::1]:110\n"),
            Some(Announcement::Listening(
                "pop3",
                "[::1]:110".parse().unwrap()
            ))
        );
        assert_eq!(
            parse_stdout_line("mailgate: ready"),
            Some(Announcement::Ready)
        );
        assert_eq!(
            parse_stdout_line("mailgate: listening smtp on nowhere"),
            None
        );
        assert_eq!(parse_stdout_line("something else"), None);
    }

    #[test]
    fn guard_terminates_a_child_on_drop() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let started = Instant::now();
        drop(ChildGuard::new(child));
        assert!(started.elapsed() < STOP_GRACE);
        // The pid is reaped: /proc has no entry for it any more.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn guard_kills_a_child_that_ignores_sigterm() {
        // Only run the slow path on request: it takes the full grace period.
        if std::env::var_os("BENCH_SLOW_TESTS").is_none() {
            return;
        }
        // `exec` keeps the ignored SIGTERM and leaves no orphaned `sleep`.
        let child = Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 60"])
            .spawn()
            .unwrap();
        // Give the shell time to set the trap before the signal arrives.
        std::thread::sleep(Duration::from_millis(300));
        let stopped = ChildGuard::new(child).stop().unwrap().unwrap();
        assert!(stopped.killed);
    }

    #[test]
    fn config_is_valid_toml_with_the_expected_keys() {
        let config = Config {
            hostname: DOMAIN,
            data_dir: Path::new("/tmp/x \"y\"/data"),
            domains: [DOMAIN],
            listen: Listen {
                smtp: "127.0.0.1:0",
                pop3: "127.0.0.1:0",
                imap: "127.0.0.1:0",
            },
            limits: Limits {
                max_recipients: 100,
                max_message_size: 1000,
                max_connections_per_ip: 10_000,
            },
            auth: Auth {
                trust_loopback: true,
                max_failures: 1_000_000,
                cache_ttl: Some("0".into()),
            },
            inbound: Inbound {
                verify: false,
                reject_unknown_sender_domain: false,
            },
            plugins: None,
            plugin: Vec::new(),
            store: Some(StoreSection {
                backend: "postgres",
                url: "postgres://bench@127.0.0.1:5432/bench1",
                experimental: true,
            }),
        };
        let text = toml::to_string(&config).unwrap();
        let back: toml::Table = text.parse().unwrap();
        assert_eq!(back["data_dir"].as_str(), Some("/tmp/x \"y\"/data"));
        assert_eq!(back["listen"]["smtp"].as_str(), Some("127.0.0.1:0"));
        assert_eq!(back["limits"]["max_recipients"].as_integer(), Some(100));
        assert_eq!(back["auth"]["cache_ttl"].as_str(), Some("0"));
        assert_eq!(back["store"]["backend"].as_str(), Some("postgres"));
        assert_eq!(back["store"]["experimental"].as_bool(), Some(true));
    }
}
