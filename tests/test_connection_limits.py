"""`[limits] max_connections` and `max_connections_per_ip` with the real
binary and raw sockets: the exact refusal of each protocol, the count
spanning listeners (whole server) or not (per client and listener), the
place given back however a session ends, the implicit-TLS listener that
closes without a handshake, and one log line per client per minute."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time

import pytest

from harness import HOSTNAME, USERS, wait_until

REFUSAL = {
    "smtp": f"421 4.7.0 {HOSTNAME} Too many connections, try again later\r\n".encode(),
    "submission": f"421 4.7.0 {HOSTNAME} Too many connections, try again later\r\n".encode(),
    "lmtp": f"421 4.7.0 {HOSTNAME} Too many connections, try again later\r\n".encode(),
    "pop3": b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
    "imap": b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
}
GREETING = {"smtp": b"220 ", "submission": b"220 ", "lmtp": b"220 ", "pop3": b"+OK",
            "imap": b"* OK"}
PLAIN = {k: "127.0.0.1:0" for k in GREETING}
LOG_LINE = "connection refused: too many connections"


def connect(srv, protocol, source="127.0.0.1") -> socket.socket:
    s = socket.create_connection(srv.ports[protocol], timeout=10, source_address=(source, 0))
    return s


def read_all(s: socket.socket, timeout=10.0) -> bytes:
    """Everything the server says until it closes the connection."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out


def greeted(srv, protocol, source="127.0.0.1") -> socket.socket:
    """A connection the server admitted (its greeting read)."""
    s = connect(srv, protocol, source)
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = s.recv(4096)
        assert chunk, f"{protocol}: closed before the greeting, after {line!r}"
        line += chunk
    assert line.startswith(GREETING[protocol]), (protocol, line)
    return s


def refused(srv, protocol, source="127.0.0.1") -> bytes:
    with connect(srv, protocol, source) as s:
        return read_all(s)


def admitted_again(srv, protocol, source="127.0.0.1", timeout=10.0) -> socket.socket:
    """A connection admitted once the server has seen the last one end (the
    server notices a client's close a moment after it happens)."""
    deadline = time.monotonic() + timeout
    while True:
        s = connect(srv, protocol, source)
        s.settimeout(10)
        first = s.recv(4096)
        if first.startswith(GREETING[protocol]):
            return s
        s.close()
        assert first == REFUSAL[protocol], (protocol, first)
        if time.monotonic() > deadline:
            raise AssertionError(f"{protocol}: the place of the ended session was not given back")
        time.sleep(0.05)


def log_lines(srv, what=LOG_LINE) -> list[str]:
    return [ln for ln in srv.stderr_tail(1_000_000).splitlines() if what in ln]


@pytest.mark.parametrize("protocol", ["smtp", "submission", "lmtp", "pop3", "imap"])
def test_per_ip_limit_refuses_with_the_protocols_reply(server_factory, protocol):
    srv = server_factory(listen=PLAIN, limits={"max_connections_per_ip": 2})
    held = [greeted(srv, protocol), greeted(srv, protocol)]
    assert refused(srv, protocol) == REFUSAL[protocol]
    # Another client address is counted apart, and so is another listener.
    other_ip = greeted(srv, protocol, source="127.0.0.2")
    other = "pop3" if protocol != "pop3" else "smtp"
    other_listener = greeted(srv, other)
    # The held sessions still work.
    held[0].sendall({"imap": b"a NOOP\r\n", "pop3": b"CAPA\r\n"}.get(protocol, b"NOOP\r\n"))
    assert held[0].recv(4096).startswith((b"250 ", b"+OK", b"a OK")), protocol
    held.pop().close()
    admitted_again(srv, protocol).close()
    for s in held + [other_ip, other_listener]:
        s.close()


def test_max_connections_spans_all_listeners(server_factory):
    srv = server_factory(listen=PLAIN, limits={"max_connections": 3})
    held = [greeted(srv, "smtp", "127.0.0.1"), greeted(srv, "pop3", "127.0.0.2"),
            greeted(srv, "imap", "127.0.0.3")]
    for protocol in ("smtp", "lmtp", "pop3", "imap"):
        assert refused(srv, protocol, "127.0.0.4") == REFUSAL[protocol], protocol
    held.pop(0).close()
    s = admitted_again(srv, "imap", "127.0.0.4")
    assert refused(srv, "smtp", "127.0.0.5") == REFUSAL["smtp"]
    s.close()
    for h in held:
        h.close()
    assert [ln for ln in log_lines(srv) if "limit=\"max_connections\"" in ln], \
        srv.stderr_tail()


