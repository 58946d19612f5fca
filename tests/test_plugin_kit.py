"""The plugin author's kit (issue 18): a plugin from the binary alone,
tested without a server, and the same verdicts in a real server.

The author's whole path runs here: `mailgate plugin new` in a temporary
directory outside the repository, `cargo test` and `cargo build --release
--target wasm32-wasip2` there, `plugin check` and `plugin run` on the
result, then the component in a real server driven by smtplib.  The fresh
crate's builds share plugins/target (CARGO_TARGET_DIR) with
scripts/build-plugins, so wit-bindgen is compiled once per machine.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import REPO_ROOT, make_message, wait_until

BUILD = REPO_ROOT / "plugins" / "target" / "wasm32-wasip2" / "release"
NEEDED = ["content_filter", "router", "template"]
ALICE = "alice@example.test"
CARGO_TIMEOUT = 600


@pytest.fixture(scope="session")
def wasm() -> Path:
    if not all((BUILD / f"{n}.wasm").is_file() for n in NEEDED):
        subprocess.run([str(REPO_ROOT / "scripts" / "build-plugins")], check=True,
                       capture_output=True, timeout=900)
    return BUILD


def run(binary, *args, cwd=None, check=True, timeout=120):
    """The binary without any configuration file: no --config, no
    MAILGATE_CONFIG."""
    env = {k: v for k, v in os.environ.items() if k != "MAILGATE_CONFIG"}
    res = subprocess.run([str(binary), *map(str, args)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"mailgate {' '.join(map(str, args))} exited {res.returncode}:\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def plugins_server(server_factory, files: dict[str, Path], settings: str = ""):
    srv = server_factory(start=False)
    pdir = srv.workdir / "plugins"
    pdir.mkdir()
    for name, src in files.items():
        shutil.copy(src, pdir / name)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[plugins]\ndir = "{pdir}"\npoll_ms = 200\n{settings}')
    srv.start()
    return srv, pdir


def smtp_code(srv, msg: bytes, rcpts=(ALICE,)) -> int:
    try:
        srv.send("sender@remote.test", list(rcpts), msg)
        return 250
    except smtplib.SMTPDataError as e:
        return e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return next(iter(e.recipients.values()))[0]


# ---- plugin list / check without a configuration --------------------------------

def test_plugin_list_without_plugins_table_exits_0(server_factory):
    srv = server_factory(start=False)
    res = srv.cli("plugin", "list")
    assert res.returncode == 0, res.stderr_text
    assert "no plugins configured" in res.stdout_text


def test_check_needs_no_configuration_file(mailgate_bin, wasm, tmp_path):
    res = run(mailgate_bin, "plugin", "check", wasm / "template.wasm", cwd=tmp_path)
    assert ": ok" in res.stdout
    assert "no configuration file" in res.stdout
    # content_filter reads its config in self-test: refused without the grant
    res = run(mailgate_bin, "plugin", "check", wasm / "content_filter.wasm", cwd=tmp_path,
              check=False)
    assert res.returncode == 1 and "config" in res.stderr
    # ... checked with a grant and a config given on the command line
    res = run(mailgate_bin, "plugin", "check", wasm / "content_filter.wasm", "--grant", "config",
              "--config-json", '{"threshold": 3.0}', cwd=tmp_path)
    assert "grants   config (--grant)" in res.stdout
    assert '{"threshold":3.0} (--config-json)' in res.stdout
    # a config the plugin's self-test refuses
    res = run(mailgate_bin, "plugin", "check", wasm / "content_filter.wasm", "--grant", "config",
              "--config-json", '{"rules": [{"contains": "", "score": 1}]}', cwd=tmp_path,
              check=False)
    assert res.returncode == 1 and "empty `contains`" in res.stderr
    # the same from a TOML file
    toml = tmp_path / "cf.toml"
    toml.write_text('rules = [ { contains = "", score = 1.0 } ]\n')
    res = run(mailgate_bin, "plugin", "check", wasm / "content_filter.wasm", "--grant", "config",
              "--config-file", toml, cwd=tmp_path, check=False)
    assert res.returncode == 1 and "empty `contains`" in res.stderr


def test_check_says_where_grants_come_from(server_factory, wasm):
    srv = server_factory(start=False)
    with open(srv.config, "a", encoding="utf-8") as f:
        f.write(f'\n[plugins]\ndir = "{srv.workdir}"\n'
                '\n[[plugin]]\nname = "content-filter"\ngrants = ["config"]\n'
                'config = { threshold = 2.0 }\n')
    res = srv.cli("plugin", "check", str(wasm / "content_filter.wasm"), check=True)
    assert 'grants   config ([[plugin]] name = "content-filter" in' in res.stdout_text
    assert '{"threshold":2.0}' in res.stdout_text


# ---- names: ordering prefixes, -/_, entries matching nothing -------------------

def test_ordering_prefix_matches_and_unmatched_entry_warns(server_factory, wasm):
    srv, pdir = plugins_server(
        server_factory, {"20-content_filter.wasm": wasm / "content_filter.wasm"},
        '\n[[plugin]]\nname = "content-filter"\ngrants = ["config"]\n'
        'config = { threshold = 1.0 }\n'
        '\n[[plugin]]\nname = "contnet-filter"\ngrants = ["config"]\n')
    wait_until(lambda: "plugin loaded" in srv.stderr_tail(20000), what="plugin loaded")
    log = srv.stderr_tail(20000)
    assert "plugin refused" not in log
    assert "contnet-filter" in log and "matches no file" in log
    # the entry's config (threshold 1.0) applies: one rule hit files into Junk
    msg = make_message(subject="Act now!!!", body="unsubscribe here\r\n")
    assert smtp_code(srv, msg) == 250
    # and the warning comes again at a reload
    before = log.count("matches no file")
    srv.cli("plugin", "reload", check=True)
    wait_until(lambda: srv.stderr_tail(40000).count("matches no file") > before,
               what="the warning at reload")


# ---- the author's whole path -----------------------------------------------------

def test_plugin_new_build_check_run_and_serve(mailgate_bin, server_factory, tmp_path):
    if shutil.which("cargo") is None:
        pytest.skip("cargo not installed")
    outside = tmp_path / "authoring"
    outside.mkdir()
    assert REPO_ROOT not in outside.resolve().parents
    run(mailgate_bin, "plugin", "new", "subject-guard", "--dir", outside,
        "--hooks", "data,rcpt-to", cwd=outside)
    crate = outside / "subject-guard"
    for f in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml", "src/lib.rs", "README.md",
              "vendor/sdk/src/lib.rs", "wit/policy.wit", "tests/sample.eml"]:
        assert (crate / f).is_file(), f
    lib = (crate / "src" / "lib.rs").read_text()
    assert "hooks!(RCPT_TO | DATA)" in lib
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO_ROOT / "plugins" / "target"),
               CARGO_INCREMENTAL="0")
    test = subprocess.run(["cargo", "test", "--quiet"], cwd=crate, env=env,
                          capture_output=True, text=True, timeout=CARGO_TIMEOUT)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed" in test.stdout
    build = subprocess.run(["cargo", "build", "--quiet", "--release", "--target",
                            "wasm32-wasip2"], cwd=crate, env=env, capture_output=True,
                           text=True, timeout=CARGO_TIMEOUT)
    assert build.returncode == 0, build.stderr
    component = REPO_ROOT / "plugins" / "target" / "wasm32-wasip2" / "release" / \
        "subject_guard.wasm"
    assert component.is_file()
    built = tmp_path / "subject_guard.wasm"
    shutil.copy(component, built)

    res = run(mailgate_bin, "plugin", "check", built, cwd=outside)
    assert "plugin   subject_guard 0.1.0" in res.stdout
    assert "rcpt-to, data" in res.stdout
    assert "warning" not in res.stdout

    no_subject = tmp_path / "no-subject.eml"
    no_subject.write_bytes(b"From: <sender@remote.test>\nTo: <alice@example.test>\n\nhi\n")
    res = run(mailgate_bin, "plugin", "run", built, "--hook", "data", "--from",
              "sender@remote.test", "--rcpt", ALICE, "--json", no_subject, cwd=outside)
    [call] = json.loads(res.stdout)["calls"]
    assert call["verdict"] == "reject"
    assert call["reply"] == "550 5.7.1 A message needs a subject here"
    res = run(mailgate_bin, "plugin", "run", built, "--hook", "data", "--rcpt", ALICE,
              crate / "tests" / "sample.eml", cwd=outside)
    assert "verdict  accept" in res.stdout and "time " in res.stdout

    # the same component in a real server, with an ordering prefix
    srv, _ = plugins_server(server_factory, {"30-subject_guard.wasm": built})
    wait_until(lambda: "plugin loaded" in srv.stderr_tail(20000), what="plugin loaded")
    assert smtp_code(srv, no_subject.read_bytes().replace(b"\n", b"\r\n")) == 550
    assert smtp_code(srv, make_message(subject="lunch")) == 250


# ---- plugin run gives what the server does ----------------------------------------

CF_CONFIG = '{"threshold": 5.0, "reject_threshold": 9.0}'
CF_CASES = [
    # subject, expected plugin-run verdict, SMTP code, folder
    ("lunch on friday", "accept", 250, "INBOX"),
    ("cheap viagra", "accept", 250, "Junk"),
    ("cheap viagra: you have won!!!", "reject", 550, None),
]


def test_plugin_run_matches_the_server_content_filter(mailgate_bin, server_factory, wasm,
                                                       tmp_path):
    srv, _ = plugins_server(
        server_factory, {"content_filter.wasm": wasm / "content_filter.wasm"},
        '\n[[plugin]]\nname = "content_filter"\ngrants = ["config"]\n'
        'config = { threshold = 5.0, reject_threshold = 9.0 }\n')
    wait_until(lambda: "plugin loaded" in srv.stderr_tail(20000), what="plugin loaded")
    for i, (subject, verdict, code, folder) in enumerate(CF_CASES):
        eml = tmp_path / f"m{i}.eml"
        eml.write_bytes(make_message(subject=subject))
        res = run(mailgate_bin, "plugin", "run", wasm / "content_filter.wasm", "--hook", "data",
                  "--grant", "config", "--config-json", CF_CONFIG, "--rcpt", ALICE, "--json",
                  eml)
        [call] = json.loads(res.stdout)["calls"]
        assert call["verdict"] == verdict, (subject, call)
        assert smtp_code(srv, eml.read_bytes()) == code, subject
        if folder == "Junk":
            assert "set-folder Junk" in call["edits"]
            assert "replace-header X-Spam-Flag: YES" in call["edits"]
        elif folder == "INBOX":
            assert not any(e.startswith("set-folder") for e in call["edits"])
            assert "replace-header X-Spam-Score: 0.0" in call["edits"]


def test_plugin_run_route_plan_of_the_router(mailgate_bin, wasm, tmp_path):
    eml = tmp_path / "m.eml"
    eml.write_bytes(make_message(subject="weekly news"))
    res = run(mailgate_bin, "plugin", "run", wasm / "router.wasm", "--hook", "route",
              "--grant", "config", "--rcpt", "alice+lists@example.test", "--rcpt", ALICE,
              "--json", eml)
    calls = json.loads(res.stdout)["calls"]
    assert [c["recipient"] for c in calls] == ["alice+lists@example.test", ALICE]
    assert calls[0]["route"] == ["deliver folder=lists"]
    assert calls[1]["route"] == ["deliver"]


def test_plugin_run_refuses_what_it_cannot_do(mailgate_bin, wasm, tmp_path):
    res = run(mailgate_bin, "plugin", "run", wasm / "template.wasm", "--hook", "no-such-hook",
              check=False)
    assert res.returncode == 1 and "unknown hook" in res.stderr
    # The template does not want the mailbox-event hook (WIT 0.1.2).
    res = run(mailgate_bin, "plugin", "run", wasm / "template.wasm", "--hook", "mailbox-event",
              check=False)
    assert res.returncode == 1 and "does not ask for hook mailbox-event" in res.stderr
    res = run(mailgate_bin, "plugin", "run", wasm / "template.wasm", "--hook", "data",
              check=False)
    assert res.returncode == 1 and "does not ask for hook data" in res.stderr
    res = run(mailgate_bin, "plugin", "run", wasm / "content_filter.wasm", "--hook", "data",
              check=False)
    assert res.returncode == 1 and "refused" in res.stderr  # no config grant
    start = time.monotonic()
    res = run(mailgate_bin, "plugin", "run", wasm / "template.wasm", "--hook", "rcpt-to",
              "--rcpt", ALICE)
    assert f"{ALICE}: accept" in res.stdout
    assert time.monotonic() - start < 30


# ---- logs: session id and queue id on plugin lines --------------------------------

def test_plugin_log_lines_carry_session_and_queue_id(server_factory, wasm):
    edits = BUILD / "edits.wasm"
    if not edits.is_file():
        subprocess.run([str(REPO_ROOT / "scripts" / "build-plugins")], check=True,
                       capture_output=True, timeout=900)
    srv, _ = plugins_server(server_factory, {"edits.wasm": edits},
                            '\n[[plugin]]\nname = "edits"\ngrants = ["log"]\n')
    wait_until(lambda: "plugin loaded" in srv.stderr_tail(20000), what="plugin loaded")
    with srv.smtp() as s:
        s.ehlo()
        s.mail("sender@remote.test")
        s.rcpt(ALICE)
        code, text = s.data(make_message(subject="logs"))
    assert code == 250
    queue_id = text.decode().rsplit(" ", 1)[-1]

    def lines():
        log = srv.stderr_tail(40000).splitlines()
        return ([l for l in log if "rcpt alice@example.test" in l],
                [l for l in log if "data seen" in l],
                [l for l in log if "message accepted" in l])

    wait_until(lambda: all(lines()), what="the plugin's and the host's lines")
    [rcpt], [data], [accepted] = lines()
    session = rcpt.split("smtp{session=", 1)[1].split("}", 1)[0]
    assert session
    assert f"smtp{{session={session}}}" in data
    assert f"message{{queue_id={queue_id}}}" in data
    assert "mailgate_policy::bindings" in data and "edits" in data
    assert f"session={session}" in accepted and queue_id in accepted


def test_plugin_run_matches_the_server_greylist_and_forwarder(mailgate_bin, server_factory,
                                                              wasm, tmp_path):
    grey = BUILD / "greylist.wasm"
    fwd = BUILD / "forwarder.wasm"
    # greylist: the first attempt of a triplet is deferred, in plugin run
    # (a fresh in-memory store every run) as in the server
    res = run(mailgate_bin, "plugin", "run", grey, "--hook", "rcpt-to", "--grant", "kv",
              "--grant", "clock", "--grant", "config", "--client", "127.0.0.1",
              "--from", "sender@remote.test", "--rcpt", ALICE, "--json")
    [call] = json.loads(res.stdout)["calls"]
    assert call["verdict"] == "tempfail" and call["reply"].startswith("451 4.7.1"), call
    srv, _ = plugins_server(server_factory, {"greylist.wasm": grey},
                            '\n[[plugin]]\nname = "greylist"\ngrants = ["kv", "clock", "config"]\n')
    wait_until(lambda: "plugin loaded" in srv.stderr_tail(20000), what="plugin loaded")
    assert smtp_code(srv, make_message(subject="grey")) == 451
    # forwarder: a listed address is forwarded, the others delivered
    conf = '{"forward": {"alice@example.test": ["ann@example.net"]}}'
    eml = tmp_path / "m.eml"
    eml.write_bytes(make_message(subject="fwd"))
    res = run(mailgate_bin, "plugin", "run", fwd, "--hook", "route", "--grant", "config",
              "--config-json", conf, "--rcpt", ALICE, "--rcpt", "bob@example.test", "--json",
              eml)
    calls = json.loads(res.stdout)["calls"]
    assert calls[0]["route"] == ["forward ann@example.net"], calls
    assert calls[1]["route"] == ["deliver"]


def test_plugin_run_calls_the_mailbox_event_hook(mailgate_bin, wasm, tmp_path):
    """The rspamd plugin's learning hook on one message: with nothing
    listening on its controller the call reports the plugin's error."""
    if not (wasm / "rspamd.wasm").is_file():
        subprocess.run([str(REPO_ROOT / "scripts" / "build-plugins")], check=True,
                       capture_output=True, timeout=900)
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@remote.test\r\nSubject: cheap pills\r\n\r\nBuy now.\r\n")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    config = json.dumps({"controller_url": f"http://127.0.0.1:{port}"})
    res = run(mailgate_bin, "plugin", "run", wasm / "rspamd.wasm", "--hook", "mailbox-event",
              "--direction", "spam", "--account", ALICE, "--grant", "http", "--grant", "config",
              "--grant", "log", "--config-json", config, "--json", eml)
    [call] = json.loads(res.stdout)["calls"]
    # No http_allow on the command line: the plugin was refused the request.
    assert call["verdict"] == "error", call
    assert "NotAllowed" in call["reason"], call
    res = run(mailgate_bin, "plugin", "run", wasm / "rspamd.wasm", "--hook", "mailbox-event",
              "--direction", "ham", "--grant", "http", "--grant", "config", "--grant", "log",
              "--http-allow", f"http://127.0.0.1:{port}/", "--config-json", config, "--json", eml)
    [call] = json.loads(res.stdout)["calls"]
    # Allowed: the request went out and found nothing listening.
    assert call["verdict"] == "error" and "Connect" in call["reason"], call
