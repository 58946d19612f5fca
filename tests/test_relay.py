"""The outbound relay end to end (issue 6): two real mailgate servers,
`a.test` on 127.0.0.2 and `b.test` on 127.0.0.3, both on the same SMTP port,
find each other through a DNS server the test runs on 127.0.0.1
(tests/dns_server.py), and relay mail with STARTTLS and DKIM.

- alice@a.test submits (587, STARTTLS, AUTH) to bob@b.test; B gets it over
  TLS with A's DKIM signature (verified here against the key published in
  the test DNS); bob reads it with POP3 and replies through B; alice reads
  the reply on A.
- A destination that refuses connections is retried (attempts visible in
  `mailgate queue show`) and bounced after `[queue] max_age` with an
  RFC 3464 report; a null-MX domain bounces at once.
- B stopped while A holds mail for it; after B is back, `mailgate queue
  flush` delivers each message exactly once.
- `queue hold / release / show / delete`.
- Inbound verification (`[inbound] verify = true` on both servers): B's copy
  of A's mail carries `Authentication-Results: mx.b.test; spf=pass;
  dkim=pass; dmarc=pass` (a.test publishes SPF `ip4:127.0.0.2 -all` and
  DMARC `p=reject`); a message forged as a.test, sent to B directly from
  127.0.0.1, is refused with `550 5.7.1` (or, with `dmarc_reject = false`,
  accepted marked `dmarc=fail`); a forged `Authentication-Results:` with
  B's name is removed.

The harness writes single-domain configurations; the configuration of
each server here is written by `write_host_config` below.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import re
import smtplib
import socket
import ssl
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from dns_server import DnsServer
from harness import Server, toml_value, wait_until

A_IP, B_IP, DEAD_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
ALICE, ALICE_PW = "alice@a.test", "alice-Relay-1"
BOB, BOB_PW = "bob@b.test", "bob-Relay-2"
SELECTOR = "s1"
DELIVERY_TIMEOUT = 30.0


# ------------------------------------------------------------------ helpers
def shared_free_port(*ips) -> int:
    """A port free on every address in `ips` (both servers' SMTP port)."""
    for _ in range(50):
        socks = []
        try:
            first = socket.socket()
            first.bind((ips[0], 0))
            socks.append(first)
            port = first.getsockname()[1]
            for ip in ips[1:]:
                s = socket.socket()
                s.bind((ip, port))
                socks.append(s)
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no port free on all of " + ", ".join(ips))


def make_cert(directory, hostname):
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={hostname}", "-addext", f"subjectAltName=DNS:{hostname}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def write_host_config(srv: Server, *, domain, ip, smtp_port, dns, queue, dkim_key=None,
                      inbound=None):
    hostname = f"mx.{domain}"
    cert, key = make_cert(srv.workdir, hostname)
    lines = [
        f"hostname = {toml_value(hostname)}",
        f"data_dir = {toml_value(str(srv.data_dir))}",
        f"domains = {toml_value([domain])}",
        "shutdown_timeout = 5",
        "",
        "[listen]",
        f'smtp = "{ip}:{smtp_port}"',
        f'submission = "{ip}:0"',
        f'pop3 = "{ip}:0"',
        "",
        "[tls]",
        f"cert = {toml_value(str(cert))}",
        f"key = {toml_value(str(key))}",
        "",
        "[auth]",
        # POP3 in the tests logs in without STLS; submission still uses TLS.
        "trust_loopback = true",
        "failure_delay_ms = 20",
        "",
        "[relay]",
        f'nameservers = ["{dns.nameserver}"]',
        f"port = {smtp_port}",
        f'source_ip = "{ip}"',
        'connect_timeout = "3s"',
        'command_timeout = "20s"',
        "",
        "[queue]",
    ]
    lines += [f"{k} = {toml_value(v)}" for k, v in queue.items()]
    lines += ["", "[inbound]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in (inbound or {"verify": True}).items()]
    if dkim_key:
        lines += ["", "[[dkim]]", f'domain = "{domain}"', f'selector = "{SELECTOR}"',
                  f"key = {toml_value(str(dkim_key))}"]
    srv.config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def submit(srv: Server, user, password, to, subject, body="Hello over the relay.\r\n"):
    host, port = srv.ports["submission"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    msg = (f"From: <{user}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n"
           f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n{body}").encode()
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        s.login(user, password)
        refused = s.sendmail(user, [to], msg)
    assert refused == {}, refused
    return msg


def messages(srv, user, password):
    try:
        return srv.messages(user, password)
    except Exception:  # noqa: BLE001 - the account may be locked by a moment
        return []


def wait_messages(srv, user, password, n, timeout=DELIVERY_TIMEOUT):
    return wait_until(lambda: (m := messages(srv, user, password)) and len(m) >= n and m,
                      timeout=timeout, interval=0.3, what=f"{n} message(s) for {user}")


def queue_ids(srv) -> dict[int, bool]:
    """{queue id: held} from `mailgate queue list`."""
    out = srv.cli("queue", "list", check=True).stdout_text
    return {int(m.group(1)): bool(m.group(2))
            for m in re.finditer(r"^(\d+)(!?)\s+\d+\s", out, re.M)}


def queue_show(srv, qid) -> str:
    return srv.cli("queue", "show", str(qid), check=True).stdout_text


def header(raw: bytes, name: str) -> list[str]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return msg.get_all(name) or []


# -------------------------------------------------- DKIM verification (RFC 6376)
def _relaxed_header(name: str, value: str) -> bytes:
    value = re.sub(r"\r\n(?=[ \t])", "", value)
    value = re.sub(r"[ \t]+", " ", value).strip(" ")
    return f"{name.lower().strip()}:{value}".encode()


def _relaxed_body(body: bytes) -> bytes:
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [re.sub(rb"[ \t]+", b" ", ln).rstrip(b" ") for ln in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(ln + b"\r\n" for ln in lines)


def _split_headers(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + "\r\n" + line.decode())
        else:
            name, _, value = line.decode().partition(":")
            fields.append((name, value))
    return fields, body


def verify_dkim(raw: bytes, public_key_b64: str):
    """Checks the first DKIM-Signature (relaxed/relaxed, rsa-sha256)."""
    fields, body = _split_headers(raw)
    sig_index = next(i for i, (n, _) in enumerate(fields) if n.lower() == "dkim-signature")
    sig_value = fields[sig_index][1]
    tags = dict((k.strip(), re.sub(r"\s+", "", v)) for k, _, v in
                (t.partition("=") for t in sig_value.split(";") if "=" in t))
    assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed", tags
    body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest()).decode()
    assert body_hash == tags["bh"], "body hash mismatch"
    used = set()
    data = b""
    for name in tags["h"].split(":"):
        for i in range(len(fields) - 1, -1, -1):
            if i not in used and i != sig_index and fields[i][0].lower() == name.lower():
                used.add(i)
                data += _relaxed_header(*fields[i]) + b"\r\n"
                break
    unsigned = re.sub(r"(\bb=)[^;]*", r"\1", sig_value)
    data += _relaxed_header("DKIM-Signature", unsigned)
    key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
    key.verify(base64.b64decode(tags["b"]), data, padding.PKCS1v15(), hashes.SHA256())
    return tags


# ------------------------------------------------------------------ fixtures

def stop_world(made, dns):
    """Stops the servers a world made (each must exit 0) and its DNS
    server; fails the test with the stderr of any that did not."""
    problems = []
    for srv in made:
        if srv.proc is not None:
            rc = srv.stop()
            if rc != 0:
                problems.append(f"{srv.workdir.name} exited {rc}:\n{srv.stderr_tail()}")
    dns.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)

@pytest.fixture
def world(mailgate_bin, tmp_path):
    """Makes the DNS and the two servers (not started); stops everything."""
    dns = DnsServer("127.0.0.1")
    port = shared_free_port(A_IP, B_IP)
    made = []

    def make(domain, ip, user, password, queue, dkim=False, inbound=None):
        srv = Server(binary=mailgate_bin, workdir=tmp_path / domain)
        key = None
        if dkim:
            key = tmp_path / f"{domain}.dkim.pem"
            out = srv.cli("dkim", "generate", domain, "--selector", SELECTOR, "--bits", "1024",
                          "--out", str(key), check=True).stdout_text
            value = re.search(r"^(v=DKIM1;.*)$", out, re.M).group(1)
            dns.add(f"{SELECTOR}._domainkey.{domain}", "TXT", value)
            srv.dkim_public = value.split("p=", 1)[1]
        write_host_config(srv, domain=domain, ip=ip, smtp_port=port, dns=dns, queue=queue,
                          dkim_key=key, inbound=inbound)
        srv.add_user(user, password)
        made.append(srv)
        return srv

    dns.add("a.test", "MX", (10, "mx.a.test"))
    dns.add("mx.a.test", "A", A_IP)
    dns.add("a.test", "TXT", f"v=spf1 ip4:{A_IP} -all")
    dns.add("_dmarc.a.test", "TXT", "v=DMARC1; p=reject")
    dns.add("b.test", "MX", (10, "mx.b.test"))
    dns.add("mx.b.test", "A", B_IP)
    dns.add("dead.test", "MX", (10, "mx.dead.test"))
    dns.add("mx.dead.test", "A", DEAD_IP)  # nothing listens there
    dns.add("null.test", "MX", (0, "."))  # RFC 7505: accepts no mail
    dns.add("null.test", "A", DEAD_IP)
    world_ = type("World", (), {"make": staticmethod(make), "dns": dns, "port": port})
    yield world_
    stop_world(made, dns)


FAST = {"retry": ["1s"], "max_age": "1h", "poll_interval": "1s"}


# --------------------------------------------------------------------- tests
def test_submission_relays_with_tls_and_dkim_and_the_reply_comes_back(world):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST, dkim=True).start()
    b = world.make("b.test", B_IP, BOB, BOB_PW, FAST).start()

    submit(a, ALICE, ALICE_PW, BOB, "hello bob")
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert b"Subject: hello bob" in got
    # B's trace header: received from A's address, over TLS.
    received = header(got, "Received")[0]
    assert "with ESMTPS" in received and A_IP in received, received
    assert header(got, "Return-Path") == [f"<{ALICE}>"]
    tags = verify_dkim(got, a.dkim_public)
    assert tags["d"] == "a.test" and tags["s"] == SELECTOR
    # B checked SPF, DKIM and DMARC and says so (RFC 8601), under its trace.
    [results] = auth_results(got)
    assert results["authserv-id"] == "mx.b.test", results
    assert results["spf"] == "pass" and results["dkim"] == "pass" and results["dmarc"] == "pass", \
        results
    assert "smtp.mailfrom=a.test" in results["raw"] and "header.d=a.test" in results["raw"]
    assert "header.from=a.test" in results["raw"], results
    fields = [ln.split(b":", 1)[0] for ln in got.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
              if ln[:1] not in (b" ", b"\t")]
    assert fields[:3] == [b"Return-Path", b"Received", b"Authentication-Results"], fields
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")

    submit(b, BOB, BOB_PW, ALICE, "re hello bob", body="Got it.\r\n")
    [reply] = wait_messages(a, ALICE, ALICE_PW, 1)
    assert b"Subject: re hello bob" in reply and b"Got it." in reply
    assert "with ESMTPS" in header(reply, "Received")[0]
    assert not header(reply, "DKIM-Signature")  # B has no key
    # b.test publishes neither SPF nor DMARC, and B does not sign.
    [results] = auth_results(reply)
    assert results["authserv-id"] == "mx.a.test"
    assert (results["spf"], results["dkim"], results["dmarc"]) == ("none", "none", "none"), results
    wait_until(lambda: queue_ids(b) == {}, what="B's queue to empty")


def auth_results(raw: bytes) -> list[dict]:
    """Each Authentication-Results field: authserv-id, method -> result, raw."""
    out = []
    for value in header(raw, "Authentication-Results"):
        flat = re.sub(r"\s+", " ", value).strip()
        parts = [p.strip() for p in flat.split(";")]
        entry = {"authserv-id": parts[0], "raw": flat}
        for p in parts[1:]:
            method, _, rest = p.partition("=")
            entry.setdefault(method.strip(), rest.split(" ", 1)[0])
        out.append(entry)
    return out


def forge(b: Server, port: int, body: bytes, mail_from=ALICE):
    """Sends `body` to bob on B straight from 127.0.0.1 (not A's address)."""
    with smtplib.SMTP(B_IP, port, local_hostname="forger.test", timeout=30,
                      source_address=("127.0.0.1", 0)) as s:
        s.ehlo()
        return s.sendmail(mail_from, [BOB], body)


FORGED = (f"From: Alice <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: forged\r\n"
          "Message-ID: <forged@test>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n"
          "Please wire the money.\r\n").encode()


def test_dmarc_reject_refuses_a_forged_sender_sent_around_a(world):
    b = world.make("b.test", B_IP, BOB, BOB_PW, FAST).start()
    with pytest.raises(smtplib.SMTPDataError) as e:
        forge(b, world.port, FORGED)
    assert e.value.smtp_code == 550, e.value
    assert e.value.smtp_error.startswith(b"5.7.1") and b"DMARC" in e.value.smtp_error, e.value
    # With a null sender SPF checks the HELO name instead; DMARC still fails.
    with pytest.raises(smtplib.SMTPDataError) as e:
        forge(b, world.port, FORGED, mail_from="")
    assert e.value.smtp_code == 550, e.value
    time.sleep(0.5)
    assert messages(b, BOB, BOB_PW) == []
    # A domain without DMARC is delivered, marked: nothing to enforce.
    # (It exists: [inbound] reject_unknown_sender_domain is on.)
    world.dns.add("nodmarc.test", "A", "192.0.2.1")
    other = FORGED.replace(ALICE.encode(), b"eve@nodmarc.test")
    assert forge(b, world.port, other, mail_from="eve@nodmarc.test") == {}
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    [results] = auth_results(got)
    assert (results["spf"], results["dkim"], results["dmarc"]) == ("none", "none", "none"), \
        results


def test_dmarc_failure_is_only_marked_when_dmarc_reject_is_off(world):
    b = world.make("b.test", B_IP, BOB, BOB_PW, FAST,
                   inbound={"verify": True, "dmarc_reject": False, "timeout": "5s"}).start()
    # A forged verdict under B's own name is removed; another host's is kept.
    planted = (b"Authentication-Results: mx.b.test; spf=pass; dkim=pass; dmarc=pass\r\n"
               b"Authentication-Results: elsewhere.test; dmarc=pass\r\n") + FORGED
    assert forge(b, world.port, planted) == {}
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    results = auth_results(got)
    assert [r["authserv-id"] for r in results] == ["mx.b.test", "elsewhere.test"], results
    mine = results[0]
    assert (mine["spf"], mine["dkim"], mine["dmarc"]) == ("fail", "none", "fail"), mine
    assert b"Please wire the money." in got


def dsn_parts(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts][:2] == ["text/plain", "message/delivery-status"]
    status_text = parts[1].as_string() if parts[1].is_multipart() else str(parts[1])
    return msg, parts, status_text


def test_unreachable_destination_is_retried_then_bounced_and_null_mx_bounces_at_once(world):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW,
                   {"retry": ["1s"], "max_age": "6s", "poll_interval": "1s"}).start()

    submit(a, ALICE, ALICE_PW, "carol@dead.test", "to a dead host")
    [qid] = wait_until(lambda: list(queue_ids(a)), what="the message in A's queue")

    def attempts():
        m = re.search(r"^attempts: (\d+)$", queue_show(a, qid), re.M)
        return int(m.group(1)) if m else 0

    wait_until(lambda: attempts() >= 2, timeout=DELIVERY_TIMEOUT, interval=0.2,
               what="two delivery attempts")
    shown = queue_show(a, qid)
    assert "recipient: <carol@dead.test> pending (451" in shown, shown
    listing = a.cli("queue", "list", check=True).stdout_text
    assert "carol@dead.test" in listing and "451" in listing, listing

    [bounce] = wait_messages(a, ALICE, ALICE_PW, 1)
    assert header(bounce, "Return-Path") == ["<>"]
    msg, parts, status = dsn_parts(bounce.split(b"\r\n", 1)[1])
    assert msg["To"] and ALICE in msg["To"]
    assert "Final-Recipient: rfc822; carol@dead.test" in status, status
    assert "Action: failed" in status, status
    assert re.search(r"Status: 4\.\d+\.\d+", status), status
    assert b"Subject: to a dead host" in bounce  # the original (or its header) is returned
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")

    # Null MX (RFC 7505): refused without any connection, at the first attempt.
    started = time.monotonic()
    submit(a, ALICE, ALICE_PW, "nobody@null.test", "to a null mx")
    bounces = wait_messages(a, ALICE, ALICE_PW, 2, timeout=10)
    assert time.monotonic() - started < 10
    _, _, status = dsn_parts(bounces[1].split(b"\r\n", 1)[1])
    assert "Final-Recipient: rfc822; nobody@null.test" in status, status
    assert "Status: 5.1.10" in status, status
    assert not any(q[0] == "mx.null.test" for q in world.dns.queries)


def test_mail_waits_while_the_destination_is_down_and_flush_delivers_it_once(world):
    slow = {"retry": ["1h"], "max_age": "5d", "poll_interval": "1s"}
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, slow).start()
    b = world.make("b.test", B_IP, BOB, BOB_PW, slow).start()
    b.stop_clean()

    subjects = [f"queued {i}" for i in range(3)]
    for s in subjects:
        submit(a, ALICE, ALICE_PW, BOB, s)
    wait_until(lambda: len(queue_ids(a)) == 3, what="3 messages queued on A")
    for qid in queue_ids(a):
        wait_until(lambda: "attempts: 1" in queue_show(a, qid), interval=0.2,
                   what=f"the first attempt of {qid}")
        assert "pending (451" in queue_show(a, qid)

    b.start()
    time.sleep(2)  # the retry is an hour away: nothing moves by itself
    assert len(queue_ids(a)) == 3
    assert messages(b, BOB, BOB_PW) == []
    out = a.cli("queue", "flush", check=True).stdout_text
    assert out.startswith("3 messages due now"), out

    got = wait_messages(b, BOB, BOB_PW, 3)
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")
    time.sleep(2)  # anything duplicated would arrive by now
    got = messages(b, BOB, BOB_PW)
    seen = sorted(header(m, "Subject")[0] for m in got)
    assert seen == sorted(subjects), seen
    assert messages(a, ALICE, ALICE_PW) == []  # no bounce, no warning


