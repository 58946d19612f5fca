"""Hostile and broken input to both protocols: garbage lines, NUL bytes, very
long lines, invalid UTF-8, error limits, idle timeout.  The bad session gets
errors or is closed; the server keeps serving a normal client afterwards."""

from __future__ import annotations

import random
import socket
import time

import pytest

from harness import make_message, strip_trace

SENDER = "sender@remote.test"
ALICE = "alice@example.test"


def assert_server_healthy(server, tag="after abuse"):
    msg = make_message(tag, "still alive\r\n")
    assert server.send(SENDER, [ALICE], msg) == {}
    msgs = server.messages(ALICE)
    assert strip_trace(msgs[-1], SENDER) == msg
    assert server.proc.poll() is None, "server process died"


def garbage_lines(seed, n=40):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rnd.randrange(5)
        if kind == 0:
            line = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200)))
            line = line.replace(b"\r", b"").replace(b"\n", b"")
        elif kind == 1:
            line = b"MAIL FROM:<a\x00b@remote.test>"
        elif kind == 2:
            line = b"RCPT TO:<\xff\xfe\xc3\x28@example.test>"
        elif kind == 3:
            line = b"\x00" * rnd.randrange(1, 50)
        else:
            line = rnd.choice([b"EHLO", b"HELO \xe9\xe9", b"DATA\x00", b"AUTH LOGIN",
                               b"STARTTLS", b"VRFY alice", b"BDAT x", b"BDAT -1",
                               b"BDAT 99999999999999999999", b"MAIL FROM:", b"RCPT TO:",
                               b"\x1b[31mred", b"QUIT extra", b" ", b""])
        out.append(line)
    return out


def send_garbage(client, lines):
    """Send lines, reading whatever comes back; stop when the server closes."""
    replies = []
    for line in lines:
        try:
            client.send(line + b"\r\n")
        except OSError:
            return replies, True
    return replies + client.read_until_closed(timeout=3), client.closed


# ---------------------------------------------------------------- SMTP
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_smtp_garbage_lines(server, seed):
    with server.raw_smtp() as c:
        c.reply()
        replies, closed = send_garbage(c, garbage_lines(seed) + [b"QUIT"])
        assert not any(code == 354 for code, _ in replies), f"garbage started DATA: {replies}"
    assert_server_healthy(server)


def test_smtp_nul_and_invalid_utf8_in_addresses(server):
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        code, text = c.cmd(b"MAIL FROM:<evil\x00@remote.test>")
        assert 500 <= code < 600, f"NUL in MAIL FROM accepted: {code} {text}"
        assert c.cmd("RSET")[0] == 250
        assert c.cmd(b"MAIL FROM:<sender@remote.test>")[0] == 250
        for bad in (b"RCPT TO:<al\x00ice@example.test>", b"RCPT TO:<alice@example.test\x00>",
                    b"RCPT TO:<\xff\xfe@example.test>", b"RCPT TO:<\xc3\x28@example.test>",
                    b"RCPT TO:<alice@exa\xe9mple.test>"):
            code, text = c.cmd(bad)
            assert 500 <= code < 600, f"{bad!r} -> {code} {text}"
    assert_server_healthy(server)


def test_smtp_nul_in_data_does_not_break_session(server):
    """NUL bytes in a message body: rejected or stored verbatim, never a crash."""
    body = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(body + b".\r\n")
        code, text = c.reply()
        assert code == 250 or 500 <= code < 600, (code, text)
        assert c.cmd("NOOP")[0] == 250
    msgs = server.messages(ALICE)
    if code == 250:
        assert len(msgs) == 1 and strip_trace(msgs[0], SENDER) == body
    else:
        assert msgs == []
    assert_server_healthy(server)


def test_smtp_megabyte_line_without_newline(server):
    c = server.raw_smtp()
    try:
        c.reply()
        c.ehlo()
        try:
            for _ in range(16):
                c.send(b"A" * 65536)  # 1 MiB, no line end
            c.send(b"\r\nQUIT\r\n")
        except OSError:
            pass  # the server may hang up on us
        replies = c.read_until_closed(timeout=3)
        if replies:
            assert 500 <= replies[0][0] < 600 or replies[0][0] == 421, replies
    finally:
        c.close()
    assert_server_healthy(server)


