"""Bad input: every case ends with exit code 1 and a message naming the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from _audit_testlib import report_doc, tag
from audit.cli import main

WriteReport = Callable[..., str]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    for needle in needles:
        assert needle in err, err
    return err


def test_truncated_json(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(report_doc())
    path = write_report("cut.json", text[: len(text) // 2])
    _fails(["show", path], capsys, path, "truncated JSON")


def test_invalid_json(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("bad.json", "{'format': 1}")
    _fails(["show", path], capsys, path, "invalid JSON")


def test_empty_file(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("empty.json", "")
    _fails(["show", path], capsys, path, "empty")


def test_not_an_object(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("list.json", "[1, 2]")
    _fails(["show", path], capsys, path, "JSON object")


def test_wrong_format_name(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("fmt.json", report_doc(format="tracemalloc"))
    _fails(["show", path], capsys, path, "format")


def test_wrong_version(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("ver.json", report_doc(version=2))
    _fails(["show", path], capsys, path, "version")


@pytest.mark.parametrize("field", ["blocks", "bytes", "peak_bytes", "allocs"])
def test_negative_counts(field: str, write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tag("neg", 1, 10)
    bad[field] = -1
    path = write_report("neg.json", report_doc(tags=[bad]))
    _fails(["show", path], capsys, path, field)


def test_missing_field(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    doc = report_doc()
    del doc["tags"]
    path = write_report("notags.json", doc)
    _fails(["show", path], capsys, path, "tags")


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.json")
    _fails(["show", missing], capsys, missing, "no such file")
    _fails(["show", str(tmp_path)], capsys, str(tmp_path), "directory")


def test_bad_report_in_diff_names_it(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_report("good.json")
    bad = write_report("bad.json", report_doc(version="1"))
    _fails(["diff", good, bad], capsys, bad, "version")


@pytest.mark.parametrize("argv, needle", [
    ([], "a command is required"),
    (["frobnicate"], "invalid choice"),
    (["show"], "REPORT"),
    (["show", "x.json", "--format", "xml"], "invalid choice"),
    (["show", "x.json", "--sort", "size"], "invalid choice"),
    (["show", "x.json", "--top", "0"], "at least 1"),
    (["show", "x.json", "--top", "many"], "not an integer"),
    (["show", "x.json", "--max-leak-bytes", "-5"], "negative"),
    (["show", "x.json", "--min-bytes", "ten"], "not an integer"),
    (["bench", "--blocks", "1e3,abc"], "not a block count"),
    (["bench", "--blocks", "0"], "whole number"),
    (["bench", "--blocks", "1.5"], "whole number"),
    (["bench", "--blocks", "1e9"], "whole number"),
    (["bench", "--blocks", "10,10"], "twice"),
    (["bench", "--sizes", "huge"], "not a size"),
    (["bench", "--sizes", "0"], "a block size is from 1"),
    (["bench", "--order", "sideways"], "invalid choice"),
    (["bench", "--repeat", "0"], "at least 1"),
    (["bench", "--backing", "mmap"], "not a backing"),
    (["run"], "no command given"),
    (["demo", "--requests", "-1"], "negative"),
])
def test_bad_arguments(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert needle in capsys.readouterr().err


def test_by_on_a_snapshot_is_an_error(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    _fails(["show", path, "--by", "function"], capsys, "--by", "has no stacks")


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("show", "diff", "run", "bench", "demo"):
        assert command in out
    assert "exit codes: 0 clean, 1 error, 2" in out
    assert main(["show", "--help"]) == 0
    assert "Show the by-tag table" in capsys.readouterr().out
    assert main(["--version"]) == 0
    header = (Path(__file__).resolve().parents[2] / "csrc" / "include" / "ringpool.h").read_text()
    version = ".".join(line.split()[2] for line in header.splitlines()
                       if line.startswith("#define RINGPOOL_VERSION_"))
    assert f"ringpool-audit {version}\n" == capsys.readouterr().out
