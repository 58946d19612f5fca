"""Capability `http` through the real binary (issue 12): the allow-list, no
redirects, the response size limit, the streamed message body and
connection reuse.

The plugin is plugins/rspamd (it posts the message to `url`/checkv2 and
acts on the JSON answer, `on_error = "tempfail"` here, so a request that
gave no usable response is a 451 the client sees); the "rspamd" is a
Python HTTP/1.1 server on loopback that records what reaches it.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness import USERS, built_plugins

ALICE = "alice@example.test"


class Recorder:
    """An HTTP/1.1 server on 127.0.0.1 answering every POST with `answer`
    (status, headers, body) and recording (path, headers, body, client port)."""

    def __init__(self, answer=None, tls=None):
        self.requests: list[tuple[str, dict, bytes, int]] = []
        self.answer = answer or (200, {"Content-Type": "application/json"}, json.dumps(
            {"action": "no action", "score": 1.25, "required_score": 15.0}).encode())
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                rec.requests.append((self.path,
                                     {k.lower(): self.headers.get_all(k) for k in self.headers},
                                     body, self.client_address[1]))
                status, headers, out = rec.answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def make(answer=None, tls=None) -> Recorder:
        r = Recorder(answer, tls)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture(scope="module")
def rspamd_wasm() -> Path:
    return built_plugins("rspamd") / "rspamd.wasm"


@pytest.fixture
def mx(server_factory, rspamd_wasm):
    def make(url: str, allow: list[str], ca_file=None):
        srv = server_factory(start=False)
        pdir = srv.workdir / "plugins"
        pdir.mkdir()
        shutil.copy(rspamd_wasm, pdir / "rspamd.wasm")
        with open(srv.config, "a", encoding="utf-8") as f:
            f.write(f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "rspamd"\n'
                    'grants = ["http", "config", "log"]\n'
                    f"http_allow = {json.dumps(allow)}\ntimeout_ms = 5000\n"
                    f'config = {{ url = "{url}", on_error = "tempfail" }}\n')
            if ca_file:
                f.write(f'\n[relay]\ntls_ca_file = "{ca_file}"\n')
        return srv.start()

    return make


MSG = (b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: http test\r\n"
       b"Message-ID: <h1@remote.test>\r\n\r\nThe body, streamed to the filter.\r\n")


def send(srv, msg=MSG):
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.ehlo("mail.remote.test")
        return s.sendmail("sender@remote.test", [ALICE], msg)


def expect_451(srv):
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(srv)
    assert e.value.smtp_code == 451, e.value


def test_an_allowed_request_streams_the_message_and_reuses_the_connection(mx, recorders):
    filt = recorders()
    srv = mx(filt.base, [filt.base + "/"])
    send(srv)
    send(srv)
    assert len(filt.requests) == 2
    path, headers, body, port1 = filt.requests[0]
    assert path == "/checkv2"
    assert headers["rcpt"] == [ALICE]
    assert headers["from"] == ["sender@remote.test"]
    assert headers["helo"] == ["mail.remote.test"]
    assert headers["ip"] == ["127.0.0.1"]
    # The whole message as the server holds it (its trace field on top).
    assert body.endswith(MSG), body
    assert body.startswith(b"Received: ")
    # The second message went over the same connection.
    assert filt.requests[1][3] == port1
    [got] = srv.messages(ALICE, USERS[ALICE])[:1]
    assert b"X-Spam-Score: 1.25 / 15.00" in got


def test_a_destination_outside_http_allow_is_refused(mx, recorders):
    allowed, other = recorders(), recorders()
    # The plugin's url is `other`, which the list does not name: same
    # host, another port.
    srv = mx(other.base, [allowed.base + "/"])
    expect_451(srv)
    assert other.requests == [] and allowed.requests == []
    # A path outside the prefix is refused too.
    srv2 = mx(allowed.base, [allowed.base + "/api/"])
    expect_451(srv2)
    assert allowed.requests == []
    # The server itself is fine: a refused request fails the call only.
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        assert s.noop()[0] == 250


def test_redirects_are_not_followed(mx, recorders):
    target = recorders()
    redirector = recorders((302, {"Location": target.base + "/checkv2"}, b""))
    srv = mx(redirector.base, [redirector.base + "/", target.base + "/"])
    expect_451(srv)
    assert len(redirector.requests) == 1
    assert target.requests == []


def test_a_response_over_the_size_limit_fails_the_call(mx, recorders):
    big = recorders((200, {"Content-Type": "application/json"},
                     b'{"action":"no action","pad":"' + b"x" * (2 << 20) + b'"}'))
    srv = mx(big.base, [big.base + "/"])
    expect_451(srv)
    assert len(big.requests) == 1


def test_https_trusts_the_relay_tls_ca_file(mx, recorders, tmp_path):
    from test_relay_mtasts import Pki
    pki = Pki(tmp_path)
    cert, key = pki.issue("localhost", tmp_path / "filter.pem", tmp_path / "filter.key")
    filt = recorders(tls=(str(cert), str(key)))
    url = f"https://localhost:{filt.port}"
    # Trusted through [relay] tls_ca_file: the check is made.
    srv = mx(url, [url + "/"], ca_file=pki.pem)
    send(srv)
    assert len(filt.requests) == 1
    [got] = srv.messages(ALICE, USERS[ALICE])
    assert b"X-Spam-Score: 1.25 / 15.00" in got
    # Without it the certificate is not trusted: no request is made.
    untrusting = mx(url, [url + "/"])
    expect_451(untrusting)
    assert len(filt.requests) == 1
