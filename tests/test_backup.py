"""Online backup (issue 14 point 5): `mailgate store backup PATH` while a
client is sending, and `mailgate store restore PATH`.

- A backup taken while messages keep arriving restores to a store that
  passes `store check` and holds every message acknowledged (250) before
  the backup began; a message acknowledged after the backup ended is not
  in it (the restore really replaced the store).
- Restore is refused while the server runs, and changes nothing then.
- The replaced store is kept aside in `<data_dir>/pre-restore-*`.
- DKIM keys in the data directory are part of the backup.
- The progress line appears on a terminal only.
"""

from __future__ import annotations

import os
import pty
import subprocess
import threading
import time

from harness import make_message

ALICE = "alice@example.test"


class Sender(threading.Thread):
    """Sends numbered messages to alice over one SMTP session after
    another, recording when each one got its 250."""

    def __init__(self, srv, body_size=16000):
        super().__init__(daemon=True)
        self.srv = srv
        self.body = ("x" * 76 + "\r\n") * (body_size // 78)
        self.acked: list[tuple[int, float]] = []  # (n, monotonic time of the 250)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.n = 0

    def run(self):
        try:
            while not self.stop.is_set():
                with self.srv.smtp() as s:
                    s.ehlo()
                    for _ in range(20):
                        if self.stop.is_set():
                            break
                        n = self.n
                        self.n += 1
                        msg = make_message(subject=f"load {n}", body=self.body)
                        assert s.sendmail("sender@remote.test", [ALICE], msg) == {}
                        self.acked.append((n, time.monotonic()))
        except BaseException as e:  # reported by the test
            self.error = e


def subjects(srv) -> set[str]:
    """The Subject of every message in alice's INBOX (POP3 TOP)."""
    p = srv.pop3_login(ALICE)
    try:
        count = p.stat()[0]
        out = set()
        for i in range(1, count + 1):
            _, lines, _ = p.top(i, 0)
            for line in lines:
                if line.lower().startswith(b"subject: "):
                    out.add(line[9:].decode())
        return out
    finally:
        p.quit()


def test_backup_under_load_restores_every_acknowledged_message(server_factory, tmp_path):
    srv = server_factory()
    dkim = srv.data_dir / "dkim"
    dkim.mkdir(mode=0o700)
    (dkim / "example.test.mail.pem").write_text("not a real key\n")
    (dkim / "example.test.mail.pem").chmod(0o600)

    sender = Sender(srv)
    sender.start()
    # Enough mail (about 6 MB) that the copy takes several steps of
    # PAGES_PER_STEP (4 MiB).
    deadline = time.monotonic() + 60
    while len(sender.acked) < 400 and time.monotonic() < deadline and sender.error is None:
        time.sleep(0.05)
    assert sender.error is None, sender.error

    backup = tmp_path / "backup-1"
    began = time.monotonic()
    r = srv.cli("store", "backup", str(backup))
    ended = time.monotonic()
    assert r.returncode == 0, (r.stdout_text, r.stderr_text)
    assert "backup ok" in r.stdout_text
    # Not a terminal: no progress line.
    assert "%" not in r.stderr_text, r.stderr_text
    assert sender.error is None, sender.error
    before = {n for n, t in sender.acked if t < began}
    # Mail keeps flowing after the backup: the store moves on without it.
    deadline = time.monotonic() + 30
    while not any(t > ended for _, t in sender.acked) and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.stop.set()
    sender.join(timeout=60)
    assert sender.error is None, sender.error
    after = [n for n, t in sender.acked if t > ended]
    assert after, "no message was acknowledged after the backup"
    assert (backup / "mailgate.db").is_file()
    assert (backup / "dkim" / "example.test.mail.pem").read_text() == "not a real key\n"
    for runtime in ("serve.pid", "serve.lock", "queue.sock", "mailgate.db-wal"):
        assert not (backup / runtime).exists(), runtime

    # Restore is refused while the server runs, and changes nothing.
    r = srv.cli("store", "restore", str(backup))
    assert r.returncode != 0
    assert "running" in r.stderr_text, r.stderr_text
    assert not list(srv.data_dir.glob("pre-restore-*"))
    count_live = len(subjects(srv))
    assert count_live == len(sender.acked)

    srv.stop_clean()
    (dkim / "example.test.mail.pem").write_text("changed after the backup\n")
    r = srv.cli("store", "restore", str(backup))
    assert r.returncode == 0, (r.stdout_text, r.stderr_text)
    assert "store ok" in r.stdout_text, r.stdout_text
    aside = list(srv.data_dir.glob("pre-restore-*"))
    assert len(aside) == 1 and (aside[0] / "mailgate.db").is_file(), aside
    assert (dkim / "example.test.mail.pem").read_text() == "not a real key\n"
    r = srv.cli("store", "check")
    assert r.returncode == 0, (r.stdout_text, r.stderr_text)

    srv.start()
    restored = subjects(srv)
    missing = sorted(n for n in before if f"load {n}" not in restored)
    assert not missing, f"acknowledged before the backup began but not restored: {missing[:20]}"
    assert f"load {after[-1]}" not in restored
    assert len(restored) < count_live


def test_backup_draws_progress_on_a_terminal_and_refuses_a_full_directory(server_factory, tmp_path):
    srv = server_factory()
    srv.send("sender@remote.test", [ALICE], make_message(subject="one"))
    dest = tmp_path / "b"
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [str(srv.binary), "store", "backup", str(dest), "--config", str(srv.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stdout
    assert b"backup: 100%" in shown, shown
    # The same directory again: refused, the first backup untouched.
    r = srv.cli("store", "backup", str(dest))
    assert r.returncode != 0 and "new or empty directory" in r.stderr_text, r.stderr_text
    assert (dest / "mailgate.db").is_file()
    # A damaged backup is refused by restore, and nothing changes.
    srv.stop_clean()
    (dest / "mailgate.db").write_bytes(b"garbage" * 100)
    r = srv.cli("store", "restore", str(dest))
    assert r.returncode != 0 and "damaged" in r.stderr_text, r.stderr_text
    assert not list(srv.data_dir.glob("pre-restore-*"))
    assert srv.cli("store", "check").returncode == 0
