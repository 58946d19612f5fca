"""Submission (issue 5) against the real binary with smtplib and imaplib:
587 (STARTTLS, then AUTH; MAIL before AUTH is `530 5.7.0`) and 465
(implicit TLS, then AUTH); an authenticated user relays to another domain
(the message lands in the outbound queue: `mailgate queue list`); sender
ownership (`553 5.7.1` for someone else's address; own address,
plus-addresses and aliases that reach the user accepted);
`[submission.senders]` grants; `[submission] save_sent`.

Outbound delivery itself is tested in test_relay.py; here the relay sends
everything to a closed loopback port (`relay_to_nowhere`), so queued mail
stays in the queue and nothing leaves the machine."""

from __future__ import annotations

import json
import imaplib
import re
import smtplib
import socket

import pytest

from harness import DOMAIN, USERS, make_message, plain_b64
from test_tls import (ALICE, ALICE_PW, BOB, CAROL, client_context, messages, port,
                      queue_list, relay_to_nowhere, smtp, smtps, tls_server)

REMOTE = "friend@remote.test"
GRANTS = ('\n[submission.senders]\n'
          '"alice@example.test" = ["info@example.test", "@sales.example.test"]\n')


def submitter(srv, via, user=ALICE) -> smtplib.SMTP:
    """A logged-in submission session: 587 after STARTTLS, or 465."""
    if via == "587":
        s = smtp(srv, "submission")
        s.starttls(context=client_context(srv))
    else:
        s = smtps(srv)
    s.ehlo()
    s.login(user, USERS[user])
    return s


def imap_sent(srv, user=ALICE):
    """(flags, raw message) of every message in `user`'s Sent, over IMAPS."""
    m = imaplib.IMAP4_SSL(*port(srv, "imaps"), ssl_context=client_context(srv), timeout=30)
    m.login(user, USERS[user])
    typ, data = m.select("Sent")
    assert typ == "OK", data
    n = int(data[0])
    out = []
    if n:
        typ, data = m.fetch(f"1:{n}", "(FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).split()
                out.append((flags, item[1]))
    m.logout()
    return out


def queued(srv) -> list[tuple[str, str, list[str]]]:
    """`mailgate queue list --json` as (id, sender, [pending recipients]);
    the sender is "" for `<>`. (The JSON form, not the mailq text, whose
    layout is for people.)"""
    res = srv.cli("queue", "list", "--json", check=True)
    doc = json.loads(res.stdout_text)
    return [
        (str(m["id"]), m["sender"],
         [r["address"] for r in m["recipients"] if r["status"] == "pending"])
        for m in doc["messages"]
    ]


# ------------------------------------------------------------ 587 and 465
def test_587_requires_starttls_then_auth(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere())
    with smtp(srv, "submission") as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        for sender in (ALICE, ""):
            code, text = s.docmd("MAIL", f"FROM:<{sender}>")
            assert (code, text[:5]) == (530, b"5.7.0"), (sender, code, text)
        assert s.docmd("RCPT", f"TO:<{BOB}>")[0] == 503
        s.starttls(context=client_context(srv))
        s.ehlo()
        assert not s.has_extn("starttls")
        assert set(s.esmtp_features["auth"].upper().split()) == {"PLAIN", "LOGIN"}
        # Under TLS but not yet authenticated: still 530.
        code, text = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert (code, text[:5]) == (530, b"5.7.0"), (code, text)
        s.login(ALICE, ALICE_PW)
        s.sendmail(ALICE, [BOB], make_message("via 587", from_addr=ALICE, to_addr=BOB))
    [msg] = messages(srv, BOB)
    assert b"with ESMTPSA id" in msg and b"Subject: via 587" in msg


def test_465_implicit_tls_then_auth(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere())
    # Clear text on 465 gets no SMTP greeting: the port speaks TLS first.
    with socket.create_connection(port(srv, "submissions"), timeout=10) as sock:
        sock.sendall(b"EHLO client.test\r\n")
        sock.settimeout(3)
        try:
            data = sock.recv(100)
        except (socket.timeout, ConnectionError):
            data = b""
        assert not data.startswith(b"220") and not data.startswith(b"250"), data
    with smtps(srv) as s:
        assert s.sock.version() in ("TLSv1.3", "TLSv1.2")
        s.ehlo()
        assert not s.has_extn("starttls") and s.has_extn("auth")
        code, text = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert (code, text[:5]) == (530, b"5.7.0"), (code, text)
        s.login(ALICE, ALICE_PW)
        s.sendmail(ALICE, [BOB], make_message("via 465", from_addr=ALICE, to_addr=BOB))
    [msg] = messages(srv, BOB)
    assert b"with ESMTPSA id" in msg and b"Subject: via 465" in msg


@pytest.mark.parametrize("via", ["587", "465"])
def test_authenticated_user_relays_to_another_domain(server_factory, tmp_path, via):
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere())
    assert queued(srv) == []
    with submitter(srv, via) as s:
        refused = s.sendmail(ALICE, [REMOTE, BOB, "Other@Elsewhere.Test"],
                             make_message(f"out {via}", from_addr=ALICE, to_addr=REMOTE))
        assert refused == {}
    # The local recipient got it at once; the remote ones wait in the queue.
    assert len(messages(srv, BOB)) == 1
    text = queue_list(srv)
    entries = queued(srv)
    assert len(entries) == 1, text
    qid, sender, rcpts = entries[0]
    assert sender == ALICE, text
    assert sorted(r.lower() for r in rcpts) == ["friend@remote.test", "other@elsewhere.test"], text
    show = srv.cli("queue", "show", qid, check=True).stdout_text
    assert ALICE in show and REMOTE in show and f"Subject: out {via}" in show, show


