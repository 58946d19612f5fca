"""`[log] format = "json"` (issue 14, point 2) with the real binary.

Every line the server writes to standard error parses as one JSON object
with the usual fields (timestamp, level, target, fields.message); the
SMTP session's lines carry its span fields (session, and queue_id once a
message is stored), so one message can be followed by its queue id; a
hostile value stays inside one bounded line. `[log] level` filters.
"""

from __future__ import annotations

import json

import pytest

from harness import USERS
from test_log_escaping import Imap

ALICE = "alice@example.test"


LISTEN = {"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0", "imap": "127.0.0.1:0"}


def json_server(server_factory, level="info"):
    srv = server_factory(start=False, listen=LISTEN)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[log]\nformat = "json"\nlevel = "{level}"\n')
    return srv.start()


def lines_of(srv) -> list[dict]:
    text = srv.stderr_path.read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            pytest.fail(f"not a JSON line ({e}): {line!r}")
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def test_every_line_is_json_with_the_usual_fields(server_factory):
    srv = json_server(server_factory)
    srv.send("sender@client.test", [ALICE], b"Subject: json\r\n\r\nHello.\r\n")
    # A forged line and a terminal escape in an IMAP LOGIN literal.
    evil = "x\r\n{\"level\":\"ERROR\"}\x1b[2J" + "A" * 900 + "@example.test"
    c = Imap(srv)
    assert c.literal(b"a LOGIN", evil.encode(), b' "wrong"').startswith(b"a NO")
    c.close()
    srv.stop_clean()
    lines = lines_of(srv)
    assert len(lines) >= 3
    for obj in lines:
        assert obj["level"] in {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"}, obj
        assert obj["timestamp"].endswith("Z"), obj
        assert obj["target"].startswith("mailgate"), obj
        assert isinstance(obj["fields"].get("message"), str), obj
    messages = [o["fields"]["message"] for o in lines]
    assert any(m == "listening" for m in messages), messages
    # The SMTP session's lines carry its span: the session id, and the
    # queue id of the message once it is stored.
    smtp = [o for o in lines if any(s.get("name") == "smtp" for s in o.get("spans", []))]
    assert smtp, lines
    assert all(any("session" in s for s in o["spans"]) for o in smtp)
    # The stored message's line names its queue id (a field here; inside
    # the `message` span, e.g. on plugin lines, as the span's queue_id).
    queued = [o for o in smtp
              if "queue_id" in o["fields"] or any("queue_id" in s for s in o["spans"])]
    assert queued, smtp
    # The hostile user name: one line, escaped, bounded.
    failed = [o for o in lines if "level" in o["fields"].get("user", "")]
    assert failed, messages
    for o in failed:
        user = o["fields"]["user"]
        assert "\r" not in user and "\n" not in user and "\x1b" not in user, user
        assert len(user.encode()) < 400, len(user)
        assert user.endswith("bytes)"), user


def test_level_filters(server_factory):
    srv = json_server(server_factory, level="warn")
    srv.send("sender@client.test", [ALICE], b"Subject: quiet\r\n\r\nHello.\r\n")
    srv.pop3_login_refused(ALICE, "wrong")
    srv.stop_clean()
    lines = lines_of(srv)
    assert lines, "the failed login is a WARN line"
    assert {o["level"] for o in lines} <= {"WARN", "ERROR"}, lines


def test_bad_level_is_refused_at_start(server_factory):
    srv = server_factory(start=False)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write('\n[log]\nformat = "json"\nlevel = "verbose"\n')
    r = srv.cli("config", "check")
    assert r.returncode == 1
    assert "log.level" in r.stderr_text and "verbose" in r.stderr_text, r.stderr_text


def test_text_stays_the_default(server_factory):
    srv = server_factory()
    srv.stop_clean()
    text = srv.stderr_path.read_text(encoding="utf-8")
    assert " INFO " in text and not text.lstrip().startswith("{"), text[:500]
    assert USERS  # the template's accounts were made with the text format too
