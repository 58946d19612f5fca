"""Metrics and health checks (issue 14, point 1) with the real binary.

`[listen] metrics` serves /metrics (Prometheus text format), /healthz/live
and /healthz/ready; `mailgate healthcheck` asks the last one. The tests
scrape before and after real sessions (smtplib, poplib, imaplib, a plugin
call) and check that the counters moved; readiness turns 503 when the
store cannot take new mail.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness import NET_TIMEOUT, USERS, free_port
from test_plugins import toml_plugin, wasm, with_plugins  # noqa: F401  (fixtures)

ALICE = "alice@example.test"
LISTEN = {"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0", "imap": "127.0.0.1:0",
          "metrics": "127.0.0.1:0"}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


def url(srv, path):
    host, port = srv.ports["metrics"]
    return f"http://{host}:{port}{path}"


def get(srv, path, method="GET"):
    """(status, content type, body) of one request."""
    req = urllib.request.Request(url(srv, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=NET_TIMEOUT) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def scrape(srv) -> dict[str, float]:
    """Every sample of /metrics: {'name{labels}': value}."""
    status, ctype, body = get(srv, "/metrics")
    assert status == 200, body
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1)] = float(m.group(2))
    return out


def delta(before, after, series):
    return after.get(series, 0.0) - before.get(series, 0.0)


def healthcheck(srv, *extra):
    return srv.cli("healthcheck", *extra, timeout=30)


@pytest.fixture
def server(server_factory):
    return server_factory(listen=LISTEN)


def with_fixed_port(**kw) -> dict:
    """LISTEN with the metrics address on a real port, which `mailgate
    healthcheck` reads from the configuration."""
    return dict(LISTEN, metrics=f"127.0.0.1:{free_port('127.0.0.1')}", **kw)


def test_counters_move_with_real_sessions(server):
    before = scrape(server)
    assert before['mailgate_build_info{version="0.1.0"}'] == 1
    server.send("sender@client.test", [ALICE], b"Subject: counted\r\n\r\nHello.\r\n")
    # One failed POP3 login (USER/PASS) and one failed IMAP LOGIN.
    server.pop3_login_refused(ALICE, "wrong password")
    host, port = server.ports["imap"]
    m = imaplib.IMAP4(host, port, timeout=NET_TIMEOUT)
    with pytest.raises(imaplib.IMAP4.error):
        m.login(ALICE, "wrong password")
    m.logout()
    # The sessions' tasks end after the clients hang up.
    deadline = time.monotonic() + 10
    while True:
        after = scrape(server)
        active = sum(v for k, v in after.items() if k.startswith("mailgate_sessions_active"))
        if active == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert active == 0, after
    for proto in ("smtp", "pop3", "imap"):
        series = f'mailgate_sessions_total{{protocol="{proto}",listener="{proto}"}}'
        assert delta(before, after, series) == 1, (series, after)
    pop3_failed = ('mailgate_auth_attempts_total{protocol="pop3",mechanism="user_pass",'
                   'result="failure"}')
    assert delta(before, after, pop3_failed) == 1, after
    imap_failed = ('mailgate_auth_attempts_total{protocol="imap",mechanism="imap_login",'
                   'result="failure"}')
    assert delta(before, after, imap_failed) == 1, after
    failures = sum(delta(before, after, k) for k in after
                   if k.startswith("mailgate_auth_attempts_total") and 'result="failure"' in k)
    assert failures == 2, after
    # The message and the IMAP/POP3 sessions were written by the store.
    assert delta(before, after, "mailgate_store_commit_duration_seconds_count") >= 1
    assert delta(before, after, "mailgate_store_commit_batch_size_count") >= 1
    assert after["mailgate_queue_messages{state=\"new\"}"] == 0
    assert after["mailgate_queue_oldest_age_seconds"] == 0
    assert after["mailgate_ready"] == 1


def test_smtp_message_counters(server):
    before = scrape(server)
    server.send("sender@client.test", [ALICE], b"Subject: counted\r\n\r\nHello.\r\n")
    after = scrape(server)
    series = 'mailgate_smtp_messages_total{listener="smtp",outcome="accepted",reason=""}'
    assert delta(before, after, series) == 1
    assert delta(before, after, 'mailgate_recipients_total{disposition="delivered_locally"}') == 1
    assert delta(before, after, "mailgate_delivery_latency_seconds_count") == 1


def test_bytes_sent_grow_with_imap_fetch_and_pop3_retr(server):
    """mailgate_sent_bytes_total counts message bytes sent to clients: an
    IMAP FETCH of BODY[] and a POP3 RETR each add at least the message's
    size on their own listener (issue 14)."""
    body = b"Subject: sized\r\n\r\n" + b"0123456789abcdef\r\n" * 200
    server.send("sender@client.test", [ALICE], body)
    imap_series = 'mailgate_sent_bytes_total{protocol="imap",listener="imap"}'
    pop3_series = 'mailgate_sent_bytes_total{protocol="pop3",listener="pop3"}'

    before = scrape(server)
    host, port = server.ports["imap"]
    m = imaplib.IMAP4(host, port, timeout=NET_TIMEOUT)
    m.login(ALICE, USERS[ALICE])
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    fetched = data[0][1]
    m.logout()
    after_imap = scrape(server)
    size = len(fetched)
    assert size >= len(body)
    assert delta(before, after_imap, imap_series) >= size, after_imap
    assert delta(before, after_imap, pop3_series) == 0

    p = server.pop3_login(ALICE)
    _, lines, octets = p.retr(1)
    p.quit()
    after_pop3 = scrape(server)
    assert octets >= len(body)
    assert delta(after_imap, after_pop3, pop3_series) >= octets, after_pop3
    assert delta(after_imap, after_pop3, imap_series) == 0


def test_plugin_calls_are_counted_by_result(with_plugins):  # noqa: F811
    srv, _ = with_plugins({"10-ok": "template", "20-trap": "trap"},
                          [toml_plugin("10-ok", grants=["config"]),
                           toml_plugin("20-trap", failure="fail-open")],
                          listen=LISTEN)
    before = scrape(srv)
    with srv.smtp() as s:
        s.ehlo()
        s.sendmail("sender@client.test", [ALICE], b"Subject: plugin\r\n\r\nHello.\r\n")
    after = scrape(srv)
    ok = {k: delta(before, after, k) for k in after
          if k.startswith('mailgate_plugin_calls_total{plugin="10-ok"') and 'result="ok"' in k}
    assert sum(ok.values()) >= 1, after
    trapped = {k: delta(before, after, k) for k in after
               if k.startswith('mailgate_plugin_calls_total{plugin="20-trap"')
               and 'result="trap"' in k}
    assert sum(trapped.values()) >= 1, after
    durations = [k for k in after
                 if k.startswith('mailgate_plugin_call_duration_seconds_count{plugin="10-ok"')]
    assert durations and all(after[k] >= 1 for k in durations), after


def test_health_endpoints_and_healthcheck(server_factory):
    server = server_factory(listen=with_fixed_port())
    assert get(server, "/healthz/live")[0::2] == (200, "live\n")
    assert get(server, "/healthz/ready")[0::2] == (200, "ready\n")
    assert get(server, "/nowhere")[0] == 404
    assert get(server, "/metrics", method="POST")[0] == 405
    assert get(server, "/healthz/ready", method="HEAD")[0] == 200
    r = healthcheck(server)
    assert r.returncode == 0, r.stderr_text
    assert r.stdout_text.strip() == "ready"
    host, port = server.ports["metrics"]
    r = healthcheck(server, "--address", f"{host}:{port}")
    assert r.returncode == 0, r.stderr_text
    server.stop_clean()
    r = healthcheck(server)
    assert r.returncode == 1
    assert "cannot connect" in r.stderr_text, r.stderr_text


def test_healthcheck_without_an_endpoint_says_so(server_factory):
    srv = server_factory()
    assert "metrics" not in srv.ports
    r = healthcheck(srv)
    assert r.returncode == 1
    assert "[listen] metrics" in r.stderr_text, r.stderr_text
    # Port 0 (chosen at start) cannot be asked: the message says so.
    srv = server_factory(listen=LISTEN)
    r = healthcheck(srv)
    assert r.returncode == 1
    assert "--address" in r.stderr_text, r.stderr_text


def test_metrics_listener_binds_only_what_is_configured(server_factory):
    srv = server_factory(listen=dict(LISTEN, metrics="127.0.0.1:0"))
    host, port = srv.ports["metrics"]
    assert host == "127.0.0.1"
    # Not on another loopback address, nor on any other address.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_ready_is_503_when_the_store_refuses_new_mail(server_factory):
    """[limits] min_free_space above what the file system has: the store
    refuses new mail, so the server is not ready."""
    srv = server_factory(listen=with_fixed_port(), limits={"min_free_space": 2**62})
    status, _, body = get(srv, "/healthz/ready")
    assert status == 503, body
    assert body.startswith("not ready\n") and "the store refuses writes" in body, body
    r = healthcheck(srv)
    assert r.returncode == 1
    assert "503" in r.stderr_text and "store refuses writes" in r.stderr_text, r.stderr_text
    assert scrape(srv)["mailgate_ready"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_ready_is_503_on_a_full_file_system_and_200_again(server_factory, tmp_path):
    """The data directory on a small tmpfs: filled up, the store cannot
    write and /healthz/ready says 503; space freed, 200 again."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        # The default min_free_space (5 % of 16 MiB here); with 0, the
        # store's 2 MiB reserve file, released on a full disk, would make
        # room for the check's own write.
        srv = server_factory(listen=with_fixed_port(), start=False)
        shutil.copytree(srv.data_dir, mnt / "data")
        text = srv.config.read_text().replace(str(srv.data_dir), str(mnt / "data"))
        srv.config.write_text(text)
        srv.start()
        assert get(srv, "/healthz/ready")[0] == 200
        filler = mnt / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        status, _, body = get(srv, "/healthz/ready")
        assert status == 503, body
        assert "the store refuses writes" in body, body
        assert healthcheck(srv).returncode == 1
        filler.unlink()
        # The store reads the free space at most once a second.
        deadline = time.monotonic() + 10
        while (status := get(srv, "/healthz/ready")[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
        srv.stop_clean()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_endpoint_bounds(server):
    """Past MAX_CONNECTIONS (16) idle connections a new one is closed at
    once; a request head over 16 KiB is refused."""
    host, port = server.ports["metrics"]
    held = [socket.create_connection((host, port), timeout=NET_TIMEOUT) for _ in range(16)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection((host, port), timeout=NET_TIMEOUT)
        extra.sendall(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = extra.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b"", got
        extra.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert get(server, "/healthz/live")[0] == 200
    big = socket.create_connection((host, port), timeout=NET_TIMEOUT)
    big.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    reply = b""
    try:
        while chunk := big.recv(4096):
            reply += chunk
    except ConnectionResetError:
        pass
    big.close()
    assert not reply.startswith(b"HTTP/1.1 200"), reply[:100]


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool (Debian package prometheus) not installed")


@needs_promtool
def test_exposition_passes_promtool_lint(server):
    server.send("sender@client.test", [ALICE], b"Subject: lint\r\n\r\nHello.\r\n")
    _, _, body = get(server, "/metrics")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body.encode(), capture_output=True)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


@needs_promtool
def test_alert_rules_and_dashboard_queries_parse(tmp_path):
    """dist/prometheus/mailgate-alerts.yml passes `promtool check rules`;
    every query of dist/grafana/mailgate.json parses as PromQL (checked as
    recording rules) and names only documented metrics."""
    import json
    dist = Path(__file__).resolve().parent.parent / "dist"
    r = subprocess.run([PROMTOOL, "check", "rules", str(dist / "prometheus" / "mailgate-alerts.yml")],
                       capture_output=True)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    dashboard = json.loads((dist / "grafana" / "mailgate.json").read_text())
    exprs = [t["expr"].replace("$instance", ".*")
             for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, e in enumerate(exprs):
        rules += [f"      - record: dashboard:q{i}", f"        expr: {json.dumps(e)}"]
    f = tmp_path / "dashboard-rules.yml"
    f.write_text("\n".join(rules) + "\n")
    r = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    docs = (dist.parent / "docs" / "monitoring.md").read_text()
    alerts = (dist / "prometheus" / "mailgate-alerts.yml").read_text()
    for name in set(re.findall(r"mailgate_[a-z_]+", " ".join(exprs) + alerts)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f"`{base}`" in docs, f"{name} is not documented in docs/monitoring.md"
