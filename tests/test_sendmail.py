"""`mailgate sendmail` (issue 19): the sendmail command for programs that
send mail without SMTP, with the real binary, against a running server.

The command reads the configuration, reaches the server's `smtp` listener
on loopback and hands the message over; its exit code is sendmail's
(sysexits.h), which is what cron and PHP's mail() look at.
"""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
from pathlib import Path

from harness import DOMAIN, HOSTNAME, free_port
from test_trusted_networks import DAVE, peer_messages, world  # noqa: F401  (fixture)
from test_unknown_sender_domain import dns, make  # noqa: F401  (fixture)

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"


def start_fixed(server_factory):
    """A server whose smtp listener has a fixed port (sendmail reads the
    port from the configuration file)."""
    port = free_port("127.0.0.1")
    return server_factory(listen={"smtp": f"127.0.0.1:{port}", "pop3": "127.0.0.1:0"})


def sendmail(srv, *args, message: bytes, argv0=None, env=None):
    binary = str(srv.binary)
    cmd = [binary, "sendmail", *args]
    if argv0 is not None:
        # Started through a link named sendmail: no subcommand word.
        link = Path(srv.workdir) / argv0
        if not link.exists():
            link.symlink_to(binary)
        cmd = [str(link), *args]
    return subprocess.run(cmd, input=message, capture_output=True, timeout=60,
                          env=dict(os.environ, MAILGATE_CONFIG=str(srv.config), **(env or {})))


def only_message(srv, user):
    got = srv.messages(user)
    assert len(got) == 1, f"{user} has {len(got)} messages"
    return email.message_from_bytes(got[0], policy=email.policy.default)


def test_t_delivers_to_header_recipients_and_hides_bcc(server_factory):
    srv = start_fixed(server_factory)
    msg = (f"To: Bob <{BOB}>\nCc: {CAROL}\nBcc: {ALICE}\nSubject: nightly report\n\n"
           "all is well\n.\nthis line is after a lone dot\n").encode()
    res = sendmail(srv, "-t", "-oi", "-f", f"cron@{DOMAIN}", "-F", "Cron Daemon", message=msg)
    assert res.returncode == 0, res.stderr
    for user in (BOB, CAROL, ALICE):
        m = only_message(srv, user)
        assert m["Subject"] == "nightly report"
        assert m["Bcc"] is None, f"Bcc reached {user}"
        # Added because the message had none (Postfix's cleanup does this).
        assert m["From"].addresses[0].addr_spec == f"cron@{DOMAIN}"
        assert m["From"].addresses[0].display_name == "Cron Daemon"
        assert m["Date"] is not None and m["Message-ID"].endswith(f"@{HOSTNAME}>")
        # -oi: the lone dot is data, and so is what follows it.
        assert "this line is after a lone dot" in m.get_content()


def test_without_i_a_lone_dot_ends_the_message_and_args_name_recipients(server_factory):
    srv = start_fixed(server_factory)
    msg = b"Subject: dots\nFrom: app@example.test\n\nfirst\n.\nnever sent\n"
    res = sendmail(srv, BOB, message=msg)
    assert res.returncode == 0, res.stderr
    m = only_message(srv, BOB)
    body = m.get_content()
    assert "first" in body and "never sent" not in body
    assert m["From"] == "app@example.test", "an existing From: is kept"


def test_a_link_named_sendmail_behaves_as_the_subcommand(server_factory):
    srv = start_fixed(server_factory)
    res = sendmail(srv, "-i", CAROL, message=b"Subject: via link\n\nhello\n", argv0="sendmail")
    assert res.returncode == 0, res.stderr
    assert only_message(srv, CAROL)["Subject"] == "via link"


def test_refusals_give_sendmail_exit_codes(server_factory):
    srv = start_fixed(server_factory)
    # An unknown local user: refused for good (EX_NOUSER), and said.
    res = sendmail(srv, f"nobody@{DOMAIN}", message=b"Subject: x\n\nx\n")
    assert res.returncode == 67, (res.returncode, res.stderr)
    assert b"nobody@example.test" in res.stderr and b"5.1.1" in res.stderr
    # Another domain from an address not in [relay] trusted_networks:
    # refused, with the key to set named.
    res = sendmail(srv, "someone@elsewhere.test", message=b"Subject: x\n\nx\n")
    assert res.returncode == 67, (res.returncode, res.stderr)
    assert b"trusted_networks" in res.stderr
    # No recipient at all: a bad message (EX_DATAERR).
    res = sendmail(srv, "-t", message=b"Subject: nobody named\n\nx\n")
    assert res.returncode == 65, res.stderr
    # Unsupported mode: usage (EX_USAGE) with a hint.
    res = sendmail(srv, "-bp", message=b"")
    assert res.returncode == 64 and b"queue list" in res.stderr
    assert srv.messages(BOB) == []


def test_server_down_is_a_temporary_failure(server_factory):
    srv = start_fixed(server_factory)
    srv.stop_clean()
    res = sendmail(srv, BOB, message=b"Subject: later\n\nx\n")
    assert res.returncode == 75, (res.returncode, res.stderr)
    assert b"mailgate serve" in res.stderr


def test_from_a_trusted_address_mail_reaches_another_domain(world):
    """With 127.0.0.1/32 in [relay] trusted_networks, sendmail's mail to
    another domain goes through the relay to the peer (a second mailgate
    found through the test DNS server)."""
    port = free_port("127.0.0.1")
    gw = world.make_gw(trusted=["127.0.0.1/32"], smtp=f"127.0.0.1:{port}")
    msg = f"To: {DAVE}\nSubject: from cron\n\nbackup done\n".encode()
    res = sendmail(gw, "-t", "-i", "-f", f"cron@{DOMAIN}", message=msg)
    assert res.returncode == 0, res.stderr
    [got] = peer_messages(world.peer, 1)
    assert b"Subject: from cron" in got and b"backup done" in got


def test_a_sender_domain_that_does_not_exist_is_refused_with_a_hint(server_factory, dns):
    """[inbound] reject_unknown_sender_domain applies to sendmail too (it
    talks SMTP to the smtp listener) unless its address is trusted."""
    port = free_port("127.0.0.1")
    srv = make(server_factory, dns, smtp=f"127.0.0.1:{port}")
    res = sendmail(srv, "-f", "app@nowhere.test", BOB, message=b"Subject: x\n\nx\n")
    assert res.returncode == 67, (res.returncode, res.stderr)
    assert b"5.1.8" in res.stderr and b"trusted_networks" in res.stderr, res.stderr
    assert srv.messages(BOB) == []
    trusted = make(server_factory, dns, smtp=f"127.0.0.1:{free_port('127.0.0.1')}",
                   trusted=["127.0.0.1/32"])
    res = sendmail(trusted, "-f", "app@nowhere.test", BOB, message=b"Subject: y\n\ny\n")
    assert res.returncode == 0, res.stderr
    assert len(trusted.messages(BOB)) == 1
