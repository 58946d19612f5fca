"""Quotas on every path (issue 11), against the real binary: an account's
`mailgate user quota` is what no delivery may pass, however the message
arrives (docs/operations.md, "Quotas").

- Port 25: three 21 KB messages to an account with 10 KB get `452 4.2.2`
  after the data, and GETQUOTAROOT stays within the limit; an account
  already full, or a `SIZE=` that cannot fit, gets `452 4.2.2` at RCPT.
- One over-quota recipient among others: the others get the message, the
  over-quota copy waits in the queue and is delivered once there is room
  (`queue flush`), never past the limit.
- An alias, or a plugin's forward, reaching a full account only:
  `452 4.2.2`; beside another recipient, the forwarded copy waits in the
  queue.
- Submission: a local recipient over quota gets `452 4.2.2`; the sender's
  Sent copy is not saved past the sender's own quota.
- LMTP, with and without plugins: one reply per recipient, `452 4.2.2`
  for the full one, `250` for the other.
- A bounce to a local sender who is over quota waits in the queue
  (`452 4.2.2` as its last reply) and arrives once there is room.
- An over-quota copy a plugin filed into a folder waits in the queue and
  is redelivered into that folder, not INBOX.
- IMAP APPENDs at once from several sessions take the account's quota
  lock, as deliveries do: together they never pass the limit.
"""

from __future__ import annotations

import imaplib
import re
import shutil
import smtplib
import threading
import time

import pytest

from harness import DOMAIN, USERS, make_message, wait_until, with_probe
from test_plugins import wasm  # noqa: F401  (fixture)
from test_submission import imap_sent, queued, submitter
from test_tls import messages as tls_messages
from test_tls import relay_to_nowhere, tls_server

ALICE, BOB, CAROL = (f"{u}@{DOMAIN}" for u in ("alice", "bob", "carol"))
LISTEN = {"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0", "pop3": "127.0.0.1:0",
          "lmtp": "127.0.0.1:0"}
KB = 1024


