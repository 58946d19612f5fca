"""Capability `dns` through the real binary (issue 12): the server's
hickory resolver asking the `[relay] nameservers`, here the test DNS server
(tests/dns_server.py), with the dnsbl example at connect (A records); MX,
TXT and PTR with the `dns-lookups` test plugin, in a running server and in
`mailgate plugin run`; and the greylist example (kv, clock) in the same
kind of server.

Before issue 12 plugins got a getaddrinfo resolver that ignored the
`[relay] nameservers` (and answered A/AAAA only): a client listed in the
test server's zone was let in.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import time
from pathlib import Path

import pytest

from harness import USERS, built_plugins, dns  # noqa: F401  (dns: a fixture)

ALICE = "alice@example.test"
MSG = b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: dns\r\n\r\nHello.\r\n"


@pytest.fixture(scope="module")
def wasm() -> Path:
    return built_plugins("dnsbl", "greylist")


@pytest.fixture
def mx(server_factory, wasm):
    def make(plugin: str, grants: list[str], config: str, nameserver: str):
        srv = server_factory(start=False)
        pdir = srv.workdir / "plugins"
        pdir.mkdir()
        shutil.copy(wasm / f"{plugin}.wasm", pdir / f"{plugin}.wasm")
        with open(srv.config, "a", encoding="utf-8") as f:
            f.write(f'\n[relay]\nnameservers = ["{nameserver}"]\n'
                    f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "{plugin}"\n'
                    f"grants = {json.dumps(grants)}\ntimeout_ms = 3000\n"
                    f"config = {config}\n")
        return srv.start()

    return make


def closed_udp_port() -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def test_dnsbl_refuses_a_client_listed_in_the_configured_nameservers(mx, dns):
    # The client is 127.0.0.1: its DNSBL name is 1.0.0.127.<zone>.
    dns.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    srv = mx("dnsbl", ["dns", "config"], '{ zones = ["bl.test"] }', dns.nameserver)
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP(*srv.smtp_addr, timeout=30)
    assert e.value.smtp_code == 554, e.value
    assert b"bl.test" in e.value.smtp_error


def test_dnsbl_lets_in_a_client_the_zone_does_not_list(mx, dns):
    # NXDOMAIN for the client's name in this zone: not listed.
    dns.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    srv = mx("dnsbl", ["dns", "config"], '{ zones = ["other.test"] }', dns.nameserver)
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.sendmail("sender@remote.test", [ALICE], MSG)
    assert len(srv.messages(ALICE, USERS[ALICE])) == 1


def test_dnsbl_lets_clients_in_when_the_list_cannot_be_asked(mx):
    # A temporary failure (no name server answers) is not a listing.
    srv = mx("dnsbl", ["dns", "config"], '{ zones = ["bl.test"] }', closed_udp_port())
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        assert s.noop()[0] == 250


def test_plugin_run_uses_the_configured_resolver(mx, dns, wasm):
    dns.add("9.113.0.203.bl.test", "A", "127.0.0.4")
    srv = mx("dnsbl", ["dns", "config"], '{ zones = ["bl.test"] }', dns.nameserver)
    out = srv.cli("plugin", "run", str(wasm / "dnsbl.wasm"), "--hook", "connect",
                  "--client", "203.0.113.9", "--json", check=True).stdout_text
    report = json.loads(out)
    assert report["calls"][0]["verdict"] == "reject", report
    out = srv.cli("plugin", "run", str(wasm / "dnsbl.wasm"), "--hook", "connect",
                  "--client", "203.0.113.10", "--json", check=True).stdout_text
    assert json.loads(out)["calls"][0]["verdict"] == "accept"


def test_greylist_defers_the_first_attempt_and_accepts_the_retry(mx, dns):
    srv = mx("greylist", ["kv", "clock", "config"], "{ delay = 1 }", dns.nameserver)
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.ehlo("mail.remote.test")
        s.mail("sender@remote.test")
        code, text = s.rcpt(ALICE)
        assert (code, text[:5]) == (451, b"4.7.1"), (code, text)
    # Too early: still deferred.
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.ehlo("mail.remote.test")
        s.mail("sender@remote.test")
        assert s.rcpt(ALICE)[0] == 451
    time.sleep(2.2)
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.sendmail("sender@remote.test", [ALICE], MSG)
    assert len(srv.messages(ALICE, USERS[ALICE])) == 1


# MX, TXT and PTR through the binary (issue 12): the `dns-lookups` test
# plugin (host/policy/tests/fixtures/dns-lookups) looks them up at connect
# and refuses the connection with what it found.


@pytest.fixture(scope="module")
def lookups_wasm() -> Path:
    return built_plugins("dns_lookups")


@pytest.fixture
def lookups_mx(server_factory, lookups_wasm):
    def make(domain: str, nameserver: str):
        srv = server_factory(start=False)
        pdir = srv.workdir / "plugins"
        pdir.mkdir()
        shutil.copy(lookups_wasm / "dns_lookups.wasm", pdir / "dns_lookups.wasm")
        with open(srv.config, "a", encoding="utf-8") as f:
            f.write(f'\n[relay]\nnameservers = ["{nameserver}"]\n'
                    f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "dns_lookups"\n'
                    'grants = ["dns", "config"]\ntimeout_ms = 3000\n'
                    f'config = {{ domain = "{domain}" }}\n')
        return srv.start()

    return make


def connect_reply(srv) -> str:
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP(*srv.smtp_addr, timeout=30)
    assert e.value.smtp_code == 554, e.value
    return e.value.smtp_error.decode()


def test_a_plugin_looks_up_mx_txt_and_ptr_through_the_server(lookups_mx, dns):
    dns.add("b.test", "MX", (10, "mx.b.test"))
    dns.add("b.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    srv = lookups_mx("b.test", dns.nameserver)
    reply = connect_reply(srv)
    # The client is 127.0.0.1: the resolver answers its PTR itself (the
    # hosts file, RFC 6761: localhost among them), the others come from
    # the test DNS server.
    found, _, ptr = reply.partition(";ptr=")
    assert found.endswith("mx=10 mx.b.test;txt=v=spf1 ip4:192.0.2.1 -all"), reply
    assert "localhost" in ptr.split(","), reply
    assert ("b.test", 15) in dns.queries and ("b.test", 16) in dns.queries


def test_plugin_run_looks_up_a_ptr_in_the_configured_name_server(lookups_mx, dns, lookups_wasm):
    dns.add_ptr("192.0.2.7", "host.b.test")
    srv = lookups_mx("nowhere.test", dns.nameserver)
    out = srv.cli("plugin", "run", str(lookups_wasm / "dns_lookups.wasm"), "--hook", "connect",
                  "--client", "192.0.2.7", "--config-json", '{"domain": "nowhere.test"}',
                  "--json", check=True).stdout_text
    call = json.loads(out)["calls"][0]
    text = json.dumps(call)
    assert "mx=!notfound;txt=!notfound;ptr=host.b.test" in text, call
    assert ("7.2.0.192.in-addr.arpa", 12) in dns.queries
