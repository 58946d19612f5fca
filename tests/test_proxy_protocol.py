"""PROXY protocol v1 and v2 on a listener (`[listen.proxy] smtp = true`,
`[limits] proxy_from`): the client address in the header is the one the
server uses (read back from the `Received:` header of the delivered message
over IMAP, and from the log); a connection from an address outside
proxy_from is closed at once; a garbage, oversized or missing header closes
the connection; a bad header never reaches the SMTP session.

The test clients play the proxy: they connect from 127.0.0.1 (trusted) or
127.0.0.2 (not trusted) and send the header themselves.
"""

from __future__ import annotations

import imaplib
import socket
import struct
import time

import pytest

from harness import USERS, RawSMTP, wait_until

ALICE = "alice@example.test"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src_ip: str, src_port: int, dst_ip: str, dst_port: int, tlvs: bytes = b"") -> bytes:
    if ":" in src_ip:
        fam = 0x21  # AF_INET6, STREAM
        addrs = socket.inet_pton(socket.AF_INET6, src_ip) + socket.inet_pton(socket.AF_INET6, dst_ip)
    else:
        fam = 0x11  # AF_INET, STREAM
        addrs = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip)
    body = addrs + struct.pack("!HH", src_port, dst_port) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


@pytest.fixture
def proxied(server_factory, monkeypatch):
    # debug: the SMTP session logs the client it serves ("connection opened").
    monkeypatch.setenv("RUST_LOG", "debug")
    srv = server_factory(
        listen={"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0", "pop3": "127.0.0.1:0"},
        limits={"proxy_from": ["127.0.0.1", "10.0.0.0/8"]},
        start=False,
    )
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write("\n[listen.proxy]\nsmtp = true\n")
    return srv.start()


def send_through(srv, header: bytes, subject: str):
    c = RawSMTP(srv.smtp_addr, source="127.0.0.1")
    c.send(header)
    assert c.reply()[0] == 220, "no greeting after the PROXY header"
    c.ehlo("proxied.client.test")
    for line, want in [("MAIL FROM:<sender@remote.test>", 250),
                       (f"RCPT TO:<{ALICE}>", 250),
                       ("DATA", 354)]:
        r = c.cmd(line)
        assert r[0] == want, (line, r)
    c.send(f"Subject: {subject}\r\nFrom: sender@remote.test\r\n\r\nhello\r\n.\r\n".encode())
    r = c.reply()
    assert r[0] == 250, r
    c.cmd("QUIT")
    c.close()


def received_of(srv, subject: str) -> str:
    m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
    try:
        m.login(ALICE, USERS[ALICE])
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK" and data[0].split(), f"message {subject!r} not found"
        num = data[0].split()[-1]
        typ, data = m.fetch(num, "(BODY.PEEK[HEADER.FIELDS (RECEIVED)])")
        assert typ == "OK"
        return data[0][1].decode()
    finally:
        m.logout()


def test_v1_header_sets_the_client_address(proxied):
    send_through(proxied, b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 25\r\n", "via v1")
    received = received_of(proxied, "via v1")
    assert "[198.51.100.7]" in received, received
    assert "127.0.0.1" not in received, received
    log = proxied.stderr_tail(200_000)
    assert "198.51.100.7" in log and "smtp: connection opened" in log, log[-3000:]


def test_v2_header_ipv4_and_ipv6(proxied):
    send_through(proxied, v2_header("203.0.113.44", 5000, "127.0.0.1", 25), "via v2 ipv4")
    assert "[203.0.113.44]" in received_of(proxied, "via v2 ipv4")
    # A TLV after the addresses (AWS and HAProxy add some) is skipped.
    tlv = bytes([0x04, 0x00, 0x03]) + b"abc"
    send_through(proxied, v2_header("2001:db8::77", 5001, "::1", 25, tlv), "via v2 ipv6")
    received = received_of(proxied, "via v2 ipv6")
    assert "2001:db8::77" in received, received


def test_header_split_in_pieces_is_read_whole(proxied):
    # A proxy may send the header in several segments: nothing of the
    # session may be lost or taken with it.
    c = RawSMTP(proxied.smtp_addr, source="127.0.0.1")
    for piece in [b"PROXY TCP4 19", b"8.51.100.9 127.0.0.1 4", b"0002 25\r", b"\n"]:
        c.send(piece)
        time.sleep(0.05)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO x.test")[0] == 250
    c.close()


def test_local_command_keeps_the_proxy_address(proxied):
    # v2 LOCAL: the proxy's own health check; the connection is served.
    c = RawSMTP(proxied.smtp_addr, source="127.0.0.1")
    c.send(V2_SIG + bytes([0x20, 0x00, 0x00, 0x00]))
    assert c.reply()[0] == 220
    c.close()


def closed_without_greeting(c: RawSMTP, timeout=10.0) -> bool:
    c.sock.settimeout(timeout)
    try:
        data = c.sock.recv(4096)
    except ConnectionResetError:
        return True
    return data == b""


def test_untrusted_source_is_refused_and_logged(proxied):
    c = RawSMTP(proxied.smtp_addr, source="127.0.0.2")
    c.send(b"PROXY TCP4 198.51.100.66 127.0.0.1 40003 25\r\n")
    assert closed_without_greeting(c)
    wait_until(lambda: "not in limits.proxy_from" in proxied.stderr_tail(200_000),
               what="the refusal in the log")
    assert "127.0.0.2" in proxied.stderr_tail(200_000)
    # The trusted proxy is still served.
    send_through(proxied, b"PROXY TCP4 198.51.100.8 127.0.0.1 40004 25\r\n", "after refusal")


@pytest.mark.parametrize("garbage", [
    b"EHLO not.a.proxy\r\n",                                   # no header at all
    b"PROXY TCP4 198.51.100.300 127.0.0.1 1 25\r\n",           # bad address
    b"PROXY TCP4 198.51.100.1 127.0.0.1 1\r\n",                 # a field missing
    b"PROXY " + b"9" * 200 + b"\r\n",                           # over 107 bytes
    b"PROXY TCP4 198.51.100.1 127.0.0.1 1 25\n",                # LF without CR
    V2_SIG + bytes([0x21, 0x11, 0xFF, 0xFF]) + b"\x00" * 64,     # v2 over 4096 bytes
    V2_SIG + bytes([0x21, 0x11, 0x00, 0x03]) + b"\x01\x02\x03",  # v2 addresses cut short
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",             # a TLS ClientHello
])
def test_garbage_header_is_refused(proxied, garbage):
    c = RawSMTP(proxied.smtp_addr, source="127.0.0.1")
    c.send(garbage)
    assert closed_without_greeting(c), garbage
    wait_until(lambda: "bad PROXY protocol header" in proxied.stderr_tail(200_000),
               what="the refusal in the log")
    # Nothing of it reached the log raw.
    assert "not.a.proxy" not in proxied.stderr_tail(200_000)


def test_a_silent_connection_is_closed_after_the_header_timeout(proxied):
    # HEADER_TIMEOUT: 5 s (docs/configuration.md).
    c = RawSMTP(proxied.smtp_addr, source="127.0.0.1")
    start = time.monotonic()
    c.send(b"PROXY TCP4 ")
    assert closed_without_greeting(c, timeout=15)
    took = time.monotonic() - start
    assert 4.0 <= took <= 10.0, took


def test_other_listeners_take_no_header(proxied):
    # Only smtp is behind the proxy: IMAP still greets at once.
    m = imaplib.IMAP4(*proxied.ports["imap"], timeout=10)
    m.logout()
