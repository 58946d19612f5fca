"""doveadm-like account tools against the real binary: `user show` and
`mailbox list|create|delete|rename|expunge`, each checked against what a
real IMAP client (imaplib) sees on the running server: LIST, LSUB,
STATUS, SELECT and FETCH, and an open session that hears of the changes."""

from __future__ import annotations

import imaplib
import json
import re

import pytest

from harness import USERS, make_message, wait_until

ALICE = "alice@example.test"
ALICE_PW = USERS[ALICE]
SENDER = "sender@remote.test"
LISTEN = {k: "127.0.0.1:0" for k in ("smtp", "pop3", "imap")}


@pytest.fixture
def srv(server_factory):
    return server_factory(listen=dict(LISTEN))


def imap(srv):
    host, port = srv.ports["imap"]
    m = imaplib.IMAP4(host, port, timeout=30)
    m.login(ALICE, ALICE_PW)
    return m


def deliver(srv, n, to=ALICE):
    for i in range(n):
        msg = make_message(f"msg {i}", f"body {i}\r\n" * (i + 1), to_addr=to)
        assert srv.send(SENDER, [to], msg) == {}


def cli(srv, *args):
    return srv.cli(*args, check=True).stdout_text


def fails(srv, *args):
    res = srv.cli(*args)
    assert res.returncode != 0, res.stdout_text
    assert res.stderr_text.strip(), "no reason on stderr"
    return res.stderr_text


LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) "(?P<sep>[^"]*)" (?P<name>.+)$')


