"""Many IMAP sessions on one mailbox (issue 17: one shared view per mailbox).

Two, three and fifty sessions on INBOX interleave STORE, EXPUNGE, APPEND,
MOVE and IDLE. The test keeps its own model of the mailbox (the truth: the
UIDs and flags that its own commands produced, learned from APPENDUID and
what each command did) and, per session, the list the session's client
has been told about. Each session applies the untagged responses it
receives as RFC 9051 says a client must:

- `* n EXPUNGE` removes the n-th message (n must be a valid number at
  that moment), `* VANISHED uids` removes by UID (QRESYNC);
- `* n EXISTS` never shrinks the list (§7.4.1: it only announces new
  messages; removals are told by EXPUNGE);
- `* n FETCH (FLAGS ...)` sets the n-th message's flags, and its UID, if
  given, must be the one the session has at n;
- no EXPUNGE while answering FETCH, STORE or SEARCH by sequence number
  (§7.5.1).

After a NOOP (or IDLE ... DONE) the session's list must equal the truth:
same UIDs in the same order, same flags; `FETCH 1:* (UID FLAGS)` then
checks every sequence number against it. A session that stays selected
through many changes without a command, and a session that disconnects
and resynchronises with QRESYNC/CONDSTORE, are checked the same way.
"""

from __future__ import annotations

import random
import re
import socket
import time

import pytest

from harness import USERS

ALICE = "alice@example.test"
ALICE_PW = USERS[ALICE]
LISTEN = {"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0"}

FETCH_RE = re.compile(rb"^\* (\d+) FETCH \((.*)\)$")
FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
UID_RE = re.compile(rb"\bUID (\d+)")
MODSEQ_RE = re.compile(rb"MODSEQ \((\d+)\)")


@pytest.fixture
def srv(server_factory):
    return server_factory(listen=dict(LISTEN))


