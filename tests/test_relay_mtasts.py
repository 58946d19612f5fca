"""MTA-STS (RFC 8461) for outbound delivery (issue 6), end to end.

Two mailgate servers as in tests/test_relay.py (`a.test` on 127.0.0.2
relays alice's mail to `b.test` on 127.0.0.3, found through the test DNS
server). The DNS server also publishes `_mta-sts.b.test TXT "v=STSv1;
id=..."` and `mta-sts.b.test A 127.0.0.47`, where the test runs an HTTPS
server (Python's http.server + ssl) on port 443 serving
`/.well-known/mta-sts.txt`. A test CA made here with `cryptography` signs
the HTTPS certificate (`mta-sts.b.test`) and, where a case needs it, B's
SMTP certificate (`mx.b.test`); A trusts it through `[relay] tls_ca_file`.

- enforce, the MX matches, B's certificate valid for mx.b.test: delivered
  over TLS; the policy was fetched once, with certificate verification.
- enforce, the MX host not in the policy: deferred, `451 4.7.5 MTA-STS`
  in `mailgate queue show`; nothing reaches B.
- enforce, B offering no STARTTLS: deferred, never sent in plain text.
- enforce, B's certificate from the test CA but for another name: deferred.
- testing, the MX host not in the policy and a self-signed certificate:
  delivered as usual, and A logs what enforce would have refused.
- the policy is kept in the store: a restarted A applies it without a
  fetch; an older version's `mta-sts-cache.json` is moved into the store
  at the first start (renamed `*.imported`) and applied the same way.
"""

from __future__ import annotations

import datetime
import http.server
import json
import re
import sqlite3
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import wait_until
from test_relay import (ALICE, ALICE_PW, B_IP, BOB, BOB_PW, FAST, A_IP, header, messages,
                        queue_ids, queue_show, submit, wait_messages, world)  # noqa: F401

STS_IP = "127.0.0.47"
STS_PORT = 443  # RFC 8461 §3.3: the policy host's HTTPS port


