"""IMAP against the real binary with Python's imaplib (and raw sockets where
imaplib cannot send the bytes a test needs): folders, FETCH of tricky
messages checked against hand-written answers, flags, SEARCH, COPY/MOVE
with UIDPLUS, APPEND, CONDSTORE/QRESYNC, IDLE woken by SMTP delivery, two
sessions on one mailbox, POP3 deletions seen by IMAP, IMAPS and STARTTLS,
LOGINDISABLED, the STARTTLS injection probe, and hostile input.

Mail arrives through SMTP (smtplib). The harness has no `[tls]` support, so
`imap_server` below makes a certificate with `openssl` and appends the
table itself (like test_tls.py)."""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import subprocess
import time

import pytest

from harness import HOSTNAME, USERS, make_message

ALICE = "alice@example.test"
ALICE_PW = USERS[ALICE]
BOB = "bob@example.test"
LISTEN = {k: "127.0.0.1:0" for k in ("smtp", "pop3", "imap", "imaps")}
STRICT = {"allow_plaintext": False, "trust_loopback": False}


# ------------------------------------------------------------------ helpers
def make_cert(directory):
    cert, key = directory / "imap-cert.pem", directory / "imap-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def imap_server(server_factory, tmp_path, auth=None, limits=None):
    srv = server_factory(listen=dict(LISTEN), auth=auth, limits=limits, start=False)
    srv.cert, srv.key = make_cert(tmp_path)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[tls]\ncert = "{srv.cert}"\nkey = "{srv.key}"\n')
    return srv.start()


@pytest.fixture
def srv(server_factory, tmp_path):
    return imap_server(server_factory, tmp_path)


def tls_context(srv, alpn=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.cert))
    ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def imap(srv, user=ALICE, login=True) -> imaplib.IMAP4:
    m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
    if login:
        m.login(user, USERS[user])
    return m


def imaps(srv, user=ALICE, alpn=None) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(*srv.ports["imaps"], ssl_context=tls_context(srv, alpn), timeout=30)
    m.login(user, USERS[user])
    return m


def ok(result):
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


def deliver(srv, msg: bytes, to=ALICE, eight_bit=False):
    srv.send("sender@remote.test", [to], msg,
             mail_options=["BODY=8BITMIME"] if eight_bit else ())


def code(m: imaplib.IMAP4, name: str):
    """The last value of a response code (APPENDUID, COPYUID, ...)."""
    return m.untagged_responses.get(name, [None])[-1]


class Raw:
    """A raw IMAP client: send bytes, read lines with their literals."""

    def __init__(self, addr, sock=None):
        self.sock = sock or socket.create_connection(addr, timeout=30)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        m = re.search(rb"\{(\d+)\}$", line)
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self.buf += self.sock.recv(65536)
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            line += self.line()
        return line

    def until(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def cmd(self, tag: bytes, rest: bytes) -> list[bytes]:
        self.send(tag + b" " + rest + b"\r\n")
        return self.until(tag)

    def close(self):
        self.sock.close()


def raw_login(srv) -> Raw:
    r = Raw(srv.ports["imap"])
    assert r.line().startswith(b"* OK")
    assert r.cmd(b"l", f'LOGIN {ALICE} "{ALICE_PW}"'.encode())[-1].startswith(b"l OK")
    return r


# ---------------------------------------------------------------- folders
def mailboxes(m) -> list[str]:
    return sorted(line.decode().rsplit(" ", 1)[-1].strip('"') for line in ok(m.list()))


def test_folder_life_cycle(srv):
    m = imap(srv)
    # A new account has INBOX and the special-use folders.
    lines = ok(m.list())
    base = mailboxes(m)
    assert "INBOX" in base and any(b"\\Sent" in x for x in lines), lines
    ok(m.create("Work"))
    ok(m.create("Work/Reports"))
    ok(m.create("Projects"))
    typ, data = m.create("Work")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0], (typ, data)
    assert mailboxes(m) == sorted(base + ["Projects", "Work", "Work/Reports"])
    # RENAME moves the children along.
    ok(m.rename("Work", "Old"))
    assert mailboxes(m) == sorted(base + ["Old", "Old/Reports", "Projects"])
    assert m.rename("Nowhere", "Else")[0] == "NO"
    ok(m.subscribe("Old"))
    assert any(x.endswith((b" Old", b'"Old"')) for x in ok(m.lsub())), ok(m.lsub())
    ok(m.unsubscribe("Old"))
    assert not any(x.endswith((b" Old", b'"Old"')) for x in ok(m.lsub()) if x)
    deliver(srv, make_message("for status"))
    status = ok(m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)"))[0].decode()
    assert re.search(r"MESSAGES 1\b", status) and re.search(r"UNSEEN 1\b", status), status
    assert re.search(r"UIDNEXT 2\b", status), status
    ok(m.delete("Old/Reports"))
    ok(m.delete("Old"))
    ok(m.delete("Projects"))
    assert m.delete("INBOX")[0] == "NO"
    assert m.status("Nowhere", "(MESSAGES)")[0] == "NO"
    assert mailboxes(m) == base
    m.logout()


