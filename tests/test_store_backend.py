"""`[store]`: which database keeps the mail (docs/configuration.md).

The PostgreSQL backend is refused without `experimental = true` while it is
incomplete; its URL's password never shows; the SQLite-only commands say so.
With PostgreSQL installed, a real server runs on a private PostgreSQL server
(tests/pg_server.py): mail goes in by SMTP and out by POP3, `/healthz/ready`
asks the database, and when the database goes away the server answers with
temporary errors instead of acknowledging what it could not store.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import tomllib
import urllib.error
import urllib.request

import pytest

import pg_server
from harness import CLI_TIMEOUT, NET_TIMEOUT, USERS, Server, make_message, write_config

ALICE = "alice@example.test"


def run(mailgate_bin, *args):
    env = {k: v for k, v in os.environ.items() if k != "MAILGATE_CONFIG"}
    return subprocess.run([str(mailgate_bin), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, env=env)


def without_store(text: str) -> str:
    """The configuration text without its `[store]` table (the harness adds
    one when the suite runs on PostgreSQL)."""
    return re.sub(r"\n\[store\]\n(?:[^\[\n][^\n]*\n)*", "\n", text)


def config_with_store(tmp_path, store: str, listen=None):
    path = tmp_path / "mailgate.toml"
    write_config(path, tmp_path / "data", listen=listen)
    path.write_text(without_store(path.read_text()) + "\n[store]\n" + store, encoding="utf-8")
    return path


def test_postgres_is_refused_without_the_development_switch(mailgate_bin, tmp_path):
    path = config_with_store(
        tmp_path, 'backend = "postgres"\nurl = "postgres://mailgate@127.0.0.1:1/mail"\n')
    res = run(mailgate_bin, "config", "check", str(path))
    assert res.returncode == 1, res.stdout
    assert "not complete yet" in res.stderr and "experimental = true" in res.stderr, res.stderr
    # `serve` reads the file the same way.
    res = run(mailgate_bin, "serve", "--config", str(path))
    assert res.returncode != 0 and "not complete yet" in res.stderr, res.stderr


def test_postgres_needs_a_url_and_a_readable_password_file(mailgate_bin, tmp_path):
    path = config_with_store(tmp_path, 'backend = "postgres"\nexperimental = true\n')
    res = run(mailgate_bin, "config", "check", str(path))
    assert res.returncode == 1 and "needs store.url" in res.stderr, res.stderr
    path = config_with_store(
        tmp_path, 'backend = "postgres"\nexperimental = true\n'
                  'url = "postgres://mailgate@127.0.0.1:1/mail"\n'
                  f'password_file = "{tmp_path}/missing"\n')
    res = run(mailgate_bin, "config", "check", str(path))
    assert res.returncode == 1 and "cannot be read" in res.stderr, res.stderr
    path = config_with_store(tmp_path, 'url = "postgres://mailgate@127.0.0.1:1/mail"\n')
    res = run(mailgate_bin, "config", "check", str(path))
    assert res.returncode == 1 and 'for backend = "postgres"' in res.stderr, res.stderr


def test_the_url_password_is_hidden(mailgate_bin, tmp_path):
    path = config_with_store(
        tmp_path, 'backend = "postgres"\nexperimental = true\npool_size = 4\n'
                  'url = "postgres://mail:Db-Secret-77@db.example.test:5433/mail"\n')
    for args in (["config", "check", str(path)],
                 ["config", "check", "--non-default", str(path)]):
        res = run(mailgate_bin, *args)
        assert res.returncode == 0, res.stderr
        assert "Db-Secret-77" not in res.stdout + res.stderr
        store = tomllib.loads(res.stdout)["store"]
        assert store["url"] == "postgres://mail:<hidden>@db.example.test:5433/mail"
        assert store["backend"] == "postgres" and store["pool_size"] == 4


def test_the_default_is_sqlite(mailgate_bin, tmp_path):
    path = tmp_path / "m.toml"
    write_config(path, tmp_path / "data")
    path.write_text(without_store(path.read_text()), encoding="utf-8")
    res = run(mailgate_bin, "config", "check", str(path))
    assert res.returncode == 0, res.stderr
    assert tomllib.loads(res.stdout)["store"]["backend"] == "sqlite"


def test_backup_and_restore_are_sqlite_only(mailgate_bin, tmp_path):
    path = config_with_store(
        tmp_path, 'backend = "postgres"\nexperimental = true\n'
                  'url = "postgres://mailgate@127.0.0.1:1/mail"\n')
    for args in (["store", "backup", str(tmp_path / "b")],
                 ["store", "restore", str(tmp_path / "b")]):
        res = run(mailgate_bin, *args, "--config", str(path))
        assert res.returncode == 1, res.stdout
        assert "pg_dump" in res.stderr and "not supported" in res.stderr, res.stderr
        assert not (tmp_path / "b").exists()


def get(srv, path):
    host, port = srv.ports["metrics"]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=NET_TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.skipif(not pg_server.available(), reason="PostgreSQL is not installed")
def test_a_server_on_postgres(mailgate_bin, tmp_path):
    pg = pg_server.PgServer()
    try:
        db = pg.create_database()
        srv = Server(binary=mailgate_bin, workdir=tmp_path / "srv",
                     listen={"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0",
                             "metrics": "127.0.0.1:0"})
        srv.config.write_text(
            without_store(srv.config.read_text())
            + f'\n[store]\nbackend = "postgres"\nexperimental = true\nurl = "{pg.url(db)}"\n',
            encoding="utf-8")
        srv.add_user(ALICE, USERS[ALICE])
        assert srv.cli("store", "check", check=True).stdout_text.strip() == \
            f"store ok: postgres://127.0.0.1:{pg.port}/{db}"
        # The accounts are in the database, not in a SQLite file.
        assert ALICE in pg.sql("SELECT address FROM accounts", db=db)
        assert not (srv.data_dir / "mailgate.db").exists()
        srv.start()
        try:
            assert get(srv, "/healthz/ready") == (200, "ready\n")
            srv.send("sender@remote.test", [ALICE], make_message(subject="on postgres"))
            msgs = srv.messages(ALICE)
            assert len(msgs) == 1 and b"Subject: on postgres" in msgs[0]
            # The database goes away: not ready, and a message is refused
            # with a temporary error rather than acknowledged.
            pg.stop()
            status, body = get(srv, "/healthz/ready")
            assert status == 503 and "store" in body, body
            with pytest.raises(smtplib.SMTPException) as e:
                srv.send("sender@remote.test", [ALICE], make_message(subject="lost?"))
            text = str(e.value)
            assert "451" in text or "421" in text or "450" in text, text
        finally:
            srv.stop()
    finally:
        pg.stop()
