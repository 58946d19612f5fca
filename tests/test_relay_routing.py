"""Next hops chosen by a routing plugin, and opportunistic TLS that fails
(issue 6).

- A routing plugin (the fixture host/policy/tests/fixtures/relay-router,
  `relay("[127.0.0.3]:PORT")` for b.test) sends alice's mail for bob@b.test
  from mailgate A (127.0.0.2) to mailgate B (127.0.0.3) through that next
  hop, although A's `[relay] port` leads nowhere, so MX routing could not
  have delivered it: `mailgate queue show` prints the next hop while B is
  down, and after B is up the message arrives over STARTTLS with A's DKIM
  signature.
- A real peer whose TLS handshake fails: Postfix offering STARTTLS with only
  TLS 1.0/1.1 enabled (which mailgate's client never speaks). mailgate logs
  the failed handshake, tries the same host again in plain text and
  delivers there once.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness import REPO_ROOT, wait_until
from test_postfix import (ALICE as PF_ALICE, PF_DOMAIN, PF_HOST, PF_IP, PF_USER, crlf,
                          dns, mailgate, make_message, postfix, submit_to_mailgate,
                          wait_for)  # noqa: F401 - fixtures
from test_relay import (A_IP, ALICE, ALICE_PW, B_IP, BOB, BOB_PW, header, queue_ids,
                        queue_show, submit, verify_dkim, wait_messages, world)  # noqa: F401

BUILD = REPO_ROOT / "plugins" / "target" / "wasm32-wasip2" / "release"


@pytest.fixture(scope="session")
def relay_router() -> Path:
    wasm = BUILD / "relay_router.wasm"
    if not wasm.is_file():
        subprocess.run([str(REPO_ROOT / "scripts" / "build-plugins")], check=True,
                       capture_output=True, timeout=900)
    return wasm


def dead_port(ip) -> int:
    import socket
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_routing_plugin_relays_through_its_next_hop(world, relay_router, tmp_path):
    slow = {"retry": ["1h"], "max_age": "5d", "poll_interval": "1s"}
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, slow, dkim=True)
    b = world.make("b.test", B_IP, BOB, BOB_PW, slow)
    hop = f"[{B_IP}]:{world.port}"
    pdir = tmp_path / "plugins"
    pdir.mkdir()
    (pdir / "relay_router.wasm").write_bytes(relay_router.read_bytes())
    text = a.config.read_text()
    # MX routing would now reach nobody: only the next hop has B's port.
    text, n = re.subn(rf"^port = {world.port}$", f"port = {dead_port(B_IP)}", text, flags=re.M)
    assert n == 1, text
    text += (f'\n[plugins]\ndir = "{pdir}"\n\n[[plugin]]\nname = "relay_router"\n'
             f'grants = ["config"]\nconfig = {{ "b.test" = "{hop}" }}\n')
    a.config.write_text(text)
    a.start()

    submit(a, ALICE, ALICE_PW, BOB, "via the next hop")
    [qid] = wait_until(lambda: list(queue_ids(a)), what="the message in A's queue")
    wait_until(lambda: "attempts: 1" in queue_show(a, qid), interval=0.2,
               what="the first attempt (B is down)")
    shown = queue_show(a, qid)
    assert f"recipient: <{BOB}> pending (451" in shown, shown
    assert f"next hop: {hop}" in shown, shown
    assert B_IP in shown  # the failure names the hop, not an MX host
    listing = a.cli("queue", "list", check=True).stdout_text
    assert f"{BOB} via {hop}" in listing, listing

    b.start()
    a.cli("queue", "flush", check=True)
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert b"Subject: via the next hop" in got
    received = header(got, "Received")[0]
    assert "with ESMTPS" in received and A_IP in received, received
    tags = verify_dkim(got, a.dkim_public)
    assert tags["d"] == "a.test", tags
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")
    assert not any(name == "mx.b.test" for name, _ in world.dns.queries), world.dns.queries


def test_failed_starttls_handshake_is_retried_in_plain_text(postfix, mailgate, dns):  # noqa: F811
    pf = postfix(virtual_domain=PF_DOMAIN, mailboxes=[PF_USER])
    # STARTTLS is offered, but no protocol mailgate speaks (TLS 1.2, 1.3):
    # every handshake fails.
    pf.main["smtpd_tls_protocols"] = "!SSLv2, !SSLv3, !TLSv1.2, !TLSv1.3"
    dns.add(PF_DOMAIN, "MX", (10, PF_HOST))
    dns.add(PF_HOST, "A", PF_IP)
    mg = mailgate(dns=dns, relay_port=pf.port)
    pf.start()

    msg = make_message("plain text after a failed handshake", PF_ALICE, PF_USER)
    submit_to_mailgate(mg, PF_USER, msg)
    [raw] = wait_for(pf, lambda: pf.maildir(PF_USER), f"the message in {PF_USER}'s Maildir")
    received = header(crlf(raw), "Received")[0]
    assert f"[{mg.ports['smtp'][0]}]" in received or "127.0.0.5" in received, received
    assert "using TLS" not in received and "ESMTPS" not in received, received
    wait_until(lambda: mg.cli("queue", "list", check=True).stdout_text
               == "Mail queue is empty\n", timeout=40, interval=0.3, what="the queue to empty")
    log = mg.stderr_tail(40000)
    assert "TLS handshake failed; trying the same host again in plain text" in log, log
    # One handshake failure, one plain-text delivery: no second message.
    assert len(pf.maildir(PF_USER)) == 1
    pf_log = pf.log_tail(20000)
    assert re.search(r"(SSL_accept error|TLS handshake|lost connection after STARTTLS)",
                     pf_log), pf_log
