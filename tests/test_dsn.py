"""Delivery status notifications (RFC 3461, issue 11 point 4) end to end,
with the real binary.

In test_relay.py's world (`a.test` on 127.0.0.2, `b.test` on 127.0.0.3,
the test DNS server on 127.0.0.1), `c.test` is a scripted SMTP peer written
here (127.0.0.5, the same port): it offers DSN or not, records every
command, refuses recipients starting with `bad` (550 5.1.1) and `slow`
(451 4.2.0), and accepts the others. alice@a.test submits with DSN
parameters (587, STARTTLS, AUTH); her reports arrive in her mailbox on A.

- NOTIFY=FAILURE to a refused recipient: a `failed` report carrying
  Original-Envelope-Id (the ENVID, decoded from xtext) and
  Original-Recipient (the ORCPT), headers only with RET=HDRS; a NOTIFY=NEVER
  recipient of the same message is not in it, and a message whose only
  recipient says NEVER gets no report at all.
- NOTIFY=SUCCESS to a peer without DSN: a `relayed` report, and the peer
  saw none of RET/ENVID/NOTIFY/ORCPT.
- NOTIFY=SUCCESS to a peer with DSN: the peer got RET, ENVID, NOTIFY and
  ORCPT, and no success report comes from A (the peer is responsible).
- `[queue] delay_warning`: the delay report names only the recipients whose
  NOTIFY holds DELAY (or who gave no NOTIFY).
- Between two mailgate servers: alice's NOTIFY=SUCCESS to bob@b.test
  travels with the message, B stores it and reports `delivered` back.
- Postfix as the sending peer (tests/postfix_peer.py): Postfix relays to
  mailgate with NOTIFY=SUCCESS and the Postfix user gets mailgate's
  `delivered` report back through Postfix.

The first five run twice: `queued`, the message written into A's queue
tables (server stopped) with its DSN parameters, which tests the relay
side with the real binary today; and `submitted`, alice's client giving
the parameters over SMTP, which also tests the SMTP side of DSN (mailgate
advertising DSN and carrying the parameters into the queue).
"""

from __future__ import annotations

import re
import smtplib
import sqlite3
import ssl
import time

import pytest

from harness import ScriptedServer, wait_until
from test_postfix import (  # noqa: F401 - `postfix`, `mailgate`, `dns` are fixtures
    ALICE as PF_ALICE, MG_DOMAIN, MG_HOST, MG_IP, PF_DOMAIN, PF_HOST, PF_IP, PF_USER, crlf,
    dns, mailgate, mailgate_messages, make_message, postfix, unfold, wait_for,
)
from test_relay import (  # noqa: F401 - `world` is a fixture
    A_IP, ALICE, ALICE_PW, B_IP, BOB, BOB_PW, DELIVERY_TIMEOUT, dsn_parts, header, messages,
    queue_ids, wait_messages, world,
)

C_IP = "127.0.0.5"
FAST = {"retry": ["1s"], "max_age": "1h", "poll_interval": "1s"}

HOW = [pytest.param("queued", id="queued"), pytest.param("submitted", id="submitted")]


class Peer(ScriptedServer):
    """A scripted SMTP server on (ip, port), in a thread; offers DSN when
    `dsn`; records command lines and accepted messages."""

    def __init__(self, ip, port, dsn):
        self.dsn = dsn
        self.commands: list[str] = []
        self.messages: list[tuple[str, list[str], bytes]] = []
        super().__init__(ip, port)

    @staticmethod
    def _reply_to_rcpt(addr: str) -> str:
        if addr.startswith("bad"):
            return "550 5.1.1 No such user here"
        if addr.startswith("slow"):
            return "451 4.2.0 Try again later"
        return "250 2.1.5 Ok"

    def _session(self, conn):
        conn.settimeout(30)
        f = conn.makefile("rb")

        def say(line):
            conn.sendall(line.encode() + b"\r\n")

        try:
            say("220 mx.c.test ESMTP scripted peer")
            mail, rcpts = None, []
            while True:
                raw = f.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.commands.append(line)
                upper = line.upper()
                if upper.startswith("EHLO"):
                    caps = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 10000000"]
                    if self.dsn:
                        caps.append("DSN")
                    say("\r\n".join(["250-mx.c.test"] + [f"250-{c}" for c in caps[:-1]]
                                    + [f"250 {caps[-1]}"]))
                elif upper.startswith("MAIL FROM:"):
                    mail, rcpts = line, []
                    say("250 2.1.0 Ok")
                elif upper.startswith("RCPT TO:"):
                    addr = line[8:].split()[0].strip("<>")
                    reply = self._reply_to_rcpt(addr)
                    if reply.startswith("2"):
                        rcpts.append(addr)
                    say(reply)
                elif upper == "DATA":
                    if not rcpts:
                        say("554 5.5.1 No valid recipients")
                        continue
                    say("354 go ahead")
                    data = b""
                    while (chunk := f.readline()) not in (b".\r\n", b""):
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    self.messages.append((mail, rcpts, data))
                    say("250 2.0.0 Ok: queued")
                elif upper == "RSET":
                    mail, rcpts = None, []
                    say("250 2.0.0 Ok")
                elif upper == "QUIT":
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("502 5.5.2 Command not recognized")
        except OSError:
            return
        finally:
            conn.close()