def test_smtp_max_errors_closes_with_421(server_factory):
    srv = server_factory(limits={"max_errors": 5})
    with srv.raw_smtp() as c:
        c.reply()
        c.ehlo()
        codes = []
        try:
            for i in range(10):
                c.send(b"BOGUS%d\r\n" % i)
                codes.append(c.reply()[0])
                if codes[-1] == 421:
                    break
        except (ConnectionError, OSError):
            pass
        assert 421 in codes, f"no 421 after {len(codes)} errors: {codes}"
        assert codes.index(421) <= 6, codes
        assert c.is_closed(timeout=5), "connection not closed after 421"
    assert_server_healthy(srv)


def test_smtp_idle_timeout(server_factory):
    srv = server_factory(limits={"idle_timeout": 1})
    with srv.raw_smtp() as c:
        c.reply()
        c.ehlo()
        t0 = time.monotonic()
        c.sock.settimeout(10)
        code, text = c.reply()  # blocks until the server times us out
        assert code == 421 and "4.4.2" in text, text
        assert time.monotonic() - t0 < 8
        assert c.is_closed(timeout=5)
    assert_server_healthy(srv)


def test_smtp_connect_and_drop_many(server):
    for i in range(50):
        s = socket.create_connection(server.smtp_addr, timeout=5)
        if i % 2:
            s.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\n")
        s.close()
    assert_server_healthy(server)


def test_smtp_drop_mid_data_stores_nothing(server):
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: half\r\n\r\nhalf a message\r\n")
    # BDAT variant: chunk announced but not all bytes sent
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        c.send(b"BDAT 1000 LAST\r\nonly a few bytes")
    assert_server_healthy(server)
    assert len(server.messages(ALICE)) == 1, "a half-received message was stored"


# ---------------------------------------------------------------- POP3
@pytest.mark.parametrize("seed", [4, 5])
def test_pop3_garbage_before_and_after_login(server, seed):
    with server.raw_pop3() as c:
        assert c.status().startswith(b"+OK")
        for line in garbage_lines(seed, 15):
            try:
                c.send(line + b"\r\n")
                resp = c.line()
            except (ConnectionError, OSError):
                break
            assert resp.startswith(b"-ERR") or resp.startswith(b"+"), resp
    bad_cmds = [b"RETR \x00", b"RETR 99999999999999999999", b"RETR -1", b"TOP 1",
                b"TOP a b", b"DELE", b"LIST \xff\xfe", b"UIDL 0", b"\x00\x00\x00",
                b"STAT\x00", b"AUTH PLAIN !!!notbase64", b"RETR 1 1", b"DELE 0"]
    c = server.raw_pop3_login(ALICE)
    try:
        for bad in bad_cmds:
            try:
                c.send(bad + b"\r\n")
                resp = c.line()
            except (ConnectionError, OSError):
                # too many errors: the server may hang up; go on in a new session
                c.close()
                c = server.raw_pop3_login(ALICE)
                c.send(bad + b"\r\n")
                resp = c.line()
            assert resp.startswith(b"-ERR"), f"{bad!r} -> {resp!r}"
        try:
            c.send(b"QUIT\r\n")
            c.line()
        except (ConnectionError, OSError):
            pass
    finally:
        c.close()
    assert_server_healthy(server)


def test_pop3_invalid_utf8_and_nul_credentials(server):
    for user, pw in ((b"alice@example.test\x00", b"alice-Secret-1"),
                     (b"\xff\xfe\xfd", b"x"),
                     (b"alice@example.test", b"alice-Secret-1\x00"),
                     (b"alice@example.test", b"\xc3\x28")):
        with server.raw_pop3() as c:
            c.status()
            c.send(b"USER " + user + b"\r\n")
            r1 = c.line()
            if r1.startswith(b"+OK"):
                c.send(b"PASS " + pw + b"\r\n")
                r2 = c.line()
                assert r2.startswith(b"-ERR"), f"login with {user!r}/{pw!r} accepted"
    assert_server_healthy(server)


def test_pop3_megabyte_line(server):
    c = server.raw_pop3()
    try:
        c.status()
        try:
            for _ in range(16):
                c.send(b"U" * 65536)
            c.send(b"\r\n")
        except OSError:
            pass
        try:
            c.sock.settimeout(5)
            resp = c.line()
            assert resp.startswith(b"-ERR"), resp
        except (ConnectionError, OSError):
            pass  # closing the connection is fine too
    finally:
        c.close()
    assert_server_healthy(server)
