"""The plugins' key-value data lives in the store (issue 16), through the
real binary with the greylist example (capabilities kv, clock, config).

- What a hook writes is in the store's `plugin_kv` table before the SMTP
  reply that follows: a server killed (SIGKILL) right after the `451` of
  the first attempt knows the triplet when it comes back, and no file of
  its own is written beside the store.
- The files of an older version (`plugins-kv.json` and its write-ahead
  log `plugins-kv.log`) are moved into the store at the first start and
  renamed `*.imported`: a triplet they hold passes greylisting at once.
- `store check` verifies the new tables, `store backup` holds them and
  `store restore` puts them back.

Before issue 16 the data was a JSON snapshot and a log in the data
directory, outside the database, its backup and `store check`.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import sqlite3
import time
from pathlib import Path

import pytest

from harness import USERS, built_plugins

ALICE = "alice@example.test"
SENDER = "sender@remote.test"
# The greylist plugin's key: the client's /24, the sender, the recipient.
TRIPLET = f"127.0.0|{SENDER}|{ALICE}"
MSG = b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: kv\r\n\r\nHello.\r\n"


@pytest.fixture(scope="module")
def wasm() -> Path:
    return built_plugins("greylist")


@pytest.fixture
def greylisting(server_factory, wasm):
    """A server running the greylist example with `delay` seconds, not
    started yet."""
    def make(delay: int):
        srv = server_factory(start=False)
        pdir = srv.workdir / "plugins"
        pdir.mkdir()
        shutil.copy(wasm / "greylist.wasm", pdir / "greylist.wasm")
        with open(srv.config, "a", encoding="utf-8") as f:
            f.write(f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "greylist"\n'
                    f'grants = ["kv", "clock", "config"]\ntimeout_ms = 3000\n'
                    f"config = {{ delay = {delay} }}\n")
        return srv

    return make


def kv_rows(db_path: Path) -> dict[tuple[str, str], bytes]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {(p, k): bytes(v) for p, k, v in
                db.execute("SELECT plugin, key, value FROM plugin_kv")}
    finally:
        db.close()


def rcpt(srv) -> int:
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.ehlo("mail.remote.test")
        s.mail(SENDER)
        code, _ = s.rcpt(ALICE)
        return code


def test_a_hooks_write_is_in_the_store_before_the_reply(greylisting):
    srv = greylisting(delay=1).start()
    assert rcpt(srv) == 451
    # Killed right after the reply: the triplet was committed before it.
    srv.kill()
    rows = kv_rows(srv.data_dir / "mailgate.db")
    assert list(rows) == [("greylist", TRIPLET)], rows
    assert int(rows[("greylist", TRIPLET)]) > 0, "the first attempt's time"
    left = sorted(p.name for p in srv.data_dir.iterdir() if p.name.startswith("plugins-kv"))
    assert left == [], left
    srv.start()
    time.sleep(1.2)
    # Known from before the crash, and old enough now: accepted.
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.sendmail(SENDER, [ALICE], MSG)
    assert len(srv.messages(ALICE, USERS[ALICE])) == 1
    assert kv_rows(srv.data_dir / "mailgate.db")[("greylist", TRIPLET)] == b"ok"


def test_an_older_versions_files_are_moved_into_the_store(greylisting):
    # A long delay: only an imported "ok" lets the first attempt through.
    srv = greylisting(delay=3600)
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    far = int(time.time()) + 86400
    # The snapshot holds the triplet still waiting; the log, written after
    # it (sequence 2), makes it known, and adds a key a delete then drops.
    (srv.data_dir / "plugins-kv.json").write_text(json.dumps({
        "seq": 1,
        "data": {"greylist": {TRIPLET: {"value": list(b"12345"), "expires": far}}},
    }))
    log = [
        {"s": 1, "p": "greylist", "k": TRIPLET, "e": {"value": list(b"1"), "expires": None}},
        {"s": 2, "p": "greylist", "k": TRIPLET, "e": {"value": list(b"ok"), "expires": far}},
        {"s": 3, "p": "greylist", "k": "dropped", "e": {"value": list(b"x"), "expires": None}},
        {"s": 4, "p": "greylist", "k": "dropped", "e": None},
        {"s": 5, "p": "other", "k": "counter", "e": {"value": list(b"41"), "expires": None}},
    ]
    (srv.data_dir / "plugins-kv.log").write_text(
        "".join(json.dumps(line) + "\n" for line in log) + '{"s":6,"p":"other","k":"cou')
    srv.start()
    for name in ("plugins-kv.json", "plugins-kv.log"):
        assert not (srv.data_dir / name).exists(), name
        assert (srv.data_dir / f"{name}.imported").exists(), name
    assert "moved into the store" in srv.stderr_tail(40000)
    with smtplib.SMTP(*srv.smtp_addr, timeout=30) as s:
        s.sendmail(SENDER, [ALICE], MSG)
    assert len(srv.messages(ALICE, USERS[ALICE])) == 1
    rows = kv_rows(srv.data_dir / "mailgate.db")
    assert rows == {("greylist", TRIPLET): b"ok", ("other", "counter"): b"41"}, rows
    # A restart imports nothing again (the renamed files stay as they are).
    srv.restart()
    assert "moved into the store" not in srv.stderr_tail(2000)
    assert kv_rows(srv.data_dir / "mailgate.db") == rows


def test_store_check_backup_and_restore_cover_the_key_value_data(greylisting, tmp_path):
    srv = greylisting(delay=3600).start()
    assert rcpt(srv) == 451
    r = srv.cli("store", "check")
    assert r.returncode == 0, r.stdout_text + r.stderr_text
    backup = tmp_path / "backup"
    r = srv.cli("store", "backup", str(backup))
    assert r.returncode == 0, r.stdout_text + r.stderr_text
    assert list(kv_rows(backup / "mailgate.db")) == [("greylist", TRIPLET)]
    # The counts `store check` verifies: a wrong one is reported.
    srv.stop_clean()
    db = sqlite3.connect(srv.data_dir / "mailgate.db")
    db.execute("DELETE FROM plugin_kv")
    db.commit()
    db.close()
    r = srv.cli("store", "check")
    assert r.returncode != 0
    assert "plugin key-value data" in r.stdout_text + r.stderr_text
    # The restore brings the triplet back, and the counts agree again.
    r = srv.cli("store", "restore", str(backup))
    assert r.returncode == 0, r.stdout_text + r.stderr_text
    assert list(kv_rows(srv.data_dir / "mailgate.db")) == [("greylist", TRIPLET)]
    r = srv.cli("store", "check")
    assert r.returncode == 0, r.stdout_text + r.stderr_text
