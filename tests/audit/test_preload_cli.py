"""`run --preload`, `show` and `diff` on the interposer's reports (audit.preload does the reading)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from _export_testlib import build_plain_leaks
from audit import preload
from audit.cli import main


@pytest.fixture(scope="module")
def plain_leaks(tmp_path_factory: pytest.TempPathFactory) -> str:
    preload.library_path()  # raises with a hint (make preload) when the library is missing
    return build_plain_leaks(tmp_path_factory)


def _rows(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    # run --preload writes its table to stderr (stdout is the program's), then
    # the summary line
    doc, _ = json.JSONDecoder().raw_decode(capsys.readouterr().err)
    assert doc["kind"] == "preload"
    return {str(r["key"]): r for r in doc["rows"]}


def test_run_by_function(plain_leaks: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--by", "function", "--format", "json", "--", plain_leaks]) == 0
    rows = _rows(capsys)
    assert rows["make_table"]["blocks"] == 4 and rows["make_table"]["bytes"] == 400
    assert rows["make_name"]["blocks"] == 2 and rows["make_name"]["bytes"] == 20
    assert "scratch" not in rows


@pytest.mark.parametrize("by", ["site", "file", "module"])
def test_run_other_groupings(by: str, plain_leaks: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--by", by, "--format", "json", "--", plain_leaks]) == 0
    rows = _rows(capsys)
    unsuppressed = [r for r in rows.values() if not r["suppressed"]]
    assert sum(int(r["bytes"]) for r in unsuppressed) == 420  # type: ignore[call-overload]
    if by == "file":
        assert any("plain_leaks.c" in k for k in rows)
    if by == "module":
        assert any(k.endswith("plain_leaks") for k in rows)


def test_gate_allow_and_suppressions(plain_leaks: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run", "--preload", "--by", "function"]
    assert main([*base, "--fail-on-leak", "--", plain_leaks]) == 2
    err = capsys.readouterr().err
    assert "make_table" in err and "make_name" in err
    assert main([*base, "--fail-on-leak", "--allow-tag", "make_*", "--", plain_leaks]) == 0
    assert main([*base, "--max-leak-bytes", "400", "--allow-tag", "make_name", "--", plain_leaks]) == 0
    assert main([*base, "--max-leak-bytes", "399", "--allow-tag", "make_name", "--", plain_leaks]) == 2
    supp = tmp_path / "supp.txt"
    supp.write_text("leak:make_table\nleak:make_name\n")
    capsys.readouterr()
    assert main([*base, "--fail-on-leak", "--suppressions", str(supp), "--format", "csv", "--", plain_leaks]) == 0
    err = capsys.readouterr().err
    assert "make_table,4,400,4," in err and err.count("True") >= 2


def test_show_and_diff_of_kept_reports(plain_leaks: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--report-dir", str(tmp_path), "--", plain_leaks]) == 0
    capsys.readouterr()
    reports = sorted(tmp_path.glob("ringpool-preload.*.json"))
    assert len(reports) == 1
    report = str(reports[0])
    assert main(["show", report, "--by", "function", "--format", "folded"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # folded lines are whole stacks, outermost first: the leaking function is the last frame
    assert {line.rsplit(";", 1)[-1] for line in lines} >= {"make_table 400", "make_name 20"}
    assert main(["diff", report, report, "--by", "function", "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)["rows"]
    assert all(r["bytes_diff"] == 0 and r["status"] == "" for r in rows)
    # the summary counts the interposer's keys as keys (show says the same), not as tags
    assert f"{len(rows)} keys: +0 / -0 bytes, net +0; 0 new, 0 gone" in captured.err, captured.err


def test_preload_and_snapshot_reports_do_not_mix(plain_leaks: str, tmp_path: Path, write_report: object,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--report-dir", str(tmp_path), "--", plain_leaks]) == 0
    capsys.readouterr()
    report = str(next(tmp_path.glob("ringpool-preload.*.json")))
    snap = tmp_path / "snap.json"
    from _audit_testlib import report_doc
    snap.write_text(json.dumps(report_doc()))
    assert main(["show", report, str(snap)]) == 1
    assert "cannot merge interposer reports" in capsys.readouterr().err
    assert main(["diff", report, str(snap)]) == 1
    assert "cannot compare" in capsys.readouterr().err
    # the message names the report by the one rule: a backslash in its path doubled,
    # as the Python reports' message does
    odd = tmp_path / "a\\b.json"
    odd.write_bytes(Path(report).read_bytes())
    assert main(["show", str(odd), str(snap)]) == 1
    assert f"({tmp_path}/a\\\\b.json)" in capsys.readouterr().err


def test_malformed_preload_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"format": "ringpool-preload", "version": 99}))
    assert main(["show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "version" in err


def test_missing_interposer_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RINGPOOL_PRELOAD_LIB", str(tmp_path / "nope.so"))
    assert main(["run", "--preload", "--", "true"]) == 1
    assert "nope.so" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_as_suppressions_file_is_refused_unread(device: str, capsys: pytest.CaptureFixture[str]) -> None:
    # /dev/zero and /dev/urandom were read until memory ran out
    assert main(["run", "--preload", "--suppressions", device, "--", "true"]) == 1
    assert f"{device}: the suppressions file is a device" in capsys.readouterr().err


def test_suppressions_from_a_pipe_and_a_fifo_without_writer(plain_leaks: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # a FIFO without a writer waited forever; a pipe (the shell's <(...)) still works
    import subprocess
    import sys
    fifo = tmp_path / "supp.fifo"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "audit", "run", "--preload", "--suppressions", str(fifo),
                           "--", plain_leaks], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    r, w = os.pipe()
    os.write(w, b"leak:*\r\n")
    os.close(w)
    try:
        assert main(["run", "--preload", "--fail-on-leak", "--suppressions", f"/dev/fd/{r}",
                     "--", plain_leaks]) == 0
    finally:
        os.close(r)
    assert main(["run", "--preload", "--fail-on-leak", "--", plain_leaks]) == 2


def test_an_oversized_suppressions_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.supp"
    with open(big, "wb") as fh:
        fh.truncate(preload.MAX_SUPPRESSIONS_BYTES + 1)   # sparse: nothing written
    assert main(["run", "--preload", "--suppressions", str(big), "--", "true"]) == 1
    assert "suppressions file larger than" in capsys.readouterr().err


def test_missing_suppressions_file(plain_leaks: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.supp")
    assert main(["run", "--preload", "--suppressions", missing, "--", plain_leaks]) == 1
    assert "none.supp" in capsys.readouterr().err