@pytest.fixture
def peer(world):
    """Returns make(dsn) -> a Peer for c.test at 127.0.0.5 on the world's port."""
    world.dns.add("c.test", "MX", (10, "mx.c.test"))
    world.dns.add("mx.c.test", "A", C_IP)
    made = []

    def make(dsn):
        p = Peer(C_IP, world.port, dsn)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def submit_dsn(srv, rcpts, subject, mail_options=(), user=ALICE, password=ALICE_PW):
    """Submits one message from `user` with MAIL options `mail_options` and
    each recipient's own RCPT options: rcpts = [(address, [options])]."""
    host, port = srv.ports["submission"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    msg = message_text(subject, user, rcpts[0][0])
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        s.login(user, password)
        code, reply = s.mail(user, list(mail_options))
        assert code == 250, (code, reply)
        for addr, options in rcpts:
            code, reply = s.rcpt(addr, list(options))
            assert code == 250, (addr, code, reply)
        code, reply = s.data(msg)
        assert code == 250, (code, reply)
    return msg


def message_text(subject, sender, to):
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nThe secret body text.\r\n").encode()


def enqueue_directly(srv, rcpts, subject, envid=None, ret=None, sender=ALICE):
    """Writes one message into the stopped server's queue tables, as the
    SMTP side stores it: rcpts = [(address, NOTIFY or None, ORCPT or
    None)], ENVID as xtext, RET as "FULL"/"HDRS"/None."""
    assert srv.proc is None, "the server must be stopped"
    raw = message_text(subject, sender, rcpts[0][0])
    db = sqlite3.connect(srv.data_dir / "mailgate.db")
    try:
        with db:
            now = int(time.time())
            cur = db.execute(
                "INSERT INTO queue (sender, created, next_attempt, envid, ret_full, smtputf8,"
                " eight_bit, size, data) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?)",
                (sender, now, now, envid, None if ret is None else int(ret == "FULL"),
                 len(raw), raw))
            for i, (addr, notify, orcpt) in enumerate(rcpts):
                db.execute("INSERT INTO queue_rcpts (queue, idx, address, domain, orcpt, notify)"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           (cur.lastrowid, i, addr, addr.rsplit("@", 1)[1].lower(), orcpt,
                            notify))
    finally:
        db.close()


def send_with_dsn(how, srv, rcpts, subject, envid=None, ret=None):
    """Gets a message from alice with DSN parameters into `srv`'s queue,
    `queued` (written while the server is stopped; started after) or
    `submitted` (over SMTP; the server started first)."""
    if how == "queued":
        if srv.proc is not None:
            srv.stop_clean()
        enqueue_directly(srv, rcpts, subject, envid, ret)
        srv.start()
        return
    if srv.proc is None:
        srv.start()
    mail_options = ([f"RET={ret}"] if ret else []) + ([f"ENVID={envid}"] if envid else [])
    submit_dsn(srv, [(addr, ([f"NOTIFY={n}"] if n else []) + ([f"ORCPT={o}"] if o else []))
                     for addr, n, o in rcpts],
               subject, mail_options)


def reports(srv, user=ALICE, password=ALICE_PW):
    """The DSNs in the mailbox: [(action words, status text, raw)]."""
    out = []
    for raw in messages(srv, user, password):
        body = raw.split(b"\r\n", 1)[1] if raw.startswith(b"Return-Path:") else raw
        _, _, status = dsn_parts(body)
        actions = re.findall(r"^Action: (\S+)", status, re.M)
        out.append((actions, status, raw))
    return out


def final_recipients(status: str) -> set[str]:
    return set(re.findall(r"^Final-Recipient: rfc822; ?(\S+)", status, re.M))


def queue_empty(srv):
    """Every report an attempt owes enters the queue with its outcome, so an
    empty queue means every report has been delivered (locally) too."""
    wait_until(lambda: queue_ids(srv) == {}, timeout=DELIVERY_TIMEOUT, interval=0.3,
               what="the queue to empty")


# --------------------------------------------------------------------- tests
@pytest.mark.parametrize("how", HOW)
def test_failure_report_carries_envid_and_orcpt_and_never_means_none(world, peer, how):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST)
    peer(dsn=False)

    send_with_dsn(how, a, [("bad-f@c.test", "FAILURE", "rfc822;Bad-F+2Bx@c.test"),
                           ("bad-n@c.test", "NEVER", None)],
                  "two refused", envid="QQ314159+2B1", ret="HDRS")
    queue_empty(a)
    [(actions, status, raw)] = reports(a)
    assert actions == ["failed"], status
    assert final_recipients(status) == {"bad-f@c.test"}, status
    assert "Original-Envelope-Id: QQ314159+1" in status, status
    assert "Original-Recipient: rfc822; Bad-F+x@c.test" in status, status
    assert "Status: 5.1.1" in status, status
    assert header(raw, "Return-Path") == ["<>"]
    assert b"Subject: two refused" in raw
    assert b"The secret body text." not in raw, "RET=HDRS: headers only"

    # Only a NEVER recipient: no report at all.
    send_with_dsn(how, a, [("bad-n@c.test", "NEVER", None)], "never tell me")
    queue_empty(a)
    assert len(reports(a)) == 1

    # RET=FULL: the whole message comes back in a failure report.
    send_with_dsn(how, a, [("bad-full@c.test", "FAILURE", None)], "all of it", ret="FULL")
    queue_empty(a)
    got = [r for r in reports(a) if "bad-full@c.test" in final_recipients(r[1])]
    assert len(got) == 1 and b"The secret body text." in got[0][2]


