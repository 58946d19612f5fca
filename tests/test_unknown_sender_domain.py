"""`[inbound] reject_unknown_sender_domain` (issue 19, Postfix's check of
the same name), with the real binary, smtplib and the test DNS server
(tests/dns_server.py) as the server's only name server.

- A sender domain with an MX, or only an A record, is accepted; `<>` is
  always accepted, and so are our own domains (example.test is not in
  the test DNS).
- NXDOMAIN and a name with no MX/A/AAAA (NODATA) get `550 5.1.8 Sender
  address rejected: Domain not found`; a null MX gets `550 5.7.27`.
- SERVFAIL gets `450 4.1.8` (try again later), with the reason in the log.
- Trusted clients (`[relay] trusted_networks`) and authenticated ones are
  not checked; nor is the `submission` listener.
- The key turns the check off; it is on by default.
"""

from __future__ import annotations

import smtplib

import pytest

from dns_server import DnsServer
from harness import DOMAIN, USERS, toml_value

ALICE = "alice@example.test"
BOB = "bob@example.test"
TRUSTED_IP, STRANGER_IP = "127.0.0.2", "127.0.0.1"


@pytest.fixture
def dns():
    d = DnsServer("127.0.0.1")
    d.add("exists.test", "MX", (10, "mx.exists.test"))
    d.add("mx.exists.test", "A", "192.0.2.25")
    d.add("a-only.test", "A", "192.0.2.26")
    d.add("nodata.test", "TXT", "v=spf1 -all")  # exists, but no MX/A/AAAA
    d.add("null.test", "MX", (0, "."))
    d.servfail("broken.test")
    yield d
    d.stop()


def make(server_factory, dns, *, reject=None, trusted=(), smtp="127.0.0.1:0"):
    """A server asking only `dns`; `reject=None` leaves the key unset (the
    default)."""
    srv = server_factory(listen={"smtp": smtp, "submission": "127.0.0.1:0",
                                 "pop3": "127.0.0.1:0"}, start=False)
    text = srv.config.read_text(encoding="utf-8")
    # The harness turns the check off for the other tests.
    text = text.replace("reject_unknown_sender_domain = false\n",
                        "" if reject is None else f"reject_unknown_sender_domain = {toml_value(reject)}\n")
    text += "\n".join(["", "[relay]", f"nameservers = [{toml_value(dns.nameserver)}]",
                       f"trusted_networks = {toml_value(list(trusted))}", ""])
    srv.config.write_text(text, encoding="utf-8")
    return srv.start()


def mail_reply(srv, sender, listener="smtp", source=STRANGER_IP, login=None):
    host, port = srv.ports[listener]
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30,
                      source_address=(source, 0)) as s:
        s.ehlo()
        if login:
            s.login(login, USERS[login])
        return s.mail(sender)


def test_existing_domains_and_null_sender_are_accepted(server_factory, dns):
    srv = make(server_factory, dns)
    for sender in ("someone@exists.test", "someone@a-only.test", "", "someone@[192.0.2.1]",
                   f"someone@{DOMAIN}", f"someone@{DOMAIN.upper()}"):
        code, text = mail_reply(srv, sender)
        assert code == 250, (sender, code, text)
    # And the message goes through.
    msg = b"From: <someone@exists.test>\r\nSubject: fine\r\n\r\nhello\r\n"
    with smtplib.SMTP(*srv.ports["smtp"], local_hostname="client.test", timeout=30) as s:
        assert s.sendmail("someone@exists.test", [BOB], msg) == {}
    assert any(b"Subject: fine" in m for m in srv.messages(BOB))


def test_unknown_domains_are_refused_550_5_1_8(server_factory, dns):
    srv = make(server_factory, dns)
    for sender in ("someone@nowhere.test", "someone@nodata.test"):
        code, text = mail_reply(srv, sender)
        assert (code, text[:5]) == (550, b"5.1.8"), (sender, code, text)
        assert text == f"5.1.8 <{sender}>: Sender address rejected: Domain not found".encode(), text
    code, text = mail_reply(srv, "someone@null.test")
    assert (code, text[:6]) == (550, b"5.7.27"), (code, text)
    # The refusal is for the transaction, not the session: a good sender
    # may follow on the same connection.
    with smtplib.SMTP(*srv.ports["smtp"], local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        assert s.mail("someone@nowhere.test")[0] == 550
        assert s.mail("someone@exists.test")[0] == 250
    log = srv.stderr_path.read_text(errors="replace")
    assert "unknown sender domain" in log and "nowhere.test" in log, log[-3000:]


def test_dns_failure_is_a_temporary_450_4_1_8(server_factory, dns):
    srv = make(server_factory, dns)
    code, text = mail_reply(srv, "someone@broken.test")
    assert (code, text[:5]) == (450, b"4.1.8"), (code, text)
    assert ("broken.test", 15) in dns.queries  # it was asked (MX)
    assert "sender domain lookup failed" in srv.stderr_path.read_text(errors="replace")


def test_trusted_authenticated_and_submission_clients_are_not_checked(server_factory, dns):
    srv = make(server_factory, dns, trusted=[f"{TRUSTED_IP}/32"])
    # One of our own hosts on smtp.
    assert mail_reply(srv, "app@nowhere.test", source=TRUSTED_IP)[0] == 250
    # A stranger on the same listener is checked.
    assert mail_reply(srv, "app@nowhere.test")[0] == 550
    # An authenticated user on submission: their own rules apply, not
    # the DNS check.
    code, text = mail_reply(srv, ALICE, listener="submission", login=ALICE)
    assert code == 250, (code, text)
    # A trusted client on submission, with a sender nowhere.
    assert mail_reply(srv, "app@nowhere.test", listener="submission", source=TRUSTED_IP)[0] == 250


def test_the_key_turns_the_check_off(server_factory, dns):
    srv = make(server_factory, dns, reject=False)
    assert mail_reply(srv, "someone@nowhere.test")[0] == 250
    assert mail_reply(srv, "someone@broken.test")[0] == 250
    assert dns.queries == []
