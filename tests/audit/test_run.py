"""`run`: a compiled program that links libringpool writes its reports; the CLI shows them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from audit.cli import main


def _json_out(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_reports_of_destroy_and_exit(leaky: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    assert main(["run", "--report-dir", str(reports), "--format", "json", "--", leaky]) == 0
    doc, err = _json_out(capsys)
    rows = {(r["pool"], r["key"]): r for r in doc["rows"]}
    assert rows[("app", "cache")]["blocks"] == 3 and rows[("app", "cache")]["bytes"] == 3000
    # worker is a child of app: its own report names its parent ("parents"), its rows are app/worker
    assert rows[("app/worker", "pending")]["blocks"] == 1 and rows[("app/worker", "pending")]["bytes"] == 48
    assert rows[("app", "frames")]["blocks"] == 0 and rows[("app", "frames")]["allocs"] == 10
    reasons = {r["pool"]: r["reason"] for r in doc["reports"]}
    assert reasons == {"app": "exit", "worker": "destroy"}
    assert {r["pool"]: r.get("parents") for r in doc["reports"]} == {"app": None, "worker": ["app"]}
    names = sorted(p.name for p in reports.iterdir())
    assert len(names) == 2 and names[0].startswith("app.") and names[1].startswith("worker.")
    assert "exited with status 0" in err and "4 blocks, 3048 bytes" in err


def test_reports_at_quick_exit(leaky: str, capsys: pytest.CaptureFixture[str]) -> None:
    # quick_exit runs no destructor: "app", alive at exit, wrote no report and run
    # returned 1 ("it wrote no report") for a program that exited 0
    assert main(["run", "--format", "json", "--", leaky, "0", "quick_exit"]) == 0
    doc, err = _json_out(capsys)
    rows = {(r["pool"], r["key"]): r for r in doc["rows"]}
    assert (rows[("app", "cache")]["blocks"], rows[("app", "cache")]["bytes"]) == (3, 3000)
    assert {r["pool"]: r["reason"] for r in doc["reports"]} == {"app": "exit", "worker": "destroy"}
    assert "exited with status 0" in err


def test_temporary_report_dir_is_removed(leaky: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["run", "--", leaky]) == 0
    out = capsys.readouterr().out
    assert "cache" in out and "pending" in out
    assert list(tmp_path.iterdir()) == []


def test_gate_and_allowed_tags(leaky: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--fail-on-leak", "--", leaky]) == 2
    err = capsys.readouterr().err
    assert "leak gate: FAILED" in err and "cache" in err and "pending" in err
    assert main(["run", "--fail-on-leak", "--allow-tag", "cache", "--allow-tag", "pend*", "--", leaky]) == 0
    assert main(["run", "--max-leak-bytes", "3048", "--", leaky]) == 0
    assert main(["run", "--max-leak-bytes", "3047", "--", leaky]) == 2


def test_run_keeps_the_programs_exit_status(leaky: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", leaky, "7"]) == 7
    assert "FAILED: exited with status 7" in capsys.readouterr().err
    assert main(["run", "--max-leak-bytes", "1000000", "--", leaky, "3"]) == 3
    # A failing gate wins over a failing program: exit 2.
    assert main(["run", "--fail-on-leak", "--", leaky, "3"]) == 2


def test_run_reports_death_by_signal_as_128_plus_signal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", "sh", "-c", "kill -TERM $$"]) == 128 + 15
    assert "killed by SIGTERM" in capsys.readouterr().err


def test_failing_program_without_report_keeps_its_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", "sh", "-c", "exit 5"]) == 5
    assert "exited with status 5; it wrote no report" in capsys.readouterr().err


def test_forked_children_write_their_own_reports(leaky: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--report-dir", str(tmp_path), "--format", "json", "--", leaky, "0", "fork"]) == 0
    doc, _ = _json_out(capsys)
    pids = {r["pool"]: r["pid"] for r in doc["reports"]}
    assert set(pids) == {"app", "worker", "forked"}
    assert pids["forked"] != pids["app"]
    assert any(r["key"] == "forked" and r["blocks"] == 1 for r in doc["rows"])


def test_blocks_are_listed_on_request(leaky: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--blocks", "--report-dir", str(tmp_path), "--", leaky]) == 0
    capsys.readouterr()
    app = json.loads(next(tmp_path.glob("app.*.json")).read_text())
    assert sorted(b["size"] for b in app["blocks"]) == [1000, 1000, 1000]
    assert all(b["address"].startswith("0x") and b["tag"] == "cache" for b in app["blocks"])


def test_stale_reports_in_the_directory_are_ignored(leaky: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.json").write_text("not even json")
    assert main(["run", "--report-dir", str(tmp_path), "--", leaky]) == 0
    assert "2 reports" in capsys.readouterr().err


def test_python_child(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "noop.py"
    script.write_text("print('no pools here')\n")
    assert main(["run", "--", sys.executable, str(script)]) == 1
    err = capsys.readouterr().err
    assert "wrote no report" in err


def test_command_not_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", "/nonexistent/program"]) == 1
    assert "/nonexistent/program: command not found" in capsys.readouterr().err


def test_report_dir_that_is_a_file(tmp_path: Path, leaky: str, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("")
    assert main(["run", "--report-dir", str(target), "--", leaky]) == 1
    assert "cannot create the report directory" in capsys.readouterr().err


def test_report_env_is_not_leaked_into_the_cli(leaky: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = os.environ.get("RINGPOOL_REPORT")
    assert main(["run", "--", leaky]) == 0
    capsys.readouterr()
    assert os.environ.get("RINGPOOL_REPORT") == before


def test_report_written_directly_by_the_library(leaky: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without the CLI in between: $RINGPOOL_REPORT set by hand, then `show` reads the files."""
    import subprocess

    env = dict(os.environ, RINGPOOL_REPORT=str(tmp_path / "%n-%p.json"))
    subprocess.run([leaky], env=env, check=True)
    files = sorted(str(p) for p in tmp_path.glob("*.json"))
    assert len(files) == 2
    assert main(["show", *files, "--format", "csv", "--sort", "tag"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pool,key,blocks,bytes,peak_bytes,allocs,percent")
    assert any(line.startswith("app,cache,3,3000,3000,3,") for line in out)


def test_python_program_using_allocator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "uses_allocator.py"
    script.write_text(
        "from allocator import Pool\n"
        "pool = Pool('pyapp')\n"
        "kept = [pool.alloc(10, tag='py-leak') for _ in range(3)]\n"
        "with Pool('scoped') as scoped:\n"
        "    scoped.alloc(5, tag='scoped-tag')\n"
    )
    assert main(["run", "--format", "json", "--", sys.executable, str(script)]) == 0
    doc, _ = _json_out(capsys)
    rows = {(r["pool"], r["key"]): r for r in doc["rows"]}
    assert rows[("pyapp", "py-leak")]["blocks"] == 3 and rows[("pyapp", "py-leak")]["bytes"] == 30
    assert rows[("scoped", "scoped-tag")]["blocks"] == 1


def test_options_after_the_separator_belong_to_the_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", "sh", "-c", "exit 0", "--format", "nonsense", "--help"]) == 1
    err = capsys.readouterr().err
    assert "sh exited with status 0; it wrote no report" in err
    assert "invalid choice" not in err


def test_a_report_directory_that_cannot_be_listed_is_one_error_line(
        leaky: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # os.listdir's PermissionError (a directory without read permission; the tests
    # run as root, so it is raised here) came out as a traceback
    def refuse(path: object) -> list[str]:
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr("audit._process.os.listdir", refuse)
    odd = tmp_path / "r\nd"
    assert main(["run", "--report-dir", str(odd), "--", leaky]) == 1
    err = capsys.readouterr().err
    assert "r\\nd: cannot list the report directory: Permission denied" in err, err
    assert len(err.splitlines()) == 1, err
