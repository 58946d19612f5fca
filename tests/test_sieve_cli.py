"""`mailgate sieve list|get|put|activate|deactivate|delete` and
`mailgate sieve test` with and without `--apply`, run against the real
binary while the server runs (the scripts live in the store; what a test
applies is seen by a real IMAP client).
"""

from __future__ import annotations

import imaplib
import re

import pytest

from harness import USERS, cli_lines, make_message

ALICE = "alice@example.test"

FILTER = r"""require ["fileinto", "mailbox", "imap4flags", "vacation"];
if header :contains "subject" "news" {
    fileinto :create "News";
} elsif header :contains "subject" "spam" {
    discard;
} elsif header :contains "subject" "away" {
    vacation :days 3 "I am away.";
} else {
    addflag "\\Flagged";
}
"""


@pytest.fixture
def srv(server_factory):
    s = server_factory(listen={"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0"}, start=False)
    with open(s.config, "a", encoding="utf-8") as f:
        f.write("\n[sieve]\nmax_scripts = 2\n")
    return s.start()


def imap(srv):
    host, port = srv.ports["imap"]
    m = imaplib.IMAP4(host, port, timeout=30)
    m.login(ALICE, USERS[ALICE])
    return m


def inbox(m, box="INBOX"):
    """{subject: flags} of a mailbox."""
    typ, _ = m.select(f'"{box}"')
    assert typ == "OK", box
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    if data == [None]:
        return {}
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        subject = item[1].decode().split(":", 1)[1].strip()
        out[subject] = re.search(r"FLAGS \(([^)]*)\)", item[0].decode()).group(1)
    return out


def test_put_list_get_activate_delete(srv, tmp_path):
    good = tmp_path / "good.sieve"
    good.write_text(FILTER, encoding="utf-8")
    bad = tmp_path / "bad.sieve"
    bad.write_text('keep;\nfileinto "x";\n', encoding="utf-8")
    r = srv.cli("sieve", "put", ALICE, "main", str(bad))
    assert r.returncode == 1
    assert re.search(r"bad\.sieve:2:\d+: .*fileinto", r.stderr_text), r.stderr_text
    assert cli_lines(srv.cli("sieve", "list", ALICE, check=True)) == []
    srv.cli("sieve", "put", ALICE, "main", str(good), check=True)
    # `-` reads standard input.
    srv.cli("sieve", "put", ALICE, "other", "-", input="keep;\n", check=True)
    assert cli_lines(srv.cli("sieve", "list", ALICE, check=True)) == [
        f"main\t{len(FILTER.encode())}", "other\t6"]
    assert srv.cli("sieve", "get", ALICE, "main", check=True).stdout_text == FILTER
    r = srv.cli("sieve", "get", ALICE, "nope")
    assert r.returncode == 1 and "no script" in r.stderr_text
    # max_scripts = 2: a third is refused, replacing one is not.
    r = srv.cli("sieve", "put", ALICE, "third", "-", input="keep;\n")
    assert r.returncode == 1 and "max_scripts" in r.stderr_text, r.stderr_text
    srv.cli("sieve", "put", ALICE, "other", "-", input="stop;\n", check=True)
    srv.cli("sieve", "activate", ALICE, "main", check=True)
    assert cli_lines(srv.cli("sieve", "list", ALICE, check=True))[0].endswith("\tactive")
    r = srv.cli("sieve", "delete", ALICE, "main")
    assert r.returncode == 1 and "active script" in r.stderr_text, r.stderr_text
    r = srv.cli("sieve", "activate", ALICE, "nope")
    assert r.returncode == 1
    srv.cli("sieve", "deactivate", ALICE, check=True)
    srv.cli("sieve", "delete", ALICE, "main", check=True)
    assert cli_lines(srv.cli("sieve", "list", ALICE, check=True)) == ["other\t6"]
    r = srv.cli("sieve", "list", "nobody@example.test")
    assert r.returncode == 1 and "no account" in r.stderr_text


def deliver_four(srv):
    for subject in ("news of the week", "cheap spam", "hello there", "away test"):
        srv.send("sender@remote.test", [ALICE], make_message(subject=subject))


def test_sieve_test_shows_and_changes_nothing(srv, tmp_path):
    deliver_four(srv)
    script = tmp_path / "f.sieve"
    script.write_text(FILTER, encoding="utf-8")
    r = srv.cli("sieve", "test", ALICE, str(script), "--last", "4", check=True)
    out = r.stdout_text
    blocks = [b for b in re.split(r"(?m)^(?=uid )", out.strip()) if b]
    assert len(blocks) == 4, out
    assert 'subject "news of the week"' in blocks[0]
    assert 'fileinto "News" :create' in blocks[0]
    assert "  discard" in blocks[1]
    assert "keep (implicit) flags \\Flagged" in blocks[2]
    assert "vacation, once per 259200s (not sent for stored mail)" in blocks[3]
    assert "keep (implicit)" in blocks[3]
    # --last 1: only the newest.
    r = srv.cli("sieve", "test", ALICE, str(script), "--last", "1", check=True)
    assert r.stdout_text.count("uid ") == 1 and "away test" in r.stdout_text
    # Nothing changed.
    m = imap(srv)
    try:
        assert set(inbox(m)) == {"news of the week", "cheap spam", "hello there", "away test"}
        assert all(flags == "" for flags in inbox(m).values())
        typ, data = m.list()
        assert not any(b'"News"' in d or d.endswith(b" News") for d in data), data
    finally:
        m.logout()
    # A script that does not compile, a bad --last.
    bad = tmp_path / "bad.sieve"
    bad.write_text("discard\n", encoding="utf-8")
    r = srv.cli("sieve", "test", ALICE, str(bad))
    assert r.returncode == 1 and "bad.sieve:" in r.stderr_text
    r = srv.cli("sieve", "test", ALICE, str(script), "--last", "0")
    assert r.returncode == 1


def test_sieve_test_apply(srv, tmp_path):
    deliver_four(srv)
    script = tmp_path / "f.sieve"
    script.write_text(FILTER, encoding="utf-8")
    r = srv.cli("sieve", "test", ALICE, str(script), "--last", "10", "--apply", check=True)
    out = r.stdout_text
    assert 'applied: created folder "News"' in out, out
    assert "applied: discard: marked \\Deleted" in out, out
    m = imap(srv)
    try:
        box = inbox(m)
        assert "news of the week" not in box, box  # moved
        assert "\\Deleted" in box["cheap spam"], box
        assert "\\Flagged" in box["hello there"], box
        assert box["away test"] == "", box
        assert set(inbox(m, "News")) == {"news of the week"}
    finally:
        m.logout()
