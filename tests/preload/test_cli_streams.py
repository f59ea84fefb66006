"""`ringpool-audit run --preload`: the program's streams stay the program's,
the report directory is taken literally, a static program is refused up front."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from audit import cli
from preload_helpers import clean_env, program


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, lib: str) -> None:
    for key in list(os.environ):
        if key.startswith("RINGPOOL_") and key != "RINGPOOL_PRELOAD_LIB":
            monkeypatch.delenv(key)
    assert clean_env() is not None


def test_table_never_goes_into_the_programs_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["run", "--preload", "--by", "function", "--", program("gt_leaks")])
    out, err = capfd.readouterr()
    assert status == 0
    assert out == "gt_leaks done\n"            # exactly what the program printed
    assert "leak_small" in err and "leak_grown" in err


def test_table_goes_to_output_file_when_asked(tmp_path: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "table.json"
    status = cli.main(["run", "--preload", "--by", "function", "--format", "json",
                       "--output", str(dest), "--", program("gt_leaks")])
    out, _ = capfd.readouterr()
    assert status == 0 and out == "gt_leaks done\n"
    rows = {r["key"]: r["bytes"] for r in json.loads(dest.read_text())["rows"]}
    assert rows["leak_table"] == 600


@pytest.mark.parametrize("name", ["pct%q", "pct%p%r", "100%"])
def test_report_dir_with_percent_is_literal(tmp_path: Path, name: str,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / name
    status = cli.main(["run", "--preload", "--report-dir", str(where), "--fail-on-leak",
                       "--", program("gt_leaks")])
    _, err = capfd.readouterr()
    assert status == 2, err                    # the leaks were found: the report was read
    assert [p.name.startswith("ringpool-preload.") for p in where.iterdir()] == [True]
    assert "ringpool-preload:" not in err      # the interposer had nothing to complain about


@pytest.mark.parametrize("name", ["static_hello", "static_pie_hello"])
def test_static_program_refused_before_it_runs(tmp_path: Path, name: str,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    status = cli.main(["run", "--preload", "--", program(name), str(marker)])
    out, err = capfd.readouterr()
    assert status == 1
    assert "statically linked" in err and "valgrind" in err and "libringpool" in err
    assert "?" not in err.splitlines()[-1]
    assert not marker.exists() and out == ""


def test_dynamic_programs_and_scripts_are_not_refused(tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\necho script ran\n")
    script.chmod(0o755)
    assert cli.main(["run", "--preload", "--", str(script)]) == 0
    out, _ = capfd.readouterr()
    assert out == "script ran\n"
