"""The malloc family at its edges under the interposer: the answers a
program gets must be glibc's (value and errno), and the report exact.

tests/preload/boot.c: blocks from the interposer's bootstrap buffer (made by
tests/preload/libs/bootdl.c while the interposer resolves the real
functions) used as the program would use glibc's.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from audit import preload
from preload_helpers import REPO, clean_env, marker_line, only_report, program, run, site_key, sites_of


def program_blocks(report: preload.PreloadReport, name: str) -> dict[str, tuple[int, int]]:
    rows = preload.rows(sites_of(report, name), by="site")
    return {r["key"]: (r["blocks"], r["bytes"]) for r in rows if r["blocks"]}


MODES = {"depth-1": {"RINGPOOL_PRELOAD_STACK_DEPTH": "1"},
         "depth-64": {"RINGPOOL_PRELOAD_STACK_DEPTH": "64"},
         "sampling": {"RINGPOOL_PRELOAD_SAMPLE_RATE": "0.001"}}


@pytest.mark.parametrize("fill", ["1", "0"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_bootstrap_blocks_behave_as_glibc_blocks(lib: str, mode: str, fill: str,
                                                 tmp_path: Path) -> None:
    # fill "1": the buffer is filled to its end, then malloc(0); "0": the
    # last bootstrap block is a malloc(0), which the sampling mode's free
    # filter must know
    bootdl = program("libbootdl.so")
    plain = subprocess.run([program("boot")],
                           env=clean_env(None, LD_PRELOAD=bootdl, BOOTDL_FILL=fill),
                           capture_output=True, timeout=60)
    assert plain.returncode == 0, plain.stderr.decode()
    assert plain.stdout.endswith(b"boot done\n")
    # timeout: a call the resolving thread makes must not wait for itself
    proc = run(lib, [program("boot")], tmp_path, timeout=30,
               env={"LD_PRELOAD": f"{bootdl}:{lib}", "BOOTDL_FILL": fill, **MODES[mode]})
    assert proc.returncode == 0, proc.stderr.decode()
    # realloc(p, 0) is NULL, huge alignments EINVAL, odd ones rounded up,
    # pvalloc whole pages, and the blocks made after a refused call keep
    # their contents (the buffer is never handed out twice)
    assert proc.stdout.decode() == plain.stdout.decode()
    rep = only_report(tmp_path)
    assert rep.totals["bootstrap_bytes"] > 0
    if mode == "sampling":
        return
    # the realloc of a bootstrap block is the program's one block; a
    # realloc(p, 0) of one leaves nothing behind
    assert program_blocks(rep, "boot") == {
        site_key("main", "boot.c", marker_line("boot.c", "LEAK-BR")): (1, 1 << 20)}


@pytest.mark.parametrize("code", ["7", "E9"])
def test_exit_while_resolving(lib: str, code: str, tmp_path: Path) -> None:
    # _exit(7) / _Exit(9) called from dlsym while the interposer resolves
    proc = run(lib, [program("boot")], tmp_path, timeout=30,
               env={"LD_PRELOAD": f"{program('libbootdl.so')}:{lib}", "BOOTDL_EXIT": code})
    assert proc.returncode == int(code.lstrip("E")), proc.stderr.decode()
    assert proc.stdout == b""
    assert not list(tmp_path.glob("*.json"))   # nothing was recorded


def test_bootstrap_blocks_ubsan_clean(tmp_path: Path) -> None:
    ubsan = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB",
                           str(REPO / "build" / "libringpool-preload-ubsan.so"))
    proc = run(ubsan, [program("boot")], tmp_path,
               env={"LD_PRELOAD": f"{program('libbootdl.so')}:{ubsan}"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"runtime error" not in proc.stderr
    assert proc.stdout.endswith(b"boot done\n")


@pytest.mark.parametrize("depth", ["1", "64"])
def test_failed_realloc_changes_nothing(lib: str, depth: str, tmp_path: Path) -> None:
    plain = subprocess.run([program("realloc_fail")], env=clean_env(), capture_output=True,
                           timeout=60)
    assert plain.returncode == 0 and plain.stdout == b"realloc_fail ok\n", plain.stderr.decode()
    proc = run(lib, [program("realloc_fail")], tmp_path,
               env={"RINGPOOL_PRELOAD_STACK_DEPTH": depth})
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"realloc_fail ok\n"
    rep = only_report(tmp_path)
    # 6 failed calls on a block the interposer never saw free nothing;
    # the one realloc that succeeds does
    assert rep.totals["untracked_frees"] == 1
    assert program_blocks(rep, "realloc_fail") == {
        site_key("main", "realloc_fail.c", marker_line("realloc_fail.c", "LEAK-RF")): (1, 100),
        site_key("main", "realloc_fail.c", marker_line("realloc_fail.c", "LEAK-RS")): (1, 200)}


@pytest.mark.parametrize("depth", ["1", "64"])
def test_signal_handler_using_the_whole_family_is_counted_exactly(lib: str, depth: str,
                                                                  tmp_path: Path) -> None:
    handled = queued = 0
    for _ in range(4):
        for old in tmp_path.glob("*.json"):
            old.unlink()
        try:
            proc = run(lib, [program("sigmix"), "300000"], tmp_path, timeout=60,
                       env={"LD_PRELOAD": f"{lib}:{program('libsigsafe.so')}",
                            "RINGPOOL_PRELOAD_STACK_DEPTH": depth,
                            "RINGPOOL_PRELOAD_ALL_SITES": "1"})
        except subprocess.TimeoutExpired:
            pytest.fail("sigmix hung under the interposer")
        assert proc.returncode == 0, proc.stderr.decode()
        m = re.fullmatch(rb"handler (\d+) queued (\d+) blocks (\d+) bytes (\d+) allocs (\d+)\n",
                         proc.stdout)
        assert m, proc.stdout
        h, q, blocks, nbytes, allocs = (int(x) for x in m.groups())
        handled += h
        queued += q
        rep = only_report(tmp_path)
        rows = preload.rows(sites_of(rep, "sigmix"), by="site")
        got = (sum(r["blocks"] for r in rows), sum(r["bytes"] for r in rows),
               sum(r["allocs"] for r in rows))
        assert got == (blocks, nbytes, allocs)
        assert rep.totals["dropped"] == 0 and rep.totals["untracked_frees"] == 0
    assert handled > 100
    assert queued > 0, "no handler interrupted the bookkeeping: the queued paths were not run"


def test_signal_handler_family_ubsan_clean(tmp_path: Path) -> None:
    ubsan = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB",
                           str(REPO / "build" / "libringpool-preload-ubsan.so"))
    proc = run(ubsan, [program("sigmix"), "200000"], tmp_path, timeout=60,
               env={"LD_PRELOAD": f"{ubsan}:{program('libsigsafe.so')}",
                    "RINGPOOL_PRELOAD_STACK_DEPTH": "64"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"runtime error" not in proc.stderr
