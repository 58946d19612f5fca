"""Sieve at delivery, the last differences from Pigeonhole (issue 13),
through the real binary (`mailgate sieve put`, smtplib, imaplib):

- `editheader` (RFC 5293, `[sieve] editheader = true`): `addheader` and
  `deleteheader` change the copy stored for that recipient only, the body
  stays the received one, `Received`/`Auto-Submitted` stay protected, and a
  `redirect` sees the message as it is at that point of the script (RFC
  5293 section 3);
- the time zone of `currentdate` and of `date` without `:zone` is the
  server's (`TZ`), or `[sieve] time_zone`;
- SIGHUP applies `[sieve]` to delivery: `editheader`, `max_redirects` and
  `time_zone` take effect at the next delivery without a restart.
"""

from __future__ import annotations

from harness import wait_until
from test_reload import set_key, sighup
from test_sieve_delivery import (ALICE, BOB, CAROL, folder, imap, log_has, put_script,
                                 queued_to, send, sieve_server, subjects)

EDITHEADER = "editheader = true\n"


def header_lines(header: bytes) -> list[str]:
    return header.decode("utf-8", "replace").split("\r\n")


def names(header: bytes) -> list[str]:
    return [ln.split(":", 1)[0].lower() for ln in header_lines(header)
            if ln and not ln[0].isspace() and ":" in ln]


def whole(srv, user, name="INBOX") -> list[bytes]:
    """The whole stored messages of a folder (BODY.PEEK[])."""
    m = imap(srv, user)
    try:
        typ, count = m.select(f'"{name}"', readonly=True)
        if typ != "OK" or int(count[0]) == 0:
            return []
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        m.logout()


def _with_sieve_keys(server_factory, keys: str):
    """A Sieve server with `keys` in its `[sieve]` table."""
    srv = sieve_server(server_factory)
    srv.stop_clean()
    text = srv.config.read_text(encoding="utf-8")
    text = text.replace("\n[sieve]\n", "\n[sieve]\n" + keys, 1)
    srv.config.write_text(text, encoding="utf-8")
    return srv.start()


# ------------------------------------------------------------------ editheader
def test_editheader_changes_only_that_recipients_copy(server_factory):
    srv = _with_sieve_keys(server_factory, EDITHEADER)
    put_script(srv, ALICE, "tag", """
require ["editheader"];
addheader "X-Sieve-Filtered" "yes";
addheader :last "X-Sieve-Tail" "end";
deleteheader "X-Spam-Flag";
deleteheader "Received";
addheader "Auto-Submitted" "no";
""")
    body = "line one\r\nline two, the body is the received one\r\n"
    send(srv, [ALICE, BOB], "edited for alice", headers=["X-Spam-Flag: YES"], body=body)
    (alice,) = whole(srv, ALICE)
    (bob,) = whole(srv, BOB)
    a_head, _, a_body = alice.partition(b"\r\n\r\n")
    b_head, _, b_body = bob.partition(b"\r\n\r\n")
    a_names, b_names = names(a_head), names(b_head)
    # Alice's copy: added on top (below nothing: the first field) and at the
    # end, X-Spam-Flag gone; the protected fields as they were.
    assert a_names[0] == "return-path", a_names
    assert a_names[1] == "x-sieve-filtered", a_names
    assert a_names[-1] == "x-sieve-tail", a_names
    assert "x-spam-flag" not in a_names
    assert "received" in a_names, "Received is protected"
    assert b"Auto-Submitted: no" not in a_head, "Auto-Submitted is protected"
    assert a_body == b_body
    assert body.encode() in a_body
    # Bob, another recipient of the same message, has the original.
    assert "x-sieve-filtered" not in b_names and "x-sieve-tail" not in b_names
    assert "x-spam-flag" in b_names
    assert a_names.count("received") == b_names.count("received")


def test_redirect_sends_the_message_as_edited_so_far(server_factory):
    srv = _with_sieve_keys(server_factory, EDITHEADER)
    put_script(srv, ALICE, "fwd", f"""
require ["editheader", "copy"];
redirect :copy "{BOB}";
addheader "X-Tag" "tagged";
redirect :copy "{CAROL}";
deleteheader "X-Tag";
addheader "X-Late" "after";
""")
    send(srv, ALICE, "forward edited")
    # Redirects go through the queue; local ones are delivered by its runner.
    wait_until(lambda: subjects(srv, BOB) == ["forward edited"], what="bob's redirect")
    wait_until(lambda: subjects(srv, CAROL) == ["forward edited"], what="carol's redirect")
    (_, bob), = folder(srv, BOB)
    (_, carol), = folder(srv, CAROL)
    (_, alice), = folder(srv, ALICE)
    assert "x-tag" not in names(bob) and "x-late" not in names(bob), "before the edits"
    assert "x-tag" in names(carol) and "x-late" not in names(carol), "after the first"
    # The implicit keep comes last: every edit.
    assert "x-tag" not in names(alice) and "x-late" in names(alice)


