"""LMTP (RFC 2033) on `[listen] lmtp`, with Python's `smtplib.LMTP` against
the real binary.

- LHLO, not EHLO/HELO (`500 5.5.1`); the greeting says LMTP; no STARTTLS, no
  AUTH advertised.
- After the final dot, one reply per accepted RCPT in RCPT order (smtplib's
  `data()` reads the first, `getreply()` the others): a known user gets 250
  and the copy, an over-quota one `452 4.2.2` and nothing, in the same
  transaction; a duplicate RCPT gets its own (same) reply. An account
  with no byte left is refused at RCPT (`452 4.2.2`) and owed no reply.
- BDAT (CHUNKING) ends with the same per-recipient replies.
- No relaying: a recipient in another domain is refused at RCPT.
- With policy plugins (the `probe` fixture): plugins see the listener as
  "lmtp"; a `route` reject or tempfail answers only that recipient, the
  others are delivered; a `data` refusal answers every recipient.
"""

from __future__ import annotations

import contextlib
import smtplib
import sqlite3

import pytest

from harness import DOMAIN, USERS, with_probe
from test_plugins import wasm  # noqa: F401  (fixture)

ALICE, BOB, CAROL = (f"{u}@{DOMAIN}" for u in ("alice", "bob", "carol"))
LISTEN = {"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0", "lmtp": "127.0.0.1:0"}


def message(subject: str, body: str = "Hello over LMTP.\r\n") -> bytes:
    return (f"From: <sender@remote.test>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\n{body}").encode()


def lmtp(srv) -> smtplib.LMTP:
    host, port = srv.ports["lmtp"]
    return smtplib.LMTP(host, port, local_hostname="mta.test", timeout=30)


@contextlib.contextmanager
def lmtp_transaction(srv, rcpts):
    """An LMTP session (closed at the end) in a transaction from
    sender@remote.test with `rcpts` all accepted."""
    s = lmtp(srv)
    try:
        s.ehlo()
        assert s.mail("sender@remote.test")[0] == 250
        for rcpt in rcpts:
            assert s.rcpt(rcpt)[0] == 250, rcpt
        yield s
    finally:
        s.quit()


def set_quota(srv, address: str, quota_bytes: int | None):
    """There is no CLI for quotas yet: set it in the stopped server's store."""
    assert srv.proc is None
    with sqlite3.connect(srv.data_dir / "mailgate.db") as db:
        changed = db.execute("UPDATE accounts SET quota_bytes = ? WHERE address = ?",
                             (quota_bytes, address)).rowcount
    assert changed == 1, address


@pytest.fixture
def lmtp_server(server_factory):
    srv = server_factory(listen=LISTEN, start=False)
    set_quota(srv, CAROL, 10)  # smaller than any message
    return srv.start()


def subjects(srv, user):
    return [m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
            for m in srv.messages(user, USERS[user])]


def test_lhlo_greeting_and_helo_ehlo_refused(lmtp_server):
    s = lmtp(lmtp_server)
    try:
        for verb in ("EHLO", "HELO"):
            code, text = s.docmd(verb, "mta.test")
            assert code == 500 and b"LHLO" in text, (verb, code, text)
        # MAIL before LHLO is out of sequence.
        code, _ = s.docmd("MAIL", "FROM:<sender@remote.test>")
        assert code == 503
        code, text = s.ehlo()  # smtplib.LMTP sends LHLO
        assert code == 250, text
        assert s.has_extn("pipelining") and s.has_extn("chunking") and s.has_extn("size")
        assert not s.has_extn("starttls") and not s.has_extn("auth")
    finally:
        s.quit()
    # The greeting names the protocol.
    import socket
    with socket.create_connection(lmtp_server.ports["lmtp"], timeout=10) as raw:
        assert b" LMTP " in raw.recv(512)


def test_one_reply_per_recipient_in_rcpt_order(lmtp_server):
    with lmtp_transaction(lmtp_server, (ALICE, CAROL, BOB, ALICE)) as s:
        # No relaying: refused at RCPT, and owed no reply later.
        code, text = s.rcpt("someone@elsewhere.test")
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        first = s.data(message("per recipient"))
        replies = [first] + [s.getreply() for _ in range(3)]
        codes = [c for c, _ in replies]
        assert codes == [250, 452, 250, 250], replies
        assert replies[0][1].startswith(b"2.0.0") and ALICE.encode() in replies[0][1]
        assert replies[1][1].startswith(b"4.2.2") and CAROL.encode() in replies[1][1]
        assert BOB.encode() in replies[2][1]
        # The session goes on: a second transaction on the same connection.
        s.rset()
        assert s.noop()[0] == 250
    # Alice got one copy (not two for the duplicate RCPT), bob one, carol none.
    assert subjects(lmtp_server, ALICE) == ["per recipient"]
    assert subjects(lmtp_server, BOB) == ["per recipient"]
    assert subjects(lmtp_server, CAROL) == []
    raw = lmtp_server.messages(BOB, USERS[BOB])[0]
    assert raw.startswith(b"Return-Path: <sender@remote.test>\r\nReceived: ")
    assert b"with LMTP" in raw.split(b"\r\n\r\n", 1)[0]
    # No verification on LMTP: the MTA in front did it.
    assert b"Authentication-Results" not in raw


