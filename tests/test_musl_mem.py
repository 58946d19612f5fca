"""scripts/musl-mem.c, the memcmp, bcmp and memcpy that scripts/build-static
links into the static x86_64 binary in place of musl's (docs/deployment.md,
"musl: memcmp and memcpy").

The file is compiled with musl-gcc and exactly the flags of
scripts/build-static (its MUSL_MEM_CFLAGS line), archived and linked as a
whole static archive into tests/musl_mem_check.c, which compares the
functions with byte-loop references on random and edge-case inputs
(lengths 0-300 and up to 1 MiB, alignments, the sign of memcmp's result,
memcpy's bounds, memmove's overlaps through __memcpy_fwd). The linker's
symbol trace shows that the definitions used are those of musl-mem.c, not
libc.a's.

Needs musl-gcc (Debian's musl-tools, which scripts/build-static installs);
without it the test skips, except in CI, where it fails.
"""

from __future__ import annotations

import os
import platform
import random
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "scripts" / "musl-mem.c"
CHECK = ROOT / "tests" / "musl_mem_check.c"
SYMBOLS = {"memcmp", "bcmp", "memcpy", "__memcpy_fwd"}


def build_static_cflags() -> list[str]:
    text = (ROOT / "scripts" / "build-static").read_text()
    m = re.search(r"^MUSL_MEM_CFLAGS=\((.*)\)$", text, re.M)
    assert m, "scripts/build-static has no MUSL_MEM_CFLAGS=(...) line"
    return shlex.split(m.group(1))


@pytest.fixture(scope="module")
def musl_gcc() -> str:
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("musl-mem.c is for x86_64 only")
    cc = shutil.which("musl-gcc")
    if cc is None:
        if os.environ.get("CI"):
            pytest.fail("musl-gcc missing in CI (scripts/build-static installs musl-tools)",
                        pytrace=False)
        pytest.skip("musl-gcc not installed (apt-get install musl-tools)")
    return cc


@pytest.fixture(scope="module")
def archive(musl_gcc, tmp_path_factory) -> Path:
    """libmusl_mem.a built as scripts/build-static builds it."""
    d = tmp_path_factory.mktemp("musl-mem")
    obj = d / "musl-mem.o"
    subprocess.run([musl_gcc, *build_static_cflags(), "-c", str(SOURCE), "-o", str(obj)],
                   check=True)
    lib = d / "libmusl_mem.a"
    subprocess.run(["ar", "rcs", str(lib), str(obj)], check=True)
    return lib


def test_defines_the_functions_and_calls_nothing(archive):
    """Exactly the four functions, and no undefined symbol: a call to memcpy
    or memcmp made by the compiler inside them would be a call to itself."""
    out = subprocess.run(["nm", str(archive)], capture_output=True, text=True,
                         check=True).stdout
    defined = {line.split()[-1] for line in out.splitlines()
               if re.match(r"^[0-9a-f]+ T ", line)}
    undefined = [line for line in out.splitlines() if re.match(r"^\s+U ", line)]
    assert defined == SYMBOLS, out
    assert undefined == [], out


def test_against_reference(musl_gcc, archive, tmp_path):
    exe = tmp_path / "musl_mem_check"
    # Linked as scripts/build-static links it into mailgate: the whole
    # archive, then musl's libc.a, whose members for these names must not
    # be pulled in (-y traces where each is defined).
    trace = [f"-Wl,-y,{s}" for s in sorted(SYMBOLS)]
    r = subprocess.run(
        [musl_gcc, "-static", "-O1", "-fno-builtin", "-fno-tree-loop-distribute-patterns",
         "-Wall", "-Werror", str(CHECK), "-o", str(exe),
         "-Wl,--whole-archive", str(archive), "-Wl,--no-whole-archive", *trace],
        capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    link_trace = r.stdout + r.stderr
    for sym in SYMBOLS:
        defs = [line for line in link_trace.splitlines()
                if line.endswith(f"definition of {sym}")]
        assert len(defs) == 1 and "musl-mem.o" in defs[0], link_trace
    seed = random.randrange(1, 2**63)
    r = subprocess.run([str(exe), str(seed)], capture_output=True, text=True, timeout=150)
    out = r.stdout + r.stderr
    last = out.strip().splitlines()[-1] if out.strip() else ""
    assert r.returncode == 0, f"seed {seed}:\n{out[-5000:]}"
    m = re.fullmatch(r"musl-mem: (\d+) passed, 0 failed", last)
    assert m and int(m.group(1)) > 1_000_000, out[-2000:]
