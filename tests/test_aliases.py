"""No silent drop through aliases (issue 19): `user del` refuses while an
alias or catch-all points at the account (`--force` unlinks, saying what);
`alias add` and catch-alls check their targets (exist, local, no loop);
`domain catch-all DOMAIN none` removes a catch-all; an alias target that
reaches no account is logged at WARN."""

from __future__ import annotations

import json
import sqlite3

from harness import cli_lines as lines, make_message, rcpt_reply as rcpt

SENDER = "sender@remote.test"


def test_user_del_refused_while_alias_points_at_it(server):
    server.cli("alias", "add", "team@example.test", "bob@example.test", "carol@example.test",
               check=True)
    res = server.cli("user", "del", "carol@example.test")
    assert res.returncode != 0
    assert "alias team@example.test" in res.stderr_text and "--force" in res.stderr_text
    assert "carol@example.test" in server.cli("user", "list", check=True).stdout_text
    res = server.cli("user", "del", "carol@example.test", "--force", check=True)
    assert "removed carol@example.test from alias team@example.test" in res.stdout_text
    assert "team@example.test -> bob@example.test" in lines(server.cli("alias", "list", check=True))
    assert "carol@example.test" not in server.cli("user", "list", check=True).stdout_text


def test_user_del_force_deletes_alias_left_empty_and_clears_catch_all(server):
    server.cli("alias", "add", "solo@example.test", "carol@example.test", check=True)
    server.cli("domain", "add", "catch.test", "--catch-all", "carol@example.test", check=True)
    res = server.cli("user", "del", "carol@example.test")
    assert res.returncode != 0
    assert "catch-all of catch.test" in res.stderr_text
    res = server.cli("user", "del", "carol@example.test", "--force", check=True)
    assert "alias solo@example.test deleted" in res.stdout_text
    assert "catch-all of catch.test removed" in res.stdout_text
    assert not any("solo@" in ln for ln in lines(server.cli("alias", "list", check=True)))
    assert "catch-all" not in server.cli("domain", "list", check=True).stdout_text


def test_alias_add_checks_targets(server):
    res = server.cli("alias", "add", "x@example.test", "nobody@example.test")
    assert res.returncode != 0 and "does not exist" in res.stderr_text
    res = server.cli("alias", "add", "x@example.test", "someone@elsewhere.test")
    assert res.returncode != 0 and "SRS" in res.stderr_text
    server.cli("alias", "add", "a@example.test", "bob@example.test", check=True)
    server.cli("alias", "add", "b@example.test", "a@example.test", check=True)
    res = server.cli("alias", "add", "a@example.test", "b@example.test")
    assert res.returncode != 0 and "loop" in res.stderr_text
    assert "a@example.test -> b@example.test -> a@example.test" in res.stderr_text
    res = server.cli("alias", "add", "self@example.test", "self@example.test")
    assert res.returncode != 0
    # a plus-address of an existing account is a fine target
    server.cli("alias", "add", "news@example.test", "bob+news@example.test", check=True)
    listed = lines(server.cli("alias", "list", check=True))
    assert "a@example.test -> bob@example.test" in listed
    assert not any(ln.startswith("x@") for ln in listed)


def test_catch_all_checked_and_removable(server):
    res = server.cli("domain", "add", "catch.test", "--catch-all", "ghost@example.test")
    assert res.returncode != 0 and "does not exist" in res.stderr_text
    server.cli("domain", "add", "catch.test", "--catch-all", "alice@example.test", check=True)
    assert rcpt(server, "whoever@catch.test")[0] == 250
    res = server.cli("domain", "catch-all", "catch.test", "none", check=True)
    assert "catch-all of catch.test removed" in res.stdout_text
    code, text = rcpt(server, "whoever@catch.test")
    assert code == 550 and "5.1.1" in text
    server.cli("domain", "catch-all", "catch.test", "alice@example.test", check=True)
    assert rcpt(server, "whoever@catch.test")[0] == 250
    server.cli("domain", "add", "catch.test", "--no-catch-all", check=True)
    assert "catch-all" not in server.cli("domain", "list", check=True).stdout_text
    res = server.cli("domain", "catch-all", "never.test", "none")
    assert res.returncode != 0 and "no domain never.test" in res.stderr_text


