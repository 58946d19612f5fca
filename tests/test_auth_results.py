"""Inbound authentication results handed to policy plugins as data (issue 6).

Two servers and a DNS server, as in tests/test_relay.py (whose fixture and
helpers this file reuses): A (a.test) signs with DKIM and relays to B
(b.test), which verifies SPF, DKIM and DMARC on port 25 and runs the
`probe` plugin (host/policy/tests/fixtures/probe). The probe writes what
`message.auth-results()` returned into `X-Probe-Auth:`, so the delivered
message shows what the plugin saw:

- a relayed, signed message: spf, dkim (domain and selector) and dmarc
  (with the published policy) all `pass`, `arc=none`;
- a forged one from 127.0.0.1 (accepted because `dmarc_reject = false`):
  `spf=fail`, no signature, `dmarc=fail` under `p=reject`;
- plugin-added fields sit below B's `Received:` and
  `Authentication-Results:` (RFC 5321 §4.4 trace fields on top).

ARC (`arc=` in the header and `arc` in the data) is tested in
host/smtp/src/verify.rs with a message sealed there.
"""

from __future__ import annotations

from harness import with_probe
from test_plugins import wasm  # noqa: F401  (fixture)
from test_relay import (  # noqa: F401  (fixture)
    ALICE, ALICE_PW, A_IP, B_IP, BOB, BOB_PW, FAST, FORGED, auth_results, forge, header,
    submit, wait_messages, world,
)


def unfolded(raw: bytes, name: str) -> list[str]:
    """The values of field `name`, unfolded (RFC 5322: CRLF removed)."""
    return [v.replace("\r\n", "") for v in header(raw, name)]


def field_names(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [ln.split(b":", 1)[0] for ln in head.split(b"\r\n") if ln[:1] not in (b" ", b"\t")]


def test_plugin_sees_spf_dkim_dmarc_of_a_relayed_message(world, wasm):
    a = world.make("a.test", A_IP, ALICE, ALICE_PW, FAST, dkim=True).start()
    b = with_probe(world.make("b.test", B_IP, BOB, BOB_PW, FAST), wasm).start()

    submit(a, ALICE, ALICE_PW, BOB, "seen by the probe")
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert unfolded(got, "X-Probe-Auth") == [
        "spf=pass (a.test) dkim=pass (a.test s1) dmarc=pass (a.test p=reject) arc=none"
    ], got
    [probe] = header(got, "X-Probe")
    assert "listener=mx" in probe, probe
    # The same results in B's header; B's trace fields stay on top.
    [results] = auth_results(got)
    assert (results["spf"], results["dkim"], results["dmarc"]) == ("pass", "pass", "pass")
    assert "arc" not in results, results  # no ARC set, no arc=
    assert field_names(got)[:5] == [b"Return-Path", b"Received", b"Authentication-Results",
                                    b"X-Probe-Auth", b"X-Probe"], field_names(got)


def test_plugin_sees_the_failures_of_a_forged_message(world, wasm):
    b = with_probe(world.make("b.test", B_IP, BOB, BOB_PW, FAST,
                              inbound={"verify": True, "dmarc_reject": False}), wasm).start()
    assert forge(b, world.port, FORGED) == {}
    [got] = wait_messages(b, BOB, BOB_PW, 1)
    assert unfolded(got, "X-Probe-Auth") == [
        "spf=fail (a.test) dkim=none dmarc=fail (a.test p=reject) arc=none"
    ], got
