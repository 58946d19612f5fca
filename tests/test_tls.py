"""TLS, AUTH and submission: STARTTLS/STLS and implicit TLS with real clients
(smtplib, poplib, openssl s_client), STARTTLS injection probes, clear-text
password refusal, the shared failure limit, sender checks, the open-relay
battery, and certificate hot reload under an open session.

The harness has no `[tls]` support, so `tls_server` below writes the
certificate (with the `openssl` command) and appends the table itself."""

from __future__ import annotations

import base64
import hashlib
import poplib
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
ALL_LISTENERS = {k: "127.0.0.1:0" for k in ("smtp", "submission", "submissions", "pop3", "pop3s")}
# Every test but one runs on loopback: turn off the loopback exception so
# that the clear-text rules are what a remote client would see.
STRICT = {"allow_plaintext": False, "trust_loopback": False}


# ------------------------------------------------------------------ helpers
def make_cert(directory, name="cert"):
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def tls_server(server_factory, tmp_path, auth=None, extra=""):
    srv = server_factory(listen=dict(ALL_LISTENERS), auth=dict(STRICT, **(auth or {})),
                         start=False)
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


def smtp(srv, name="smtp") -> smtplib.SMTP:
    host, p = port(srv, name)
    return smtplib.SMTP(host, p, local_hostname="client.test", timeout=30)


def smtps(srv) -> smtplib.SMTP_SSL:
    host, p = port(srv, "submissions")
    return smtplib.SMTP_SSL(host, p, local_hostname="client.test", timeout=30,
                            context=client_context(srv))


def raw(srv, name):
    return socket.create_connection(port(srv, name), timeout=30)


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


