"""`mailgate store migrate` (docs/scaling.md, "Moving a store"): a SQLite
store filled through the real server goes into a private PostgreSQL server
(tests/pg_server.py), the server then runs on PostgreSQL and its clients see
the same thing, and the store comes back into SQLite the same way.

The store is filled by SMTP deliveries, IMAP (a folder, a subscription,
flags and a keyword, a copy, an expunge), a stored Sieve script, a
quota, an alias, and a message to another domain waiting in the queue. What
IMAP (UIDVALIDITY, UIDNEXT, every message's UID, flags, internal date and
body), POP3 (UIDL), the queue, Sieve and the directory show must be the same
after each move. The command refuses while the server runs, refuses a target
with data unless `--force` (and then keeps the old SQLite store aside), and
without a terminal prints one line per table.
"""

from __future__ import annotations

import hashlib
import imaplib
import json
import re

import pytest

import pg_server
from harness import USERS, Server, make_message, wait_until
from test_store_backend import without_store
from test_tls import closed_port

ALICE = "alice@example.test"
BOB = "bob@example.test"
LISTEN = {"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0", "pop3": "127.0.0.1:0"}
SIEVE = ('require "fileinto";\n'
         'if header :contains "subject" "sieve-me" { fileinto "Projects"; }\n')

pytestmark = pytest.mark.skipif(not pg_server.available(), reason="PostgreSQL is not installed")


def relay_section() -> str:
    """Mail to other domains from 127.0.0.1 is accepted and queued for a
    closed loopback port, retried in an hour: it stays in the queue."""
    return (f'\n[relay]\nsmarthost = "127.0.0.1:{closed_port()}"\nconnect_timeout = "2s"\n'
            'trusted_networks = ["127.0.0.1/32"]\n\n[queue]\nretry = ["1h"]\n')


def pg_store(url: str) -> str:
    return f'\n[store]\nbackend = "postgres"\nexperimental = true\nurl = "{url}"\n'


def imap(srv, user) -> imaplib.IMAP4:
    m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
    m.login(user, USERS[user])
    return m


def fill(srv):
    for n in range(1, 5):
        srv.send("sender@remote.test", [ALICE], make_message(subject=f"m{n}", body=f"body {n}\r\n"))
    srv.send("sender@remote.test", [ALICE, BOB], make_message(subject="both"))
    m = imap(srv, ALICE)
    try:
        assert m.create("Projects")[0] == "OK"
        assert m.subscribe("Projects")[0] == "OK"
        assert m.subscribe("Archive/Old")[0] == "OK"  # no such mailbox: kept anyway
        m.select("INBOX")
        assert m.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged)")[0] == "OK"
        assert m.uid("STORE", "2", "+FLAGS", "($Label1)")[0] == "OK"
        assert m.uid("COPY", "3", "Projects")[0] == "OK"
        assert m.uid("STORE", "4", "+FLAGS", r"(\Deleted)")[0] == "OK"
        assert m.expunge()[0] == "OK"
    finally:
        m.logout()
    srv.cli("sieve", "put", ALICE, "main", "-", input=SIEVE, check=True)
    srv.cli("sieve", "activate", ALICE, "main", check=True)
    srv.cli("user", "quota", BOB, "5M", check=True)
    srv.cli("alias", "add", "team@example.test", ALICE, BOB, check=True)
    srv.send("sender@remote.test", ["far@remote.test"], make_message(subject="far away"))
    # Its first attempt has failed: nothing moves for an hour now.
    wait_until(lambda: [q["attempts"] for q in queue(srv)] == [1], interval=0.1,
               what="the first attempt of the queued message")


def queue(srv) -> list[dict]:
    return json.loads(srv.cli("queue", "list", "--json", check=True).stdout_text)["messages"]


