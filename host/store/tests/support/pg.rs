//! A private PostgreSQL server for the tests of the PostgreSQL store.
//!
//! [`PgServer::start`] runs `initdb` in a new temporary directory and
//! starts the server with `pg_ctl` on a free loopback port, listening on
//! 127.0.0.1 only and with its Unix socket in that directory; dropping
//! the [`PgServer`] stops it (`pg_ctl stop -m immediate`) and removes the
//! directory. The binaries are found on `PATH`, else in
//! `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql` package).
//!
//! `initdb` refuses to run as root: when the tests run as root, the
//! directory is given to the `postgres` system user and both commands
//! run as that user (`runuser -u postgres`). The cluster runs with
//! `fsync=off` (a test's data need not survive a power cut). The
//! superuser `mailgate` has the password [`PASSWORD`], required over TCP
//! (SCRAM-SHA-256), as a production server would; [`PgServer::url`]
//! carries it, [`PgServer::url_without_password`] does not.
//!
//! Use it from a test file with `mod support;` (`support/mod.rs` declares
//! this module).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser the tests connect as.
pub const USER: &str = "mailgate";
/// Its password.
pub const PASSWORD: &str = "test-secret";

/// A running private PostgreSQL server; stopped on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PgServer {
    /// Creates and starts a new cluster. Panics (failing the test) with
    /// the server's log if it cannot.
    pub fn start() -> PgServer {
        let bin = find_bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("mailgate-pg-")
            .tempdir()
            .expect("temporary directory");
        if as_postgres {
            run_checked(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        server.initdb();
        // A free port can be taken by someone else between our probe and
        // the server's bind: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.pg_ctl_start() {
                Ok(()) => return server,
                Err(log) => last = log,
            }
        }
        panic!("PostgreSQL did not start:\n{last}");
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on this server, with the password.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of database `db` without the password.
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let client = self.connect("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("CREATE DATABASE");
        self.url(name)
    }

    /// A plain client on database `db` (its connection task spawned).
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn initdb(&self) {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("write the password file");
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        if !out.status.success() {
            panic!("initdb failed:\n{}", output_text(&out));
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                output_text(&out),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn find_bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                // Debian's /usr/bin wrappers need a cluster config; the
                // real binaries are where the wrapper points, so prefer
                // a versioned directory when there is one.
                if let Some(v) = newest_versioned() {
                    return v;
                }
                return dir;
            }
        }
    }
    newest_versioned().expect("PostgreSQL (initdb, pg_ctl) is not installed")
}

fn newest_versioned() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run_checked(c: &mut Command) {
    let out = c.output().expect("run a command");
    assert!(out.status.success(), "{:?}: {}", c, output_text(&out));
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether `path` exists (for tests that look at the cluster's files).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