# ------------------------------------------------------------ a test PKI
class Pki:
    def __init__(self, directory):
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailgate test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.dir / "ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, hostname, cert_path, key_path):
        """A leaf certificate for `hostname` signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


# ------------------------------------------------------ the policy server
class PolicyServer:
    """HTTPS on STS_IP:443 serving `self.policy` at the well-known path."""

    def __init__(self, ca: Pki, hostname="mta-sts.b.test"):
        cert, key = ca.issue(hostname, ca.dir / "sts-cert.pem", ca.dir / "sts-key.pem")
        self.policy = ""
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.requests.append(f"{self.headers.get('Host')} {self.path}")
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                body = outer.policy.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        try:
            self.httpd = http.server.ThreadingHTTPServer((STS_IP, STS_PORT), Handler)
        except PermissionError:
            pytest.skip(f"cannot bind {STS_IP}:{STS_PORT} (needs root)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def policy(mode, *mx, max_age=86400):
    return "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (
        mode, "".join(f"mx: {m}\r\n" for m in mx), max_age)


@pytest.fixture
def sts(world, tmp_path):  # noqa: F811
    """The test CA, the policy server, and the DNS records pointing to it."""
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = Pki(pki)
    server = PolicyServer(ca)
    world.dns.add("_mta-sts.b.test", "TXT", "v=STSv1; id=20261129")
    world.dns.add("mta-sts.b.test", "A", STS_IP)
    world.ca = ca
    world.sts = server
    yield server
    server.stop()


def make_a(world):  # noqa: F811
    """A (a.test), trusting the test CA for verified TLS."""
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST)
    text = a.config.read_text()
    assert "\n[relay]\n" in text
    a.config.write_text(text.replace(
        "\n[relay]\n", f'\n[relay]\ntls_ca_file = "{world.ca.pem}"\n', 1))
    return a


def make_b(world, *, ca_cert=True, cert_name="mx.b.test", starttls=True):  # noqa: F811
    """B (b.test): its SMTP certificate for `cert_name` from the test CA,
    or the self-signed one test_relay makes; or no [tls] at all."""
    b = world.make("b.test", B_IP, BOB, BOB_PW, FAST)
    if ca_cert:
        world.ca.issue(cert_name, b.workdir / "cert.pem", b.workdir / "key.pem")
    if not starttls:
        text = b.config.read_text()
        text, n = re.subn(r"\n\[tls\]\ncert = [^\n]*\nkey = [^\n]*\n", "\n", text)
        assert n == 1, text
        b.config.write_text(text)
    return b


def deferred_twice(a, what):
    """The single queued message once it was tried at least twice."""
    [qid] = wait_until(lambda: list(queue_ids(a)), what="the message in A's queue")
    wait_until(lambda: re.search(r"attempts: ([2-9]|\d\d)", queue_show(a, qid)),
               timeout=30, interval=0.3, what=what)
    return qid, queue_show(a, qid)


def deferred_under_enforce(world, sts, mx, subject, what, **b_options):  # noqa: F811
    """A and B (made with `b_options`) started under an enforce policy
    naming `mx`; a message from ALICE to BOB with `subject` deferred on
    two attempts (`what`) and never delivered. Returns A, B and the
    queue entry as `queue show` tells it."""
    sts.policy = policy("enforce", *mx)
    a = make_a(world).start()
    b = make_b(world, **b_options).start()
    submit(a, ALICE, ALICE_PW, BOB, subject)
    _, shown = deferred_twice(a, what)
    assert messages(b, BOB, BOB_PW) == []
    return a, b, shown


# ------------------------------------------------------------------ tests
def test_enforce_with_a_matching_mx_and_valid_certificate_delivers_over_tls(world, sts):  # noqa: F811
    sts.policy = policy("enforce", "mx.b.test", "*.backup.b.test")
    a = make_a(world).start()
    b = make_b(world).start()

    submit(a, ALICE, ALICE_PW, BOB, "sts enforce ok")
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert b"Subject: sts enforce ok" in got
    received = header(got, "Received")[0]
    assert "with ESMTPS" in received and A_IP in received, received
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")
    assert sts.requests == ["mta-sts.b.test /.well-known/mta-sts.txt"], sts.requests
    log = a.stderr_tail(40000)
    assert "MTA-STS policy fetched" in log and "enforce" in log, log

    # A second message: the cached policy (same TXT id) is used, not
    # fetched again.
    submit(a, ALICE, ALICE_PW, BOB, "sts enforce cached")
    wait_messages(b, BOB, BOB_PW, 2)
    assert len(sts.requests) == 1, sts.requests


def test_enforce_with_no_matching_mx_defers_and_says_why(world, sts):  # noqa: F811
    a, _, shown = deferred_under_enforce(
        world, sts, ["mx.elsewhere.test", "*.b2.test"], "sts enforce no mx",
        "two attempts refused by the policy")
    assert f"recipient: <{BOB}> pending (451 4.7.5 MTA-STS policy of b.test (enforce)" in shown, \
        shown
    assert "mx.b.test" in shown and "mx.elsewhere.test" in shown, shown
    log = a.stderr_tail(40000)
    assert "MTA-STS (enforce): MX host not in the policy" in log, log


def test_enforce_never_falls_back_to_plain_text(world, sts):  # noqa: F811
    _, b, shown = deferred_under_enforce(
        world, sts, ["mx.b.test"], "sts enforce plain", "two attempts without STARTTLS",
        starttls=False)
    assert "does not offer STARTTLS" in shown, shown
    assert "MTA-STS policy of b.test: enforce" in shown, shown
    # B really offers no STARTTLS.
    with b.smtp() as s:
        s.ehlo("client.test")
        assert not s.has_extn("starttls")


def test_enforce_refuses_a_certificate_not_valid_for_the_mx(world, sts):  # noqa: F811
    # B's certificate is from the trusted CA, but for another name.
    a, _, shown = deferred_under_enforce(
        world, sts, ["mx.b.test"], "sts enforce bad cert",
        "two attempts with a certificate for another name", cert_name="smtp.elsewhere.test")
    assert "TLS handshake failed" in shown and "not valid for name" in shown, shown
    assert "MTA-STS policy of b.test: enforce" in shown, shown
    log = a.stderr_tail(40000)
    assert "not sent in plain text" in log, log


def test_testing_mode_delivers_and_logs_what_enforce_would_refuse(world, sts):  # noqa: F811
    sts.policy = policy("testing", "mx.elsewhere.test")
    a = make_a(world).start()
    b = make_b(world, ca_cert=False).start()

    submit(a, ALICE, ALICE_PW, BOB, "sts testing")
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert "with ESMTPS" in header(got, "Received")[0]
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")
    log = a.stderr_tail(40000)
    assert "MTA-STS (testing): MX host not in the policy" in log, log
    assert "MTA-STS (testing): enforce would refuse this session" in log, log
    assert "certificate not valid" in log, log


def test_the_cached_policy_survives_a_restart(world, sts):  # noqa: F811
    sts.policy = policy("enforce", "mx.b.test")
    a = make_a(world).start()
    b = make_b(world).start()
    submit(a, ALICE, ALICE_PW, BOB, "sts before restart")
    wait_messages(b, BOB, BOB_PW, 1)
    assert len(sts.requests) == 1, sts.requests
    assert cached_policies(a) == [("b.test", "20261129")], "not kept in the store"
    assert not (a.data_dir / "mta-sts-cache.json").exists(), "a cache file beside the store"

    # Restarted, A applies the cached policy (same TXT id) without
    # fetching it again, and still delivers over verified TLS.
    a.restart()
    submit(a, ALICE, ALICE_PW, BOB, "sts after restart")
    [got] = [m for m in wait_messages(b, BOB, BOB_PW, 2) if b"sts after restart" in m]
    assert "with ESMTPS" in header(got, "Received")[0]
    assert len(sts.requests) == 1, sts.requests


def cached_policies(server):
    """The (domain, id) rows of the store's MTA-STS cache."""
    db = sqlite3.connect(f"file:{server.data_dir / 'mailgate.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT domain, id FROM mta_sts_cache ORDER BY domain").fetchall()
    finally:
        db.close()


def test_an_older_versions_cache_file_is_moved_into_the_store(world, sts):  # noqa: F811
    """The `mta-sts-cache.json` of an older mailgate is imported at the
    first start and renamed: its enforce policy (same TXT id) is applied
    without a fetch, and the policy server serves nothing here."""
    sts.policy = "not a policy"
    a = make_a(world)
    a.data_dir.mkdir(parents=True, exist_ok=True)
    expires = int(time.time()) + 86400
    (a.data_dir / "mta-sts-cache.json").write_text(json.dumps([{
        "domain": "b.test", "id": "20261129", "expires": expires,
        "policy": policy("enforce", "mx.b.test"),
    }]))
    a.start()
    b = make_b(world).start()
    assert not (a.data_dir / "mta-sts-cache.json").exists()
    assert (a.data_dir / "mta-sts-cache.json.imported").exists()
    assert cached_policies(a) == [("b.test", "20261129")]
    submit(a, ALICE, ALICE_PW, BOB, "sts from the imported cache")
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert "with ESMTPS" in header(got, "Received")[0]
    assert sts.requests == [], sts.requests
