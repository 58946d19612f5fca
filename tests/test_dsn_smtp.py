"""DSN (RFC 3461), the receiving side, against the real binary: EHLO and
LHLO advertise `DSN`; `NOTIFY`, `ORCPT`, `RET` and `ENVID` go with each
recipient into the queue; a local delivery asked for with
`NOTIFY=SUCCESS` is reported to the sender with a `delivered` DSN
(RFC 3464) carrying the `ENVID`; `NOTIFY=NEVER` gets no bounce when the
message fails. (The relay's side, reports about remote delivery and
passing the parameters on, is tested in test_relay*.py.)
"""

from __future__ import annotations

import smtplib
import time

import pytest

from harness import DOMAIN, USERS, make_message, wait_until
from test_submission import queued, submitter
from test_tls import messages as tls_messages
from test_tls import relay_to_nowhere, tls_server

ALICE, BOB, CAROL = (f"{u}@{DOMAIN}" for u in ("alice", "bob", "carol"))
LISTEN = {"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0", "lmtp": "127.0.0.1:0"}


@pytest.fixture
def srv(server_factory):
    return server_factory(listen=LISTEN)


def inbox(srv, user) -> list[bytes]:
    return srv.messages(user, USERS[user])


def test_ehlo_and_lhlo_list_dsn(srv):
    with srv.smtp() as s:
        s.ehlo()
        assert s.has_extn("dsn")
    with smtplib.LMTP(*srv.ports["lmtp"], local_hostname="mta.test", timeout=30) as s:
        s.ehlo()
        assert s.has_extn("dsn")


def delivered_report(raw: bytes) -> bytes:
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"multipart/report" in head and b"report-type=delivery-status" in head, head
    assert b"Return-Path: <>" in head, head
    assert b"Action: delivered" in raw, raw
    return raw


def test_notify_success_reports_a_local_delivery_with_the_envid(srv):
    with srv.smtp() as s:
        s.ehlo()
        assert s.mail(ALICE, ["ENVID=QQ+2Bid-42"])[0] == 250
        assert s.rcpt(BOB, ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
        assert s.rcpt(CAROL, ["NOTIFY=SUCCESS", "ORCPT=rfc822;team@example.test"])[0] == 250
        assert s.rcpt(f"victim@{DOMAIN}", ["NOTIFY=FAILURE"])[0] == 250
        assert s.data(make_message("please confirm", from_addr=ALICE))[0] == 250
    assert len(inbox(srv, BOB)) == 1 and len(inbox(srv, CAROL)) == 1
    wait_until(lambda: len(inbox(srv, ALICE)) == 1, timeout=20, what="the delivered DSN")
    raw = delivered_report(inbox(srv, ALICE)[0])
    # xtext decoded (RFC 3461 §4.4: "+2B" is "+")
    assert b"Original-Envelope-Id: QQ+id-42\r\n" in raw, raw
    assert b"Final-Recipient: rfc822; bob@example.test\r\n" in raw, raw
    assert b"Final-Recipient: rfc822; carol@example.test\r\n" in raw, raw
    assert b"Original-Recipient: rfc822; team@example.test" in raw, raw
    assert b"victim@" not in raw, "victim did not ask"
    assert b"Subject: please confirm" in raw, "the original's headers come back"
    time.sleep(0.5)
    assert len(inbox(srv, ALICE)) == 1, "one report for the message"
    assert queued(srv) == []


def test_without_notify_success_no_report(srv):
    srv.send(ALICE, [BOB], make_message("no report wanted", from_addr=ALICE),
             rcpt_options=["NOTIFY=FAILURE"])
    srv.send(ALICE, [BOB], make_message("default", from_addr=ALICE))
    assert len(inbox(srv, BOB)) == 2
    time.sleep(1.0)
    assert inbox(srv, ALICE) == []


def test_lmtp_notify_success_is_reported_too(srv):
    with smtplib.LMTP(*srv.ports["lmtp"], local_hostname="mta.test", timeout=30) as s:
        s.ehlo()
        assert s.mail(ALICE, ["ENVID=lmtp-1"])[0] == 250
        assert s.rcpt(BOB, ["NOTIFY=SUCCESS"])[0] == 250
        assert s.data(make_message("over lmtp", from_addr=ALICE))[0] == 250
    wait_until(lambda: len(inbox(srv, ALICE)) == 1, timeout=20, what="the delivered DSN")
    raw = delivered_report(inbox(srv, ALICE)[0])
    assert b"Original-Envelope-Id: lmtp-1" in raw, raw


@pytest.mark.parametrize("notify", ["NEVER", None])
def test_notify_never_gets_no_bounce_when_the_message_fails(server_factory, tmp_path, notify):
    """Submitted to a domain that cannot be reached, given up at once
    (`max_age` 1s): with NOTIFY=NEVER the sender hears nothing, without
    NOTIFY a failure report comes back (the control)."""
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere() + 'max_age = "1s"\n')
    with submitter(srv, "465") as s:
        options = [f"NOTIFY={notify}"] if notify else []
        assert s.sendmail(ALICE, ["friend@remote.test"],
                          make_message("to nowhere", from_addr=ALICE,
                                       to_addr="friend@remote.test"),
                          rcpt_options=options) == {}
    # Its first attempt failed for now (or, on a slow machine, already
    # after max_age); the next one gives up.
    time.sleep(1.5)
    srv.cli("queue", "flush", check=True)
    wait_until(lambda: queued(srv) == [], timeout=20, what="the message given up")
    if notify == "NEVER":
        time.sleep(1.0)
        assert tls_messages(srv, ALICE) == []
    else:
        wait_until(lambda: len(tls_messages(srv, ALICE)) == 1, timeout=20, what="the bounce")
        assert b"Action: failed" in tls_messages(srv, ALICE)[0]