def test_user_add_without_domain_has_no_empty_warning(server):
    res = server.cli("user", "add", "bob", "--password-stdin", input="pw-Secret-9\n")
    assert res.returncode != 0
    assert "warning" not in res.stderr_text, res.stderr_text
    assert "user@domain" in res.stderr_text


def test_alias_target_gone_is_logged_at_warn(server):
    server.cli("alias", "add", "team@example.test", "bob@example.test", "carol@example.test",
               check=True)
    # Data from before `user del` refused: an alias naming a deleted account.
    db = sqlite3.connect(server.data_dir / "mailgate.db", timeout=10)
    db.execute("UPDATE aliases SET targets = ? WHERE alias = ?",
               (json.dumps(["bob@example.test", "gone@example.test"]), "team@example.test"))
    db.commit()
    db.close()
    msg = make_message("team", "hello team\r\n", to_addr="team@example.test")
    assert server.send(SENDER, ["team@example.test"], msg) == {}
    log = server.stderr_path.read_text(errors="replace")
    warn = [ln for ln in log.splitlines() if "alias target reaches no account" in ln]
    assert warn and "WARN" in warn[0] and "gone@example.test" in warn[0], log[-3000:]
    assert len(server.messages("bob@example.test")) == 1


def test_catch_all_in_the_domain_being_added(server):
    server.add_user("postmaster@fresh.test", "pm-Secret-7")  # warns: not local yet
    res = server.cli("domain", "add", "fresh.test", "--catch-all", "ghost@fresh.test")
    assert res.returncode != 0 and "does not exist" in res.stderr_text
    server.cli("domain", "add", "fresh.test", "--catch-all", "postmaster@fresh.test", check=True)
    assert rcpt(server, "anyone@fresh.test")[0] == 250


def _break_alias(server, alias, targets):
    """Data from before `user del` refused: an alias naming a deleted account."""
    db = sqlite3.connect(server.data_dir / "mailgate.db", timeout=10)
    db.execute("UPDATE aliases SET targets = ? WHERE alias = ?", (json.dumps(targets), alias))
    db.commit()
    db.close()


def test_alias_target_gone_bounces_that_copy_to_a_local_sender(server):
    """`team -> bob, gone`: bob gets his copy, and the local sender a failure
    report (5.1.1) naming the alias and the missing target; the log says so at
    WARN with the message's id."""
    server.cli("alias", "add", "team@example.test", "bob@example.test", "carol@example.test",
               check=True)
    _break_alias(server, "team@example.test", ["bob@example.test", "gone@example.test"])
    listed = lines(server.cli("alias", "list", check=True))
    assert any("gone@example.test" in ln for ln in listed), listed
    msg = make_message("team", "hello team\r\n", from_addr="alice@example.test",
                       to_addr="team@example.test")
    assert server.send("alice@example.test", ["team@example.test"], msg) == {}
    assert len(server.messages("bob@example.test")) == 1

    def report():
        got = server.messages("alice@example.test")
        return got[0] if got else None

    from harness import wait_until
    wait_until(report, timeout=15, what="the failure report in alice's INBOX")
    dsn = report().decode(errors="replace")
    assert "Undelivered Mail Returned to Sender" in dsn, dsn
    assert "Final-Recipient: rfc822; gone@example.test" in dsn, dsn
    assert "Original-Recipient: rfc822; team@example.test" in dsn, dsn
    assert "Action: failed" in dsn and "Status: 5.1.1" in dsn, dsn
    assert "alias <team@example.test>" in dsn, dsn
    assert "Subject: team" in dsn  # the original's headers come back
    log = server.stderr_path.read_text(errors="replace")
    warn = [ln for ln in log.splitlines() if "that copy is returned to the sender" in ln]
    assert warn and "WARN" in warn[0], log[-3000:]
    assert "gone@example.test" in warn[0] and "team@example.test" in warn[0]
    accepted = [ln for ln in log.splitlines() if "message accepted" in ln]
    assert accepted, log[-3000:]
    # The WARN names the message's id, as the acceptance line does.
    import re
    ids = set(re.findall(r"\b[0-9A-F]{18}\b", warn[0]))
    assert ids & set(re.findall(r"\b[0-9A-F]{18}\b", accepted[-1])), (accepted[-1], warn[0])


