"""TLS and authentication (issue 5) through real clients against the real
binary: smtplib, poplib, imaplib, `openssl s_client` and raw sockets.

- every protocol through every TLS mode: SMTP STARTTLS on 25 and 587,
  SMTP_SSL on 465, POP3 STLS and POP3S, IMAP STARTTLS and IMAPS; `openssl
  s_client -starttls smtp|pop3|imap` and implicit TLS, TLS 1.1 refused,
  ALPN `imap`/`pop3`;
- STARTTLS injection probes on SMTP (25 and 587), POP3 and IMAP;
- every password mechanism on every protocol, identical answers (bytes and
  timing class) for a wrong password and an unknown account, the failure
  limit shared by the three protocols and cleared after `failure_window`,
  clear-text passwords refused before TLS unless allowed;
- the open-relay battery on port 25 and on 587 without AUTH, with
  `mailgate queue list` empty afterwards;
- certificate hot reload (file watcher and SIGHUP) under open sessions.

Submission itself (587/465, sender ownership, `[submission.senders]`,
`save_sent`, the outbound queue) is in test_submission.py.

The harness has no `[tls]` support, so `tls_server` below writes the
certificate (with the `openssl` command) and appends the table itself."""

from __future__ import annotations

import base64
import hashlib
import imaplib
import os
import poplib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import warnings

import pytest

from harness import DOMAIN, HOSTNAME, USERS, make_message, plain_b64, wait_until

ALICE = "alice@example.test"
ALICE_PW = USERS[ALICE]
BOB = "bob@example.test"
CAROL = "carol@example.test"
VICTIM = "victim@example.test"
ALL_LISTENERS = {k: "127.0.0.1:0" for k in ("smtp", "submission", "submissions", "pop3", "pop3s",
                                            "imap", "imaps")}
