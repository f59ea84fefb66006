"""The overhead bench (benches/preload/overhead.py) measures every tool on the
same process and work: no workload runs behind a shell (heaptrack traces only
the process it starts), no argument holds a newline (heaptrack's trace is
line-based and its command line is written into it), and the allocation
calls each tool recorded are read back so that a tool that traced nothing is
reported as failed, not as cheap."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benches" / "preload" / "overhead.py"


def overhead() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rp_overhead_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod      # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def workloads(tmp_path: Path) -> list[object]:
    bench = overhead()
    args = argparse.Namespace(sqlite_rows=10, git_commits=1, sort_lines=10, loop_rounds=10,
                              alloc_loop="/bin/true", cc1_lines=50)
    found: list[object] = bench.workloads(args, tmp_path)
    return found


def test_no_workload_runs_behind_a_shell(tmp_path: Path) -> None:
    for wl in workloads(tmp_path):
        argv = getattr(wl, "argv")
        assert Path(argv[0]).name not in ("sh", "bash", "dash", "env"), argv
        assert "-c" not in argv[1:2], argv


def test_no_workload_argument_holds_a_newline(tmp_path: Path) -> None:
    for wl in workloads(tmp_path):
        for arg in getattr(wl, "argv"):
            assert "\n" not in arg, getattr(wl, "name")


def test_sqlite3_reads_its_script_from_standard_input(tmp_path: Path) -> None:
    sqlite = [wl for wl in workloads(tmp_path) if getattr(wl, "name") == "sqlite3"]
    assert len(sqlite) == 1
    assert getattr(sqlite[0], "argv")[0] == "sqlite3"
    assert getattr(sqlite[0], "stdin") == "inserts.sql"


def test_python3_script_is_written_to_a_file(tmp_path: Path) -> None:
    py = [wl for wl in workloads(tmp_path) if getattr(wl, "name") == "python3"][0]
    getattr(py, "prepare")(tmp_path)
    script = Path(getattr(py, "argv")[1])
    assert script.read_text() == overhead().PY_WORKLOAD


def test_heaptrack_allocation_count_is_read_from_its_stats(tmp_path: Path) -> None:
    bench = overhead()
    stats = b"heaptrack stats:\n\tallocations:          \t3012557\n\tleaked allocations:   \t17\n"
    assert bench.allocations_seen("heaptrack", stats, tmp_path, 1) == 3012557
    assert bench.allocations_seen("heaptrack", b"nothing here\n", tmp_path, 1) == 0
    assert bench.allocations_seen("native", stats, tmp_path, 1) is None


def test_interposer_allocation_count_sums_the_run_reports(tmp_path: Path) -> None:
    bench = overhead()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r7.100.json").write_text('{"totals": {"allocs": 5}}')
    (tmp_path / "reports" / "r7.101.json").write_text('{"totals": {"allocs": 6}}')
    (tmp_path / "reports" / "r8.102.json").write_text('{"totals": {"allocs": 1000}}')
    assert bench.allocations_seen("preload", b"", tmp_path, 7) == 11
    assert bench.allocations_seen("preload-1", b"", tmp_path, 9) == 0


@pytest.mark.parametrize("tool", ["heaptrack", "preload"])
def test_a_tool_that_recorded_nothing_fails(tool: str, tmp_path: Path) -> None:
    bench = overhead()
    (tmp_path / "reports").mkdir()
    m = bench.Measure()
    bench.note_allocations(tool, m, b"", tmp_path, 3)
    assert m.allocations == [0]
    assert "saw no allocation" in m.failure


def test_a_heaptrack_that_cannot_read_its_trace_fails(tmp_path: Path) -> None:
    bench = overhead()
    m = bench.Measure()
    err = (b"unexpected non-hex char: 116 2\n./src/interpret/heaptrack_interpret.cpp:461 "
           b"ERROR:failed to parse line: total = 0\nheaptrack stats:\n\tallocations:  \t12\n")
    bench.note_allocations("heaptrack", m, err, tmp_path, 1)
    assert m.allocations == [12]
    assert "could not read its own trace" in m.failure


def test_a_tool_that_recorded_calls_passes(tmp_path: Path) -> None:
    bench = overhead()
    m = bench.Measure()
    bench.note_allocations("heaptrack", m, b"heaptrack stats:\n\tallocations: \t7\n", tmp_path, 1)
    assert m.allocations == [7]
    assert m.failure == ""
