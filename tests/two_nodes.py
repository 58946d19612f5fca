"""Shared pieces of the two-node tests (docs/scaling.md): two mailgate
nodes on 127.0.0.2 and 127.0.0.3 sharing one database of a private
PostgreSQL server, and a receiving SMTP server (the nodes' smarthost) that
records which node gave it what and can hold its reply to a message.

    pg, nodes = make_nodes(mailgate_bin, tmp_path, relay_port=sink.port, extra=...)
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field

import pg_server
from harness import ScriptedServer, Server, free_port, toml_value
from test_store_backend import without_store

NODE_IPS = ("127.0.0.2", "127.0.0.3")
SINK_IP = "127.0.0.1"


def make_nodes(mailgate_bin, tmp_path, *, sink_port: int, lease="3s", listen=("smtp",),
               fixed_ports=False, users=()) -> tuple[pg_server.PgServer, str, list[Server]]:
    """A private PostgreSQL server and two nodes (not started) on one of its
    databases. Each node relays everything not local to the sink at
    127.0.0.1:`sink_port` from its own address (`[relay] source_ip`), takes
    unauthenticated relaying from loopback (`trusted_networks`), retries
    after a second and claims queued messages for `lease`. With
    `fixed_ports`, each listener keeps its port across restarts. `users`:
    (address, password) made with node A's CLI. The caller stops the
    nodes and the server."""
    pg = pg_server.PgServer()
    try:
        db = pg.create_database()
        url = pg.url(db)
        nodes = []
        for name, ip in zip(("a", "b"), NODE_IPS):
            ports = {proto: (free_port(ip) if fixed_ports else 0) for proto in listen}
            srv = Server(binary=mailgate_bin, workdir=tmp_path / name,
                         listen={proto: f"{ip}:{port}" for proto, port in ports.items()})
            srv.config.write_text(
                without_store(srv.config.read_text())
                + "\n".join([
                    "", "[store]", 'backend = "postgres"', "experimental = true",
                    f"url = {toml_value(url)}",
                    "", "[relay]",
                    f'smarthost = "{SINK_IP}:{sink_port}"',
                    f"source_ip = {toml_value(ip)}",
                    'trusted_networks = ["127.0.0.0/8"]',
                    "mta_sts = false",
                    'connect_timeout = "3s"',
                    'command_timeout = "60s"',
                    "", "[queue]", 'retry = ["1s"]', 'max_age = "1h"', 'poll_interval = "1s"',
                    f"lease = {toml_value(lease)}", ""]),
                encoding="utf-8")
            nodes.append(srv)
        for address, password in users:
            nodes[0].add_user(address, password)
        return pg, db, nodes
    except BaseException:
        pg.stop()
        raise


@dataclass
class Accepted:
    """One message the sink answered `250` to after its data."""

    peer: str  # the sending node's address
    rcpts: list[str]
    data: bytes
    at: float  # time.monotonic() of the 250


@dataclass
class Held:
    """A message whose final reply the sink held, and what became of it."""

    peer: str
    rcpts: list[str]
    since: float
    ended: str = ""  # "accepted" (released), "dropped" (the client went away)
    done: threading.Event = field(default_factory=threading.Event)


class Sink(ScriptedServer):
    """A receiving SMTP server on 127.0.0.1 (a free port): accepts every
    recipient; records each message it accepted (`accepted`, with the
    client's address). While `hold` is set, its reply to the end of a
    message's data is held until `release` is set (then `250`) or the client
    goes away (then nothing is accepted): the slow receiver a node may die
    in front of. Thread-safe reads: `snapshot()`."""

    MAX_HOLD = 60.0  # seconds a held reply waits at most (then 451)

    def __init__(self):
        self.port = free_port(SINK_IP)
        self.lock = threading.Lock()
        self.accepted: list[Accepted] = []
        self.held: list[Held] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        super().__init__(SINK_IP, self.port)

    def snapshot(self) -> tuple[list[Accepted], list[Held]]:
        with self.lock:
            return list(self.accepted), list(self.held)

    def _wait_held(self, conn, h: Held) -> bool:
        """True once released; False if the client closed the connection."""
        deadline = time.monotonic() + self.MAX_HOLD
        while time.monotonic() < deadline:
            if self.release.wait(0.05):
                return True
            readable, _, _ = select.select([conn], [], [], 0)
            if readable:
                try:
                    if conn.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except OSError:
                    return False
        return False

    def _session(self, conn):
        peer = conn.getpeername()[0]
        conn.settimeout(60)
        f = conn.makefile("rb")

        def say(line):
            conn.sendall(line.encode() + b"\r\n")

        try:
            say("220 sink.test ESMTP")
            rcpts: list[str] = []
            while True:
                raw = f.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                upper = line.upper()
                if upper.startswith("EHLO"):
                    say("250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000")
                elif upper.startswith("HELO"):
                    say("250 sink.test")
                elif upper.startswith("MAIL FROM:"):
                    rcpts = []
                    say("250 2.1.0 Ok")
                elif upper.startswith("RCPT TO:"):
                    rcpts.append(line[8:].split()[0].strip("<>"))
                    say("250 2.1.5 Ok")
                elif upper == "DATA":
                    if not rcpts:
                        say("554 5.5.1 No valid recipients")
                        continue
                    say("354 go ahead")
                    data = b""
                    while (chunk := f.readline()) not in (b".\r\n", b""):
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    if self.hold.is_set():
                        h = Held(peer, list(rcpts), time.monotonic())
                        with self.lock:
                            self.held.append(h)
                        released = self._wait_held(conn, h)
                        h.ended = "accepted" if released else "dropped"
                        h.done.set()
                        if not released:
                            return
                    with self.lock:
                        self.accepted.append(Accepted(peer, list(rcpts), data, time.monotonic()))
                    say("250 2.0.0 Ok: queued")
                    rcpts = []
                elif upper == "RSET":
                    rcpts = []
                    say("250 2.0.0 Ok")
                elif upper == "NOOP":
                    say("250 2.0.0 Ok")
                elif upper == "QUIT":
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("502 5.5.2 Command not recognized")
        except OSError:
            return
        finally:
            conn.close()
