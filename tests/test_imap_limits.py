"""IMAP bounds against the real binary (docs/security.md, "Memory per
session" and "Timeouts and slow clients"): what a client can make the
server hold or wait for, each pushed past its bound with raw sockets.

Memory is measured as the server process's resident size
(/proc/PID/status VmRSS) before and after the attack; each attack would
add tens or hundreds of MB to a server that buffered it, and the tests
allow a few MB of noise (allocator, SQLite cache, thread stacks).

- commands before login: LOGIN and ID with literals that add up (8 KiB
  in all before login);
- a command after COMPRESS=DEFLATE: little on the wire, much inflated
  (64 KiB of literals after login);
- FETCH repeating BODY.PEEK[] of a large message while the client does
  not read (the answer is streamed, not built);
- a command line trickled in a byte at a time ([limits] command_timeout);
- NUL bytes: never inside an ordinary literal, in any FETCH item; BINARY
  sends them in a literal8; SEARCH matches what FETCH shows.

min_transfer_rate has a 30-second grace, too long for this suite; it is
tested over the real network loop with a short grace in
host/imap/tests/limits.rs.
"""

from __future__ import annotations

import re
import socket
import time
import zlib
from pathlib import Path

import pytest

from harness import USERS

ALICE = "alice@example.test"
ALICE_PW = USERS[ALICE]
LISTEN = {"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0"}
MB = 1024 * 1024
# Growth of the server's RSS tolerated during an attack (noise).
RSS_SLACK = 24 * MB