# Every test but one runs on loopback: turn off the loopback exception so
# that the clear-text rules are what a remote client would see.
STRICT = {"allow_plaintext": False, "trust_loopback": False}


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def closed_port() -> int:
    """A loopback port nobody listens on (the relay's smarthost in tests that
    must keep queued mail in the queue: connection refused is temporary)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relay_to_nowhere() -> str:
    """`[relay]`/`[queue]` tables that keep outbound mail on this machine:
    everything goes to a closed loopback port and is retried in an hour."""
    return (f'\n[relay]\nsmarthost = "127.0.0.1:{closed_port()}"\nconnect_timeout = "2s"\n'
            '\n[queue]\nretry = ["1h"]\n')


def queue_list(srv) -> str:
    res = srv.cli("queue", "list", check=True)
    return res.stdout_text


# ------------------------------------------------------------------ helpers
def make_cert(directory, name="cert"):
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def tls_server(server_factory, tmp_path, auth=None, extra="", limits=None):
    srv = server_factory(listen=dict(ALL_LISTENERS), auth=dict(STRICT, **(auth or {})),
                         limits=limits, start=False)
    srv.cert, srv.key = make_cert(tmp_path)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[tls]\ncert = "{srv.cert}"\nkey = "{srv.key}"\n{extra}')
    return srv.start()


def client_context(srv, alpn=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.cert))
    ctx.check_hostname = False  # clients connect to 127.0.0.1
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def port(srv, name):
    return srv.ports[name]


def smtp(srv, name="smtp", source=None) -> smtplib.SMTP:
    host, p = port(srv, name)
    return smtplib.SMTP(host, p, local_hostname="client.test", timeout=30,
                        source_address=(source, 0) if source else None)


def smtps(srv, source=None) -> smtplib.SMTP_SSL:
    host, p = port(srv, "submissions")
    return smtplib.SMTP_SSL(host, p, local_hostname="client.test", timeout=30,
                            context=client_context(srv),
                            source_address=(source, 0) if source else None)


def raw(srv, name, source=None):
    return socket.create_connection(port(srv, name), timeout=30,
                                    source_address=(source, 0) if source else None)


def messages(srv, user) -> list[bytes]:
    """Every message of `user`, read over POP3S (clear-text logins are off)."""
    p = poplib.POP3_SSL(*port(srv, "pop3s"), context=client_context(srv), timeout=30)
    try:
        p.user(user)
        p.pass_(USERS[user])
        n, _ = p.stat()
        return [b"\r\n".join(p.retr(i)[1]) for i in range(1, n + 1)]
    finally:
        p.quit()


def read_reply(f) -> list[bytes]:
    lines = []
    while True:
        line = f.readline()
        assert line, f"connection closed after {lines!r}"
        lines.append(line.rstrip(b"\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return lines


class Lines:
    """Line-oriented raw client over a plain or TLS socket (POP3 and IMAP)."""

    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")

    def send(self, data: bytes):
        self.sock.sendall(data)

    def line(self) -> bytes:
        line = self.f.readline()
        assert line, "connection closed"
        return line.rstrip(b"\r\n")

    def cmd(self, data: bytes) -> bytes:
        self.send(data + b"\r\n")
        return self.line()

    def until(self, tag: bytes) -> list[bytes]:
        """IMAP: lines up to and including the tagged answer."""
        out = []
        while True:
            out.append(self.line())
            if out[-1].startswith(tag + b" "):
                return out

    def tagged(self, tag: bytes, rest: bytes) -> bytes:
        self.send(tag + b" " + rest + b"\r\n")
        return self.until(tag)[-1]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def pop3_tls(srv, mode, source=None) -> Lines:
    """A raw POP3 connection under TLS: `stls` on 110 or implicit on 995."""
    sock = raw(srv, "pop3" if mode == "stls" else "pop3s", source)
    if mode == "stls":
        c = Lines(sock)
        assert c.line().startswith(b"+OK")
        assert c.cmd(b"STLS").startswith(b"+OK")
        sock = client_context(srv).wrap_socket(sock)
        return Lines(sock)
    c = Lines(client_context(srv).wrap_socket(sock))
    assert c.line().startswith(b"+OK")
    return c


def imap_tls(srv, mode, source=None) -> Lines:
    """A raw IMAP connection under TLS: `starttls` on 143 or implicit on 993."""
    sock = raw(srv, "imap" if mode == "starttls" else "imaps", source)
    if mode == "starttls":
        c = Lines(sock)
        assert c.line().startswith(b"* OK")
        assert c.tagged(b"s", b"STARTTLS").startswith(b"s OK")
        return Lines(client_context(srv).wrap_socket(sock))
    c = Lines(client_context(srv).wrap_socket(sock))
    assert c.line().startswith(b"* OK")
    return c


def smtp_tls(srv, mode, source=None) -> Lines:
    """A raw submission connection under TLS, after EHLO: `starttls` on 587
    or implicit on 465. Replies are read with `read_reply(c.f)`."""
    sock = raw(srv, "submission" if mode == "starttls" else "submissions", source)
    if mode == "starttls":
        c = Lines(sock)
        read_reply(c.f)
        c.send(b"EHLO client.test\r\n")
        read_reply(c.f)
        c.send(b"STARTTLS\r\n")
        assert read_reply(c.f)[0].startswith(b"220")
        c = Lines(client_context(srv).wrap_socket(sock))
    else:
        c = Lines(client_context(srv).wrap_socket(sock))
        read_reply(c.f)
    c.send(b"EHLO client.test\r\n")
    ehlo = read_reply(c.f)
    assert any(b"AUTH PLAIN LOGIN" in ln for ln in ehlo), ehlo
    return c


def smtp_cmd(c: Lines, data: bytes) -> bytes:
    c.send(data + b"\r\n")
    return b"\n".join(read_reply(c.f))


def imaplib_tls(srv, mode, alpn=None) -> imaplib.IMAP4:
    if mode == "imaps":
        return imaplib.IMAP4_SSL(*port(srv, "imaps"), ssl_context=client_context(srv, alpn),
                                 timeout=30)
    m = imaplib.IMAP4(*port(srv, "imap"), timeout=30)
    typ, data = m.starttls(ssl_context=client_context(srv, alpn))
    assert typ == "OK", (typ, data)
    return m
# ------------------------------------------------------------- SMTP on 25
def test_smtp_starttls_then_local_delivery(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    with smtp(srv) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), "port 25 never offers AUTH"
        s.starttls(context=client_context(srv))
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS must not be offered again under TLS"
        assert s.sock.version() in ("TLSv1.3", "TLSv1.2")
        s.sendmail("someone@remote.test", [ALICE], make_message("over tls"))
    [msg] = messages(srv, ALICE)
    assert b"with ESMTPS id" in msg


def test_old_tls_versions_are_refused(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    ctx = client_context(srv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(port(srv, "pop3s"), timeout=10) as sock:
            with ctx.wrap_socket(sock) as tls:
                tls.recv(100)
    ctx12 = client_context(srv)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    p = poplib.POP3_SSL(*port(srv, "pop3s"), context=ctx12, timeout=30)
    assert p.sock.version() == "TLSv1.2"
    assert "GCM" in p.sock.cipher()[0] or "CHACHA20" in p.sock.cipher()[0]
    p.quit()


def test_openssl_s_client_alpn(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    host, p = port(srv, "pop3s")

    def s_client(alpn):
        return subprocess.run(
            # -ign_eof: send QUIT, then read until the server closes.
            ["openssl", "s_client", "-connect", f"{host}:{p}", "-alpn", alpn, "-ign_eof"],
            input=b"QUIT\r\n", capture_output=True, timeout=30)

    good = s_client("pop3")
    out = (good.stdout + good.stderr).decode(errors="replace")
    assert "ALPN protocol: pop3" in out, out
    assert "signing off" in out, out
    bad = s_client("http/1.1")
    out = (bad.stdout + bad.stderr).decode(errors="replace")
    assert "+OK" not in out and "no application protocol" in out.lower(), out


# ------------------------------------------------------- STARTTLS injection
def test_smtp_starttls_injection_is_discarded(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    with raw(srv, "smtp") as sock:
        f = sock.makefile("rb")
        read_reply(f)  # greeting
        sock.sendall(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<"
                     + ALICE.encode() + b">\r\n")
        assert read_reply(f)[-1].startswith(b"250")
        assert read_reply(f)[0].startswith(b"220")
        tls = client_context(srv).wrap_socket(sock)
        tf = tls.makefile("rb")
        tls.sendall(b"EHLO y\r\n")
        assert read_reply(tf)[0].startswith(b"250-"), "the first answer under TLS is the EHLO's"
        tls.sendall(b"RCPT TO:<" + ALICE.encode() + b">\r\n")
        assert read_reply(tf)[0].startswith(b"503"), "the injected MAIL must not have run"
        tls.sendall(b"QUIT\r\n")
        assert read_reply(tf)[0].startswith(b"221")


def test_submission_starttls_injection_and_state_reset(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, auth={"allow_plaintext": True})
    with raw(srv, "submission") as sock:
        f = sock.makefile("rb")
        read_reply(f)
        sock.sendall(b"EHLO x\r\nAUTH PLAIN " + plain_b64(ALICE, ALICE_PW).encode() + b"\r\n")
        read_reply(f)
        assert read_reply(f)[0].startswith(b"235")
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<" + ALICE.encode() + b">\r\n")
        assert read_reply(f)[0].startswith(b"220")
        tls = client_context(srv).wrap_socket(sock)
        tf = tls.makefile("rb")
        tls.sendall(b"EHLO y\r\n")
        ehlo = b"\n".join(read_reply(tf))
        assert b"AUTH PLAIN LOGIN" in ehlo, "AUTH from before TLS is forgotten (RFC 3207 4.2)"
        tls.sendall(b"MAIL FROM:<" + ALICE.encode() + b">\r\n")
        assert read_reply(tf)[0].startswith(b"530")


def test_pop3_stls_injection_is_discarded(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    with raw(srv, "pop3") as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"+OK")
        sock.sendall(b"STLS\r\nUSER " + ALICE.encode() + b"\r\n")
        assert f.readline().startswith(b"+OK Begin TLS")
        tls = client_context(srv).wrap_socket(sock)
        tf = tls.makefile("rb")
        tls.sendall(b"PASS " + ALICE_PW.encode() + b"\r\n")
        assert tf.readline().startswith(b"-ERR"), "the injected USER must not have run"
        tls.sendall(b"CAPA\r\n")
        capa = []
        assert tf.readline().startswith(b"+OK")
        while (line := tf.readline().rstrip(b"\r\n")) != b".":
            capa.append(line)
        assert b"USER" in capa and b"STLS" not in capa, capa




# ----------------------------------------------------- IMAP through TLS
def test_imap_starttls_and_imaps_with_imaplib(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    srv.send("x@remote.test", [ALICE], make_message("for imap"))
    for mode in ("starttls", "imaps"):
        m = imaplib_tls(srv, mode, alpn=["imap"])
        assert m.sock.version() in ("TLSv1.3", "TLSv1.2")
        assert m.sock.selected_alpn_protocol() == "imap"
        # Under TLS (after STARTTLS imaplib asks CAPABILITY again) passwords
        # are welcome and STARTTLS is no longer offered.
        caps = m.capabilities
        assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
        assert "AUTH=PLAIN" in caps and "SASL-IR" in caps, caps
        m.login(ALICE, ALICE_PW)
        typ, data = m.select("INBOX", readonly=True)
        assert (typ, data) == ("OK", [b"1"]), (mode, typ, data)
        typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Subject: for imap" in data[0][1], data
        m.logout()


# ------------------------------------------------------ openssl s_client
S_CLIENT_CASES = [
    # listener, -starttls protocol (None: implicit TLS), ALPN, application bytes, expected reply
    ("smtp", "smtp", None, b"NOOP\r\nQUIT\r\n", "250 2.0.0"),
    ("submission", "smtp", None, b"NOOP\r\nQUIT\r\n", "250 2.0.0"),
    ("submissions", None, None, b"EHLO x\r\nQUIT\r\n", "AUTH PLAIN LOGIN"),
    ("pop3", "pop3", "pop3", b"CAPA\r\nQUIT\r\n", "USER"),
    ("pop3s", None, "pop3", b"CAPA\r\nQUIT\r\n", "USER"),
    ("imap", "imap", "imap", b"a CAPABILITY\r\nb LOGOUT\r\n", "AUTH=PLAIN"),
    ("imaps", None, "imap", b"a CAPABILITY\r\nb LOGOUT\r\n", "AUTH=PLAIN"),
]


def s_client(srv, listener, starttls, *args, data=b"", timeout=30) -> str:
    host, p = port(srv, listener)
    cmd = ["openssl", "s_client", "-connect", f"{host}:{p}", "-CAfile", str(srv.cert),
           "-verify_return_error", "-ign_eof"]
    if starttls:
        cmd += ["-starttls", starttls]
    r = subprocess.run(cmd + list(args), input=data, capture_output=True, timeout=timeout)
    return (r.stdout + r.stderr).decode(errors="replace")


@pytest.mark.parametrize("listener,starttls,alpn,data,expect", S_CLIENT_CASES,
                         ids=[c[0] for c in S_CLIENT_CASES])
def test_openssl_s_client_every_listener(server_factory, tmp_path, listener, starttls, alpn,
                                         data, expect):
    srv = tls_server(server_factory, tmp_path)
    args = ["-alpn", alpn] if alpn else []
    out = s_client(srv, listener, starttls, *args, data=data)
    assert "Verify return code: 0 (ok)" in out, out
    assert re.search(r"Protocol\s*: TLSv1\.[23]", out), out
    assert expect in out, f"no {expect!r} from the protocol under TLS:\n{out}"
    if alpn:
        assert f"ALPN protocol: {alpn}" in out, out
    # TLS 1.2 is still accepted ...
    out12 = s_client(srv, listener, starttls, "-tls1_2", *args, data=data)
    assert re.search(r"Protocol\s*: TLSv1\.2", out12) and expect in out12, out12
    # ... TLS 1.1 is not: the server answers the ClientHello with an alert.
    out11 = s_client(srv, listener, starttls, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0",
                     data=data)
    assert "Cipher is (NONE)" in out11 and "alert" in out11, out11
    assert expect not in out11, out11


@pytest.mark.parametrize("listener,starttls", [("pop3s", None), ("pop3", "pop3"),
                                               ("imaps", None), ("imap", "imap")])
def test_openssl_s_client_foreign_alpn_is_refused(server_factory, tmp_path, listener, starttls):
    srv = tls_server(server_factory, tmp_path)
    out = s_client(srv, listener, starttls, "-alpn", "http/1.1", data=b"")
    assert "alert no application protocol" in out.lower(), out
    assert "no peer certificate available" in out, out


def test_imap_starttls_injection_is_discarded(server_factory, tmp_path):
    # A whole login and a SELECT pipelined behind STARTTLS: if the server
    # kept them in its buffer and ran them under TLS, the session would be
    # logged in and the first tagged answer under TLS would not be ours.
    srv = tls_server(server_factory, tmp_path)
    sock = raw(srv, "imap")
    c = Lines(sock)
    assert c.line().startswith(b"* OK")
    sock.sendall(b"a STARTTLS\r\nb LOGIN " + ALICE.encode() + b' "' + ALICE_PW.encode()
                 + b'"\r\nc SELECT INBOX\r\n')
    assert c.line() == b"a OK Begin TLS negotiation now"
    t = Lines(client_context(srv).wrap_socket(sock))
    first = t.cmd(b"d NOOP")
    assert first.startswith(b"d OK"), f"an injected command was answered under TLS: {first!r}"
    sel = t.tagged(b"e", b"SELECT INBOX")
    assert sel.startswith((b"e BAD", b"e NO")), f"the injected LOGIN ran: {sel!r}"
    t.send(b"f CAPABILITY\r\n")
    caps = t.until(b"f")
    assert b"STARTTLS" not in caps[0] and b"LOGINDISABLED" not in caps[0], caps
    assert t.tagged(b"g", b"LOGIN " + ALICE.encode() + b' "' + ALICE_PW.encode()
                    + b'"').startswith(b"g OK")
    t.close()


def test_pop3_stls_injection_of_a_whole_login(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, auth={"allow_plaintext": True})
    sock = raw(srv, "pop3")
    c = Lines(sock)
    assert c.line().startswith(b"+OK")
    sock.sendall(b"STLS\r\nUSER " + ALICE.encode() + b"\r\nPASS " + ALICE_PW.encode()
                 + b"\r\nSTAT\r\n")
    assert c.line().startswith(b"+OK Begin TLS")
    t = Lines(client_context(srv).wrap_socket(sock))
    first = t.cmd(b"STAT")
    assert first.startswith(b"-ERR"), f"the injected USER/PASS logged in: {first!r}"
    assert t.cmd(b"NOOP").startswith(b"-ERR")  # still in AUTHORIZATION
    assert t.cmd(b"USER " + ALICE.encode()).startswith(b"+OK")
    assert t.cmd(b"PASS " + ALICE_PW.encode()).startswith(b"+OK")
    assert t.cmd(b"QUIT").startswith(b"+OK")
    t.close()


def test_smtp_starttls_injection_of_a_whole_transaction(server_factory, tmp_path):
    # Port 25: a complete transaction pipelined behind STARTTLS must not be
    # delivered (it would be attributed to the TLS session).
    srv = tls_server(server_factory, tmp_path)
    with raw(srv, "smtp") as sock:
        f = sock.makefile("rb")
        read_reply(f)
        sock.sendall(b"EHLO x\r\n")
        read_reply(f)
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<" + ALICE.encode()
                     + b">\r\nDATA\r\nSubject: injected\r\n\r\nevil\r\n.\r\nQUIT\r\n")
        assert read_reply(f)[0].startswith(b"220")
        tls = client_context(srv).wrap_socket(sock)
        tf = tls.makefile("rb")
        tls.sendall(b"NOOP\r\n")
        first = read_reply(tf)
        assert first[0].startswith(b"250"), f"an injected command was answered: {first!r}"
        tls.sendall(b"QUIT\r\n")
        assert read_reply(tf)[0].startswith(b"221")
    time.sleep(0.3)
    assert messages(srv, ALICE) == []


# ---------------------------------------------- every mechanism, every mode
USERNAME_CH, PASSWORD_CH = b64("Username:").encode(), b64("Password:").encode()


def smtp_login_steps(mech):
    """(command line, expected reply prefix) pairs of one successful AUTH."""
    plain = plain_b64(ALICE, ALICE_PW).encode()
    return {
        "PLAIN-IR": [(b"AUTH PLAIN " + plain, b"235 2.7.0")],
        "PLAIN": [(b"AUTH PLAIN", b"334"), (plain, b"235 2.7.0")],
        "LOGIN": [(b"AUTH LOGIN", b"334 " + USERNAME_CH), (b64(ALICE).encode(),
                  b"334 " + PASSWORD_CH), (b64(ALICE_PW).encode(), b"235 2.7.0")],
        "LOGIN-IR": [(b"AUTH LOGIN " + b64(ALICE).encode(), b"334 " + PASSWORD_CH),
                     (b64(ALICE_PW).encode(), b"235 2.7.0")],
    }[mech]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_smtp_auth_every_mechanism(server_factory, tmp_path, mode):
    srv = tls_server(server_factory, tmp_path)
    for mech in ("PLAIN-IR", "PLAIN", "LOGIN", "LOGIN-IR"):
        c = smtp_tls(srv, mode)
        for line, expect in smtp_login_steps(mech):
            reply = smtp_cmd(c, line)
            assert reply.startswith(expect), (mode, mech, line, reply)
        assert smtp_cmd(c, b"MAIL FROM:<" + ALICE.encode() + b">").startswith(b"250"), mech
        assert smtp_cmd(c, b"QUIT").startswith(b"221")
        c.close()
    # And through smtplib, both mechanisms.
    for mech in ("PLAIN", "LOGIN"):
        if mode == "implicit":
            s = smtps(srv)
        else:
            s = smtp(srv, "submission")
            s.starttls(context=client_context(srv))
        with s:
            s.ehlo()
            s.user, s.password = ALICE, ALICE_PW
            code, text = s.auth(mech, getattr(s, f"auth_{mech.lower()}"))
            assert code == 235, (mech, code, text)


@pytest.mark.parametrize("mode", ["starttls", "imaps"])
def test_imap_every_mechanism(server_factory, tmp_path, mode):
    srv = tls_server(server_factory, tmp_path)
    # LOGIN (imaplib).
    m = imaplib_tls(srv, mode)
    typ, data = m.login(ALICE, ALICE_PW)
    assert typ == "OK", data
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    # AUTHENTICATE PLAIN without SASL-IR (imaplib waits for the "+").
    m = imaplib_tls(srv, mode)
    typ, data = m.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{ALICE_PW}".encode())
    assert typ == "OK", data
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    # AUTHENTICATE PLAIN with SASL-IR (RFC 4959), and the continuation form raw.
    c = imap_tls(srv, mode)
    reply = c.tagged(b"b", b"AUTHENTICATE PLAIN " + plain_b64(ALICE, ALICE_PW).encode())
    assert reply.startswith(b"b OK"), reply
    assert c.tagged(b"c", b"SELECT INBOX").startswith(b"c OK")
    c.close()
    c = imap_tls(srv, mode)
    c.send(b"b AUTHENTICATE PLAIN\r\n")
    assert c.line() == b"+ ", "an empty continuation asks for the PLAIN message"
    c.send(plain_b64(ALICE, ALICE_PW).encode() + b"\r\n")
    ans = c.until(b"b")[-1]
    assert ans.startswith(b"b OK [CAPABILITY "), ans
    c.close()


def pop3_login_raw(srv, mode, steps, tries=50):
    """Runs one login over a fresh connection; retries while the maildrop of
    the previous session is still locked ([IN-USE])."""
    for _ in range(tries):
        c = pop3_tls(srv, mode)
        last = None
        for line, expect in steps:
            last = c.cmd(line)
            if b"IN-USE" in last:
                break
            assert last.startswith(expect), (mode, line, last)
        else:
            return c
        c.close()
        time.sleep(0.1)
    raise AssertionError(f"maildrop stayed in use: {last!r}")


@pytest.mark.parametrize("mode", ["stls", "pop3s"])
def test_pop3_every_mechanism(server_factory, tmp_path, mode):
    srv = tls_server(server_factory, tmp_path)
    srv.send("x@remote.test", [ALICE], make_message("for pop"))
    plain = plain_b64(ALICE, ALICE_PW).encode()
    ways = {
        "USER/PASS": [(b"USER " + ALICE.encode(), b"+OK"), (b"PASS " + ALICE_PW.encode(), b"+OK")],
        "AUTH PLAIN (initial response)": [(b"AUTH PLAIN " + plain, b"+OK")],
        "AUTH PLAIN (continuation)": [(b"AUTH PLAIN", b"+ "), (plain, b"+OK")],
        "AUTH LOGIN": [(b"AUTH LOGIN", b"+ " + USERNAME_CH),
                       (b64(ALICE).encode(), b"+ " + PASSWORD_CH),
                       (b64(ALICE_PW).encode(), b"+OK")],
    }
    for name, steps in ways.items():
        c = pop3_login_raw(srv, mode, steps)
        assert c.cmd(b"STAT").startswith(b"+OK 1 "), name
        assert c.cmd(b"QUIT").startswith(b"+OK"), name
        c.close()
    # poplib itself, over both modes.
    if mode == "stls":
        p = poplib.POP3(*port(srv, "pop3"), timeout=30)
        p.stls(context=client_context(srv))
    else:
        p = poplib.POP3_SSL(*port(srv, "pop3s"), context=client_context(srv), timeout=30)
    for _ in range(50):
        p.user(ALICE)
        try:
            p.pass_(ALICE_PW)
            break
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0], e
            time.sleep(0.1)
    assert p.stat()[0] == 1
    p.quit()


# ------------------------------------- failures: identical answers and timing
DELAY = 0.6  # failure_delay_ms below, in seconds


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def smtp_failure(srv, source, user, mech):
    c = smtp_tls(srv, "implicit", source)
    try:
        if mech == "PLAIN":
            return timed(lambda: smtp_cmd(c, b"AUTH PLAIN " + plain_b64(user, "wrong").encode()))
        assert smtp_cmd(c, b"AUTH LOGIN").startswith(b"334")
        assert smtp_cmd(c, b64(user).encode()).startswith(b"334")
        return timed(lambda: smtp_cmd(c, b64("wrong").encode()))
    finally:
        c.close()


def imap_failure(srv, source, user, mech):
    c = imap_tls(srv, "imaps", source)
    try:
        if mech == "LOGIN":
            return timed(lambda: c.tagged(b"x", b"LOGIN " + user.encode() + b" wrong"))
        if mech == "PLAIN-IR":
            return timed(lambda: c.tagged(b"x", b"AUTHENTICATE PLAIN "
                                          + plain_b64(user, "wrong").encode()))
        c.send(b"x AUTHENTICATE PLAIN\r\n")
        assert c.line().startswith(b"+")
        return timed(lambda: c.cmd(plain_b64(user, "wrong").encode()))
    finally:
        c.close()


def pop3_failure(srv, source, user, mech):
    c = pop3_tls(srv, "pop3s", source)
    try:
        if mech == "USER/PASS":
            user_answer = c.cmd(b"USER " + user.encode())
            out, t = timed(lambda: c.cmd(b"PASS wrong"))
            return user_answer + b" | " + out, t
        if mech == "PLAIN":
            return timed(lambda: c.cmd(b"AUTH PLAIN " + plain_b64(user, "wrong").encode()))
        assert c.cmd(b"AUTH LOGIN").startswith(b"+ ")
        assert c.cmd(b64(user).encode()).startswith(b"+ ")
        return timed(lambda: c.cmd(b64("wrong").encode()))
    finally:
        c.close()


FAILURE_CASES = {
    "smtp": (smtp_failure, ["PLAIN", "LOGIN"],
             b"535 5.7.8 Authentication credentials invalid"),
    "imap": (imap_failure, ["LOGIN", "PLAIN-IR", "PLAIN"],
             b"x NO [AUTHENTICATIONFAILED] Authentication failed"),
    "pop3": (pop3_failure, ["USER/PASS", "PLAIN", "LOGIN"],
             b"-ERR [AUTH] Authentication failed"),
}


@pytest.mark.parametrize("proto", list(FAILURE_CASES))
def test_wrong_password_and_unknown_account_look_the_same(server_factory, tmp_path, proto):
    # Each attempt comes from its own address and names its own account, so
    # each is a first failure: same delay expected, whatever the account.
    srv = tls_server(server_factory, tmp_path,
                     auth={"failure_delay_ms": int(DELAY * 1000), "max_failures": 100})
    fail, mechs, expected = FAILURE_CASES[proto]
    existing = [ALICE, BOB, CAROL]
    n = 10
    for i, mech in enumerate(mechs):
        results = {}
        for kind, user in (("wrong password", existing[i]),
                           ("unknown user", f"nobody{i}@{DOMAIN}"),
                           ("unknown domain", f"{existing[i].split('@')[0]}@nowhere.test")):
            n += 1
            results[kind] = fail(srv, f"127.0.0.{n}", user, mech)
        answers = {k: v[0] for k, v in results.items()}
        assert len(set(answers.values())) == 1, (proto, mech, answers)
        assert next(iter(answers.values())).endswith(expected), (proto, mech, answers)
        times = {k: round(v[1], 3) for k, v in results.items()}
        # Same timing class: the first-failure delay, plus the (same) cost
        # of verifying a password hash (a dummy hash for unknown accounts);
        # a missing delay or a skipped check would stand out by >= DELAY.
        # The margins allow for a loaded 2-core machine.
        assert all(DELAY * 0.95 <= t <= DELAY + 1.0 for t in times.values()), (proto, mech, times)
        assert max(times.values()) - min(times.values()) < 0.35, (proto, mech, times)


def test_failure_delay_doubles_per_account_across_protocols(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, auth={"failure_delay_ms": 200, "max_failures": 100})
    # Same account from three addresses and three protocols: 200, 400, 800 ms.
    _, t1 = imap_failure(srv, "127.0.0.31", BOB, "LOGIN")
    _, t2 = pop3_failure(srv, "127.0.0.32", BOB, "PLAIN")
    _, t3 = smtp_failure(srv, "127.0.0.33", BOB, "PLAIN")
    assert 0.19 <= t1 < 0.39 and 0.39 <= t2 < 0.79 and 0.79 <= t3 < 1.4, (t1, t2, t3)


# ----------------------------------------- the failure limit, shared by all
def blocked_answers(srv, source, user):
    """The answer of each protocol to a CORRECT password from `source`."""
    pw = USERS[user].encode()
    c = imap_tls(srv, "imaps", source)
    imap = c.tagged(b"x", b"LOGIN " + user.encode() + b' "' + pw + b'"')
    c.close()
    c = pop3_tls(srv, "pop3s", source)
    c.cmd(b"USER " + user.encode())
    pop = c.cmd(b"PASS " + pw)
    c.close()
    c = smtp_tls(srv, "implicit", source)
    smtp_ = smtp_cmd(c, b"AUTH PLAIN " + plain_b64(user, USERS[user]).encode())
    c.close()
    return {"imap": imap, "pop3": pop, "smtp": smtp_}


BLOCKED = {"imap": b"x NO [UNAVAILABLE] Too many failed logins, try again later",
           "pop3": b"-ERR [SYS/TEMP] Too many failures, try later",
           "smtp": b"454 4.7.0 Temporary authentication failure, try again later"}


def test_failure_limit_is_shared_by_all_protocols_and_expires(server_factory, tmp_path):
    window = 8
    srv = tls_server(server_factory, tmp_path,
                     auth={"failure_delay_ms": 1, "max_failures": 3, "failure_window": window})
    imap_f = lambda src, u: imap_failure(srv, src, u, "LOGIN")  # noqa: E731
    pop3_f = lambda src, u: pop3_failure(srv, src, u, "PLAIN")  # noqa: E731
    smtp_f = lambda src, u: smtp_failure(srv, src, u, "LOGIN")  # noqa: E731
    # Each scenario: its own client address and account, three failures.
    scenarios = {
        "3 x IMAP": ("127.0.0.41", ALICE, [imap_f] * 3),
        "3 x POP3": ("127.0.0.42", BOB, [pop3_f] * 3),
        "3 x SMTP": ("127.0.0.43", CAROL, [smtp_f] * 3),
        "IMAP+POP3+SMTP": ("127.0.0.44", VICTIM, [imap_f, pop3_f, smtp_f]),
    }
    t_first = time.monotonic()
    for name, (src, user, fails) in scenarios.items():
        for f in fails:
            f(src, user)
    # Unknown accounts count as well: three different unknown names from one
    # address block that address, for every account.
    for i in range(3):
        [imap_f, pop3_f, smtp_f][i]("127.0.0.45", f"ghost{i}@{DOMAIN}")
    scenarios["unknown accounts"] = ("127.0.0.45", "jürgen@example.test", [])
    t_last = time.monotonic()

    for name, (src, user, _) in scenarios.items():
        got = blocked_answers(srv, src, user)
        assert got == BLOCKED, (name, got)
    # The account is blocked from any address too (except the last scenario,
    # where only the address is).
    for name, (_, user, fails) in scenarios.items():
        if fails:
            assert blocked_answers(srv, "127.0.0.46", user) == BLOCKED, name
    # ... and the address for any other account.
    assert blocked_answers(srv, "127.0.0.41", "jürgen@example.test") == BLOCKED
    assert time.monotonic() - t_first < window, "too slow to check inside the window"

    time.sleep(max(0.0, t_last + window + 0.5 - time.monotonic()))
    for name, (src, user, _) in scenarios.items():
        got = blocked_answers(srv, src, user)
        assert got["imap"].startswith(b"x OK"), (name, got)
        assert got["pop3"].startswith(b"+OK"), (name, got)
        assert got["smtp"].startswith(b"235 2.7.0"), (name, got)


# --------------------------------------------------- clear-text refusal
def test_passwords_refused_before_tls(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    # SMTP 587: no AUTH offered, AUTH answered 538 5.7.11 (no 334 challenge:
    # the password is never asked for), MAIL 530.
    with smtp(srv, "submission") as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        for args in ("PLAIN " + plain_b64(ALICE, ALICE_PW), "PLAIN", "LOGIN",
                     "LOGIN " + b64(ALICE)):
            code, text = s.docmd("AUTH", args)
            assert (code, text) == (
                538, b"5.7.11 Encryption required for requested authentication mechanism"), \
                (args, code, text)
        code, text = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert (code, text[:5]) == (530, b"5.7.0"), (code, text)
    # Port 25 never offers AUTH, in clear or under TLS.
    with smtp(srv) as s:
        s.ehlo()
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", "PLAIN " + plain_b64(ALICE, ALICE_PW))[0] >= 500
        s.starttls(context=client_context(srv))
        s.ehlo()
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", "PLAIN " + plain_b64(ALICE, ALICE_PW))[0] >= 500
    # POP3 110: CAPA offers neither USER nor SASL; each password command -ERR [AUTH].
    p = poplib.POP3(*port(srv, "pop3"), timeout=30)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
    p.close()
    c = Lines(raw(srv, "pop3"))
    c.line()
    for line in (b"USER " + ALICE.encode(), b"PASS " + ALICE_PW.encode(),
                 b"AUTH PLAIN " + plain_b64(ALICE, ALICE_PW).encode(), b"AUTH PLAIN",
                 b"AUTH LOGIN"):
        ans = c.cmd(line)
        assert ans.startswith(b"-ERR [AUTH]"), (line, ans)
    assert c.cmd(b"STAT").startswith(b"-ERR")
    c.close()
    # IMAP 143: LOGINDISABLED and no AUTH=; LOGIN and AUTHENTICATE (with or
    # without SASL-IR) get NO [PRIVACYREQUIRED], never a "+" continuation.
    c = Lines(raw(srv, "imap"))
    c.line()
    c.send(b"a CAPABILITY\r\n")
    caps = c.until(b"a")
    assert b"LOGINDISABLED" in caps[0] and b"STARTTLS" in caps[0], caps
    assert b"AUTH=" not in caps[0], caps
    for tag, rest in ((b"b", b"LOGIN " + ALICE.encode() + b' "' + ALICE_PW.encode() + b'"'),
                      (b"c", b"AUTHENTICATE PLAIN " + plain_b64(ALICE, ALICE_PW).encode()),
                      (b"d", b"AUTHENTICATE PLAIN")):
        ans = c.tagged(tag, rest)
        assert ans.startswith(tag + b" NO [PRIVACYREQUIRED]"), (rest, ans)
    assert c.tagged(b"e", b"SELECT INBOX").startswith((b"e BAD", b"e NO"))
    c.close()
    # imaplib refuses on its own when it sees LOGINDISABLED.
    m = imaplib.IMAP4(*port(srv, "imap"), timeout=30)
    with pytest.raises(imaplib.IMAP4.error):
        m.login(ALICE, ALICE_PW)
    m.shutdown()


@pytest.mark.parametrize("auth", [{"allow_plaintext": True}, {"trust_loopback": True}],
                         ids=["allow_plaintext", "trust_loopback"])
def test_clear_text_passwords_when_allowed(server_factory, tmp_path, auth):
    srv = tls_server(server_factory, tmp_path, auth=auth)
    with smtp(srv, "submission") as s:
        s.ehlo()
        assert s.has_extn("auth") and s.has_extn("starttls")
        s.login(ALICE, ALICE_PW)
        assert s.docmd("MAIL", f"FROM:<{ALICE}>")[0] == 250
    m = imaplib.IMAP4(*port(srv, "imap"), timeout=30)
    assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
    m.login(ALICE, ALICE_PW)
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    m = imaplib.IMAP4(*port(srv, "imap"), timeout=30)
    assert m.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{ALICE_PW}".encode())[0] == "OK"
    m.logout()
    p = poplib.POP3(*port(srv, "pop3"), timeout=30)
    caps = p.capa()
    assert "USER" in caps and "SASL" in caps, caps
    p.user(ALICE)
    p.pass_(ALICE_PW)
    p.quit()


def test_trust_loopback_does_not_cover_other_addresses(server_factory, tmp_path):
    # The server listens on 127.0.0.1 only, so a "remote" client cannot be
    # simulated; but allow_plaintext=false + trust_loopback=false on loopback
    # is the remote view (test_passwords_refused_before_tls), and here the
    # loopback exception applies to another 127/8 address as documented.
    srv = tls_server(server_factory, tmp_path, auth={"trust_loopback": True})
    with smtp(srv, "submission", source="127.0.0.77") as s:
        s.ehlo()
        assert s.has_extn("auth")
        s.login(ALICE, ALICE_PW)


# ------------------------------------------------------ open-relay battery
# Recipients that some server, somewhere, has taken as "relay to remote".
RELAY_PROBES = [
    "victim@remote.test",
    "VICTIM@REMOTE.TEST",
    "victim@Remote.Test",
    "<@example.test:victim@remote.test>",                # source routes
    "<@example.test,@mx.test.example:victim@remote.test>",
    "<@EXAMPLE.TEST:victim@remote.test>",
    "<@[127.0.0.1]:victim@remote.test>",
    "victim%remote.test@example.test",                   # percent hack
    "VICTIM%REMOTE.TEST@EXAMPLE.TEST",
    "victim%remote.test@[127.0.0.1]",
    "victim%remote.test%example.test@example.test",
    '"victim@remote.test"@example.test',                 # quoted local parts
    '"victim@remote.test"@EXAMPLE.TEST',
    '"victim%remote.test"@example.test',
    '"victim@remote.test"',
    "remote.test!victim@example.test",                   # bang paths
    "REMOTE.TEST!VICTIM@EXAMPLE.TEST",
    "remote.test!victim",
    "example.test!remote.test!victim@example.test",
    "victim@remote.test@example.test",                   # two @
    "victim@[127.0.0.1]",                                # address literals
    "victim@[IPv6:::1]",
    "victim@[192.0.2.1]",
    "victim@[10.0.0.1]",
    "victim@example.test.remote.test",                   # look-alike domains
    "victim@remote.test.example",
    "victim@remote.test.",                               # trailing dots
    "victim@remote.test..",
    "victim@example.test.",
    "victim.@remote.test",
    "victim@xn--exmple-cua.test",                        # IDN-ish
    "victim@exämple.test",
    "victim@remote\u3002test",
    "victim@example\uff0etest",
    "victim@remote.test\u200b",
    "victim@remote.test>",
    "<victim@remote.test",
    "victim@remote.test NOTIFY=NEVER",
]
SENDERS = ["<spammer@remote.test>", "<>", f"<{ALICE}>", f"<{ALICE.upper()}>",
           "<@example.test:spammer@remote.test>", '<"">', "<postmaster@example.test>"]


def rcpt_arg(probe: str) -> str:
    if probe.startswith("<") or probe.endswith(">"):
        return probe
    addr, sep, params = probe.partition(" ")
    return f"<{addr}>{sep}{params}"


def relay_battery(srv, s: smtplib.SMTP) -> list:
    """Every sender x every probe on one session; returns the probes that got 2xx."""
    accepted = []
    for sender in SENDERS:
        code, text = s.docmd("MAIL", f"FROM:{sender} SMTPUTF8")
        if code >= 500:
            continue  # a sender refused outright cannot relay either
        assert code == 250, (sender, code, text)
        for probe in RELAY_PROBES:
            try:
                code, text = s.docmd("RCPT", "TO:" + rcpt_arg(probe))
            except UnicodeEncodeError:
                s.send(("RCPT TO:" + rcpt_arg(probe) + "\r\n").encode())
                code, text = s.getreply()
            if code < 400:
                accepted.append((sender, probe, code, text))
        # A transaction with nothing accepted must not be able to send DATA.
        code, _ = s.docmd("DATA")
        assert code >= 500 or accepted, code
        assert s.rset()[0] == 250
    return accepted


def test_no_open_relay_on_port_25(server_factory, tmp_path):
    # Every refused RCPT is a protocol error: lift max_errors for the battery.
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere(),
                     limits={"max_errors": 100000})
    # In clear and under STARTTLS.
    for tls in (False, True):
        with smtp(srv) as s:
            s.ehlo()
            if tls:
                s.starttls(context=client_context(srv))
                s.ehlo()
            accepted = relay_battery(srv, s)
            assert accepted == [], f"relay probes accepted (tls={tls}): {accepted}"
            # Probes mixed into a legitimate transaction change nothing: the
            # message reaches the local recipient only.
            s.mail("spammer@remote.test")
            for probe in RELAY_PROBES[:8]:
                s.docmd("RCPT", "TO:" + rcpt_arg(probe))
            assert s.rcpt(ALICE)[0] == 250
            s.data(make_message(f"mixed {tls}", from_addr="spammer@remote.test"))
    assert len(messages(srv, ALICE)) == 2
    assert queue_list(srv).strip() == "Mail queue is empty"
    assert messages(srv, VICTIM) == [], "a probe was delivered to the local user victim"


def test_no_relay_on_submission_without_auth(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere(),
                     limits={"max_errors": 100000})
    for tls in (False, True):
        with smtp(srv, "submission") as s:
            s.ehlo()
            if tls:
                s.starttls(context=client_context(srv))
                s.ehlo()
            for sender in SENDERS + ["<spammer@remote.test> AUTH=<>",
                                     f"<{ALICE}> AUTH={ALICE}"]:
                code, text = s.docmd("MAIL", f"FROM:{sender}")
                if sender == '<"">' and code == 501:
                    continue  # refused for its syntax before AUTH is looked at
                assert (code, text[:5]) == (530, b"5.7.0"), (tls, sender, code, text)
            for probe in RELAY_PROBES[:6] + [ALICE]:
                code, text = s.docmd("RCPT", "TO:" + rcpt_arg(probe))
                assert code >= 500, (tls, probe, code, text)
            code, text = s.docmd("DATA")
            assert code >= 500, (tls, code, text)
            # A failed AUTH does not open the door either.
            if tls:
                code, _ = s.docmd("AUTH", "PLAIN " + plain_b64(ALICE, "wrong"))
                assert code == 535
                assert s.docmd("MAIL", "FROM:<spammer@remote.test>")[0] == 530
    assert queue_list(srv).strip() == "Mail queue is empty"
    assert messages(srv, ALICE) == []


# ------------------------------------------------------------ POP3 TLS
def test_pop3_stls_and_pop3s_login(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    srv.send("x@remote.test", [ALICE], make_message("for pop"))
    p = poplib.POP3(*port(srv, "pop3"), timeout=30)
    p.stls(context=client_context(srv))
    assert "STLS" not in p.capa()
    p.user(ALICE)
    p.pass_(ALICE_PW)
    assert p.stat()[0] == 1
    p.quit()
    p = poplib.POP3_SSL(*port(srv, "pop3s"), context=client_context(srv, ["pop3"]), timeout=30)
    assert p.sock.selected_alpn_protocol() == "pop3"
    resp = p._shortcmd("AUTH LOGIN")
    assert resp == b"+ " + base64.b64encode(b"Username:")
    assert p._shortcmd(base64.b64encode(ALICE.encode()).decode()).startswith(b"+ ")
    assert p._shortcmd(base64.b64encode(ALICE_PW.encode()).decode()).startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()




# ----------------------------------------------------------- hot reload
def _trusting(cert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    return ctx


def _served_by(srv, cert):
    """True once a fresh submissions connection verifies against `cert`."""
    with socket.create_connection(port(srv, "submissions"), timeout=10) as sock:
        try:
            with _trusting(cert).wrap_socket(sock):
                return True
        except ssl.SSLError:
            return False


def cert_fingerprint(cert) -> str:
    return fingerprint_of(ssl.PEM_cert_to_DER_cert(cert.read_text()))


def fingerprints_seen(srv) -> dict:
    """The SHA-256 fingerprint a NEW connection gets on every TLS entry point."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    seen = {}
    for name in ("submissions", "pop3s", "imaps"):
        with ctx.wrap_socket(raw(srv, name)) as t:
            seen[name] = fingerprint_of(t.getpeercert(binary_form=True))
    s = smtp(srv)
    s.starttls(context=ctx)
    seen["smtp STARTTLS"] = fingerprint_of(s.sock.getpeercert(binary_form=True))
    s.quit()
    s = smtp(srv, "submission")
    s.starttls(context=ctx)
    seen["submission STARTTLS"] = fingerprint_of(s.sock.getpeercert(binary_form=True))
    s.quit()
    p = poplib.POP3(*port(srv, "pop3"), timeout=30)
    p.stls(context=ctx)
    seen["pop3 STLS"] = fingerprint_of(p.sock.getpeercert(binary_form=True))
    p.quit()
    m = imaplib.IMAP4(*port(srv, "imap"), timeout=30)
    m.starttls(ssl_context=ctx)
    seen["imap STARTTLS"] = fingerprint_of(m.sock.getpeercert(binary_form=True))
    m.logout()
    return seen


