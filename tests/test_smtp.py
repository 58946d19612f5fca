"""SMTP: greeting/EHLO, byte-exact delivery (SMTP -> POP3), PIPELINING, BDAT,
limits (SIZE, command line, DATA line, recipients), unknown users, relaying."""

from __future__ import annotations

import os
import smtplib
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from harness import HOSTNAME, make_message, strip_trace

SENDER = "sender@remote.test"


def roundtrip(server, msg: bytes, to="alice@example.test", sender=SENDER, mail_options=()):
    refused = server.send(sender, [to], msg, mail_options=mail_options)
    assert refused == {}, refused
    msgs = server.messages(to)
    assert len(msgs) == 1, f"expected exactly one message, got {len(msgs)}"
    return strip_trace(msgs[0], sender)


# ---------------------------------------------------------------- greeting / EHLO
def test_greeting_and_ehlo_extensions(server):
    with server.raw_smtp() as c:
        code, text = c.reply()
        assert code == 220
        assert text.startswith(f"220 {HOSTNAME} ESMTP mailgate"), text
        text = c.ehlo()
        keywords = {ln[4:].split(" ")[0].upper() for ln in text.splitlines()[1:]}
        for ext in ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES",
                    "CHUNKING"):
            assert ext in keywords, f"EHLO lacks {ext}: {text!r}"
        size_lines = [ln for ln in text.splitlines() if ln[4:].upper().startswith("SIZE")]
        assert size_lines[0][4:].split() == ["SIZE", "52428800"], size_lines
        assert c.cmd("QUIT")[0] == 221


def test_bad_sequence_gets_503(server):
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 503
        assert c.cmd("DATA")[0] == 503
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 503, "nested MAIL must be refused"
        assert c.cmd("DATA")[0] in (503, 554), "DATA without a valid RCPT"
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("NOOP")[0] == 250
        assert c.cmd("QUIT")[0] == 221


# ---------------------------------------------------------------- byte-exact delivery
def test_plain_message_roundtrip(server):
    msg = make_message("plain", "Hello Alice,\r\n\r\nthis is line two.\r\n")
    assert roundtrip(server, msg) == msg


def test_8bit_utf8_body_roundtrip(server):
    body = "Grüße aus Köln — 日本語のテキスト — emoji 🎉\r\nzweite Zeile: ÄÖÜß\r\n"
    msg = make_message("8bit", body, extra_headers=[
        "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit"])
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("8bitmime")
        refused = s.sendmail(SENDER, ["alice@example.test"], msg, mail_options=["BODY=8BITMIME"])
        assert refused == {}
    (got,) = server.messages("alice@example.test")
    assert strip_trace(got, SENDER) == msg


