"""POP3: login methods, STAT/LIST/RETR/DELE/RSET/QUIT semantics, UIDL stability,
the IN-USE lock, TOP, CAPA, identical answers for wrong password and unknown user."""

from __future__ import annotations

import poplib
import socket
import time

import pytest

from harness import plain_b64, retr_bytes, strip_trace

ALICE = "alice@example.test"
ALICE_PW = "alice-Secret-1"
SENDER = "sender@remote.test"


def deliver(server, n, to=ALICE):
    sent = []
    for i in range(1, n + 1):
        msg = (f"Subject: msg {i}\r\nX-Seq: {i}\r\n\r\n"
               + "".join(f"body line {j} of message {i}\r\n" for j in range(1, 6))).encode()
        assert server.send(SENDER, [to], msg) == {}
        sent.append(msg)
    return sent


def seq_of(raw: bytes) -> int:
    for line in raw.split(b"\r\n"):
        if line.startswith(b"X-Seq: "):
            return int(line[7:])
    raise AssertionError(raw[:200])


def login_retry(server, user=ALICE, pw=ALICE_PW, timeout=10.0):
    return server.pop3_login(user, pw, timeout=timeout)


# ---------------------------------------------------------------- login
def test_user_pass_and_capa(server):
    p = server.pop3()
    try:
        assert p.getwelcome().startswith(b"+OK")
        caps = p.capa()
        for c in ("USER", "UIDL", "TOP"):
            assert c in caps, caps
        assert "SASL" in caps and "PLAIN" in [m.upper() for m in caps["SASL"]], caps
        assert p.user(ALICE).startswith(b"+OK")
        assert p.pass_(ALICE_PW).startswith(b"+OK")
        assert p.stat() == (0, 0)
        assert p.noop().startswith(b"+OK")
    finally:
        p.quit()


def test_auth_plain_initial_response(server):
    deliver(server, 1)
    with server.raw_pop3() as c:
        assert c.status().startswith(b"+OK")
        resp = c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW))
        assert resp.startswith(b"+OK"), resp
        resp = c.cmd("STAT")
        assert resp.startswith(b"+OK 1 "), resp
        assert c.cmd("QUIT").startswith(b"+OK")


def test_auth_plain_continuation(server):
    with server.raw_pop3() as c:
        c.status()
        resp = c.cmd("AUTH PLAIN")
        assert resp.startswith(b"+"), resp
        assert not resp.startswith(b"+OK"), resp
        resp = c.cmd(plain_b64(ALICE, ALICE_PW))
        assert resp.startswith(b"+OK"), resp
        assert c.cmd("STAT").startswith(b"+OK 0 0")
        c.cmd("QUIT")


def test_auth_plain_wrong_password(server):
    with server.raw_pop3() as c:
        c.status()
        resp = c.cmd("AUTH PLAIN " + plain_b64(ALICE, "wrong"))
        assert resp.startswith(b"-ERR"), resp
        assert c.cmd("STAT").startswith(b"-ERR"), "STAT must not work before login"


def test_auth_plain_authzid_other_user_refused(server):
    """Logging in as alice must not give access to bob's mailbox via authzid."""
    deliver(server, 1, to="bob@example.test")
    with server.raw_pop3() as c:
        c.status()
        resp = c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW, authzid="bob@example.test"))
        if resp.startswith(b"+OK"):
            stat = c.cmd("STAT")
            assert stat.startswith(b"+OK 0 "), f"alice's credentials opened bob's mailbox: {stat!r}"
        else:
            assert resp.startswith(b"-ERR"), resp


def test_wrong_password_and_unknown_user_identical(server):
    answers = {}
    for label, user, pw, src in (("wrong-pw", ALICE, "not-the-password", "127.0.0.2"),
                                 ("unknown", "nobody@example.test", "whatever", "127.0.0.3"),
                                 ("unknown-domain", "nobody@other.test", "whatever", "127.0.0.4")):
        with server.raw_pop3(source=src) as c:
            c.status()
            u = c.cmd(f"USER {user}")
            p = c.cmd(f"PASS {pw}")
        with server.raw_pop3(source=src) as c:
            c.status()
            a = c.cmd("AUTH PLAIN " + plain_b64(user, pw))
        answers[label] = (u, p, a)
    assert answers["wrong-pw"][0] == answers["unknown"][0] == answers["unknown-domain"][0], answers
    assert answers["wrong-pw"][1].startswith(b"-ERR"), answers
    assert answers["wrong-pw"][1] == answers["unknown"][1] == answers["unknown-domain"][1], answers
    assert answers["wrong-pw"][2].startswith(b"-ERR"), answers
    assert answers["wrong-pw"][2] == answers["unknown"][2] == answers["unknown-domain"][2], answers


