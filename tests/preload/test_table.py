"""The block table and the per-thread counters under churn: every site's
outstanding blocks and bytes, allocations and allocated bytes in the report
equal what the program itself counted, in the one-frame mode and with whole
stacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit import preload

from preload_helpers import only_report, program, run


def expected_counts(stdout: bytes) -> dict[str, tuple[int, int, int, int]]:
    out = {}
    for line in stdout.decode().splitlines():
        name, blocks, nbytes, allocs, abytes = line.split()
        out[name] = (int(blocks), int(nbytes), int(allocs), int(abytes))
    return out


@pytest.mark.parametrize("depth", ["1", "64"])
def test_churn_counts_exact_per_site(lib: str, tmp_path: Path, depth: str) -> None:
    proc = run(lib, [program("table_churn"), "60000", "6000"], tmp_path,
               env={"RINGPOOL_PRELOAD_STACK_DEPTH": depth, "RINGPOOL_PRELOAD_ALL_SITES": "1"})
    assert proc.returncode == 0, proc.stderr
    want = expected_counts(proc.stdout)
    assert len(want) > 192          # every site function (and main)
    rep = only_report(tmp_path)
    mine = preload.PreloadReport(rep.path, rep.pid, rep.exe, rep.taken_at, rep.reason,
                                 rep.totals, rep.modules,
                                 tuple(s for s in rep.sites if s.module.endswith("/table_churn")))
    if depth == "64":
        # one site per stack: more than a thread's 4096 counter slots
        assert len(mine.sites) > 4096
    got: dict[str, tuple[int, int, int]] = {}
    for row in preload.rows(mine, by="function"):
        name = str(row["key"]).split(" ")[0]
        b, n, a = got.get(name, (0, 0, 0))
        got[name] = (b + int(row["blocks"]), n + int(row["bytes"]), a + int(row["allocs"]))
    assert got == {k: v[:3] for k, v in want.items()}
    with open(rep.path, encoding="utf-8") as fh:
        doc = json.load(fh)
    alloc_bytes = sum(s["alloc_bytes"] for s in doc["sites"] if s["module"].endswith("/table_churn"))
    assert alloc_bytes == sum(v[3] for v in want.values())


def test_frees_of_blocks_never_seen_are_counted_and_freed(lib: str, tmp_path: Path) -> None:
    # the first operations meet shards that have no table yet
    proc = run(lib, [program("table_churn"), "foreign", "500"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"foreign 500\n"
    rep = only_report(tmp_path)
    assert rep.totals["untracked_frees"] == 500
    assert rep.totals["dropped"] == 0


def site_rows(rep: preload.PreloadReport) -> dict[str, dict[str, int]]:
    mine = preload.PreloadReport(rep.path, rep.pid, rep.exe, rep.taken_at, rep.reason,
                                 rep.totals, rep.modules,
                                 tuple(s for s in rep.sites if s.module.endswith("/table_churn")))
    return {str(row["key"]).split(" ")[0]: row for row in preload.rows(mine, by="function")}


@pytest.mark.parametrize("depth", ["1", "64"])
def test_block_freed_behind_the_interposer_is_replaced_when_reused(
        lib: str, tmp_path: Path, depth: str) -> None:
    # outstanding blocks are the table's entries: a stale entry that the
    # next block at its address replaced is counted nowhere
    proc = run(lib, [program("table_churn"), "behind", "300"], tmp_path,
               env={"RINGPOOL_PRELOAD_STACK_DEPTH": depth, "RINGPOOL_PRELOAD_ALL_SITES": "1"})
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    reused = int(words[3])
    assert reused > 0
    rows = site_rows(only_report(tmp_path))
    assert int(rows["behind_a"]["blocks"]) == 300 - reused
    assert int(rows["behind_a"]["allocs"]) == 300
    assert (int(rows["behind_b"]["blocks"]), int(rows["behind_b"]["bytes"])) == (300, 300 * 48)


def test_failed_realloc_leaves_its_block_outstanding(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("table_churn"), "realloc-fail"], tmp_path,
               env={"RINGPOOL_PRELOAD_ALL_SITES": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = site_rows(only_report(tmp_path))
    assert (int(rows["behind_a"]["blocks"]), int(rows["behind_a"]["bytes"])) == (1, 64)
    assert "realloc_fails" not in rows


def test_reports_while_another_thread_grows_the_table(lib: str, tmp_path: Path) -> None:
    # the report reads the block table without its locks; tables that grow
    # meanwhile stay mapped, and the exit report is exact
    proc = run(lib, [program("table_churn"), "grow-signal", "300000", "200"], tmp_path,
               env={"RINGPOOL_PRELOAD_SIGNAL": "USR2"}, pattern="r.%p.%r.json")
    assert proc.returncode == 0, proc.stderr
    at_exit = [p for p in tmp_path.glob("*.exit.json")]
    assert len(at_exit) == 1
    rows = site_rows(preload.load(str(at_exit[0])))
    assert (int(rows["behind_b"]["blocks"]), int(rows["behind_b"]["bytes"])) == (300000, 300000 * 24)
