#!/usr/bin/env python3
"""Memory per idle IMAP session on a large INBOX, and SELECT/FETCH/SEARCH
times on it (issue 17: one shared view per mailbox).

Starts the real `mailgate serve` (the tests' harness, loopback only), makes
A accounts, fills the first one's INBOX with M messages over IMAP
(MULTIAPPEND, 500 a command; `--fill plain`: one in two `\\Seen`,
consecutive UIDs; `--fill realistic`: about 85 % `\\Seen` at random, 2 %
`\\Flagged`, 3 % `\\Answered`, a few keywords, then 3 % expunged at
random; `--fill both`, the default, runs each), and gives every other
account a copy of that INBOX by SQL into the store while the server runs:
the same rows that delivering each message to A recipients stores (one
body, A entries), without the hours of SMTP that millions of entries would
take. Then:

1. times, on the first account (median of `--repeat`): `SELECT INBOX` when
   no other session has it selected (`select_cold`), `FETCH 1:* (FLAGS)`,
   `SEARCH UNSEEN`;
2. opens one session per account (LOGIN, SELECT INBOX, IDLE), reads the
   server's PSS (`/proc/PID/smaps_rollup`), then the other P-1 sessions of
   each account (P per account, A x P in all), reads it again;
3. times `SELECT INBOX` of the first account while its P sessions have
   it selected (`select_shared`), and checks that one APPEND reaches an
   idling session (`EXISTS`).

It prints (KiB = 1024 bytes, PSS of the server process):

    bench: imap_view messages=M accounts=A per_account=P sessions=N
    bench: imap_view_kib_per_session=...        (PSS growth over all N sessions / N)
    bench: imap_view_session_own_kib=...        (growth from the 2nd to the P-th session of each account / (N - A))
    bench: imap_view_first_session_kib=...      (growth for the 1st session of each account / A: the mailbox's view with one session)
    bench: imap_view_select_cold_ms=... imap_view_select_shared_ms=...
    bench: imap_view_fetch_flags_ms=... imap_view_search_unseen_ms=...

`imap_view_kib_per_session` is the figure of the issue's target (20
sessions per account, at least 1,000 sessions). With `--baseline BIN` the
same is run with a second binary (say, main before a change) after each
fill, and `bench: imap_view_ratio` prints this binary's figures divided by
the baseline's, measured in the same invocation. Run it with the release
build (figures in docs/performance.md):

    cargo build --release -p mailgate
    python3 bench/imap_shared_view.py --bin target/release/mailgate --messages 10000 --accounts 50
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Server  # noqa: E402

PASSWORD = "bench-Secret-1"
DOMAIN = "example.test"


def user(i: int) -> str:
    return f"view{i}@{DOMAIN}"


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise KeyError("Pss")


class Imap:
    """A raw IMAP session (tagged commands, answers read to the tag)."""

    def __init__(self, addr, login: str):
        self.sock = socket.create_connection(addr, timeout=600)
        # Input not yet read as lines is `buf[pos:]`: a line is taken by
        # moving `pos`, not by copying the rest of the buffer (which made
        # reading a 100,000-line FETCH quadratic in what one recv returned,
        # and the client, not the server, the larger part of its time).
        self.buf = bytearray()
        self.pos = 0
        self.n = 0
        assert self.line().startswith(b"* OK")
        self.cmd(f'LOGIN {login} "{PASSWORD}"'.encode())

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            del self.buf[:self.pos]
            self.pos = 0
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def send(self, data: bytes) -> bytes:
        self.n += 1
        tag = b"t%d" % self.n
        self.sock.sendall(tag + b" " + data + b"\r\n")
        return tag

    def cmd(self, data: bytes) -> list[bytes]:
        tag = self.send(data)
        out = []
        while True:
            ln = self.line()
            out.append(ln)
            if ln.startswith(tag + b" "):
                if ln.split(b" ")[1] != b"OK":
                    raise RuntimeError(f"{data[:60]!r}: {ln!r}")
                return out

    def timed(self, data: bytes) -> tuple[float, list[bytes]]:
        t0 = time.perf_counter()
        out = self.cmd(data)
        return (time.perf_counter() - t0) * 1e3, out

    def close(self):
        self.sock.close()


def message(i: int) -> bytes:
    return (f"From: sender{i % 50}@remote.test\r\nTo: {user(0)}\r\n"
            f"Subject: message {i:010d}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{i}@bench.test>\r\n\r\nbody of message {i}\r\n").encode()


def realistic_flags(rng: random.Random) -> list[str]:
    """About 85 % \\Seen, 2 % \\Flagged, 3 % \\Answered, and a few
    keywords (a client's labels, $Forwarded, junk marks), at random."""
    flags = []
    if rng.random() < 0.85:
        flags.append("\\Seen")
    if rng.random() < 0.02:
        flags.append("\\Flagged")
    if rng.random() < 0.03:
        flags.append("\\Answered")
    for kw, p in (("$Forwarded", 0.02), ("$Label1", 0.01), ("$Label2", 0.005),
                  ("NonJunk", 0.05)):
        if rng.random() < p:
            flags.append(kw)
    return flags


def fill(addr, n: int, kind: str) -> int:
    """Appends n messages to the first account's INBOX; returns how many
    remain. `plain`: one in two \\Seen, consecutive UIDs. `realistic`:
    flags at random ([`realistic_flags`]) and about 3 % expunged at random
    (gaps in the UIDs)."""
    rng = random.Random(17)
    c = Imap(addr, user(0))
    batch = 500
    for start in range(0, n, batch):
        parts = []
        for i in range(start, min(n, start + batch)):
            m = message(i)
            if kind == "plain":
                flags = b"(\\Seen) " if i % 2 == 0 else b"() "
            else:
                flags = ("(" + " ".join(realistic_flags(rng)) + ") ").encode()
            parts.append(flags + b"{%d+}\r\n" % len(m) + m)
        c.cmd(b"APPEND INBOX " + b" ".join(parts))
    left = n
    if kind == "realistic":
        gone = sorted(rng.sample(range(1, n + 1), n * 3 // 100))
        c.cmd(b"SELECT INBOX")
        for k in range(0, len(gone), 1000):
            part = ",".join(str(u) for u in gone[k:k + 1000]).encode()
            c.cmd(b"UID STORE " + part + b" +FLAGS.SILENT (\\Deleted)")
        c.cmd(b"EXPUNGE")
        left = n - len(gone)
    c.close()
    return left


def copy_inbox(db: Path, accounts: int):
    """Gives accounts 1..A-1 the rows of account 0's INBOX (same bodies)."""
    con = sqlite3.connect(db, timeout=60)
    con.execute("PRAGMA busy_timeout = 60000")
    src, uid_next, modseq = con.execute(
        "SELECT m.id, m.uid_next, m.highest_modseq FROM mailboxes m JOIN accounts a ON a.id = m.account"
        " WHERE a.address = ? AND m.name = 'INBOX'", (user(0),)).fetchone()
    for i in range(1, accounts):
        (dst,) = con.execute(
            "SELECT m.id FROM mailboxes m JOIN accounts a ON a.id = m.account"
            " WHERE a.address = ? AND m.name = 'INBOX'", (user(i),)).fetchone()
        con.execute("INSERT INTO messages (mailbox, uid, blob, flags, internal_date, size, modseq)"
                    " SELECT ?, uid, blob, flags, internal_date, size, modseq FROM messages"
                    " WHERE mailbox = ?", (dst, src))
        con.execute("UPDATE mailboxes SET uid_next = ?, highest_modseq = ? WHERE id = ?",
                    (uid_next, modseq, dst))
        con.commit()
    con.close()


def idle_session(addr, i: int) -> Imap:
    c = Imap(addr, user(i))
    c.cmd(b"SELECT INBOX")
    c.idle_tag = c.send(b"IDLE")
    assert c.line().startswith(b"+"), "IDLE refused"
    return c


def median_ms(c: Imap, cmd: bytes, repeat: int) -> float:
    return statistics.median(c.timed(cmd)[0] for _ in range(repeat))


def run(a, binary: str, name: str, kind: str) -> dict:
    """One server, one fill: the figures of the module text."""
    sessions = a.accounts * a.per_account
    with tempfile.TemporaryDirectory(prefix="mailgate-view-") as tmp:
        srv = Server(binary=Path(binary), workdir=Path(tmp),
                     listen={"imap": "127.0.0.1:0"},
                     limits={"max_connections": sessions + 100,
                             "max_connections_per_ip": sessions + 100},
                     auth={"max_failures": 1000000, "failure_delay_ms": 0})
        for i in range(a.accounts):
            srv.add_user(user(i), PASSWORD)
        srv.start()
        try:
            addr = srv.ports["imap"]
            pid = srv.proc.pid
            t0 = time.monotonic()
            count = fill(addr, a.messages, kind)
            copy_inbox(srv.data_dir / "mailgate.db", a.accounts)
            print(f"{name}: filled {a.accounts} x {count} messages ({kind}) in "
                  f"{time.monotonic() - t0:.1f} s", file=sys.stderr)

            main_c = Imap(addr, user(0))
            # SELECT with no other session on the mailbox (its view is read
            # from the store, and dropped again by UNSELECT).
            cold = []
            for _ in range(a.repeat):
                ms, lines = main_c.timed(b"SELECT INBOX")
                assert b"* %d EXISTS" % count in lines, lines[:3]
                cold.append(ms)
                main_c.cmd(b"UNSELECT")
            main_c.cmd(b"SELECT INBOX")
            fetch_ms = median_ms(main_c, b"FETCH 1:* (FLAGS)", a.repeat)
            unseen_ms = median_ms(main_c, b"SEARCH UNSEEN", a.repeat)
            main_c.cmd(b"UNSELECT")

            time.sleep(0.5)
            mem0 = pss_kib(pid)
            idle = [idle_session(addr, i) for i in range(a.accounts)]
            time.sleep(0.5)
            mem1 = pss_kib(pid)
            for k in range(1, a.per_account):
                for i in range(a.accounts):
                    idle.append(idle_session(addr, i))
            time.sleep(0.5)
            mem2 = pss_kib(pid)

            main_c.cmd(b"SELECT INBOX")
            shared = []
            for _ in range(a.repeat):
                ms, _ = main_c.timed(b"SELECT INBOX")
                shared.append(ms)
            # One APPEND must reach an idling session of the account.
            m = message(a.messages)
            main_c.cmd(b"APPEND INBOX {%d+}\r\n" % len(m) + m)
            idle[0].sock.settimeout(30)
            t1 = time.monotonic()
            verified = False
            try:
                for _ in range(5):
                    ln = idle[0].line()
                    print(f"{name}: idle session read {ln!r} after "
                          f"{time.monotonic() - t1:.2f} s", file=sys.stderr)
                    if ln.endswith(b" EXISTS"):
                        verified = True
                        break
            except TimeoutError:
                print(f"{name}: no EXISTS within 30 s", file=sys.stderr)
            for c in idle:
                c.close()
            main_c.close()
        finally:
            srv.stop()

    r = {
        "per_session": (mem2 - mem0) / sessions,
        "own": (mem2 - mem1) / max(1, sessions - a.accounts),
        "first": (mem1 - mem0) / a.accounts,
        "cold": statistics.median(cold),
        "shared": statistics.median(shared),
        "fetch": fetch_ms,
        "unseen": unseen_ms,
    }
    print(f"{name}: {a.accounts} accounts x {count} messages in INBOX ({kind}), "
          f"{a.per_account} idle IDLE sessions each ({sessions}); PSS {mem0} -> {mem1} -> {mem2} KiB",
          file=sys.stderr)
    print(f"bench: imap_view name={name} fill={kind} messages={count} accounts={a.accounts} "
          f"per_account={a.per_account} sessions={sessions} idle_verified={verified}")
    print(f"bench: imap_view_kib_per_session={r['per_session']:.1f}")
    print(f"bench: imap_view_session_own_kib={r['own']:.1f}")
    print(f"bench: imap_view_first_session_kib={r['first']:.1f}")
    print(f"bench: imap_view_select_cold_ms={r['cold']:.2f} "
          f"imap_view_select_shared_ms={r['shared']:.2f}")
    print(f"bench: imap_view_fetch_flags_ms={r['fetch']:.2f} "
          f"imap_view_search_unseen_ms={r['unseen']:.2f}", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "mailgate"))
    ap.add_argument("--baseline", help="a second binary (e.g. main before a change), "
                    "run the same way after --bin; ratios are printed")
    ap.add_argument("--fill", choices=["plain", "realistic", "both"], default="both")
    ap.add_argument("--messages", type=int, default=10000, help="messages appended to each INBOX")
    ap.add_argument("--accounts", type=int, default=50)
    ap.add_argument("--per-account", type=int, default=20, help="idle sessions per account")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--name", default="mailgate", help="label of the binary in the output")
    a = ap.parse_args()
    sessions = a.accounts * a.per_account
    need = sessions * 2 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    kinds = ["plain", "realistic"] if a.fill == "both" else [a.fill]
    for kind in kinds:
        r = run(a, a.bin, a.name, kind)
        if a.baseline:
            b = run(a, a.baseline, "baseline", kind)
            print(f"bench: imap_view_ratio fill={kind} "
                  + " ".join(f"{k}={r[k] / b[k]:.2f}" for k in r if b[k] > 0))


if __name__ == "__main__":
    main()