def imap_special_use(m):
    typ, data = m.list()
    out = {}
    for line in data:
        g = LIST_RE.match(line)
        uses = [a for a in g.group("attrs").decode().split()
                if a in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")]
        out[g.group("name").decode().strip('"')] = uses[0] if uses else None
    return out


def imap_names(m, cmd="LIST"):
    typ, data = m.list() if cmd == "LIST" else m.lsub()
    assert typ == "OK"
    names = []
    for line in data:
        if line is None:
            continue
        name = LIST_RE.match(line).group("name").decode()
        names.append(name.strip('"'))
    return sorted(names)


def imap_status(m, name):
    typ, data = m.status(f'"{name}"', "(MESSAGES UNSEEN)")
    assert typ == "OK", data
    text = data[0].decode()
    return (int(re.search(r"MESSAGES (\d+)", text).group(1)),
            int(re.search(r"UNSEEN (\d+)", text).group(1)))


def imap_sizes(m, name):
    typ, data = m.select(f'"{name}"', readonly=True)
    assert typ == "OK", data
    if int(data[0]) == 0:
        return []
    typ, data = m.fetch("1:*", "(RFC822.SIZE)")
    assert typ == "OK"
    return [int(re.search(rb"RFC822\.SIZE (\d+)", d).group(1)) for d in data
            if isinstance(d, bytes)]


# ------------------------------------------------------------- user show
def test_user_show_matches_imap(srv):
    deliver(srv, 3)
    cli(srv, "user", "quota", ALICE, "1M")
    cli(srv, "alias", "add", "team@example.test", ALICE, "bob@example.test")
    cli(srv, "alias", "add", "staff@example.test", "team@example.test")
    cli(srv, "alias", "add", "other@example.test", "bob@example.test")
    cli(srv, "domain", "catch-all", "example.test", "alice+catch@example.test")

    doc = json.loads(cli(srv, "user", "show", ALICE, "--json"))
    m = imap(srv)
    try:
        names = imap_names(m)
        sizes = {n: imap_sizes(m, n) for n in names}
    finally:
        m.logout()
    assert doc["address"] == ALICE
    assert doc["quota_bytes"] == 1 << 20
    assert doc["messages"] == 3 == sum(len(s) for s in sizes.values())
    assert doc["used_bytes"] == sum(sum(s) for s in sizes.values()) > 0
    # Nobody logged in as alice yet (deliveries are not logins).
    assert doc["last_login"] is None
    assert sorted(b["name"] for b in doc["mailboxes"]) == names
    for b in doc["mailboxes"]:
        assert b["messages"] == len(sizes[b["name"]]), b
        assert b["size"] == sum(sizes[b["name"]]), b
    # staff reaches alice through team; other does not reach her.
    assert doc["aliases"] == ["staff@example.test", "team@example.test"]
    assert doc["catch_alls"] == ["example.test"]

    # The IMAP login above is recorded (in the background: wait for it).
    def after_login():
        d = json.loads(cli(srv, "user", "show", ALICE, "--json"))
        return d["last_login"]
    login = wait_until(after_login, what="alice's IMAP login recorded")
    assert login["client"] == "127.0.0.1", login
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", login["at"]), login
    text = cli(srv, "user", "show", ALICE)
    assert f"quota: {1 << 20} bytes, used {doc['used_bytes']} bytes" in text, text
    assert "messages: 3" in text
    assert f"last login: {login['at']} from 127.0.0.1" in text, text
    assert re.search(rf"^  INBOX\t3 messages\t{sum(sizes['INBOX'])} bytes$", text, re.M), text
    assert "aliases: staff@example.test, team@example.test" in text
    assert "catch-all of: example.test" in text

    bob = json.loads(cli(srv, "user", "show", "BOB@example.test", "--json"))
    assert bob["quota_bytes"] is None and bob["messages"] == 0
    assert bob["last_login"] is None
    assert bob["aliases"] == ["other@example.test", "staff@example.test", "team@example.test"]
    assert bob["catch_alls"] == []


def test_user_show_unknown_fails(srv):
    assert "nobody@example.test" in fails(srv, "user", "show", "nobody@example.test")


# ------------------------------------------------------------ mailbox list
def test_mailbox_list_matches_imap(srv):
    deliver(srv, 2)
    m = imap(srv)
    try:
        m.select("INBOX")
        m.store("1", "+FLAGS", "\\Seen")
        m.close()
        names = imap_names(m)
        status = {n: imap_status(m, n) for n in names}
        sizes = {n: sum(imap_sizes(m, n)) for n in names}
        uses = imap_special_use(m)
    finally:
        m.logout()
    listed = json.loads(cli(srv, "mailbox", "list", ALICE, "--json"))
    assert sorted(b["name"] for b in listed) == names
    for b in listed:
        assert (b["messages"], b["unseen"]) == status[b["name"]], b
        assert b["size"] == sizes[b["name"]]
        assert b["special_use"] == uses[b["name"]], b
    assert uses["Sent"] == "\\Sent"
    rows = [ln.split("\t") for ln in cli(srv, "mailbox", "list", ALICE).splitlines()]
    assert ["INBOX", "2", "1", str(sizes["INBOX"])] in rows
    assert sorted(r[0] for r in rows) == names
    fails(srv, "mailbox", "list", "nobody@example.test")


# ------------------------------------------- create, rename, delete
def test_mailbox_create_rename_delete_seen_by_imap(srv):
    m = imap(srv)
    try:
        assert "created" in cli(srv, "mailbox", "create", ALICE, "Projects")
        cli(srv, "mailbox", "create", ALICE, "Projects/2024")
        assert {"Projects", "Projects/2024"} <= set(imap_names(m))
        # subscribed, so that clients show them
        assert {"Projects", "Projects/2024"} <= set(imap_names(m, "LSUB"))
        fails(srv, "mailbox", "create", ALICE, "Projects")

        # Mail in the renamed mailbox moves with it.
        assert m.append("Projects/2024", None, None, make_message("kept"))[0] == "OK"
        cli(srv, "mailbox", "rename", ALICE, "Projects", "Work")
        names = set(imap_names(m))
        assert {"Work", "Work/2024"} <= names and not {"Projects", "Projects/2024"} & names
        assert imap_status(m, "Work/2024") == (1, 1)
        fails(srv, "mailbox", "rename", ALICE, "Work", "Sent")  # exists
        fails(srv, "mailbox", "rename", ALICE, "Nowhere", "Else")

        out = cli(srv, "mailbox", "delete", ALICE, "Work/2024")
        assert "1 messages" in out, out
        names = set(imap_names(m))
        assert "Work/2024" not in names and "Work" in names
        assert "Work/2024" not in imap_names(m, "LSUB")
        fails(srv, "mailbox", "delete", ALICE, "Work/2024")
        fails(srv, "mailbox", "delete", ALICE, "INBOX")
        assert "INBOX" in imap_names(m)
    finally:
        m.logout()


# ----------------------------------------------------------------- expunge
def test_mailbox_expunge_selectors_seen_by_open_session(srv):
    # Two old messages (INTERNALDATE in 2020) through APPEND, three new
    # ones over SMTP; one new one read.
    m = imap(srv)
    for i in range(2):
        assert m.append("INBOX", None, '"01-Mar-2020 10:00:00 +0000"',
                        make_message(f"old {i}"))[0] == "OK"
    deliver(srv, 3)
    try:
        typ, data = m.select("INBOX")
        assert int(data[0]) == 5
        m.store("3", "+FLAGS", "\\Seen")

        assert "--before" in fails(srv, "mailbox", "expunge", ALICE, "INBOX")
        assert "YYYY-MM-DD" in fails(srv, "mailbox", "expunge", ALICE, "INBOX",
                                     "--before", "1.3.2020")
        fails(srv, "mailbox", "expunge", ALICE, "Nowhere", "--all")
        fails(srv, "mailbox", "expunge", ALICE, "INBOX", "--all", "--seen")

        # --before and --seen together: the old ones are unread, so none.
        out = cli(srv, "mailbox", "expunge", ALICE, "INBOX", "--before", "2021-01-01", "--seen")
        assert "expunged 0 message(s)" in out, out
        # The day itself is not before it.
        out = cli(srv, "mailbox", "expunge", ALICE, "INBOX", "--before", "2020-03-01")
        assert "expunged 0 message(s)" in out, out
        out = cli(srv, "mailbox", "expunge", ALICE, "INBOX", "--before", "2020-03-02")
        assert "expunged 2 message(s)" in out, out

        # The session that has INBOX selected is told (EXPUNGE responses).
        def told():
            m.noop()
            return len(m.untagged_responses.get("EXPUNGE", [])) >= 2
        wait_until(told, timeout=10, what="EXPUNGE responses in the open session")
        m.untagged_responses.pop("EXPUNGE", None)

        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [d[1] for d in data if isinstance(d, tuple)]
        assert len(subjects) == 3 and all(b"msg" in s for s in subjects), subjects

        out = cli(srv, "mailbox", "expunge", ALICE, "INBOX", "--seen")
        assert "expunged 1 message(s)" in out, out
        assert imap_status(m, "INBOX") == (2, 2)
        out = cli(srv, "mailbox", "expunge", ALICE, "INBOX", "--all")
        assert "expunged 2 message(s)" in out, out
        assert imap_status(m, "INBOX") == (0, 0)
        doc = json.loads(cli(srv, "user", "show", ALICE, "--json"))
        assert doc["messages"] == 0 and doc["used_bytes"] == 0
    finally:
        m.logout()


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["", " ", "a//b", "/x", "x/", "inbox", "x" * 5000,
                                  "tab\there", "ctl\x1b[2J"])
def test_mailbox_create_bad_names_refused(srv, name):
    """Names the store cannot hold (empty, empty levels, too long, control
    characters) or that exist (INBOX in any case) are refused with a
    reason, and nothing is created."""
    before = cli(srv, "mailbox", "list", ALICE)
    res = srv.cli("mailbox", "create", ALICE, name)
    assert res.returncode == 1, res.stdout_text
    assert res.stderr_text.strip() and "panicked" not in res.stderr_text
    assert "\x1b" not in res.stderr_text
    assert cli(srv, "mailbox", "list", ALICE) == before


def test_mailbox_odd_but_valid_name_listed_like_imap(srv):
    name = "Trash/../Ünï 2024"
    cli(srv, "mailbox", "create", ALICE, name)
    listed = [b["name"] for b in json.loads(cli(srv, "mailbox", "list", ALICE, "--json"))]
    assert name in listed
    m = imap(srv)
    try:
        assert imap_status(m, name.replace("Ü", "&ANw-").replace("ï", "&AO8-")) == (0, 0)
    finally:
        m.logout()
