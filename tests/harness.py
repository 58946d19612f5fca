"""Shared harness for the mailgate integration tests.

Starts the REAL `mailgate serve` binary on ports chosen by the OS, drives the
admin CLI, and offers small raw-socket clients for the cases where Python's
`smtplib` / `poplib` cannot send the bytes a test needs.

The binary is `target/debug/mailgate` at the repository root unless the
environment variable MAILGATE_BIN names another one.  It is copied once per
test session, so a concurrent `cargo build` cannot swap it under a running test.
"""

from __future__ import annotations

import base64
import os
import poplib
import queue
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dns_server import DnsServer

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGIN_BUILD = REPO_ROOT / "plugins" / "target" / "wasm32-wasip2" / "release"
HOSTNAME = "mx.test.example"
DOMAIN = "example.test"

START_TIMEOUT = 30.0  # seconds for `serve` to print `mailgate: ready`
STOP_TIMEOUT = 20.0  # seconds for a SIGTERM'd server to exit
CLI_TIMEOUT = 60.0  # seconds for one admin CLI command
NET_TIMEOUT = 30.0  # socket timeout for clients

# Accounts created (through the CLI) in every test's data directory.
USERS = {
    "alice@example.test": "alice-Secret-1",
    "bob@example.test": "bob-Secret-2",
    "carol@example.test": "carol-Secret-3",
    "victim@example.test": "victim-Secret-4",
    "jürgen@example.test": "jürgen-Secret-5",
}

LISTEN_RE = re.compile(r"^mailgate: listening (\w+) on (\S+)$")

DEFAULT_LIMITS = {
    "max_message_size": 52428800,
    "max_recipients": 100,
    "max_line_length": 1000,
    "max_command_line": 2048,
    "idle_timeout": 300,
    "max_errors": 20,
    # Every test client connects from loopback, and test_concurrency.py
    # holds 200 sessions from 127.0.0.1 at once: above the default 50.
    # test_connection_limits.py sets its own.
    "max_connections_per_ip": 1000,
}
DEFAULT_AUTH = {
    # Like the development profile: clients on loopback may log in without
    # TLS. test_tls.py turns this off to test the real rules.
    "allow_plaintext": True,
    "failure_delay_ms": 20,
    "max_failures": 1000,
}


