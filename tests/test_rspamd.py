"""The rspamd plugin (plugins/rspamd) against a real rspamd (issue 12).

rspamd (Debian package `rspamd`, installed by scripts/test) is started by
this module with a private configuration in a temporary directory: the
system's rules (/etc/rspamd) with overrides for a normal and a controller
worker on free loopback ports, no proxy, no Redis (Bayes in sqlite3, so
learning can be observed in the controller's `/stat`), DNS pointed at a
closed port (no network), and `max_message = 20k`.  No system-wide rspamd
service is used or needed (the package starts none here: nothing listens
on 11333/11334 after the install).

The checks: GTUBE is refused with 550 5.7.1; a plain message is delivered
with `X-Spam-Score`; a message over the size limit is not checked; a
message moved into Junk over imaplib reaches rspamd's `/learnspam` (its
learn count grows), and moved back out, `/learnham`; rspamd stopped → `on_error` applies (last: it stops
the daemon).
"""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import signal
import smtplib
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness import USERS, built_plugins, free_port, peer_unavailable, wait_until

ALICE = "alice@example.test"
PASSWORD = "controller-secret"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
START_TIMEOUT = 180.0  # rspamd compiles its rules at start: tens of seconds


class Rspamd:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.normal = free_port("127.0.0.1")
        self.controller = free_port("127.0.0.1")
        self.proc: subprocess.Popen | None = None

    def write_config(self):
        o = self.workdir / "conf" / "override.d"
        o.mkdir(parents=True)
        (self.workdir / "db").mkdir()
        (o / "worker-normal.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.normal}";\ncount = 1;\n')
        (o / "worker-controller.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.controller}";\ncount = 1;\n'
            f'password = "{PASSWORD}";\nenable_password = "{PASSWORD}";\n')
        (o / "worker-proxy.inc").write_text("enabled = false;\n")
        (o / "worker-fuzzy.inc").write_text("enabled = false;\n")
        (o / "options.inc").write_text(
            "max_message = 20k;\n"
            'dns { nameserver = ["127.0.0.1:1"]; timeout = 0.5s; retransmits = 1; }\n')
        (o / "logging.inc").write_text(
            f'type = "file";\nfilename = "{self.workdir}/rspamd.log";\nlevel = "info";\n')
        (o / "redis.conf").write_text("enabled = false;\n")
        # A test rule: a Subject with JUNKME scores 8 (over "add header", 6).
        (self.workdir / "junk.map").write_text("/JUNKME/\n")
        local = self.workdir / "conf" / "local.d"
        local.mkdir()
        (local / "multimap.conf").write_text(
            'JUNK_TEST { type = "header"; header = "Subject"; regexp = true;'
            f' map = "{self.workdir}/junk.map"; score = 8.0; }}\n')
        db = self.workdir / "db"
        (o / "classifier-bayes.conf").write_text(
            'backend = "sqlite3";\nmin_learns = 1;\n'
            f'statfile {{ symbol = "BAYES_HAM"; spam = false; path = "{db}/bayes.ham.sqlite"; }}\n'
            f'statfile {{ symbol = "BAYES_SPAM"; spam = true; path = "{db}/bayes.spam.sqlite"; }}\n'
            # The learn cache too (its default is /var/lib/rspamd).
            f'cache {{ type = "sqlite3"; path = "{db}/learn_cache.sqlite"; }}\n')

    def start(self):
        exe = shutil.which("rspamd")
        if exe is None:
            peer_unavailable("rspamd", "no rspamd binary", "apt-get install rspamd")
        self.write_config()
        user = os.environ.get("USER") or "root"
        args = [exe, "-f", "-i", "-c", "/etc/rspamd/rspamd.conf",
                f"--var=LOCAL_CONFDIR={self.workdir}/conf", f"--var=RUNDIR={self.workdir}",
                f"--var=DBDIR={self.workdir}/db", f"--var=LOGDIR={self.workdir}"]
        if os.geteuid() == 0:
            args += ["-u", "root", "-g", "root"]
        del user
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=open(self.workdir / "stdout.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rspamd exited: {self.log_tail()}")
            try:
                self.stat()
                with urllib.request.urlopen(f"http://127.0.0.1:{self.normal}/ping", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"rspamd did not start in {START_TIMEOUT}s: {self.log_tail()}")

    def log_tail(self) -> str:
        text = ""
        for name in ("stdout.log", "rspamd.log"):
            p = self.workdir / name
            if p.exists():
                text += p.read_text(errors="replace")[-3000:]
        return text

    def stat(self) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.controller}/stat",
                                     headers={"Password": PASSWORD})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory):
    daemon = Rspamd(tmp_path_factory.mktemp("rspamd"))
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def rspamd_wasm() -> Path:
    return built_plugins("rspamd") / "rspamd.wasm"