def test_queue_hold_release_show_delete(world):
    slow = {"retry": ["1h"], "max_age": "5d", "poll_interval": "1s"}
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, slow).start()
    b = world.make("b.test", B_IP, BOB, BOB_PW, slow).start()
    b.stop_clean()

    submit(a, ALICE, ALICE_PW, BOB, "held one")
    [qid] = wait_until(lambda: list(queue_ids(a)), what="the message in A's queue")
    wait_until(lambda: "attempts: 1" in queue_show(a, qid), interval=0.2, what="an attempt")

    assert a.cli("queue", "hold", str(qid), check=True).stdout_text.strip() == f"held {qid}"
    assert queue_ids(a) == {qid: True}
    b.start()
    # A held message is not flushed, not even by id.
    assert a.cli("queue", "flush", check=True).stdout_text.startswith("0 messages")
    assert a.cli("queue", "flush", str(qid)).returncode != 0
    time.sleep(2)
    assert messages(b, BOB, BOB_PW) == []

    shown = queue_show(a, qid)
    for line in (f"id: {qid}", f"sender: <{ALICE}>", "held: yes", "attempts: 1",
                 f"recipient: <{BOB}> pending", "Subject: held one"):
        assert line in shown, shown
    assert "Hello over the relay." not in shown  # the header only...
    assert "Hello over the relay." in a.cli("queue", "show", str(qid), "--body",
                                            check=True).stdout_text  # ...unless asked

    a.cli("queue", "release", str(qid), check=True)
    assert queue_ids(a) == {qid: False}
    a.cli("queue", "flush", str(qid), check=True)
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert b"Subject: held one" in got
    wait_until(lambda: queue_ids(a) == {}, what="A's queue to empty")

    # Delete: gone without a bounce.
    submit(a, ALICE, ALICE_PW, "carol@dead.test", "deleted one")
    [qid2] = wait_until(lambda: list(queue_ids(a)), what="the second message queued")
    assert a.cli("queue", "delete", str(qid2), check=True).stdout_text.strip() == f"deleted {qid2}"
    assert a.cli("queue", "list", check=True).stdout_text == "Mail queue is empty\n"
    bad = a.cli("queue", "show", str(qid2))
    assert bad.returncode != 0 and str(qid2) in bad.stderr_text
    assert a.cli("queue", "delete", "nonsense").returncode != 0
    time.sleep(2)
    assert messages(a, ALICE, ALICE_PW) == []
