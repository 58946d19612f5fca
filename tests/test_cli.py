"""Admin CLI while the server runs, and the routing it controls: users,
passwords, aliases, plus-addressing, domains and catch-all, store check."""

from __future__ import annotations

import poplib
import re

import pytest

from harness import USERS, cli_lines as lines, make_message, rcpt_reply as rcpt, strip_trace

SENDER = "sender@remote.test"


# ---------------------------------------------------------------- users
def test_user_list(server):
    res = server.cli("user", "list", check=True)
    assert sorted(lines(res)) == sorted(USERS), res.stdout_text


def test_user_add_while_running(server):
    server.add_user("dave@example.test", "dave-Secret")
    assert "dave@example.test" in lines(server.cli("user", "list", check=True))
    assert rcpt(server, "dave@example.test")[0] == 250
    msg = make_message("to dave", "hi dave\r\n", to_addr="dave@example.test")
    assert server.send(SENDER, ["dave@example.test"], msg) == {}
    (got,) = server.messages("dave@example.test", "dave-Secret")
    assert strip_trace(got, SENDER) == msg


def test_user_add_duplicate_fails(server):
    res = server.cli("user", "add", "alice@example.test", "--password-stdin", input="x\n")
    assert res.returncode != 0
    assert res.stderr_text.strip(), "no error message on stderr"
    # alice's password is unchanged
    server.pop3("alice@example.test").quit()


def test_user_add_password_from_stdin_exactly(server):
    """The password is the stdin line without its newline (spaces kept)."""
    server.add_user("erin@example.test", "pass with spaces ünï")
    p = server.pop3("erin@example.test", "pass with spaces ünï")
    p.quit()


def test_user_del(server):
    assert rcpt(server, "carol@example.test")[0] == 250
    server.cli("user", "del", "carol@example.test", check=True)
    assert "carol@example.test" not in lines(server.cli("user", "list", check=True))
    code, text = rcpt(server, "carol@example.test")
    assert code == 550 and "5.1.1" in text, text
    # and POP3 login is gone
    with pytest.raises(poplib.error_proto):
        server.pop3("carol@example.test")


def test_user_del_unknown_fails(server):
    res = server.cli("user", "del", "nobody@example.test")
    assert res.returncode != 0
    assert res.stderr_text.strip()


def test_user_passwd(server):
    server.cli("user", "passwd", "bob@example.test", "--password-stdin",
               input="bob-New-Password\n", check=True)
    with pytest.raises(poplib.error_proto):
        server.pop3("bob@example.test", "bob-Secret-2")
    server.pop3("bob@example.test", "bob-New-Password").quit()


def test_user_passwd_unknown_fails(server):
    res = server.cli("user", "passwd", "nobody@example.test", "--password-stdin", input="x\n")
    assert res.returncode != 0
    assert res.stderr_text.strip()


# ---------------------------------------------------------------- aliases
def test_alias_add_list_deliver_del(server):
    server.cli("alias", "add", "sales@example.test", "alice@example.test", "bob@example.test",
               check=True)
    listed = lines(server.cli("alias", "list", check=True))
    assert "sales@example.test -> alice@example.test, bob@example.test" in listed, listed
    msg = make_message("to sales", "buy now\r\n", to_addr="sales@example.test")
    assert server.send(SENDER, ["sales@example.test"], msg) == {}
    for u in ("alice@example.test", "bob@example.test"):
        (got,) = server.messages(u)
        assert strip_trace(got, SENDER) == msg
    assert server.messages("carol@example.test") == []

    server.cli("alias", "del", "sales@example.test", check=True)
    assert not any(ln.startswith("sales@") for ln in lines(server.cli("alias", "list", check=True)))
    code, text = rcpt(server, "sales@example.test")
    assert code == 550 and "5.1.1" in text, text


def test_alias_and_member_both_rcpt_delivers_once(server):
    server.cli("alias", "add", "team@example.test", "alice@example.test", "bob@example.test",
               check=True)
    msg = make_message("team", "once\r\n", to_addr="team@example.test")
    assert server.send(SENDER, ["team@example.test", "alice@example.test"], msg) == {}
    assert len(server.messages("alice@example.test")) == 1, "alice got the message twice"
    assert len(server.messages("bob@example.test")) == 1