def parse_set(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        lo_n, hi_n = int(lo), int(hi or lo)
        out.extend(range(min(lo_n, hi_n), max(lo_n, hi_n) + 1))
    return out


def uid_set(uids) -> str:
    return ",".join(str(u) for u in sorted(uids))


class Truth:
    """The mailbox as the test's own commands left it: UID -> flags."""

    def __init__(self):
        self.msgs: dict[int, frozenset[str]] = {}

    def uids(self) -> list[int]:
        return sorted(self.msgs)

    def add(self, uid, flags=()):
        self.msgs[uid] = frozenset(flags)

    def flag(self, uids, flags, add=True):
        for u in uids:
            if u in self.msgs:
                self.msgs[u] = (self.msgs[u] | set(flags)) if add else (self.msgs[u] - set(flags))

    def expunge_deleted(self, only=None) -> list[int]:
        gone = [u for u, f in self.msgs.items() if "\\Deleted" in f and (only is None or u in only)]
        for u in gone:
            del self.msgs[u]
        return gone

    def remove(self, uids):
        for u in uids:
            self.msgs.pop(u, None)


class Client:
    """A raw IMAP session with the client's model of the selected mailbox:
    a list of [uid or None, flags or None] in sequence order."""

    def __init__(self, srv, name: str, qresync=False):
        self.name = name
        self.sock = socket.create_connection(srv.ports["imap"], timeout=30)
        self.buf = b""
        self.n = 0
        self.qresync = qresync
        self.model: list[list] = []
        assert self.line().startswith(b"* OK")
        self.ok(f'LOGIN {ALICE} "{ALICE_PW}"'.encode())
        if qresync:
            self.ok(b"ENABLE QRESYNC")

    # --- wire -------------------------------------------------------------
    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{self.name}: closed; buffered {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, rest: bytes, literal: bytes | None = None) -> list[bytes]:
        self.n += 1
        tag = b"%s%d" % (self.name.encode(), self.n)
        if literal is None:
            self.sock.sendall(tag + b" " + rest + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + rest + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        out = []
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                return out + [ln]
            out.append(ln)

    def ok(self, rest: bytes, literal=None, by_seq=False) -> list[bytes]:
        lines = self.cmd(rest, literal)
        assert lines[-1].split(b" ")[1] == b"OK", (self.name, rest, lines)
        if by_seq:
            # RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE,
            # SEARCH by sequence number.
            assert not any(re.match(rb"^\* \d+ EXPUNGE$", ln) for ln in lines), (rest, lines)
        self.apply(lines[:-1])
        return lines

    # --- the client's model ----------------------------------------------
    def apply(self, lines):
        for ln in lines:
            if m := re.match(rb"^\* (\d+) EXPUNGE$", ln):
                n = int(m.group(1))
                assert 1 <= n <= len(self.model), (self.name, ln, len(self.model))
                del self.model[n - 1]
            elif m := re.match(rb"^\* VANISHED (\(EARLIER\) )?([\d:,]+)$", ln):
                assert self.qresync, (self.name, ln)
                gone = set(parse_set(m.group(2).decode()))
                before = len(self.model)
                self.model = [e for e in self.model if e[0] not in gone]
                if not m.group(1):
                    # Without EARLIER every UID named was in the list.
                    assert before - len(self.model) == len(gone), (self.name, ln)
            elif m := re.match(rb"^\* (\d+) EXISTS$", ln):
                n = int(m.group(1))
                assert n >= len(self.model), (self.name, "EXISTS shrank", ln, len(self.model))
                self.model.extend([None, None] for _ in range(n - len(self.model)))
            elif m := FETCH_RE.match(ln):
                n = int(m.group(1))
                assert 1 <= n <= len(self.model), (self.name, ln, len(self.model))
                entry = self.model[n - 1]
                if u := UID_RE.search(m.group(2)):
                    uid = int(u.group(1))
                    assert entry[0] in (None, uid), (self.name, "UID moved", ln, entry)
                    entry[0] = uid
                if f := FLAGS_RE.search(m.group(2)):
                    entry[1] = frozenset(f.group(1).decode().split())

    def select(self, truth: Truth, mailbox=b"INBOX"):
        lines = self.ok(b"SELECT " + mailbox)
        exists = [int(re.match(rb"^\* (\d+) EXISTS$", ln).group(1))
                  for ln in lines if re.match(rb"^\* \d+ EXISTS$", ln)]
        assert exists == [len(truth.msgs)], (self.name, lines)
        self.learn(truth)

    def learn(self, truth: Truth):
        """Fills the UIDs and flags of entries learned by EXISTS, as a
        client does after EXISTS (RFC 9051 §7.4.1), and checks the whole
        list against the truth by asking the server for every number."""
        if self.model:
            self.ok(b"FETCH 1:* (UID FLAGS)", by_seq=True)
        assert self.model_uids() == truth.uids(), (self.name, self.model_uids(), truth.uids())

    def caught_up(self, truth: Truth) -> bool:
        """Whether the list told so far is the truth (unknown UIDs and
        flags of new messages aside)."""
        uids = truth.uids()
        return len(self.model) == len(uids) and all(
            e[0] in (None, u) and e[1] in (None, truth.msgs[u]) for e, u in zip(self.model, uids))

    def model_uids(self):
        return [e[0] for e in self.model]

    def check(self, truth: Truth, how=b"NOOP"):
        """A NOOP (or nothing, if the responses were applied already), then
        the session's list must be the truth: UIDs, order and flags of
        everything it knew; then every number is checked on the wire."""
        if how:
            self.ok(how)
        uids = truth.uids()
        assert len(self.model) == len(uids), (self.name, self.model, uids)
        for e, u in zip(self.model, uids):
            assert e[0] in (None, u), (self.name, "sequence map", self.model_uids(), uids)
            if e[0] is not None and e[1] is not None:
                assert e[1] == truth.msgs[u], (self.name, u, e[1], truth.msgs[u])
        # Every sequence number on the wire, answered from the session's
        # numbering: must be the truth too.
        if uids:
            lines = self.cmd(b"FETCH 1:* (UID FLAGS)")
            assert lines[-1].split(b" ")[1] == b"OK", lines
            got = {}
            for ln in lines[:-1]:
                m = FETCH_RE.match(ln)
                assert m, (self.name, "unexpected", ln)
                n = int(m.group(1))
                uid = UID_RE.search(m.group(2))
                flags = FLAGS_RE.search(m.group(2))
                if uid and flags:
                    got[n] = (int(uid.group(1)), frozenset(flags.group(1).decode().split()))
            assert got == {i + 1: (u, truth.msgs[u]) for i, u in enumerate(uids)}, self.name
            for e, u in zip(self.model, uids):
                e[0], e[1] = u, truth.msgs[u]

    def seq_of(self, uid) -> int:
        return self.model_uids().index(uid) + 1

    # --- actions, each also applied to the truth -------------------------
    def append(self, truth: Truth, flags=()) -> int:
        body = b"From: a@example.test\r\nSubject: shared view\r\n\r\nhello\r\n"
        lines = self.ok(b"APPEND INBOX (" + " ".join(flags).encode() + b")", literal=body)
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", lines[-1]).group(1))
        truth.add(uid, flags)
        if self.model and self.model[-1] == [None, None]:
            # Its own APPEND's EXISTS: the client knows which UID that is.
            self.model[-1] = [uid, frozenset(flags)]
        return uid

    def store(self, truth: Truth, uid: int, flags, add=True, by_uid=True, silent=False):
        op = (b"+" if add else b"-") + b"FLAGS" + (b".SILENT" if silent else b"")
        fl = " ".join(flags).encode()
        if by_uid:
            self.ok(b"UID STORE %d %s (%s)" % (uid, op, fl))
        else:
            self.ok(b"STORE %d %s (%s)" % (self.seq_of(uid), op, fl), by_seq=True)
        truth.flag([uid], flags, add)
        if silent:
            # .SILENT: the client knows what it asked for.
            i = self.model_uids().index(uid)
            e = self.model[i]
            if e[1] is not None:
                e[1] = (e[1] | set(flags)) if add else (e[1] - set(flags))

    def expunge(self, truth: Truth):
        self.ok(b"EXPUNGE")
        truth.expunge_deleted()

    def move(self, truth: Truth, uid: int, to=b"Archive"):
        lines = self.ok(b"UID MOVE %d %s" % (uid, to))
        assert any(b"COPYUID" in ln for ln in lines), lines
        truth.remove([uid])

    def idle_start(self):
        self.n += 1
        self.idle_tag = b"%s%d" % (self.name.encode(), self.n)
        self.sock.sendall(self.idle_tag + b" IDLE\r\n")
        assert self.line().startswith(b"+ "), self.name

    def idle_read(self, until, timeout=5.0):
        """Applies what arrives during IDLE until `until(self)` holds."""
        deadline = time.monotonic() + timeout
        while not until(self):
            left = deadline - time.monotonic()
            assert left > 0, (self.name, "IDLE did not report", self.model)
            self.sock.settimeout(left)
            self.apply([self.line()])
        self.sock.settimeout(30)

    def idle_done(self):
        self.sock.sendall(b"DONE\r\n")
        out = []
        while True:
            ln = self.line()
            if ln.startswith(self.idle_tag + b" "):
                assert ln.split(b" ")[1] == b"OK", ln
                break
            out.append(ln)
        self.apply(out)

    def close(self):
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()


def setup(srv, n_msgs: int, sessions: int, qresync=()) -> tuple[Truth, list[Client]]:
    truth = Truth()
    first = Client(srv, "s0")
    for i in range(n_msgs):
        first.append(truth, ["\\Seen"] if i % 3 == 0 else [])
    clients = [first] + [Client(srv, f"s{i}", qresync=i in qresync) for i in range(1, sessions)]
    for c in clients:
        c.model = []
        c.select(truth)
    return truth, clients


# ------------------------------------------------------------------ tests
def test_two_sessions_store_expunge_append_move(srv):
    truth, (a, b) = setup(srv, 6, 2)
    u = truth.uids()
    b.store(truth, u[0], ["\\Flagged"])
    b.store(truth, u[2], ["\\Deleted"], silent=True)
    b.store(truth, u[4], ["\\Deleted"], by_uid=False)
    # a has not heard yet; its numbers are the old ones.
    a.store(truth, u[1], ["$Work"], by_uid=False)
    b.expunge(truth)
    b.check(truth)
    new = b.append(truth, ["\\Draft"])
    b.move(truth, u[3])
    # a: FETCH by sequence number must not announce the expunges.
    a.ok(b"FETCH 1:* (FLAGS)", by_seq=True)
    a.check(truth)
    assert a.model_uids() == truth.uids() and new in a.model_uids()
    b.check(truth)
    a.close()
    b.close()


def test_three_sessions_with_idle(srv):
    truth, (a, b, c) = setup(srv, 5, 3)
    c.idle_start()
    u = truth.uids()
    a.store(truth, u[1], ["\\Answered"])
    c.idle_read(lambda s: s.model[1][1] == truth.msgs[u[1]])
    b.store(truth, u[3], ["\\Deleted"])
    b.expunge(truth)
    c.idle_read(lambda s: len(s.model) == 4)
    new = a.append(truth)
    c.idle_read(lambda s: len(s.model) == 5)
    a.move(truth, u[0])
    c.idle_read(lambda s: u[0] not in s.model_uids())
    c.idle_done()
    c.check(truth)
    assert c.model_uids()[-1] == new
    a.check(truth)
    b.check(truth)
    for x in (a, b, c):
        x.close()


def test_fifty_sessions_interleaved(srv):
    rng = random.Random(17)
    truth, clients = setup(srv, 20, 50, qresync={7, 21, 33})
    idlers = clients[40:45]
    for s in idlers:
        s.idle_start()
    sleeper = clients[49]  # selected, silent through everything, then NOOP
    actors = clients[:40]
    for step in range(150):
        s = rng.choice(actors)
        # The actor first catches up (as a real client does before using
        # sequence numbers), then acts.
        s.check(truth)
        uids = truth.uids()
        what = rng.random()
        if what < 0.35 and uids:
            flag = rng.choice(["\\Seen", "\\Flagged", "\\Answered", "$Label1", "$Label2"])
            s.store(truth, rng.choice(uids), [flag], add=rng.random() < 0.7,
                    by_uid=rng.random() < 0.5, silent=rng.random() < 0.3)
        elif what < 0.55 and uids:
            s.store(truth, rng.choice(uids), ["\\Deleted"], by_uid=rng.random() < 0.5)
            s.expunge(truth)
        elif what < 0.8 or len(uids) < 5:
            s.append(truth, rng.choice([[], ["\\Seen"], ["$Label3"]]))
        else:
            s.move(truth, rng.choice(uids))
        if step % 25 == 24:
            for other in rng.sample(actors, 5):
                other.check(truth)
    for s in idlers:
        # Wait until this session's list has caught up, then end IDLE.
        s.idle_read(lambda x: x.caught_up(truth), timeout=10)
        s.idle_done()
        s.check(truth)
    sleeper.check(truth)
    for s in clients:
        s.check(truth)
    for s in clients:
        s.close()


def test_idle_session_through_many_changes_then_noop(srv):
    truth, (a, sleeper) = setup(srv, 80, 2)
    for i in range(200):
        uids = truth.uids()
        k = i % 4
        if k == 0:
            a.append(truth, ["\\Seen"] if i % 8 == 0 else [])
        elif k == 1:
            a.store(truth, uids[i % len(uids)], ["\\Flagged"], add=(i // 4) % 2 == 0)
        elif k == 2:
            a.store(truth, uids[(i * 7) % len(uids)], ["\\Deleted"], silent=True)
            a.expunge(truth)
        else:
            a.move(truth, uids[(i * 3) % len(uids)])
    known_gone = set(sleeper.model_uids()) - set(truth.uids())
    t0 = time.monotonic()
    lines = sleeper.ok(b"NOOP")
    elapsed = time.monotonic() - t0
    expunges = [ln for ln in lines if ln.endswith(b" EXPUNGE")]
    assert len(expunges) == len(known_gone) > 20, (len(expunges), len(known_gone))
    sleeper.check(truth, how=None)
    assert elapsed < 5, elapsed
    a.close()
    sleeper.close()


def test_qresync_and_condstore_after_changes_while_disconnected(srv):
    truth, (a, b) = setup(srv, 12, 2, qresync={1})
    lines = b.ok(b"SELECT INBOX")  # again: learns UIDVALIDITY and HIGHESTMODSEQ
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b" ".join(lines)).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b" ".join(lines)).group(1))
    saved = dict(truth.msgs)
    b.close()
    u = truth.uids()
    a.store(truth, u[0], ["\\Flagged"])
    a.store(truth, u[5], ["$Later"])
    a.store(truth, u[2], ["\\Deleted"])
    a.store(truth, u[7], ["\\Deleted"])
    a.expunge(truth)
    a.move(truth, u[9])
    new = [a.append(truth), a.append(truth, ["\\Seen"])]
    # Reconnect: the client's list is what it saved.
    c = Client(srv, "c", qresync=True)
    c.model = [[uid, flags] for uid, flags in sorted(saved.items())]
    lines = c.cmd(b"SELECT INBOX (QRESYNC (%d %d %s))" % (uv, modseq, uid_set(saved).encode()))
    assert lines[-1].split(b" ")[1:3] == [b"OK", b"[READ-WRITE]"], lines
    # A SELECT's answer is not incremental: EXISTS is the count, FETCH
    # numbers are the new ones; the client applies them by UID.
    vanished = [ln for ln in lines if ln.startswith(b"* VANISHED (EARLIER) ")]
    assert len(vanished) == 1, lines
    gone = set(parse_set(vanished[0].split()[-1].decode()))
    assert gone == set(saved) - set(truth.msgs), (gone, lines)
    changed = {}
    for ln in lines:
        if m := FETCH_RE.match(ln):
            changed[int(UID_RE.search(m.group(2)).group(1))] = frozenset(
                FLAGS_RE.search(m.group(2)).group(1).decode().split())
    assert {u[0], u[5]} <= set(changed), lines
    exists = [int(m.group(1)) for ln in lines if (m := re.match(rb"^\* (\d+) EXISTS$", ln))]
    assert exists == [len(truth.msgs)], lines
    c.model = [[x, changed.get(x, f)] for x, f in sorted(saved.items()) if x not in gone]
    c.model.extend([None, None] for _ in range(len(truth.msgs) - len(c.model)))
    c.check(truth, how=None)
    assert c.model_uids()[-2:] == new
    # CONDSTORE: CHANGEDSINCE names exactly what changed (flags or new),
    # VANISHED what went.
    lines = c.ok(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    vanished = [ln for ln in lines if ln.startswith(b"* VANISHED (EARLIER) ")]
    assert vanished and set(parse_set(vanished[0].split()[-1].decode())) == {u[2], u[7], u[9]}
    changed = {int(UID_RE.search(ln).group(1)) for ln in lines if FETCH_RE.match(ln)}
    want = {x for x in truth.msgs if saved.get(x) != truth.msgs[x]}
    assert changed == want, (changed, want)
    a.check(truth)
    a.close()
    c.close()


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


def test_sessions_on_a_large_mailbox_share_its_list(srv):
    """60 sessions select a 4,000-message INBOX: the server grows by far
    less than 60 copies of the message list (each at least 64 bytes a
    message, 250 KiB here; a session's own state is a few KiB)."""
    n, sessions = 4000, 60
    first = Client(srv, "f")
    body = b"Subject: s\r\n\r\nx\r\n"
    for start in range(0, n, 500):
        parts = [b"(\\Seen) {%d+}\r\n" % len(body) + body for _ in range(start, min(n, start + 500))]
        lines = first.cmd(b"APPEND INBOX " + b" ".join(parts))
        assert lines[-1].split(b" ")[1] == b"OK", lines[-1]
    first.ok(b"SELECT INBOX")  # the list is read once, before measuring
    time.sleep(0.3)
    before = rss_kib(srv.proc.pid)
    clients = []
    for i in range(sessions):
        c = Client(srv, f"c{i}")
        lines = c.ok(b"SELECT INBOX")
        assert b"* %d EXISTS" % n in lines, lines[:2]
        clients.append(c)
    time.sleep(0.3)
    grown = rss_kib(srv.proc.pid) - before
    print(f"60 sessions on {n} messages: {grown} KiB")
    assert grown < sessions * 64, f"{grown} KiB for {sessions} sessions"
    # And they all still follow changes.
    first.ok(b"STORE 1 +FLAGS.SILENT (\\Flagged)")
    for c in clients[::15]:
        lines = c.ok(b"NOOP")
        assert any(ln.startswith(b"* 1 FETCH (") and b"\\Flagged" in ln for ln in lines), lines
    for c in clients + [first]:
        c.close()