def toml_inline(d: dict) -> str:
    def v(x):
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, int):
            return str(x)
        return json.dumps(x)
    return "{ " + ", ".join(f"{k} = {v(x)}" for k, x in d.items()) + " }"


@pytest.fixture
def mx(server_factory, rspamd_wasm, rspamd):
    """make(**config) -> server with the rspamd plugin (smtp, pop3, imap)."""

    def make(**config):
        srv = server_factory(start=False, listen={
            "smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0", "imap": "127.0.0.1:0"})
        pdir = srv.workdir / "plugins"
        pdir.mkdir()
        shutil.copy(rspamd_wasm, pdir / "rspamd.wasm")
        cfg = {"url": f"http://127.0.0.1:{rspamd.normal}",
               "controller_url": f"http://127.0.0.1:{rspamd.controller}",
               "controller_password": PASSWORD, "max_size": 20 * 1024}
        cfg.update(config)
        allow = [f"http://127.0.0.1:{rspamd.normal}/", f"http://127.0.0.1:{rspamd.controller}/"]
        with open(srv.config, "a", encoding="utf-8") as f:
            f.write(f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "rspamd"\n'
                    'grants = ["http", "config", "log"]\n'
                    f"http_allow = {json.dumps(allow)}\n"
                    # rspamd takes longer than the 100 ms default.
                    "timeout_ms = 10000\n"
                    f"config = {toml_inline(cfg)}\n")
        return srv.start()

    return make


def message(subject: str, body: str, msgid: str) -> bytes:
    return (f"From: Sender <sender@remote.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{msgid}@remote.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"{body}\r\n").encode()


def send(srv, msg: bytes):
    with smtplib.SMTP(*srv.smtp_addr, timeout=60) as s:
        s.ehlo("mail.remote.test")
        return s.sendmail("sender@remote.test", [ALICE], msg)


def move_all(srv, source: str, target: str) -> int:
    """Alice's messages in `source` moved into `target` with one UID MOVE
    over imaplib; returns how many `target` then holds. The IMAP session
    goes on at once after the MOVE, whatever rspamd does (NOOP answers OK)."""
    imap = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
    try:
        imap.login(ALICE, USERS[ALICE])
        typ, data = imap.select(source)
        assert typ == "OK", data
        typ, data = imap.uid("MOVE", "1:*", target)
        assert typ == "OK", data
        assert imap.noop()[0] == "OK"
        typ, data = imap.select(target)
        assert typ == "OK", data
        return int(data[0])
    finally:
        imap.logout()


def test_gtube_is_rejected_with_550_5_7_1(mx):
    srv = mx()
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(srv, message("gtube", f"Test.\r\n{GTUBE}", "gtube1"))
    assert e.value.smtp_code == 550, e.value
    text = e.value.smtp_error.decode()
    assert text.startswith("5.7.1"), text
    assert "Gtube" in text, text
    assert srv.messages(ALICE, USERS[ALICE]) == []


def test_a_plain_message_is_delivered_with_the_score_header(mx, rspamd):
    srv = mx()
    scanned = rspamd.stat()["scanned"]
    send(srv, message("Lunch on Friday", "Shall we meet at noon at the usual place?", "plain1"))
    [got] = srv.messages(ALICE, USERS[ALICE])
    header = got.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Spam-Score: " in b"\r\n" + header, header
    assert b"X-Spam: Yes" not in header
    assert rspamd.stat()["scanned"] == scanned + 1


def test_add_header_files_the_message_into_junk_with_the_spam_headers(mx):
    srv = mx()
    send(srv, message("JUNKME offer", "An offer you should not take.", "junk1"))
    assert srv.messages(ALICE, USERS[ALICE]) == []  # POP3 shows INBOX only
    imap = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
    try:
        imap.login(ALICE, USERS[ALICE])
        typ, data = imap.select("Junk")
        assert (typ, data) == ("OK", [b"1"]), data
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER])")
        header = data[0][1]
    finally:
        imap.logout()
    assert b"X-Spam: Yes\r\n" in header, header
    assert b"X-Spam-Score: " in header, header


