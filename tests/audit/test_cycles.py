"""`run --cycles`: the residue per cycle of a program run at several cycle counts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from _audit_testlib import c_compiler, static_library
from audit import preload
from audit.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"


@pytest.fixture(scope="module")
def cycles(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/audit/programs/cycles.c, frame pointers on, against the static library."""
    preload.library_path()  # raises with a hint (make preload) when the library is missing
    out = tmp_path_factory.mktemp("cycles") / "cycles"
    subprocess.run([c_compiler(), "-std=c11", "-O0", "-g", "-fno-omit-frame-pointer", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", str(PROGRAMS / "cycles.c"), str(static_library()),
                    "-lpthread", "-o", str(out)], check=True)
    return str(out)


def _by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(r["key"]): r for r in doc["rows"] if not r.get("suppressed")}


def test_residue_per_cycle_by_function_is_exact(cycles: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--cycles", "2,5,9", "--by", "function", "--format", "json",
                 "--", cycles, "{cycles}"]) == 0
    err = capsys.readouterr().err
    # the table goes to stderr (stdout is the program's), after one line per run
    doc, _ = json.JSONDecoder().raw_decode(err[err.index("{"):])
    rows = _by_key(doc)
    for interval in ("2_5", "5_9"):
        assert rows["leak_twice"][f"blocks_per_cycle_{interval}"] == 2.0
        assert rows["leak_twice"][f"bytes_per_cycle_{interval}"] == 96.0
        # the first cycle's allocation is in every report: no residue per cycle
        assert rows["remember_once"][f"bytes_per_cycle_{interval}"] == 0.0
    assert "scratch" not in rows
    assert doc["cycles"] == [2, 5, 9]
    assert [t["bytes_per_cycle"] for t in doc["totals"]] == [96.0, 96.0]
    assert "last two intervals differ by +0.0 blocks, +0.0 bytes per cycle" in err


def test_summary_gives_the_total_per_cycle(cycles: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--cycles", "1,4", "--by", "module", "--", cycles, "{cycles}"]) == 0
    err = capsys.readouterr().err
    assert "residue per cycle by module (cycles 1 to 4)" in err
    assert "at 1 cycles: exited with status 0" in err and "at 4 cycles" in err
    assert "residue per cycle: cycles 1 to 4: 2.0 blocks, 96.0 bytes per cycle" in err


def test_pool_reports_give_the_residue_per_cycle_by_tag(cycles: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "residue.json"
    assert main(["run", "--cycles", "3,10", "--format", "json", "--output", str(out), "--",
                 cycles, "{cycles}", "pool"]) == 0
    rows = _by_key(json.loads(out.read_text()))
    assert rows["residue"]["blocks_per_cycle_3_10"] == 1.0 and rows["residue"]["bytes_per_cycle_3_10"] == 64.0
    assert rows["once"]["bytes_per_cycle_3_10"] == 0.0
    assert rows["temp"]["bytes_per_cycle_3_10"] == 0.0
    assert "1.0 blocks, 64.0 bytes per cycle" in capsys.readouterr().err


def test_report_dir_keeps_one_directory_per_count(cycles: str, tmp_path: Path) -> None:
    where = tmp_path / "kept"
    assert main(["run", "--preload", "--cycles", "1,2", "--report-dir", str(where), "--output",
                 str(tmp_path / "t.txt"), "--", cycles, "{cycles}"]) == 0
    for count in (1, 2):
        files = list((where / f"cycles-{count}").glob("ringpool-preload.*.json"))
        assert len(files) == 1
        assert json.loads(files[0].read_text())["format"] == "ringpool-preload"


def test_gate_judges_the_residue_per_cycle(cycles: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run", "--preload", "--cycles", "1,3", "--by", "function", "--output", os.devnull, "--force"]
    assert main([*base, "--max-leak-bytes", "96", "--", cycles, "{cycles}"]) == 0
    assert main([*base, "--max-leak-bytes", "95", "--", cycles, "{cycles}"]) == 2
    assert "leak_twice" in capsys.readouterr().err
    assert main([*base, "--fail-on-leak", "--", cycles, "{cycles}"]) == 2
    assert main([*base, "--fail-on-leak", "--allow-tag", "leak_*", "--", cycles, "{cycles}"]) == 0


def test_a_failing_run_stops_with_its_status(cycles: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--cycles", "1,2", "--", cycles, "{cycles}", "fail"]) == 1
    err = capsys.readouterr().err
    assert "exited with status 3 at 1 cycles" in err and "no residue computed" in err


@pytest.mark.parametrize("value, message", [
    ("5", "at least two counts"),
    ("5,3", "must increase"),
    ("5,5", "must increase"),
    ("0,10", "from 1 to 10**9"),
    ("1,ten", "not a number of cycles"),
])
def test_bad_counts_are_refused(value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--cycles", value, "--", "true", "{cycles}"]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, cmd, message", [
    ([], ["true"], "put {cycles} in the program's arguments"),
    (["--python"], ["script.py", "{cycles}"], "does not apply to --python"),
    (["--blocks"], ["true", "{cycles}"], "--blocks lists blocks of one run"),
    (["--format", "folded"], ["true", "{cycles}"], "a residue per cycle is a table"),
])
def test_what_cycles_cannot_do_is_refused_before_running(extra: list[str], cmd: list[str], message: str,
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    assert main(["run", "--cycles", "1,2", *extra, "--", *cmd]) == 1
    assert message in capsys.readouterr().err
    assert not marker.exists()
