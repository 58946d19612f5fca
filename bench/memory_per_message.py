#!/usr/bin/env python3
"""Peak memory per large message in flight over SMTP (issue 10).

Starts the real `mailgate serve` (the tests' harness, loopback only), sends
C messages of S bytes at the same time over C SMTP connections, and reads
the server's peak resident set (VmHWM, reset through /proc/PID/clear_refs
just before) against its resident set before. Prints, per concurrent
message, the peak growth and its ratio to the message size:

    bench: memory size=47185920 concurrent=5 size_param=yes peak_growth_per_message=... ratio=...

`ratio` 1.0 means one copy of each message. Run it twice, with and without
the SIZE parameter (`--no-size`: the client does not announce the size, so
the server's buffer grows as the data arrives).

    cargo build -p mailgate
    python3 bench/memory_per_message.py [--bin target/debug/mailgate] [--size 47185920] [--concurrent 5]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Server  # noqa: E402

USER, PASSWORD = "bench@example.test", "bench-Secret-1"


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def message(size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    head = b"Subject: large\r\nFrom: <s@remote.test>\r\n\r\n"
    n = (size - len(head)) // len(line)
    return head + line * n


def reply(f) -> int:
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


def send(addr, msg: bytes, size_param: bool, errors: list):
    try:
        with socket.create_connection(addr, timeout=600) as s:
            f = s.makefile("rb")
            assert reply(f) == 220
            s.sendall(b"EHLO bench.test\r\n")
            assert reply(f) == 250
            size = b" SIZE=%d" % len(msg) if size_param else b""
            s.sendall(b"MAIL FROM:<s@remote.test>" + size + b"\r\n")
            assert reply(f) == 250
            s.sendall(f"RCPT TO:<{USER}>\r\n".encode())
            assert reply(f) == 250
            s.sendall(b"DATA\r\n")
            assert reply(f) == 354
            s.sendall(msg + b".\r\n")  # no line starts with a dot
            code = reply(f)
            assert code == 250, code
            s.sendall(b"QUIT\r\n")
    except Exception as e:  # reported by the main thread
        errors.append(repr(e))


def run(srv: Server, size: int, concurrent: int, size_param: bool) -> float:
    pid = srv.proc.pid
    msg = message(size)
    # Warm up (thread pools, store, allocator arenas) with one small message.
    errors: list = []
    send(srv.smtp_addr, message(100_000), size_param, errors)
    time.sleep(0.5)
    before = status_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM
    threads = [threading.Thread(target=send, args=(srv.smtp_addr, msg, size_param, errors))
               for _ in range(concurrent)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    if errors:
        raise SystemExit(f"bench: failed: {errors}")
    peak = status_kb(pid, "VmHWM")
    per = (peak - before) * 1024 / concurrent
    ratio = per / len(msg)
    print(f"bench: memory size={len(msg)} concurrent={concurrent} "
          f"size_param={'yes' if size_param else 'no'} rss_before_kb={before} "
          f"peak_kb={peak} peak_growth_per_message={per:.0f} ratio={ratio:.2f} "
          f"seconds={took:.1f}", flush=True)
    return ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "target" / "debug" / "mailgate"))
    ap.add_argument("--size", type=int, default=45 * 1024 * 1024)
    ap.add_argument("--concurrent", type=int, default=5)
    ap.add_argument("--no-size", action="store_true", help="do not announce SIZE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailgate-membench-") as tmp:
        binary = Path(tmp) / "mailgate"
        shutil.copy2(args.bin, binary)
        srv = Server(binary=binary, workdir=Path(tmp) / "srv",
                     limits={"max_message_size": 50 * 1024 * 1024})
        srv.add_user(USER, PASSWORD)
        srv.start()
        try:
            run(srv, args.size, args.concurrent, not args.no_size)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
