"""`mailgate config check`: validate a configuration file and print the
effective configuration (postconf / doveconf), `--non-default` like
`postconf -n`; secrets hidden. The real binary, no server needed."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

from harness import CLI_TIMEOUT, write_config

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "config" / "mailgate.example.toml"


def check(mailgate_bin, *args, env_config=None):
    env = {k: v for k, v in os.environ.items() if k != "MAILGATE_CONFIG"}
    if env_config is not None:
        env["MAILGATE_CONFIG"] = str(env_config)
    return subprocess.run([str(mailgate_bin), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, env=env)


GOOD = """\
hostname = "mx.test.example"
data_dir = "{data}"
domains = ["example.test"]

[listen]
smtp = "127.0.0.1:2525"

[limits]
max_recipients = 7

[relay]
smarthost = "relay.example.net:587"
smarthost_username = "mx"
smarthost_password = "Very-Secret-Relay-Pw"
"""


def good_file(tmp_path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text(GOOD.format(data=tmp_path / "data"), encoding="utf-8")
    return path


def test_good_file_prints_effective_configuration(mailgate_bin, tmp_path):
    path = good_file(tmp_path)
    res = check(mailgate_bin, "config", "check", str(path))
    assert res.returncode == 0, res.stderr
    conf = tomllib.loads(res.stdout)
    # What the file set ...
    assert conf["hostname"] == "mx.test.example"
    assert conf["limits"]["max_recipients"] == 7
    assert conf["listen"]["smtp"] == "127.0.0.1:2525"
    # ... and the defaults it did not.
    assert conf["limits"]["max_errors"] == 20
    assert conf["limits"]["max_command_line"] == 2048
    assert conf["auth"]["cache_ttl"] == "1h"
    assert conf["auth"]["allow_plaintext"] is False
    assert conf["inbound"]["verify"] is True
    assert conf["shutdown_timeout"] == 30
    # [relay] and [queue] keys left out get the values the relay uses.
    assert conf["relay"]["port"] == 25
    assert conf["relay"]["mta_sts"] is True
    assert conf["queue"]["retry"] and conf["queue"]["max_age"]
    assert conf["queue"]["max_concurrent"] >= 1
    # Nothing was created by checking.
    assert not (tmp_path / "data").exists()


def test_the_printed_configuration_is_itself_valid(mailgate_bin, tmp_path):
    res = check(mailgate_bin, "config", "check", str(good_file(tmp_path)))
    assert res.returncode == 0, res.stderr
    again = tmp_path / "again.toml"
    again.write_text(res.stdout, encoding="utf-8")
    res2 = check(mailgate_bin, "config", "check", str(again))
    assert res2.returncode == 0, res2.stderr
    assert tomllib.loads(res2.stdout) == tomllib.loads(res.stdout)


def test_config_flag_and_environment_name_the_file(mailgate_bin, tmp_path):
    path = good_file(tmp_path)
    by_flag = check(mailgate_bin, "--config", str(path), "config", "check")
    by_env = check(mailgate_bin, "config", "check", env_config=path)
    by_arg = check(mailgate_bin, "config", "check", str(path))
    assert by_flag.returncode == by_env.returncode == by_arg.returncode == 0
    assert by_flag.stdout == by_env.stdout == by_arg.stdout
    other = tmp_path / "other.toml"
    other.write_text(GOOD.format(data=tmp_path / "d2"), encoding="utf-8")
    both = check(mailgate_bin, "--config", str(other), "config", "check", str(path))
    assert both.returncode != 0
    assert "give one" in both.stderr
    dev = check(mailgate_bin, "--dev", "config", "check", str(path))
    assert dev.returncode != 0 and "give one" in dev.stderr


def test_non_default_prints_only_what_the_file_changed(mailgate_bin, tmp_path):
    res = check(mailgate_bin, "config", "check", "--non-default", str(good_file(tmp_path)))
    assert res.returncode == 0, res.stderr
    conf = tomllib.loads(res.stdout)
    assert conf == {
        "hostname": "mx.test.example",
        "data_dir": str(tmp_path / "data"),
        "domains": ["example.test"],
        "listen": {"smtp": "127.0.0.1:2525"},
        "limits": {"max_recipients": 7},
        "relay": {
            "smarthost": "relay.example.net:587",
            "smarthost_username": "mx",
            "smarthost_password": "<hidden>",
        },
    }, res.stdout


def test_non_default_of_the_test_harness_config(mailgate_bin, tmp_path):
    """Keys set to their default value are not shown (max_errors = 20)."""
    path = tmp_path / "h.toml"
    write_config(path, tmp_path / "data")
    res = check(mailgate_bin, "config", "check", "--non-default", str(path))
    assert res.returncode == 0, res.stderr
    conf = tomllib.loads(res.stdout)
    assert conf["limits"] == {"max_connections_per_ip": 1000}
    assert conf["auth"] == {"allow_plaintext": True, "failure_delay_ms": 20,
                            "max_failures": 1000}
    assert conf["inbound"] == {"verify": False, "reject_unknown_sender_domain": False,
                               "reverse_lookup": False}


def test_secrets_are_hidden(mailgate_bin, tmp_path):
    path = good_file(tmp_path)
    for args in (["config", "check", str(path)],
                 ["config", "check", "--non-default", str(path)]):
        res = check(mailgate_bin, *args)
        assert res.returncode == 0, res.stderr
        assert "Very-Secret-Relay-Pw" not in res.stdout + res.stderr
        assert tomllib.loads(res.stdout)["relay"]["smarthost_password"] == "<hidden>"


def test_unknown_key_names_file_and_line(mailgate_bin, tmp_path):
    path = good_file(tmp_path)
    text = path.read_text().replace("max_recipients = 7", "max_recipients = 7\nmax_recipents = 8")
    path.write_text(text)
    res = check(mailgate_bin, "config", "check", str(path))
    assert res.returncode != 0
    assert res.stdout == ""
    assert str(path) in res.stderr
    assert "line 10" in res.stderr, res.stderr
    assert "max_recipents" in res.stderr


def test_bad_value_names_file_and_line(mailgate_bin, tmp_path):
    path = good_file(tmp_path)
    # A wrong type: found by the TOML parser.
    path.write_text(path.read_text().replace("max_recipients = 7", 'max_recipients = "seven"'))
    res = check(mailgate_bin, "config", "check", str(path))
    assert res.returncode != 0
    assert str(path) in res.stderr and "line 9" in res.stderr, res.stderr
    # Out of range: found by the checks after parsing, the line looked up.
    path.write_text(good_file(tmp_path).read_text().replace(
        "max_recipients = 7", "max_recipients = 7\nmax_command_line = 100"))
    res = check(mailgate_bin, "config", "check", str(path))
    assert res.returncode != 0
    assert res.stdout == ""
    assert f"{path}:10:" in res.stderr, res.stderr
    assert "max_command_line" in res.stderr
    # A rule about a whole table: the line of its header.
    path.write_text(good_file(tmp_path).read_text().replace(
        "max_recipients = 7", "max_recipients = 0"))
    res = check(mailgate_bin, "config", "check", str(path))
    assert res.returncode != 0
    assert f"{path}:8:" in res.stderr, res.stderr


def test_missing_file(mailgate_bin, tmp_path):
    res = check(mailgate_bin, "config", "check", str(tmp_path / "nope.toml"))
    assert res.returncode != 0
    assert "nope.toml" in res.stderr


def test_the_example_configuration_checks(mailgate_bin):
    res = check(mailgate_bin, "config", "check", str(EXAMPLE))
    assert res.returncode == 0, res.stderr
    assert "[limits]" in res.stdout
    # The example writes some relay defaults out (port = 25): not shown.
    res = check(mailgate_bin, "config", "check", "--non-default", str(EXAMPLE))
    assert res.returncode == 0, res.stderr
    assert "relay" not in tomllib.loads(res.stdout), res.stdout


def test_an_error_on_a_password_line_does_not_quote_the_password(mailgate_bin, tmp_path):
    path = good_file(tmp_path)
    # A wrong type, and a misspelt key: the parser quotes the line.
    for bad in ("smarthost_password = 98765432123", 'smarthost_pasword = "Very-Secret-Relay-Pw"'):
        path.write_text(GOOD.format(data=tmp_path / "data").replace(
            'smarthost_password = "Very-Secret-Relay-Pw"', bad))
        res = check(mailgate_bin, "config", "check", str(path))
        assert res.returncode != 0
        assert "line 14" in res.stderr and str(path) in res.stderr, res.stderr
        assert "98765432123" not in res.stderr and "Very-Secret" not in res.stderr, res.stderr
        assert "<hidden>" in res.stderr


def test_dev_profile(mailgate_bin, tmp_path):
    """--dev prints the development profile and creates nothing."""
    res = subprocess.run([str(mailgate_bin), "--dev", "config", "check", "--non-default"],
                         capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert tomllib.loads(res.stdout)["domains"] == ["mailgate.test"]
    assert list(tmp_path.iterdir()) == []
