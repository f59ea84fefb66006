"""Signal handlers that allocate, while the interrupted code is inside the
interposer's own bookkeeping: never a hang, never a lost block.

The allocator underneath is tests/preload/libs/sigsafe.c (lock-free, so a
handler may interrupt it): glibc's malloc takes its arena lock once a second
thread exists and deadlocks in such a handler with or without an
interposer, so with glibc underneath a hang would prove nothing about us.

`benches/preload/signal_soak.py` (make soak-preload) runs the same check 200
times per variant; here a few runs keep `make test` short.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from audit import preload
from preload_helpers import marker_line, only_report, program, run, site_key, sites_of

RUNS = 6


def expected(stdout: bytes) -> tuple[dict[str, tuple[int, int, int]], int]:
    """(blocks, bytes, allocs) per site, computed from the program's own counts."""
    m = re.fullmatch(rb"handler (\d+) kept_h (\d+) kept_m (\d+) iters (\d+)\n", stdout)
    assert m, stdout
    handler, kept_h, kept_m, iters = (int(x) for x in m.groups())
    m_bytes = sum(16 + (i & 255) for i in range(iters) if i % 1000 == 999)
    key = site_key("xalloc", "sigalloc.c", marker_line("sigalloc.c", "LEAK-X"))
    assert kept_h == len(range(0, handler, 8)) and kept_m == iters // 1000
    return {key: (kept_h + kept_m, kept_h * 40 + m_bytes, iters + 16 * handler)}, handler


def check_one(lib: str, tmp: Path, variant: str, iters: int) -> int:
    for old in tmp.glob("*.json"):
        old.unlink()
    try:
        proc = run(lib, [program("sigalloc"), variant, str(iters)], tmp, timeout=60,
                   env={"LD_PRELOAD": f"{lib}:{program('libsigsafe.so')}"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"sigalloc {variant} hung under the interposer")
    assert proc.returncode == 0, proc.stderr.decode()
    want, handled = expected(proc.stdout)
    rep = only_report(tmp)
    got = {r["key"]: (r["blocks"], r["bytes"], r["allocs"])
           for r in preload.rows(sites_of(rep, "sigalloc"), by="site")}
    assert got == want
    assert rep.totals["dropped"] == 0
    return handled


@pytest.mark.parametrize("variant", ["single", "threads"])
def test_allocating_signal_handler_neither_hangs_nor_miscounts(lib: str, tmp_path: Path,
                                                               variant: str) -> None:
    handled = sum(check_one(lib, tmp_path, variant, 300000) for _ in range(RUNS))
    # the timer fires every 200 us: the handler ran thousands of times in all
    assert handled > 100


@pytest.mark.parametrize("variant", ["single", "threads"])
def test_deferred_path_is_ubsan_clean(tmp_path: Path, variant: str) -> None:
    import os
    from preload_helpers import REPO
    ubsan = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB",
                           str(REPO / "build" / "libringpool-preload-ubsan.so"))
    proc = run(ubsan, [program("sigalloc"), variant, "100000"], tmp_path, timeout=60,
               env={"LD_PRELOAD": f"{ubsan}:{program('libsigsafe.so')}"})
    assert proc.returncode == 0 and b"runtime error" not in proc.stderr, proc.stderr
    assert only_report(tmp_path).totals["dropped"] == 0
