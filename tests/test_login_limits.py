"""Login limits against an attacker (issue 10, "Fit for the open internet"),
with the real binary and raw sockets on every password protocol.

- a parallel burst of wrong passwords from one address, with the right one
  among them, tests no more than `max_failures` passwords, mixed over SMTP
  AUTH, POP3 USER/PASS and AUTH, IMAP LOGIN and AUTHENTICATE; the right
  password is refused afterwards from that address;
- the same burst spread over many addresses against one account;
- a stranger cannot lock the owner out: after an attacker's failures, the
  owner still logs in from an address where they logged in before, while
  the attacker's address, and (for that account) addresses never used by
  the owner, are refused;
- the verified-credential cache is invalidated at once by `mailgate user
  passwd` and `mailgate user del` run while the server runs; `cache_ttl =
  "0"` is accepted, a malformed `cache_ttl` stops the server at start.

No test here is timed: the cache's speed is measured by the benchmark
(bench/, docs/performance.md), not asserted.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness import NET_TIMEOUT, USERS, plain_b64

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
VICTIM = "victim@example.test"
LISTEN = {"submission": "127.0.0.1:0", "pop3": "127.0.0.1:0", "imap": "127.0.0.1:0"}

# What each protocol answers: the password was checked and is wrong, the
# attempt was refused without a check (too many failures), or success.
TESTED = (b"-ERR [AUTH]", b"NO [AUTHENTICATIONFAILED]", b"535 ")
REFUSED = (b"-ERR [SYS/TEMP]", b"NO [UNAVAILABLE]", b"454 ")
SUCCESS = (b"+OK", b"OK", b"235 ")


def classify(answer: bytes) -> str:
    for kind, prefixes in (("tested", TESTED), ("refused", REFUSED), ("success", SUCCESS)):
        if any(answer.startswith(p) for p in prefixes):
            return kind
    raise AssertionError(f"unexpected answer {answer!r}")


class Client:
    """One raw connection prepared up to the point where a password goes
    out; `send_password` then sends the last line and `answer` reads the
    final answer (for IMAP without the tag)."""

    def __init__(self, srv, kind: str, user: str, source: str):
        self.kind = kind
        proto = {"pop3-user": "pop3", "pop3-plain": "pop3", "imap-login": "imap",
                 "imap-plain": "imap", "smtp-plain": "submission"}[kind]
        self.sock = socket.create_connection(srv.ports[proto], timeout=NET_TIMEOUT,
                                             source_address=(source, 0))
        self.buf = b""
        self.user = user
        greeting = self.line()
        assert greeting[:1] in (b"+", b"*", b"2"), greeting
        if kind == "pop3-user":
            self.send(b"USER " + user.encode())
            assert self.line().startswith(b"+OK")
        elif kind == "smtp-plain":
            self.send(b"EHLO client.test")
            while not self.line().startswith(b"250 "):
                pass

    def send(self, data: bytes):
        self.sock.sendall(data + b"\r\n")

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"{self.kind}: connection closed; buffer {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def send_password(self, password: str):
        u, p = self.user.encode(), password.encode()
        self.send({
            "pop3-user": b"PASS " + p,
            "pop3-plain": b"AUTH PLAIN " + plain_b64(self.user, password).encode(),
            "imap-login": b'a LOGIN "' + u + b'" "' + p + b'"',
            "imap-plain": b"a AUTHENTICATE PLAIN " + plain_b64(self.user, password).encode(),
            "smtp-plain": b"AUTH PLAIN " + plain_b64(self.user, password).encode(),
        }[self.kind])

    def answer(self) -> bytes:
        while True:
            line = self.line()
            if self.kind.startswith("imap"):
                if line.startswith(b"a "):
                    return line[2:]
            else:
                return line

    def close(self):
        self.sock.close()


KINDS = ["pop3-user", "pop3-plain", "imap-login", "imap-plain", "smtp-plain"]


def attempt(srv, user, password, source, kind="pop3-user") -> str:
    c = Client(srv, kind, user, source)
    try:
        c.send_password(password)
        return classify(c.answer())
    finally:
        c.close()


def burst(srv, sources, user, wrong: int, kinds=KINDS, settle=0.3):
    """`wrong` parallel wrong passwords (protocols in turn, from `sources` in
    turn), then, once they are all on their way, the right password on one
    more connection. Returns (answers of the wrong ones, the right one's)."""
    clients = [Client(srv, kinds[i % len(kinds)], user, sources[i % len(sources)])
               for i in range(wrong)]
    right = Client(srv, kinds[0], user, sources[0])
    answers = [None] * wrong

    def read(i, c):
        try:
            answers[i] = classify(c.answer())
        except Exception as e:  # reported by the assertions below
            answers[i] = repr(e)

    try:
        # All prepared first; the passwords then go out back to back.
        for c in clients:
            c.send_password("wrong-password")
        threads = [threading.Thread(target=read, args=(i, c)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        time.sleep(settle)
        right.send_password(USERS[user])
        right_answer = classify(right.answer())
        for t in threads:
            t.join(NET_TIMEOUT)
        return answers, right_answer
    finally:
        for c in clients + [right]:
            c.close()


# ------------------------------------------------------------ parallel bursts
def test_parallel_burst_from_one_address_tests_at_most_max_failures(server_factory):
    limit = 5
    srv = server_factory(listen=LISTEN, auth={"max_failures": limit, "failure_delay_ms": 50})
    answers, right = burst(srv, ["127.0.0.20"], ALICE, wrong=40)
    tested = answers.count("tested")
    assert tested <= limit, f"{tested} passwords tested in a burst (limit {limit}): {answers}"
    assert tested == limit, answers  # the first `limit` are checked, not fewer
    assert answers.count("refused") == 40 - limit, answers
    assert right == "refused", "the right password got in during the burst"
    # After the burst, the right password is refused from that address on
    # every protocol (no more password is tested there) ...
    for kind in KINDS:
        assert attempt(srv, ALICE, USERS[ALICE], "127.0.0.20", kind) == "refused", kind
    # ... including for another account.
    assert attempt(srv, BOB, USERS[BOB], "127.0.0.20") == "refused"


def test_parallel_burst_from_many_addresses_against_one_account(server_factory):
    limit = 5
    srv = server_factory(listen=LISTEN, auth={"max_failures": limit, "failure_delay_ms": 50})
    sources = [f"127.0.1.{i}" for i in range(1, 41)]
    answers, right = burst(srv, sources, VICTIM, wrong=40)
    assert answers.count("tested") == limit, answers
    assert answers.count("refused") == 40 - limit, answers
    assert right == "refused"
    # Distributed guessing goes on being refused from addresses the owner
    # never logged in from, on every protocol, right password or not.
    for i, kind in enumerate(KINDS):
        assert attempt(srv, VICTIM, "guess", f"127.0.2.{i + 1}", kind) == "refused", kind
        assert attempt(srv, VICTIM, USERS[VICTIM], f"127.0.2.{i + 1}", kind) == "refused", kind
    # Other accounts from those addresses are not affected.
    assert attempt(srv, BOB, USERS[BOB], "127.0.1.1") == "success"


# ------------------------------------------------------- the owner keeps access
def test_owner_keeps_access_while_the_attacker_is_refused(server_factory):
    limit = 3
    srv = server_factory(listen=LISTEN, auth={"max_failures": limit, "failure_delay_ms": 1})
    owner, attacker = "127.0.0.30", "127.0.0.31"
    # The owner's usual address: a successful login (POP3) before the attack.
    assert attempt(srv, ALICE, USERS[ALICE], owner, "pop3-user") == "success"
    for _ in range(limit):
        assert attempt(srv, ALICE, "guess", attacker, "imap-login") == "tested"
    # The attacker's address is refused, even with the right password ...
    assert attempt(srv, ALICE, USERS[ALICE], attacker, "pop3-user") == "refused"
    assert attempt(srv, BOB, USERS[BOB], attacker, "smtp-plain") == "refused"
    # ... the owner is not, on any protocol.
    for kind in KINDS:
        assert attempt(srv, ALICE, USERS[ALICE], owner, kind) == "success", kind
    # The account has reached the limit too: addresses the owner never
    # logged in from are refused for it (distributed guessing stops here),
    # not for other accounts.
    assert attempt(srv, ALICE, USERS[ALICE], "127.0.0.32", "imap-plain") == "refused"
    assert attempt(srv, BOB, USERS[BOB], "127.0.0.32", "imap-plain") == "success"
    # The owner's own mistakes count against their address like anyone's.
    for _ in range(limit):
        assert attempt(srv, ALICE, "typo", owner, "pop3-plain") == "tested"
    assert attempt(srv, ALICE, USERS[ALICE], owner, "pop3-plain") == "refused"


def test_refusal_ends_with_the_window_for_everyone(server_factory):
    window = 3
    srv = server_factory(listen=LISTEN, auth={"max_failures": 2, "failure_delay_ms": 1,
                                              "failure_window": window})
    t0 = time.monotonic()
    for _ in range(2):
        assert attempt(srv, CAROL, "guess", "127.0.0.40") == "tested"
    assert attempt(srv, CAROL, USERS[CAROL], "127.0.0.41") == "refused"
    time.sleep(max(0.0, t0 + window + 0.3 - time.monotonic()))
    assert attempt(srv, CAROL, USERS[CAROL], "127.0.0.41") == "success"
    assert attempt(srv, CAROL, USERS[CAROL], "127.0.0.40") == "success"


# ------------------------------------------------------- the credential cache
def test_password_change_and_removal_apply_at_once(server_factory):
    srv = server_factory(listen=LISTEN)
    src = "127.0.0.50"
    # Twice: the second login is answered from the cache.
    for kind in ("pop3-user", "imap-login", "smtp-plain", "imap-login"):
        assert attempt(srv, ALICE, USERS[ALICE], src, kind) == "success", kind
    srv.cli("user", "passwd", ALICE, "--password-stdin", input="a-New-password-9\n", check=True)
    for kind in ("imap-login", "smtp-plain", "pop3-plain"):
        assert attempt(srv, ALICE, USERS[ALICE], src, kind) == "tested", kind
        assert attempt(srv, ALICE, "a-New-password-9", src, kind) == "success", kind
    srv.cli("user", "del", ALICE, check=True)
    for kind in ("imap-login", "smtp-plain", "pop3-user"):
        assert attempt(srv, ALICE, "a-New-password-9", src, kind) == "tested", kind


def test_cache_off_is_accepted(server_factory):
    srv = server_factory(listen=LISTEN, auth={"cache_ttl": "0"})
    for kind in ("imap-login", "imap-login", "pop3-user"):
        assert attempt(srv, BOB, USERS[BOB], "127.0.0.51", kind) == "success", kind
    srv.cli("user", "passwd", BOB, "--password-stdin", input="b-New-password-9\n", check=True)
    assert attempt(srv, BOB, USERS[BOB], "127.0.0.51", "imap-login") == "tested"
    assert attempt(srv, BOB, "b-New-password-9", "127.0.0.51", "imap-login") == "success"


@pytest.mark.parametrize("value", ["1 hour", "forever", "-1s", ""])
def test_malformed_cache_ttl_is_refused(server_factory, value):
    # Every command reads and checks the whole configuration first; `user
    # list` is the quickest (`serve` stops the same way).
    srv = server_factory(listen=LISTEN, auth={"cache_ttl": value}, start=False)
    res = srv.cli("user", "list", timeout=30)
    assert res.returncode != 0, res.stdout_text
    assert "auth.cache_ttl" in res.stderr_text, res.stderr_text
