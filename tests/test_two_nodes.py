"""Two mailgate nodes sharing one PostgreSQL store (docs/scaling.md).

Node A listens on 127.0.0.2, node B on 127.0.0.3, both with `[store] backend
= "postgres"` on the same database of a private PostgreSQL server
(tests/pg_server.py). Mail accepted by A's SMTP wakes an IMAP IDLE session on
B within a second (the change log read by every node, LISTEN/NOTIFY as the
wake-up), and an account made with A's CLI can log in on B.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

import pg_server
from harness import NET_TIMEOUT, USERS, Server, make_message
from test_store_backend import without_store

ALICE = "alice@example.test"

pytestmark = pytest.mark.skipif(not pg_server.available(), reason="PostgreSQL is not installed")


@pytest.fixture
def two_nodes(mailgate_bin, tmp_path):
    pg = pg_server.PgServer()
    nodes: list[Server] = []
    try:
        url = pg.url(pg.create_database())
        for name, ip in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
            srv = Server(binary=mailgate_bin, workdir=tmp_path / name,
                         listen={"smtp": f"{ip}:0", "imap": f"{ip}:0"})
            srv.config.write_text(
                without_store(srv.config.read_text())
                + f'\n[store]\nbackend = "postgres"\nexperimental = true\nurl = "{url}"\n',
                encoding="utf-8")
            nodes.append(srv)
        nodes[0].add_user(ALICE, USERS[ALICE])
        for srv in nodes:
            srv.start()
        yield nodes
    finally:
        for srv in nodes:
            srv.stop()
        pg.stop()


class Imap:
    """A raw IMAP client: enough for LOGIN, SELECT and IDLE."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=NET_TIMEOUT)
        self.buf = b""
        assert self.line().startswith(b"* OK")

    def line(self, timeout=NET_TIMEOUT) -> bytes:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, tag: str, text: str) -> list[bytes]:
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag.encode() + b" "):
                assert line.startswith(tag.encode() + b" OK"), out
                return out

    def close(self):
        self.sock.close()


def test_a_delivery_on_one_node_wakes_idle_on_the_other(two_nodes):
    a, b = two_nodes
    assert a.smtp_addr[0] == "127.0.0.2" and b.ports["imap"][0] == "127.0.0.3"
    c = Imap(b.ports["imap"])
    try:
        c.cmd("a1", f'LOGIN "{ALICE}" "{USERS[ALICE]}"')
        selected = c.cmd("a2", "SELECT INBOX")
        assert b"* 0 EXISTS" in selected, selected
        c.sock.sendall(b"a3 IDLE\r\n")
        assert c.line().startswith(b"+")
        sent = time.monotonic()
        a.send("sender@remote.test", [ALICE], make_message(subject="across nodes"))
        # Within a second of node A's 250, node B's session hears of it.
        while True:
            left = 1.0 - (time.monotonic() - sent)
            assert left > 0, "no EXISTS on node B within one second of node A's 250"
            line = c.line(timeout=left)
            if re.match(rb"^\* 1 EXISTS$", line):
                break
        c.sock.sendall(b"DONE\r\n")
        assert c.line().startswith(b"a3 OK")
        fetched = c.cmd("a4", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert any(b"across nodes" in ln for ln in fetched), fetched
    finally:
        c.close()
