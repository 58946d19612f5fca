"""SRS for forwarded mail (issue 12), with three real mailgate servers and
the test DNS server (tests/dns_server.py), all on one SMTP port:

- origin.test on 127.0.0.5: the original sender's domain; its SPF record
  allows only 127.0.0.9 (where the test's client, the origin's outgoing
  MTA, connects from); its MX is this server, which receives the bounce.
- a.test on 127.0.0.2: the forwarder, `[srs]` on; `fwd@a.test` is an
  alias to bob@b.test. a.test's SPF allows 127.0.0.2.
- b.test on 127.0.0.3: the final receiver, `[inbound] verify = true`.

Without SRS B would see `sender@origin.test` from 127.0.0.2: SPF fail
(shown directly, by such a session from 127.0.0.2). With SRS B sees
`SRS0=…@a.test`: SPF pass. Then B's `delivered` DSN (NOTIFY=SUCCESS), sent
by B to the SRS address, reaches A, which checks it and relays it to the
original sender at origin.test. A forged or altered SRS address is
`550 5.1.1` at A.

Before issue 12 `mailgate alias add fwd@a.test bob@b.test` was refused
("needs SRS") and no SRS address was accepted.
"""

from __future__ import annotations

import smtplib

import pytest

from dns_server import DnsServer
from harness import Server, toml_value, wait_until
from test_relay import (
    DELIVERY_TIMEOUT, FAST, auth_results, header, messages, shared_free_port, stop_world,
    write_host_config,
)

A_IP, B_IP, ORIGIN_IP, ORIGIN_CLIENT_IP = "127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.9"
BOB, BOB_PW = "bob@b.test", "bob-Srs-2"
SENDER, SENDER_PW = "sender@origin.test", "sender-Srs-1"
FWD = "fwd@a.test"
SECRET = "srs-test-secret-0123456789"


@pytest.fixture
def world(mailgate_bin, tmp_path):
    dns = DnsServer("127.0.0.1")
    port = shared_free_port(A_IP, B_IP, ORIGIN_IP)
    made = []

    def make(domain, ip, user, password, inbound, extra=""):
        srv = Server(binary=mailgate_bin, workdir=tmp_path / domain)
        write_host_config(srv, domain=domain, ip=ip, smtp_port=port, dns=dns, queue=FAST,
                          inbound=inbound)
        if extra:
            with open(srv.config, "a", encoding="utf-8") as f:
                f.write("\n" + extra + "\n")
        srv.add_user(user, password)
        made.append(srv)
        return srv

    for domain, ip in (("a.test", A_IP), ("b.test", B_IP), ("origin.test", ORIGIN_IP)):
        dns.add(domain, "MX", (10, f"mx.{domain}"))
        dns.add(f"mx.{domain}", "A", ip)
    dns.add("origin.test", "TXT", f"v=spf1 ip4:{ORIGIN_CLIENT_IP} -all")
    dns.add("a.test", "TXT", f"v=spf1 ip4:{A_IP} -all")
    no_checks = {"verify": False, "reject_unknown_sender_domain": False}
    w = type("World", (), {})()
    w.dns, w.port = dns, port
    w.origin = make("origin.test", ORIGIN_IP, SENDER, SENDER_PW, no_checks).start()
    w.b = make("b.test", B_IP, BOB, BOB_PW,
               {"verify": True, "dmarc_reject": False, "reject_unknown_sender_domain": False})
    w.b.start()
    w.a = make("a.test", A_IP, "alice@a.test", "alice-Srs-3", no_checks,
               f"[srs]\nsecret = {toml_value(SECRET)}")
    w.a.cli("alias", "add", FWD, BOB, check=True)
    w.a.start()
    yield w
    stop_world(made, dns)


def send_from(source_ip, port, dest_ip, sender, rcpt, subject, rcpt_options=()):
    msg = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@origin.test>\r\n\r\nHello.\r\n").encode()
    with smtplib.SMTP(dest_ip, port, local_hostname="mail.origin.test", timeout=30,
                      source_address=(source_ip, 0)) as s:
        s.ehlo()
        s.mail(sender)
        code, text = s.rcpt(rcpt, list(rcpt_options))
        assert code == 250, (code, text)
        code, text = s.data(msg)
        assert code == 250, (code, text)