def test_smtputf8_address_roundtrip(server):
    to = "jürgen@example.test"
    sender = "søren@remote.test"
    msg = make_message("utf8 address", "Hallo Jürgen\r\n", from_addr=sender, to_addr=to,
                       extra_headers=["Content-Type: text/plain; charset=utf-8"])
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("smtputf8")
        refused = s.sendmail(sender, [to], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    (got,) = server.messages(to)
    assert strip_trace(got, sender) == msg


def test_dot_stuffing_both_ways(server):
    body = (".starts with a dot\r\n"
            "..two dots\r\n"
            ".\tdot tab\r\n"
            "middle . dot\r\n"
            "...\r\n"
            ". \r\n"
            "last line\r\n")
    msg = make_message("dots", body)
    # smtplib stuffs on the way in; poplib unstuffs on the way out: check both
    # and also look at the raw wire form of RETR.
    assert roundtrip(server, msg) == msg
    with server.raw_pop3_login("alice@example.test") as p:
        assert p.cmd("RETR 1").startswith(b"+OK")
        wire = []
        while True:
            line = p.line()
            if line == b".":
                break
            wire.append(line)
        for want in (b"..starts with a dot", b"...two dots", b"..\tdot tab", b"....", b".. "):
            assert want in wire, f"RETR did not dot-stuff {want!r}: {wire!r}"
        assert b"middle . dot" in wire
        p.cmd("QUIT")


def test_raw_dot_stuffed_data_is_unstuffed(server):
    """A client that dot-stuffs by itself (raw socket): the store gets the unstuffed text."""
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: raw dots\r\n\r\n..hidden\r\n...\r\nend\r\n.\r\n")
        assert c.reply()[0] == 250
        c.cmd("QUIT")
    (got,) = server.messages("alice@example.test")
    assert strip_trace(got, SENDER) == b"Subject: raw dots\r\n\r\n.hidden\r\n..\r\nend\r\n"


def test_10mb_attachment_roundtrip(server):
    payload = os.urandom(10 * 1024 * 1024)
    m = MIMEMultipart()
    m["From"] = SENDER
    m["To"] = "alice@example.test"
    m["Subject"] = "big attachment"
    m.attach(MIMEText("see attachment\n", "plain", "utf-8"))
    m.attach(MIMEApplication(payload, Name="blob.bin"))
    msg = m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert len(msg) > 13_000_000
    got = roundtrip(server, msg)
    assert len(got) == len(msg)
    assert got == msg
    # and the attachment decodes back to the payload
    import email
    parsed = email.message_from_bytes(got)
    att = [p for p in parsed.walk() if p.get_filename() == "blob.bin"][0]
    assert att.get_payload(decode=True) == payload


# ---------------------------------------------------------------- PIPELINING / BDAT
def test_pipelining_replies_in_order(server):
    with server.raw_smtp() as c:
        c.reply()
        assert "PIPELINING" in c.ehlo().upper()
        c.send(b"MAIL FROM:<sender@remote.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<nosuchuser@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               b"RCPT TO:<someone@other.test>\r\n"
               b"DATA\r\n")
        codes = [r[0] for r in c.replies(6)]
        assert codes == [250, 250, 550, 250, 550, 354], codes
        c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\nRSET\r\nQUIT\r\n")
        codes = [r[0] for r in c.replies(4)]
        assert codes == [250, 250, 250, 221], codes
    for user in ("alice@example.test", "bob@example.test"):
        (got,) = server.messages(user)
        assert strip_trace(got, SENDER) == b"Subject: pipelined\r\n\r\nbody\r\n"


def test_pipelining_two_transactions_in_one_write(server):
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        c.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [r[0] for r in c.replies(3)] == [250, 250, 354]
        c.send(b"Subject: one\r\n\r\n1\r\n.\r\n"
               b"MAIL FROM:<b@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [r[0] for r in c.replies(4)] == [250, 250, 250, 354]
        c.send(b"Subject: two\r\n\r\n2\r\n.\r\nQUIT\r\n")
        assert [r[0] for r in c.replies(2)] == [250, 221]
    msgs = server.messages("alice@example.test")
    assert [strip_trace(m, f) for m, f in zip(msgs, ["a@remote.test", "b@remote.test"])] == [
        b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"]


def test_bdat_chunks(server):
    chunks = [b"Subject: chunked\r\n\r\nfirst chunk ",
              b"second chunk\r\n.\r\nMAIL FROM:<not@a.command>\r\n",  # literal, not a terminator
              b"",
              b"..leading dots stay as they are\r\n"]
    last = b"last chunk\r\n"
    with server.raw_smtp() as c:
        c.reply()
        assert "CHUNKING" in c.ehlo().upper()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        for ch in chunks:
            c.send(b"BDAT %d\r\n" % len(ch) + ch)
            code, text = c.reply()
            assert code == 250, text
        c.send(b"BDAT %d LAST\r\n" % len(last) + last)
        code, text = c.reply()
        assert code == 250, text
        assert c.cmd("QUIT")[0] == 221
    (got,) = server.messages("alice@example.test")
    assert strip_trace(got, SENDER) == b"".join(chunks) + last


def test_bdat_pipelined(server):
    body = b"Subject: bdat pipelined\r\n\r\nhello\r\n"
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        c.send(b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
               + b"BDAT 10\r\n" + body[:10] + b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:]
               + b"QUIT\r\n")
        codes = [r[0] for r in c.replies(5)]
        assert codes == [250, 250, 250, 250, 221], codes
    (got,) = server.messages("bob@example.test")
    assert strip_trace(got, SENDER) == body


def test_bdat_zero_last(server):
    body = b"Subject: z\r\n\r\nzero last\r\n"
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        c.send(b"BDAT %d\r\n" % len(body) + body)
        assert c.reply()[0] == 250
        assert c.cmd("BDAT 0 LAST")[0] == 250
        c.cmd("QUIT")
    (got,) = server.messages("alice@example.test")
    assert strip_trace(got, SENDER) == body


# ---------------------------------------------------------------- limits
SMALL = 100_000


def test_size_advertised_and_declared_size_too_big(server_factory):
    srv = server_factory(limits={"max_message_size": SMALL})
    with srv.raw_smtp() as c:
        c.reply()
        text = c.ehlo()
        assert f"SIZE {SMALL}" in text, text
        code, text = c.cmd(f"MAIL FROM:<sender@remote.test> SIZE={SMALL + 1}")
        assert code == 552, text
        assert "5.3.4" in text, text
        # a declared size within the limit is fine
        assert c.cmd(f"MAIL FROM:<sender@remote.test> SIZE={SMALL // 2}")[0] == 250
        c.cmd("QUIT")


def test_actual_data_too_big_552(server_factory):
    srv = server_factory(limits={"max_message_size": SMALL})
    big = make_message("too big", ("x" * 98 + "\r\n") * (SMALL // 100 + 50))
    assert len(big) > SMALL
    with srv.smtp() as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPException) as ei:
            s.sendmail(SENDER, ["alice@example.test"], big)
        err = ei.value
        code = getattr(err, "smtp_code", None)
        if code is None and isinstance(err, smtplib.SMTPRecipientsRefused):
            code = list(err.recipients.values())[0][0]
        assert code == 552, repr(err)
        # the session is still usable
        assert s.noop()[0] == 250
        ok = make_message("small", "fits\r\n")
        assert s.sendmail(SENDER, ["alice@example.test"], ok) == {}
    msgs = srv.messages("alice@example.test")
    assert len(msgs) == 1 and strip_trace(msgs[0], SENDER) == ok


def test_bdat_too_big_552(server_factory):
    srv = server_factory(limits={"max_message_size": SMALL})
    chunk = b"x" * 60_000
    with srv.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        codes = [c.reply()[0]]
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        codes.append(c.reply()[0])
        assert 552 in codes, codes
        assert codes[-1] == 552, codes
    assert srv.messages("alice@example.test") == []


def test_command_line_too_long_500(server):
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        code, text = c.cmd("NOOP " + "x" * 3000)
        assert code == 500, text
        assert "5.5.2" in text, text
        # a long RCPT line too
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<" + "a" * 2100 + "@example.test>")
        assert code == 500, text
    # the server keeps serving
    msg = make_message("after long line", "ok\r\n")
    assert server.send(SENDER, ["alice@example.test"], msg) == {}


def test_command_line_at_limit_is_accepted(server):
    # 2048 bytes including CRLF must not be rejected as too long.
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        line = b"NOOP " + b"y" * (2048 - 2 - 5)
        assert len(line) + 2 == 2048
        c.send(line + b"\r\n")
        code, text = c.reply()
        assert code == 250, text


def test_data_line_too_long_rejected(server):
    long_line = "z" * 1200
    msg = make_message("long line", "short\r\n" + long_line + "\r\nmore\r\n")
    with server.smtp() as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPDataError) as ei:
            s.sendmail(SENDER, ["alice@example.test"], msg)
        assert 500 <= ei.value.smtp_code < 600, ei.value
    assert server.messages("alice@example.test") == []


def test_data_line_at_limit_accepted(server):
    line = "w" * (1000 - 2)  # 1000 bytes including CRLF
    msg = make_message("line at limit", line + "\r\n")
    assert server.send(SENDER, ["alice@example.test"], msg) == {}
    (got,) = server.messages("alice@example.test")
    assert strip_trace(got, SENDER) == msg


def test_too_many_recipients_452(server_factory):
    srv = server_factory(limits={"max_recipients": 3})
    with srv.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        for u in ("alice", "bob", "carol"):
            assert c.cmd(f"RCPT TO:<{u}@example.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<victim@example.test>")
        assert code == 452, text
        assert "4.5.3" in text, text
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: r\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 250
    assert len(srv.messages("carol@example.test")) == 1
    assert srv.messages("victim@example.test") == []


def test_bare_lf_and_bare_cr_in_data_rejected(server):
    for body in (b"line one\nline two\r\n", b"line one\rline two\r\n", b"trailing lf\n"):
        with server.raw_smtp() as c:
            c.reply()
            c.ehlo()
            assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
            assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: bare\r\n\r\n" + body + b"\r\n.\r\n")
            code, text = c.reply()
            assert 500 <= code < 600, f"body {body!r} accepted: {code} {text}"
    assert server.messages("alice@example.test") == []


# ---------------------------------------------------------------- recipients / relaying
def test_unknown_user_550_511(server):
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<nobody@example.test>")
        assert code == 550 and "5.1.1" in text, text
        assert c.cmd("RCPT TO:<nobody+tag@example.test>")[0] == 550
        code, text = c.cmd("RCPT TO:<alice@example.test>")
        assert code == 250, text
        code, text = c.cmd("RCPT TO:<ALICE@Example.TEST>")
        assert code == 250, f"address case must not matter: {text}"


def test_relay_denied_550_571(server):
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@example.test>")[0] == 250
        for rcpt in ("user@other.test", "alice@OTHER.TEST", "alice@sub.example.test",
                     "alice@example.test.other.test"):
            code, text = c.cmd(f"RCPT TO:<{rcpt}>")
            assert code == 550 and "5.7.1" in text, f"{rcpt}: {code} {text}"


RELAY_TRICKS = [
    "user%other.test@example.test",
    "alice%other.test@example.test",
    "@example.test:user@other.test",
    "@example.test,@mx.test.example:user@other.test",
    '"user@other.test"@example.test',
    '"alice@other.test"@example.test',
    "other.test!user@example.test",
    "other.test!alice@example.test",
    "user@other.test@example.test",
    "user@other.test.",
    "user@[127.0.0.1]",
    "user@[192.0.2.1]",
    "alice@example.test@other.test",
    "<user@other.test>",
]


@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_relay_tricks_refused(server, rcpt):
    """None of these may be accepted: there is no outbound queue, and none of
    the local parts is an existing local account."""
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@example.test>")[0] == 250
        code, text = c.cmd(f"RCPT TO:<{rcpt}>")
        if code == 250:
            # Show what happens to it: deliver and see where it lands.
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: relay trick\r\n\r\nrelay\r\n.\r\n")
            data_code, data_text = c.reply()
            landed = {u: len(server.messages(u)) for u in ("alice@example.test",
                                                           "bob@example.test")}
            pytest.fail(f"RCPT TO:<{rcpt}> accepted ({text!r}); DATA -> {data_code}; "
                        f"local mailboxes after: {landed}")
        assert 500 <= code < 600, f"RCPT TO:<{rcpt}> -> {code} {text}"
    for u in ("alice@example.test", "bob@example.test", "carol@example.test"):
        assert server.messages(u) == []


def test_utf8_address_without_smtputf8_refused(server):
    """RFC 6531 §3.4: a non-ASCII address without the SMTPUTF8 parameter is refused."""
    with server.raw_smtp() as c:
        c.reply()
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<søren@remote.test>")
        assert 500 <= code < 600, text
        assert c.cmd("MAIL FROM:<sender@remote.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<jürgen@example.test>")
        assert 500 <= code < 600, text
        c.cmd("RSET")
        assert c.cmd("MAIL FROM:<søren@remote.test> SMTPUTF8")[0] == 250
        assert c.cmd("RCPT TO:<jürgen@example.test>")[0] == 250


def test_multiple_recipients_each_get_one_copy(server):
    msg = make_message("multi", "to three\r\n")
    rcpts = ["alice@example.test", "bob@example.test", "carol@example.test",
             "Alice@Example.test", "alice+x@example.test"]
    assert server.send(SENDER, rcpts, msg) == {}
    assert [len(server.messages(u)) for u in rcpts[:3]] == [1, 1, 1]
    for u in rcpts[:3]:
        assert strip_trace(server.messages(u)[0], SENDER) == msg