# ------------------------------------------------------------------ FETCH
NESTED = (
    "From: =?UTF-8?Q?J=C3=BCrgen?= <j@remote.test>\r\n"
    "To: alice@example.test\r\n"
    "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    "Message-ID: <nested@remote.test>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="outer"\r\n'
    "\r\n"
    "--outer\r\n"
    'Content-Type: multipart/alternative; boundary="inner"\r\n'
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Grüße\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>hi</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    'Content-Type: application/pdf; name="a.pdf"\r\n'
    'Content-Disposition: attachment; filename="a.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQK\r\n"
    "--outer--\r\n"
).encode("utf-8")

# Hand-checked against RFC 9051 §7.5.2: the strings exactly as written
# (encoded words stay encoded; types, subtypes and parameters keep their
# case, the default encoding is "7BIT"), Sender and Reply-To default to
# From, the body sizes count the octets before the CRLF that precedes a
# boundary ("Grüße" is 7 octets in UTF-8, one line).
NESTED_ENVELOPE = (
    b'("Mon, 7 Feb 1994 21:52:25 -0800" "=?UTF-8?B?R3LDvMOfZQ==?="'
    b' (("=?UTF-8?Q?J=C3=BCrgen?=" NIL "j" "remote.test"))'
    b' (("=?UTF-8?Q?J=C3=BCrgen?=" NIL "j" "remote.test"))'
    b' (("=?UTF-8?Q?J=C3=BCrgen?=" NIL "j" "remote.test"))'
    b' ((NIL NIL "alice" "example.test")) NIL NIL NIL "<nested@remote.test>")'
)
NESTED_BODY = (
    b'((("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 7 1)'
    b'("text" "html" ("charset" "utf-8") NIL NIL "7BIT" 9 1) "alternative")'
    b'("application" "pdf" ("name" "a.pdf") NIL NIL "base64" 12) "mixed")'
)


def fetch_raw(r: Raw, what: bytes) -> bytes:
    lines = r.cmd(b"f", what)
    assert lines[-1].startswith(b"f OK"), lines
    return b"\r\n".join(lines[:-1])


def test_fetch_tricky_messages(srv):
    deliver(srv, NESTED, eight_bit=True)
    r = raw_login(srv)
    r.cmd(b"s", b"SELECT INBOX")
    env = fetch_raw(r, b"FETCH 1 (ENVELOPE)")
    assert env == b"* 1 FETCH (ENVELOPE " + NESTED_ENVELOPE + b")", env
    body = fetch_raw(r, b"FETCH 1 (BODY)")
    assert body == b"* 1 FETCH (BODY " + NESTED_BODY + b")", body
    bs = fetch_raw(r, b"FETCH 1 (BODYSTRUCTURE)")
    # The extension data: the disposition and the boundary parameters.
    assert b'("attachment" ("filename" "a.pdf"))' in bs, bs
    assert b'("boundary" "outer")' in bs and b'("boundary" "inner")' in bs, bs
    part = fetch_raw(r, b"FETCH 1 (BODY.PEEK[1.1])")
    assert part == b"* 1 FETCH (BODY[1.1] {7}\r\n" + "Grüße".encode() + b")", part
    part = fetch_raw(r, b"FETCH 1 (BODY.PEEK[1.2.MIME])")
    assert part == b"* 1 FETCH (BODY[1.2.MIME] {42}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n)", part
    part = fetch_raw(r, b"FETCH 1 (BINARY.PEEK[2])")
    assert part == b"* 1 FETCH (BINARY[2] {9}\r\n%PDF-1.4\n)", part
    part = fetch_raw(r, b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert part == b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {37}\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\r\n)", part
    part = fetch_raw(r, b"FETCH 1 (BODY.PEEK[2]<4.4>)")
    assert part == b"* 1 FETCH (BODY[2]<4> {4}\r\nRi0x)", part
    # The whole message: what was sent, after the trace headers.
    full = fetch_raw(r, b"FETCH 1 (RFC822.SIZE BODY.PEEK[])")
    assert full.endswith(NESTED + b")"), full[-200:]
    size = int(re.search(rb"RFC822.SIZE (\d+)", full).group(1))
    assert size == int(re.search(rb"BODY\[\] \{(\d+)\}", full).group(1))
    assert fetch_raw(r, b"FETCH 1 (FLAGS)") == b"* 1 FETCH (FLAGS ())"
    # BODY[TEXT] (not PEEK) sets \Seen.
    text = fetch_raw(r, b"FETCH 1 (BODY[TEXT])")
    body = NESTED.split(b"\r\n\r\n", 1)[1]
    assert text == b"* 1 FETCH (BODY[TEXT] {%d}\r\n%s FLAGS (\\Seen))" % (len(body), body), text
    r.close()


