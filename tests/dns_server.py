"""A tiny authoritative DNS server over UDP for the relay tests.

Answers A, AAAA, MX, TXT and PTR queries from a dict it is given, on a loopback
address, in a background thread.  Enough of RFC 1035 for a stub resolver
(hickory) asking one question per query: no recursion, no compression in
record data, no TCP (answers stay far below 512 bytes).  A name with no
record at all is NXDOMAIN; a name with records of other types is NODATA.

    dns = DnsServer()            # 127.0.0.1, a free port
    dns.add("b.test", "MX", (10, "mx.b.test"))
    dns.add("mx.b.test", "A", "127.0.0.3")
    dns.add("null.test", "MX", (0, "."))      # RFC 7505 null MX
    dns.add("s1._domainkey.a.test", "TXT", "v=DKIM1; k=rsa; p=...")
    dns.servfail("broken.test")               # every query: SERVFAIL
    dns.add_ptr("127.0.0.1", "client.test")   # 1.0.0.127.in-addr.arpa PTR
    ...
    dns.stop()
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading

TYPES = {"A": 1, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
TTL = 1  # seconds: the tests change records, so resolvers must not keep them


def encode_name(name: str) -> bytes:
    name = name.rstrip(".")
    out = b""
    if name:
        for label in name.split("."):
            raw = label.encode("ascii")
            assert 0 < len(raw) < 64, name
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def decode_question(msg: bytes):
    """(name, qtype, end offset) of the first question."""
    pos = 12
    labels = []
    while True:
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        labels.append(msg[pos:pos + n].decode("ascii", "replace"))
        pos += n
    qtype, _qclass = struct.unpack("!HH", msg[pos:pos + 4])
    return ".".join(labels).lower(), qtype, pos + 4


def rdata(rtype: str, value) -> bytes:
    if rtype == "A":
        return ipaddress.IPv4Address(value).packed
    if rtype == "AAAA":
        return ipaddress.IPv6Address(value).packed
    if rtype == "MX":
        pref, exchange = value
        return struct.pack("!H", pref) + encode_name(exchange)
    if rtype == "PTR":
        return encode_name(value)
    if rtype == "TXT":
        raw = value.encode("ascii")
        return b"".join(bytes([len(c)]) + c for c in (raw[i:i + 255] for i in range(0, len(raw), 255)))
    raise ValueError(rtype)


class DnsServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.records: dict[str, list[tuple[str, object]]] = {}
        self.failing: set[str] = set()
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.addr = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def nameserver(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"

    def add(self, name: str, rtype: str, value) -> None:
        self.records.setdefault(name.lower().rstrip("."), []).append((rtype, value))

    def add_ptr(self, ip: str, name: str) -> None:
        """A PTR record for `ip` under in-addr.arpa or ip6.arpa."""
        self.add(ipaddress.ip_address(ip).reverse_pointer, "PTR", name)

    def servfail(self, name: str) -> None:
        """Answer every query for `name` with SERVFAIL (a broken zone)."""
        self.failing.add(name.lower().rstrip("."))

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        qid, flags = struct.unpack("!HH", query[:4])
        try:
            name, qtype, end = decode_question(query)
        except (IndexError, struct.error):
            return None
        self.queries.append((name, qtype))
        rrs = self.records.get(name)
        rcode = 0 if rrs is not None else 3  # NXDOMAIN
        if name in self.failing:
            rrs, rcode = None, 2  # SERVFAIL
        answers = b""
        count = 0
        for rtype, value in rrs or []:
            if TYPES[rtype] != qtype:
                continue
            data = rdata(rtype, value)
            # 0xC00C: a pointer to the question's name at offset 12.
            answers += struct.pack("!HHHIH", 0xC00C, qtype, 1, TTL, len(data)) + data
            count += 1
        # QR, AA, RD copied, RA; the rcode.
        rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        header = struct.pack("!HHHHHH", qid, rflags, 1, count, 0, 0)
        return header + query[12:end] + answers

    def _serve(self):
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.answer(query)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