# -------------------------------------------------------- sender ownership
def test_sender_must_be_owned(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere())
    srv.cli("alias", "add", f"team@{DOMAIN}", ALICE, BOB, check=True)
    srv.cli("alias", "add", f"group@{DOMAIN}", f"team@{DOMAIN}", check=True)  # 2 levels
    srv.cli("alias", "add", f"sales@{DOMAIN}", BOB, check=True)  # does not reach alice
    srv.cli("domain", "add", "catchall.test", "--catch-all", ALICE, check=True)
    refused = [BOB, "bob+x@example.test", "ceo@remote.test", f"victim@{DOMAIN}",
               f"sales@{DOMAIN}", "anything@catchall.test", f"nobody@{DOMAIN}",
               "alice@remote.test", "alice@example.test.remote.test",
               "alice%remote.test@example.test"]
    accepted = [ALICE, ALICE.upper(), "alice+list@example.test", "Alice+Work@Example.Test",
                f"team@{DOMAIN}", f"group@{DOMAIN}", f"team+x@{DOMAIN}", ""]
    for via in ("587", "465"):
        with submitter(srv, via) as s:
            for sender in refused:
                code, text = s.docmd("MAIL", f"FROM:<{sender}>")
                assert (code, text[:5]) == (553, b"5.7.1"), (via, sender, code, text)
            # A source route does not hide whose mailbox it is.
            code, text = s.docmd("MAIL", f"FROM:<@{DOMAIN}:{BOB}>")
            assert code == 553, (code, text)
            for sender in accepted:
                code, text = s.docmd("MAIL", f"FROM:<{sender}>")
                assert code == 250, (via, sender, code, text)
                assert s.rset()[0] == 250
    # Whole transactions, local and remote, as a plus-address and an alias.
    with submitter(srv, "587") as s:
        for sender in ("alice+list@example.test", f"group@{DOMAIN}"):
            assert s.sendmail(sender, [CAROL, REMOTE],
                              make_message(f"as {sender}", from_addr=sender)) == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail(BOB, [CAROL], make_message("as bob", from_addr=BOB))
        assert e.value.smtp_code == 553 and e.value.smtp_error.startswith(b"5.7.1")
    got = messages(srv, CAROL)
    assert len(got) == 2 and not any(b"as bob" in m for m in got)
    assert sorted(e[1] for e in queued(srv)) == sorted(["alice+list@example.test",
                                                        f"group@{DOMAIN}"])
    # Another user cannot use alice's plus-address or an alias reaching only her.
    srv.cli("alias", "add", f"only-alice@{DOMAIN}", ALICE, check=True)
    with submitter(srv, "465", user=BOB) as s:
        for sender in ("alice+list@example.test", f"only-alice@{DOMAIN}"):
            code, text = s.docmd("MAIL", f"FROM:<{sender}>")
            assert (code, text[:5]) == (553, b"5.7.1"), (sender, code, text)
        assert s.docmd("MAIL", f"FROM:<team@{DOMAIN}>")[0] == 250  # reaches bob too