def mailbox_state(m: imaplib.IMAP4, name: str):
    typ, data = m.status(f'"{name}"', "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert typ == "OK", data
    status = re.sub(r"^.*?\(", "(", data[0].decode())
    typ, _ = m.select(f'"{name}"', readonly=True)
    assert typ == "OK"
    typ, data = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK", data
    messages = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item[0].decode(), item[1]
        uid = re.search(r"UID (\d+)", head).group(1)
        flags = sorted(f for f in re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
                       if f != "\\Recent")
        date = re.search(r'INTERNALDATE "([^"]+)"', head).group(1)
        messages.append((int(uid), flags, date, hashlib.sha256(body).hexdigest()))
    return status, sorted(messages)


def state(srv) -> dict:
    """What clients and the admin see of the store."""
    out = {}
    for user in (ALICE, BOB):
        m = imap(srv, user)
        try:
            typ, data = m.list()
            assert typ == "OK"
            names = sorted(re.match(r'\(.*?\) (?:NIL|"[^"]*") (.*)$', d.decode()).group(1)
                           .strip('"') for d in data)
            out[user] = {n: mailbox_state(m, n) for n in names}
            out[user, "lsub"] = sorted(d.decode() for d in m.lsub()[1])
        finally:
            m.logout()
        p = srv.pop3_login(user, USERS[user])
        try:
            out[user, "uidl"] = p.uidl()[1]
        finally:
            p.quit()
    out["queue"] = [(q["id"], q["sender"], q["attempts"],
                     [(r["address"], r["status"]) for r in q["recipients"]]) for q in queue(srv)]
    out["sieve"] = (srv.cli("sieve", "list", ALICE, check=True).stdout_text,
                    srv.cli("sieve", "get", ALICE, "main", check=True).stdout_text)
    out["users"] = srv.cli("user", "list", check=True).stdout_text
    out["aliases"] = srv.cli("alias", "list", check=True).stdout_text
    bob = json.loads(srv.cli("user", "show", BOB, "--json", check=True).stdout_text)
    out["bob quota"] = bob["quota_bytes"]
    return out


def migrate(srv, *args):
    return srv.cli("store", "migrate", *args, timeout=300)


def test_a_store_moves_to_postgres_and_back(mailgate_bin, tmp_path):
    pg = pg_server.PgServer()
    try:
        db = pg.create_database()
        url = pg.url(db)
        srv = Server(binary=mailgate_bin, workdir=tmp_path / "srv", listen=LISTEN)
        on_sqlite = without_store(srv.config.read_text()) + relay_section()
        srv.config.write_text(on_sqlite, encoding="utf-8")
        srv.add_user(ALICE, USERS[ALICE])
        srv.add_user(BOB, USERS[BOB])
        srv.start()
        fill(srv)
        before = state(srv)
        assert [m[0] for m in before[ALICE]["INBOX"][1]] == [1, 2, 3, 5]
        assert [m[0] for m in before[ALICE]["Projects"][1]] == [1]

        # Not while the server runs on the store.
        res = migrate(srv, "--to", url)
        assert res.returncode == 1, res.stdout_text
        assert "server is running" in res.stderr_text, res.stderr_text
        srv.stop_clean()

        res = migrate(srv, "--to", url)
        assert res.returncode == 0, res.stderr_text
        out = res.stdout_text
        # No terminal: one plain line per table, then the result.
        assert re.search(r"^migrate: messages: \d+ row\(s\)$", out, re.M), out
        assert re.search(r"^migrate: queue: 1 row\(s\)$", out, re.M), out
        assert "store check ok" in out, out
        assert "\r" not in res.stderr_text
        # A second copy into the same database: refused without --force.
        res = migrate(srv, "--to", url)
        assert res.returncode == 1 and "not empty" in res.stderr_text \
            and "--force" in res.stderr_text, res.stderr_text

        # The server on PostgreSQL shows the same store.
        srv.config.write_text(on_sqlite + pg_store(url), encoding="utf-8")
        srv.start()
        assert state(srv) == before
        # And goes on from there: new UIDs follow the old ones.
        srv.send("sender@remote.test", [ALICE], make_message(subject="on postgres"))
        on_pg = state(srv)
        assert [m[0] for m in on_pg[ALICE]["INBOX"][1]] == [1, 2, 3, 5, 6]
        # Not while the server runs (here the data directory's lock says
        # so; tests of the store check the database's own connections).
        srv.config.write_text(on_sqlite, encoding="utf-8")
        res = migrate(srv, "--from", url, "--force")
        assert res.returncode == 1 and "running" in res.stderr_text, res.stderr_text
        srv.config.write_text(on_sqlite + pg_store(url), encoding="utf-8")
        srv.stop_clean()

        # Back into SQLite: the old SQLite store is there, so --force, and
        # it is kept aside.
        srv.config.write_text(on_sqlite, encoding="utf-8")
        res = migrate(srv, "--from", url)
        assert res.returncode == 1 and "--force" in res.stderr_text, res.stderr_text
        res = migrate(srv, "--from", url, "--force")
        assert res.returncode == 0, res.stderr_text
        aside = re.search(r"kept in (\S+pre-migrate-\S+) ", res.stdout_text)
        assert aside and (srv.data_dir / aside.group(1).rsplit("/", 1)[1] / "mailgate.db").is_file(), \
            res.stdout_text
        srv.start()
        assert state(srv) == on_pg
        assert srv.cli("store", "check", check=True).stdout_text.startswith("store ok")
        srv.stop_clean()
    finally:
        pg.stop()


def test_the_configured_database_needs_no_url(mailgate_bin, tmp_path):
    """`--to` without a URL takes [store] url (and its TLS and password)."""
    pg = pg_server.PgServer()
    try:
        db = pg.create_database()
        srv = Server(binary=mailgate_bin, workdir=tmp_path / "srv", listen=LISTEN)
        on_sqlite = without_store(srv.config.read_text())
        srv.config.write_text(on_sqlite, encoding="utf-8")
        srv.add_user(ALICE, USERS[ALICE])
        res = migrate(srv, "--to")
        assert res.returncode == 1 and "name the database" in res.stderr_text, res.stderr_text
        srv.config.write_text(on_sqlite + pg_store(pg.url(db)), encoding="utf-8")
        res = migrate(srv, "--to")
        assert res.returncode == 0, res.stderr_text
        assert ALICE in pg.sql("SELECT address FROM accounts", db=db)
        # Neither or both directions: a usage error.
        res = migrate(srv)
        assert res.returncode != 0
        res = migrate(srv, "--to", "--from")
        assert res.returncode != 0
    finally:
        pg.stop()
