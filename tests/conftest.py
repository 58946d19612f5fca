"""pytest fixtures: a fresh, running mailgate per test.

Users are created once per test session through the real CLI
(`mailgate user add ADDRESS --password-stdin`) in a template data directory;
each test gets its own copy of that directory and its own server process, so
tests never see each other's mail.  Teardown sends SIGTERM and fails the test
(as a teardown error) if the server does not exit with status 0.
"""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import USERS, Server, binary_source  # noqa: E402


@pytest.fixture(scope="session")
def mailgate_bin(tmp_path_factory) -> Path:
    src = binary_source()
    if not src.is_file():
        pytest.fail(f"mailgate binary not found at {src} (build it with `cargo build -p mailgate`"
                    " or set MAILGATE_BIN)", pytrace=False)
    # Private copy: a concurrent `cargo build` must not replace it mid-run.
    dst = tmp_path_factory.mktemp("bin") / "mailgate"
    shutil.copy2(src, dst)
    dst.chmod(dst.stat().st_mode | stat.S_IXUSR)
    return dst


@pytest.fixture(scope="session")
def template_data(mailgate_bin, tmp_path_factory) -> Path:
    """A data directory holding USERS, made with the CLI while no server runs."""
    srv = Server(binary=mailgate_bin, workdir=tmp_path_factory.mktemp("template"))
    for address, password in USERS.items():
        srv.add_user(address, password)
    listed = srv.cli("user", "list", check=True).stdout_text.split()
    missing = [a for a in USERS if a not in listed]
    assert not missing, f"`user list` lacks {missing}: {listed!r}"
    # On PostgreSQL each server's database is a copy of this one.
    harness.PG_TEMPLATE = srv.store_db
    # (On PostgreSQL the CLI leaves the data directory alone: make it.)
    srv.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return srv.data_dir


@pytest.fixture
def server_factory(mailgate_bin, template_data, tmp_path):
    """Returns make(limits=..., auth=..., listen=..., start=True) -> Server."""
    made: list[Server] = []

    def make(limits=None, auth=None, listen=None, start=True, name=None) -> Server:
        workdir = tmp_path / (name or f"srv{len(made)}")
        srv = Server(binary=mailgate_bin, workdir=workdir, limits=limits or {},
                     auth=auth or {}, listen=listen)
        shutil.copytree(template_data, srv.data_dir)
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield make

    problems = []
    for srv in made:
        if srv.proc is None:
            continue
        try:
            rc = srv.stop()
            if rc != 0:
                problems.append(f"server exited with status {rc} after SIGTERM;"
                                f" stderr tail:\n{srv.stderr_tail()}")
        except harness.ServerError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def server(server_factory) -> Server:
    return server_factory()


@pytest.fixture(scope="session", autouse=True)
def private_postgres():
    """With MAILGATE_TEST_STORE=postgres: the private PostgreSQL server the
    stores live in (started on first use), stopped at the end of the session."""
    yield
    if harness.STORE == "postgres":
        import pg_server
        pg_server.stop_shared()


def pytest_report_header(config):
    return (f"mailgate binary: {binary_source()} (override with MAILGATE_BIN); "
            f"store: {harness.STORE} (MAILGATE_TEST_STORE=sqlite|postgres)")