def test_a_message_over_the_size_limit_is_not_checked(mx, rspamd):
    # on_error = tempfail: had the plugin asked (rspamd closes the
    # connection on a message over its max_message), the client would get 451.
    srv = mx(on_error="tempfail")
    scanned = rspamd.stat()["scanned"]
    big = "A long and boring line of text that is not spam at all, really.\r\n" * 400
    send(srv, message("big", big, "big1"))
    [got] = srv.messages(ALICE, USERS[ALICE])
    assert b"X-Spam-Score" not in got.split(b"\r\n\r\n", 1)[0]
    assert rspamd.stat()["scanned"] == scanned


def test_a_message_moved_into_junk_is_learned_as_spam_and_out_of_it_as_ham(mx, rspamd):
    srv = mx()
    token = os.urandom(8).hex()  # a message rspamd has never seen
    send(srv, message("Cheap pills now", "Buy cheap pills now, best offer online today, click"
                      f" here for your discount {token}.", "learn1"))
    learned = rspamd.stat()["learned"]
    assert move_all(srv, "INBOX", "Junk") == 1
    wait_until(lambda: rspamd.stat()["learned"] > learned, timeout=30,
               what="rspamd's learn count to grow")
    log = (rspamd.workdir / "rspamd.log").read_text(errors="replace")
    assert "learned message as spam" in log and "learn1@remote.test" in log

    # Back out of Junk: the user says it is not spam after all.
    assert move_all(srv, "Junk", "INBOX") == 1
    wait_until(lambda: "learned message as ham: learn1@remote.test"
               in (rspamd.workdir / "rspamd.log").read_text(errors="replace"),
               timeout=30, what="rspamd to learn the message as ham")


def test_rspamd_stopped_then_on_error_applies(mx, rspamd):
    accept = mx()
    tempfail = mx(on_error="tempfail")
    rspamd.stop()
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(tempfail, message("while down", "Hello.", "down1"))
    assert e.value.smtp_code == 451, e.value
    assert e.value.smtp_error.decode().startswith("4.7.1")
    send(accept, message("while down", "Hello.", "down2"))
    [got] = accept.messages(ALICE, USERS[ALICE])
    assert b"X-Spam-Score" not in got.split(b"\r\n\r\n", 1)[0]
    # Learning fails too; the IMAP command does not.
    assert move_all(accept, "INBOX", "Junk") == 1
    wait_until(lambda: "mailbox-event answered an error" in accept.stderr_tail(20000),
               timeout=30, what="the failed learn to be logged")


def test_rspamd_is_told_the_tls_version_and_cipher(server_factory, tmp_path, rspamd_wasm):
    """rspamd's `TLS-Version` and `TLS-Cipher` headers carry the session's
    real version and cipher (`message.tls`, WIT 0.1.3), not just "TLS";
    a message without TLS sends neither. (A stand-in records the request
    headers: the real rspamd does not echo them.)"""
    import ssl

    from test_fcrdns import FakeRspamd
    from test_tls import client_context, tls_server

    fake = FakeRspamd()
    try:
        url = f"http://127.0.0.1:{fake.port}"
        pdir = tmp_path / "plugins"
        pdir.mkdir()
        shutil.copy(rspamd_wasm, pdir / "rspamd.wasm")
        extra = (f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "rspamd"\n'
                 'grants = ["http", "config", "log"]\n'
                 f'http_allow = ["{url}/"]\ntimeout_ms = 10000\n'
                 f'config = {{ url = "{url}", controller_url = "{url}" }}\n')
        srv = tls_server(server_factory, tmp_path, extra=extra)
        rcpt = "alice@example.test"
        msg = message("tls", "Hello over TLS.", "tls.1")
        ctx = client_context(srv)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
            s.ehlo("remote.test")
            s.starttls(context=ctx)
            cipher = s.sock.cipher()[0]
            s.ehlo("remote.test")
            assert s.sendmail("sender@remote.test", [rcpt], msg) == {}
        with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
            s.ehlo("remote.test")
            assert s.sendmail("sender@remote.test", [rcpt],
                              message("plain", "No TLS.", "tls.2")) == {}
        assert len(fake.requests) == 2, fake.requests
        with_tls, without = fake.requests
        assert with_tls.get("tls-version") == "TLSv1.3", with_tls
        # rustls names TLS 1.3 suites TLS13_...; OpenSSL TLS_...: same suite.
        assert with_tls.get("tls-cipher", "").replace("TLS13_", "TLS_") == cipher, (with_tls, cipher)
        assert "tls-version" not in without and "tls-cipher" not in without, without
    finally:
        fake.stop()
