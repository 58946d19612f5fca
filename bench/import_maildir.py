#!/usr/bin/env python3
"""How fast `mailgate import maildir` moves a Dovecot Maildir in.

Makes a Maildir++ tree the way Dovecot leaves one (INBOX and two folders,
`dovecot-uidlist` with UIDVALIDITY, UIDs with gaps, `dovecot-keywords`,
flags in the file names, modification times as INTERNALDATE), N messages
of SIZE bytes (LF line ends, as Dovecot writes them), then times
`mailgate import maildir` into a fresh data directory, with or without a
running server (`--with-server`: the import then shares the store with
`mailgate serve`, as in a live migration). Prints the rate and a
`bench: key=value` line.

    cargo build --release -p mailgate
    python3 bench/import_maildir.py [--messages 20000] [--size 10240] [--bin target/release/mailgate]

The issue's target is at least 2,000 messages per second for 10 KB
messages. Each run is one process on an otherwise idle machine; the
numbers depend on the disk's fsync latency (the store commits a batch of
500 messages with one fsync).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["INBOX", ".Work", ".Work.Projects"]


def make_message(n: int, size: int, rng: random.Random) -> bytes:
    head = (f"Return-Path: <sender{n}@old.test>\n"
            f"From: Sender {n} <sender{n}@old.test>\n"
            f"To: bench@bench.test\n"
            f"Subject: benchmark message {n}\n"
            f"Message-ID: <bench-{n}@old.test>\n"
            f"Date: Tue, 14 Nov 2023 22:13:20 +0000\n"
            f"MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=us-ascii\n\n").encode()
    line = b"".join(bytes([rng.randrange(97, 123)]) for _ in range(72)) + b"\n"
    body = (line * (max(size - len(head), 0) // len(line) + 1))[: max(size - len(head), 0)]
    return head + body


def make_maildir(root: Path, messages: int, size: int):
    rng = random.Random(1)
    per = [messages - 2 * (messages // 5), messages // 5, messages // 5]
    n = 0
    for folder, count in zip(FOLDERS, per):
        d = root if folder == "INBOX" else root / folder
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "dovecot-keywords").write_text("0 $Forwarded\n1 Work\n")
        lines = []
        uid = 0
        for i in range(count):
            n += 1
            uid += 1 + (1 if i % 10 == 9 else 0)  # a gap every ten messages
            t = 1_600_000_000 + n * 60
            base = f"{t}.M{n}P4242.oldhost,S={size}"
            flags = "S" if i % 3 else "RSa" if i % 2 else "Fb"
            f = d / "cur" / f"{base}:2,{flags}"
            f.write_bytes(make_message(n, size, rng))
            os.utime(f, (t, t))
            lines.append(f"{uid} :{base}")
        (d / "dovecot-uidlist").write_text(
            f"3 V{1_700_000_000 + len(lines)} N{uid + 5} G0123456789abcdef\n" + "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "mailgate"))
    ap.add_argument("--with-server", action="store_true",
                    help="run `mailgate serve` on the same store during the import")
    args = ap.parse_args()
    binary = Path(args.bin)
    if not binary.is_file():
        print(f"import_maildir: {binary} not found (cargo build --release -p mailgate)",
              file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mailgate-import-bench-"))
    server = None
    try:
        bin_copy = tmp / "mailgate"
        shutil.copy2(binary, bin_copy)
        maildir = tmp / "Maildir"
        t0 = time.monotonic()
        make_maildir(maildir, args.messages, args.size)
        print(f"# made {args.messages} messages of {args.size} bytes in "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        config = tmp / "mailgate.toml"
        config.write_text(
            f'hostname = "bench.test"\ndata_dir = "{tmp / "data"}"\ndomains = ["bench.test"]\n'
            '\n[listen]\nsmtp = "127.0.0.1:0"\npop3 = "127.0.0.1:0"\nimap = "127.0.0.1:0"\n'
            '\n[inbound]\nverify = false\n')
        env = dict(os.environ, RUST_LOG="warn")
        subprocess.run([str(bin_copy), "--config", str(config), "user", "add", "bench@bench.test",
                        "--password-stdin"], input=b"bench-password\n", check=True, env=env,
                       capture_output=True)
        if args.with_server:
            server = subprocess.Popen([str(bin_copy), "--config", str(config), "serve"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            for line in server.stdout:
                if line.strip() == b"mailgate: ready":
                    break
        # Cold page cache would measure the disk, not mailgate: read once.
        for p in maildir.rglob("*"):
            if p.is_file():
                p.read_bytes()
        t0 = time.monotonic()
        res = subprocess.run([str(bin_copy), "--config", str(config), "import", "maildir",
                              "bench@bench.test", str(maildir)], capture_output=True, env=env)
        secs = time.monotonic() - t0
        out = res.stdout.decode(errors="replace")
        if res.returncode != 0:
            print(out, res.stderr.decode(errors="replace"), file=sys.stderr)
            return 1
        print(out, end="")
        rate = args.messages / secs
        print(f"import maildir: {args.messages} messages of {args.size} bytes in {secs:.2f} s:"
              f" {rate:.0f} messages/s (target >= 2000){' with the server running' if server else ''}")
        print(f"bench: import_maildir_msgs={args.messages} size={args.size} seconds={secs:.3f}"
              f" msgs_per_s={rate:.0f} with_server={int(server is not None)}")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
