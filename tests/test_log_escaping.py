"""Nothing a client sends reaches a log line raw: the real binary's log
(its standard error) after hostile user names, HELO names and IMAP IDs.

Each probe carries a forged log line after CR LF (`INFO ... imap login ...
user=bob`), terminal escape sequences (ESC, BEL, a C1 CSI, a right-to-left
override) and, where the protocol lets bytes through, bytes that are not
UTF-8. The log must keep one line per event, hold no raw control
character, and cut every value to its bound (`…(+N bytes)`)."""

from __future__ import annotations

import base64
import re
import socket

import pytest

from harness import wait_until

LISTEN = {"smtp": "127.0.0.1:0", "submission": "127.0.0.1:0", "imap": "127.0.0.1:0"}
TS = "2026-12-07T11:00:00.000000Z"
FORGED_IMAP = (f"{TS}  INFO mailgate_imap::cmd::auth: imap login client=127.0.0.1"
               " user=bob@example.test")
FORGED_SMTP = (f"{TS}  INFO mailgate_smtp::cmd::auth: smtp: authenticated client=127.0.0.1"
               " user=bob@example.test method=\"PLAIN\" tls=false")
TERMINAL = "\x1b[2J\x1b]0;owned\x07\u009b31m\u202eevil"
# A line the server wrote as the message of an event: timestamp, level,
# the spans it is in (`smtp{session=...}:`), target, message.
EVENT = re.compile(r"^\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(?:[\w-]+(?:\{[^}]*\})?:)*\s*"
                   r"[\w:]+: (.*)$")
MAX_LINE = 4096  # far above a legitimate line, far below 60 KB


def log_bytes(srv) -> bytes:
    return srv.stderr_path.read_bytes()


def messages(srv) -> list[str]:
    out = []
    for line in log_bytes(srv).decode("utf-8", "replace").splitlines():
        m = EVENT.match(line)
        if m:
            out.append(m.group(2))
    return out


def assert_clean(srv):
    """The whole log: no raw control character but the line ends, no raw
    C1, separator or bidi control, every line bounded, and valid UTF-8."""
    raw = log_bytes(srv)
    text = raw.decode("utf-8")  # raises on bytes that are not UTF-8
    for ch in ["\r", "\x1b", "\x07", "\x00", "\u009b", "\u202e", "\u2028"]:
        assert ch not in text, f"raw {ch!r} in the log:\n{text[-3000:]!r}"
    for line in text.split("\n"):
        assert len(line.encode()) <= MAX_LINE, f"a log line of {len(line)} bytes: {line[:300]!r}"
        assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line), repr(line)


class Imap:
    def __init__(self, srv):
        self.sock = socket.create_connection(srv.ports["imap"], timeout=10)
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"* OK")

    def literal(self, head: bytes, data: bytes, tail: bytes) -> bytes:
        """`head {n}` CRLF, wait for `+`, then data, tail CRLF; the tagged reply."""
        self.sock.sendall(head + b" {%d}\r\n" % len(data))
        cont = self.f.readline()
        assert cont.startswith(b"+"), cont
        self.sock.sendall(data + tail + b"\r\n")
        while True:
            line = self.f.readline()
            assert line, "connection closed"
            if not line.startswith(b"*"):
                return line

    def close(self):
        self.sock.close()


def test_imap_login_literal_cannot_forge_a_line(server_factory):
    srv = server_factory(listen=LISTEN)
    c = Imap(srv)
    user = f"x\r\n{FORGED_IMAP}{TERMINAL}".encode()
    reply = c.literal(b"a LOGIN", user, b' "wrong-password"')
    assert reply.startswith(b"a NO"), reply
    c.close()
    wait_until(lambda: any("authentication failed" in m for m in messages(srv)),
               what="the failed login in the log")
    assert_clean(srv)
    # The forged text is inside the failure's line, escaped, not a line.
    assert not any(m.startswith("imap login") for m in messages(srv)), messages(srv)
    failed = [m for m in messages(srv) if "authentication failed" in m]
    assert len(failed) == 1, failed
    # (The authenticator lower-cases the name it logs.)
    line = failed[0].lower()
    assert "info mailgate_imap::cmd::auth: imap login" in line, failed
    assert re.search(r"x(\\r\\n|\\x0d\\x0a)2026", line), failed
    assert "\\x1b[2j" in line or "\\u{1b}[2j" in line, failed


