"""`mailgate store check --repair [--dry-run]` (issue 19): what `store check`
finds and can be repaired without losing anything a user sees is repaired,
a dry run first says what it would do and changes nothing, and the mail is
still there afterwards.

The damage is made by hand with Python's sqlite3 on a stopped server's
database, the way a crash or a bad manual edit would leave it.
"""

from __future__ import annotations

import os
import sqlite3

from harness import make_message

ALICE = "alice@example.test"


def damage(db):
    c = sqlite3.connect(db)
    try:
        c.execute("PRAGMA foreign_keys = OFF")
        # A body no message refers to, a message whose size disagrees with
        # its body, UIDNEXT and HIGHESTMODSEQ behind the messages.
        c.execute("INSERT INTO blobs (size, structure, data) VALUES (3, '{}', x'414243')")
        (mailbox,) = c.execute(
            "SELECT mb.id FROM mailboxes mb JOIN accounts a ON a.id = mb.account"
            " WHERE a.address = ? AND mb.name = 'INBOX'", (ALICE,)).fetchone()
        c.execute("UPDATE messages SET size = size + 7 WHERE mailbox = ?", (mailbox,))
        c.execute("UPDATE mailboxes SET uid_next = 1, highest_modseq = 1 WHERE id = ?", (mailbox,))
        c.commit()
    finally:
        c.close()


def problem_lines(out):
    """`store check`'s problems, without the warnings about file modes
    (opening the database may make its -wal and -shm files)."""
    return "\n".join(l for l in out.splitlines() if not l.startswith("warning:"))


def test_repair_after_a_dry_run(server):
    for i in range(2):
        server.send("sender@remote.test", [ALICE], make_message(subject=f"keep {i}"))
    before = server.messages(ALICE)
    assert len(before) == 2
    server.stop_clean()
    db = server.data_dir / "mailgate.db"
    damage(db)
    os.chmod(db, 0o644)

    bad = server.cli("store", "check")
    assert bad.returncode == 1, bad.stdout_text
    problems = problem_lines(bad.stdout_text)
    assert "belongs to no mailbox" in problems and "UIDNEXT" in problems, problems

    dry = server.cli("store", "check", "--repair", "--dry-run")
    assert dry.returncode == 0, dry.stderr_text
    out = dry.stdout_text
    for expected in ["would repair: body", "belongs to no mailbox: deleted",
                     "UIDNEXT 1 raised to 3", "HIGHESTMODSEQ 1 raised to",
                     "set to its body's", "mailgate.db is mode 0644",
                     "run again without --dry-run"]:
        assert expected in out, out
    # Nothing changed.
    assert problem_lines(server.cli("store", "check").stdout_text) == problems
    assert os.stat(db).st_mode & 0o777 == 0o644

    fixed = server.cli("store", "check", "--repair")
    assert fixed.returncode == 0, (fixed.stdout_text, fixed.stderr_text)
    assert "repaired: body" in fixed.stdout_text
    assert "store ok" in fixed.stdout_text
    assert os.stat(db).st_mode & 0o777 == 0o600
    again = server.cli("store", "check", "--repair")
    assert "nothing to repair" in again.stdout_text and again.returncode == 0

    # The mail is intact, and new mail gets UIDs above the old ones.
    server.start()
    assert server.messages(ALICE) == before
    server.send("sender@remote.test", [ALICE], make_message(subject="after"))
    assert len(server.messages(ALICE)) == 3


def test_dry_run_needs_repair(server):
    res = server.cli("store", "check", "--dry-run")
    assert res.returncode != 0
    assert "--repair" in res.stderr_text