@pytest.mark.parametrize("how", HOW)
def test_success_to_a_peer_without_dsn_is_reported_as_relayed(world, peer, how):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST)
    c = peer(dsn=False)

    send_with_dsn(how, a, [("carol@c.test", "SUCCESS,FAILURE", "rfc822;carol@c.test"),
                           ("dan@c.test", None, None)],
                  "relay me", envid="R1", ret="FULL")
    queue_empty(a)
    assert len(c.messages) == 1
    for line in c.commands:
        for p in ("RET=", "ENVID=", "NOTIFY=", "ORCPT="):
            assert p not in line.upper(), f"{p} sent to a peer without DSN: {line}"
    [(actions, status, raw)] = reports(a)
    assert actions == ["relayed"], status
    assert final_recipients(status) == {"carol@c.test"}, "dan gave no NOTIFY: no success report"
    assert "Original-Envelope-Id: R1" in status
    assert "Remote-MTA: dns; mx.c.test" in status, status
    assert re.search(r"^Status: 2\.0\.0", status, re.M), status
    assert b"The secret body text." not in raw, "a success report returns headers only"


@pytest.mark.parametrize("how", HOW)
def test_success_to_a_peer_with_dsn_is_left_to_the_peer(world, peer, how):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST)
    c = peer(dsn=True)

    send_with_dsn(how, a, [("carol@c.test", "SUCCESS", "rfc822;carol+2Bx@c.test")],
                  "pass it on", envid="QQ+2B2", ret="HDRS")
    queue_empty(a)
    mail = [ln for ln in c.commands if ln.upper().startswith("MAIL FROM:")]
    rcpt = [ln for ln in c.commands if ln.upper().startswith("RCPT TO:")]
    assert mail and mail[0].endswith(" RET=HDRS ENVID=QQ+2B2"), mail
    assert rcpt == ["RCPT TO:<carol@c.test> NOTIFY=SUCCESS ORCPT=rfc822;carol+2Bx@c.test"], rcpt
    assert len(c.messages) == 1
    assert reports(a) == [], "the peer offered DSN: the success report is its to send"


@pytest.mark.parametrize("how", HOW)
def test_delay_report_only_for_recipients_asking_for_delays(world, peer, how):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, {**FAST, "delay_warning": "1s"})
    peer(dsn=False)

    send_with_dsn(how, a, [("slow-d@c.test", "DELAY", None),
                           ("slow-f@c.test", "FAILURE", None),
                           ("slow-x@c.test", None, None)],
                  "slow going", envid="D1")
    got = wait_until(lambda: (r := reports(a)) and r, timeout=DELIVERY_TIMEOUT, interval=0.3,
                     what="the delay report")
    [(actions, status, _)] = got
    assert actions == ["delayed", "delayed"], status
    assert final_recipients(status) == {"slow-d@c.test", "slow-x@c.test"}, status
    assert "Will-Retry-Until:" in status and "Original-Envelope-Id: D1" in status
    assert re.search(r"^Status: 4\.2\.0", status, re.M), status
    assert len(queue_ids(a)) == 1, "still retried"
    time.sleep(2.5)  # more attempts: the warning is not repeated
    assert len(reports(a)) == 1


