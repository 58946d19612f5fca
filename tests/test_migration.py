"""Moving in and out (`mailgate import`, `mailgate export`) against real data
made by a real peer: a private Dovecot (tests/dovecot_peer.py) is filled over
IMAP with folders, flags, keywords, dates and expunged messages (so UIDs
have gaps), its Maildir is imported into a running mailgate, and what the
two servers say over IMAP and POP3 is compared: folder list, special use,
subscriptions, UIDVALIDITY, UIDNEXT, UIDs, flags, keywords, INTERNALDATE,
the bytes of every message, POP3 UIDLs.  Also: mbox files made by Python's
`mailbox` module, export and re-import, re-runs, damaged files, --dry-run,
and an IDLE session of the running server hearing of imported mail.
"""

from __future__ import annotations

import imaplib
import mailbox
import os
import poplib
import pty
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from dovecot_peer import Dovecot
from harness import USERS

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
OLD_USER = "olduser@old.test"
OLD_PW = "old-Secret-9"
LISTEN = {k: "127.0.0.1:0" for k in ("smtp", "pop3", "imap")}

FETCH_RE = re.compile(
    rb"UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"|RFC822\.SIZE (\d+)")


def message(n: int, subject: str, extra: str = "") -> bytes:
    return (f"From: Old Sender <sender{n}@old.test>\r\n"
            f"To: {OLD_USER}\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: <msg{n}.{subject.replace(' ', '-')}@old.test>\r\n"
            f"Date: Tue, 14 Nov 2023 22:13:{n % 60:02d} +0000\r\n"
            f"{extra}"
            f"\r\n"
            f"Body of message {n}.\r\n"
            f"From here on a line starts with From.\r\n"
            + "x" * (n * 37) + "\r\n").encode()


# Folder -> [(flags, internal date (epoch), expunge?)]; the expunged
# ones leave gaps in the UIDs, the last of INBOX a gap before UIDNEXT.
CONTENT = {
    "INBOX": [
        ("\\Seen", 1_600_000_000, False),
        ("\\Seen \\Answered $Forwarded", 1_600_000_100, False),
        ("", 1_600_000_200, True),
        ("\\Flagged Work $Label1", 1_600_000_300, False),
        ("\\Draft", 1_600_000_400, False),
        ("\\Seen \\Deleted", 1_600_000_500, False),
        ("", 1_600_086_400, False),
        ("\\Seen", 1_600_090_000, True),
    ],
    "Sent": [("\\Seen", 1_610_000_000, False), ("\\Seen \\Answered", 1_610_000_060, False)],
    "Work": [("\\Seen", 1_620_000_000, True), ("Work", 1_620_000_001, False),
             ("\\Seen Important", 1_620_000_002, False)],
    "Work/Projects": [("\\Seen", 1_630_000_000, False), ("", 1_630_000_100, False)],
    "Büro": [("\\Flagged", 1_640_000_000, False)],
}
SUBSCRIBED = ["INBOX", "Work", "Work/Projects"]


def mutf7(name: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 §5.1.3) of a folder name."""
    out, buf = [], []

    def flush():
        if buf:
            import base64
            b = base64.b64encode("".join(buf).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b.replace("/", ",") + "-")
            buf.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def unmutf7(name: str) -> str:
    import base64

    def one(m):
        b = m.group(1)
        if not b:
            return "&"
        return base64.b64decode(b.replace(",", "/") + "=" * (-len(b) % 4)).decode("utf-16-be")
    return re.sub(r"&([^-]*)-", one, name)


def quoted(name: str) -> str:
    return '"' + mutf7(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def fill_dovecot(d: Dovecot):
    m = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
    m.login(OLD_USER, OLD_PW)
    n = 0
    for folder, msgs in CONTENT.items():
        if folder not in ("INBOX", "Sent"):
            assert m.create(quoted(folder))[0] == "OK"
        for flags, date, _ in msgs:
            n += 1
            typ, _ = m.append(quoted(folder), f"({flags})" if flags else None,
                              imaplib.Time2Internaldate(date), message(n, f"{folder} {n}"))
            assert typ == "OK"
        doomed = [i + 1 for i, (_, _, gone) in enumerate(msgs) if gone]
        if doomed:
            m.select(quoted(folder))
            m.store(",".join(map(str, doomed)), "+FLAGS.SILENT", "(\\Deleted)")
            # EXPUNGE would also remove the message kept with \Deleted:
            # expunge exactly the doomed UIDs (UIDPLUS).
            m.uid("EXPUNGE", ",".join(map(str, doomed)))
            m.unselect()  # CLOSE would expunge the message kept with \Deleted
    for folder in SUBSCRIBED:
        assert m.subscribe(quoted(folder))[0] == "OK"
    m.logout()


def parse_list_line(line: bytes):
    m = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
    assert m, line
    attrs = m.group(1).decode().split()
    name = m.group(2).decode()
    if name.startswith('"'):
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return unmutf7(name), attrs


def snapshot(host: str, port: int, user: str, password: str) -> dict:
    """Everything a client sees of an account, as plain data."""
    m = imaplib.IMAP4(host, port, timeout=30)
    m.login(user, password)
    out = {}
    typ, lines = m.list('""', "*")
    assert typ == "OK"
    typ, sub_lines = m.lsub('""', "*")
    subscribed = {parse_list_line(line)[0] for line in sub_lines if line}
    for line in lines:
        name, attrs = parse_list_line(line)
        if "\\Noselect" in attrs or "\\NonExistent" in attrs:
            continue
        special = sorted(a for a in attrs if a in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk",
                                                    "\\Archive"))
        typ, st = m.status(quoted(name), "(UIDVALIDITY UIDNEXT MESSAGES)")
        assert typ == "OK", st
        status = dict(re.findall(rb"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", st[0]))
        msgs = {}
        typ, _ = m.select(quoted(name), readonly=True)
        assert typ == "OK"
        if int(status[b"MESSAGES"]):
            typ, data = m.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
            assert typ == "OK"
            for item in data:
                fields = {}
                for g in FETCH_RE.findall(item):
                    if g[0]:
                        fields["uid"] = int(g[0])
                    if g[1] or b"FLAGS ()" in item:
                        fields["flags"] = sorted(f for f in g[1].decode().split()
                                                 if f != "\\Recent")
                    if g[2]:
                        fields["date"] = g[2].decode()
                    if g[3]:
                        fields["size"] = int(g[3])
                fields.setdefault("flags", [])
                typ, body = m.uid("FETCH", str(fields["uid"]), "(BODY.PEEK[])")
                assert typ == "OK"
                fields["bytes"] = body[0][1]
                msgs[fields.pop("uid")] = fields
        m.close()
        out[name] = {
            "special": special,
            "subscribed": name in subscribed,
            "uidvalidity": int(status[b"UIDVALIDITY"]),
            "uidnext": int(status[b"UIDNEXT"]),
            "messages": msgs,
        }
    m.logout()
    return out


def pop3_uidls(host: str, port: int, user: str, password: str):
    p = poplib.POP3(host, port, timeout=30)
    p.user(user)
    p.pass_(password)
    _, lines, _ = p.uidl()
    p.quit()
    return [line.split()[1] for line in lines]


@pytest.fixture(scope="module")
def dovecot():
    d = Dovecot(OLD_USER, OLD_PW, tls=True)
    try:
        d.start()
        fill_dovecot(d)
        d.snapshot = snapshot("127.0.0.1", d.imap_port, OLD_USER, OLD_PW)
        d.uidls = pop3_uidls("127.0.0.1", d.pop3_port, OLD_USER, OLD_PW)
        yield d
    except AssertionError:
        print(d.log_tail())
        raise
    finally:
        d.cleanup()


@pytest.fixture
def srv(server_factory):
    return server_factory(listen=dict(LISTEN))


def mg_snapshot(srv, user=ALICE):
    return snapshot(*srv.ports["imap"], user, USERS[user])


def import_cli(srv, *args, check=True):
    res = srv.cli("import", *args, timeout=300)
    if check:
        assert res.returncode == 0, (res.stdout_text, res.stderr_text)
    return res


# ------------------------------------------------------------------ Maildir


def test_dovecot_fixture_has_gaps(dovecot):
    """The peer made what the comparison needs: gaps in the UIDs, keywords."""
    inbox = dovecot.snapshot["INBOX"]
    assert sorted(inbox["messages"]) == [1, 2, 4, 5, 6, 7]
    assert inbox["uidnext"] == 9
    assert "$Label1" in inbox["messages"][4]["flags"]
    assert sorted(dovecot.snapshot["Work"]["messages"]) == [2, 3]


def test_maildir_import_is_invisible_to_imap_and_pop3_clients(dovecot, srv):
    """Folder list, special use, subscriptions, UIDVALIDITY, UIDNEXT, UIDs,
    flags, keywords, INTERNALDATE and bytes as Dovecot served them; POP3
    UIDLs as Dovecot's."""
    res = import_cli(srv, "maildir", ALICE, str(dovecot.maildir))
    assert "INBOX: 6 imported, 0 already present, 0 broken; UIDVALIDITY and UIDs kept" \
        in res.stdout_text, res.stdout_text
    got = mg_snapshot(srv)
    want = dovecot.snapshot
    assert sorted(got) == sorted(want)
    for name in want:
        for key in ("special", "subscribed", "uidvalidity", "uidnext"):
            assert got[name][key] == want[name][key], (name, key)
        assert sorted(got[name]["messages"]) == sorted(want[name]["messages"]), name
        for uid, w in want[name]["messages"].items():
            g = got[name]["messages"][uid]
            assert g == w, (name, uid)
    assert pop3_uidls(*srv.pop3_addr, ALICE, USERS[ALICE]) == dovecot.uidls


def test_rerun_imports_nothing(dovecot, srv):
    import_cli(srv, "maildir", ALICE, str(dovecot.maildir))
    before = mg_snapshot(srv)
    res = import_cli(srv, "maildir", ALICE, str(dovecot.maildir))
    assert "INBOX: 0 imported, 6 already present" in res.stdout_text, res.stdout_text
    assert "imported 0 messages" in res.stdout_text
    assert mg_snapshot(srv) == before


def test_dry_run_changes_nothing(dovecot, srv):
    before = mg_snapshot(srv)
    res = import_cli(srv, "maildir", ALICE, str(dovecot.maildir), "--dry-run")
    assert "INBOX: 6 to import" in res.stdout_text, res.stdout_text
    assert "Work/Projects: 2 to import" in res.stdout_text
    assert "nothing was changed" in res.stdout_text
    assert mg_snapshot(srv) == before


def test_damaged_files_are_skipped_and_reported(dovecot, srv, tmp_path):
    copy = tmp_path / "Maildir"
    shutil.copytree(dovecot.maildir, copy)
    garbage = copy / "cur" / "1700000000.M1P1.host:2,S"
    garbage.write_bytes(b"\x00\x01\x02 not mail at all\n")
    empty = copy / ".Work" / "cur" / "1700000001.M2P2.host:2,"
    empty.write_bytes(b"")
    res = import_cli(srv, "maildir", ALICE, str(copy), check=False)
    assert res.returncode == 1
    assert f"skipped {garbage}: NUL byte in the header" in res.stderr_text, res.stderr_text
    assert f"skipped {empty}: empty file" in res.stderr_text
    assert "2 broken" in res.stdout_text
    got = mg_snapshot(srv)
    assert sorted(got["INBOX"]["messages"]) == [1, 2, 4, 5, 6, 7]
    assert sorted(got["Work"]["messages"]) == [2, 3]


def raw_imap(addr):
    s = socket.create_connection(addr, timeout=30)
    f = s.makefile("rwb")
    assert f.readline().startswith(b"* OK")
    return s, f


def test_running_server_idle_session_sees_imported_mail(dovecot, srv):
    """The import runs in another process; an IDLE session of the running
    server is told of the new messages."""
    s, f = raw_imap(srv.ports["imap"])
    try:
        f.write(f'a LOGIN "{ALICE}" "{USERS[ALICE]}"\r\nb SELECT Sent\r\nc IDLE\r\n'.encode())
        f.flush()
        while not f.readline().startswith(b"+"):
            pass
        done = threading.Event()
        t = threading.Thread(target=lambda: (import_cli(srv, "maildir", ALICE,
                                                        str(dovecot.maildir)), done.set()))
        t.start()
        deadline = time.monotonic() + 30
        seen = b""
        while time.monotonic() < deadline:
            line = f.readline()
            seen += line
            if re.match(rb"\* 2 EXISTS", line):
                break
        t.join(timeout=300)
        assert done.is_set()
        assert b"* 2 EXISTS" in seen, seen
        f.write(b"DONE\r\n")
        f.flush()
    finally:
        s.close()


# --------------------------------------------------------------------- mbox


def python_mbox(path: Path):
    mb = mailbox.mbox(str(path))
    specs = [("RO", "", "$Work"), ("O", "AF", ""), ("RO", "T", "Later, $Label2"), ("", "", "")]
    for i, (status, xstatus, keywords) in enumerate(specs, 1):
        msg = mailbox.mboxMessage(message(100 + i, f"mbox {i}").replace(b"\r\n", b"\n"))
        msg.set_from(f"sender{i}@old.test", time.gmtime(1_650_000_000 + i * 3600))
        if status:
            msg["Status"] = status
        if xstatus:
            msg["X-Status"] = xstatus
        if keywords:
            msg["X-Keywords"] = keywords
        mb.add(msg)
    mb.flush()
    mb.close()


def test_mbox_import_export_and_reimport(srv, tmp_path):
    path = tmp_path / "old-mbox"
    python_mbox(path)
    res = import_cli(srv, "mbox", ALICE, str(path), "--mailbox", "Old Mail")
    assert "Old Mail: 4 imported" in res.stdout_text, res.stdout_text
    got = mg_snapshot(srv)["Old Mail"]["messages"]
    assert [got[u]["flags"] for u in sorted(got)] == [
        ["$Work", "\\Seen"],
        ["\\Answered", "\\Flagged"],
        ["$Label2", "Later", "\\Draft", "\\Seen"],
        [],
    ]
    assert got[min(got)]["date"] == "15-Apr-2022 06:20:00 +0000"
    first = got[min(got)]["bytes"]
    # As sent, CRLF; the old server's state fields are gone, and the body's
    # quoted ">From " line is "From " again.
    assert first == message(101, "mbox 1"), first
    assert b"Status:" not in first and b"X-Keywords" not in first

    # A re-run imports nothing.
    res = import_cli(srv, "mbox", ALICE, str(path), "--mailbox", "Old Mail")
    assert "Old Mail: 0 imported, 4 already present" in res.stdout_text

    # Export as mbox, import the file into another account: the same.
    out = tmp_path / "export-mbox"
    res = srv.cli("export", "mbox", ALICE, str(out), check=True)
    assert "Old Mail: 4 messages" in res.stdout_text
    exported = out / "Old Mail"
    assert exported.read_bytes().startswith(b"From MAILER-DAEMON ")
    import_cli(srv, "mbox", BOB, str(exported), "--mailbox", "Old Mail")
    back = mg_snapshot(srv, BOB)["Old Mail"]["messages"]
    strip = lambda msgs: [{k: v for k, v in msgs[u].items()} for u in sorted(msgs)]  # noqa: E731
    assert strip(back) == strip(got)

    # mutt and Python read the export.
    assert len(mailbox.mbox(str(exported))) == 4


def test_maildir_export_reimport_keeps_everything(dovecot, srv, tmp_path):
    """Export to Maildir (with dovecot-uidlist), import into another
    account: the same folders, UIDVALIDITY, UIDs, flags, dates, bytes."""
    import_cli(srv, "maildir", ALICE, str(dovecot.maildir))
    out = tmp_path / "export-maildir"
    srv.cli("export", "maildir", ALICE, str(out), check=True)
    assert (out / "dovecot-uidlist").read_text().startswith("3 V")
    assert (out / ".Work.Projects" / "cur").is_dir()
    assert (out / ".B&APw-ro" / "cur").is_dir()
    import_cli(srv, "maildir", CAROL, str(out))
    a, c = mg_snapshot(srv), mg_snapshot(srv, CAROL)
    for name in a:
        for key in ("uidvalidity", "uidnext", "messages", "subscribed"):
            assert a[name][key] == c[name][key], (name, key)
    # Dovecot's default UIDL format over the kept UIDs and UIDVALIDITY.
    assert pop3_uidls(*srv.pop3_addr, CAROL, USERS[CAROL]) == \
        pop3_uidls(*srv.pop3_addr, ALICE, USERS[ALICE])


def test_dovecot_reads_the_export(dovecot, srv, tmp_path):
    """The exported Maildir served by Dovecot itself: the same UIDVALIDITY,
    UIDs, flags, keywords, dates and bytes as mailgate serves."""
    import_cli(srv, "maildir", ALICE, str(dovecot.maildir))
    want = mg_snapshot(srv)
    peer = Dovecot("back@old.test", OLD_PW)
    try:
        res = srv.cli("export", "maildir", ALICE, str(peer.maildir), check=True)
        assert res.returncode == 0
        subprocess.run(["chown", "-R", f"{peer.uid}:{peer.gid}", str(peer.maildir)], check=True)
        peer.start()
        got = snapshot("127.0.0.1", peer.imap_port, "back@old.test", OLD_PW)
    finally:
        peer.cleanup()
    for name in ("INBOX", "Work", "Work/Projects", "Büro"):
        assert got[name]["uidvalidity"] == want[name]["uidvalidity"], name
        assert got[name]["messages"] == want[name]["messages"], name


# --------------------------------------------------------------------- IMAP


def test_imap_import_keeps_uids_flags_dates_and_bytes(dovecot, srv, tmp_path):
    """Pulled from Dovecot over IMAP: the same folders, special use,
    subscriptions, UIDVALIDITY, UIDs, flags, keywords, INTERNALDATE and
    bytes as Dovecot serves."""
    pw = tmp_path / "password"
    pw.write_text(OLD_PW + "\n")
    res = import_cli(srv, "imap", ALICE, "--host", "127.0.0.1", "--port", str(dovecot.imap_port),
                     "--user", OLD_USER, "--password-file", str(pw))
    assert "INBOX: 6 imported, 0 already present, 0 broken; UIDVALIDITY and UIDs kept" \
        in res.stdout_text, res.stdout_text
    got = mg_snapshot(srv)
    want = dovecot.snapshot
    assert sorted(got) == sorted(want)
    for name in want:
        for key in ("special", "subscribed", "uidvalidity", "uidnext", "messages"):
            assert got[name][key] == want[name][key], (name, key)
    # A re-run imports nothing.
    res = import_cli(srv, "imap", ALICE, "--host", "127.0.0.1", "--port", str(dovecot.imap_port),
                     "--user", OLD_USER, "--password-file", str(pw), "--folders", "Work")
    assert "Work: 0 imported, 2 already present" in res.stdout_text, res.stdout_text
    assert "INBOX" not in res.stdout_text


def test_imap_import_wrong_password_is_refused(dovecot, srv, tmp_path):
    pw = tmp_path / "password"
    pw.write_text("wrong\n")
    res = import_cli(srv, "imap", ALICE, "--host", "127.0.0.1", "--port", str(dovecot.imap_port),
                     "--user", OLD_USER, "--password-file", str(pw), check=False)
    assert res.returncode == 1
    assert "refused the user name or password" in res.stderr_text, res.stderr_text
    assert "wrong" not in res.stderr_text


@pytest.mark.parametrize("mode", ["--tls", "--starttls"])
def test_imap_import_over_tls(dovecot, srv, tmp_path, mode):
    """IMAPS and STARTTLS, the old server's certificate verified against
    --tls-ca-file (and refused without it)."""
    pw = tmp_path / "password"
    pw.write_text(OLD_PW + "\n")
    port = dovecot.imaps_port if mode == "--tls" else dovecot.imap_port
    args = ["imap", ALICE, "--host", "127.0.0.1", "--port", str(port), mode,
            "--user", OLD_USER, "--password-file", str(pw), "--folders", "Work/Projects"]
    res = import_cli(srv, *args, check=False)
    assert res.returncode == 1
    assert "TLS with 127.0.0.1" in res.stderr_text, res.stderr_text
    res = import_cli(srv, *args, "--tls-ca-file", str(dovecot.cert))
    assert "Work/Projects: 2 imported" in res.stdout_text, res.stdout_text
    got = mg_snapshot(srv)["Work/Projects"]
    assert got["messages"] == dovecot.snapshot["Work/Projects"]["messages"]


def test_oversized_maildir_file_is_skipped_unread(dovecot, srv, tmp_path):
    """A message over the 256 MB an import takes is reported and skipped
    (a sparse file: its size is checked before it is read)."""
    copy = tmp_path / "Maildir"
    shutil.copytree(dovecot.maildir, copy)
    big = copy / "cur" / "1700000002.M3P3.host:2,S"
    with open(big, "wb") as f:
        f.write(b"Subject: big\n\n")
        f.truncate(256 * 1024 * 1024 + 1)
    res = import_cli(srv, "maildir", ALICE, str(copy), check=False)
    assert res.returncode == 1
    assert f"skipped {big}: 268435457 bytes, more than the 268435456 an import takes" \
        in res.stderr_text, res.stderr_text
    assert sorted(mg_snapshot(srv)["INBOX"]["messages"]) == [1, 2, 4, 5, 6, 7]


def hostile_imap(replies):
    """A one-shot IMAP server on loopback that greets, then answers each
    command line with the next of `replies` (bytes; `{tag}` replaced)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def serve():
        c, _ = ls.accept()
        with c:
            c.sendall(b"* OK hostile ready\r\n")
            f = c.makefile("rb")
            tag = b"*"
            for reply in replies:
                line = f.readline()
                if not line:
                    return
                if b" " in line.strip():  # a command; else the AUTHENTICATE answer
                    tag = line.split(b" ")[0]
                try:
                    c.sendall(reply.replace(b"{tag}", tag))
                except OSError:
                    return
            time.sleep(1)
        ls.close()
    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1]


@pytest.mark.parametrize("reply,error", [
    (b"* LIST () \"/\" " + b"x" * (1024 * 1024 + 10) + b"\r\n", "a response line longer than 1048576 bytes"),
    (b"* LIST () \"/\" {300000000}\r\n", "more than the 268435456 an import takes"),
    (b"* LIST (\\Noselect \"/\" \"\r\n{tag} OK done\r\n", None),
])
def test_imap_import_hostile_server(srv, tmp_path, reply, error):
    """The old server's responses are bounded and parsed without trust."""
    pw = tmp_path / "password"
    pw.write_text("pw\n")
    port = hostile_imap([b"+ \r\n", b"{tag} OK logged in\r\n", reply,
                         b"{tag} OK lsub done\r\n", b"{tag} OK bye\r\n"])
    res = import_cli(srv, "imap", ALICE, "--host", "127.0.0.1", "--port", str(port),
                     "--user", "u", "--password-file", str(pw), check=False)
    if error:
        assert res.returncode == 1
        assert error in res.stderr_text, res.stderr_text
    else:
        assert res.returncode == 0, res.stderr_text
        assert "imported 0 messages in 0 folders" in res.stdout_text


def test_maildir_mail_dovecot_has_not_numbered_yet(dovecot, srv, tmp_path):
    """A message delivered to new/ that Dovecot has not seen yet (not in
    dovecot-uidlist) gets the UID Dovecot would have given it: its UIDNEXT."""
    copy = tmp_path / "Maildir"
    shutil.copytree(dovecot.maildir, copy)
    fresh = copy / "new" / "1700000003.M4P4.host"
    fresh.write_bytes(message(99, "fresh").replace(b"\r\n", b"\n"))
    import_cli(srv, "maildir", ALICE, str(copy))
    inbox = mg_snapshot(srv)["INBOX"]
    assert sorted(inbox["messages"]) == [1, 2, 4, 5, 6, 7, 9]
    assert inbox["messages"][9]["bytes"] == message(99, "fresh")
    assert inbox["messages"][9]["flags"] == []
    assert inbox["uidnext"] == 10
    for uid, want in dovecot.snapshot["INBOX"]["messages"].items():
        assert inbox["messages"][uid] == want


def test_mbox_damaged_file_and_message_are_reported(srv, tmp_path):
    not_mbox = tmp_path / "notes.txt"
    not_mbox.write_bytes(b"just some notes\nnot mail\n")
    res = import_cli(srv, "mbox", ALICE, str(not_mbox), check=False)
    assert res.returncode == 1
    assert f"skipped {not_mbox}: not an mbox file" in res.stderr_text, res.stderr_text
    mixed = tmp_path / "mixed"
    mixed.write_bytes(b"From a@b Mon Dec  7 11:29:53 2026\nSubject: good\n\nok\n\n"
                      b"From a@b Mon Dec  7 11:29:54 2026\n\x00\x01\x02garbage\n\n"
                      b"From a@b Mon Dec  7 11:29:55 2026\nSubject: also good\n\nok\n")
    res = import_cli(srv, "mbox", ALICE, str(mixed), "--mailbox", "Mixed", check=False)
    assert res.returncode == 1
    assert f"skipped {mixed} message 2: NUL byte in the header" in res.stderr_text, res.stderr_text
    assert "Mixed: 2 imported, 0 already present, 1 broken" in res.stdout_text
    assert len(mg_snapshot(srv)["Mixed"]["messages"]) == 2


def test_maildir_folder_name_with_control_character(dovecot, srv, tmp_path):
    """A folder whose name has a control character is reported (shown
    with `?`) and skipped; the other folders are imported."""
    copy = tmp_path / "Maildir"
    shutil.copytree(dovecot.maildir, copy)
    bad = copy / ".bad\x01name"
    (bad / "cur").mkdir(parents=True)
    (bad / "cur" / "1700000004.M5P5.host:2,S").write_bytes(b"Subject: x\n\nbody\n")
    res = import_cli(srv, "maildir", ALICE, str(copy), check=False)
    assert res.returncode == 1
    assert f"skipped {copy}/.bad?name: folder name is not valid modified UTF-7" \
        in res.stderr_text, res.stderr_text
    assert "\x01" not in res.stderr_text + res.stdout_text
    assert sorted(mg_snapshot(srv)["INBOX"]["messages"]) == [1, 2, 4, 5, 6, 7]


def test_imap_folder_mailgate_cannot_hold_is_skipped(srv, tmp_path):
    """An IMAP folder named with an empty level (`a//b`) cannot be a
    mailgate folder: it is reported and skipped, and the import goes on."""
    pw = tmp_path / "password"
    pw.write_text("pw\n")
    port = hostile_imap([
        b"+ \r\n", b"{tag} OK logged in\r\n",
        b'* LIST () "/" "a//b"\r\n{tag} OK\r\n', b"{tag} OK\r\n",
        b'* STATUS "a//b" (UIDVALIDITY 5 UIDNEXT 3 MESSAGES 0)\r\n{tag} OK\r\n',
        b"{tag} OK\r\n", b"{tag} OK\r\n"])
    res = import_cli(srv, "imap", ALICE, "--host", "127.0.0.1", "--port", str(port),
                     "--user", "u", "--password-file", str(pw), check=False)
    assert res.returncode == 1
    assert "skipped folder a//b (0 messages)" in res.stderr_text, res.stderr_text


def test_progress_bar_on_a_terminal(srv, tmp_path):
    """On a terminal the import draws a bar with counts and rate; piped
    output (every other test) gets the per-folder lines only."""
    path = tmp_path / "tty-mbox"
    python_mbox(path)
    cmd = [str(srv.binary), "import", "mbox", ALICE, str(path), "--mailbox", "Tty",
           "--config", str(srv.config)]
    main, child = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, out
    text = out.decode("utf-8", "replace")
    assert re.search(r"\r\[#+ *\] \d+/4 messages, \d+/s", text), text
    assert "Tty: 4 imported" in text, text
