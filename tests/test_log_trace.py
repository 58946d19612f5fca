"""Following one message through the logs (issue 19, "Logs you can
follow"; issue 14, point 2), with the real binary.

In test_relay.py's world (`a.test` on 127.0.0.2, the test DNS server on
127.0.0.1), `c.test` is a scripted SMTP peer written here (127.0.0.5, the
same port) that greylists: its first answer to `RCPT TO:<grey@c.test>` is
`451 4.7.1 ... Greylisted`, its second `550 5.1.1 ... No such user`.
alice@a.test submits one message there; A defers it, tries again a second
later, gets the refusal and bounces it to alice.

Then A's log, in the text format and in the JSON format, must tell that
story under one id, the one of `250 2.0.0 Ok: queued as ID`:

- every line about the message carries `queue_id=ID` (on the line or on
  its span: `relay{queue_id=ID}`), from the `delivery: message accepted` line
  to the last attempt;
- the acceptance line names the Message-ID, the sender, the recipient
  count and the size;
- the deferral is logged at INFO with the remote reply (`Greylisted`), the
  recipient, the MX host and the next attempt's time;
- the bounce's line has its own queue id and `orig=ID`; the bounce's own
  delivery carries its id;
- no line holds Rust's debug form (`Some(`, `["`, `{ field: ...}`).
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl

from harness import ScriptedServer, wait_until
from test_relay import (  # noqa: F401 - `world` is a fixture
    A_IP, ALICE, ALICE_PW, B_IP, BOB, BOB_PW, DELIVERY_TIMEOUT, messages, world,
)

C_IP = "127.0.0.5"
GREY = "grey@c.test"
FAST = {"retry": ["1s"], "max_age": "1h", "poll_interval": "1s"}
GREYLISTED = "451 4.7.1 <grey@c.test>: Recipient address rejected: Greylisted, try again in 1s"
REFUSED = "550 5.1.1 <grey@c.test>: No such user here"
MESSAGE_ID = "<trace.1@client.a.test>"
# Rust's Debug output: Option, a list of strings, a struct or tuple dump.
DEBUG = re.compile(r'Some\(|None\b|\["|\[\(|\w \{ \w+: ')


class GreylistingPeer(ScriptedServer):
    """A scripted SMTP server: RCPT is answered from `replies` in turn
    (the last one repeats); records the replies it gave."""

    def __init__(self, ip, port, replies):
        self.replies = list(replies)
        self.given: list[str] = []
        super().__init__(ip, port)

    def _session(self, conn):
        conn.settimeout(30)
        f = conn.makefile("rb")

        def say(line):
            conn.sendall(line.encode() + b"\r\n")

        try:
            say("220 mx.c.test ESMTP greylisting peer")
            accepted = 0
            while raw := f.readline():
                upper = raw.decode("utf-8", "replace").rstrip("\r\n").upper()
                if upper.startswith("EHLO"):
                    say("250-mx.c.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES")
                elif upper.startswith("MAIL FROM:"):
                    accepted = 0
                    say("250 2.1.0 Ok")
                elif upper.startswith("RCPT TO:"):
                    reply = self.replies[min(len(self.given), len(self.replies) - 1)]
                    self.given.append(reply)
                    accepted += reply.startswith("2")
                    say(reply)
                elif upper == "DATA":
                    if not accepted:
                        say("554 5.5.1 No valid recipients")
                        continue
                    say("354 go ahead")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                    say("250 2.0.0 Ok: queued")
                elif upper == "RSET":
                    say("250 2.0.0 Ok")
                elif upper == "QUIT":
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("502 5.5.2 Command not recognized")
        except OSError:
            return
        finally:
            conn.close()


def submit(srv, to: str = GREY) -> str:
    """alice's message to `to` (grey@c.test) over submission; returns the
    queue id of the `250`."""
    host, port = srv.ports["submission"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    msg = (f"From: <{ALICE}>\r\nTo: <{to}>\r\nSubject: trace me\r\n"
           f"Message-ID: {MESSAGE_ID}\r\n"
           "Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n\r\nHello.\r\n").encode()
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        s.login(ALICE, ALICE_PW)
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt(to)[0] == 250
        code, reply = s.data(msg)
    assert code == 250, reply
    m = re.fullmatch(r"2\.0\.0 Ok: queued as ([0-9A-F]{18})", reply.decode())
    assert m, reply
    return m.group(1)


def run_story(world, log_format):
    """Runs the story on A with `[log] format = log_format`; returns
    (queue id, A's log lines)."""
    world.dns.add("c.test", "MX", (10, "mx.c.test"))
    world.dns.add("mx.c.test", "A", C_IP)
    peer = GreylistingPeer(C_IP, world.port, [GREYLISTED, REFUSED])
    try:
        a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST)
        with a.config.open("a", encoding="utf-8") as f:
            f.write(f'\n[log]\nformat = "{log_format}"\n')
        a.start()
        qid = submit(a)
        wait_until(lambda: any(b"Greylisted" in m or b"No such user" in m
                               for m in messages(a, ALICE, ALICE_PW)),
                   timeout=DELIVERY_TIMEOUT, interval=0.3, what="the bounce in alice's INBOX")
        assert peer.given == [GREYLISTED, REFUSED]
        # The bounce's own delivery is logged once it is stored.
        wait_until(lambda: any("relay: delivered" in l and ALICE in l
                               for l in a.stderr_tail(200000).splitlines()),
                   timeout=10, what="the bounce's delivery line")
        return qid, a.stderr_tail(200000).splitlines()
    finally:
        peer.stop()


