"""`mailgate queue` against a running server (issue 19): `queue flush` wakes
the server at once, `queue delete --all|--from|--to-domain` removes exactly
the matching messages without a bounce, and `--json` on `queue list` and
`queue show` gives one parseable document with the documented fields.

Reuses the two-server world of tests/test_relay.py (`a.test` on 127.0.0.2,
`b.test` on 127.0.0.3, the test DNS server on 127.0.0.1); `dead.test` and
`other.test` have MX hosts nobody listens on, so mail to them stays queued.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time

from harness import wait_until
from test_relay import (  # noqa: F401 - `world` is a fixture
    A_IP, ALICE, ALICE_PW, B_IP, BOB, BOB_PW, DEAD_IP, messages, queue_ids, queue_show,
    submit, wait_messages, world,
)

DAVE, DAVE_PW = "dave@a.test", "dave-Queue-3"
# Retries an hour away and a long poll: nothing moves unless woken.
SLOW = {"retry": ["1h"], "max_age": "5d", "poll_interval": "10m"}


def submit_many(srv, user, password, rcpts, subject):
    host, port = srv.ports["submission"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    msg = (f"From: <{user}>\r\nSubject: {subject}\r\n"
           f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nbody of {subject}\r\n").encode()
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.starttls(context=ctx)
        s.login(user, password)
        assert s.sendmail(user, rcpts, msg) == {}


def queue_json(srv):
    return json.loads(srv.cli("queue", "list", "--json", check=True).stdout_text)


def queued_after(srv, n):
    """Waits for `n` messages in the queue; their ids, oldest first."""
    return sorted(wait_until(lambda: len(ids := queue_ids(srv)) == n and ids,
                             what=f"{n} message(s) queued"))


def test_flush_wakes_the_running_server_at_once(world):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, SLOW).start()
    b = world.make("b.test", B_IP, BOB, BOB_PW, SLOW).start()
    b.stop_clean()

    submit(a, ALICE, ALICE_PW, BOB, "woken")
    [qid] = queued_after(a, 1)
    wait_until(lambda: "attempts: 1" in queue_show(a, qid), interval=0.2,
               what="the first attempt")
    assert "pending (451" in queue_show(a, qid)

    b.start()
    time.sleep(1)
    assert messages(b, BOB, BOB_PW) == []  # the retry is an hour away
    start = time.monotonic()
    out = a.cli("queue", "flush", check=True).stdout_text
    assert out.strip() == "1 message due now; the server is delivering", out
    [got] = wait_messages(b, BOB, BOB_PW, 1, timeout=10)
    took = time.monotonic() - start
    assert b"Subject: woken" in got
    print(f"flush to delivery: {took:.2f}s")
    # Before: the next poll, up to [queue] poll_interval (here 10 minutes).
    assert took < 3, f"delivered {took:.1f}s after the flush"
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")

    # Without a server, flush says so and still marks the messages due.
    submit(a, ALICE, ALICE_PW, "carol@dead.test", "stays")
    queued_after(a, 1)
    a.stop_clean()
    out = a.cli("queue", "flush", check=True).stdout_text
    assert out == "1 message due now; no server is running: delivered when it starts\n", out
    a.cli("queue", "delete", "--all", check=True)
    assert a.cli("queue", "flush", check=True).stdout_text == "0 messages due now\n"


def test_delete_by_each_selector_removes_exactly_the_matching_messages(world):
    world.dns.add("other.test", "MX", (10, "mx.other.test"))
    world.dns.add("mx.other.test", "A", DEAD_IP)
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, SLOW)
    a.add_user(DAVE, DAVE_PW)
    a.start()

    submit_many(a, ALICE, ALICE_PW, ["carol@dead.test"], "m1 dead")
    submit_many(a, ALICE, ALICE_PW, ["x@other.test"], "m2 other")
    submit_many(a, DAVE, DAVE_PW, ["y@other.test"], "m3 from dave")
    submit_many(a, ALICE, ALICE_PW, ["carol@dead.test", "x@other.test"], "m4 mixed")
    submit_many(a, DAVE, DAVE_PW, ["z@dead.test"], "m5 dave dead")
    m1, m2, m3, m4, m5 = queued_after(a, 5)
    a.cli("queue", "hold", str(m2), check=True)

    # Usage: one selector kind at a time, and at least one.
    for bad in (["queue", "delete"], ["queue", "delete", str(m1), "--all"],
                ["queue", "delete", "--all", "--from", ALICE]):
        res = a.cli(*bad)
        assert res.returncode != 0, bad
    assert set(queue_ids(a)) == {m1, m2, m3, m4, m5}

    # A domain (any case, not subdomains): only messages wholly for it; the
    # mixed one is named and left alone.
    res = a.cli("queue", "delete", "--to-domain", "DEAD.test", "--from", ALICE, check=True)
    assert res.stdout_text.splitlines() == [
        f"deleted 1 message: {m1}",
        f"left alone (also pending for other domains; delete by id if you mean to): {m4}",
    ], res.stdout_text
    assert set(queue_ids(a)) == {m2, m3, m4, m5}
    assert a.cli("queue", "delete", "--to-domain", "test", check=True).stdout_text == \
        "deleted 0 messages\n"

    # A sender (any case).
    res = a.cli("queue", "delete", "--from", DAVE.upper(), check=True)
    assert res.stdout_text.strip() == f"deleted 2 messages: {m3} {m5}", res.stdout_text
    assert queue_ids(a) == {m2: True, m4: False}

    # Everything, held messages included.
    res = a.cli("queue", "delete", "--all", check=True)
    assert res.stdout_text.strip() == f"deleted 2 messages: {m2} {m4}", res.stdout_text
    assert queue_json(a) == {"count": 0, "total_size": 0, "messages": []}

    time.sleep(2)  # a bounce would be delivered locally by now
    assert messages(a, ALICE, ALICE_PW) == []
    assert messages(a, DAVE, DAVE_PW) == []


def test_list_and_show_json(world):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, SLOW)
    assert queue_json(a) == {"count": 0, "total_size": 0, "messages": []}
    a.start()
    submit_many(a, ALICE, ALICE_PW, ["carol@dead.test", "Eve@Dead.test"], "json one")
    [qid] = queued_after(a, 1)
    wait_until(lambda: "attempts: 1" in queue_show(a, qid), interval=0.2, what="an attempt")

    doc = queue_json(a)
    assert doc["count"] == 1
    [m] = doc["messages"]
    assert doc["total_size"] == m["size"] > 0
    assert m["id"] == qid and m["sender"] == ALICE
    assert m["attempts"] == 1 and m["held"] is False and m["delay_warning_sent"] is False
    for field in ("arrived", "next_attempt"):
        time.strptime(m[field], "%Y-%m-%dT%H:%M:%SZ")
    assert set(m) >= {"envid", "ret", "smtputf8", "eight_bit", "recipients"}
    assert [r["address"] for r in m["recipients"]] == ["carol@dead.test", "Eve@Dead.test"]
    for r in m["recipients"]:
        assert r["domain"] == "dead.test" and r["status"] == "pending", r
        assert r["last_reply"].startswith("451"), r
        assert set(r) >= {"remote_host", "next_hop", "updated", "orcpt", "notify"}

    shown = json.loads(a.cli("queue", "show", str(qid), "--json", check=True).stdout_text)
    assert {k: v for k, v in shown.items() if k != "header"} == m
    assert "Subject: json one\r\n" in shown["header"] and "body" not in shown
    full = json.loads(a.cli("queue", "show", str(qid), "--json", "--body",
                            check=True).stdout_text)
    assert full["body"].endswith("body of json one\r\n")
    assert a.cli("queue", "show", "999", "--json").returncode != 0
