"""The client's forward-confirmed reverse name (FCrDNS, issue 12) through
the real binary, with the test DNS server (tests/dns_server.py) as
`[relay] nameservers` and `[inbound] reverse_lookup = true`.

Every test client is on loopback, and the resolver (hickory, RFC 6761)
answers the loopback PTR itself: 127.0.0.1 is `localhost`, confirmed by
`localhost`'s own address, and the name server is never asked. So through
the binary:

- `Received:` shows `from HELO (localhost [127.0.0.1])` (or the name the
  hosts file gives 127.0.0.1), and a plugin sees the same name as the
  session's `reverse-name` (the rspamd example plugin
  sends it as rspamd's `Hostname` header; a small stand-in for rspamd
  records the request);
- with `reverse_lookup = false`: `unknown`;
- a name server that never answers does not hold up delivery.

A PTR that does not point back, a DNS failure and the 2 s bound with a
slow server are tested in host/smtp/src/reverse.rs with an injected
resolver; the PTR answers of tests/dns_server.py are used through the
binary by tests/test_plugin_dns.py (plugins' `dns` capability).

Before issue 12 `Received:` always said `unknown` and `reverse-name` was
always empty.
"""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import USERS, built_plugins, dns  # noqa: F401  (dns: a fixture)
from test_relay import header

ALICE = "alice@example.test"
MSG = (b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: fcrdns\r\n"
       b"Message-ID: <fcrdns@remote.test>\r\n\r\nHello.\r\n")


@pytest.fixture
def mx(server_factory):
    def make(nameserver: str, extra=None):
        """`extra(workdir)`: more configuration (and its files)."""
        srv = server_factory(start=False)
        text = srv.config.read_text(encoding="utf-8")
        assert "reverse_lookup = false" in text
        text = text.replace("reverse_lookup = false", "reverse_lookup = true")
        text += f'\n[relay]\nnameservers = ["{nameserver}"]\n'
        if extra:
            text += extra(srv.workdir)
        srv.config.write_text(text, encoding="utf-8")
        return srv.start()

    return make


def deliver(srv) -> bytes:
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.ehlo("helo.remote.test")
        assert s.sendmail("sender@remote.test", [ALICE], MSG) == {}
    [got] = srv.messages(ALICE, USERS[ALICE])
    return got


# `from HELO (NAME [127.0.0.1])` with a confirmed NAME: `localhost` here,
# or the first dotted name the hosts file gives 127.0.0.1 on another machine.
NAMED = re.compile(r"^from helo\.remote\.test \((localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+) "
                   r"\[127\.0\.0\.1\]\)")


def received(raw: bytes) -> str:
    return " ".join(header(raw, "Received")[0].split())


def test_a_local_client_is_localhost(mx, dns):
    # RFC 6761 §6.3: the resolver answers 127.0.0.0/8 itself (PTR
    # `localhost`, whose A record is 127.0.0.1): confirmed, and the
    # configured name server is not asked. Names that do not point back,
    # DNS failures and the time bound are tested in host/smtp/src/reverse.rs
    # (the same code with an injected resolver).
    dns.add_ptr("127.0.0.1", "elsewhere.fcrdns.test")
    srv = mx(dns.nameserver)
    got = deliver(srv)
    assert NAMED.match(received(got)), received(got)
    assert "elsewhere" not in received(got)
    assert ("1.0.0.127.in-addr.arpa", 12) not in dns.queries, dns.queries


def test_without_the_lookup_the_client_is_unknown(server_factory):
    srv = server_factory()  # the harness writes reverse_lookup = false
    got = deliver(srv)
    assert received(got).startswith("from helo.remote.test (unknown [127.0.0.1])"), \
        received(got)


def test_a_silent_dns_server_does_not_hold_up_delivery(mx):
    # A UDP socket nobody reads: every query to the name server goes
    # unanswered; the session still ends well within the lookup's bound.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        srv = mx(f"127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        got = deliver(srv)
        assert time.monotonic() - start < 4.0
        assert "[127.0.0.1])" in received(got), received(got)
    finally:
        silent.close()


class FakeRspamd:
    """Stands in for rspamd's normal worker: records each /checkv2
    request's headers and answers `no action`."""

    def __init__(self):
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                outer.requests.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps({"action": "no action", "score": 0.5,
                                   "required_score": 15.0}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_plugin_sees_the_confirmed_name(mx, dns):
    wasm = built_plugins("rspamd") / "rspamd.wasm"
    fake = FakeRspamd()
    try:
        url = f"http://127.0.0.1:{fake.port}"

        def plugin(workdir):
            pdir = workdir / "plugins"
            pdir.mkdir()
            shutil.copy(wasm, pdir / "rspamd.wasm")
            return (f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "rspamd"\n'
                    'grants = ["http", "config", "log"]\n'
                    f'http_allow = ["{url}/"]\ntimeout_ms = 10000\n'
                    f'config = {{ url = "{url}", controller_url = "{url}" }}\n')

        srv = mx(dns.nameserver, plugin)
        got = deliver(srv)
        assert fake.requests, "the plugin did not call the stand-in"
        m = NAMED.match(received(got))
        assert m, received(got)
        assert fake.requests[0].get("hostname") == m.group(1), (fake.requests[0], received(got))
    finally:
        fake.stop()
