"""SIGHUP applies the configuration file live (issue 19), against the real
binary: a new domain is accepted, a lower `[limits] max_message_size` refuses
a bigger message with 552, a changed `[submission.senders]` refuses a sender
it no longer grants; a changed listen address is a WARN line and the old
listener keeps serving; a broken file is one ERROR line naming the file and
line, and the server keeps its configuration; a session open across the
reload goes on (with the settings it started with). Also `[auth]` (a new
POP3 session may no longer log in in clear text), `[relay] trusted_networks`
and `mailgate reload` (the file checked before the signal)."""

from __future__ import annotations

import re
import signal
import smtplib

from harness import USERS, free_port, make_message, rcpt_reply, wait_until

ALICE = "alice@example.test"


def log(srv) -> str:
    return srv.stderr_path.read_text(errors="replace")


def outcome_lines(srv) -> list[str]:
    """The lines that end a reload: applied, or not reloaded/applied."""
    return [ln for ln in log(srv).splitlines()
            if "reload: configuration applied" in ln or "reload: configuration not" in ln]


def sighup(srv, edit=None) -> str:
    """Rewrites the file with `edit(text)` (if given), sends SIGHUP, and
    returns the line that ended the reload."""
    before = len(outcome_lines(srv))
    if edit is not None:
        srv.config.write_text(edit(srv.config.read_text(encoding="utf-8")), encoding="utf-8")
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(outcome_lines(srv)) > before, timeout=15, what="the reload's log line")
    return outcome_lines(srv)[before]


