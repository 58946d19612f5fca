"""Interop with a real MTA (issue 6): Postfix, a private instance per test
(tests/postfix_peer.py), on loopback only.

- Postfix (127.0.0.4) relays to mailgate (127.0.0.5, domain a.test): a
  message injected into Postfix with smtplib goes, through Postfix's
  `transport_maps` and over STARTTLS, to mailgate's SMTP listener; alice
  reads it with POP3, byte-identical apart from the trace headers.  An
  unknown mailgate user is refused at RCPT and Postfix bounces.
- mailgate relays to Postfix: alice submits (587, STARTTLS, AUTH) to
  user@postfix.test; mailgate finds Postfix through the test DNS server
  (tests/dns_server.py, MX of postfix.test -> 127.0.0.4, `[relay] port` =
  Postfix's port), delivers over STARTTLS with a DKIM signature, and
  Postfix's virtual(8) writes it to a Maildir that the test reads.  An
  unknown Postfix user gets a 550 from Postfix and alice a bounce.
- Postfix delivers into mailgate over LMTP (`transport_maps` ->
  `lmtp:inet:[127.0.0.5]:PORT`, mailgate's `[listen] lmtp`): one message
  for a known and an unknown mailgate user; Postfix gets one answer per
  recipient, so the known one is delivered (read back with POP3, intact)
  and only the unknown one bounces (5.1.1) to the Postfix sender.

Postfix must be installed (Debian package `postfix`) and the tests must
run as root; otherwise they fail under CI (`CI` set) and skip elsewhere,
with the reason.  The system-wide Postfix instance is never used.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from pathlib import Path

import pytest

import postfix_peer
from harness import Server, dns, strip_trace, toml_value, wait_until  # noqa: F401  (dns: a fixture)
from postfix_peer import Postfix
from test_relay import dsn_parts, header, make_cert, verify_dkim

PF_IP, MG_IP = "127.0.0.4", "127.0.0.5"  # never 127.0.0.1: see postfix_peer
PF_DOMAIN, PF_HOST = "postfix.test", "mx.postfix.test"
MG_DOMAIN, MG_HOST = "a.test", "mx.a.test"
ALICE, ALICE_PW = "alice@a.test", "alice-Postfix-1"
PF_USER = "user@postfix.test"
SELECTOR = "s1"
DELIVERY_TIMEOUT = 40.0

# A body that exercises the transparency of both SMTP hops: dot-stuffing
# (a leading dot, a lone dot), 8-bit UTF-8 text, a tab, trailing spaces, an
# empty line, a long (but legal) line, and a line that looks like a header.
BODY = ("Hello from the interop test.\r\n"
        ".a line with a leading dot\r\n"
        ".\r\n"
        "..two dots\r\n"
        "Grüße, Jürgen — ✓ 8-bit\r\n"
        "\ttab first, trailing spaces   \r\n"
        "\r\n"
        "From: not a header, just text\r\n"
        + "x" * 900 + "\r\n"
        "last line\r\n")


def system_postfix_running() -> bool:
    """Whether the system-wide instance's master runs (it must stay as it was)."""
    try:
        pid = int(Path("/var/spool/postfix/pid/master.pid").read_text().split()[0])
        return Path(f"/proc/{pid}").exists() and \
            Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def make_message(subject, from_addr, to_addr, body=BODY) -> bytes:
    return (f"From: Sender <{from_addr}>\r\n"
            f"To: <{to_addr}>\r\n"
            f"Subject: {subject}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@interop.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            f"\r\n{body}").encode("utf-8")


def split_trace(raw: bytes, names) -> tuple[list[str], bytes]:
    """Removes the header fields at the top of `raw` whose names are in
    `names` (folded lines included); returns ([name, ...], the rest)."""
    removed = []
    names = {n.lower() for n in names}
    while True:
        m = re.match(rb"([A-Za-z-]+):", raw)
        if not m or m.group(1).decode().lower() not in names:
            return removed, raw
        end = raw.index(b"\r\n") + 2
        while raw[end:end + 1] in (b" ", b"\t"):
            end = raw.index(b"\r\n", end) + 2
        removed.append(m.group(1).decode())
        raw = raw[end:]


def unfold(text: str) -> str:
    """Header folding undone (both MTAs fold long Diagnostic-Code fields)."""
    return re.sub(r"\r?\n[ \t]+", " ", text)


def crlf(raw: bytes) -> bytes:
    """A Maildir file (LF line ends) back in SMTP form."""
    assert b"\r" not in raw, "Maildir files have bare LF line ends"
    return raw.replace(b"\n", b"\r\n")


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def postfix(tmp_path):
    """Returns make(**kw) -> Postfix (not started); stops and removes them all."""
    postfix_peer.check_prerequisites()
    system_before = system_postfix_running()
    made: list[Postfix] = []

    def make(**kw) -> Postfix:
        pf = Postfix(PF_IP, hostname=PF_HOST, **kw)
        made.append(pf)
        pf.enable_server_tls(*make_cert(pf.etc, PF_HOST))
        return pf

    yield make
    problems = []
    for pf in made:
        pid = pf.master_pid()
        pf.stop()
        if pid is not None and pf._alive(pid):
            problems.append(f"Postfix master {pid} of {pf.root} still runs after stop/abort/kill")
        if not problems:
            pf.cleanup()
    if system_postfix_running() != system_before:
        problems.append("the system-wide Postfix instance changed state during the test")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def mailgate(mailgate_bin, tmp_path):
    """Returns make(dns=None, relay_port=None, dkim=False, lmtp=False) -> a
    started mailgate for a.test on 127.0.0.5 with TLS (and an LMTP listener
    with `lmtp`); stops it (failing on a bad exit)."""
    made: list[Server] = []

    def make(dns=None, relay_port=None, dkim=False, lmtp=False) -> Server:
        srv = Server(binary=mailgate_bin, workdir=tmp_path / "mailgate")
        cert, key = make_cert(srv.workdir, MG_HOST)
        lines = [
            f"hostname = {toml_value(MG_HOST)}",
            f"data_dir = {toml_value(str(srv.data_dir))}",
            f"domains = {toml_value([MG_DOMAIN])}",
            "shutdown_timeout = 5",
            "",
            "[listen]",
            f'smtp = "{MG_IP}:0"',
            f'submission = "{MG_IP}:0"',
            f'pop3 = "{MG_IP}:0"',
            *([f'lmtp = "{MG_IP}:0"'] if lmtp else []),
            "",
            "[tls]",
            f"cert = {toml_value(str(cert))}",
            f"key = {toml_value(str(key))}",
            "",
            "[auth]",
            "trust_loopback = true",
            "failure_delay_ms = 20",
            "",
            # These tests compare messages byte for byte after the trace
            # headers; SPF/DKIM/DMARC checks are tested in test_relay.py,
            # the sender-domain check in test_unknown_sender_domain.py.
            "[inbound]",
            "verify = false",
            "reject_unknown_sender_domain = false",
            "",
            "[relay]",
            f'source_ip = "{MG_IP}"',
            'connect_timeout = "3s"',
            'command_timeout = "20s"',
        ]
        if dns is not None:
            lines.append(f'nameservers = ["{dns.nameserver}"]')
        if relay_port is not None:
            lines.append(f"port = {relay_port}")
        lines += ["", "[queue]", 'retry = ["1s"]', 'max_age = "1h"', 'poll_interval = "1s"']
        if dkim:
            keyfile = tmp_path / f"{MG_DOMAIN}.dkim.pem"
            out = srv.cli("dkim", "generate", MG_DOMAIN, "--selector", SELECTOR, "--bits", "1024",
                          "--out", str(keyfile), check=True).stdout_text
            srv.dkim_txt = re.search(r"^(v=DKIM1;.*)$", out, re.M).group(1)
            lines += ["", "[[dkim]]", f'domain = "{MG_DOMAIN}"', f'selector = "{SELECTOR}"',
                      f"key = {toml_value(str(keyfile))}"]
        srv.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        srv.add_user(ALICE, ALICE_PW)
        made.append(srv)
        return srv.start()

    yield make
    problems = []
    for srv in made:
        if srv.proc is not None:
            rc = srv.stop()
            if rc != 0:
                problems.append(f"mailgate exited {rc}:\n{srv.stderr_tail()}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ------------------------------------------------------------------ helpers
def mailgate_messages(srv, user=ALICE, password=ALICE_PW):
    try:
        return srv.messages(user, password)
    except Exception:  # noqa: BLE001 - the account may be locked for a moment
        return []


def wait_for(pf: Postfix, pred, what, timeout=DELIVERY_TIMEOUT):
    """Waits for pred(), flushing Postfix's queue every few seconds; on
    timeout the failure carries Postfix's queue and log."""
    deadline = time.monotonic() + timeout
    last_flush = time.monotonic()
    while True:
        v = pred()
        if v:
            return v
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                                 f"postqueue -p:\n{pf.queue()}\nmaillog:\n{pf.log_tail()}")
        if now - last_flush > 3:
            pf.flush()
            last_flush = now
        time.sleep(0.3)


def inject_into_postfix(pf: Postfix, from_addr, to_addrs, msg: bytes):
    """A client hands `msg` to Postfix over SMTP; returns the refused recipients."""
    with smtplib.SMTP(pf.ip, pf.port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        assert s.has_extn("8bitmime"), s.esmtp_features
        return s.sendmail(from_addr, to_addrs, msg, mail_options=["BODY=8BITMIME"])


def submit_to_mailgate(srv: Server, to, msg: bytes):
    host, port = srv.ports["submission"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        s.login(ALICE, ALICE_PW)
        refused = s.sendmail(ALICE, [to], msg, mail_options=["BODY=8BITMIME"])
    assert refused == {}, refused


def mailgate_queue_empty(srv: Server) -> bool:
    return srv.cli("queue", "list", check=True).stdout_text == "Mail queue is empty\n"


# --------------------------------------------------------------------- tests
def test_postfix_relays_to_mailgate_over_starttls_intact(postfix, mailgate):
    mg = mailgate()
    pf = postfix()
    _, mg_port = mg.smtp_addr
    pf.set_transport(MG_DOMAIN, f"smtp:[{MG_IP}]:{mg_port}")
    pf.start()

    sender = "carol@postfix.test"
    msg = make_message("postfix to mailgate", sender, ALICE)
    assert inject_into_postfix(pf, sender, [ALICE], msg) == {}

    [got] = wait_for(pf, lambda: mailgate_messages(mg), "the message in alice's mailbox")
    # mailgate's trace: Return-Path and its Received (from Postfix's
    # address, over TLS); under it Postfix's own Received; then the
    # message exactly as the client gave it to Postfix.
    received = header(got, "Received")
    assert len(received) == 2, received
    assert "with ESMTPS" in received[0] and PF_IP in received[0] and PF_HOST in received[0], \
        received[0]
    assert f"by {PF_HOST} (Postfix)" in received[1], received[1]
    rest = strip_trace(got, sender)
    names, rest = split_trace(rest, ["Received"])
    assert names == ["Received"]
    assert rest == msg, "the message changed on the way:\n" + repr(rest[:600])

    wait_for(pf, pf.queue_empty, "Postfix's queue to empty")
    log = pf.log_tail(20000)
    assert re.search(rf"to=<{ALICE}>, relay=[^,]*\[{re.escape(MG_IP)}\]:{mg_port},.*status=sent",
                     log), log
    assert re.search(rf"TLS connection established to [^\n]*\[{re.escape(MG_IP)}\]:{mg_port}",
                     log), log


def test_mailgate_refusing_an_unknown_user_makes_postfix_bounce(postfix, mailgate):
    mg = mailgate()
    pf = postfix(virtual_domain=PF_DOMAIN, mailboxes=[PF_USER])
    _, mg_port = mg.smtp_addr
    pf.set_transport(MG_DOMAIN, f"smtp:[{MG_IP}]:{mg_port}")
    pf.start()

    msg = make_message("to nobody at mailgate", PF_USER, "nobody@a.test")
    assert inject_into_postfix(pf, PF_USER, ["nobody@a.test"], msg) == {}
    [bounce] = wait_for(pf, lambda: pf.maildir(PF_USER), "Postfix's bounce in user's Maildir")
    bounce = crlf(bounce)
    assert header(bounce, "Return-Path") == ["<>"], bounce[:500]
    _, _, status = dsn_parts(bounce)
    status = unfold(status)
    assert "Final-Recipient: rfc822; nobody@a.test" in status, status
    assert "Status: 5.1.1" in status, status
    assert "Diagnostic-Code: smtp; 550 5.1.1 <nobody@a.test>" in status, status
    assert b"Subject: to nobody at mailgate" in bounce
    assert mailgate_messages(mg) == []
    wait_for(pf, pf.queue_empty, "Postfix's queue to empty")


def test_mailgate_relays_to_postfix_with_starttls_and_dkim(postfix, mailgate, dns):
    pf = postfix(virtual_domain=PF_DOMAIN, mailboxes=[PF_USER])
    dns.add(PF_DOMAIN, "MX", (10, PF_HOST))
    dns.add(PF_HOST, "A", PF_IP)
    mg = mailgate(dns=dns, relay_port=pf.port, dkim=True)
    dns.add(f"{SELECTOR}._domainkey.{MG_DOMAIN}", "TXT", mg.dkim_txt)
    pf.start()

    msg = make_message("mailgate to postfix", ALICE, PF_USER)
    submit_to_mailgate(mg, PF_USER, msg)

    [raw] = wait_for(pf, lambda: pf.maildir(PF_USER), f"the message in {PF_USER}'s Maildir")
    got = crlf(raw)
    # Postfix's trace (virtual(8): Return-Path, X-Original-To, Delivered-To;
    # smtpd: Received, over TLS from mailgate's address), then mailgate's
    # DKIM-Signature and Received, then the message exactly as submitted.
    assert header(got, "Return-Path") == [f"<{ALICE}>"]
    assert header(got, "Delivered-To") == [PF_USER]
    received = header(got, "Received")
    assert f"[{MG_IP}]" in received[0] and f"by {PF_HOST} (Postfix) with ESMTPS" in received[0], \
        received[0]
    assert "using TLS" in received[0], received[0]
    names, rest = split_trace(got, ["Return-Path", "X-Original-To", "Delivered-To", "Received",
                                    "DKIM-Signature"])
    assert names.count("DKIM-Signature") == 1, names
    assert rest == msg, "the message changed on the way:\n" + repr(rest[:600])
    tags = verify_dkim(got, mg.dkim_txt.split("p=", 1)[1])
    assert tags["d"] == MG_DOMAIN and tags["s"] == SELECTOR, tags

    wait_until(lambda: mailgate_queue_empty(mg), timeout=DELIVERY_TIMEOUT, interval=0.3,
               what="mailgate's queue to empty")
    log = pf.log_tail(20000)
    assert re.search(rf"to=<{PF_USER}>, relay=virtual,.*status=sent", log), log


def test_postfix_refusing_an_unknown_user_makes_mailgate_bounce(postfix, mailgate, dns):
    pf = postfix(virtual_domain=PF_DOMAIN, mailboxes=[PF_USER])
    dns.add(PF_DOMAIN, "MX", (10, PF_HOST))
    dns.add(PF_HOST, "A", PF_IP)
    mg = mailgate(dns=dns, relay_port=pf.port)
    pf.start()

    submit_to_mailgate(mg, "nobody@postfix.test",
                       make_message("to nobody at postfix", ALICE, "nobody@postfix.test"))
    [bounce] = wait_for(pf, lambda: mailgate_messages(mg), "mailgate's bounce to alice")
    assert header(bounce, "Return-Path") == ["<>"]
    _, _, status = dsn_parts(bounce.split(b"\r\n", 1)[1])
    status = unfold(status)
    assert "Final-Recipient: rfc822; nobody@postfix.test" in status, status
    assert "Action: failed" in status and "Status: 5.1.1" in status, status
    # Postfix's own words reach the sender.
    assert "User unknown in virtual mailbox table" in status, status
    wait_until(lambda: mailgate_queue_empty(mg), timeout=DELIVERY_TIMEOUT, interval=0.3,
               what="mailgate's queue to empty")
    assert pf.maildir(PF_USER) == []


def test_postfix_delivers_to_mailgate_over_lmtp(postfix, mailgate):
    mg = mailgate(lmtp=True)
    pf = postfix(virtual_domain=PF_DOMAIN, mailboxes=[PF_USER])
    _, lmtp_port = mg.ports["lmtp"]
    pf.set_transport(MG_DOMAIN, f"lmtp:inet:[{MG_IP}]:{lmtp_port}")
    pf.start()

    # One message, one Postfix delivery (both recipients share the next
    # hop), two answers: the unknown user refused, alice's copy stored.
    nobody = "nobody@a.test"
    msg = make_message("postfix to mailgate over lmtp", PF_USER, ALICE)
    assert inject_into_postfix(pf, PF_USER, [ALICE, nobody], msg) == {}

    [got] = wait_for(pf, lambda: mailgate_messages(mg), "the message in alice's mailbox")
    # mailgate's trace (Return-Path, its Received "with LMTP"), Postfix's
    # smtpd Received, then the message exactly as the client gave it.
    received = header(got, "Received")
    assert len(received) == 2, received
    assert "with LMTP" in received[0], received[0]
    assert f"by {PF_HOST} (Postfix)" in received[1], received[1]
    assert b"Authentication-Results" not in got.split(b"\r\n\r\n", 1)[0]
    rest = strip_trace(got, PF_USER)
    names, rest = split_trace(rest, ["Received"])
    assert names == ["Received"]
    assert rest == msg, "the message changed on the way:\n" + repr(rest[:600])

    # The unknown recipient, and only it, bounces to the Postfix sender.
    [bounce] = wait_for(pf, lambda: pf.maildir(PF_USER), "Postfix's bounce in user's Maildir")
    bounce = crlf(bounce)
    assert header(bounce, "Return-Path") == ["<>"], bounce[:500]
    _, _, status = dsn_parts(bounce)
    status = unfold(status)
    assert "Final-Recipient: rfc822; nobody@a.test" in status, status
    assert "Action: failed" in status and "Status: 5.1.1" in status, status
    assert re.search(r"Diagnostic-Code: (smtp|lmtp); 550 5\.1\.1 <nobody@a\.test>", status), status
    assert ALICE not in status, status
    assert b"Subject: postfix to mailgate over lmtp" in bounce

    wait_for(pf, pf.queue_empty, "Postfix's queue to empty")
    assert mailgate_queue_empty(mg)
    assert len(mailgate_messages(mg)) == 1
    assert len(pf.maildir(PF_USER)) == 1  # the one bounce, no delay notice
    log = pf.log_tail(20000)
    # Postfix's lmtp(8) client, not smtp(8), spoke to mailgate's LMTP port.
    port_re = rf"\[{re.escape(MG_IP)}\]:{lmtp_port}"
    assert re.search(rf"lmtp\[\d+\]: [0-9A-F]+: to=<{re.escape(ALICE)}>, relay=[^,]*{port_re},"
                     rf".*status=sent \(250 2\.0\.0", log), log
    assert re.search(rf"lmtp\[\d+\]: [0-9A-F]+: to=<{re.escape(nobody)}>, relay=[^,]*{port_re},"
                     r".*status=bounced .*550 5\.1\.1", log), log