def test_smtp_auth_plain_authcid_cannot_forge_a_line(server_factory):
    srv = server_factory(listen=LISTEN)
    host, port = srv.ports["submission"]
    authcid = f"x\r\n{FORGED_SMTP}{TERMINAL}"
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")

        def cmd(line: bytes) -> bytes:
            s.sendall(line + b"\r\n")
            while True:
                r = f.readline()
                assert r, "connection closed"
                if r[3:4] != b"-":
                    return r

        assert f.readline().startswith(b"220")
        assert cmd(b"EHLO client.test").startswith(b"250")
        # A wrong password (logged by the authenticator), and another
        # identity asked for (logged by the SMTP session).
        for authzid in ("", "victim@example.test"):
            token = base64.b64encode(f"{authzid}\0{authcid}\0wrong".encode())
            assert cmd(b"AUTH PLAIN " + token).startswith(b"535"), authzid
    wait_until(lambda: sum(("authentication failed" in m or "authzid differs" in m)
                           for m in messages(srv)) >= 2, what="both refusals in the log")
    assert_clean(srv)
    assert not any(m.startswith("smtp: authenticated") for m in messages(srv)), messages(srv)


def test_helo_with_escape_sequences(server_factory):
    srv = server_factory(listen=LISTEN)
    with socket.create_connection(srv.ports["smtp"], timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        s.sendall(f"EHLO evil{TERMINAL}.example\r\n".encode())
        assert f.readline()[:1] in (b"2", b"5")
        s.sendall(b"HELO \x1b[31mred\xff\r\nQUIT\r\n")
        while f.readline():
            pass
    # A login afterwards, so the log surely holds lines after the probe.
    c = Imap(srv)
    c.literal(b"a LOGIN", b"nobody@example.test", b' "x"')
    c.close()
    wait_until(lambda: any("authentication failed" in m for m in messages(srv)),
               what="the failed login in the log")
    assert_clean(srv)


def test_a_60_kb_user_name_is_cut(server_factory):
    # A command line long enough for a 60 KB AUTH PLAIN (80 KB of base64).
    srv = server_factory(listen=LISTEN, limits={"max_command_line": 128 * 1024})
    with socket.create_connection(srv.ports["submission"], timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        s.sendall(b"EHLO client.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        token = base64.b64encode(b"\0" + b"a" * 60_000 + b"\0wrong")
        s.sendall(b"AUTH PLAIN " + token + b"\r\n")
        assert f.readline().startswith(b"535")
    wait_until(lambda: any("authentication failed" in m for m in messages(srv)),
               what="the failed login in the log")
    assert_clean(srv)
    [line] = [m for m in messages(srv) if "authentication failed" in m]
    assert "a" * 200 in line and "…(+" in line, line[:500]
    cut = int(re.search(r"…\(\+(\d+) bytes\)", line).group(1))
    assert 59_000 < cut < 60_001, line


@pytest.fixture
def debug_log(monkeypatch):
    """The server logs at debug level (the IMAP ID is logged there)."""
    monkeypatch.setenv("RUST_LOG", "debug")


def test_imap_id_values_escaped_at_debug_level(server_factory, debug_log):
    srv = server_factory(listen=LISTEN)
    c = Imap(srv)
    value = f"x\r\n{FORGED_IMAP}{TERMINAL}".encode() + b" \xff\xfe end"
    reply = c.literal(b'a ID ("name" "probe" "version"', value, b")")
    assert reply.startswith(b"a OK"), reply
    c.sock.sendall(b"b LOGOUT\r\n")
    c.close()
    wait_until(lambda: any("imap client id" in m for m in messages(srv)),
               what="the client's ID in the log")
    assert_clean(srv)
    [line] = [m for m in messages(srv) if "imap client id" in m]
    assert not any(m.startswith("imap login") for m in messages(srv)), messages(srv)
    # Bytes that are not UTF-8 are written as \xNN, not as U+FFFD.
    assert "\\xff\\xfe end" in line, line