def rss(srv) -> int:
    status = Path(f"/proc/{srv.proc.pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024


class Raw:
    """A raw IMAP client: send bytes, read lines with their literals."""

    def __init__(self, addr, timeout=30):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _more(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed; buffered {self.buf[:200]!r}")
        self.buf += chunk

    def line(self) -> bytes:
        """One response line with its literals inline (`{n}` or `~{n}`)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._more()
            line, _, self.buf = self.buf.partition(b"\r\n")
            out += line
            m = re.search(rb"~?\{(\d+)\}$", line)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._more()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]

    def until(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + b" ") or line.startswith(b"* BYE"):
                return out

    def cmd(self, tag: bytes, rest: bytes) -> list[bytes]:
        self.send(tag + b" " + rest + b"\r\n")
        return self.until(tag)

    def closed_within(self, seconds: float) -> bool:
        """Reads (and drops) until the server closes, for up to `seconds`."""
        self.sock.settimeout(0.5)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self):
        self.sock.close()


def connect(srv) -> Raw:
    r = Raw(srv.ports["imap"])
    assert r.line().startswith(b"* OK")
    return r


def login(srv) -> Raw:
    r = connect(srv)
    assert r.cmd(b"l", f'LOGIN {ALICE} "{ALICE_PW}"'.encode())[-1].startswith(b"l OK")
    return r


@pytest.fixture
def srv(server_factory):
    return server_factory(listen=dict(LISTEN))


def flood_literals(r: Raw, head: bytes, total: int, size=60000):
    """`head` then non-synchronizing literals of `size` bytes, `total`
    bytes in all, never ending the command; stops early if the server
    closes."""
    r.send(head)
    chunk = b" {%d+}\r\n" % size + b"x" * size
    sent = 0
    try:
        while sent < total:
            r.send(chunk)
            sent += len(chunk)
    except OSError:
        pass


# ------------------------------------------------------- before login
def test_literals_before_login_are_bounded(srv):
    """`ID (` and `LOGIN` followed by literal after literal, never ended:
    refused at the 8 KiB of a command before login, and nothing of them is
    held. 3 connections x 40 MB; a buffering server grows by 120 MB."""
    before = rss(srv)
    conns = []
    for head in (b"a ID (", b"a LOGIN", b"a ID ("):
        r = connect(srv)
        flood_literals(r, head, 40 * MB)
        conns.append(r)
    time.sleep(0.5)
    grown = rss(srv) - before
    for r in conns:
        first = r.line()
        assert first.startswith((b"a BAD [TOOBIG]", b"* BYE")), first
        r.close()
    assert grown < RSS_SLACK, f"RSS grew by {grown / MB:.1f} MB"
    # Small literals add up too; a normal login with literals still works.
    r = connect(srv)
    r.send(b"b LOGIN {3000+}\r\n" + b"u" * 3000 + b" {3000+}\r\n" + b"p" * 3000 + b"\r\n")
    assert r.line().startswith(b"b BAD [TOOBIG]")
    r.send(b"c LOGIN {%d}\r\n" % len(ALICE))
    assert r.line().startswith(b"+ ")
    r.send(ALICE.encode() + b" {%d}\r\n" % len(ALICE_PW.encode()))
    assert r.line().startswith(b"+ ")
    r.send(ALICE_PW.encode() + b"\r\n")
    assert r.until(b"c")[-1].startswith(b"c OK")
    r.close()


def test_synchronizing_literal_over_the_login_budget_is_refused(srv):
    r = connect(srv)
    assert r.cmd(b"a", b"LOGIN {5000}")[-1].startswith(b"a NO [TOOBIG]")
    # Long command text before login (no literal at all).
    assert r.cmd(b"b", b"ID (" + b'"k" "v" ' * 1000 + b")")[-1].startswith(b"b BAD")
    assert r.cmd(b"c", b"NOOP")[-1].startswith(b"c OK")
    r.close()


# ------------------------------------------------- after COMPRESS
def test_inflated_command_after_compress_is_bounded(srv):
    """After COMPRESS=DEFLATE, 100 MB of literals cost under 1 MB on the
    wire; they are refused at the 64 KiB of literals a command may hold
    after login, and not held."""
    r = login(srv)
    assert r.cmd(b"z", b"COMPRESS DEFLATE")[-1].startswith(b"z OK")
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    decomp = zlib.decompressobj(-15)
    before = rss(srv)
    wire = comp.compress(b"a ID (")
    chunk = b" {60000+}\r\n" + b"x" * 60000
    for _ in range(100 * MB // len(chunk)):
        wire += comp.compress(chunk)
        if len(wire) > 16384:
            r.send(wire)
            wire = b""
    r.send(wire + comp.flush(zlib.Z_SYNC_FLUSH))
    time.sleep(0.5)
    grown = rss(srv) - before
    got = b""
    r.sock.settimeout(10)
    while b"\r\n" not in got:
        got += decomp.decompress(r.sock.recv(1 << 16))
    assert got.startswith((b"a BAD [TOOBIG]", b"* BYE")), got[:200]
    assert grown < RSS_SLACK, f"RSS grew by {grown / MB:.1f} MB"
    r.close()


# ------------------------------------------------------------ FETCH
def test_fetch_repeating_a_large_body_is_streamed(srv):
    """UID FETCH of BODY.PEEK[] 400 times on a 700 KB message (280 MB of
    answer) while the client reads nothing: the server holds a bounded
    part of it; a short repetition comes out whole and correct."""
    body = b"".join(b"line %06d of a large message\r\n" % i for i in range(23000))
    msg = b"Subject: big\r\n\r\n" + body
    r = login(srv)
    r.send(b"p APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    assert r.until(b"p")[-1].startswith(b"p OK")
    assert r.cmd(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    # Correct when read: three copies.
    lines = r.cmd(b"f", b"UID FETCH 1 (BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[])")
    assert lines[-1].startswith(b"f OK"), lines[-1]
    fetched = lines[0]
    assert fetched.count(msg) == 2 and fetched.count(body) == 3, len(fetched)
    # Not read: 400 copies asked for.
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    before = rss(srv)
    r.send(b"g UID FETCH 1 (" + b" ".join([b"BODY.PEEK[]"] * 400) + b")\r\n")
    time.sleep(3)
    grown = rss(srv) - before
    r.close()
    assert grown < RSS_SLACK, f"RSS grew by {grown / MB:.1f} MB"
    # The server goes on serving.
    r = login(srv)
    assert r.cmd(b"n", b"NOOP")[-1].startswith(b"n OK")
    r.close()


# ------------------------------------------------------------ timeouts
def test_trickled_command_is_cut_at_command_timeout(server_factory):
    """command_timeout = 3: a command trickled a byte every half second
    (never silent) is cut after about 3 s, before and after login; a
    session silent between commands is not (that is the idle timeout)."""
    srv = server_factory(listen=dict(LISTEN), limits={"command_timeout": 3})
    quiet = login(srv)
    for r in (login(srv), connect(srv)):
        t0 = time.monotonic()
        closed = False
        for b in b"a NOOP and then some more words that never end":
            try:
                r.send(bytes([b]))
            except OSError:
                closed = True
                break
            if r.closed_within(0.5):
                closed = True
                break
        elapsed = time.monotonic() - t0
        assert closed, "a trickled command kept the session open"
        assert 2.5 < elapsed < 8, elapsed
        assert b"* BYE" in r.buf, r.buf
        r.close()
    # Silent for longer than command_timeout between commands: still open.
    assert quiet.cmd(b"q", b"NOOP")[-1].startswith(b"q OK")
    quiet.close()


# ------------------------------------------------------------- NUL
NUL_MSG = (b"From: a@x.example\r\nSubject: nul\x00here\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain\r\n\r\nabc\x00def\r\nend\r\n")


def test_nul_is_never_sent_in_a_literal(srv):
    """RFC 9051 §4.3: a literal never holds NUL. Every item shows it as
    0x80 (same size); BINARY uses literal8 with the NUL; SEARCH finds
    what FETCH shows and nothing it does not."""
    r = login(srv)
    r.send(b"p APPEND INBOX {%d+}\r\n" % len(NUL_MSG) + NUL_MSG + b"\r\n")
    assert r.until(b"p")[-1].startswith(b"p OK")
    assert r.cmd(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    shown = NUL_MSG.replace(b"\x00", b"\x80")
    header, _, text = shown.partition(b"\r\n\r\n")
    for item, want in [
        (b"BODY.PEEK[]", shown),
        (b"BODY.PEEK[HEADER]", header + b"\r\n\r\n"),
        (b"BODY.PEEK[TEXT]", text),
        (b"BODY.PEEK[1]", text),
        (b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]", b"Subject: nul\x80here\r\n\r\n"),
        (b"BODY.PEEK[]<10.200>", shown[10:210]),
        (b"RFC822", shown),
        (b"RFC822.HEADER", header + b"\r\n\r\n"),
        (b"RFC822.TEXT", text),
    ]:
        lines = r.cmd(b"f", b"FETCH 1 (" + item + b")")
        assert lines[-1].startswith(b"f OK"), (item, lines)
        assert b"\x00" not in b"".join(lines), (item, lines)
        m = re.search(rb"\{(\d+)\}\r\n", lines[0])
        literal = lines[0][m.end():m.end() + int(m.group(1))]
        assert literal == want, (item, literal)
    lines = r.cmd(b"f", b"FETCH 1 (ENVELOPE)")
    assert b"\x00" not in lines[0] and b"nul\x80here" in lines[0], lines
    # BINARY: the bytes as they are, in a literal8.
    lines = r.cmd(b"b", b"FETCH 1 (BINARY.PEEK[1])")
    assert lines[0].endswith(b"BINARY[1] ~{14}\r\nabc\x00def\r\nend\r\n)"), lines
    # SEARCH matches the message as FETCH shows it.
    assert r.cmd(b"k", b'SEARCH BODY "abc"')[0] == b"* SEARCH 1"
    assert r.cmd(b"k", b'SEARCH BODY "def"')[0] == b"* SEARCH 1"
    r.send(b"k SEARCH BODY {3}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"c\x00d\r\n")
    lines = r.until(b"k")
    assert lines[-1].startswith(b"k OK") and lines[0] == b"* SEARCH", lines
    r.close()
