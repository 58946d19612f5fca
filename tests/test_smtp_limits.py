"""SMTP and LMTP bounds a hostile client can drive, against the real binary:
BDAT chunk sizes past max_message_size, command lines and message data that
trickle in (command_timeout, min_transfer_rate), recipients past
max_recipients (452 without losing the transaction), and refusals that are
not protocol errors (not counted towards max_errors).

The slow-client tests set `command_timeout = 3`; the transfer-rate test keeps
the documented 30 s grace and so takes about 35 s."""

from __future__ import annotations

import socket
import time

from harness import RawSMTP, strip_trace

ALICE = "alice@example.test"
SENDER = "sender@remote.test"
LISTEN_LMTP = {"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0", "lmtp": "127.0.0.1:0"}


def greeted(c: RawSMTP) -> RawSMTP:
    code, text = c.reply()
    assert code == 220, text
    return c


def mail_rcpt(c: RawSMTP, rcpt=ALICE):
    greeted(c).ehlo()
    assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250


def closed_after(c: RawSMTP, timeout: float):
    """Replies until the server closes; (replies, seconds it took)."""
    t0 = time.monotonic()
    replies = c.read_until_closed(timeout=timeout)
    return replies, time.monotonic() - t0


def trickle(c: RawSMTP, data: bytes, every: float, until: float) -> bool:
    """Sends `data` one byte every `every` seconds for at most `until`
    seconds; True if the server closed the connection meanwhile."""
    t0 = time.monotonic()
    for b in data:
        if time.monotonic() - t0 > until:
            return False
        try:
            c.send(bytes([b]))
        except OSError:
            return True
        c.sock.settimeout(every)
        try:
            chunk = c.sock.recv(65536)
            if not chunk:
                return True
            c.buf += chunk
        except socket.timeout:
            pass
        except OSError:
            return True
    return False


# ------------------------------------------------------------------ BDAT
def test_bdat_largest_chunk_size_refused_at_once(server):
    """Today the server reads the 2^64-1 bytes for ever; now 552 5.3.4, closed."""
    with server.raw_smtp() as c:
        mail_rcpt(c)
        c.send(b"BDAT 18446744073709551615\r\n" + b"x" * 4096)
        replies, took = closed_after(c, 10)
        assert [r[0] for r in replies] == [552], replies
        assert "5.3.4" in replies[0][1]
        assert took < 5


def test_bdat_out_of_sequence_huge_chunk_refused(server):
    """Without MAIL the chunk would be dropped byte by byte: also refused unread."""
    with server.raw_smtp() as c:
        greeted(c).ehlo()
        c.send(b"BDAT 99999999999\r\n")
        replies, _ = closed_after(c, 10)
        assert replies and replies[-1][0] == 552, replies


def test_bdat_chunks_adding_up_past_the_limit(server_factory):
    srv = server_factory(limits={"max_message_size": 2000})
    with srv.raw_smtp() as c:
        mail_rcpt(c)
        c.send(b"BDAT 1200\r\n" + (b"a" * 98 + b"\r\n") * 12)
        assert c.reply()[0] == 250
        c.send(b"BDAT 1200 LAST\r\n")
        replies, _ = closed_after(c, 10)
        assert [r[0] for r in replies] == [552], replies
    assert srv.messages(ALICE) == []
    # A message just under the limit still goes through, in chunks.
    with srv.raw_smtp() as c:
        mail_rcpt(c)
        body = b"Subject: chunks\r\n\r\n" + (b"b" * 98 + b"\r\n") * 19
        c.send(b"BDAT %d\r\n" % 500 + body[:500])
        assert c.reply()[0] == 250
        c.send(b"BDAT %d LAST\r\n" % (len(body) - 500) + body[500:])
        assert c.reply()[0] == 250
    assert [strip_trace(m, SENDER) for m in srv.messages(ALICE)] == [body]


def test_data_far_over_the_limit_is_not_read_for_ever(server_factory):
    """DATA past max_message_size is read to its end for a proper 552, but
    only up to twice the limit; then 552 and close."""
    srv = server_factory(limits={"max_message_size": 100_000})
    with srv.raw_smtp() as c:
        mail_rcpt(c)
        assert c.cmd("DATA")[0] == 354
        line = b"y" * 998 + b"\r\n"
        closed = False
        for _ in range(400):  # 400 kB, four times the limit
            try:
                c.send(line)
            except OSError:
                closed = True
                break
        replies, _ = closed_after(c, 10)
        assert closed or replies, "server kept reading"
        assert not replies or replies[-1][0] == 552, replies