def test_submission_senders_grants(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere() + GRANTS)
    with submitter(srv, "587") as s:
        for sender in ("info@example.test", "INFO@Example.Test", "anyone@sales.example.test",
                       "X@SALES.EXAMPLE.TEST", ALICE):
            code, text = s.docmd("MAIL", f"FROM:<{sender}>")
            assert code == 250, (sender, code, text)
            s.rset()
        for sender in ("info2@example.test", "x@sub.sales.example.test", "x@example.test",
                       "info@remote.test", "x@sales.example.test.evil.test"):
            code, text = s.docmd("MAIL", f"FROM:<{sender}>")
            assert (code, text[:5]) == (553, b"5.7.1"), (sender, code, text)
        assert s.sendmail("info@example.test", [REMOTE, BOB],
                          make_message("granted", from_addr="info@example.test")) == {}
    # Grants are per user.
    for user in (BOB, CAROL):
        with submitter(srv, "465", user=user) as s:
            for sender in ("info@example.test", "anyone@sales.example.test"):
                code, text = s.docmd("MAIL", f"FROM:<{sender}>")
                assert (code, text[:5]) == (553, b"5.7.1"), (user, sender, code, text)
    [(_, sender, rcpts)] = queued(srv)
    assert sender == "info@example.test" and rcpts == [REMOTE]
    [msg] = messages(srv, BOB)
    assert b"Subject: granted" in msg


# -------------------------------------------------------------- save_sent
@pytest.mark.parametrize("via", ["587", "465"])
def test_save_sent_puts_a_seen_copy_in_sent(server_factory, tmp_path, via):
    srv = tls_server(server_factory, tmp_path,
                     extra=relay_to_nowhere() + "\n[submission]\nsave_sent = true\n")
    msg = make_message("keep a copy", from_addr=ALICE, to_addr=REMOTE,
                       body="Line one.\r\n.leading dot\r\n", extra_headers=[f"Cc: <{BOB}>"])
    with submitter(srv, via) as s:
        assert s.sendmail(ALICE, [REMOTE, BOB], msg) == {}
    [(flags, raw)] = imap_sent(srv, ALICE)
    assert b"\\Seen" in flags, flags
    assert raw == msg, "the Sent copy is the message as submitted"
    assert len(queued(srv)) == 1
    assert len(messages(srv, BOB)) == 1
    assert imap_sent(srv, BOB) == [], "only the sender gets a Sent copy"
    # Mail received on port 25 is not "sent" by anyone here.
    srv.send("x@remote.test", [ALICE], make_message("inbound"))
    assert len(imap_sent(srv, ALICE)) == 1
    # A refused submission leaves nothing in Sent.
    with submitter(srv, via) as s:
        with pytest.raises(smtplib.SMTPSenderRefused):
            s.sendmail(BOB, [REMOTE], make_message("not mine", from_addr=BOB))
    assert len(imap_sent(srv, ALICE)) == 1


def test_without_save_sent_nothing_in_sent(server_factory, tmp_path):
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere())
    with submitter(srv, "587") as s:
        assert s.sendmail(ALICE, [REMOTE, BOB],
                          make_message("no copy", from_addr=ALICE, to_addr=REMOTE)) == {}
    assert imap_sent(srv, ALICE) == []
    assert len(queued(srv)) == 1 and len(messages(srv, BOB)) == 1


def test_auth_plain_with_foreign_authzid_is_refused(server_factory, tmp_path):
    # PLAIN's authorization identity must not let alice act as bob.
    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere())
    with smtps(srv) as s:
        s.ehlo()
        code, text = s.docmd("AUTH", "PLAIN " + plain_b64(ALICE, ALICE_PW, authzid=BOB))
        assert (code, text[:5]) == (535, b"5.7.8"), (code, text)
        code, text = s.docmd("AUTH", "PLAIN " + plain_b64(ALICE, ALICE_PW, authzid=ALICE))
        assert code == 235, (code, text)
        code, text = s.docmd("MAIL", f"FROM:<{BOB}>")
        assert code == 553, (code, text)

