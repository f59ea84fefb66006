"""Names from untrusted programs (pool names, tags, functions, files, module paths) through
every output of the CLI: each format keeps one row per row, one line per stack, and
names that differ stay apart (docs/cli.md, "Names in text output")."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Callable

import pytest

from _audit_testlib import report_doc, tag
from audit.cli import main

WriteReport = Callable[..., str]

# Names a program may give: every kind of character a reader or a terminal misreads.
HOSTILE = [
    "two\nlines",
    "carriage\rreturn",
    "red\x1b[31mtext",
    "esc\x1bx",
    "lit\\x1bx",            # the four characters \x1b typed literally: not the escape above
    "back\\slash",
    "pipe|cell",
    "semi;colon and space",
    "bidi\u202egnp.exe",
    "isolate\u2066x\u2069",
    "c1\x85next\x9b31m",
    "del\x7fx",
    "tab\tx",
    "nul\x00x",
    "line\u2028sep\u2029x",
    "</script><img src=x onerror=alert(1)>",
    "<!-- comment",
    "\u6f22\u5b57 \U0001f600",
]

# What must never reach a terminal raw: C0 (but the line ends the test splits on), DEL,
# C1, the bidirectional formatting characters and the line/paragraph separators.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
FOLDED_LINE = re.compile(r"(?P<stack>[^ ]+) (?P<count>[0-9]+)")


def hostile_report(pool: str = "pool\n;x y\x1b[0m", scale: int = 1) -> dict[str, object]:
    tags = [tag(name, 1, scale * (10 + i)) for i, name in enumerate(HOSTILE)]
    return report_doc(pool=pool, tags=tags)


def lines_of(text: str) -> list[str]:
    """The lines of text, which ends in a newline; splitlines() (which also splits on
    U+2028, U+0085, ...) must agree with a split on newlines."""
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert text.splitlines() == lines
    return lines


def show(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    assert main(list(argv)) == code
    out, err = capsys.readouterr()
    assert RAW.search(err) is None and err.count("\n") <= 1, err
    return out


# ------------------------------------------------------------------ folded
def check_folded(out: str, depth: int, counts: list[int]) -> list[list[str]]:
    """Each line one stack of depth frames ending in its count; returns the stacks."""
    stacks = []
    found = []
    for line in lines_of(out):
        assert RAW.search(line) is None, line
        m = FOLDED_LINE.fullmatch(line)
        assert m is not None, f"not a folded line: {line!r}"
        frames = m["stack"].split(";")
        assert len(frames) == depth, line
        stacks.append(frames)
        found.append(int(m["count"]))
    assert sorted(found) == sorted(counts)
    assert len({tuple(s) for s in stacks}) == len(stacks), "two stacks folded into one line"
    return stacks


def test_folded_pool_report_one_line_per_tag(write_report: WriteReport,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", hostile_report())
    out = show(capsys, "show", path, "--format", "folded")
    stacks = check_folded(out, 1 + 1, [10 + i for i in range(len(HOSTILE))])
    assert {s[0] for s in stacks} == {"pool\\n:x_y\\x1b[0m"}
    by_count = {int(line.rsplit(" ", 1)[1]): line.split(";")[1].rsplit(" ", 1)[0]
                for line in lines_of(out)}
    assert by_count[12] == "red\\x1b[31mtext"
    assert by_count[13] == "esc\\x1bx" and by_count[14] == "lit\\\\x1bx"


def test_folded_child_pools_keep_their_depth(write_report: WriteReport,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    doc = hostile_report("outer\r")
    child = hostile_report("inner\n\u2028")
    del child["format"], child["version"]
    doc["children"] = [child]
    path = write_report("r.json", doc)
    out = show(capsys, "show", path, "--format", "folded")
    lines = lines_of(out)
    assert len(lines) == 2 * len(HOSTILE)
    assert sum(line.startswith("outer\\r;inner\\n\\u2028;") for line in lines) == len(HOSTILE)
    for line in lines:
        assert FOLDED_LINE.fullmatch(line) and RAW.search(line) is None, line


def test_folded_diff_one_line_per_tag(write_report: WriteReport,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    old = write_report("old.json", hostile_report(scale=1))
    new = write_report("new.json", hostile_report(scale=3))
    out = show(capsys, "diff", old, new, "--format", "folded")
    check_folded(out, 1, [2 * (10 + i) for i in range(len(HOSTILE))])


# -------------------------------------------------------- table, markdown
@pytest.mark.parametrize("fmt", ["table", "github", "markdown"])
def test_text_tables_one_line_per_row(fmt: str, write_report: WriteReport,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", hostile_report())
    out = show(capsys, "show", path, "--format", fmt)
    assert RAW.search(out) is None, out
    lines = lines_of(out)
    rows = lines[-len(HOSTILE):]
    assert len(lines) == 2 + 2 + len(HOSTILE)        # title, blank, header, rule, rows
    if fmt != "table":
        cells = {len(re.split(r"(?<!\\)\|", line)) for line in lines[2:]}
        assert cells == {8}, cells                  # | six cells |
    keys = [re.split(r"  |(?<!\\)\|", row.strip("| "))[0].strip() for row in rows]
    assert len(set(keys)) == len(HOSTILE)
    assert "esc\\x1bx" in keys and "lit\\\\x1bx" in keys


def test_diff_title_names_files_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old\n\x1b[2J.json"
    new = tmp_path / "new\u202e.json"
    old.write_text(json.dumps(hostile_report()))
    new.write_text(json.dumps(hostile_report(scale=2)))
    for fmt in ("table", "markdown"):
        out = show(capsys, "diff", str(old), str(new), "--format", fmt)
        assert RAW.search(out) is None, out
        assert lines_of(out)[0].count("old\\n\\x1b[2J") == 1


def test_gate_summary_is_one_line(write_report: WriteReport,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", report_doc(tags=[tag("a\nb\x1b[31m", 1, 8), tag("x" * 100000, 1, 4)]))
    assert main(["show", path, "--fail-on-leak", "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and RAW.search(err) is None, err
    assert "a\\nb\\x1b[31m" in err and len(err) < 1000


# --------------------------------------------------------------------- csv
def test_csv_reads_back_the_same_cells(write_report: WriteReport,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", hostile_report())
    out = show(capsys, "show", path, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert rows[0][0] == "key" and len(rows) == 1 + len(HOSTILE)
    assert {r[0] for r in rows[1:]} == set(HOSTILE)
    assert {len(r) for r in rows} == {len(rows[0])}
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["carriage\rreturn"][2] == "11"