# ---------------------------------------------------------- flags, search
def test_flags_and_search(srv):
    deliver(srv, make_message("alpha report", body="quarterly numbers\r\n"))
    deliver(srv, make_message("beta", body=("x" * 70 + "\r\n") * 70, from_addr="boss@remote.test"))
    deliver(srv, make_message("gamma report", body="nothing\r\n"))
    m = imap(srv)
    ok(m.select("INBOX"))
    data = ok(m.store("1", "+FLAGS", "(\\Seen $Work)"))
    assert b"\\Seen" in data[0] and b"$Work" in data[0], data
    ok(m.store("2", "+FLAGS", "(\\Flagged)"))
    ok(m.store("2", "-FLAGS", "(\\Flagged)"))
    ok(m.store("3", "FLAGS", "(\\Answered \\Draft)"))
    flags = ok(m.fetch("1:3", "(FLAGS)"))
    got = {f.split()[0]: set(re.search(rb"FLAGS \(([^)]*)\)", f).group(1).split()) for f in flags}
    assert got == {b"1": {b"\\Seen", b"$Work"}, b"2": set(), b"3": {b"\\Answered", b"\\Draft"}}, got

    def search(*criteria):
        return ok(m.search(None, *criteria))[0].split()

    assert search("UNSEEN") == [b"2", b"3"]
    assert search("SEEN") == [b"1"]
    assert search("KEYWORD", "$Work") == [b"1"]
    assert search("SUBJECT", "report") == [b"1", b"3"]
    assert search("FROM", "boss") == [b"2"]
    assert search("BODY", "quarterly") == [b"1"]
    assert search("LARGER", "4000") == [b"2"]
    assert search("OR", "ANSWERED", "KEYWORD", "$Work") == [b"1", b"3"]
    assert search("NOT", "SUBJECT", "report") == [b"2"]
    assert search("2:*", "UNANSWERED") == [b"2"]
    assert search("HEADER", "Message-ID", "beta@remote.test") == [b"2"]
    assert search("SENTBEFORE", "1-Jan-1990") == []
    uids = ok(m.uid("SEARCH", "SUBJECT", "gamma"))[0].split()
    assert uids == [b"3"]
    typ, data = m._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    assert typ == "OK"
    esearch = m.untagged_responses.pop("ESEARCH")[-1]
    assert b"MIN 1" in esearch and b"MAX 3" in esearch and b"COUNT 3" in esearch, esearch
    # \Deleted and EXPUNGE.
    ok(m.store("2", "+FLAGS.SILENT", "(\\Deleted)"))
    assert ok(m.expunge()) == [b"2"]
    assert search("ALL") == [b"1", b"2"]
    m.logout()


# ------------------------------------------------- COPY, MOVE, APPEND
def test_copy_move_append_with_uidplus(srv):
    for i in range(3):
        deliver(srv, make_message(f"msg {i}"))
    m = imap(srv)
    ok(m.create("Kept"))
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)",
                                ok(m.status("Kept", "(UIDVALIDITY)"))[0]).group(1))
    msg = make_message("appended", body="Grüße aus dem APPEND\r\n")
    data = ok(m.append("Kept", "(\\Seen $Keep)", imaplib.Time2Internaldate(1_700_000_000), msg))
    assert re.search(rb"\[APPENDUID %d 1\]" % uidvalidity, data[0]), data
    ok(m.select("INBOX"))
    ok(m.uid("COPY", "1:2", "Kept"))
    assert code(m, "COPYUID") == b"%d 1:2 2:3" % uidvalidity, m.untagged_responses
    m.untagged_responses.pop("COPYUID")
    ok(m.uid("MOVE", "3", "Kept"))
    # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGE.
    assert code(m, "COPYUID") == b"%d 3 4" % uidvalidity, m.untagged_responses
    assert m.untagged_responses.get("EXPUNGE") == [b"3"]
    assert ok(m.uid("SEARCH", "ALL"))[0].split() == [b"1", b"2"]
    ok(m.select("Kept"))
    subjects = ok(m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    got = [x[1].strip() for x in subjects if isinstance(x, tuple)]
    assert got == [b"Subject: appended", b"Subject: msg 0", b"Subject: msg 1", b"Subject: msg 2"]
    first = ok(m.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])"))[0]
    assert first[1] == msg, first
    assert b"$Keep" in first[0] and b"\\Seen" in first[0], first
    assert imaplib.Internaldate2tuple(first[0]) is not None
    # APPEND to a missing mailbox: NO [TRYCREATE].
    typ, data = m.append("Nowhere", None, None, msg)
    assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)
    m.logout()


def test_append_limit_follows_max_message_size(server_factory, tmp_path):
    srv = imap_server(server_factory, tmp_path, limits={"max_message_size": 4096})
    m = imap(srv)
    caps = ok(m.capability())[0]
    assert b"APPENDLIMIT=4096" in caps, caps
    typ, data = m.append("INBOX", None, None, make_message("big", body="y" * 5000 + "\r\n"))
    assert typ == "NO" and b"TOOBIG" in data[0], (typ, data)
    ok(m.append("INBOX", None, None, make_message("small")))
    m.logout()