def test_local_recipient_asking_for_success_gets_a_delivered_report(world):
    """Queued mail for a local recipient (the queue's local delivery, as
    for reports to local senders) with NOTIFY=SUCCESS: `delivered`."""
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST)
    a.add_user("carol@a.test", "carol-Dsn-3")
    a.add_user("dave@a.test", "dave-Dsn-4")
    send_with_dsn("queued", a, [("carol@a.test", "SUCCESS", "rfc822;Carol@a.test"),
                                ("dave@a.test", None, None)],
                  "local success", envid="L+2B1")
    queue_empty(a)
    assert len(messages(a, "carol@a.test", "carol-Dsn-3")) == 1
    assert len(messages(a, "dave@a.test", "dave-Dsn-4")) == 1
    [(actions, status, raw)] = reports(a)
    assert actions == ["delivered"], status
    assert final_recipients(status) == {"carol@a.test"}, status
    assert "Original-Recipient: rfc822; Carol@a.test" in status, status
    assert "Original-Envelope-Id: L+1" in status, status
    assert re.search(r"^Status: 2\.0\.0", status, re.M), status
    assert header(raw, "Return-Path") == ["<>"]


def test_delivered_report_between_two_mailgate_servers(world):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST).start()
    b = world.make("b.test", B_IP, BOB, BOB_PW, FAST).start()

    submit_dsn(a, [(BOB, ["NOTIFY=SUCCESS", f"ORCPT=rfc822;{BOB}"])], "tell me it arrived",
               mail_options=["RET=FULL", "ENVID=AB+2B1"])
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert b"Subject: tell me it arrived" in got
    [(actions, status, raw)] = wait_until(lambda: (r := reports(a)) and r,
                                          timeout=DELIVERY_TIMEOUT, interval=0.3,
                                          what="B's delivered report at A")
    assert actions == ["delivered"], status
    assert final_recipients(status) == {BOB}
    assert "Reporting-MTA: dns; mx.b.test" in status, status
    assert "Original-Envelope-Id: AB+1" in status, status
    assert f"Original-Recipient: rfc822; {BOB}" in status, status
    assert "Status: 2.0.0" in status
    assert header(raw, "Return-Path") == ["<>"]
    assert b"The secret body text." not in raw
    queue_empty(a)
    queue_empty(b)


# ------------------------------------------------------- Postfix as the sender
def test_postfix_sender_gets_the_delivered_report_back_through_postfix(  # noqa: F811
        postfix, mailgate, dns):
    """Postfix (127.0.0.4) relays a NOTIFY=SUCCESS message to mailgate
    (127.0.0.5), which offers DSN, so Postfix leaves the success report to
    mailgate; mailgate delivers to alice and sends `delivered` to the Postfix
    user, through Postfix (MX of postfix.test in the test DNS)."""
    pf = postfix(virtual_domain=PF_DOMAIN, mailboxes=[PF_USER])
    dns.add(PF_DOMAIN, "MX", (10, PF_HOST))
    dns.add(PF_HOST, "A", PF_IP)
    mg = mailgate(dns=dns, relay_port=pf.port)
    _, mg_port = mg.smtp_addr
    pf.set_transport(MG_DOMAIN, f"smtp:[{MG_IP}]:{mg_port}")
    pf.start()

    msg = make_message("postfix asks for success", PF_USER, PF_ALICE)
    with smtplib.SMTP(pf.ip, pf.port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        assert s.has_extn("dsn"), s.esmtp_features
        refused = s.sendmail(PF_USER, [PF_ALICE], msg,
                             mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=PF+2B1"],
                             rcpt_options=["NOTIFY=SUCCESS"])
    assert refused == {}, refused
    wait_for(pf, lambda: mailgate_messages(mg), "the message in alice's mailbox")
    [raw] = wait_for(pf, lambda: pf.maildir(PF_USER), "the report in the Postfix user's Maildir")
    report = crlf(raw)
    assert header(report, "Return-Path") == ["<>"]
    _, _, status = dsn_parts(report.split(b"\r\n", 1)[1] if report.startswith(b"Return-Path")
                             else report)
    status = unfold(status)
    assert f"Reporting-MTA: dns; {MG_HOST}" in status, status
    assert re.findall(r"^Action: (\S+)", status, re.M) == ["delivered"], status
    assert f"Final-Recipient: rfc822; {PF_ALICE}" in status, status
    assert "Original-Envelope-Id: PF+1" in status, status
    # Postfix adds ORCPT when the client gave none (RFC 3461 §5.2.1).
    assert f"Original-Recipient: rfc822; {PF_ALICE}" in status, status
    assert "Status: 2.0.0" in status, status
    assert "Hello from the interop test.".encode() not in report, "a success report: headers"
    wait_for(pf, pf.queue_empty, "Postfix's queue to empty")