def wait_for(srv, user, password, n=1):
    return wait_until(lambda: (m := messages(srv, user, password)) and len(m) >= n and m,
                      timeout=DELIVERY_TIMEOUT, interval=0.3, what=f"{n} message(s) for {user}")


def test_forwarded_mail_passes_spf_and_the_bounce_returns_to_the_sender(world):
    send_from(ORIGIN_CLIENT_IP, world.port, A_IP, SENDER, FWD, "forwarded",
              rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    [got] = wait_for(world.b, BOB, BOB_PW)
    [return_path] = header(got, "Return-Path")
    assert return_path.startswith("<SRS0=") and return_path.endswith("=origin.test=sender@a.test>"), \
        return_path
    [results] = auth_results(got)
    assert results["spf"] == "pass", results
    assert "smtp.mailfrom=a.test" in results["raw"], results

    # B's delivered notice goes to the SRS address, reaches A, and A
    # relays it to the original sender at origin.test.
    [dsn] = wait_for(world.origin, SENDER, SENDER_PW)
    assert header(dsn, "Return-Path") == ["<>"], header(dsn, "Return-Path")
    assert b"delivered" in dsn.lower() or b"Action: delivered" in dsn, dsn[:2000]
    assert b"bob@b.test" in dsn, dsn[:2000]


def test_without_srs_the_same_hop_fails_spf(world):
    # What B would see if A forwarded with the original sender: the
    # origin's SPF does not allow A's address.
    send_from(A_IP, world.port, B_IP, SENDER, BOB, "not rewritten")
    [got] = wait_for(world.b, BOB, BOB_PW)
    [results] = auth_results(got)
    assert results["spf"] == "fail", results


def test_forged_expired_or_altered_srs_addresses_are_unknown_users(world):
    send_from(ORIGIN_CLIENT_IP, world.port, A_IP, SENDER, FWD, "to learn the address")
    [got] = wait_for(world.b, BOB, BOB_PW)
    srs = header(got, "Return-Path")[0].strip("<>")
    local, _, domain = srs.partition("@")
    tag, hash_, stamp, host, user = local.split("=", 4)
    altered = f"{tag}={hash_}={stamp}={host}=admin@{domain}"
    forged = f"SRS0=AAAA={stamp}=origin.test=sender@a.test"
    malformed = "SRS0=abcd=origin.test@a.test"
    with smtplib.SMTP(A_IP, world.port, timeout=30, source_address=(B_IP, 0)) as s:
        s.ehlo("mx.b.test")
        s.mail("")
        for bad in (altered, forged, malformed):
            code, text = s.rcpt(bad)
            assert (code, text[:5]) == (550, b"5.1.1"), (bad, code, text)
        # The real one (any case) is accepted for relaying back.
        assert s.rcpt(srs.lower())[0] == 250
        assert s.rcpt(srs)[0] == 250


def test_mail_from_a_local_sender_is_not_rewritten(world):
    # alice@a.test forwards through her own domain's alias: A may send
    # for a.test, so the sender stays.
    send_from(A_IP, world.port, A_IP, "alice@a.test", FWD, "local sender")
    [got] = wait_for(world.b, BOB, BOB_PW)
    assert header(got, "Return-Path") == ["<alice@a.test>"], header(got, "Return-Path")


def test_a_bounce_a_made_itself_reaches_the_original_sender(world):
    # B refuses the forwarded copy at RCPT (no such user): A's own failure
    # report goes to the SRS address, which A reverses and relays on.
    world.a.cli("alias", "add", "lost@a.test", "nobody@b.test", check=True)
    send_from(ORIGIN_CLIENT_IP, world.port, A_IP, SENDER, "lost@a.test", "refused at b")
    [dsn] = wait_for(world.origin, SENDER, SENDER_PW)
    assert header(dsn, "Return-Path") == ["<>"], header(dsn, "Return-Path")
    assert b"nobody@b.test" in dsn and b"failed" in dsn.lower(), dsn[:2000]