# --------------------------------------------------- clear-text refusal
def test_passwords_refused_before_tls(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    with smtp(srv, "submission") as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        code, text = s.docmd("AUTH", "PLAIN " + plain_b64(ALICE, ALICE_PW))
        assert (code, text[:6]) == (538, b"5.7.11"), (code, text)
        code, _ = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 530
    p = poplib.POP3(*port(srv, "pop3"), timeout=30)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
    with pytest.raises(poplib.error_proto):
        p.user(ALICE)
    p.quit()


def test_loopback_exception_applies_by_default(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, auth={"trust_loopback": True})
    with smtp(srv, "submission") as s:
        s.ehlo()
        assert s.has_extn("auth")
        s.login(ALICE, ALICE_PW)


# --------------------------------------------------------- submission
def test_submission_587_starttls_auth_and_send(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    with smtp(srv, "submission") as s:
        s.starttls(context=client_context(srv))
        s.ehlo()
        assert "PLAIN" in s.esmtp_features["auth"].upper()
        s.login(ALICE, ALICE_PW)
        s.sendmail(ALICE, [BOB], make_message("submitted", from_addr=ALICE, to_addr=BOB))
    [msg] = messages(srv, BOB)
    assert b"with ESMTPSA id" in msg


def test_submissions_465_every_mechanism(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    for mech in ("PLAIN", "LOGIN"):
        with smtps(srv) as s:
            s.ehlo()
            s.user, s.password = ALICE, ALICE_PW
            code, _ = s.auth(mech, getattr(s, f"auth_{mech.lower()}"), initial_response_ok=False)
            assert code == 235
            s.sendmail(ALICE, [BOB], make_message(f"via {mech}", from_addr=ALICE, to_addr=BOB))
    assert len(messages(srv, BOB)) == 2


def test_sender_must_be_own_address(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    srv.cli("alias", "add", "team@example.test", ALICE, BOB, check=True)
    with smtps(srv) as s:
        s.login(ALICE, ALICE_PW)
        for sender in (BOB, "ceo@remote.test", f"victim@{DOMAIN}"):
            code, text = s.docmd("MAIL", f"FROM:<{sender}>")
            assert (code, text[:5]) == (553, b"5.7.1"), (sender, code, text)
        for sender in (ALICE, "alice+list@example.test", "team@example.test", ""):
            code, text = s.docmd("MAIL", f"FROM:<{sender}>")
            assert code == 250, (sender, code, text)
            s.rset()


def test_remote_recipient_goes_to_the_relay(server_factory, tmp_path):
    # Accepted for the outbound queue (delivery itself: tests/test_relay.py).
    srv = tls_server(server_factory, tmp_path)
    with smtps(srv) as s:
        s.login(ALICE, ALICE_PW)
        s.mail(ALICE)
        code, text = s.rcpt("friend@remote.test")
        assert code == 250, (code, text)
        assert s.rcpt(BOB)[0] == 250


def test_auth_failures_identical_and_rate_limited(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path,
                     auth={"failure_delay_ms": 1, "max_failures": 3, "failure_window": 2})
    answers = []
    with smtps(srv) as s:
        s.ehlo()
        for user in (ALICE, "nobody@example.test"):
            code, text = s.docmd("AUTH", "PLAIN " + plain_b64(user, "wrong"))
            answers.append((code, text))
    assert answers[0] == answers[1] == (535, b"5.7.8 Authentication credentials invalid")
    # The third failure (any protocol) blocks the address: POP3S now, then SMTP.
    p = poplib.POP3_SSL(*port(srv, "pop3s"), context=client_context(srv), timeout=30)
    p.user(BOB)
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong")
    with pytest.raises(poplib.error_proto) as blocked:
        p.user(BOB)
        p.pass_(USERS[BOB])
    assert b"SYS/TEMP" in blocked.value.args[0]
    p.quit()
    with smtps(srv) as s:
        s.ehlo()
        code, _ = s.docmd("AUTH", "PLAIN " + plain_b64(BOB, USERS[BOB]))
        assert code == 454
    time.sleep(2.2)  # the window passes: logins work again
    with smtps(srv) as s:
        s.login(BOB, USERS[BOB])


# ------------------------------------------------------ open-relay battery
RELAY_PROBES = [
    "victim@remote.test",
    "<@example.test:victim@remote.test>",
    "victim%remote.test@example.test",
    "victim%remote.test@[127.0.0.1]",
    '"victim@remote.test"@example.test',
    "remote.test!victim@example.test",
    "victim@remote.test@example.test",
    "victim@[127.0.0.1]",
    "victim@example.test.remote.test",
    "victim@remote.test.",
]


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_no_open_relay(server_factory, tmp_path, listener):
    srv = tls_server(server_factory, tmp_path, auth={"allow_plaintext": True})
    with smtp(srv, listener) as s:
        s.ehlo()
        code, _ = s.docmd("MAIL", "FROM:<spammer@remote.test>")
        if listener == "submission":
            assert code == 530
            return
        assert code == 250
        for rcpt in RELAY_PROBES:
            arg = rcpt if rcpt.startswith("<") else f"<{rcpt}>"
            code, text = s.docmd("RCPT", f"TO:{arg}")
            assert code >= 500, f"relay probe {rcpt!r} accepted: {code} {text!r}"
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


def test_certificate_reload_keeps_open_sessions(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path)
    p = poplib.POP3_SSL(*port(srv, "pop3s"), context=client_context(srv), timeout=30)
    old = fingerprint_of(p.sock.getpeercert(binary_form=True))
    p.user(ALICE)
    p.pass_(ALICE_PW)

    # The files change: new handshakes get the new pair (file watcher).
    new_cert, new_key = make_cert(tmp_path, "next")
    srv.key.write_bytes(new_key.read_bytes())
    srv.cert.write_bytes(new_cert.read_bytes())
    wait_until(lambda: _served_by(srv, new_cert), timeout=15,
               what="the new certificate to be served")
    assert fingerprint_of(ssl.PEM_cert_to_DER_cert(new_cert.read_text())) != old
    assert p.stat()[0] == 0, "the session opened before the reload still works"
    assert p.sock.getpeercert(binary_form=True) is not None
    p.quit()

    # SIGHUP reloads too, and does not stop the server.
    third_cert, third_key = make_cert(tmp_path, "third")
    srv.key.write_bytes(third_key.read_bytes())
    srv.cert.write_bytes(third_cert.read_bytes())
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _served_by(srv, third_cert), timeout=15,
               what="the certificate after SIGHUP")
    with smtp(srv) as s:
        s.starttls(context=_trusting(third_cert))
        s.ehlo()
        assert s.noop()[0] == 250
