"""`[relay] trusted_networks` (issue 19, Postfix's `mynetworks`), with the
real binary, real smtplib clients and a real peer.

The server under test ("gw", domain example.test) listens on 127.0.0.1 and
trusts 127.0.0.2/32 only, so one machine can play both sides: a client
bound to 127.0.0.2 is one of our own hosts, a client from 127.0.0.1 is a
stranger. Mail for other domains goes through the relay to a second
mailgate ("peer", domain peer.test, on 127.0.0.3), found through the test
DNS server (tests/dns_server.py), and is read back from the peer.

- A trusted client relays on `smtp` and on `submission` (no AUTH), and the
  peer gets the message; the log names the trusted relay.
- A stranger is refused `550 5.7.1 Relaying denied` on `smtp` and `530
  5.7.0` at MAIL on `submission`, as before; local mail still works.
- Limits still bind a trusted client (`SIZE=` over `max_message_size`).
- SPF/DKIM/DMARC: a trusted client's mail is checked and marked
  (`dmarc=fail`) but not refused under `p=reject`; a stranger's is refused.
"""

from __future__ import annotations

import re
import smtplib
import subprocess

import pytest

from dns_server import DnsServer
from harness import DOMAIN, Server, free_port, toml_value, wait_until, write_config

TRUSTED_IP, STRANGER_IP, PEER_IP = "127.0.0.2", "127.0.0.1", "127.0.0.3"
DAVE, DAVE_PW = "dave@peer.test", "dave-Peer-1"
BOB = "bob@example.test"
DELIVERY_TIMEOUT = 30.0


def message(subject: str, sender: str = f"cron@{DOMAIN}", to: str = DAVE) -> bytes:
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n"
            "Date: Mon, 07 Dec 2026 00:00:00 +0000\r\n\r\nFrom one of our own hosts.\r\n").encode()


def append(srv: Server, text: str) -> None:
    """Adds tables to the harness's configuration (it ends with [inbound])."""
    srv.config.write_text(srv.config.read_text(encoding="utf-8") + text, encoding="utf-8")


@pytest.fixture
def world(mailgate_bin, server_factory, tmp_path):
    """A DNS server, the peer (running) and make_gw(...) for the server under
    test; stops the peer and the DNS server afterwards."""
    dns = DnsServer("127.0.0.1")
    port = free_port(PEER_IP)
    dns.add("peer.test", "MX", (10, "mx.peer.test"))
    dns.add("mx.peer.test", "A", PEER_IP)
    peer = Server(binary=mailgate_bin, workdir=tmp_path / "peer")
    write_config(peer.config, peer.data_dir, domains=["peer.test"],
                 listen={"smtp": f"{PEER_IP}:{port}", "pop3": f"{PEER_IP}:0"})
    peer.add_user(DAVE, DAVE_PW)

    def make_gw(trusted=(f"{TRUSTED_IP}/32",), limits=None, verify=False, smtp="127.0.0.1:0"):
        gw = server_factory(listen={"smtp": smtp, "submission": "127.0.0.1:0",
                                    "pop3": "127.0.0.1:0"}, limits=limits, start=False)
        if verify:
            text = gw.config.read_text(encoding="utf-8")
            gw.config.write_text(text.replace("verify = false", "verify = true"),
                                 encoding="utf-8")
        append(gw, "\n".join([
            "", "[relay]",
            f"nameservers = [{toml_value(dns.nameserver)}]",
            f"port = {port}",
            'connect_timeout = "3s"',
            f"trusted_networks = {toml_value(list(trusted))}",
            "", "[queue]", 'retry = ["1s"]', 'poll_interval = "1s"', ""]))
        return gw.start()

    try:
        peer.start()
        yield type("World", (), {"make_gw": staticmethod(make_gw), "dns": dns, "peer": peer})
    finally:
        rc = peer.stop()
        dns.stop()
        assert rc == 0, peer.stderr_tail()


def client(gw: Server, listener: str, source: str) -> smtplib.SMTP:
    host, port = gw.ports[listener]
    s = smtplib.SMTP(host, port, local_hostname="host.example.test", timeout=30,
                     source_address=(source, 0))
    s.ehlo()
    return s


def peer_messages(peer: Server, n: int) -> list[bytes]:
    def got():
        try:
            m = peer.messages(DAVE, DAVE_PW)
        except AssertionError:
            return None
        return m if len(m) >= n else None
    return wait_until(got, timeout=DELIVERY_TIMEOUT, interval=0.3,
                      what=f"{n} message(s) for {DAVE} on the peer")