def test_failed_login_is_delayed(server_factory):
    """Both a wrong password and an unknown user are answered only after the
    failure delay (otherwise timing tells which accounts exist)."""
    srv = server_factory(auth={"failure_delay_ms": 300})
    for user, src in ((ALICE, "127.0.0.5"), ("nobody@example.test", "127.0.0.10")):
        with srv.raw_pop3(source=src) as c:
            c.status()
            c.cmd(f"USER {user}")
            t0 = time.monotonic()
            resp = c.cmd("PASS wrong")
            elapsed = time.monotonic() - t0
            assert resp.startswith(b"-ERR")
            assert elapsed >= 0.25, f"{user}: failed login answered after {elapsed:.3f}s (< 300 ms)"


def test_lockout_after_max_failures(server_factory):
    srv = server_factory(auth={"failure_delay_ms": 1, "max_failures": 3})
    for i in range(3):
        with srv.raw_pop3(source="127.0.0.6") as c:
            c.status()
            c.cmd(f"USER {ALICE}")
            assert c.cmd("PASS wrong").startswith(b"-ERR")
    # the right password is now refused for a while (from this address / for this account)
    with srv.raw_pop3(source="127.0.0.6") as c:
        c.status()
        c.cmd(f"USER {ALICE}")
        resp = c.cmd(f"PASS {ALICE_PW}")
        assert resp.startswith(b"-ERR"), f"login allowed right after {3} failures: {resp!r}"
    # other accounts from other addresses are not affected
    p = srv.pop3("bob@example.test", source="127.0.0.7")
    p.quit()


# ---------------------------------------------------------------- transaction state
def test_stat_list_retr(server):
    sent = deliver(server, 3)
    p = server.pop3(ALICE)
    try:
        count, total = p.stat()
        assert count == 3
        resp, listing, _ = p.list()
        sizes = {int(a): int(b) for a, b in (ln.split() for ln in listing)}
        assert sorted(sizes) == [1, 2, 3]
        assert sum(sizes.values()) == total
        for i in (1, 2, 3):
            raw = retr_bytes(p, i)
            assert len(raw) == sizes[i], f"LIST size {sizes[i]} != RETR octets {len(raw)}"
            assert strip_trace(raw, SENDER) == sent[i - 1]
            assert p.list(i).split()[2] == str(sizes[i]).encode()
        with pytest.raises(poplib.error_proto):
            p.retr(4)
        with pytest.raises(poplib.error_proto):
            p.retr(0)
    finally:
        p.quit()


def test_dele_rset_quit(server):
    deliver(server, 3)
    p = server.pop3(ALICE)
    count, total = p.stat()
    size1 = int(p.list(1).split()[2])
    assert p.dele(1).startswith(b"+OK")
    assert p.stat() == (2, total - size1), "STAT must not count deleted messages"
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    with pytest.raises(poplib.error_proto):
        p.dele(1)  # already deleted
    assert p.rset().startswith(b"+OK")
    assert p.stat() == (3, total), "RSET must undelete"
    assert seq_of(retr_bytes(p, 1)) == 1
    p.dele(2)
    assert p.quit().startswith(b"+OK")

    p = server.pop3(ALICE)
    try:
        assert p.stat()[0] == 2
        assert [seq_of(retr_bytes(p, i)) for i in (1, 2)] == [1, 3]
    finally:
        p.quit()


def test_close_without_quit_deletes_nothing(server):
    deliver(server, 3)
    p = server.pop3(ALICE)
    p.dele(1)
    p.dele(2)
    p.sock.shutdown(socket.SHUT_RDWR)
    p.close()  # no QUIT
    p = login_retry(server)
    try:
        assert p.stat()[0] == 3, "dropped session's DELEs were committed"
    finally:
        p.quit()


def test_uidl_stable_across_sessions_and_restart(server):
    deliver(server, 4)

    def uidl():
        p = login_retry(server)
        try:
            resp, lines, _ = p.uidl()
            out = {}
            for ln in lines:
                num, uid = ln.split()
                out[int(num)] = uid
            # single form agrees with the list form
            for num, uid in out.items():
                assert p.uidl(num).split()[1:] == [str(num).encode(), uid]
            return {uid: seq_of(retr_bytes(p, num)) for num, uid in out.items()}
        finally:
            p.quit()

    first = uidl()
    assert len(first) == 4, "UIDs must be unique"
    for uid in first:
        assert 1 <= len(uid) <= 70 and all(0x21 <= b <= 0x7E for b in uid), uid
    assert uidl() == first
    server.restart()
    assert uidl() == first, "UIDs changed across a server restart"
    # deleting one keeps the others' UIDs
    p = server.pop3(ALICE)
    p.dele(1)
    p.quit()
    after = uidl()
    assert after == {u: s for u, s in first.items() if s != 1}
    # a new message gets a new UID
    deliver(server, 1)
    newest = uidl()
    assert len(newest) == 4 and set(after) < set(newest)
    assert not (set(newest) - set(after)) & set(first), "a deleted message's UID was reused"


