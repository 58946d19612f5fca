"""Private data by default (issue 19): whatever the umask, the data directory
is 0700, the database and its WAL/SHM files 0600, DKIM keys 0600 under
<data_dir>/dkim/; `store check` warns about looser modes and `serve`
tightens them at start."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from harness import Server, make_message


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_fresh_data_dir_is_private(mailgate_bin, tmp_path, umask022):
    srv = Server(binary=mailgate_bin, workdir=tmp_path / "fresh")
    assert not srv.data_dir.exists()
    srv.add_user("alice@example.test", "alice-Secret-1")
    assert mode(srv.data_dir) == 0o700
    assert mode(srv.data_dir / "mailgate.db") == 0o600
    srv.start()
    try:
        msg = make_message("private", "hello\r\n", to_addr="alice@example.test")
        assert srv.send("sender@remote.test", ["alice@example.test"], msg) == {}
        assert mode(srv.data_dir) == 0o700
        db_files = [p for p in srv.data_dir.iterdir() if p.name.startswith("mailgate.db")]
        assert any(p.name.endswith("-wal") for p in db_files), db_files
        for p in db_files:
            assert mode(p) == 0o600, f"{p.name} is {mode(p):o}"
    finally:
        srv.stop_clean()


def test_dkim_generate_writes_under_data_dir(mailgate_bin, tmp_path, umask022):
    srv = Server(binary=mailgate_bin, workdir=tmp_path / "dkim")
    srv.add_user("alice@example.test", "alice-Secret-1")
    res = srv.cli("dkim", "generate", "example.test", "--selector", "s1", "--bits", "1024",
                  check=True)
    key = srv.data_dir / "dkim" / "example.test.s1.pem"
    assert key.is_file(), res.stdout_text
    assert str(key) in res.stdout_text
    assert mode(key) == 0o600
    assert mode(srv.data_dir / "dkim") == 0o700
    assert b"PRIVATE KEY" in key.read_bytes()
    # never overwritten
    again = srv.cli("dkim", "generate", "example.test", "--selector", "s1", "--bits", "1024")
    assert again.returncode != 0
    # a key in the data directory that others may read is reported
    key.chmod(0o644)
    res = srv.cli("store", "check", check=True)
    assert f"warning: {key} is mode 0644" in res.stdout_text, res.stdout_text


def test_store_check_warns_and_serve_tightens(mailgate_bin, tmp_path, umask022):
    srv = Server(binary=mailgate_bin, workdir=tmp_path / "loose")
    srv.add_user("alice@example.test", "alice-Secret-1")
    res = srv.cli("store", "check", check=True)
    assert "warning" not in res.stdout_text, res.stdout_text
    db = srv.data_dir / "mailgate.db"
    db.chmod(0o644)
    srv.data_dir.chmod(0o755)
    res = srv.cli("store", "check", check=True)
    assert f"warning: {db} is mode 0644, should be 0600" in res.stdout_text, res.stdout_text
    assert f"warning: {srv.data_dir} is mode 0755, should be 0700" in res.stdout_text
    # store check itself changes nothing
    assert mode(db) == 0o644
    srv.start()
    try:
        assert mode(db) == 0o600
        assert mode(srv.data_dir) == 0o700
    finally:
        srv.stop_clean()
    log = srv.stderr_path.read_text(errors="replace")
    assert "private data: mode tightened" in log, log[-3000:]
    res = srv.cli("store", "check", check=True)
    assert "warning" not in res.stdout_text, res.stdout_text


def test_dkim_generate_with_out_needs_no_config(mailgate_bin, tmp_path, umask022):
    key = tmp_path / "k.pem"
    res = subprocess.run([str(mailgate_bin), "dkim", "generate", "example.test", "--bits", "1024",
                          "--out", str(key), "--config", str(tmp_path / "not-yet.toml")],
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert mode(key) == 0o600
    # without --out and without any configuration it says what to do
    res = subprocess.run([str(mailgate_bin), "dkim", "generate", "example.test", "--bits", "1024"],
                         capture_output=True, timeout=60, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "MAILGATE_CONFIG"})
    if not os.path.exists("/etc/mailgate/mailgate.toml"):
        assert res.returncode != 0 and b"--out" in res.stderr, res.stderr
        assert not list(tmp_path.glob("example.test*"))