# ------------------------------------------------------------ slow clients
def test_command_line_trickle_closed_with_421(server_factory):
    """One byte a second never completes `NOOP ...` within command_timeout =
    3: 421 4.4.2 after about 3 s (today: the session stays open)."""
    srv = server_factory(limits={"command_timeout": 3})
    with srv.raw_smtp() as c:
        greeted(c).ehlo()
        t0 = time.monotonic()
        assert trickle(c, b"NOOP " + b"z" * 40 + b"\r\n", every=1.0, until=12)
        took = time.monotonic() - t0
        assert 2.5 < took < 7, took
        replies = c.read_until_closed(timeout=2)
        assert replies and replies[-1][0] == 421 and "4.4.2" in replies[-1][1], replies


def test_whole_commands_are_not_cut(server_factory):
    """Command lines sent whole, slower than command_timeout apart, are fine:
    the deadline runs from a line's first byte."""
    srv = server_factory(limits={"command_timeout": 2})
    with srv.raw_smtp() as c:
        greeted(c).ehlo()
        for _ in range(3):
            time.sleep(2.5)
            assert c.cmd("NOOP")[0] == 250


def test_lmtp_command_line_trickle(server_factory):
    srv = server_factory(limits={"command_timeout": 3}, listen=LISTEN_LMTP)
    c = RawSMTP(srv.ports["lmtp"])
    with c:
        assert c.reply()[0] == 220
        assert trickle(c, b"LHLO " + b"l" * 40 + b"\r\n", every=1.0, until=12)
        replies = c.read_until_closed(timeout=2)
        assert replies and replies[-1][0] == 421, replies


def test_data_trickle_closed_after_the_grace(server_factory):
    """DATA at one byte a second (far below min_transfer_rate = 1024 B/s) is
    closed with 421 4.4.2 once the 30 s grace is over (today: never). The
    lines are short, so command_timeout is not what cuts it."""
    srv = server_factory(limits={"command_timeout": 3})
    with srv.raw_smtp() as c:
        mail_rcpt(c)
        assert c.cmd("DATA")[0] == 354
        t0 = time.monotonic()
        assert trickle(c, b"ab\r\n" * 100, every=1.0, until=45)
        took = time.monotonic() - t0
        assert 29 < took < 36, took
        replies = c.read_until_closed(timeout=2)
        assert replies and replies[-1][0] == 421 and "4.4.2" in replies[-1][1], replies
    assert srv.messages(ALICE) == []


# -------------------------------------------------------------- recipients
def test_recipients_past_the_limit_get_452_and_the_transaction_survives(server):
    """121 pipelined RCPTs: 100 x 250, 21 x 452 4.5.3, and DATA delivers to the
    100 (today: 20 x 452, then 421 4.7.0 and the transaction is lost)."""
    rcpts = [f"alice+{i}@example.test" for i in range(121)]
    with server.raw_smtp() as c:
        greeted(c).ehlo()
        c.send(f"MAIL FROM:<{SENDER}>\r\n".encode()
               + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts)
               + b"DATA\r\n")
        replies = c.replies(1 + len(rcpts) + 1)
        codes = [r[0] for r in replies]
        assert codes[0] == 250
        assert codes[1:101] == [250] * 100
        assert codes[101:122] == [452] * 21, replies[101:]
        assert all("4.5.3" in r[1] for r in replies[101:122])
        assert codes[122] == 354
        c.send(b"Subject: many\r\n\r\nhello\r\n.\r\n")
        assert c.reply()[0] == 250
        assert c.cmd("QUIT")[0] == 221
    # alice+N all land in alice's one mailbox: one copy.
    assert len(server.messages(ALICE)) == 1


def test_policy_refusals_do_not_count_as_errors(server_factory):
    """Refusals for a reason of the server's (too many recipients, SIZE too
    large) do not use up max_errors; syntax errors do."""
    srv = server_factory(limits={"max_errors": 3, "max_recipients": 1,
                                 "max_message_size": 2000})
    with srv.raw_smtp() as c:
        mail_rcpt(c)
        for _ in range(5):
            code, text = c.cmd("RCPT TO:<bob@example.test>")
            assert code == 452, text
        assert c.cmd("RSET")[0] == 250
        for _ in range(5):
            assert c.cmd(f"MAIL FROM:<{SENDER}> SIZE=5000")[0] == 552
        assert c.cmd("NOOP")[0] == 250
        assert c.cmd("BOGUS")[0] == 500
        assert c.cmd("BOGUS")[0] == 500
        code, text = c.cmd("BOGUS")
        assert code == 500
        assert c.reply()[0] == 421