def test_in_use_lock(server):
    deliver(server, 1)
    a = server.pop3(ALICE)
    b = server.pop3()
    try:
        b.user(ALICE)
        with pytest.raises(poplib.error_proto) as ei:
            b.pass_(ALICE_PW)
        assert ei.value.args[0].startswith(b"-ERR [IN-USE]"), ei.value.args
        # the first session is unaffected
        assert a.stat()[0] == 1
        # AUTH PLAIN is locked out too
        with server.raw_pop3() as c:
            c.status()
            resp = c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW))
            assert resp.startswith(b"-ERR [IN-USE]"), resp
        # another account is not
        server.pop3("bob@example.test").quit()
    finally:
        a.quit()
        b.close()
    p = login_retry(server)  # free again after QUIT
    p.quit()


def test_in_use_lock_not_given_to_wrong_password(server):
    """A wrong password while the mailbox is locked must still look like a
    wrong password (no account probing through IN-USE)."""
    a = server.pop3(ALICE)
    try:
        with server.raw_pop3(source="127.0.0.8") as c:
            c.status()
            c.cmd(f"USER {ALICE}")
            locked_wrong = c.cmd("PASS wrong")
        with server.raw_pop3(source="127.0.0.9") as c:
            c.status()
            c.cmd("USER nobody@example.test")
            unknown = c.cmd("PASS wrong")
        assert locked_wrong == unknown, (locked_wrong, unknown)
    finally:
        a.quit()


def test_top(server):
    sent = deliver(server, 2)
    p = server.pop3(ALICE)
    try:
        full = retr_bytes(p, 2)
        head, _, body = full.partition(b"\r\n\r\n")
        body_lines = body.split(b"\r\n")[:-1]
        for n in (0, 2, 100):
            resp, lines, _ = p.top(2, n)
            assert resp.startswith(b"+OK")
            got = b"".join(ln + b"\r\n" for ln in lines)
            want = head + b"\r\n\r\n" + b"".join(ln + b"\r\n" for ln in body_lines[:n])
            assert got == want, f"TOP 2 {n}: {got!r} != {want!r}"
        with pytest.raises(poplib.error_proto):
            p.top(3, 0)
        assert strip_trace(full, SENDER) == sent[1]
    finally:
        p.quit()


def test_commands_before_login_refused(server):
    deliver(server, 1)
    with server.raw_pop3() as c:
        c.status()
        for cmd in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 0"):
            assert c.cmd(cmd).startswith(b"-ERR"), cmd
        assert c.cmd("PASS " + ALICE_PW).startswith(b"-ERR"), "PASS without USER"
        assert c.cmd("QUIT").startswith(b"+OK")
    p = server.pop3(ALICE)
    assert p.stat()[0] == 1
    p.quit()


# ------------------------------------------------------- issue 10 bounds
def test_quit_counts_what_another_session_expunged(server_factory):
    """5 messages; IMAP expunges one while POP3 holds its snapshot; POP3
    deletes one: QUIT says 3 left (the store's count), not 4 (the snapshot's)."""
    import imaplib

    srv = server_factory(listen={"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0",
                                 "imap": "127.0.0.1:0"})
    deliver(srv, 5)
    p = login_retry(srv)
    try:
        assert p.stat()[0] == 5
        m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
        m.login(ALICE, ALICE_PW)
        m.select("INBOX")
        m.store("1", "+FLAGS", "(\\Deleted)")
        assert m.expunge()[0] == "OK"
        m.logout()
        assert p.dele(5).startswith(b"+OK")
    finally:
        resp = p.quit()
    assert b"(3 messages left)" in resp, resp
    assert len(srv.messages(ALICE)) == 3


def test_trickled_command_line_closed_before_login(server_factory):
    """One byte a second never completes a line within command_timeout = 3:
    -ERR and close after about 3 s (today: the session stays open)."""
    srv = server_factory(limits={"command_timeout": 3})
    with srv.raw_pop3() as c:
        assert c.status().startswith(b"+OK")
        t0 = time.monotonic()
        closed = False
        for b in b"USER " + b"u" * 40 + b"\r\n":
            if time.monotonic() - t0 > 12:
                break
            try:
                c.send(bytes([b]))
            except OSError:
                closed = True
                break
            c.sock.settimeout(1.0)
            try:
                chunk = c.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                c.buf += chunk
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
        took = time.monotonic() - t0
        assert closed, "session still open"
        assert 2.5 < took < 7, took
        assert c.buf.startswith(b"-ERR"), c.buf
