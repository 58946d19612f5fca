"""Real IMAP clients against the real binary, over IMAPS with a certificate
made by `openssl`:

- `mbsync` (Debian package `isync`) syncs the account to a local Maildir
  and back, with changes on both sides between rounds (new mail, flags,
  moves, deletions); after each round both sides hold the same messages
  with the same flags.
- `fetchmail` (package `fetchmail`) downloads over IMAP and deletes.

Without the tools these tests are skipped with a loud reason; under CI (the
`CI` environment variable set) a missing tool is a failure:
`scripts/test` must install `isync` and `fetchmail`."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from harness import HOSTNAME, USERS, make_message

ALICE = "alice@example.test"
ALICE_PW = USERS[ALICE]
LISTEN = {k: "127.0.0.1:0" for k in ("smtp", "pop3", "imap", "imaps")}
# The Maildir flag letters (https://cr.yp.to/proto/maildir.html) and IMAP's.
MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                 "T": "\\Deleted"}


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    message = (f"`{tool}` is not installed (Debian package `{package}`):"
               f" apt-get install -y {package}")
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


def make_cert(directory: Path):
    cert, key = directory / "imap-cert.pem", directory / "imap-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         # mbsync 1.4 matches the host name against DNS names and the CN
         # only, so the address is written as a DNS name too.
         "-subj", "/CN=127.0.0.1",
         "-addext", f"subjectAltName=DNS:127.0.0.1,IP:127.0.0.1,DNS:{HOSTNAME}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def srv(server_factory, tmp_path):
    # Clear-text passwords refused: the clients must use TLS.
    s = server_factory(listen=dict(LISTEN), start=False,
                       auth={"allow_plaintext": False, "trust_loopback": False})
    s.cert, s.key = make_cert(tmp_path)
    with open(s.config, "a", encoding="utf-8") as f:
        f.write(f'\n[tls]\ncert = "{s.cert}"\nkey = "{s.key}"\n')
    return s.start()


def imaps(srv) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context(cafile=str(srv.cert))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL(*srv.ports["imaps"], ssl_context=ctx, timeout=30)
    m.login(ALICE, ALICE_PW)
    return m


def ok(result):
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


def message_id(raw: bytes) -> str:
    header = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    m = re.search(rb"(?im)^Message-ID:\s*(<[^>]*>)", header)
    assert m, raw[:300]
    return m.group(1).decode()


# ------------------------------------------------------------------ states
def remote_state(srv) -> dict:
    """{mailbox: {message-id: flags}} on the server (mailboxes with mail)."""
    m = imaps(srv)
    state = {}
    try:
        for line in ok(m.list()):
            name = line.decode().rsplit(" ", 1)[-1].strip('"')
            ok(m.select(f'"{name}"', readonly=True))
            if m.untagged_responses.get("EXISTS", [b"0"])[-1] == b"0":
                continue
            box = {}
            for item in ok(m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")):
                if not isinstance(item, tuple):
                    continue
                flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split())
                box[message_id(item[1])] = flags & set(MAILDIR_FLAGS.values())
            if box:
                state[name] = box
    finally:
        m.logout()
    return state


def local_state(maildir: Path) -> dict:
    """The same for the Maildir tree mbsync keeps."""
    state = {}
    for cur in sorted(maildir.glob("**/cur")):
        folder = cur.parent
        name = "INBOX" if folder == maildir / "INBOX" else str(folder.relative_to(maildir))
        box = {}
        for f in list(cur.iterdir()) + list((folder / "new").iterdir()):
            flags = f.name.rsplit(":2,", 1)[1] if ":2," in f.name else ""
            box[message_id(f.read_bytes())] = {MAILDIR_FLAGS[c] for c in flags if c in MAILDIR_FLAGS}
        if box:
            state[name] = box
    return state


def find_local(maildir: Path, folder: str, subject: str) -> Path:
    for f in (maildir / folder).glob("*/*"):
        if f"Subject: {subject}\n".encode() in f.read_bytes().replace(b"\r\n", b"\n"):
            return f
    raise AssertionError(f"no local message {subject!r} in {folder}")


def set_local_flags(path: Path, letters: str) -> Path:
    base = path.name.rsplit(":2,", 1)[0]
    new = path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(letters))}"
    path.rename(new)
    return new


class Mbsync:
    def __init__(self, srv, workdir: Path):
        self.binary = need("mbsync", "isync")
        self.maildir = workdir / "Mail"
        self.maildir.mkdir()
        self.rc = workdir / "mbsyncrc"
        self.rc.write_text(f"""\
IMAPAccount mailgate
Host 127.0.0.1
Port {srv.ports["imaps"][1]}
User {ALICE}
Pass {ALICE_PW}
SSLType IMAPS
CertificateFile {srv.cert}
Timeout 30

IMAPStore remote
Account mailgate

MaildirStore local
Path {self.maildir}/
Inbox {self.maildir}/INBOX
SubFolders Verbatim

