"""One-time allocations of the C and C++ runtimes are suppressed by default,
shown with their real origin, and nothing of the program's own is."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import preload
from preload_helpers import marker_line, only_report, program, run, site_key


@pytest.mark.parametrize("depth", ["1", "64"])
def test_libstdcxx_emergency_pool_is_suppressed_with_its_origin(lib: str, tmp_path: Path,
                                                                depth: str) -> None:
    proc = run(lib, [program("cxx")], tmp_path, env={"RINGPOOL_PRELOAD_STACK_DEPTH": depth})
    if proc.returncode == 77:
        pytest.skip("libstdc++.so.6 is not installed")
    assert proc.returncode == 0, proc.stderr
    rows = preload.rows(only_report(tmp_path), by="function")
    pool = [r for r in rows if "libstdc++" in r["key"] or r["key"].startswith("(anonymous namespace)::pool")]
    assert pool and all(r["suppressed"] for r in pool), rows
    # the pool is one block of at least 64 KiB, allocated once at start-up
    assert any(r["blocks"] == 1 and r["bytes"] >= 65536 for r in pool)
    assert not any(r["key"].startswith("std::") and r["bytes"] >= 65536 for r in rows)


def test_glibc_one_time_buffers_are_suppressed(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("startup")], tmp_path, env={"RINGPOOL_PRELOAD_STACK_DEPTH": "64"})
    assert proc.returncode == 0, proc.stderr
    rep = only_report(tmp_path)
    rows = preload.rows(rep, by="site")
    loud = [(r["key"], r["bytes"]) for r in rows if not r["suppressed"]]
    assert loud == [(site_key("main", "startup.c", marker_line("startup.c", "LEAK-S")), 33)]
    quiet = {r["key"].split(" ")[0] for r in preload.rows(rep, by="function") if r["suppressed"]}
    assert {"getpwuid", "getgrgid"} <= quiet


def test_getpwuid_buffer_suppressed_with_one_frame(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("startup")], tmp_path, env={"RINGPOOL_PRELOAD_STACK_DEPTH": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: r for r in preload.rows(only_report(tmp_path), by="function")}
    assert rows["getpwuid"]["suppressed"] and rows["getgrgid"]["suppressed"]
    assert not rows["main"]["suppressed"] and rows["main"]["bytes"] == 33