def test_place_given_back_however_the_session_ends(server_factory):
    """With one connection per client, each next session is admitted only if
    the one before gave its place back."""
    srv = server_factory(listen=PLAIN, limits={"max_connections_per_ip": 1, "max_errors": 2,
                                               "idle_timeout": 2})
    ends = 0

    def next_smtp():
        nonlocal ends
        ends += 1
        return admitted_again(srv, "smtp")

    # QUIT.
    s = next_smtp()
    s.sendall(b"QUIT\r\n")
    assert read_all(s).startswith(b"221")
    s.close()
    # Dropped by the client without QUIT, in the middle of DATA.
    s = next_smtp()
    s.sendall(b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\n"
              b"RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: half\r\n")
    time.sleep(0.2)
    s.close()
    # Closed by the server after too many errors.
    s = next_smtp()
    s.sendall(b"BOGUS\r\nBOGUS\r\nBOGUS\r\n")
    assert b"421 4.7.0" in read_all(s)
    s.close()
    # Closed by the server after the idle timeout.
    s = next_smtp()
    assert b"421 4.4.2" in read_all(s, timeout=15)
    s.close()
    # Reset by the client (RST instead of FIN).
    s = next_smtp()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    # Many short sessions in a row: nothing leaks.
    for _ in range(30):
        next_smtp().close()
    s = next_smtp()
    s.sendall(b"QUIT\r\n")
    read_all(s)
    s.close()

    # POP3 after a login and QUIT, and IMAP after LOGOUT and after a drop
    # in the middle of a literal.
    p = admitted_again(srv, "pop3")
    p.sendall(f"USER alice@example.test\r\nPASS {USERS['alice@example.test']}\r\nQUIT\r\n"
              .encode())
    assert b"+OK" in read_all(p)
    p.close()
    admitted_again(srv, "pop3").close()
    m = admitted_again(srv, "imap")
    m.sendall(b"a LOGOUT\r\n")
    assert b"* BYE" in read_all(m)
    m.close()
    m = admitted_again(srv, "imap")
    m.sendall(b"a LOGIN {100}\r\n")
    time.sleep(0.2)
    m.close()
    admitted_again(srv, "imap").close()


def test_refusals_logged_once_per_client_per_minute(server_factory):
    srv = server_factory(listen=PLAIN, limits={"max_connections_per_ip": 1})
    a = greeted(srv, "smtp", "127.0.0.1")
    b = greeted(srv, "smtp", "127.0.0.2")
    for _ in range(25):
        assert refused(srv, "smtp", "127.0.0.1") == REFUSAL["smtp"]
    for _ in range(5):
        assert refused(srv, "smtp", "127.0.0.2") == REFUSAL["smtp"]
    # The log is written by the accept loop before it takes the next
    # connection, so every line is in by now.
    wait_until(lambda: len(log_lines(srv)) >= 2, timeout=5, what="the refusal log lines")
    time.sleep(0.3)
    lines = log_lines(srv)
    assert len(lines) == 2, lines
    assert sum("client=127.0.0.1 " in ln for ln in lines) == 1, lines
    assert sum("client=127.0.0.2 " in ln for ln in lines) == 1, lines
    assert all('limit="max_connections_per_ip"' in ln and "protocol=\"smtp\"" in ln
               for ln in lines), lines
    a.close()
    b.close()


def make_cert(directory):
    cert, key = directory / "cert.pem", directory / "cert.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.parametrize("protocol", ["imaps", "pop3s", "submissions"])
def test_implicit_tls_listener_closes_before_the_handshake(server_factory, tmp_path, protocol):
    srv = server_factory(listen={"smtp": "127.0.0.1:0", protocol: "127.0.0.1:0"},
                         limits={"max_connections_per_ip": 1}, start=False)
    cert, key = make_cert(tmp_path)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    srv.start()
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    held = ctx.wrap_socket(connect(srv, protocol))
    first = held.recv(4096)
    assert first.startswith((b"* OK", b"+OK", b"220 ")), first
    # Over the limit: closed without a byte, before any handshake.
    # (A server waiting for the ClientHello would keep it open: read_all
    # would time out.)
    with connect(srv, protocol) as raw:
        assert read_all(raw) == b""
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ctx.wrap_socket(connect(srv, protocol)).recv(10)
    held.close()
    # Once the held session ends, the handshake works again.
    deadline = time.monotonic() + 10
    while True:
        try:
            again = ctx.wrap_socket(connect(srv, protocol))
            break
        except (ssl.SSLError, ConnectionError, OSError):
            assert time.monotonic() < deadline, "the place was not given back"
            time.sleep(0.05)
    assert again.recv(4096).startswith((b"* OK", b"+OK", b"220 "))
    again.close()