def about(line: str) -> bool:
    """Whether a log line is about the traced message (names its
    recipient, its Message-ID or the peer's replies)."""
    return any(k in line for k in (GREY, MESSAGE_ID, "Greylisted", "No such user here"))


def test_one_id_follows_the_message_in_the_text_log(world):
    qid, lines = run_story(world, "text")
    mine = [l for l in lines if f"queue_id={qid}" in l]
    assert mine, "\n".join(lines)

    # Every line about the message carries its id (the bounce's line
    # names it as orig=).
    stray = [l for l in lines if about(l) and f"queue_id={qid}" not in l and f"orig={qid}" not in l]
    assert not stray, "\n".join(stray)

    [accepted] = [l for l in mine if "delivery: message accepted" in l]
    assert " INFO " in accepted
    for field in (f"message_id={MESSAGE_ID}", f"from={ALICE}", "nrcpt=1", "size=",
                  "client=127.0.0.1"):
        assert field in accepted, accepted

    [deferred] = [l for l in mine if "relay: deferred" in l]
    assert " INFO " in deferred
    assert f"relay{{queue_id={qid}}}" in deferred
    for field in (f"rcpt={GREY}", "host=mx.c.test", "Greylisted, try again in 1s",
                  "attempt=1"):
        assert field in deferred, deferred
    assert re.search(r"next_attempt=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", deferred), deferred

    [failed] = [l for l in mine if "relay: failed" in l]
    assert " INFO " in failed and "550 5.1.1" in failed and "attempt=2" in failed, failed

    [bounce] = [l for l in lines if f"orig={qid}" in l]
    assert "relay: delivery status notification queued" in bounce and " INFO " in bounce
    bounce_id = re.search(r"queue_id=([0-9A-F]{18})", bounce).group(1)
    assert bounce_id != qid
    assert "kind=failed" in bounce and f"to={ALICE}" in bounce, bounce
    # The bounce's own delivery (to alice, locally) carries its id.
    assert any(f"relay{{queue_id={bounce_id}}}" in l and "relay: delivered" in l
               and f"rcpt={ALICE}" in l for l in lines), "\n".join(lines)

    debug = [l for l in lines if DEBUG.search(l)]
    assert not debug, "\n".join(debug)


def field_values(event: dict, name: str) -> list[str]:
    """The values of `name` on a JSON event and on its spans."""
    out = []
    if name in event.get("fields", {}):
        out.append(str(event["fields"][name]))
    for span in event.get("spans", []):
        if name in span:
            out.append(str(span[name]))
    return out


