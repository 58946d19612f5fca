"""Two mailgate nodes sharing one PostgreSQL store (docs/scaling.md).

Node A listens on 127.0.0.2, node B on 127.0.0.3, both with `[store] backend
= "postgres"` on the same database of a private PostgreSQL server
(tests/pg_server.py). Mail accepted by A's SMTP wakes an IMAP IDLE session on
B within a second (the change log read by every node, LISTEN/NOTIFY as the
wake-up), and an account made with A's CLI can log in on B.

What the nodes share for sessions and logins:
- the POP3 maildrop lock: a session on A holds the maildrop against B
  (`-ERR [IN-USE]`), A's QUIT frees it for B at once, and when A is killed
  (SIGKILL) PostgreSQL ends A's connections and B gets in within seconds;
- the failed-login limits: failures on A and on B add up to one
  `max_failures`, per client and per account, and an address where the
  account logged in on one node is spared on the other;
- CONDSTORE: flags stored on B reach a session selected on A, as an
  untagged FETCH with MODSEQ during IDLE and in FETCH (CHANGEDSINCE).
"""

from __future__ import annotations

import re
import socket
import time

import pytest

import pg_server
from harness import NET_TIMEOUT, USERS, Server, make_message
from test_login_limits import attempt
from test_store_backend import without_store

ALICE = "alice@example.test"
BOB = "bob@example.test"
# A small limit and no waiting, for the failed-login tests (the IDLE and
# lock tests never fail a login).
MAX_FAILURES = 4

pytestmark = pytest.mark.skipif(not pg_server.available(), reason="PostgreSQL is not installed")


@pytest.fixture
def two_nodes(mailgate_bin, tmp_path):
    pg = pg_server.PgServer()
    nodes: list[Server] = []
    try:
        db = pg.create_database()
        url = pg.url(db)
        for name, ip in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
            srv = Server(binary=mailgate_bin, workdir=tmp_path / name,
                         listen={"smtp": f"{ip}:0", "imap": f"{ip}:0", "pop3": f"{ip}:0"},
                         auth={"max_failures": MAX_FAILURES, "failure_delay_ms": 1})
            srv.config.write_text(
                without_store(srv.config.read_text())
                + f'\n[store]\nbackend = "postgres"\nexperimental = true\nurl = "{url}"\n',
                encoding="utf-8")
            srv.pg, srv.pg_db = pg, db
            nodes.append(srv)
        nodes[0].add_user(ALICE, USERS[ALICE])
        nodes[1].add_user(BOB, USERS[BOB])
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


class Pop3:
    """A raw POP3 client (USER/PASS, one-line answers)."""

    def __init__(self, addr, source=None):
        src = (source, 0) if source else None
        self.sock = socket.create_connection(addr, timeout=NET_TIMEOUT, source_address=src)
        self.buf = b""
        assert self.line().startswith(b"+OK")

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def login(self, user: str) -> bytes:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {USERS[user]}")

    def close(self):
        self.sock.close()


def pop3_login(srv, user=ALICE) -> tuple[Pop3, bytes]:
    c = Pop3(srv.ports["pop3"])
    return c, c.login(user)


def test_the_pop3_lock_holds_across_nodes_and_goes_with_a_killed_node(two_nodes):
    a, b = two_nodes
    a.send("sender@remote.test", [ALICE], make_message(subject="one"))
    on_a, answer = pop3_login(a)
    assert answer.startswith(b"+OK"), answer
    # B: the maildrop is A's (RFC 2449 IN-USE); the session stays in
    # AUTHORIZATION.
    on_b, answer = pop3_login(b)
    assert answer.startswith(b"-ERR [IN-USE]"), answer
    on_b.close()
    assert on_a.cmd("DELE 1").startswith(b"+OK")
    assert on_a.cmd("QUIT").startswith(b"+OK")
    on_a.close()
    # A's QUIT gave the lock back before its +OK: B gets in at once, and
    # sees the message A removed gone.
    on_b, answer = pop3_login(b)
    assert answer.startswith(b"+OK"), answer
    assert on_b.cmd("STAT").startswith(b"+OK 0 "), "A's DELE not seen on B"
    on_a, answer = pop3_login(a)
    assert answer.startswith(b"-ERR [IN-USE]"), answer
    on_a.close()
    assert on_b.cmd("QUIT").startswith(b"+OK")
    on_b.close()

    # A holds the maildrop and dies: PostgreSQL ends A's connections, and
    # with them its lock; B gets in within a few seconds.
    on_a, answer = pop3_login(a)
    assert answer.startswith(b"+OK"), answer
    on_b, answer = pop3_login(b)
    assert answer.startswith(b"-ERR [IN-USE]"), answer
    on_b.close()
    a.kill()
    on_a.close()
    killed = time.monotonic()
    while True:
        on_b, answer = pop3_login(b)
        if answer.startswith(b"+OK"):
            break
        on_b.close()
        assert answer.startswith(b"-ERR [IN-USE]"), answer
        assert time.monotonic() - killed < 5.0, "B still locked out 5 s after A was killed"
        time.sleep(0.05)
    took = time.monotonic() - killed
    print(f"B logged in {took:.2f} s after A was killed")
    assert on_b.cmd("QUIT").startswith(b"+OK")
    on_b.close()