def test_trusted_client_relays_on_smtp_and_the_peer_gets_it(world):
    gw = world.make_gw()
    with client(gw, "smtp", TRUSTED_IP) as s:
        assert s.mail(f"cron@{DOMAIN}")[0] == 250
        code, text = s.rcpt(DAVE)
        assert code == 250, (code, text)
        # A local recipient in the same transaction stays local.
        assert s.rcpt(BOB)[0] == 250
        code, text = s.data(message("nightly report", to=DAVE))
        assert code == 250, (code, text)
    [got] = peer_messages(world.peer, 1)
    assert b"Subject: nightly report" in got
    assert f"Return-Path: <cron@{DOMAIN}>".encode() in got
    assert any(b"Subject: nightly report" in m for m in gw.messages(BOB))
    log = gw.stderr_path.read_text(errors="replace")
    assert re.search(r"RCPT relayed for a trusted network.*dave@peer\.test|"
                     r"dave@peer\.test.*RCPT relayed for a trusted network", log), log[-3000:]


def test_stranger_is_refused_relaying_as_before(world):
    gw = world.make_gw()
    with client(gw, "smtp", STRANGER_IP) as s:
        assert s.mail(f"cron@{DOMAIN}")[0] == 250
        code, text = s.rcpt(DAVE)
        assert (code, text[:5]) == (550, b"5.7.1"), (code, text)
        assert b"Relaying denied" in text
        # Local mail from strangers is what an MX is for.
        assert s.rcpt(BOB)[0] == 250
        assert s.data(message("for bob", to=BOB))[0] == 250
    # Submission without AUTH from a stranger: 530 at MAIL, as before.
    with client(gw, "submission", STRANGER_IP) as s:
        code, text = s.mail(f"cron@{DOMAIN}")
        assert (code, text[:5]) == (530, b"5.7.0"), (code, text)
    # Nobody is trusted by default, not even loopback.
    default = world.make_gw(trusted=())
    for source in (STRANGER_IP, TRUSTED_IP):
        with client(default, "smtp", source) as s:
            s.mail(f"cron@{DOMAIN}")
            code, text = s.rcpt(DAVE)
            assert (code, text[:5]) == (550, b"5.7.1"), (source, code, text)
    assert world.peer.messages(DAVE, DAVE_PW) == []


def test_trusted_client_submits_without_auth(world):
    gw = world.make_gw()
    with client(gw, "submission", TRUSTED_IP) as s:
        # Any envelope sender, as with Postfix's mynetworks.
        assert s.mail("printer@office.example.test")[0] == 250
        assert s.rcpt(DAVE)[0] == 250
        code, text = s.data(message("scan", sender="printer@office.example.test"))
        assert code == 250, (code, text)
    [got] = peer_messages(world.peer, 1)
    assert b"Subject: scan" in got


def test_limits_still_bind_a_trusted_client(world):
    gw = world.make_gw(limits={"max_message_size": 10000, "max_recipients": 2})
    with client(gw, "smtp", TRUSTED_IP) as s:
        code, text = s.mail(f"cron@{DOMAIN}", ["SIZE=20000"])
        assert (code, text[:5]) == (552, b"5.3.4"), (code, text)
        assert s.mail(f"cron@{DOMAIN}")[0] == 250
        assert s.rcpt(DAVE)[0] == 250
        assert s.rcpt(BOB)[0] == 250
        code, text = s.rcpt("carol@example.test")
        assert (code, text[:5]) == (452, b"4.5.3"), (code, text)


def test_dmarc_reject_is_not_applied_to_a_trusted_client(world):
    # forged.test says: no host may send for it, reject what fails.
    world.dns.add("forged.test", "A", "192.0.2.1")
    world.dns.add("forged.test", "TXT", "v=spf1 -all")
    world.dns.add("_dmarc.forged.test", "TXT", "v=DMARC1; p=reject")
    gw = world.make_gw(verify=True)
    msg = message("from the web app", sender="shop@forged.test", to=BOB)
    with client(gw, "smtp", STRANGER_IP) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("shop@forged.test", [BOB], msg)
        assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1"), e.value
    with client(gw, "smtp", TRUSTED_IP) as s:
        assert s.sendmail("shop@forged.test", [BOB], msg) == {}
    [got] = [m for m in gw.messages(BOB) if b"from the web app" in m]
    # Checked and said so: the verdict is written, only not enforced.
    results = re.search(rb"Authentication-Results: mx\.test\.example;(.*?)\r\n(?![ \t])",
                        got, re.S)
    assert results, got[:2000]
    flat = re.sub(rb"\s+", b" ", results.group(1))
    assert b"spf=fail" in flat and b"dmarc=fail" in flat, flat
    assert "DMARC reject not applied: trusted network" in gw.stderr_path.read_text(errors="replace")


def test_bad_entries_stop_the_server_with_the_key_named(mailgate_bin, tmp_path):
    srv = Server(binary=mailgate_bin, workdir=tmp_path / "bad")
    append(srv, '\n[relay]\ntrusted_networks = ["10.0.0.0/33"]\n')
    res = subprocess.run([str(mailgate_bin), "config", "check", str(srv.config)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "relay.trusted_networks" in res.stderr and "10.0.0.0/33" in res.stderr, res.stderr

