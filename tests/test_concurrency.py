"""200 concurrent SMTP sessions, each its own connection and thread, each
delivering one message with a unique id: all 200 arrive, none twice."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from harness import make_message

N = 200


def test_200_concurrent_sessions(server):
    start = threading.Barrier(N, timeout=20)

    def deliver(i):
        msg = make_message(f"load {i}", f"payload {i}\r\n",
                           extra_headers=[f"X-Test-Id: id-{i:04d}"])
        with server.smtp() as s:  # connect first, so all sessions are open together
            s.ehlo()
            try:
                start.wait()
            except threading.BrokenBarrierError:
                pass  # a slow peer must not fail everyone: just go on
            refused = s.sendmail(f"sender{i}@remote.test", ["alice@example.test"], msg)
            assert refused == {}, refused
        return i

    with ThreadPoolExecutor(max_workers=N) as ex:
        futures = [ex.submit(deliver, i) for i in range(N)]
        errors = []
        for f in futures:
            try:
                f.result(timeout=120)
            except Exception as e:  # collect, report all at once
                errors.append(repr(e))
    assert not errors, f"{len(errors)} of {N} sessions failed, e.g. {errors[:5]}"

    p = server.pop3("alice@example.test")
    try:
        count, _ = p.stat()
        ids = []
        for n in range(1, count + 1):
            resp, lines, _ = p.top(n, 0)
            found = [ln for ln in lines if ln.startswith(b"X-Test-Id: ")]
            assert len(found) == 1, lines
            ids.append(found[0].split(b": ", 1)[1].decode())
        resp, listing, _ = p.list()
        assert len(listing) == count
    finally:
        p.quit()
    dups = sorted({i for i in ids if ids.count(i) > 1})
    assert not dups, f"delivered twice: {dups}"
    assert count == N, f"STAT says {count} messages, expected {N}"
    assert sorted(ids) == [f"id-{i:04d}" for i in range(N)]