def test_a_session_whose_lock_connection_broke_deletes_nothing(two_nodes):
    a, b = two_nodes
    a.send("sender@remote.test", [ALICE], make_message(subject="keep me"))
    on_a, answer = pop3_login(a)
    assert answer.startswith(b"+OK"), answer
    assert on_a.cmd("DELE 1").startswith(b"+OK")
    # A's lock connection is ended (a database restart or a network cut
    # would do the same): the lock is gone on the database.
    ended = a.pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     f"WHERE datname = '{a.pg_db}' AND application_name LIKE 'mailgate-pop3-locks%'",
                     db=a.pg_db)
    assert ended.strip() == "1", ended
    # B may now open the maildrop...
    deadline = time.monotonic() + 5.0
    while True:
        on_b, answer = pop3_login(b)
        if answer.startswith(b"+OK"):
            break
        on_b.close()
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)
    assert on_b.cmd("STAT").startswith(b"+OK 1 ")
    # ... so A's QUIT removes nothing, and says so.
    answer = on_a.cmd("QUIT")
    assert answer.startswith(b"-ERR [SYS/TEMP]"), answer
    on_a.close()
    assert on_b.cmd("QUIT").startswith(b"+OK")
    on_b.close()
    on_b, answer = pop3_login(b)
    assert answer.startswith(b"+OK"), answer
    assert on_b.cmd("STAT").startswith(b"+OK 1 "), "A deleted without its lock"
    assert on_b.cmd("QUIT").startswith(b"+OK")
    on_b.close()


def test_failed_logins_on_both_nodes_add_up(two_nodes):
    a, b = two_nodes
    owner = "127.0.0.62"
    # The owner logs in on B: that address is trusted for the account
    # everywhere.
    assert attempt(b, ALICE, USERS[ALICE], owner, "pop3-user") == "success"
    # Per account: failures from four addresses, half on each node.
    for i, node in enumerate((a, b, a, b)):
        assert attempt(node, ALICE, "guess", f"127.0.0.{70 + i}", "pop3-user") == "tested"
    # The account has had MAX_FAILURES failures: refused on both nodes from
    # an address it never logged in from, by POP3 and by IMAP...
    for node in (a, b):
        assert attempt(node, ALICE, USERS[ALICE], "127.0.0.74", "pop3-user") == "refused"
        assert attempt(node, ALICE, USERS[ALICE], "127.0.0.74", "imap-login") == "refused"
    # ... but not from the owner's address, on the node where it never
    # logged in either (a success clears no counter: the account stays
    # refused for strangers).
    assert attempt(a, ALICE, USERS[ALICE], owner, "pop3-user") == "success"
    assert attempt(b, ALICE, USERS[ALICE], "127.0.0.75", "imap-login") == "refused"
    # Per client: one address, names it guesses, half on each node.
    attacker = "127.0.0.80"
    for i, node in enumerate((a, b, a, b)):
        assert attempt(node, f"nobody{i}@example.test", "guess", attacker, "pop3-user") == "tested"
    for node in (a, b):
        assert attempt(node, BOB, USERS[BOB], attacker, "pop3-user") == "refused"
    # Other addresses are not affected.
    assert attempt(a, BOB, USERS[BOB], "127.0.0.81", "pop3-user") == "success"


def test_flags_stored_on_one_node_reach_a_condstore_session_on_the_other(two_nodes):
    a, b = two_nodes
    a.send("sender@remote.test", [ALICE], make_message(subject="flag me"))
    on_a = Imap(a.ports["imap"])
    on_b = Imap(b.ports["imap"])
    try:
        on_a.cmd("a1", f'LOGIN "{ALICE}" "{USERS[ALICE]}"')
        selected = on_a.cmd("a2", "SELECT INBOX (CONDSTORE)")
        m = next((re.search(rb"\[HIGHESTMODSEQ (\d+)\]", ln) for ln in selected
                  if b"HIGHESTMODSEQ" in ln), None)
        assert m, selected
        before = int(m.group(1))
        on_a.sock.sendall(b"a3 IDLE\r\n")
        assert on_a.line().startswith(b"+")
        on_b.cmd("b1", f'LOGIN "{ALICE}" "{USERS[ALICE]}"')
        on_b.cmd("b2", "SELECT INBOX")
        stored = time.monotonic()
        on_b.cmd("b3", r"STORE 1 +FLAGS (\Flagged)")
        # A hears of it during IDLE, with the new MODSEQ (RFC 7162 §3.2).
        while True:
            left = 2.0 - (time.monotonic() - stored)
            assert left > 0, "no FETCH on node A within two seconds of B's STORE"
            line = on_a.line(timeout=left)
            if line.startswith(b"* 1 FETCH"):
                break
        assert b"\\Flagged" in line, line
        pushed = re.search(rb"MODSEQ \((\d+)\)", line)
        assert pushed and int(pushed.group(1)) > before, line
        on_a.sock.sendall(b"DONE\r\n")
        assert on_a.line().startswith(b"a3 OK")
        changed = on_a.cmd("a4", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {before})")
        fetched = [ln for ln in changed if ln.startswith(b"* 1 FETCH")]
        assert len(fetched) == 1 and b"\\Flagged" in fetched[0], changed
        assert re.search(rb"MODSEQ \(" + pushed.group(1) + rb"\)", fetched[0]), changed
        # Nothing changed since that MODSEQ.
        later = on_a.cmd("a5", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {pushed.group(1).decode()})")
        assert not any(ln.startswith(b"* 1 FETCH") for ln in later), later
    finally:
        on_a.close()
        on_b.close()
