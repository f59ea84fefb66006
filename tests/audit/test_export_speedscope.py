"""--format speedscope checked against the format's JSON schema; whole-stack --format folded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest

from _audit_testlib import report_doc, tag
from _export_testlib import build_plain_leaks, FIXTURES, stack_report, write_json
from audit.cli import main

SCHEMA = json.loads((FIXTURES / "speedscope-file-format-schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def plain_leaks(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_plain_leaks(tmp_path_factory)


def speedscope(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["show", *argv, "--format", "speedscope"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SCHEMA)
    return doc


def stacks_of(doc: dict[str, Any], index: int) -> dict[tuple[str, ...], float]:
    frames = [f["name"] for f in doc["shared"]["frames"]]
    prof = doc["profiles"][index]
    return {tuple(frames[i] for i in s): w for s, w in zip(prof["samples"], prof["weights"])}


def test_the_schema_rejects_what_speedscope_would() -> None:
    good: dict[str, Any] = {"$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": [{"name": "a"}]},
            "profiles": [{"type": "sampled", "name": "p", "unit": "bytes", "startValue": 0, "endValue": 1,
                          "samples": [[0]], "weights": [1]}]}
    jsonschema.validate(good, SCHEMA)
    for bad in ({**good, "shared": {}}, {**good, "profiles": [{**good["profiles"][0], "unit": "kilobytes"}]},
                {**good, "profiles": [{**good["profiles"][0], "weights": None}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_pool_report_is_valid_speedscope_with_tags_under_pools(write_report: Any,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    child = report_doc("lexer", [tag("buf", 1, 10)])
    del child["format"], child["version"]
    doc = speedscope(capsys, write_report("a.json", report_doc(children=[child])))
    assert [p["name"] for p in doc["profiles"]] == ["a: outstanding bytes", "a: outstanding blocks", "a: allocations"]
    assert doc["profiles"][0]["unit"] == "bytes" and doc["profiles"][1]["unit"] == "none"
    assert stacks_of(doc, 0) == {("parser", "tokens"): 64, ("parser", "(untagged)"): 32,
                                 ("parser", "lexer", "buf"): 10}
    assert doc["profiles"][0]["endValue"] == 106
    assert stacks_of(doc, 2)[("parser", "tokens")] == 12


def test_whole_stacks_go_root_first_with_file_and_line(plain_leaks: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "r.json", stack_report(plain_leaks))
    doc = speedscope(capsys, path, "--by", "function")
    stacks = stacks_of(doc, 0)
    assert stacks == {("main", "make_table"): 400, ("main", "make_name"): 20}
    assert [f["name"] for f in doc["shared"]["frames"]].count("main") == 1  # one frame per function
    table = next(f for f in doc["shared"]["frames"] if f["name"] == "make_table")
    assert table["file"].endswith("plain_leaks.c") and "line" not in table
    assert stacks_of(doc, 2)[("?? (0x7f0000001234)", "main", "scratch")] == 10
    by_site = speedscope(capsys, path)
    sites = [f for f in by_site["shared"]["frames"] if f["name"].startswith("main (")]
    assert len(sites) == 2 and all(f["file"].endswith("plain_leaks.c") and f["line"] > 0 for f in sites)
    table = next(f for f in by_site["shared"]["frames"] if f["name"].startswith("make_table ("))
    assert table["line"] == 9


def test_sampled_profiles_say_they_are_estimates(plain_leaks: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    est = {n: {"est_blocks": 1.0, "est_bytes": 1000.0, "est_allocs": 1.0} for n in ("make_table", "make_name", "scratch")}
    path = write_json(tmp_path / "s.json", stack_report(plain_leaks, sample_rate=1e-3, site_extra=est))
    doc = speedscope(capsys, path, "--by", "function")
    assert "estimated, sampled at 0.001/byte" in doc["profiles"][0]["name"]
    assert stacks_of(doc, 0)[("main", "make_table")] == 1000


def test_folded_gives_the_whole_stack_outermost_first(plain_leaks: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "r.json", stack_report(plain_leaks))
    assert main(["show", path, "--by", "function", "--format", "folded"]) == 0
    assert capsys.readouterr().out.splitlines() == ["main;make_table 400", "main;make_name 20"]
    assert main(["show", path, "--format", "folded"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    outer, inner = first.rsplit(" ", 1)[0].split(";")
    assert outer.startswith("main (") and inner.startswith("make_table (") and "plain_leaks.c:9)" in inner


def test_reports_of_other_kinds_export_their_rows(write_report: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from audit.export.source import Source
    from audit.formatters import Column, Table, render
    from audit.reports import Report

    other = Report("x.json", "some-future-kind", None, "x")
    table = Table(columns=[Column("key", "key"), Column("bytes", "bytes")],
                  rows=[{"key": "parse (a.py:3)", "bytes": 300}, {"key": "load (b.py:9)", "bytes": 0}],
                  frames=lambda row: [str(row["key"])], source=Source([other]))
    doc = json.loads(str(render(table, "speedscope")))
    jsonschema.validate(doc, SCHEMA)
    assert stacks_of(doc, 0) == {("parse (a.py:3)",): 300}
    assert render(table, "folded") == "parse (a.py:3) 300\nload (b.py:9) 0\n"
