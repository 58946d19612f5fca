//! A private PostgreSQL cluster for `--store postgres`: `initdb` in a temp
//! dir (under `$TMPDIR`, so on the same disk as the SQLite runs' stores),
//! `pg_ctl start` on a free port of 127.0.0.1 with its Unix socket in that
//! directory, trust authentication for the user `bench`, and the server's
//! **durability defaults** (`fsync = on`, `synchronous_commit = on`): a
//! commit returns once its WAL is flushed, so mailgate's `250` on
//! PostgreSQL makes the same promise as on SQLite. Unlike the tests'
//! cluster (`tests/pg_server.py`, `fsync = off`).
//!
//! `initdb` refuses to run as root: then the directory belongs to the
//! `postgres` system user and `initdb`/`pg_ctl` run as that user
//! (`runuser`). Binaries: the newest `/usr/lib/postgresql/N/bin`, else
//! `PATH`. Dropped: `pg_ctl stop -m fast`, then the directory goes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::wire::{err, Error, Result};

/// The cluster's superuser (trust authentication, loopback only).
const USER: &str = "bench";

/// A running private cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    databases: u32,
}

impl Cluster {
    /// Creates and starts a cluster; fails with its log if it cannot.
    pub fn start() -> Result<Cluster> {
        let bin = bin_dir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("mailgate-bench-pg-")
            .tempdir()?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))?;
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            as_postgres,
            databases: 0,
        };
        let data = cluster.data();
        run(cluster.command("initdb").arg("-D").arg(&data).args([
            "-U",
            USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]))?;
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
                cluster.port,
                cluster.dir.path().display()
            );
            let log = cluster.dir.path().join("server.log");
            let started = cluster
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .stdin(Stdio::null())
                .output()?;
            if started.status.success() {
                return Ok(cluster);
            }
            last = std::fs::read_to_string(&log).unwrap_or_default();
        }
        err(format!("PostgreSQL did not start:\n{last}"))
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

    /// A new empty database; its URL.
    pub fn create_database(&mut self) -> Result<String> {
        self.databases += 1;
        let name = format!("bench{}", self.databases);
        run(Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name))?;
        Ok(format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port))
    }

    /// The postmaster's process id (the server's CPU is its tree's).
    pub fn pid(&self) -> Result<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid"))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| Error("cannot read postmaster.pid".into()))
    }

    /// `SHOW name` through `psql`, for the report.
    pub fn setting(&self, name: &str) -> String {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", USER, "-d", "postgres", "-c"])
            .arg(format!("SHOW {name}"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdin(Stdio::null())
            .output();
    }
}

/// Runs a command to its end; its output in the error if it failed.
fn run(command: &mut Command) -> Result<()> {
    let out = command.stdin(Stdio::null()).output().map_err(|e| {
        Error(format!(
            "cannot run {:?}: {e}",
            command.get_program().to_string_lossy()
        ))
    })?;
    if !out.status.success() {
        return err(format!(
            "{:?} failed ({}): {}{}",
            command.get_program().to_string_lossy(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn bin_dir() -> Result<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|p| p.join("initdb").is_file())
        .ok_or_else(|| {
            Error("PostgreSQL is not installed (no initdb): apt-get install postgresql".into())
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
