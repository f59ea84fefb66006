"""Counts at the edges of what a report may hold (0 to 2**64 - 1, docs/report-format.md)
through every profile format: exact in the text formats, never wrapped in pprof's int64."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from _audit_testlib import report_doc, tag
from _export_testlib import decode_pprof, pprof_stacks, pprof_tool
from audit.cli import main

WriteReport = Callable[..., str]
INT64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
# 2**53 + 1 is the first integer a float (a double) cannot hold: it reads back as 2**53.
ODD = 2**53 + 1


def shown(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["show", *argv]) == 0
    return capsys.readouterr().out


def pprof_of(tmp_path: Path, *reports: str) -> tuple[Any, Path]:
    out = tmp_path / "out.pb.gz"
    assert main(["show", *reports, "--format", "pprof", "--output", str(out), "--force"]) == 0
    return decode_pprof(out.read_bytes(), tmp_path), out


def test_counts_past_2_to_the_53_stay_exact(write_report: WriteReport, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    odd = write_report("odd.json", report_doc(tags=[tag("odd", ODD, ODD + 2, ODD + 2, ODD + 4)]))
    assert shown(capsys, odd, "--format", "folded") == f"parser;odd {ODD + 2}\n"
    doc = json.loads(shown(capsys, odd, "--format", "speedscope"))
    assert [p["weights"] for p in doc["profiles"]] == [[ODD + 2], [ODD], [ODD + 4]]
    page = shown(capsys, odd, "--format", "html")
    data = json.loads(re.search(r'id="profile-data">(.*?)</script>', page, re.S)[1])  # type: ignore[index]
    assert data["values"] == [[ODD + 2, ODD, ODD + 4]]
    prof, _ = pprof_of(tmp_path, odd)
    assert pprof_stacks(prof) == {("odd", "parser"): [ODD, ODD + 2, ODD + 4]}


def test_pprof_values_saturate_at_int64_and_never_wrap(write_report: WriteReport, tmp_path: Path) -> None:
    # 2**64 - 1 is -1 as an int64, 2**63 is -2**63; two reports of 2**63 - 1 sum past it.
    top = write_report("top.json", report_doc(pool="a", tags=[tag("all", U64_MAX, U64_MAX, U64_MAX, U64_MAX)]))
    half = write_report("half.json", report_doc(pool="b", tags=[tag("half", 2**63, 2**63, 2**63, 2**63)]))
    edge = write_report("edge.json", report_doc(pool="c", tags=[tag("edge", INT64_MAX, INT64_MAX)]))
    for reports in ([top], [half], [edge], [edge, edge], [half, top, edge]):
        prof, path = pprof_of(tmp_path, *reports)
        columns = list(zip(*(s.value for s in prof.sample)))
        assert all(0 <= v <= INT64_MAX for col in columns for v in col)
        assert all(sum(col) <= INT64_MAX for col in columns)
        assert columns[1][0] == min(json.loads(Path(reports[0]).read_text())["totals"]["bytes"], INT64_MAX)
        cut = sum(json.loads(Path(r).read_text())["totals"]["bytes"] for r in reports) > INT64_MAX
        notes = [prof.string_table[c] for c in prof.comment]
        assert any("saturated at the int64 range" in n for n in notes) == cut, notes
    # Go's pprof sums in int64: its total is the saturated one, not a negative number.
    proc = subprocess.run([pprof_tool(), "-top", "-symbolize=none", "-unit=B", str(path)],
                          capture_output=True, text=True, check=True, timeout=120,
                          env={"HOME": str(tmp_path), "PPROF_TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert "of 9223372036854775807B total" in proc.stdout or "of 9223372036854775808B total" in proc.stdout, proc.stdout
    assert "-" not in proc.stdout.split("Showing", 1)[1].split("\n", 1)[0]


@pytest.mark.parametrize("taken_at, kept", [("9999-12-31T23:59:59Z", False), ("2262-04-11T23:47:16Z", True),
                                            ("2262-04-11T23:47:17Z", False), ("1900-01-01T00:00:00Z", True)])
def test_pprof_time_outside_int64_nanoseconds_is_left_out(taken_at: str, kept: bool, write_report: WriteReport,
                                                        tmp_path: Path) -> None:
    prof, _ = pprof_of(tmp_path, write_report("t.json", report_doc(taken_at=taken_at)))
    if kept:
        assert prof.time_nanos != 0 and -2**63 <= prof.time_nanos <= INT64_MAX
    else:
        assert prof.time_nanos == 0   # absent, not a wrapped date in 1816


def test_zero_values_leave_no_sample_in_the_text_formats(write_report: WriteReport,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    zero = write_report("zero.json", report_doc(tags=[tag("none", 0, 0, 0, 0), tag("one", 1, 8)]))
    assert shown(capsys, zero, "--format", "folded") == "parser;one 8\n"
    doc = json.loads(shown(capsys, zero, "--format", "speedscope"))
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert all(names[s[-1]] == "one" for p in doc["profiles"] for s in p["samples"])


def test_pprof_diff_changes_saturate_below_zero_too(write_report: WriteReport, tmp_path: Path) -> None:
    # a diff's byte change may be negative, and pprof keeps it: -(2**64 - 1) is past int64 too
    old = write_report("old.json", report_doc(tags=[tag("gone", 1, U64_MAX - 8), tag("kept", 1, 8)]))
    new = write_report("new.json", report_doc(tags=[tag("gone", 0, 0), tag("kept", 2, 16)]))
    out = tmp_path / "diff.pb.gz"
    main(["diff", old, new, "--format", "pprof", "--output", str(out), "--force"])
    prof = decode_pprof(out.read_bytes(), tmp_path)
    values = {k[0]: v for k, v in pprof_stacks(prof).items()}
    assert values["kept"] == [8] and values["gone"] == [-2**63], values


def sampled_report(rate: float, est_bytes: float, same_stack: bool) -> dict[str, Any]:
    """A sampled interposer report of two sites (frames in no module) with the given estimates."""
    frames = [[-1, "0x7f0000001000"], [-1, "0x7f0000002000"], [-1, "0x7f0000003000"]]
    sites = [{"module": "?", "offset": frames[0 if same_stack or i == 0 else 2][1], "stack": 0 if same_stack else i,
              "blocks": 1, "bytes": 8, "allocs": 1, "est_blocks": 1e300, "est_bytes": est_bytes, "est_allocs": 3.5}
             for i in range(2)]
    return {"format": "ringpool-preload", "version": 1, "pid": 99, "exe": "/bin/x",
            "taken_at": "2026-11-26T04:20:00Z", "reason": "exit", "totals": {"blocks": 2, "bytes": 16, "allocs": 2},
            "sample_rate": rate, "modules": [], "stack_depth": 2, "frames": frames, "stacks": [[0, 1], [2, 1]],
            "sites": sites}


def no_constants(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


@pytest.mark.parametrize("rate", [5e-324, 1e-300, 1e-19, 0.5])
def test_pprof_period_of_any_rate_fits_int64(rate: float, write_report: WriteReport, tmp_path: Path) -> None:
    # 1/5e-324 is infinite and 1/1e-300 a 301-digit period: neither is an int64
    prof, path = pprof_of(tmp_path, write_report("r.json", sampled_report(rate, 800.0, False)))
    assert prof.period == (INT64_MAX if 1 / rate >= INT64_MAX else round(1 / rate))
    subprocess.run([pprof_tool(), "-top", "-symbolize=none", str(path)], capture_output=True, check=True,
                   timeout=120, env={"HOME": str(tmp_path), "PPROF_TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_estimates_that_sum_past_the_largest_float_stay_numbers(write_report: WriteReport, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # two sites of one stack, 1.7e308 estimated bytes each: as floats their sum is infinite
    path = write_report("r.json", sampled_report(0.5, 1.7e308, True))
    exact = 2 * int(1.7e308)
    assert shown(capsys, path, "--format", "folded").endswith(f" {exact}\n")
    doc = json.loads(shown(capsys, path, "--format", "speedscope"), parse_constant=no_constants)
    assert doc["profiles"][0]["weights"] == [exact]
    page = shown(capsys, path, "--format", "html")
    data = json.loads(re.search(r'id="profile-data">(.*?)</script>', page, re.S)[1],  # type: ignore[index]
                      parse_constant=no_constants)
    assert data["values"][0][0] == 10**308   # the page's own sum must stay a double (test_export_html)
    prof, _ = pprof_of(tmp_path, path)
    assert [list(s.value) for s in prof.sample] == [[INT64_MAX, INT64_MAX, 7]]
