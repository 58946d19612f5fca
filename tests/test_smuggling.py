"""SMTP smuggling: end-of-data look-alikes made of bare CR / LF must never end
DATA, so a second transaction hidden in the body can never be delivered.

Sent over a raw socket exactly as an attacker's client would.  Only
<CRLF>.<CRLF> ends DATA; a body with bare CR or LF is rejected with 5xx.
"""

from __future__ import annotations

import pytest

SEQUENCES = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
}

SMUGGLED = (b"MAIL FROM:<evil@x>\r\n"
            b"RCPT TO:<victim@example.test>\r\n"
            b"DATA\r\n"
            b"smuggled\r\n"
            b".\r\n")

VICTIM = "victim@example.test"


def body_of(raw: bytes) -> bytes:
    sep = raw.find(b"\r\n\r\n")
    return raw[sep + 4:] if sep >= 0 else b""


def is_smuggled(raw: bytes) -> bool:
    """A message that is the smuggled one (its body is 'smuggled', or its
    envelope sender is evil@x)."""
    return (body_of(raw).strip() == b"smuggled"
            or raw.startswith(b"Return-Path: <evil@x>"))


def run_attack(server, seq: bytes, trailer: bytes, pipelined: bool):
    c = server.raw_smtp()
    try:
        c.reply()
        c.ehlo("attacker.test")
        head = b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
        payload = (b"From: <sender@remote.test>\r\nTo: <victim@example.test>\r\n"
                   b"Subject: outer\r\n\r\nouter body" + seq + SMUGGLED + trailer + b"QUIT\r\n")
        if pipelined:
            c.send(head + payload)
            first = c.replies(3)
        else:
            first = [c.cmd(b"MAIL FROM:<sender@remote.test>"),
                     c.cmd(b"RCPT TO:<victim@example.test>"),
                     c.cmd(b"DATA")]
        assert [r[0] for r in first] == [250, 250, 354], first
        if not pipelined:
            c.send(payload)
        rest = c.read_until_closed(timeout=10)
        return first + rest
    finally:
        c.close()


@pytest.mark.parametrize("trailer", [b"\r\n.\r\n", b""], ids=["with-final-dot", "no-final-dot"])
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_smuggling_sequence(server, name, trailer):
    seq = SEQUENCES[name]
    replies = run_attack(server, seq, trailer, pipelined=False)
    msgs = server.messages(VICTIM)
    smuggled = [m for m in msgs if is_smuggled(m)]
    assert not smuggled, (f"SMUGGLED MESSAGE DELIVERED via {name!r}: replies={replies!r}; "
                          f"messages={msgs!r}")
    assert len(msgs) <= 1, f"{len(msgs)} messages from one DATA via {name!r}: {msgs!r}"
    # The outer message contains bare CR/LF and must itself be rejected.
    assert msgs == [], (f"outer message with bare line ending {seq!r} was accepted "
                        f"(should be 5xx); replies={replies!r}; stored={msgs!r}")
    codes = [r[0] for r in replies]
    assert any(500 <= c < 600 for c in codes[3:]), f"no 5xx for the bare-ending body: {replies!r}"
    # And no reply after the DATA said the hidden MAIL/RCPT/DATA were taken as commands:
    assert 354 not in codes[3:], f"a second DATA was started: {replies!r}"


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_smuggling_sequence_pipelined(server, name):
    """Same, with the whole session sent in one write."""
    replies = run_attack(server, SEQUENCES[name], b"\r\n.\r\n", pipelined=True)
    msgs = server.messages(VICTIM)
    assert not [m for m in msgs if is_smuggled(m)], f"smuggled via {name!r}: {replies!r} {msgs!r}"
    assert msgs == [], f"outer message with bare endings accepted: {replies!r} {msgs!r}"
    codes = [r[0] for r in replies]
    assert 354 not in codes[3:], f"a second DATA was started: {replies!r}"


def test_server_still_serves_after_attacks(server):
    for seq in SEQUENCES.values():
        run_attack(server, seq, b"\r\n.\r\n", pipelined=False)
    msg = b"Subject: legit\r\n\r\nhello\r\n"
    assert server.send("sender@remote.test", [VICTIM], msg) == {}
    msgs = server.messages(VICTIM)
    assert len(msgs) == 1 and msgs[0].endswith(msg), msgs
