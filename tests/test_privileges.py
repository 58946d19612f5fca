"""The top-level `user` and `group` keys (tests run as root): `serve` binds
its listeners, then drops to the configured user and group in every thread
(/proc/PID/task/*/status), and still serves mail; a data directory owned by
someone else stops the start with a clear error; root on a privileged port
without `user` is refused with a message saying how to set it; a non-root
start cannot switch to another user.

The unprivileged account is `nobody`/`nogroup` (65534), present on every
Debian system. The data directories live under a fresh directory outside
pytest's tmp_path (which only root may enter).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import Server

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")


@pytest.fixture
def open_dir():
    """A directory any user may enter (mode 755), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="mailgate-priv-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make_server(mailgate_bin, template_data, workdir: Path, top: str, listen=None) -> Server:
    srv = Server(binary=mailgate_bin, workdir=workdir, listen=listen)
    shutil.copytree(template_data, srv.data_dir)
    text = srv.config.read_text()
    srv.config.write_text(top + text)
    return srv


def chown_tree(path: Path, uid: int, gid: int):
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(root, n), uid, gid, follow_symlinks=False)


def ids_of_every_thread(pid: int) -> set[tuple[str, str, str]]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        out.add((" ".join(fields["Uid"].split()), " ".join(fields["Gid"].split()),
                 " ".join(fields["Groups"].split())))
    return out


def test_drops_to_user_and_group_in_every_thread(mailgate_bin, template_data, open_dir):
    srv = make_server(mailgate_bin, template_data, open_dir / "srv",
                      'user = "nobody"\ngroup = "nogroup"\n')
    chown_tree(srv.data_dir, NOBODY, NOBODY)
    try:
        srv.start()
        ids = ids_of_every_thread(srv.proc.pid)
        assert ids == {(f"{NOBODY} {NOBODY} {NOBODY} {NOBODY}",
                        f"{NOBODY} {NOBODY} {NOBODY} {NOBODY}", f"{NOBODY}")}, ids
        assert len(list(Path(f"/proc/{srv.proc.pid}/task").iterdir())) > 1
        # It still serves: a message in, read back, the store written as nobody.
        srv.send("sender@remote.test", ["alice@example.test"],
                 b"Subject: dropped\r\n\r\nhello\r\n")
        assert any(b"Subject: dropped" in m for m in srv.messages("alice@example.test"))
        assert "running as an unprivileged user" in srv.stderr_tail()
        # Threads started later (blocking pool, sessions) are nobody's too.
        assert ids_of_every_thread(srv.proc.pid) == ids
        srv.stop_clean()
        for p in srv.data_dir.iterdir():
            assert p.stat().st_uid == NOBODY, f"{p} is owned by uid {p.stat().st_uid}"
    finally:
        srv.stop()


def test_data_dir_owned_by_someone_else_is_a_clear_error(mailgate_bin, template_data, open_dir):
    srv = make_server(mailgate_bin, template_data, open_dir / "srv", 'user = "nobody"\n')
    # Left as root's: the copy above.
    with pytest.raises(AssertionError) as e:
        srv.start()
    msg = str(e.value)
    assert "belongs to uid 0" in msg and "runs as uid 65534" in msg, msg
    assert f"chown -R {NOBODY}:{NOBODY} {srv.data_dir}" in msg, msg
    # One file left behind by a run as root is named too.
    chown_tree(srv.data_dir, NOBODY, NOBODY)
    stray = srv.data_dir / "left-by-root"
    stray.write_text("x")
    with pytest.raises(AssertionError) as e:
        srv.start()
    assert "left-by-root" in str(e.value), str(e.value)


def privileged_free_port() -> int:
    for port in range(1000, 600, -7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024 on 127.0.0.1")


def test_root_on_a_privileged_port_without_user_is_refused(mailgate_bin, template_data, open_dir):
    port = privileged_free_port()
    srv = make_server(mailgate_bin, template_data, open_dir / "srv", "",
                      listen={"smtp": f"127.0.0.1:{port}"})
    with pytest.raises(AssertionError) as e:
        srv.start()
    msg = str(e.value)
    assert f"listens on port {port}" in msg and 'user = "mailgate"' in msg, msg
    # `user = "root"` keeps root on purpose, with a warning.
    text = srv.config.read_text()
    srv.config.write_text('user = "root"\n' + text)
    srv.start()
    try:
        assert "running as root, as `user` says" in srv.stderr_tail()
    finally:
        srv.stop_clean()


def test_root_on_high_ports_without_user_warns(server_factory):
    srv = server_factory()
    assert "running as root: set `user`" in srv.stderr_tail()


def test_a_non_root_start_cannot_switch_user(mailgate_bin, template_data, open_dir):
    srv = make_server(mailgate_bin, template_data, open_dir / "srv", 'user = "root"\n')
    chown_tree(open_dir, NOBODY, NOBODY)
    binary = open_dir / "mailgate"
    shutil.copy2(mailgate_bin, binary)
    os.chmod(binary, 0o755)
    r = subprocess.run([str(binary), "serve", "--config", str(srv.config)],
                       user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert 'user = "root" (uid 0)' in err and "cannot switch users" in err, err
    # As the configured user itself, it just runs.
    text = srv.config.read_text().replace('user = "root"', 'user = "nobody"')
    srv.config.write_text(text)
    proc = subprocess.Popen([str(binary), "serve", "--config", str(srv.config)],
                            user=NOBODY, group=NOBODY, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        for raw in proc.stdout:
            if raw.strip() == b"mailgate: ready":
                break
        else:
            raise AssertionError(proc.stderr.read().decode())
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