def big(subject: str, kb: int = 21, to: str = BOB) -> bytes:
    """A message of about `kb` KiB."""
    line = "x" * 70 + "\r\n"
    body = line * (kb * KB // len(line))
    return make_message(subject, body=body, to_addr=to)


def usage(srv, user) -> tuple[int, int | None]:
    """(used, limit) in KiB from IMAP GETQUOTAROOT (limit None: no quota)."""
    m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
    try:
        m.login(user, USERS[user])
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK", data
        text = b" ".join(d for d in data[1] if d)
        found = re.search(rb"STORAGE (\d+) (\d+)", text)
        if not found:
            return 0, None
        return int(found.group(1)), int(found.group(2))
    finally:
        m.logout()


def count(srv, user) -> int:
    if "pop3s" in srv.ports:  # a TLS server: clear-text logins are off
        return len(tls_messages(srv, user))
    return len(srv.messages(user, USERS[user]))


def quota(srv, user, value):
    srv.cli("user", "quota", user, value, check=True)


def send_without_size(srv, rcpts, msg, port="smtp"):
    """MAIL without SIZE= (smtplib's sendmail adds it), so that the check
    after the data is what answers. Returns ([RCPT codes], DATA reply)."""
    with smtplib.SMTP(*srv.ports[port], local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        assert s.mail("sender@remote.test")[0] == 250
        codes = [s.rcpt(r)[0] for r in rcpts]
        return codes, s.data(msg)


@pytest.fixture
def srv(server_factory):
    srv = server_factory(listen=LISTEN, start=False)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(relay_to_nowhere().replace('retry = ["1h"]', 'retry = ["1s"]'))
    return srv.start()


# ------------------------------------------------------------------ port 25
def test_port_25_refuses_what_does_not_fit_and_usage_stays_within(srv):
    quota(srv, BOB, "10K")
    for i in range(3):
        codes, (code, text) = send_without_size(srv, [BOB], big(f"big {i}"))
        assert codes == [250]
        assert code == 452 and text.startswith(b"4.2.2"), (code, text)
    used, limit = usage(srv, BOB)
    assert limit == 10 and used <= limit, (used, limit)
    assert count(srv, BOB) == 0
    # A small one still fits.
    codes, (code, _) = send_without_size(srv, [BOB], make_message("small", to_addr=BOB))
    assert code == 250
    assert count(srv, BOB) == 1


def test_rcpt_refuses_a_full_account_and_a_size_that_cannot_fit(srv):
    quota(srv, BOB, "50K")
    for i in range(2):
        srv.send("sender@remote.test", [BOB], big(f"fits {i}"))
    # smtplib announces SIZE=: 42 KiB used + 21 KiB cannot fit in 50.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        srv.send("sender@remote.test", [BOB], big("too big"))
    code, text = refused.value.recipients[BOB]
    assert code == 452 and text.startswith(b"4.2.2"), (code, text)
    # A small one still fits, SIZE= and all.
    srv.send("sender@remote.test", [BOB], make_message("small", to_addr=BOB))
    # Already over (the limit lowered under the usage): 452 at RCPT, even
    # without SIZE=.
    quota(srv, BOB, "10K")
    codes, (code, _) = send_without_size(srv, [BOB, ALICE], make_message("over"))
    assert codes == [452, 250]
    assert code == 250
    assert count(srv, BOB) == 3 and count(srv, ALICE) == 1


def test_one_over_quota_recipient_waits_in_the_queue_until_there_is_room(srv):
    quota(srv, BOB, "10K")
    codes, (code, text) = send_without_size(srv, [ALICE, BOB], big("shared", to=ALICE))
    assert codes == [250, 250] and code == 250, (code, text)
    assert count(srv, ALICE) == 1 and count(srv, BOB) == 0
    # Bob's copy is in the queue, retried (every second here) but not
    # delivered past the limit.
    [(_, sender, rcpts)] = queued(srv)
    assert sender == "sender@remote.test" and rcpts == [BOB], rcpts
    time.sleep(2.5)
    assert count(srv, BOB) == 0 and usage(srv, BOB)[0] <= 10
    assert "452 4.2.2" in srv.cli("queue", "list", check=True).stdout_text
    # Room again: the next attempt delivers it, once.
    quota(srv, BOB, "1M")
    srv.cli("queue", "flush", check=True)
    wait_until(lambda: count(srv, BOB) == 1, what="bob's copy redelivered")
    wait_until(lambda: queued(srv) == [], what="the queue emptied")
    raw = srv.messages(BOB, USERS[BOB])[0]
    assert raw.startswith(b"Return-Path: <sender@remote.test>\r\n"), raw[:200]
    assert count(srv, ALICE) == 1, "no second copy for alice"


def test_every_recipient_over_quota_is_452_and_nothing_is_queued(srv):
    quota(srv, BOB, "10K")
    quota(srv, CAROL, "10K")
    codes, (code, text) = send_without_size(srv, [BOB, CAROL], big("both full"))
    assert codes == [250, 250]
    assert code == 452 and text.startswith(b"4.2.2"), (code, text)
    assert queued(srv) == []


def test_an_alias_to_a_full_account(srv):
    srv.cli("alias", "add", f"team@{DOMAIN}", BOB, check=True)
    quota(srv, BOB, "10K")
    codes, (code, text) = send_without_size(srv, [f"team@{DOMAIN}"], big("to the team"))
    assert code == 452 and text.startswith(b"4.2.2"), (code, text)
    assert count(srv, BOB) == 0 and usage(srv, BOB)[0] <= 10


def test_a_plugins_forward_to_a_full_local_account(server_factory, wasm):  # noqa: F811
    """The example forwarder sends alice's mail to bob (no copy kept): bob
    being full, the message is refused; with carol as another recipient
    it is taken, and bob's forwarded copy waits in the queue."""
    srv = server_factory(listen=LISTEN, start=False)
    pdir = srv.workdir / "plugins"
    pdir.mkdir()
    shutil.copy(wasm / "forwarder.wasm", pdir / "forwarder.wasm")
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "forwarder"\n'
                'grants = ["config"]\n'
                f'config = {{ keep_copy = false, forward = {{ "{ALICE}" = ["{BOB}"] }} }}\n')
        f.write(relay_to_nowhere())
    srv.start()
    wait_until(lambda: "plugin loaded" in srv.stderr_tail(20000), what="plugin loaded")
    quota(srv, BOB, "10K")
    codes, (code, text) = send_without_size(srv, [ALICE], big("forwarded", to=ALICE))
    assert code == 452 and text.startswith(b"4.2.2"), (code, text)
    codes, (code, text) = send_without_size(srv, [ALICE, CAROL], big("forwarded too", to=ALICE))
    assert code == 250, (code, text)
    assert count(srv, CAROL) == 1 and count(srv, BOB) == 0 and count(srv, ALICE) == 0
    [(_, _, rcpts)] = queued(srv)
    assert rcpts == [BOB], rcpts
    assert usage(srv, BOB)[0] <= 10


# --------------------------------------------------------------- submission
@pytest.fixture
def sub(server_factory, tmp_path):
    return tls_server(server_factory, tmp_path,
                      extra=relay_to_nowhere() + "\n[submission]\nsave_sent = true\n")


def test_submission_to_a_full_local_account(sub):
    quota(sub, BOB, "10K")
    with submitter(sub, "587") as s:
        s.ehlo()
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt(BOB)[0] == 250
        code, text = s.data(big("submitted", to=BOB))
    assert code == 452 and text.startswith(b"4.2.2"), (code, text)
    assert imap_sent(sub, ALICE) == [], "nothing was sent, so nothing in Sent"


def test_the_sent_copy_is_not_saved_past_the_senders_quota(sub):
    quota(sub, ALICE, "10K")
    with submitter(sub, "465") as s:
        assert s.sendmail(ALICE, [BOB], big("sent by a full sender", to=BOB)) == {}
    with submitter(sub, "465") as s:
        assert s.sendmail(ALICE, [BOB], make_message("small", from_addr=ALICE,
                                                     to_addr=BOB)) == {}
    # Bob got both; Alice's Sent holds only what fits her 10 KiB.
    assert count(sub, BOB) == 2
    sent = imap_sent(sub, ALICE)
    assert [b"Subject: small" in raw for _, raw in sent] == [True], sent
    wait_until(lambda: "Sent copy is not saved" in sub.stderr_tail(20000),
               what="the WARN line about the Sent copy")


# --------------------------------------------------------------------- LMTP
def lmtp_replies(srv, rcpts, msg):
    with smtplib.LMTP(*srv.ports["lmtp"], local_hostname="mta.test", timeout=30) as s:
        s.ehlo()
        assert s.mail("sender@remote.test")[0] == 250
        for r in rcpts:
            assert s.rcpt(r)[0] == 250
        first = s.data(msg)
        return [first] + [s.getreply() for _ in rcpts[1:]]


def test_lmtp_answers_the_full_recipient_alone(srv):
    quota(srv, BOB, "10K")
    replies = lmtp_replies(srv, [ALICE, BOB], big("lmtp", to=ALICE))
    assert [c for c, _ in replies] == [250, 452], replies
    assert replies[1][1].startswith(b"4.2.2") and BOB.encode() in replies[1][1]
    assert count(srv, ALICE) == 1 and count(srv, BOB) == 0
    assert queued(srv) == [], "LMTP answers per recipient: nothing kept for later"


def test_lmtp_with_plugins_answers_the_full_recipient_alone(server_factory, wasm):  # noqa: F811
    srv = with_probe(server_factory(listen=LISTEN, start=False), wasm).start()
    quota(srv, BOB, "10K")
    replies = lmtp_replies(srv, [ALICE, BOB], big("lmtp with plugins", to=ALICE))
    assert [c for c, _ in replies] == [250, 452], replies
    assert count(srv, ALICE) == 1 and count(srv, BOB) == 0
    used, limit = usage(srv, BOB)
    assert used <= limit


def test_port_25_with_plugins_refuses_what_does_not_fit(server_factory, wasm):  # noqa: F811
    srv = with_probe(server_factory(listen=LISTEN, start=False), wasm).start()
    quota(srv, BOB, "10K")
    codes, (code, text) = send_without_size(srv, [BOB], big("with plugins"))
    assert code == 452 and text.startswith(b"4.2.2"), (code, text)
    assert count(srv, BOB) == 0


# ------------------------------------------------------------------ bounces
def test_a_bounce_to_a_full_local_sender_waits_for_room(server_factory, tmp_path):
    """Alice is full; what she sent to a remote domain fails for good
    (`max_age` passed), so she is owed a bounce: it waits in the queue
    until she has room, then arrives."""
    sub = tls_server(server_factory, tmp_path,
                     extra=relay_to_nowhere() + 'max_age = "1s"\n')
    # Full (a 1-byte quota) before she sends: sending is not storing.
    quota(sub, ALICE, "1")
    with submitter(sub, "465") as s:
        assert s.sendmail(ALICE, ["friend@remote.test"],
                          make_message("to nowhere", from_addr=ALICE,
                                       to_addr="friend@remote.test")) == {}
    # The message gives up at its next try (max_age passed).
    time.sleep(1.5)
    sub.cli("queue", "flush", check=True)

    def bounce_waiting():
        return [e for e in queued(sub) if e[1] == "" or e[1] == "MAILER-DAEMON"]

    wait_until(lambda: bounce_waiting() and "452 4.2.2" in sub.cli(
        "queue", "list", check=True).stdout_text, timeout=20, what="the bounce waiting")
    assert count(sub, ALICE) == 0
    quota(sub, ALICE, "none")
    sub.cli("queue", "flush", check=True)
    wait_until(lambda: count(sub, ALICE) == 1, timeout=20, what="the bounce delivered")


# ---------------------------------------------------- folders in the queue
def folder_count(srv, user, folder) -> int:
    """Messages in `folder` of `user` over IMAP (0 if it does not exist)."""
    m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
    try:
        m.login(user, USERS[user])
        typ, data = m.select(folder, readonly=True)
        return int(data[0]) if typ == "OK" else 0
    finally:
        m.logout()


def test_an_over_quota_copy_keeps_the_folder_a_plugin_chose(server_factory, wasm):  # noqa: F811
    """The example router files bob+lists@ into `lists`; bob is full, so
    his copy waits in the queue, and once he has room it lands in
    `lists`, where the plugin put it, not in INBOX."""
    srv = server_factory(listen=LISTEN, start=False)
    pdir = srv.workdir / "plugins"
    pdir.mkdir()
    shutil.copy(wasm / "router.wasm", pdir / "router.wasm")
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "router"\n'
                'grants = ["config"]\n')
        f.write(relay_to_nowhere().replace('retry = ["1h"]', 'retry = ["1s"]'))
    srv.start()
    wait_until(lambda: "plugin loaded" in srv.stderr_tail(20000), what="plugin loaded")
    quota(srv, BOB, "10K")
    tagged = f"bob+lists@{DOMAIN}"
    codes, (code, text) = send_without_size(srv, [ALICE, tagged], big("to a list", to=tagged))
    assert codes == [250, 250] and code == 250, (code, text)
    assert count(srv, ALICE) == 1
    [(_, _, rcpts)] = queued(srv)
    assert rcpts == [BOB], rcpts
    assert folder_count(srv, BOB, "lists") == 0 and count(srv, BOB) == 0
    quota(srv, BOB, "1M")
    srv.cli("queue", "flush", check=True)
    wait_until(lambda: folder_count(srv, BOB, "lists") == 1, what="bob's copy in lists")
    wait_until(lambda: queued(srv) == [], what="the queue emptied")
    assert count(srv, BOB) == 0, "not into INBOX"


# --------------------------------------------------------------------- IMAP
def test_imap_appends_at_once_never_pass_the_quota(srv):
    """Eight sessions APPEND a 6 KiB message each at the same moment to an
    account with room for one: the check and the store are one step per
    account (the lock deliveries take too), so exactly one is stored."""
    quota(srv, BOB, "10K")
    sessions = []
    for _ in range(8):
        m = imaplib.IMAP4(*srv.ports["imap"], timeout=30)
        m.login(BOB, USERS[BOB])
        sessions.append(m)
    msg = big("appended", kb=6)
    start = threading.Barrier(len(sessions))
    results = [None] * len(sessions)

    def append(i, m):
        start.wait()
        results[i] = m.append("INBOX", None, None, msg)

    threads = [threading.Thread(target=append, args=(i, m)) for i, m in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for m in sessions:
        m.logout()
    oks = [r for r in results if r and r[0] == "OK"]
    refused = [r for r in results if r and r[0] == "NO"]
    assert len(oks) == 1 and len(refused) == 7, results
    assert all(b"OVERQUOTA" in r[1][0] for r in refused), refused
    used, limit = usage(srv, BOB)
    assert used <= limit, (used, limit)
