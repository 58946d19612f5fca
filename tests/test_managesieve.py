"""ManageSieve (RFC 5804, `[listen] managesieve`): the real `sieve-connect`
client over STARTTLS, and a raw client for every command and the errors.

Every server here has a certificate and the strict clear-text policy
(`allow_plaintext` and `trust_loopback` off), so what a remote client sees
is what the tests see: no SASL mechanism and no AUTHENTICATE before
STARTTLS. `[sieve] max_script_size` is small so that the literal bound can
be tested cheaply.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import ssl
import subprocess

import pytest

from harness import HOSTNAME, USERS
from test_tls import make_cert

ALICE = "alice@example.test"
MAX_SCRIPT = 2048
GOOD = 'require ["fileinto"];\r\nif header :contains "subject" "news" { fileinto "News"; }\r\n'
# `fileinto` without `require`: does not compile (line 2).
BAD = "# a comment\r\nfileinto \"News\";\r\n"


@pytest.fixture
def srv(server_factory, tmp_path):
    s = server_factory(listen={"smtp": "127.0.0.1:0", "managesieve": "127.0.0.1:0"},
                       auth={"allow_plaintext": False, "trust_loopback": False}, start=False)
    s.cert, s.key = make_cert(tmp_path)
    with open(s.config, "a", encoding="utf-8") as f:
        f.write(f'\n[tls]\ncert = "{s.cert}"\nkey = "{s.key}"\n'
                f"\n[sieve]\nmax_script_size = {MAX_SCRIPT}\nmax_scripts = 3\n")
    return s.start()


class Raw:
    """A ManageSieve client that reads whole responses, literals included."""

    def __init__(self, srv):
        self.srv = srv
        self.sock = socket.create_connection(srv.ports["managesieve"], timeout=30)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple[list[bytes], bytes]:
        """(data lines, with literals inlined; the final OK/NO/BYE line)."""
        lines = []
        while True:
            line = self._line()
            m = re.search(rb"\{(\d+)\}$", line)
            while m:
                line += b"\r\n" + self._exact(int(m.group(1)))
                rest = self._line()
                line += rest
                m = re.search(rb"\{(\d+)\}$", rest)
            if re.match(rb"^(OK|NO|BYE)\b", line):
                return lines, line
            lines.append(line)

    def send(self, data: bytes | str):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, data: bytes | str):
        self.send(data if (isinstance(data, bytes) and data.endswith(b"\r\n"))
                  or (isinstance(data, str) and data.endswith("\r\n")) else data + "\r\n")
        return self.response()

    def starttls(self):
        _, end = self.cmd("STARTTLS")
        assert end.startswith(b"OK"), end
        ctx = ssl.create_default_context(cafile=str(self.srv.cert))
        ctx.check_hostname = False
        self.sock = ctx.wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.buf = b""
        # RFC 5804 section 2.2: the capabilities again, then OK.
        return self.response()

    def login(self, user=ALICE, password=None):
        password = USERS[user] if password is None else password
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f'AUTHENTICATE "PLAIN" "{token}"')

    def closed(self) -> bool:
        try:
            while True:
                self._fill()
        except (EOFError, ConnectionError, ssl.SSLError, OSError):
            return True

    def close(self):
        self.sock.close()


def caps(lines: list[bytes]) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(rb'^"([^"]+)"(?: "(.*)")?$', line)
        assert m, line
        out[m.group(1).decode()] = (m.group(2) or b"").decode()
    return out


def logged_in(srv) -> Raw:
    c = Raw(srv)
    c.response()
    c.starttls()
    _, end = c.login()
    assert end == b'OK "Logged in"', end
    return c


def test_greeting_and_no_password_before_starttls(srv):
    c = Raw(srv)
    lines, end = c.response()
    assert end == b"OK"
    before = caps(lines)
    assert before["IMPLEMENTATION"] == "mailgate"
    assert before["VERSION"] == "1.0"
    assert "STARTTLS" in before
    assert before["SASL"] == ""  # nothing to log in with in clear
    assert before["MAXREDIRECTS"] == "4"
    ext = before["SIEVE"].split()
    for e in ("fileinto", "vacation", "imap4flags", "include", "variables", "regex"):
        assert e in ext, ext
    assert "editheader" not in ext
    # AUTHENTICATE before STARTTLS is refused whatever the password.
    _, end = c.login()
    assert end.startswith(b"NO (ENCRYPT-NEEDED)"), end
    _, end = c.cmd("LISTSCRIPTS")
    assert end.startswith(b"NO"), end
    lines, end = c.starttls()
    after = caps(lines)
    assert end == b"OK" and "STARTTLS" not in after
    assert after["SASL"] == "PLAIN LOGIN"
    _, end = c.login(password="wrong")
    assert end == b'NO "Authentication failed"', end
    _, end = c.login()
    assert end == b'OK "Logged in"', end
    _, end = c.cmd("STARTTLS")
    assert end.startswith(b"NO"), end
    _, end = c.cmd("LOGOUT")
    assert end.startswith(b"OK")
    assert c.closed()


def test_every_command(srv):
    c = logged_in(srv)
    lines, end = c.cmd("CAPABILITY")
    assert end == b"OK" and caps(lines)["VERSION"] == "1.0"
    assert c.cmd("LISTSCRIPTS") == ([], b"OK")
    assert c.cmd('HAVESPACE "filters" 100')[1] == b"OK"
    _, end = c.cmd(f'HAVESPACE "filters" {MAX_SCRIPT + 1}')
    assert end.startswith(b"NO (QUOTA/MAXSIZE)"), end
    data = GOOD.encode()
    assert c.cmd(f'PUTSCRIPT "filters" {{{len(data)}+}}\r\n'.encode() + data + b"\r\n")[1] == b"OK"
    assert c.cmd(f'CHECKSCRIPT {{{len(data)}+}}\r\n'.encode() + data + b"\r\n")[1] == b"OK"
    assert c.cmd("LISTSCRIPTS") == ([b'"filters"'], b"OK")
    assert c.cmd('SETACTIVE "filters"')[1] == b"OK"
    assert c.cmd("LISTSCRIPTS") == ([b'"filters" ACTIVE'], b"OK")
    lines, end = c.cmd('GETSCRIPT "filters"')
    assert end == b"OK"
    assert lines == [f"{{{len(data)}}}\r\n".encode() + data]
    _, end = c.cmd('GETSCRIPT "nope"')
    assert end.startswith(b"NO (NONEXISTENT)"), end
    assert c.cmd('RENAMESCRIPT "filters" "main"')[1] == b"OK"
    assert c.cmd("LISTSCRIPTS") == ([b'"main" ACTIVE'], b"OK")
    assert c.cmd('PUTSCRIPT "spare" "keep;"')[1] == b"OK"
    _, end = c.cmd('RENAMESCRIPT "spare" "main"')
    assert end.startswith(b"NO (ALREADYEXISTS)"), end
    _, end = c.cmd('SETACTIVE "nope"')
    assert end.startswith(b"NO (NONEXISTENT)"), end
    assert c.cmd('NOOP "probe-1"')[1] == b'OK (TAG "probe-1") "Done"'
    # The store, seen from the CLI, holds what the client did.
    out = srv.cli("sieve", "list", ALICE, check=True).stdout_text.splitlines()
    assert out == [f"main\t{len(data)}\tactive", "spare\t5"], out
    assert c.cmd('SETACTIVE ""')[1] == b"OK"
    assert c.cmd("LISTSCRIPTS") == ([b'"main"', b'"spare"'], b"OK")
    assert c.cmd('DELETESCRIPT "main"')[1] == b"OK"
    assert c.cmd('DELETESCRIPT "spare"')[1] == b"OK"
    assert c.cmd("LISTSCRIPTS") == ([], b"OK")
    assert c.cmd("UNAUTHENTICATE")[1] == b"OK"
    _, end = c.cmd("LISTSCRIPTS")
    assert end.startswith(b"NO"), end
    assert c.cmd("LOGOUT")[1].startswith(b"OK")
    c.close()


def test_errors(srv):
    c = logged_in(srv)
    # A script that does not compile: NO with its line and column, not stored.
    data = BAD.encode()
    _, end = c.cmd(f'PUTSCRIPT "bad" {{{len(data)}+}}\r\n'.encode() + data + b"\r\n")
    assert re.match(rb'^NO "line 2, column \d+: .*fileinto', end), end
    _, end = c.cmd(f'CHECKSCRIPT {{{len(data)}+}}\r\n'.encode() + data + b"\r\n")
    assert end.startswith(b'NO "line 2, column'), end
    assert c.cmd("LISTSCRIPTS") == ([], b"OK")
    # The active script cannot be deleted.
    assert c.cmd('PUTSCRIPT "a" "keep;"')[1] == b"OK"
    assert c.cmd('SETACTIVE "a"')[1] == b"OK"
    _, end = c.cmd('DELETESCRIPT "a"')
    assert end.startswith(b"NO (ACTIVE)"), end
    # max_scripts = 3.
    assert c.cmd('PUTSCRIPT "b" "keep;"')[1] == b"OK"
    assert c.cmd('PUTSCRIPT "c" "keep;"')[1] == b"OK"
    _, end = c.cmd('PUTSCRIPT "d" "keep;"')
    assert end.startswith(b"NO (QUOTA/MAXSCRIPTS)"), end
    # Syntax and unknown commands: NO, the session goes on.
    _, end = c.cmd("FROBNICATE")
    assert end.startswith(b"NO"), end
    _, end = c.cmd('PUTSCRIPT "x\\qy" "keep;"')
    assert end.startswith(b"NO"), end
    assert c.cmd("NOOP")[1].startswith(b"OK")
    # A literal over max_script_size: BYE before its bytes are read.
    c.send(f'PUTSCRIPT "big" {{{MAX_SCRIPT + 1}+}}\r\n')
    _, end = c.response()
    assert end == f'BYE "Scripts are limited to {MAX_SCRIPT} bytes"'.encode(), end
    assert c.closed()
    assert "big" not in srv.cli("sieve", "list", ALICE, check=True).stdout_text


def test_too_long_line_and_errors_in_a_row(srv):
    c = Raw(srv)
    c.response()
    c.send("NOOP \"" + "x" * 9000)
    _, end = c.response()
    assert end.startswith(b"BYE"), end
    assert c.closed()
    c = Raw(srv)
    c.response()
    ends = [c.cmd("BOGUS")[1] for _ in range(10)]
    assert all(e.startswith(b"NO") for e in ends[:9]), ends
    assert ends[9].startswith(b"BYE"), ends
    assert c.closed()


def test_nothing_raw_in_the_log(srv):
    c = Raw(srv)
    c.response()
    c.starttls()
    _, end = c.login(user="evil\u2028user\x1b[31m@example.test", password="x")
    assert end.startswith(b"NO"), end
    c.close()
    c = logged_in(srv)
    secret = "keep; # secret-script-text"
    assert c.cmd(f'PUTSCRIPT "s" "{secret}"')[1] == b"OK"
    c.cmd("LOGOUT")
    c.close()
    srv.stop_clean()
    log = srv.stderr_tail(200000)
    assert "\x1b" not in log and "\u2028" not in log
    assert "secret-script-text" not in log
    assert "managesieve login" in log and "script stored" in log


@pytest.mark.skipif(shutil.which("sieve-connect") is None,
                    reason="sieve-connect is not installed (Debian package sieve-connect)")
def test_sieve_connect(srv, tmp_path):
    host, port = srv.ports["managesieve"]

    def run(*args, check=True):
        r, w = os.pipe()
        os.write(w, (USERS[ALICE] + "\n").encode())
        os.close(w)
        try:
            res = subprocess.run(
                ["sieve-connect", "--server", host, "--port", str(port), "--user", ALICE,
                 "--passwordfd", str(r), "--tlscafile", str(srv.cert),
                 "--tlshostname", HOSTNAME, "--noclearauth", *args],
                pass_fds=(r,), capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        finally:
            os.close(r)
        out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
        if check:
            assert res.returncode == 0, out
        return res.returncode, out

    local = tmp_path / "filters.sieve"
    local.write_text(GOOD, encoding="utf-8")
    run("--localsieve", str(local), "--remotesieve", "filters", "--upload")
    _, out = run("--list")
    assert "filters" in out, out
    run("--remotesieve", "filters", "--activate")
    _, out = run("--list")
    assert re.search(r"filters\s+<-\s+active|filters.*ACTIVE|filters\s+\*", out, re.I), out
    got = tmp_path / "got.sieve"
    run("--localsieve", str(got), "--remotesieve", "filters", "--download")
    assert got.read_bytes() == GOOD.encode()
    # The active script is not deleted; after deactivating it is.
    rc, out = run("--remotesieve", "filters", "--delete", check=False)
    assert rc != 0, out
    run("--deactivate")
    run("--remotesieve", "filters", "--delete")
    _, out = run("--list")
    assert "filters" not in out, out
    # A script that does not compile is refused with its line.
    bad = tmp_path / "bad.sieve"
    bad.write_text(BAD, encoding="utf-8")
    rc, out = run("--localsieve", str(bad), "--remotesieve", "bad", "--upload", check=False)
    assert rc != 0 and "line 2" in out, out
    assert srv.cli("sieve", "list", ALICE, check=True).stdout_text == ""


def test_time_bounds(server_factory):
    s = server_factory(listen={"smtp": "127.0.0.1:0", "managesieve": "127.0.0.1:0"},
                       limits={"idle_timeout": 3, "command_timeout": 1})
    # A command that does not end within command_timeout.
    c = Raw(s)
    c.response()
    c.send('PUTSCRIPT "slow" {100+}\r\nkeep;')
    _, end = c.response()
    assert end == b'BYE "Command too slow, closing connection"', end
    assert c.closed()
    # Nothing at all within idle_timeout.
    c = Raw(s)
    c.response()
    _, end = c.response()
    assert end == b'BYE "Idle timeout, closing connection"', end
    assert c.closed()


def test_connection_limit(server_factory):
    s = server_factory(listen={"smtp": "127.0.0.1:0", "managesieve": "127.0.0.1:0"},
                       limits={"max_connections_per_ip": 1})
    first = Raw(s)
    assert first.response()[1] == b"OK"
    second = Raw(s)
    _, end = second.response()
    assert end == b'BYE (TRYLATER) "Too many connections, try again later"', end
    assert second.closed()
    first.cmd("LOGOUT")
    first.close()