def test_alias_del_unknown_fails(server):
    res = server.cli("alias", "del", "nothere@example.test")
    assert res.returncode != 0
    assert res.stderr_text.strip()


# ---------------------------------------------------------------- plus-addressing
def test_plus_addressing(server):
    msg = make_message("plus", "tagged\r\n", to_addr="alice+news@example.test")
    assert server.send(SENDER, ["alice+news@example.test"], msg) == {}
    (got,) = server.messages("alice@example.test")
    assert strip_trace(got, SENDER) == msg
    code, text = rcpt(server, "nobody+news@example.test")
    assert code == 550 and "5.1.1" in text, text


# ---------------------------------------------------------------- domains / catch-all
def test_domain_add_list_del(server):
    code, text = rcpt(server, "x@new.test")
    assert code == 550 and "5.7.1" in text, text
    server.cli("domain", "add", "new.test", check=True)
    assert "new.test" in " ".join(lines(server.cli("domain", "list", check=True)))
    code, text = rcpt(server, "x@new.test")
    assert code == 550 and "5.1.1" in text, f"local domain, unknown user: {text}"
    server.add_user("frank@new.test", "frank-Secret")
    assert rcpt(server, "frank@new.test")[0] == 250
    server.cli("user", "del", "frank@new.test", check=True)
    server.cli("domain", "del", "new.test", check=True)
    assert "new.test" not in " ".join(lines(server.cli("domain", "list", check=True)))
    code, text = rcpt(server, "x@new.test")
    assert code == 550 and "5.7.1" in text, text


def test_catch_all(server):
    server.cli("domain", "add", "catch.test", "--catch-all", "alice@example.test", check=True)
    listed = " ".join(lines(server.cli("domain", "list", check=True)))
    assert "catch.test" in listed
    msg = make_message("catch", "caught\r\n", to_addr="whoever@catch.test")
    assert server.send(SENDER, ["whoever@catch.test"], msg) == {}
    (got,) = server.messages("alice@example.test")
    assert strip_trace(got, SENDER) == msg
    # the catch-all is per domain: example.test has none
    code, text = rcpt(server, "whoever@example.test")
    assert code == 550 and "5.1.1" in text


def test_domain_del_unknown_fails(server):
    res = server.cli("domain", "del", "never-added.test")
    assert res.returncode != 0
    assert res.stderr_text.strip()


# ---------------------------------------------------------------- store check
def test_store_check_ok(server):
    assert server.send(SENDER, ["alice@example.test"], make_message("x", "y\r\n")) == {}
    res = server.cli("store", "check")
    assert res.returncode == 0, (res.stdout_text, res.stderr_text)


def test_cli_bad_usage_fails(server):
    res = server.cli("user", "frobnicate")
    assert res.returncode != 0
    assert res.stderr_text.strip()


# ---------------------------------------------------------------- quotas
def test_user_quota_is_what_imap_reports(server_factory):
    """`mailgate user quota` sets the limit IMAP QUOTA (RFC 9208) shows,
    while the server runs; `none` removes it; bad values are refused."""
    import imaplib

    srv = server_factory(listen={"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0"})
    user = sorted(USERS)[0]

    def quota_root():
        m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
        try:
            m.login(user, USERS[user])
            typ, data = m.getquotaroot("INBOX")
            assert typ == "OK", data
            return b" ".join(d for d in data[1] if d)
        finally:
            m.logout()

    assert b"STORAGE" not in quota_root()
    res = srv.cli("user", "quota", user, "2M", check=True)
    assert "2097152" in res.stdout_text
    # RFC 9208 STORAGE is in units of 1024 octets: 2 MiB = 2048.
    assert re.search(rb"STORAGE \d+ 2048\b", quota_root()), quota_root()
    srv.cli("user", "quota", user, "none", check=True)
    assert b"STORAGE" not in quota_root()
    bad = srv.cli("user", "quota", user, "lots")
    assert bad.returncode != 0 and "bad quota" in bad.stderr_text
    missing = srv.cli("user", "quota", "nobody@example.test", "1M")
    assert missing.returncode != 0 and "no account" in missing.stderr_text