def set_key(text: str, table: str, key: str, value: str) -> str:
    """`key = value` in `[table]` (replaced if there, else added)."""
    lines = text.splitlines()
    start = lines.index(f"[{table}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
            break
    else:
        lines.insert(start + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def test_a_new_domain_is_accepted_after_sighup(server):
    server.add_user("dora@fresh.test", "dora-Secret-8")  # warns: not a local domain yet
    code, _ = rcpt_reply(server, "dora@fresh.test")
    assert code == 550, code
    line = sighup(server, lambda t: t.replace('domains = ["example.test"]',
                                              'domains = ["example.test", "fresh.test"]'))
    assert "INFO" in line and "changed=domains" in line and "restart_needed=none" in line, line
    assert rcpt_reply(server, "dora@fresh.test")[0] == 250
    msg = make_message("fresh", to_addr="dora@fresh.test")
    assert server.send("sender@remote.test", ["dora@fresh.test"], msg) == {}
    assert len(server.messages("dora@fresh.test", "dora-Secret-8")) == 1


def test_a_lower_message_size_applies_to_new_sessions_and_an_open_one_goes_on(server):
    big = make_message("big", ("x" * 78 + "\r\n") * 400)  # ~32 KB
    # A session opened before the reload, in the middle of a transaction.
    old = server.smtp()
    old.ehlo()
    assert old.docmd("MAIL", "FROM:<sender@remote.test>")[0] == 250
    line = sighup(server, lambda t: set_key(t, "limits", "max_message_size", "20000"))
    assert "changed=limits" in line, line
    # New sessions: SIZE says so, and a bigger message gets 552.
    with server.smtp() as s:
        s.ehlo()
        assert s.esmtp_features.get("size") == "20000", s.esmtp_features
        try:
            s.sendmail("sender@remote.test", [ALICE], big)
            raise AssertionError("a message over the new limit was accepted")
        except smtplib.SMTPException as e:
            code = getattr(e, "smtp_code", None) or e.recipients[ALICE][0]
            assert code == 552, e
    # The session open across the reload goes on with what it started with.
    assert old.docmd("RCPT", f"TO:<{ALICE}>")[0] == 250
    code, _ = old.data(big)
    assert code == 250
    old.quit()
    assert len(server.messages(ALICE)) == 1


def test_submission_senders_change_applies(server_factory):
    srv = server_factory(listen={"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0",
                                 "submission": "127.0.0.1:0"}, start=False)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write('\n[submission.senders]\n"alice@example.test" = ["info@example.test"]\n')
    srv.start()

    def mail_from(sender):
        with smtplib.SMTP(*srv.ports["submission"], local_hostname="client.test",
                          timeout=30) as s:
            s.ehlo()
            s.login(ALICE, USERS[ALICE])
            return s.docmd("MAIL", f"FROM:<{sender}>")

    assert mail_from("info@example.test")[0] == 250
    line = sighup(srv, lambda t: t.replace('["info@example.test"]', '["sales@example.test"]'))
    assert "changed=submission" in line, line
    code, text = mail_from("info@example.test")
    assert code == 553, (code, text)
    assert mail_from("sales@example.test")[0] == 250


def test_a_changed_listen_address_needs_a_restart(server):
    old_port = server.smtp_addr[1]
    new_port = free_port("127.0.0.1")
    line = sighup(server, lambda t: re.sub(r'smtp = "127\.0\.0\.1:0"',
                                           f'smtp = "127.0.0.1:{new_port}"', t))
    assert "INFO" in line and "restart_needed=listen.smtp" in line, line
    warn = [ln for ln in log(server).splitlines()
            if "key listen.smtp changed: restart needed to apply" in ln]
    assert len(warn) == 1 and "WARN" in warn[0], log(server)[-3000:]
    assert server.smtp_addr[1] == old_port
    assert rcpt_reply(server, ALICE)[0] == 250  # the old listener still serves
    # The next reload still warns (the running value was kept).
    sighup(server)
    assert len([ln for ln in log(server).splitlines()
                if "key listen.smtp changed" in ln]) == 2


def test_a_broken_file_keeps_the_running_configuration(server):
    def break_it(text):
        return set_key(text, "limits", "max_message_size", "\"lots")
    line = sighup(server, break_it)
    assert "ERROR" in line and "configuration not reloaded" in line, line
    assert f"{server.config}" in line and "line" in line, line
    assert "\n" not in line
    with server.smtp() as s:  # still serving, with the old limit
        s.ehlo()
        assert s.esmtp_features.get("size") == "52428800"
    # A value out of range: refused with the file and the key's line.
    line = sighup(server, lambda t: set_key(t.replace('"lots', "52428800"), "limits",
                                            "max_message_size", "10"))
    assert "ERROR" in line and "max_message_size" in line, line
    assert re.search(re.escape(str(server.config)) + r":\d+:", line), line
    # Fixed: applied.
    line = sighup(server, lambda t: set_key(t, "limits", "max_message_size", "40000"))
    assert "configuration applied" in line, line
    with server.smtp() as s:
        s.ehlo()
        assert s.esmtp_features.get("size") == "40000"


def test_mailgate_reload_checks_the_file_then_signals(server):
    """`mailgate reload`: a broken file is refused before anything is sent;
    a good one is applied by the server."""
    text = server.config.read_text(encoding="utf-8")
    server.config.write_text(set_key(text, "limits", "max_message_size", "\"lots"),
                             encoding="utf-8")
    before = len(outcome_lines(server))
    res = server.cli("reload")
    assert res.returncode != 0 and str(server.config) in res.stderr_text, res.stderr_text
    assert "line" in res.stderr_text
    server.config.write_text(set_key(text, "limits", "max_message_size", "30000"),
                             encoding="utf-8")
    res = server.cli("reload", check=True)
    assert "reload asked of the server" in res.stdout_text
    wait_until(lambda: len(outcome_lines(server)) > before, timeout=15, what="the reload")
    lines = outcome_lines(server)
    assert len(lines) == before + 1 and "configuration applied" in lines[-1], lines
    with server.smtp() as s:
        s.ehlo()
        assert s.esmtp_features.get("size") == "30000"


def test_relay_trusted_networks_apply_to_new_sessions(server_factory):
    """`[relay]` is swapped whole: `trusted_networks` added by a reload lets
    this machine relay on `smtp` from the next session on. (The name server
    is a closed port, so the relayed message waits in the queue.)"""
    srv = server_factory(start=False)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write('\n[relay]\nnameservers = ["127.0.0.1:9"]\n')
    srv.start()
    code, text = rcpt_reply(srv, "friend@remote.test")
    assert code == 550, text  # relaying denied
    line = sighup(srv, lambda t: t.replace('nameservers = ["127.0.0.1:9"]',
                                           'nameservers = ["127.0.0.1:9"]\n'
                                           'trusted_networks = ["127.0.0.1/32"]'))
    assert "changed=relay" in line, line
    msg = make_message("relayed", to_addr="friend@remote.test")
    assert srv.send("cron@example.test", ["friend@remote.test"], msg) == {}
    listed = srv.cli("queue", "list", check=True).stdout_text
    assert "friend@remote.test" in listed, listed


def test_auth_settings_apply_to_new_sessions(server):
    """`[auth] allow_plaintext` turned off by a reload: a new POP3 session
    may no longer log in without TLS; one logged in before goes on."""
    import poplib
    before = server.pop3(ALICE)
    assert before.stat()[0] >= 0
    line = sighup(server, lambda t: set_key(t, "auth", "allow_plaintext", "false"))
    assert "changed=auth" in line, line
    try:
        p = server.pop3(ALICE)
        p.quit()
        raise AssertionError("a clear-text login was accepted after the reload")
    except poplib.error_proto as e:
        assert b"-ERR" in e.args[0], e
    assert before.stat()[0] >= 0  # the session open across the reload
    before.quit()