def test_editheader_off_refuses_the_script_and_keeps_the_message(server_factory):
    """Without `editheader = true` the script does not compile at delivery
    (it was stored while the key was on): the message is kept unedited."""
    srv = _with_sieve_keys(server_factory, EDITHEADER)
    put_script(srv, ALICE, "tag", 'require "editheader"; addheader "X-Sieve" "1";')
    line = sighup(srv, lambda t: t.replace(EDITHEADER, "editheader = false\n"))
    assert "changed=sieve" in line, line
    send(srv, ALICE, "not edited")
    got = folder(srv, ALICE)
    heads = [h for _, h in got]
    assert any(b"Subject: not edited" in h and b"X-Sieve:" not in h for h in heads), heads
    assert log_has(srv, "sieve: the script failed")


# ------------------------------------------------------------------ time zone
ZONE_SCRIPT = """
require ["date", "variables", "fileinto", "mailbox", "relational"];
if currentdate :matches "zone" "*" { set "now" "${1}"; }
if date :matches "date" "hour" "*" { set "hour" "${1}"; }
if date :zone "+0000" :matches "date" "hour" "*" { set "utc" "${1}"; }
fileinto :create "z${now} h${hour} u${utc}";
"""
DATE_HEADER = "Date: Mon, 07 Dec 2026 10:00:00 +0000"


def mailbox_names(srv, user) -> list[str]:
    m = imap(srv, user)
    try:
        typ, data = m.list()
        return [line.decode().rsplit(' "', 1)[-1].rstrip('"') if line else ""
                for line in data]
    finally:
        m.logout()


def test_currentdate_and_date_use_the_servers_time_zone(server_factory, monkeypatch):
    # India: +0530 all year (no summer time), so the test does not depend
    # on the day it runs.
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    srv = sieve_server(server_factory)
    put_script(srv, ALICE, "zone", ZONE_SCRIPT)
    send(srv, ALICE, "what time is it", headers=[DATE_HEADER])
    # 10:00 UTC is 15:30 in +0530; with `:zone "+0000"` it stays 10.
    assert subjects(srv, ALICE, "z+0530 h15 u10") == ["what time is it"], \
        mailbox_names(srv, ALICE)
    # `mailgate sieve test` (same environment) answers the same.
    res = srv.cli("sieve", "test", ALICE, str(srv.workdir / "zone.sieve"),
                  "--mailbox", "z+0530 h15 u10", check=True)
    assert 'fileinto "z+0530 h15 u10"' in res.stdout_text, res.stdout_text


def test_time_zone_key_and_sighup(server_factory, monkeypatch):
    """`[sieve] time_zone` fixes the zone; a SIGHUP that changes it (and
    `max_redirects`) applies at the next delivery without a restart."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    srv = _with_sieve_keys(server_factory, 'time_zone = "-0300"\nmax_redirects = 1\n')
    put_script(srv, ALICE, "zone", ZONE_SCRIPT)
    send(srv, ALICE, "first", headers=[DATE_HEADER])
    assert subjects(srv, ALICE, "z-0300 h07 u10") == ["first"], mailbox_names(srv, ALICE)

    line = sighup(srv, lambda t: set_key(t, "sieve", "time_zone", '"UTC"'))
    assert "changed=sieve" in line and "restart_needed=none" in line, line
    send(srv, ALICE, "second", headers=[DATE_HEADER])
    assert subjects(srv, ALICE, "z+0000 h10 u10") == ["second"], mailbox_names(srv, ALICE)

    # A limit: two redirects fail under max_redirects = 1 (kept, reported),
    # and go out once it is raised.
    put_script(srv, ALICE, "two", """
redirect "one@elsewhere.test";
redirect "two@elsewhere.test";
""")
    send(srv, ALICE, "two redirects")
    assert "two redirects" in subjects(srv, ALICE)
    assert queued_to(srv, "one@elsewhere.test") == []
    sighup(srv, lambda t: set_key(t, "sieve", "max_redirects", "4"))
    send(srv, ALICE, "two redirects again")
    wait_until(lambda: queued_to(srv, "two@elsewhere.test"), what="the redirects")
    assert "two redirects again" not in subjects(srv, ALICE)


def test_sighup_turns_editheader_on_for_delivery(server_factory):
    srv = sieve_server(server_factory)
    # Stored with the key on in the file (the command reads the file) but
    # the server started with it off: delivery refuses the script ...
    srv.config.write_text(set_key(srv.config.read_text(encoding="utf-8"), "sieve",
                                  "editheader", "true"), encoding="utf-8")
    put_script(srv, ALICE, "tag", 'require "editheader"; addheader "X-Sieve" "on";')
    send(srv, ALICE, "before the reload")
    assert not any(b"X-Sieve: on" in h for _, h in folder(srv, ALICE))
    # ... until a SIGHUP applies the file.
    line = sighup(srv)
    assert "changed=sieve" in line, line
    send(srv, ALICE, "after the reload")
    heads = {h.split(b"Subject: ")[1].split(b"\r\n")[0]: h for _, h in folder(srv, ALICE)
             if b"Subject: " in h}
    assert b"X-Sieve: on" in heads[b"after the reload"], heads
    assert b"X-Sieve: on" not in heads[b"before the reload"]