# ------------------------------------------------------ CONDSTORE/QRESYNC
def test_qresync_resync_after_changes(srv):
    for i in range(4):
        deliver(srv, make_message(f"q{i}"))
    m = imap(srv)
    ok(m._simple_command("ENABLE", "QRESYNC"))
    assert m.untagged_responses.pop("ENABLED") == [b"QRESYNC"]
    ok(m.select("INBOX"))
    uidvalidity = int(m.untagged_responses["UIDVALIDITY"][-1])
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b" ".join(
        x for x in m.untagged_responses["OK"] if x)).group(1))
    m.logout()
    # Another client changes things while the first is away.
    o = imap(srv)
    ok(o.select("INBOX"))
    ok(o.store("2", "+FLAGS.SILENT", "(\\Deleted)"))
    ok(o.expunge())
    ok(o.store("3", "+FLAGS.SILENT", "(\\Flagged)"))  # was seq 4, uid 4
    o.logout()
    deliver(srv, make_message("q4"))
    r = raw_login(srv)
    assert r.cmd(b"e", b"ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC"
    lines = r.cmd(b"s", b"SELECT INBOX (QRESYNC (%d %d 1:4))" % (uidvalidity, modseq))
    assert lines[-1].startswith(b"s OK [READ-WRITE]"), lines
    assert b"* VANISHED (EARLIER) 2" in lines, lines
    changed = [ln for ln in lines if b"FETCH" in ln]
    assert any(b"UID 4" in ln and b"\\Flagged" in ln and b"MODSEQ" in ln for ln in changed), changed
    assert not any(b"UID 1 " in ln or b"UID 3 " in ln for ln in changed), changed
    assert b"* 4 EXISTS" in lines, lines
    # CONDSTORE: UNCHANGEDSINCE refuses a stale update.
    lines = r.cmd(b"u", b"UID STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)")
    assert lines[-1].startswith(b"u OK [MODIFIED 1]"), lines
    lines = r.cmd(b"c", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    assert b"* VANISHED (EARLIER) 2" in lines, lines
    r.close()


# ------------------------------------------------------------------- IDLE
def test_idle_wakes_within_a_second_of_smtp_delivery(srv):
    deliver(srv, make_message("before"))
    r = raw_login(srv)
    r.cmd(b"s", b"SELECT INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    time.sleep(0.2)
    t0 = time.monotonic()
    deliver(srv, make_message("wake up"))
    r.sock.settimeout(5)
    line = r.line()
    elapsed = time.monotonic() - t0
    assert line == b"* 2 EXISTS", line
    assert elapsed < 1.0, f"IDLE woke {elapsed:.2f}s after the delivery"
    r.send(b"DONE\r\n")
    assert r.until(b"i")[-1].startswith(b"i OK")
    r.close()


# ---------------------------------------------- two sessions, POP3 too
def test_two_sessions_on_one_mailbox(srv):
    for i in range(3):
        deliver(srv, make_message(f"shared {i}"))
    a, b = raw_login(srv), raw_login(srv)
    a.cmd(b"s", b"SELECT INBOX")
    b.cmd(b"s", b"SELECT INBOX")
    b.cmd(b"f", b"STORE 1 +FLAGS.SILENT (\\Flagged)")
    b.cmd(b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b.cmd(b"x", b"EXPUNGE")[0] == b"* 2 EXPUNGE"
    deliver(srv, make_message("shared new"))
    lines = a.cmd(b"n", b"NOOP")
    assert b"* 2 EXPUNGE" in lines and b"* 3 EXISTS" in lines, lines
    assert any(ln.startswith(b"* 1 FETCH (") and b"FLAGS (\\Flagged)" in ln for ln in lines), lines
    # FETCH by sequence number never sees an EXPUNGE in its answer.
    b.cmd(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd(b"x", b"EXPUNGE")
    lines = a.cmd(b"f", b"FETCH 1:* (UID)")
    assert not any(b"EXPUNGE" in ln for ln in lines), lines
    lines = a.cmd(b"n", b"NOOP")
    assert b"* 1 EXPUNGE" in lines, lines
    a.close()
    b.close()


def test_pop3_deletion_is_seen_by_imap(srv):
    deliver(srv, make_message("pop one"))
    deliver(srv, make_message("pop two"))
    r = raw_login(srv)
    r.cmd(b"s", b"SELECT INBOX")
    p = srv.pop3_login(ALICE)
    p.dele(1)
    p.quit()
    lines = r.cmd(b"n", b"NOOP")
    assert b"* 1 EXPUNGE" in lines, lines
    lines = r.cmd(b"f", b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert any(b"pop two" in ln for ln in lines) and not any(b"pop one" in ln for ln in lines)
    r.close()


# ------------------------------------------------------------------- TLS
def test_imaps_and_starttls(srv):
    deliver(srv, make_message("tls"))
    m = imaps(srv, alpn=["imap"])
    assert m.sock.selected_alpn_protocol() == "imap"
    assert m.sock.version() in ("TLSv1.3", "TLSv1.2")
    assert "STARTTLS" not in m.capabilities
    ok(m.select("INBOX", readonly=True))
    assert ok(m.search(None, "ALL"))[0] == b"1"
    m.logout()
    m = imap(srv, login=False)
    assert "STARTTLS" in m.capabilities
    ok(m.starttls(ssl_context=tls_context(srv)))
    assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
    m.login(ALICE, ALICE_PW)
    ok(m.select("INBOX"))
    m.logout()


def test_logindisabled_before_tls(server_factory, tmp_path):
    srv = imap_server(server_factory, tmp_path, auth=STRICT)
    m = imap(srv, login=False)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities, m.capabilities
    assert "AUTH=PLAIN" not in m.capabilities
    # imaplib refuses LOGIN on its own when LOGINDISABLED is shown: send it anyway.
    typ, data = m._simple_command("LOGIN", ALICE, m._quote(ALICE_PW))
    assert typ == "NO" and b"PRIVACYREQUIRED" in data[0], (typ, data)
    typ, data = m._simple_command("AUTHENTICATE", "PLAIN", "AGFsaWNlAHg=")
    assert typ == "NO", (typ, data)
    ok(m.starttls(ssl_context=tls_context(srv)))
    assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
    m.login(ALICE, ALICE_PW)
    m.logout()
    m = imaps(srv)  # IMAPS: passwords are fine at once
    m.logout()


def test_starttls_injection_is_discarded(srv):
    sock = socket.create_connection(srv.ports["imap"], timeout=30)
    r = Raw(None, sock)
    assert r.line().startswith(b"* OK")
    sock.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert r.line() == b"a OK Begin TLS negotiation now"
    assert r.buf == b""
    tls = tls_context(srv).wrap_socket(sock)
    t = Raw(None, tls)
    tls.sendall(b"c NOOP\r\n")
    first = t.line()
    assert first.startswith(b"c OK"), f"the injected command was answered under TLS: {first!r}"
    lines = t.cmd(b"d", b"CAPABILITY")
    assert b"STARTTLS" not in lines[0] and lines[-1].startswith(b"d OK"), lines
    t.close()


# ---------------------------------------------------------- hostile input
def test_hostile_input_then_still_serving(srv):
    deliver(srv, make_message("survivor"))
    r = Raw(srv.ports["imap"])
    r.line()
    # Commands in the wrong state.
    assert r.cmd(b"a", b"SELECT INBOX")[-1].startswith(b"a BAD")
    assert r.cmd(b"a", b"FETCH 1 FLAGS")[-1].startswith(b"a BAD")
    assert r.cmd(b"a", f'LOGIN {ALICE} "{ALICE_PW}"'.encode())[-1].startswith(b"a OK")
    assert r.cmd(b"b", b"FETCH 1 FLAGS")[-1].startswith(b"b BAD")
    # Huge literal announcements: refused before a byte is sent.
    assert r.cmd(b"c", b"APPEND INBOX {99999999999999}")[-1].startswith(b"c NO [TOOBIG]")
    assert r.cmd(b"c", b"CREATE {99999999999}")[-1].startswith(b"c NO [TOOBIG]")
    # Syntax: unbalanced parentheses, deep nesting.
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"d", b"FETCH 1 (FLAGS")[-1].startswith(b"d BAD")
    assert r.cmd(b"d", b"FETCH 1 FLAGS)")[-1].startswith(b"d BAD")
    assert r.cmd(b"e", b"SEARCH " + b"(" * 500 + b"ALL" + b")" * 500)[-1].startswith(b"e BAD")
    assert r.cmd(b"e", b"SEARCH " + b"NOT " * 500 + b"ALL")[-1].startswith(b"e BAD")
    # Sequence sets that repeat everything.
    t0 = time.monotonic()
    lines = r.cmd(b"f", b"FETCH " + b",".join([b"1:*"] * 2000) + b" (UID)")
    assert lines[-1].startswith((b"f OK", b"f BAD")), lines[-1]
    assert len(lines) <= 2 and time.monotonic() - t0 < 5, len(lines)
    assert r.cmd(b"f", b"FETCH 4294967295:1 (UID)")[-1].startswith((b"f OK", b"f BAD"))
    assert r.cmd(b"f", b"FETCH 0 (UID)")[-1].startswith(b"f BAD")
    # Path tricks and wildcards in mailbox names.
    for name in (b'"../evil"', b'"/etc"', b'"a/../b"', b'"%"', b'"foo*"', b'"a//b"',
                 b'"."', b'"INBOX/.."', b"{3}\r\na\x00b"):
        if name.startswith(b"{"):
            r.send(b"g CREATE {3}\r\n")
            cont = r.line()
            if cont.startswith(b"+"):
                r.send(b"a\x00b\r\n")
                lines = r.until(b"g")
            else:
                lines = [cont]
        else:
            lines = r.cmd(b"g", b"CREATE " + name)
        assert lines[-1].startswith((b"g NO", b"g BAD")), (name, lines)
    lines = r.cmd(b"h", b'LIST "../" "*"')
    assert all(b"etc" not in ln and b'"../' not in ln for ln in lines), lines
    lines = r.cmd(b"h", b'LIST "" "*"')
    names = sorted(ln.rsplit(b" ", 1)[-1].strip(b'"') for ln in lines if ln.startswith(b"* LIST"))
    assert names == [b"Archive", b"Drafts", b"INBOX", b"Junk", b"Sent", b"Trash"], lines
    assert r.cmd(b"i", b'SELECT "/etc/passwd"')[-1].startswith((b"i NO", b"i BAD"))
    r.send(b"\x00\x01\x02 NOOP\r\n")
    assert r.line().startswith((b"* BAD", b"\x00")), "a line of control bytes gets BAD"
    assert r.cmd(b"j", b"NOOP")[-1].startswith(b"j OK")
    r.close()
    # The server still serves, this connection's mailbox intact.
    m = imap(srv)
    ok(m.select("INBOX"))
    assert ok(m.search(None, "ALL"))[0] == b"1"
    m.logout()
    assert not list(srv.data_dir.glob("**/evil")) and not list(srv.data_dir.glob("**/etc"))


# ------------------------------------------------------------- shutdown
def test_sigterm_says_bye_to_an_idling_session(srv):
    r = raw_login(srv)
    r.cmd(b"s", b"SELECT INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    assert srv.stop() == 0
    assert r.line().startswith(b"* BYE"), "an idling client is told the server stops"
    r.close()


def test_non_synchronizing_huge_literal_is_refused(srv):
    r = raw_login(srv)
    r.send(b"a APPEND INBOX {99999999999+}\r\n" + b"x" * 1000 + b"\r\n")
    answer = r.line()
    assert answer.startswith((b"a BAD [TOOBIG]", b"* BYE")), answer
    r.close()
    m = imap(srv)
    ok(m.noop())
    m.logout()


# ------------------------------- SEARCH SAVE / $, decoded search, big FETCH
def test_search_save_and_dollar(srv):
    """RFC 5182: SEARCH RETURN (SAVE) keeps the result; `$` uses it."""
    for s in ("keep one", "other", "keep two", "keep three"):
        deliver(srv, make_message(s))
    r = raw_login(srv)
    assert r.cmd(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    # SAVE alone: no ESEARCH, just OK.
    assert r.cmd(b"a", b"SEARCH RETURN (SAVE) SUBJECT keep") == [b"a OK SEARCH completed, result saved"]
    lines = r.cmd(b"b", b"FETCH $ (UID)")
    assert lines[:-1] == [b"* 1 FETCH (UID 1)", b"* 3 FETCH (UID 3)", b"* 4 FETCH (UID 4)"], lines
    assert r.cmd(b"c", b"STORE $ +FLAGS.SILENT (\\Flagged)")[-1].startswith(b"c OK")
    assert r.cmd(b"d", b"SEARCH FLAGGED")[0] == b"* SEARCH 1 3 4"
    # Expunged messages leave `$`; UID commands see UIDs.
    r.cmd(b"e", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    r.cmd(b"f", b"EXPUNGE")
    assert r.cmd(b"g", b"UID SEARCH UID $")[0] == b"* SEARCH 3 4"
    lines = r.cmd(b"h", b"UID COPY $ Archive")
    assert lines[-1].startswith(b"h OK [COPYUID"), lines
    # MAX with SAVE keeps only the largest; SELECT forgets it.
    lines = r.cmd(b"i", b"SEARCH RETURN (MAX SAVE) ALL")
    assert lines[0].endswith(b"MAX 3"), lines
    assert r.cmd(b"j", b"FETCH $ (UID)")[:-1] == [b"* 3 FETCH (UID 4)"]
    r.cmd(b"k", b"SELECT INBOX")
    assert len(r.cmd(b"l", b"FETCH $ (UID)")) == 1
    r.close()


def utf8_search(m, key, value):
    """SEARCH CHARSET UTF-8 `key` with `value` (a UTF-8 literal) on
    imaplib session `m`: the message numbers found."""
    m._encoding = "utf-8"
    typ, data = m._simple_command("SEARCH", "CHARSET", "UTF-8", key,
                                  "{%d+}\r\n%s" % (len(value.encode()), value))
    assert typ == "OK", data
    return m.untagged_responses.pop("SEARCH")[-1].split()


def test_search_decodes_encoded_words(srv):
    """RFC 9051 §6.4.4: SUBJECT/FROM/TEXT match the decoded text of
    RFC 2047 encoded words, in any case."""
    deliver(srv, make_message("=?UTF-8?Q?R=C3=A9sum=C3=A9_attach=C3=A9?=",
                              from_addr="x@remote.test",
                              extra_headers=["Cc: =?ISO-8859-1?Q?Jos=E9?= <jose@remote.test>"]))
    deliver(srv, make_message("plain resume"))
    m = imap(srv)
    ok(m.select("INBOX"))
    assert utf8_search(m, "SUBJECT", "RÉSUMÉ") == [b"1"]
    assert utf8_search(m, "SUBJECT", "resume") == [b"2"]
    assert utf8_search(m, "CC", "josé") == [b"1"]
    assert utf8_search(m, "TEXT", "attaché") == [b"1"]
    assert utf8_search(m, "SUBJECT", "nothing") == []
    m.logout()


def test_fetch_of_a_large_mailbox_and_message(srv):
    """FETCH 1:* BODY[] over more than the server's output chunk (256 KiB)
    and of one 4 MB message: every byte intact, in order, with a command
    pipelined behind it."""
    bodies = []
    for n in range(30):
        body = "".join(f"{n:04} line {i:05} " + "y" * 60 + "\r\n" for i in range(250))
        bodies.append(body)
        deliver(srv, make_message(f"bulk {n}", body=body))
    huge = "".join(f"huge {i:07} " + "z" * 66 + "\r\n" for i in range(50_000))
    deliver(srv, make_message("huge one", body=huge))
    r = raw_login(srv)
    r.cmd(b"s", b"SELECT INBOX")
    r.send(b"a FETCH 1:* BODY.PEEK[TEXT]\r\nb NOOP\r\n")
    lines = r.until(b"a")
    assert lines[-1] == b"a OK FETCH completed", lines[-1]
    assert len(lines) == 32
    for n, body in enumerate(bodies + [huge]):
        enc = body.encode()
        assert lines[n] == b"* %d FETCH (BODY[TEXT] {%d}\r\n%s)" % (n + 1, len(enc), enc), n
    assert r.until(b"b")[-1].startswith(b"b OK")
    r.close()


# ---------------------- THREAD, decoded SEARCH, UNCHANGEDSINCE, LIST, APPEND
def mail(subject: str, date: str, msgid: str, extra=(), body="hi\r\n",
         headers_extra=()) -> bytes:
    hdrs = ["From: <t@remote.test>", "To: <alice@example.test>", f"Subject: {subject}",
            f"Date: Mon, 1 Jan 2024 {date}:00 +0000", f"Message-ID: <{msgid}@t>"]
    hdrs += list(extra) + list(headers_extra)
    return ("\r\n".join(hdrs) + "\r\n\r\n" + body).encode("utf-8")


def test_thread_references_hand_checked(srv):
    """RFC 5256 §3 REFERENCES, worked out by hand from its steps:
    1 <- {2 <- 4, 3}; 5 replies to a missing <b1>, so its dummy parent is
    pruned and 5 is gathered under 6 by base subject ("Re: Budget" is a
    reply, "Budget" not); 7 and 8 reply to a missing <t0>: a dummy holds
    them at the top. Top level by sent date (a dummy by its first child),
    siblings by sent date."""
    m = imap(srv)
    ok(m.create("Threads"))
    for raw in (
        mail("Lunch", "10:00", "l1"),
        mail("Re: Lunch", "10:30", "l2", ["References: <l1@t>"]),
        mail("Re: Lunch", "10:20", "l3", ["In-Reply-To: <l1@t>"]),
        mail("Re: Lunch", "11:00", "l4", ["References: <l1@t>\r\n <l2@t>"]),
        mail("Re: Budget", "09:00", "b2", ["References: <b1@t>"]),
        mail("Budget", "12:00", "b3"),
        mail("Re: Trip", "08:00", "t2", ["References: <t0@t>"]),
        mail("Re: Trip", "08:30", "t3", ["In-Reply-To: <t0@t> (sent earlier)"]),
    ):
        ok(m.append("Threads", None, None, raw))
    ok(m.select("Threads"))
    assert ok(m.thread("REFERENCES", "UTF-8", "ALL")) == [b"((7)(8))(1 (3)(2 4))(6 5)"]
    typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "NOT", "SUBJECT", "trip")
    assert typ == "OK" and data == [b"(1 (3)(2 4))(6 5)"], (typ, data)
    # ORDEREDSUBJECT: one thread per base subject, the first message the
    # parent of the others.
    assert ok(m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")) == [b"(7 8)(5 6)(1 (3)(2)(4))"]
    m.logout()


def test_search_body_decodes_transfer_encodings_and_charsets(srv):
    """SEARCH BODY/TEXT match the decoded text (base64, quoted-printable,
    ISO-8859-1 converted to UTF-8), in any case, as Dovecot does; the
    bytes of a base64 attachment are not text."""
    m = imap(srv)
    ok(m.create("Decoded"))
    mime = ["MIME-Version: 1.0"]
    ok(m.append("Decoded", None, None, mail(
        "b64", "10:00", "d1", mime + ["Content-Type: text/plain; charset=utf-8",
                                     "Content-Transfer-Encoding: base64"],
        body="R3LDvMOfZSBhdXMgS8O2bG4K\r\n")))
    ok(m.append("Decoded", None, None, mail(
        "qp", "10:01", "d2", mime + ["Content-Type: text/plain; charset=utf-8",
                                    "Content-Transfer-Encoding: quoted-printable"],
        body="Un caf=C3=A9 cr=\r\n=C3=A8me br=C3=BBl=C3=A9e\r\n")))
    latin1 = mail("latin1", "10:02", "d3", mime + ["Content-Type: text/plain; charset=ISO-8859-1",
                                                   "Content-Transfer-Encoding: 8bit"],
                  body="@@\r\n").replace(b"@@", "Herr Müller".encode("latin-1"))
    ok(m.append("Decoded", None, None, latin1))
    ok(m.append("Decoded", None, None, mail(
        "attached", "10:03", "d4", mime + ['Content-Type: multipart/mixed; boundary="b"'],
        body=("--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
              "--b\r\nContent-Type: application/octet-stream\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\nU2VjcmV0V29yZA==\r\n--b--\r\n"))))
    ok(m.select("Decoded"))
    assert utf8_search(m, "BODY", "GRÜẞE AUS KÖLN") == [b"1"]
    assert utf8_search(m, "BODY", "R3LDvMOf") == []
    assert utf8_search(m, "TEXT", "crème brûlée") == [b"2"]
    assert utf8_search(m, "BODY", "caf=C3") == []
    assert utf8_search(m, "BODY", "müller") == [b"3"]
    assert utf8_search(m, "BODY", "secretword") == []
    assert utf8_search(m, "BODY", "SEE ATTACHMENT") == [b"4"]
    assert utf8_search(m, "TEXT", "LATIN1") == [b"3"]
    assert utf8_search(m, "BODY", "latin1") == []
    m.logout()


def test_store_unchangedsince_against_another_session(srv):
    """RFC 7162 §3.1.3: the MODSEQ check is made with the change, against
    what is stored now: a change by another session that this one has
    not been told about yet makes the message fail, [MODIFIED]."""
    for i in range(3):
        deliver(srv, make_message(f"cs{i}"))
    a, b = raw_login(srv), raw_login(srv)
    assert a.cmd(b"s", b"SELECT INBOX (CONDSTORE)")[-1].startswith(b"s OK")
    b.cmd(b"s", b"SELECT INBOX")
    lines = a.cmd(b"f", b"FETCH 1:3 (MODSEQ)")
    highest = max(int(re.search(rb"MODSEQ \((\d+)\)", ln).group(1)) for ln in lines[:-1])
    assert b.cmd(b"x", b"STORE 2 +FLAGS.SILENT (\\Flagged)")[-1].startswith(b"x OK")
    lines = a.cmd(b"u", b"STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % highest)
    assert lines[-1].startswith(b"u OK [MODIFIED 2]"), lines
    assert any(ln.startswith(b"* 1 FETCH (FLAGS (\\Seen) MODSEQ (") for ln in lines), lines
    # Message 2 keeps B's flags only.
    lines = b.cmd(b"g", b"FETCH 2 (FLAGS)")
    assert lines[0] == b"* 2 FETCH (FLAGS (\\Flagged))", lines
    a.close()
    b.close()


def test_list_subscribed_shows_nonexistent(srv):
    """RFC 5258: a subscribed name whose mailbox was deleted is listed by
    LIST (SUBSCRIBED) with \\NonExistent; RECURSIVEMATCH gives CHILDINFO."""
    m = imap(srv)
    ok(m.create("Gone"))
    ok(m.subscribe("Gone"))
    ok(m.delete("Gone"))
    ok(m.create("Top/Sub"))
    ok(m.unsubscribe("Top"))

    def listing(*args):
        typ, data = m._simple_command("LIST", *args)
        assert typ == "OK", data
        return m.untagged_responses.pop("LIST", [])

    lines = listing("(SUBSCRIBED)", '""', "*")
    assert b'(\\NonExistent \\Subscribed) "/" "Gone"' in lines, lines
    assert b'(\\HasNoChildren \\Subscribed) "/" "Top/Sub"' in lines, lines
    lines = listing("(SUBSCRIBED RECURSIVEMATCH)", '""', "%")
    assert b'(\\HasChildren) "/" "Top" ("CHILDINFO" ("SUBSCRIBED"))' in lines, lines
    assert b'(\\NonExistent \\Subscribed) "/" "Gone"' in lines, lines
    assert not any(b'"Gone"' in ln for ln in listing('""', "*")), "deleted mailbox listed"
    m.logout()


def test_multiappend_and_utf8_append(srv):
    """RFC 3502 MULTIAPPEND with synchronizing literals (all or none) and
    RFC 6855 §4 APPEND UTF8 (~{n}...)."""
    r = raw_login(srv)
    caps = r.cmd(b"c", b"CAPABILITY")[0]
    assert b" MULTIAPPEND" in caps and b" UTF8=ACCEPT" in caps, caps
    m1 = make_message("multi one")
    m2 = make_message("multi two")
    r.send(b"a APPEND Drafts (\\Seen) {%d}\r\n" % len(m1))
    assert r.line().startswith(b"+ ")
    r.send(m1 + b" {%d}\r\n" % len(m2))
    assert r.line().startswith(b"+ ")
    r.send(m2 + b"\r\n")
    lines = r.until(b"a")
    assert re.match(rb"a OK \[APPENDUID \d+ 1:2\]", lines[-1]), lines
    # The second message is refused (\Recent): the first is not stored.
    lines = r.cmd(b"b", b"APPEND Drafts {%d+}\r\n%s (\\Recent) {%d+}\r\n%s"
                  % (len(m1), m1, len(m2), m2))
    assert lines[-1].startswith(b"b BAD"), lines
    lines = r.cmd(b"s", b"STATUS Drafts (MESSAGES)")
    assert b"MESSAGES 2" in lines[0], lines
    utf8 = "From: <j@remote.test>\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
    lines = r.cmd(b"u", b"APPEND Drafts UTF8 (~{%d+}\r\n%s)" % (len(utf8), utf8))
    assert re.match(rb"u OK \[APPENDUID \d+ 3\]", lines[-1]), lines
    r.cmd(b"e", b"EXAMINE Drafts")
    lines = r.cmd(b"f", b"FETCH 1:3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"\\Seen" in lines[0] and b"Subject: multi one" in lines[0], lines
    assert b"Subject: multi two" in lines[1], lines
    assert "Subject: Grüße".encode() in lines[2], lines
    r.close()