def test_one_id_follows_the_message_in_the_json_log(world):
    qid, lines = run_story(world, "json")
    events = []
    for line in lines:
        if line.startswith("{"):
            events.append(json.loads(line))
    assert events

    def text(e):
        return json.dumps(e, ensure_ascii=False)

    mine = [e for e in events if qid in field_values(e, "queue_id")]
    stray = [e for e in events if about(text(e)) and qid not in field_values(e, "queue_id")
             and qid not in field_values(e, "orig")]
    assert not stray, "\n".join(map(text, stray))

    [accepted] = [e for e in mine if e["fields"]["message"] == "delivery: message accepted"]
    assert accepted["level"] == "INFO"
    assert accepted["fields"]["message_id"] == MESSAGE_ID
    assert accepted["fields"]["nrcpt"] == 1

    [deferred] = [e for e in mine if e["fields"]["message"] == "relay: deferred"]
    assert deferred["level"] == "INFO"
    assert deferred["fields"]["reply"].startswith("451 4.7.1"), deferred
    assert "Greylisted" in deferred["fields"]["reply"]
    assert deferred["fields"]["rcpt"] == GREY and deferred["fields"]["host"] == "mx.c.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", deferred["fields"]["next_attempt"])

    [bounce] = [e for e in events if qid in field_values(e, "orig")]
    assert bounce["fields"]["queue_id"] != qid
    assert bounce["fields"]["kind"] == "failed"

    debug = [text(e) for e in events if DEBUG.search(text(e))]
    assert not debug, "\n".join(debug)


def test_queue_commands_take_the_id_of_the_250(world):
    """While the peer keeps greylisting, the message waits in the queue:
    `queue show`, `queue show --json` and `queue delete` take the id of
    the `250` (the one in the log) as well as the number of `queue list`."""
    world.dns.add("c.test", "MX", (10, "mx.c.test"))
    world.dns.add("mx.c.test", "A", C_IP)
    peer = GreylistingPeer(C_IP, world.port, [GREYLISTED])
    try:
        a = world.make("a.test", A_IP, ALICE, ALICE_PW, {**FAST, "retry": ["1h"]}).start()
        qid = submit(a)
        wait_until(lambda: "relay: deferred" in a.stderr_tail(200000), timeout=DELIVERY_TIMEOUT,
                   what="the deferral")
        listing = a.cli("queue", "list", check=True).stdout_text
        assert f"  {ALICE}  queue_id={qid}\n" in listing, listing
        shown = a.cli("queue", "show", qid, check=True).stdout_text
        assert f"queue id: {qid}" in shown and "Greylisted" in shown, shown
        doc = json.loads(a.cli("queue", "show", qid.lower(), "--json", check=True).stdout_text)
        assert doc["queue_id"] == qid and doc["recipients"][0]["address"] == GREY
        assert a.cli("queue", "show", str(doc["id"]), check=True).stdout_text == shown
        assert a.cli("queue", "delete", qid, check=True).returncode == 0
        gone = a.cli("queue", "show", qid)
        assert gone.returncode != 0 and qid in gone.stderr_text, gone.stderr_text
    finally:
        peer.stop()


def test_one_message_followed_across_two_servers(world):
    """A relays alice's message to B (another mailgate): A's delivery line
    carries B's `250 ... queued as B_ID`, and B's own lines carry B_ID and
    the same Message-ID, so an administrator of both follows it from
    submission to bob's mailbox by grepping one id, then the next."""
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST).start()
    b = world.make("b.test", B_IP, BOB, BOB_PW, FAST).start()
    qid = submit(a, to=BOB)
    wait_until(lambda: messages(b, BOB, BOB_PW), timeout=DELIVERY_TIMEOUT, interval=0.3,
               what="the message in bob's INBOX")
    wait_until(lambda: any("relay: delivered" in l and f"queue_id={qid}" in l
                           for l in a.stderr_tail(200000).splitlines()),
               timeout=10, what="A's delivery line")
    a_lines = a.stderr_tail(200000).splitlines()
    [delivered] = [l for l in a_lines if "relay: delivered" in l and f"queue_id={qid}" in l]
    assert f"rcpt={BOB}" in delivered and "host=mx.b.test" in delivered, delivered
    m = re.search(r"queued as ([0-9A-F]{18})", delivered)
    assert m, delivered
    b_id = m.group(1)
    assert b_id != qid

    b_lines = b.stderr_tail(200000).splitlines()
    [accepted] = [l for l in b_lines if "delivery: message accepted" in l
                  and f"queue_id={b_id}" in l]
    assert f"message_id={MESSAGE_ID}" in accepted and f"from={ALICE}" in accepted, accepted
    assert f"client={A_IP}" in accepted, accepted
    # Every line of B about the message carries B's id.
    stray = [l for l in b_lines if MESSAGE_ID in l and f"queue_id={b_id}" not in l]
    assert not stray, "\n".join(stray)
    debug = [l for l in a_lines + b_lines if DEBUG.search(l)]
    assert not debug, "\n".join(debug)