def replace_pair(srv, cert, key):
    """Atomic replacement, key first (docs/operations.md)."""
    tmp_key, tmp_cert = srv.key.with_suffix(".tmp-key"), srv.cert.with_suffix(".tmp-cert")
    tmp_key.write_bytes(key.read_bytes())
    tmp_cert.write_bytes(cert.read_bytes())
    os.replace(tmp_key, srv.key)
    os.replace(tmp_cert, srv.cert)


def test_certificate_reload_keeps_open_sessions(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    old_fp = cert_fingerprint(srv.cert)
    assert set(fingerprints_seen(srv).values()) == {old_fp}
    srv.send("x@remote.test", [ALICE], make_message("before reload"))

    # Sessions open across the reload, one per protocol, each mid-way.
    p = poplib.POP3_SSL(*port(srv, "pop3s"), context=client_context(srv), timeout=30)
    p.user(ALICE)
    p.pass_(ALICE_PW)
    m = imaplib.IMAP4(*port(srv, "imap"), timeout=30)
    m.starttls(ssl_context=client_context(srv))
    m.login(BOB, USERS[BOB])
    assert m.select("INBOX")[0] == "OK"
    s = smtp(srv, "submission")
    s.starttls(context=client_context(srv))
    s.login(BOB, USERS[BOB])
    assert s.mail(BOB)[0] == 250
    open_fps = {fingerprint_of(x.getpeercert(binary_form=True)) for x in (p.sock, m.sock, s.sock)}
    assert open_fps == {old_fp}

    # The files change (atomically, key first): the watcher picks them up.
    new_cert, new_key = make_cert(tmp_path, "next")
    new_fp = cert_fingerprint(new_cert)
    assert new_fp != old_fp
    replace_pair(srv, new_cert, new_key)
    wait_until(lambda: _served_by(srv, new_cert), timeout=15,
               what="the new certificate to be served")
    seen = fingerprints_seen(srv)
    assert seen == {k: new_fp for k in seen}, seen

    # Every open session goes on with its old TLS session.
    assert p.stat()[0] == 1
    assert p.retr(1)[0].startswith(b"+OK")
    p.quit()
    assert s.rcpt(ALICE)[0] == 250
    assert s.data(make_message("during reload", from_addr=BOB))[0] == 250
    s.quit()
    typ, data = m.noop()
    assert typ == "OK", data
    typ, data = m.search(None, "ALL")
    assert typ == "OK", data
    m.logout()
    assert len(messages(srv, ALICE)) == 2
    assert "tls: certificate reloaded" in srv.stderr_tail(20000)

    # A broken pair (half-written cert) is refused and the old one stays.
    srv.cert.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    time.sleep(3)
    assert set(fingerprints_seen(srv).values()) == {new_fp}
    assert "tls: reload failed" in srv.stderr_tail(20000)


def test_sighup_reloads_the_certificate(server_factory, tmp_path):
    # docs/operations.md: SIGHUP "reloads the TLS certificate and key if the
    # files changed" ("kill -HUP forces a look"). The file watcher also runs
    # every ~2 s, so one quick reload proves nothing; a few in a row, each
    # required within 0.5 s of the signal, cannot all be the watcher's.
    srv = tls_server(server_factory, tmp_path)
    m = imaplib.IMAP4_SSL(*port(srv, "imaps"), ssl_context=client_context(srv), timeout=30)
    m.login(ALICE, ALICE_PW)
    late = []
    for i in range(4):
        cert, key = make_cert(tmp_path, f"hup{i}")
        replace_pair(srv, cert, key)
        srv.proc.send_signal(signal.SIGHUP)
        try:
            wait_until(lambda: _served_by(srv, cert), timeout=0.5, interval=0.01)
        except AssertionError:
            late.append(i)
            wait_until(lambda: _served_by(srv, cert), timeout=15,
                       what="the certificate (watcher)")
        assert srv.proc.poll() is None, "SIGHUP stopped the server"
        assert m.noop()[0] == "OK", "the open IMAPS session survives"
        time.sleep(0.2)
    m.logout()
    log = [ln for ln in srv.stderr_tail(40000).splitlines()
           if "SIGHUP" in ln or "tls: " in ln]
    assert not late, (f"SIGHUP did not reload the certificate (attempts {late} were only"
                      " picked up by the file watcher); log:\n" + "\n".join(log))
