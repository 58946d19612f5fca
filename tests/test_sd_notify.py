"""systemd's notify protocol (dist/mailgate.service has Type=notify): with
NOTIFY_SOCKET set, `mailgate serve` sends READY=1 once every listener is
bound, and STOPPING=1 when SIGTERM starts the shutdown. The test plays
systemd: a unix datagram socket, by path and in the abstract namespace.
"""

from __future__ import annotations

import os
import socket
import time

import pytest


def receive(sock: socket.socket, timeout: float) -> list[str]:
    sock.settimeout(timeout)
    data, _ = sock.recvfrom(4096)
    return data.decode().splitlines()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_then_stopping(server_factory, tmp_path, monkeypatch, abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"mailgate-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        srv = server_factory(start=False)
        srv.start()  # returns at `mailgate: ready`
        lines = receive(sock, 10)
        assert "READY=1" in lines, lines
        assert f"MAINPID={srv.proc.pid}" in lines, lines
        # READY=1 comes after the listeners are bound: they accept now.
        with socket.create_connection(srv.smtp_addr, timeout=5) as c:
            assert c.recv(100).startswith(b"220")
        proc = srv.proc
        proc.send_signal(15)
        lines = receive(sock, 10)
        assert "STOPPING=1" in lines, lines
        assert proc.wait(timeout=20) == 0
        srv.proc = None
    finally:
        sock.close()


def test_no_notify_socket_no_message(server_factory, monkeypatch):
    # Without NOTIFY_SOCKET nothing is sent and nothing fails.
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    srv = server_factory()
    assert "NOTIFY_SOCKET" not in srv.stderr_tail()


def test_a_dead_notify_socket_is_logged_not_fatal(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    srv = server_factory()
    with socket.create_connection(srv.smtp_addr, timeout=5) as c:
        assert c.recv(100).startswith(b"220")
    # The ready notification is sent just after the listeners are bound, so
    # the warning may land a moment after the first connection is served.
    deadline = time.monotonic() + 10
    while "cannot notify the service manager" not in srv.stderr_tail(10**6):
        assert time.monotonic() < deadline, srv.stderr_tail()
        time.sleep(0.05)
    assert srv.proc.poll() is None, "the server must keep running"