def test_alias_target_gone_queues_a_report_for_a_remote_sender(server_factory):
    """A remote sender's report waits in the outbound queue (`queue list --json`):
    the name server here answers nothing, so the report stays queued."""
    server = server_factory(start=False)
    with open(server.config, "a", encoding="utf-8") as f:
        f.write('\n[relay]\nnameservers = ["127.0.0.1:9"]\n')
    server.start()
    server.cli("alias", "add", "team@example.test", "bob@example.test", "carol@example.test",
               check=True)
    _break_alias(server, "team@example.test", ["gone@example.test", "bob@example.test"])
    msg = make_message("team", "hello team\r\n", to_addr="team@example.test")
    assert server.send(SENDER, ["team@example.test"], msg) == {}
    assert len(server.messages("bob@example.test")) == 1
    listing = json.loads(server.cli("queue", "list", "--json", check=True).stdout_text)
    reports = [m for m in listing["messages"] if m["sender"] == ""]
    assert len(reports) == 1, listing
    assert [r["address"] for r in reports[0]["recipients"]] == [SENDER]
    shown = json.loads(server.cli("queue", "show", str(reports[0]["id"]), "--json", "--body",
                                  check=True).stdout_text)
    assert "gone@example.test" in shown["body"] and "5.1.1" in shown["body"]


def test_no_report_when_every_target_is_there(server):
    server.cli("alias", "add", "team@example.test", "bob@example.test", "carol@example.test",
               check=True)
    msg = make_message("team", "hello team\r\n", to_addr="team@example.test")
    assert server.send(SENDER, ["team@example.test"], msg) == {}
    listing = json.loads(server.cli("queue", "list", "--json", check=True).stdout_text)
    assert listing["count"] == 0, listing


def test_alias_target_gone_through_the_queues_local_hand_off(server_factory, tmp_path):
    """Mail that reaches an alias through the outbound queue's local hand-off
    (here: submitted for a domain that becomes ours while the message waits
    in the queue): bob gets his copy, and the sender one failure report for
    the missing target, once; the log says so at WARN with the queue id."""
    from harness import wait_until
    from test_submission import queued, submitter
    from test_tls import messages as tls_messages
    from test_tls import relay_to_nowhere, tls_server

    srv = tls_server(server_factory, tmp_path, extra=relay_to_nowhere())
    alice, bob = "alice@example.test", "bob@example.test"
    with submitter(srv, "465") as s:
        assert s.sendmail(alice, ["team@later.test"],
                          make_message("via the queue", from_addr=alice,
                                       to_addr="team@later.test")) == {}
    # Not ours yet: it waits for the (closed) smarthost.
    wait_until(lambda: "team@later.test" in srv.cli("queue", "list", check=True).stdout_text,
               timeout=20, what="the message deferred in the queue")
    srv.cli("domain", "add", "later.test", check=True)
    srv.cli("alias", "add", "team@later.test", bob, "carol@example.test", check=True)
    _break_alias(srv, "team@later.test", [bob, "gone@example.test"])
    srv.cli("queue", "flush", check=True)
    wait_until(lambda: len(tls_messages(srv, bob)) == 1, timeout=20, what="bob's copy")
    wait_until(lambda: len(tls_messages(srv, alice)) == 1, timeout=20,
               what="the failure report in alice's INBOX")
    dsn = tls_messages(srv, alice)[0].decode(errors="replace")
    assert "Final-Recipient: rfc822; gone@example.test" in dsn, dsn
    assert "Original-Recipient: rfc822; team@later.test" in dsn, dsn
    assert "Action: failed" in dsn and "Status: 5.1.1" in dsn, dsn
    assert ("550 5.1.1 <gone@example.test>: no such user here; "
            "alias <team@later.test> names it") in dsn, dsn
    assert "Subject: via the queue" in dsn  # the original's headers come back
    wait_until(lambda: queued(srv) == [], timeout=20, what="the queue emptied")
    # Once: another run finds nothing more to report.
    srv.cli("queue", "flush", check=True)
    log = srv.stderr_path.read_text(errors="replace")
    warn = [ln for ln in log.splitlines() if "that copy is returned to the sender" in ln]
    assert len(warn) == 1 and "WARN" in warn[0], log[-3000:]
    assert "gone@example.test" in warn[0] and "team@later.test" in warn[0]
    assert "queue_id=" in warn[0], warn[0]
    reports = [ln for ln in log.splitlines()
               if "delivery status notification queued" in ln and "kind=failed" in ln]
    assert len(reports) == 1, reports
    assert len(tls_messages(srv, alice)) == 1 and len(tls_messages(srv, bob)) == 1