Channel mailgate
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
""", encoding="utf-8")
        self.rc.chmod(0o600)

    def sync(self):
        r = subprocess.run([self.binary, "-c", str(self.rc), "-a"], capture_output=True,
                           timeout=120, env=dict(os.environ, HOME=str(self.rc.parent)))
        out = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == 0, f"mbsync failed ({r.returncode}):\n{out}"
        return out


def deliver(srv, subject, **kw):
    srv.send("sender@remote.test", [ALICE], make_message(subject, **kw))


def assert_in_sync(srv, sync: Mbsync) -> dict:
    remote, local = remote_state(srv), local_state(sync.maildir)
    assert remote == local, f"after mbsync:\nremote={remote}\nlocal={local}"
    return remote


def mid(subject):
    return "<" + subject.replace(" ", ".") + "@remote.test>"


# ------------------------------------------------------------------ mbsync
def test_mbsync_round_trips_with_changes_on_both_sides(srv, tmp_path):
    sync = Mbsync(srv, tmp_path)
    deliver(srv, "one")
    deliver(srv, "two")
    deliver(srv, "three")
    m = imaps(srv)
    ok(m.create("Work"))
    ok(m.append("Work", "(\\Seen)", None, make_message("work one")))
    m.logout()

    # Round 1: everything comes down.
    sync.sync()
    state = assert_in_sync(srv, sync)
    assert set(state["INBOX"]) == {mid("one"), mid("two"), mid("three")}
    assert state["Work"] == {mid("work one"): {"\\Seen"}}

    # Round 2: changes on both sides.
    deliver(srv, "four")                              # remote: new mail
    m = imaps(srv)
    ok(m.select("INBOX"))
    ids = {}
    for item in ok(m.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")):
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0]).group(1).decode()
            ids[item[1].decode().split(":", 1)[1].strip()] = uid
    ok(m.uid("STORE", ids["one"], "+FLAGS", "(\\Flagged)"))   # remote: flag
    ok(m.uid("MOVE", ids["two"], "Work"))                      # remote: move
    m.logout()
    set_local_flags(find_local(sync.maildir, "INBOX", "three"), "RS")  # local: flags
    find_local(sync.maildir, "Work", "work one").unlink()              # local: deletion
    new = sync.maildir / "INBOX" / "new" / "1700000000.local1.client:2,"
    new.write_bytes(make_message("from the laptop").replace(b"\r\n", b"\n"))  # local: new
    sync.sync()
    state = assert_in_sync(srv, sync)
    assert state["INBOX"] == {
        mid("one"): {"\\Flagged"},
        mid("three"): {"\\Answered", "\\Seen"},
        mid("four"): set(),
        mid("from the laptop"): set(),
    }, state
    assert state["Work"] == {mid("two"): set()}, state

    # Round 3: a local move (delete here, new file there), a remote
    # deletion, flags removed on both sides.
    moved = find_local(sync.maildir, "INBOX", "four")
    target = sync.maildir / "Work" / "cur" / "1700000001.local2.client:2,S"
    target.write_bytes(moved.read_bytes())
    moved.unlink()
    set_local_flags(find_local(sync.maildir, "INBOX", "three"), "S")
    m = imaps(srv)
    ok(m.select("INBOX"))
    ok(m.store("1:*", "-FLAGS", "(\\Flagged)"))
    typ, data = m.search(None, "HEADER", "Message-ID", mid("from the laptop"))
    ok(m.store(data[0].decode(), "+FLAGS", "(\\Deleted)"))
    ok(m.expunge())
    m.logout()
    sync.sync()
    state = assert_in_sync(srv, sync)
    assert state["INBOX"] == {mid("one"): set(), mid("three"): {"\\Seen"}}, state
    assert state["Work"] == {mid("two"): set(), mid("four"): {"\\Seen"}}, state

    # A round without changes changes nothing.
    sync.sync()
    assert assert_in_sync(srv, sync) == state


# --------------------------------------------------------------- fetchmail
def test_fetchmail_downloads_over_imaps_and_deletes(srv, tmp_path):
    fetchmail = need("fetchmail", "fetchmail")
    deliver(srv, "fetch me", body="Grüße from the server\r\n")
    deliver(srv, "fetch me too")
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"""\
set no bouncemail
set no syslog
poll 127.0.0.1 with proto IMAP port {srv.ports["imaps"][1]}
  user "{ALICE}" there with password "{ALICE_PW}" is "{os.environ.get('USER', 'root')}" here
  ssl sslcertck sslcertfile "{srv.cert}" sslcommonname "127.0.0.1"
  fetchall
  mda "/bin/sh -c 'cat >> {out}'"
""", encoding="utf-8")
    rc.chmod(0o600)
    r = subprocess.run([fetchmail, "-f", str(rc), "--nodetach", "-v"], capture_output=True,
                       timeout=120,
                       env=dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path)))
    log = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, f"fetchmail failed ({r.returncode}):\n{log}"
    got = out.read_bytes()
    assert b"Subject: fetch me\n" in got.replace(b"\r\n", b"\n"), got[:500]
    assert b"Subject: fetch me too" in got and "Grüße".encode() in got, got[:800]
    # fetchmail deletes what it fetched (no `keep`): the server's INBOX is empty.
    deadline = time.monotonic() + 5
    while True:
        m = imaps(srv)
        ok(m.select("INBOX"))
        n = ok(m.search(None, "ALL"))[0].split()
        m.logout()
        if not n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert n == [], f"messages left on the server: {n}\n{log}"