def test_single_recipient_sendmail(lmtp_server):
    with lmtp(lmtp_server) as s:
        assert s.sendmail("sender@remote.test", [BOB], message("plain sendmail")) == {}
    assert subjects(lmtp_server, BOB) == ["plain sendmail"]


def test_bdat_chunks_then_per_recipient_replies(lmtp_server):
    msg = message("chunked", body="part one\r\npart two\r\n")
    a, b = msg[:40], msg[40:]
    with lmtp_transaction(lmtp_server, (CAROL, ALICE)) as s:
        s.send(b"BDAT %d\r\n" % len(a) + a)
        code, text = s.getreply()
        assert code == 250, text
        s.send(b"BDAT %d LAST\r\n" % len(b) + b)
        replies = [s.getreply(), s.getreply()]
        assert [c for c, _ in replies] == [452, 250], replies
    got = lmtp_server.messages(ALICE, USERS[ALICE])
    assert len(got) == 1 and got[0].endswith(b"part one\r\npart two\r\n")
    assert subjects(lmtp_server, CAROL) == []


def test_a_refused_message_gets_one_refusal_per_recipient(lmtp_server):
    with lmtp_transaction(lmtp_server, (ALICE, BOB)) as s:
        # A bare LF is refused after the data (smuggling rule), for each.
        code, text = s.docmd("DATA")
        assert code == 354
        s.send(b"Subject: bare\r\n\r\nbad\nline\r\n.\r\n")
        replies = [s.getreply(), s.getreply()]
        assert [c for c, _ in replies] == [550, 550], replies
        assert s.noop()[0] == 250  # still in step
    assert subjects(lmtp_server, ALICE) == [] and subjects(lmtp_server, BOB) == []


# ---- with policy plugins -------------------------------------------------------

@pytest.fixture
def lmtp_probe(server_factory, wasm):  # noqa: F811
    """An LMTP server running the `probe` fixture plugin (see test_plugins.py)."""
    return with_probe(server_factory(listen=LISTEN, start=False), wasm).start()


def test_plugins_see_lmtp_and_route_refusals_answer_one_recipient(lmtp_probe):
    """The probe refuses `+bounce` (5xx) and defers `+defer` (4xx) at route:
    on LMTP only those recipients' replies say so; the others get 250 and
    their copy. The plugins see the listener as "lmtp"."""
    rcpts = [f"alice+bounce@{DOMAIN}", BOB, f"carol+defer@{DOMAIN}", ALICE]
    with lmtp_transaction(lmtp_probe, rcpts) as s:
        first = s.data(message("route per recipient"))
        replies = [first] + [s.getreply() for _ in range(3)]
        assert [c for c, _ in replies] == [550, 250, 451, 250], replies
        assert b"route refused" in replies[0][1] and b"route deferred" in replies[2][1]
        assert s.noop()[0] == 250  # still in step
    assert subjects(lmtp_probe, BOB) == ["route per recipient"]
    assert subjects(lmtp_probe, ALICE) == ["route per recipient"]  # not the +bounce copy
    assert subjects(lmtp_probe, CAROL) == []
    raw = lmtp_probe.messages(BOB, USERS[BOB])[0]
    assert b"listener=lmtp" in raw and b"rcpts=4" in raw, raw
    assert b"X-Probe-Auth: none\r\n" in raw  # LMTP is not verified


def test_a_data_refusal_on_lmtp_answers_every_recipient(lmtp_probe):
    with lmtp_transaction(lmtp_probe, (ALICE, BOB)) as s:
        first = s.data(message("[reject] at data"))
        replies = [first, s.getreply()]
        assert [c for c, _ in replies] == [554, 554], replies
        assert all(b"message refused" in t for _, t in replies)
    assert subjects(lmtp_probe, ALICE) == [] and subjects(lmtp_probe, BOB) == []


def test_a_full_account_is_refused_at_rcpt_and_owed_no_reply_later(server_factory):
    """An account with no byte left gets `452 4.2.2` at RCPT already (the
    quota rule, docs/operations.md); the replies after the message are
    for the accepted RCPTs only."""
    srv = server_factory(listen=LISTEN, start=False)
    set_quota(srv, CAROL, 0)
    srv.start()
    s = lmtp(srv)
    try:
        s.ehlo()
        assert s.mail("sender@remote.test")[0] == 250
        code, text = s.rcpt(CAROL)
        assert code == 452 and text.startswith(b"4.2.2"), (code, text)
        assert s.rcpt(ALICE)[0] == 250
        assert s.rcpt(BOB)[0] == 250
        first = s.data(message("two replies"))
        replies = [first, s.getreply()]
        assert [c for c, _ in replies] == [250, 250], replies
        assert s.noop()[0] == 250, "no third reply was owed"
    finally:
        s.quit()
    assert subjects(srv, CAROL) == []
    assert subjects(srv, ALICE) == ["two replies"]
