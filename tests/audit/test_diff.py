"""`diff`: per-tag deltas like tracemalloc's compare_to, new and gone tags, the growth gate."""

from __future__ import annotations

import json
from typing import Callable

import pytest

from _audit_testlib import report_doc, tag
from audit.cli import main

WriteReport = Callable[..., str]


@pytest.fixture
def pair(write_report: WriteReport) -> tuple[str, str]:
    old = write_report("old.json", report_doc(tags=[tag("steady", 2, 200), tag("shrinks", 10, 1000),
                                                     tag("vanishes", 1, 50)]))
    new = write_report("new.json", report_doc(tags=[tag("steady", 2, 200), tag("shrinks", 4, 400),
                                                     tag("appears", 3, 3000)]))
    return old, new


def test_rows_sorted_by_absolute_byte_change(pair: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", *pair, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["key"] for r in rows] == ["appears", "shrinks", "vanishes", "steady"]
    by = {r["key"]: r for r in rows}
    assert by["appears"] == {"key": "appears", "blocks": 3, "blocks_diff": 3, "bytes": 3000,
                             "bytes_diff": 3000, "status": "new"}
    assert by["shrinks"]["blocks_diff"] == -6 and by["shrinks"]["bytes_diff"] == -600
    assert by["shrinks"]["status"] == ""
    assert by["vanishes"]["status"] == "gone" and by["vanishes"]["bytes_diff"] == -50
    assert by["steady"]["bytes_diff"] == 0


def test_table_marks_signs_and_summary(pair: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", *pair]) == 0
    out, err = capsys.readouterr()
    appears = next(line for line in out.splitlines() if line.startswith("appears"))
    assert appears.split() == ["appears", "3", "+3", "3000", "+3000", "new"]
    assert "+3000 / -650 bytes, net +2350; 1 new, 1 gone" in err


def test_changed_only_and_top(pair: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", *pair, "--changed-only", "--format", "csv"]) == 0
    assert "steady" not in capsys.readouterr().out
    assert main(["diff", *pair, "--top", "1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["appears,3,3,3000,3000,new"]


def test_folded_diff_carries_the_byte_growth(pair: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", *pair, "--format", "folded"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # a shrinking row would be "shrinks -600", which flame graph tools reject as malformed
    assert "appears 3000" in lines and not any(line.startswith("shrinks") for line in lines)
    assert all(int(line.rsplit(" ", 1)[1]) >= 0 for line in lines)


def test_markdown_github(pair: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("markdown", "github"):
        assert main(["diff", *pair, "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "| appears" in out and "new" in out


def test_growth_gate(pair: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", *pair, "--fail-on-leak"]) == 2
    assert "appears" in capsys.readouterr().err
    assert main(["diff", *pair, "--fail-on-leak", "--allow-tag", "app*"]) == 0
    assert main(["diff", *pair, "--max-leak-bytes", "3000"]) == 0
    assert main(["diff", *pair, "--max-leak-bytes", "2999"]) == 2
    old, new = pair
    assert main(["diff", new, old, "--fail-on-leak"]) == 2  # reversed: "vanishes" and "shrinks" grew


def test_child_pools_are_matched_by_path(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    def child(name: str, nbytes: int) -> dict[str, object]:
        doc = report_doc(name, [tag("buf", 1, nbytes)])
        del doc["format"], doc["version"]
        return doc

    old = write_report("o.json", report_doc(tags=[tag("t", 1, 1)], children=[child("kid", 10), child("old", 5)]))
    new = write_report("n.json", report_doc(tags=[tag("t", 1, 1)], children=[child("kid", 30), child("young", 7)]))
    assert main(["diff", old, new, "--format", "json"]) == 0
    rows = {(r["pool"], r["key"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("parser/kid", "buf")]["bytes_diff"] == 20
    assert rows[("parser/young", "buf")]["status"] == "new"
    assert rows[("parser/old", "buf")]["status"] == "gone"
    assert rows[("parser/old", "buf")]["bytes_diff"] == -5


def test_diff_needs_two_reports(pair: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", pair[0]]) == 1
    assert "required: NEW" in capsys.readouterr().err


def test_diff_table_right_aligns_signed_changes(write_report: WriteReport,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    old = write_report("old.json", report_doc(tags=[tag("grows", 1, 8), tag("shrinks", 5, 5000)]))
    new = write_report("new.json", report_doc(tags=[tag("grows", 3, 12008), tag("shrinks", 1, 50)]))
    assert main(["diff", old, new]) == 0
    lines = capsys.readouterr().out.splitlines()
    grows = next(line for line in lines if line.startswith("grows"))
    shrinks = next(line for line in lines if line.startswith("shrinks"))
    assert "+12000" in grows and "-4950" in shrinks
    assert grows.index("+12000") + 6 == shrinks.index("-4950") + 5
