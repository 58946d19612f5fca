"""A private PostgreSQL server for the integration suite on the PostgreSQL store.

The same steps as the Rust tests' `host/store/tests/support/pg.rs`: `initdb`
in a temporary directory (as the `postgres` system user when the tests run as
root, since initdb refuses root), then `pg_ctl start` on a free port of
127.0.0.1 with its Unix socket in that directory, trust authentication for
the superuser `mailgate`, and `fsync=off` (the tests crash mailgate, never
PostgreSQL).  Stopped by `stop()` (the conftest does it at the end of the
session) and, failing that, at interpreter exit.

With `ssl=(cert, key)` the server also offers TLS (`ssl = on` with that
certificate and key, copied into its directory); with `ssl_only=True` as well,
its pg_hba.conf accepts TCP connections over TLS only (`hostssl`).

Databases are made with `psql` (`CREATE DATABASE`, optionally from a template
database: a copy of a prepared store in a few milliseconds).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "mailgate"
START_TIMEOUT = 60


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/N/bin with initdb (Debian's /usr/bin
    wrappers need a cluster configuration), else initdb on PATH."""
    found = []
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        for d in base.iterdir():
            if d.name.isdigit() and (d / "bin" / "initdb").is_file():
                found.append((int(d.name), d / "bin"))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed (no initdb): "
                       "apt-get install postgresql (scripts/test does)")


def available() -> bool:
    try:
        bin_dir()
        return shutil.which("psql") is not None or (bin_dir() / "psql").is_file()
    except RuntimeError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running private PostgreSQL cluster."""

    def __init__(self, ssl: tuple[Path, Path] | None = None, ssl_only: bool = False):
        self.bin = bin_dir()
        self.as_postgres = os.geteuid() == 0
        # Not under pytest's tmp_path: its parents are 0700 root, and the
        # server runs as `postgres`.
        self.dir = Path(tempfile.mkdtemp(prefix="mailgate-pg-"))
        if self.as_postgres:
            shutil.chown(self.dir, user="postgres", group="postgres")
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        self._running = False
        self._ssl_options = ""
        self._initdb()
        if ssl:
            self._setup_ssl(*ssl, only=ssl_only)
        last = ""
        for _ in range(5):
            self.port = _free_port()
            ok, last = self._start()
            if ok:
                self._running = True
                atexit.register(self.stop)
                return
        self._remove()
        raise RuntimeError(f"PostgreSQL did not start:\n{last}")

    def _command(self, program: str, *args: str) -> list[str]:
        path = str(self.bin / program)
        if self.as_postgres:
            return ["runuser", "-u", "postgres", "--", path, *args]
        return [path, *args]

    def _initdb(self):
        r = subprocess.run(self._command("initdb", "-D", str(self.data), "-U", USER, "-A", "trust",
                                         "-E", "UTF8", "--locale=C", "--no-sync"),
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            self._remove()
            raise RuntimeError(f"initdb failed: {r.stdout.decode()}{r.stderr.decode()}")

    def _setup_ssl(self, cert: Path, key: Path, only: bool):
        """Copies the certificate and key where the server (maybe running as
        `postgres`) reads them, key mode 0600 as PostgreSQL demands."""
        mine_cert, mine_key = self.dir / "server.crt", self.dir / "server.key"
        shutil.copyfile(cert, mine_cert)
        shutil.copyfile(key, mine_key)
        os.chmod(mine_key, 0o600)
        if self.as_postgres:
            for p in (mine_cert, mine_key):
                shutil.chown(p, user="postgres", group="postgres")
        self._ssl_options = (f" -c ssl=on -c ssl_cert_file={mine_cert}"
                             f" -c ssl_key_file={mine_key}")
        if only:
            hba = self.data / "pg_hba.conf"
            lines = hba.read_text().splitlines()
            hba.write_text("\n".join("hostssl" + ln[4:] if ln.startswith("host ") else ln
                                     for ln in lines) + "\n")

    def _start(self) -> tuple[bool, str]:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                   "-c fsync=off -c synchronous_commit=off -c max_connections=500"
                   + self._ssl_options)
        r = subprocess.run(self._command("pg_ctl", "-D", str(self.data), "-l", str(self.log),
                                         "-w", "-t", str(START_TIMEOUT), "-o", options, "start"),
                           capture_output=True, timeout=START_TIMEOUT + 30)
        if r.returncode == 0:
            return True, ""
        try:
            log = self.log.read_text(errors="replace")
        except OSError:
            log = ""
        return False, r.stdout.decode() + r.stderr.decode() + log

    def url(self, db: str) -> str:
        return f"postgres://{USER}@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str, db: str = "postgres") -> str:
        """Runs one statement with psql; returns its unaligned output."""
        psql = shutil.which("psql") or str(self.bin / "psql")
        r = subprocess.run([psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", db,
                            "-c", statement], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql {statement!r}: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode(errors="replace")

    def create_database(self, template: str | None = None) -> str:
        """A new, empty database (or a copy of `template`); returns its name."""
        name = f"mg{os.getpid()}_{next(self._names)}"
        if template:
            self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            self.sql(f'CREATE DATABASE "{name}"')
        return name

    def stop(self):
        if self._running:
            self._running = False
            subprocess.run(self._command("pg_ctl", "-D", str(self.data), "-m", "immediate",
                                         "-w", "stop"), capture_output=True, timeout=60)
        self._remove()

    def _remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: PgServer | None = None


def shared() -> PgServer:
    """The session's server, started on first use."""
    global _shared
    if _shared is None:
        _shared = PgServer()
    return _shared


def stop_shared():
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None