def binary_source() -> Path:
    env = os.environ.get("MAILGATE_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "mailgate"


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


# The store the servers of this run use: MAILGATE_TEST_STORE=postgres gives
# every configuration the harness writes a `[store]` table naming a fresh
# database of one private PostgreSQL server (tests/pg_server.py), copied from
# PG_TEMPLATE once the conftest has made the users there; unset or `sqlite`:
# the default SQLite store in the data directory.
STORE = os.environ.get("MAILGATE_TEST_STORE", "sqlite")
if STORE not in ("sqlite", "postgres"):
    raise RuntimeError(f"MAILGATE_TEST_STORE={STORE!r}: use sqlite or postgres")
PG_TEMPLATE: str | None = None


def store_section() -> tuple[list[str], str | None]:
    """The `[store]` lines of a new configuration, and its database (PostgreSQL)."""
    if STORE == "sqlite":
        return [], None
    import pg_server
    pg = pg_server.shared()
    db = pg.create_database(template=PG_TEMPLATE)
    return ["", "[store]", 'backend = "postgres"', "experimental = true",
            f"url = {toml_value(pg.url(db))}"], db


def write_config(path: Path, data_dir: Path, *, listen=None, limits=None, auth=None,
                 domains=None) -> str | None:
    """Writes a configuration; returns its PostgreSQL database (see STORE), if any."""
    listen = {"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0"} if listen is None else listen
    lim = dict(DEFAULT_LIMITS, **(limits or {}))
    au = dict(DEFAULT_AUTH, **(auth or {}))
    lines = [
        f"hostname = {toml_value(HOSTNAME)}",
        f"data_dir = {toml_value(str(data_dir))}",
        f"domains = {toml_value(domains or [DOMAIN])}",
        "",
        "[listen]",
    ]
    lines += [f"{k} = {toml_value(v)}" for k, v in listen.items()]
    lines += ["", "[limits]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in lim.items()]
    lines += ["", "[auth]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in au.items()]
    store, db = store_section()
    lines += store
    # SPF/DKIM/DMARC checks and the sender-domain check (both on by
    # default) would query the system's resolver for the test domains
    # (senders such as x@remote.test exist nowhere); test_relay.py and
    # test_unknown_sender_domain.py test them with their own DNS server.
    # The client's reverse lookup too (test_fcrdns.py turns it on).
    lines += ["", "[inbound]", "verify = false", "reject_unknown_sender_domain = false",
              "reverse_lookup = false"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return db


class ServerError(AssertionError):
    pass


def thread_stacks(pid: int) -> str:
    """Best-effort thread backtraces of a hung process (for the failure report)."""
    gdb = shutil.which("gdb")
    if gdb:
        try:
            r = subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt 25"],
                               capture_output=True, timeout=60)
            out = r.stdout.decode(errors="replace")
            keep = [ln for ln in out.splitlines() if ln.startswith(("Thread", "#"))]
            return "\n".join(keep)[-12000:]
        except (OSError, subprocess.TimeoutExpired):
            pass
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            out.append(f"{task.name}: {(task / 'comm').read_text().strip()} "
                       f"wchan={(task / 'wchan').read_text().strip()}")
        except OSError:
            pass
    return "\n".join(out)


@dataclass
class Server:
    """One mailgate instance: a config, a data dir, and (while running) a process."""

    binary: Path
    workdir: Path
    limits: dict = field(default_factory=dict)
    auth: dict = field(default_factory=dict)
    listen: dict | None = None
    proc: subprocess.Popen | None = None
    ports: dict = field(default_factory=dict)
    starts: int = 0

    def __post_init__(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config = self.workdir / "mailgate.toml"
        self.store_db = write_config(self.config, self.data_dir, listen=self.listen,
                                     limits=self.limits, auth=self.auth)

    # ---- process control -------------------------------------------------
    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"stderr.{self.starts}.log"

    def stderr_tail(self, n=4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no stderr log>"

    def start(self) -> "Server":
        assert self.proc is None, "server already running"
        self.starts += 1
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            env=dict(os.environ, RUST_BACKTRACE="1"),
        )
        err.close()
        lines: "queue.Queue[str | None]" = queue.Queue()
        self._stdout_lines = []

        def pump(stream, q):
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self._stdout_lines.append(line)
                q.put(line)
            q.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout, lines), daemon=True).start()
        ports = {}
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise ServerError(f"server did not print 'mailgate: ready' within {START_TIMEOUT}s;"
                                  f" stdout={self._stdout_lines!r}\nstderr:\n{self.stderr_tail()}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait(timeout=5)
                self.proc = None
                raise ServerError(f"server exited ({rc}) before ready; stdout={self._stdout_lines!r}"
                                  f"\nstderr:\n{self.stderr_tail()}")
            m = LISTEN_RE.match(line)
            if m:
                proto, addr = m.group(1), m.group(2)
                host, _, port = addr.rpartition(":")
                ports[proto] = (host.strip("[]"), int(port))
            elif line == "mailgate: ready":
                break
        self.ports = ports
        return self

    def stop(self, timeout=STOP_TIMEOUT) -> int:
        """SIGTERM and wait; returns the exit code (raises if it hangs)."""
        if self.proc is None:
            return 0
        proc = self.proc
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = thread_stacks(proc.pid)
            proc.kill()
            proc.wait(timeout=10)
            self.proc = None
            raise ServerError(f"server did not exit within {timeout}s of SIGTERM\n"
                              f"stderr:\n{self.stderr_tail()}\nthreads:\n{stacks}")
        self.proc = None
        return rc

    def stop_clean(self):
        rc = self.stop()
        if rc != 0:
            raise ServerError(f"server exited with {rc} after SIGTERM\nstderr:\n{self.stderr_tail()}")

    def kill(self):
        """SIGKILL (crash simulation)."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> "Server":
        self.stop_clean()
        return self.start()

    # ---- addresses ---------------------------------------------------------
    @property
    def smtp_addr(self):
        return self.ports["smtp"]

    @property
    def pop3_addr(self):
        return self.ports["pop3"]

    # ---- CLI ---------------------------------------------------------------
    def cli(self, *args, input: str | None = None, check=False, timeout=CLI_TIMEOUT):
        cmd = [str(self.binary)] + list(args) + ["--config", str(self.config)]
        res = subprocess.run(cmd, input=(input.encode() if input is not None else None),
                             stdin=None if input is not None else subprocess.DEVNULL,
                             capture_output=True, timeout=timeout)
        res.stdout_text = res.stdout.decode("utf-8", "replace")
        res.stderr_text = res.stderr.decode("utf-8", "replace")
        if check and res.returncode != 0:
            raise AssertionError(f"`mailgate {' '.join(args)}` exited {res.returncode}:"
                                 f" stdout={res.stdout_text!r} stderr={res.stderr_text!r}")
        return res

    def add_user(self, address, password):
        return self.cli("user", "add", address, "--password-stdin", input=password + "\n", check=True)

    # ---- clients -----------------------------------------------------------
    def smtp(self, **kw) -> smtplib.SMTP:
        host, port = self.smtp_addr
        return smtplib.SMTP(host, port, local_hostname="client.test", timeout=NET_TIMEOUT, **kw)

    def send(self, from_addr, to_addrs, msg: bytes, mail_options=(), rcpt_options=()):
        with self.smtp() as s:
            s.ehlo()
            return s.sendmail(from_addr, to_addrs, msg, mail_options=list(mail_options),
                              rcpt_options=list(rcpt_options))

    def pop3(self, user=None, password=None, source=None) -> poplib.POP3:
        host, port = self.pop3_addr
        p = POP3From(host, port, timeout=NET_TIMEOUT, source=source)
        if user is not None:
            p.user(user)
            p.pass_(password if password is not None else USERS[user])
        return p

    def pop3_login_refused(self, user, password) -> poplib.error_proto:
        """One POP3 login (USER/PASS) that the server must refuse; the
        session then ends with QUIT. Returns the error."""
        p = self.pop3()
        try:
            p.user(user)
            with pytest.raises(poplib.error_proto) as refused:
                p.pass_(password)
        finally:
            p.quit()
        return refused.value

    def raw_smtp(self, source=None) -> "RawSMTP":
        return RawSMTP(self.smtp_addr, source=source)

    def raw_pop3(self, source=None) -> "RawPOP3":
        return RawPOP3(self.pop3_addr, source=source)

    def pop3_login(self, user, password=None, timeout=5.0, source=None) -> poplib.POP3:
        """Log in, retrying briefly while the server still holds the lock of a
        session that just ended (QUIT or dropped connection)."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.pop3(source=source)
            try:
                p.user(user)
                p.pass_(password if password is not None else USERS[user])
                return p
            except poplib.error_proto as e:
                p.close()
                if b"IN-USE" not in e.args[0] or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def raw_pop3_login(self, user, password=None, timeout=5.0) -> "RawPOP3":
        """A RawPOP3 logged in with USER/PASS (retrying briefly on IN-USE)."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.raw_pop3()
            c.status()
            c.cmd(f"USER {user}")
            resp = c.cmd(f"PASS {password if password is not None else USERS[user]}")
            if resp.startswith(b"+OK"):
                return c
            c.close()
            if b"IN-USE" not in resp or time.monotonic() > deadline:
                raise AssertionError(f"login as {user} failed: {resp!r}")
            time.sleep(0.05)

    def messages(self, user, password=None) -> list[bytes]:
        """All messages in the account, each as the exact bytes RETR gave (CRLF lines)."""
        p = self.pop3_login(user, password)
        try:
            n, _ = p.stat()
            return [retr_bytes(p, i) for i in range(1, n + 1)]
        finally:
            p.quit()


class POP3From(poplib.POP3):
    """poplib.POP3 that can bind a source address (127.0.0.x) so that per-address
    login throttling of one test does not leak into another client."""

    def __init__(self, host, port, timeout, source=None):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        src = (self._source, 0) if self._source else None
        return socket.create_connection((self.host, self.port), timeout, source_address=src)


def retr_bytes(p: poplib.POP3, which: int) -> bytes:
    resp, lines, octets = p.retr(which)
    assert resp.startswith(b"+OK"), resp
    return b"".join(line + b"\r\n" for line in lines)


def strip_trace(raw: bytes, mail_from: str) -> bytes:
    """Remove exactly the `Return-Path: <from>` line and the (possibly folded)
    `Received:` header the server prepends; return the rest (= the message as sent)."""
    rp = b"Return-Path: <" + mail_from.encode() + b">\r\n"
    assert raw.startswith(rp), f"message does not start with {rp!r}: {raw[:300]!r}"
    rest = raw[len(rp):]
    assert rest.startswith(b"Received:"), f"no Received: header after Return-Path: {rest[:300]!r}"
    end = rest.index(b"\r\n") + 2
    while rest[end:end + 1] in (b" ", b"\t"):
        end = rest.index(b"\r\n", end) + 2
    return rest[end:]


# --------------------------------------------------------------------------
# Raw clients
# --------------------------------------------------------------------------
class RawSMTP:
    def __init__(self, addr, source=None, timeout=NET_TIMEOUT):
        src = (source, 0) if source else None
        self.sock = socket.create_connection(addr, timeout=timeout, source_address=src)
        self.buf = b""
        self.closed = False

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self):
        """One (possibly multi-line) reply: (code:int, text:str)."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                break
        code_s = lines[-1][:3]
        if not code_s.isdigit():
            raise AssertionError(f"malformed SMTP reply: {lines!r}")
        text = "\n".join(ln.decode("utf-8", "replace") for ln in lines)
        return int(code_s), text

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str | bytes):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def ehlo(self, name="client.test"):
        code, text = self.cmd(f"EHLO {name}")
        assert code == 250, text
        return text

    def read_until_closed(self, timeout=10.0):
        """Collect replies until the server closes the connection (or timeout)."""
        out = []
        self.sock.settimeout(timeout)
        try:
            while True:
                out.append(self.reply())
        except (ConnectionError, socket.timeout, OSError):
            pass
        return out

    def is_closed(self, timeout=5.0) -> bool:
        """True when the server closed the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class RawPOP3(RawSMTP):
    def status(self) -> bytes:
        return self.line()

    def cmd(self, line: str | bytes) -> bytes:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.line()

    def multi(self) -> list[bytes]:
        """Body of a multi-line response (after its status line), dot-unstuffed."""
        out = []
        while True:
            line = self.line()
            if line == b".":
                return out
            out.append(line[1:] if line.startswith(b".") else line)


def plain_b64(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def rcpt_reply(srv: "Server", address: str):
    """The reply to `RCPT TO:<address>` after `MAIL FROM:<sender@remote.test>`
    on a fresh port-25 session (which ends without DATA)."""
    with srv.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        return c.cmd(f"RCPT TO:<{address}>")


def cli_lines(res) -> list[str]:
    """The non-empty lines a `Server.cli` call printed, stripped."""
    return [ln.strip() for ln in res.stdout_text.splitlines() if ln.strip()]


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_message(subject="test", body="hello\r\n", from_addr="sender@remote.test",
                 to_addr="alice@example.test", extra_headers=()) -> bytes:
    hdrs = [f"From: <{from_addr}>", f"To: <{to_addr}>", f"Subject: {subject}",
            "Message-ID: <" + subject.replace(" ", ".") + "@remote.test>"]
    hdrs += list(extra_headers)
    return ("\r\n".join(hdrs) + "\r\n\r\n" + body).encode("utf-8")


def built_plugins(*names: str) -> Path:
    """PLUGIN_BUILD, where scripts/build-plugins puts the example plugins
    (`NAME.wasm`), after running it if one of `names` is not there yet."""
    if not all((PLUGIN_BUILD / f"{n}.wasm").is_file() for n in names):
        subprocess.run([str(REPO_ROOT / "scripts" / "build-plugins")], check=True,
                       capture_output=True, timeout=900)
    return PLUGIN_BUILD


@pytest.fixture
def dns():
    """A fixture: the test DNS server (tests/dns_server.py) on 127.0.0.1,
    stopped at teardown. A test module takes it with `from harness import
    dns`."""
    server = DnsServer("127.0.0.1")
    yield server
    server.stop()


def with_probe(srv: "Server", wasm_dir: Path) -> "Server":
    """`srv` (not started) running the `probe` fixture plugin
    (host/policy/tests/fixtures/probe, built into `wasm_dir`) with the
    `config` grant."""
    pdir = srv.workdir / "plugins"
    pdir.mkdir()
    shutil.copy(wasm_dir / "probe.wasm", pdir / "probe.wasm")
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[plugins]\ndir = "{pdir}"\npoll_ms = 200\n'
                '\n[[plugin]]\nname = "probe"\ngrants = ["config"]\n')
    return srv


# ---- peers (Postfix, Dovecot) --------------------------------------------------


def peer_unavailable(peer: str, reason: str, needs: str):
    """A peer program cannot be used here: a failure under CI (`CI` set),
    where every test must run, and a loud skip elsewhere. `needs` says what
    to install or how to run."""
    msg = f"{peer} UNAVAILABLE: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{msg} (CI is set: {needs})", pytrace=False)
    pytest.skip(msg + " (set CI=1 to make this a failure)")


def free_port(ip: str) -> int:
    """A TCP port free on `ip` at the time of asking."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


class ScriptedServer:
    """A TCP server on (ip, port) in a thread, each connection handed to
    `self._session(conn)` in a thread of its own: the base of the tests'
    scripted SMTP peers (subclasses set their fields, then call
    `super().__init__(ip, port)`)."""

    def __init__(self, ip, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        raise NotImplementedError
