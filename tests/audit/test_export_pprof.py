"""--format pprof: decoded with the protobuf package and a schema of our own, and read by
Go's pprof tool where go is installed."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from _audit_testlib import c_compiler, report_doc, tag
from _export_testlib import (BASE, ROOT, build_plain_leaks, build_id, decode_pprof, function_offsets, pprof_stacks, pprof_tool, pprof_top, stack_report,
                             write_json)
from audit.cli import main



@pytest.fixture(scope="module")
def plain_leaks(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_plain_leaks(tmp_path_factory)


def export(tmp_path: Path, *argv: str) -> bytes:
    out = tmp_path / "out.pb.gz"
    assert main(["show", *argv, "--format", "pprof", "--output", str(out), "--force"]) == 0
    return out.read_bytes()


def names(prof: Any, items: Any) -> list[str]:
    return [prof.string_table[i] for i in items]


def test_stack_report_decodes_with_whole_stacks_and_deduplicated_tables(plain_leaks: str, tmp_path: Path) -> None:
    path = write_json(tmp_path / "r.json", stack_report(plain_leaks))
    prof = decode_pprof(export(tmp_path, path), tmp_path)
    strings = list(prof.string_table)
    assert strings[0] == "" and len(strings) == len(set(strings))
    assert [(strings[t.type], strings[t.unit]) for t in prof.sample_type] == [
        ("inuse_objects", "count"), ("inuse_space", "bytes"), ("alloc_objects", "count")]
    assert strings[prof.default_sample_type] == "inuse_space"
    assert (strings[prof.period_type.type], strings[prof.period_type.unit], prof.period) == ("space", "bytes", 1)
    stacks = pprof_stacks(prof)
    assert stacks[("make_table", "main")] == [4, 400, 4]
    assert stacks[("make_name", "main")] == [2, 20, 2]
    scratch = [v for k, v in stacks.items() if k[0] == "scratch"]
    assert scratch == [[0, 0, 10]]
    # Each function, location and mapping once; ids are 1..n and every reference resolves.
    assert len({(f.name, f.system_name, f.filename) for f in prof.function}) == len(prof.function)
    assert sorted(f.id for f in prof.function) == list(range(1, len(prof.function) + 1))
    assert sorted(loc.id for loc in prof.location) == list(range(1, len(prof.location) + 1))
    assert len({(loc.mapping_id, loc.address) for loc in prof.location}) == len(prof.location)
    # main is one function with two locations (two call sites), shared by the three stacks.
    main_locations = [loc.id for loc in prof.location
                      if strings[prof.function[loc.line[0].function_id - 1].name] == "main"]
    used = Counter(i for s in prof.sample for i in s.location_id)
    assert len(main_locations) == 2 and sorted(used[i] for i in main_locations) == [1, 2]
    assert len({loc.line[0].function_id for loc in prof.location if loc.id in main_locations}) == 1
    (mapping,) = prof.mapping
    assert strings[mapping.filename] == plain_leaks and strings[mapping.build_id] == build_id(plain_leaks)
    assert mapping.memory_start == BASE and mapping.has_functions and mapping.has_line_numbers
    for loc in prof.location:
        if loc.mapping_id:
            assert mapping.memory_start <= loc.address < mapping.memory_limit
    main_fn = next(f for f in prof.function if strings[f.name] == "main")
    assert strings[main_fn.filename].endswith("plain_leaks.c")
    table_loc = next(loc for loc in prof.location if strings[prof.function[loc.line[0].function_id - 1].name] == "make_table")
    assert table_loc.line[0].line == 9


def test_pool_report_tags_become_frames_under_the_pool(write_report: Any, tmp_path: Path) -> None:
    child = report_doc("lexer", [tag("buf", 1, 10, allocs=7)])
    del child["format"], child["version"]
    path = write_report("pool.json", report_doc(children=[child]))
    prof = decode_pprof(export(tmp_path, path), tmp_path)
    assert pprof_stacks(prof) == {
        ("tokens", "parser"): [2, 64, 12],
        ("(untagged)", "parser"): [1, 32, 5],
        ("buf", "lexer", "parser"): [1, 10, 7],
    }
    assert len(prof.mapping) == 0 and prof.time_nanos == 1795666800 * 10**9


def test_sampled_report_carries_estimates_and_the_period(plain_leaks: str, tmp_path: Path) -> None:
    est = {"make_table": {"est_blocks": 3.6, "est_bytes": 402.4, "est_allocs": 4.2, "est_alloc_bytes": 420.5},
           "make_name": {"est_blocks": 0.9, "est_bytes": 18.0, "est_allocs": 2.1, "est_alloc_bytes": 21.0},
           "scratch": {"est_blocks": 0, "est_bytes": 0, "est_allocs": 9.6, "est_alloc_bytes": 48000.0}}
    path = write_json(tmp_path / "s.json", stack_report(plain_leaks, sample_rate=1e-3, site_extra=est))
    prof = decode_pprof(export(tmp_path, path), tmp_path)
    strings = list(prof.string_table)
    assert [strings[t.type] for t in prof.sample_type] == ["inuse_objects", "inuse_space", "alloc_objects",
                                                           "alloc_space"]
    assert prof.period == 1000 and strings[prof.period_type.type] == "space"
    stacks = pprof_stacks(prof)
    assert stacks[("make_table", "main")] == [4, 402, 4, 420]
    assert stacks[("make_name", "main")] == [1, 18, 2, 21]
    assert any("sampled at 0.001 per byte" in strings[c] for c in prof.comment)


def test_exact_counters_fill_alloc_space_when_the_report_has_them(plain_leaks: str, tmp_path: Path) -> None:
    extra: dict[str, dict[str, Any]] = {"make_table": {"alloc_bytes": 400}, "make_name": {"alloc_bytes": 20}, "scratch": {"alloc_bytes": 50000}}
    path = write_json(tmp_path / "a.json", stack_report(plain_leaks, site_extra=extra))
    prof = decode_pprof(export(tmp_path, path), tmp_path)
    assert len(prof.sample_type) == 4
    assert [v for k, v in pprof_stacks(prof).items() if k[0] == "scratch"] == [[0, 0, 10, 50000]]


def test_suppressed_stacks_and_pool_blocks_are_left_out(plain_leaks: str, tmp_path: Path) -> None:
    doc = stack_report(plain_leaks)
    doc["modules"].append({"path": "/opt/x/libringpool.so.0", "base": "0x7f0000000000", "build_id": None})
    doc["frames"].append([1, "0x1000"])
    doc["stacks"].append([len(doc["frames"]) - 1, 3])
    doc["sites"].append({"module": "/opt/x/libringpool.so.0", "offset": "0x1000", "stack": 3, "blocks": 9,
                         "bytes": 900, "allocs": 9})
    path = write_json(tmp_path / "r.json", doc)
    supp = tmp_path / "supp.txt"
    supp.write_text("leak:make_name\n")
    prof = decode_pprof(export(tmp_path, path, "--suppressions", str(supp)), tmp_path)
    assert {k[0] for k in pprof_stacks(prof)} == {"make_table", "scratch"}


def test_pprof_goes_to_stdout_as_bytes(plain_leaks: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = write_json(tmp_path / "r.json", stack_report(plain_leaks))
    assert main(["show", path, "--format", "pprof"]) == 0
    data = capsysbinary.readouterr().out
    assert data[:2] == b"\x1f\x8b"
    assert pprof_stacks(decode_pprof(data, tmp_path))[("make_table", "main")] == [4, 400, 4]


def test_pprof_to_a_terminal_is_refused(plain_leaks: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "r.json", stack_report(plain_leaks))
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["show", path, "--format", "pprof"]) == 1
    assert "--format pprof is binary" in capsys.readouterr().err


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["stacks"].__setitem__(0, [0, 99]), "stacks[0]: frame index 99 is not in frames"),
    (lambda d: d["frames"].__setitem__(1, [7, "0x10"]), "frames[1]: module index 7 is not in modules"),
    (lambda d: d["frames"].__setitem__(1, [0, "12"]), "frames[1]: offset must be a hex string"),
    (lambda d: d["sites"][1].__setitem__("stack", 5), "sites[1]: field 'stack' is 5"),
    (lambda d: d.__setitem__("stacks", {}), "field 'stacks' must be list"),
    (lambda d: d.__setitem__("sample_rate", 0), "field 'sample_rate' must be a number in (0, 1]"),
    (lambda d: d.__setitem__("sample_rate", 0.5), "sites[0]: field 'est_blocks' must be a non-negative number"),
])
def test_malformed_stack_tables_are_named(plain_leaks: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          change: Any, message: str) -> None:
    doc = stack_report(plain_leaks)
    change(doc)
    path = write_json(tmp_path / "bad.json", doc)
    out = tmp_path / "out.pb.gz"
    assert main(["show", path, "--format", "pprof", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert path in err and message in err
    assert not out.exists()


def test_a_diff_table_exports_its_rows(write_report: Any, tmp_path: Path) -> None:
    old = write_report("old.json", report_doc(tags=[tag("a", 1, 10)]))
    new = write_report("new.json", report_doc(tags=[tag("a", 3, 70)]))
    out = tmp_path / "d.pb.gz"
    assert main(["diff", old, new, "--format", "pprof", "--output", str(out)]) == 0
    prof = decode_pprof(out.read_bytes(), tmp_path)
    assert [prof.string_table[t.type] for t in prof.sample_type] == ["inuse_space"]
    assert 60 in [v[0] for v in pprof_stacks(prof).values()]


# ------------------------------------------------------------- Go's pprof
def test_pprof_top_lists_the_same_sites_and_bytes_as_show(plain_leaks: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tool = pprof_tool()
    kept = tmp_path / "reports"
    assert main(["run", "--preload", "--report-dir", str(kept), "--", plain_leaks]) == 0
    (report,) = [str(p) for p in kept.glob("ringpool-preload.*.json")]
    capsys.readouterr()
    assert main(["show", report, "--by", "function", "--format", "json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["rows"] if not r["suppressed"]}
    out = tmp_path / "p.pb.gz"
    assert main(["show", report, "--format", "pprof", "--output", str(out)]) == 0
    top = pprof_top(tool, str(out))
    assert {k: v for k, v in top.items() if v} == {k: r["bytes"] for k, r in rows.items() if r["bytes"]}
    assert top["make_table"] == 400 and top["make_name"] == 20
    objects = pprof_top(tool, str(out), "-sample_index=inuse_objects")
    assert objects["make_table"] == 4 and objects["make_name"] == 2


def test_pprof_top_reads_pool_reports_and_whole_stacks(plain_leaks: str, write_report: Any, tmp_path: Path) -> None:
    tool = pprof_tool()
    pool = write_report("pool.json", report_doc(tags=[tag("tokens", 3, 3000), tag("names", 1, 24)]))
    out = tmp_path / "pool.pb.gz"
    assert main(["show", pool, "--format", "pprof", "--output", str(out)]) == 0
    assert pprof_top(tool, str(out)) == {"tokens": 3000, "names": 24, "parser": 0}
    stacks = write_json(tmp_path / "s.json", stack_report(plain_leaks))
    out2 = tmp_path / "s.pb.gz"
    assert main(["show", stacks, "--format", "pprof", "--output", str(out2)]) == 0
    cum = subprocess.run([tool, "-top", "-cum", "-symbolize=none", "-unit=B", str(out2)], capture_output=True,
                         text=True, check=True, env={**os.environ, "HOME": str(tmp_path)}).stdout
    main_line = next(line for line in cum.splitlines() if line.rstrip().endswith(" main"))
    assert main_line.split()[3] == "420B"  # main's cumulative bytes: both leaking stacks pass through it


def test_sampled_and_exact_reports_do_not_mix(plain_leaks: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    est = {n: {"est_blocks": 1.0, "est_bytes": 10.0, "est_allocs": 1.0} for n in ("make_table", "make_name", "scratch")}
    sampled = write_json(tmp_path / "s.json", stack_report(plain_leaks, sample_rate=1e-3, site_extra=est))
    other = write_json(tmp_path / "t.json", stack_report(plain_leaks, sample_rate=1e-4, site_extra=est))
    exact = write_json(tmp_path / "e.json", stack_report(plain_leaks))
    out = str(tmp_path / "x.pb.gz")
    assert main(["show", sampled, exact, "--format", "pprof", "--output", out]) == 1
    assert "cannot join sampled ones" in capsys.readouterr().err
    assert main(["show", sampled, other, "--format", "pprof", "--output", out]) == 1
    assert "sampled at 0.0001 per byte, another report at 0.001" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_a_pool_report_on_standard_input_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    raw = json.dumps(report_doc(tags=[tag("tokens", 2, 64)])).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    out = tmp_path / "stdin.pb.gz"
    assert main(["show", "-", "--format", "pprof", "--output", str(out)]) == 0
    assert pprof_stacks(decode_pprof(out.read_bytes(), tmp_path)) == {("tokens", "parser"): [2, 64, 2]}


def test_suppressions_match_up_to_the_first_frame_past_the_wrappers(plain_leaks: str, tmp_path: Path) -> None:
    path = write_json(tmp_path / "r.json", stack_report(plain_leaks))
    supp = tmp_path / "supp.txt"
    supp.write_text("leak:^main$\n")
    # main is an outer frame: the table credits make_table and make_name, so nothing is suppressed ...
    prof = decode_pprof(export(tmp_path, path, "--suppressions", str(supp)), tmp_path)
    assert {k[0] for k in pprof_stacks(prof)} == {"make_table", "make_name", "scratch"}
    # ... unless they are declared wrappers: then main is the credited frame and the rule holds.
    prof = decode_pprof(export(tmp_path, path, "--suppressions", str(supp), "--wrapper", "make_*"), tmp_path)
    assert {k[0] for k in pprof_stacks(prof)} == {"scratch"}


def pprof_cum(tool: str, path: str) -> dict[str, int]:
    proc = subprocess.run([tool, "-top", "-cum", "-symbolize=none", "-unit=B", "-nodecount=1000", path],
                          capture_output=True, text=True, check=True, timeout=120,
                          env={**os.environ, "HOME": str(Path(path).parent)})
    cum: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[3].endswith("B") and parts[3][:-1].isdigit():
            cum[parts[5]] = int(parts[3][:-1])
    return cum


def test_pprof_whole_stacks_reach_the_functions_the_table_credits(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Leaks behind xmalloc, xcalloc, xrealloc and strdup: pprof's leaves are the wrappers, and the
    cumulative bytes of each function the table credits (the first frame past the wrappers) are
    the table's bytes, so the whole stack made it into the profile."""
    tool = pprof_tool()
    program = tmp_path / "wrappers"
    subprocess.run([c_compiler(), "-std=c11", "-D_GNU_SOURCE", "-O0", "-g", str(ROOT / "tests" / "stacks" / "wrappers.c"),
                    "-o", str(program)], check=True)
    kept = tmp_path / "reports"
    assert main(["run", "--preload", "--stack-depth", "64", "--report-dir", str(kept), "--", str(program)]) == 0
    (report,) = [str(p) for p in kept.glob("ringpool-preload.*.json")]
    capsys.readouterr()
    assert main(["show", report, "--by", "function", "--format", "json"]) == 0
    rows = {r["key"]: r["bytes"] for r in json.loads(capsys.readouterr().out)["rows"] if not r["suppressed"]}
    assert {"make_table", "make_zeroed", "make_growing"} <= set(rows)
    out = tmp_path / "w.pb.gz"
    assert main(["show", report, "--format", "pprof", "--output", str(out)]) == 0
    cum = pprof_cum(tool, str(out))
    assert {k: cum.get(k) for k in rows} == rows
    flat = pprof_top(tool, str(out))
    assert flat["xmalloc"] > 0 and flat["xcalloc"] == rows["make_zeroed"]
    assert flat.get("make_table", 0) == 0  # make_table's bytes sit in the xmalloc it called


def test_python_frames_carry_function_file_and_line(tmp_path: Path) -> None:
    """A report of the Python allocator hooks: each site a stack of Python frames, innermost first."""
    from dataclasses import dataclass

    from audit.export.source import Source
    from audit.formatters import Table, render
    from audit.reports import Report

    @dataclass
    class PyFrame:
        file: str
        line: int
        function: str

    @dataclass
    class PySite:
        frames: tuple[PyFrame, ...]
        blocks: int
        bytes: int
        allocs: int | None

    @dataclass
    class PySection:
        sites: tuple[PySite, ...]

    @dataclass
    class PyReport:
        before: PySection
        after: PySection | None
        pid: int = 7
        taken_at: str = "2026-11-26T04:20:00Z"

    main_frame = PyFrame("app.py", 30, "main")
    before = PySection((PySite((PyFrame("parse.py", 12, "parse"), main_frame), 3, 300, 5),
                        PySite((), 1, 16, None)))
    after = PySection((PySite((PyFrame("cache.py", 4, "fill"), main_frame), 2, 64, 2),))
    report = Report("py.json", "python", PyReport(before, after), "py")
    for finalization, expected in ((False, {("parse", "main"): [3, 300, 5], ("(no Python frame)",): [1, 16, 0]}),
                                   (True, {("fill", "main"): [2, 64, 2]})):
        table = Table(columns=[], rows=[], source=Source([report], finalization=finalization))
        data = render(table, "pprof")
        assert isinstance(data, bytes)
        prof = decode_pprof(data, tmp_path)
        assert pprof_stacks(prof) == expected
    strings = list(prof.string_table)
    fill = next(f for f in prof.function if strings[f.name] == "fill")
    assert strings[fill.filename] == "cache.py" and strings[fill.system_name] == "fill"
    assert {loc.line[0].line for loc in prof.location} == {4, 30}
    table = Table(columns=[], rows=[], source=Source([report]))
    assert render(table, "folded") == "app.py:30 (main);parse.py:12 (parse) 300\n(no Python frame) 16\n"


def test_run_preload_wants_an_output_file_for_pprof(plain_leaks: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    kept = tmp_path / "reports"
    assert main(["run", "--preload", "--report-dir", str(kept), "--format", "pprof", "--", plain_leaks]) == 1
    assert "pass --output FILE" in capsys.readouterr().err
    assert not kept.exists()  # refused before the program ran
    out = tmp_path / "run.pb.gz"
    assert main(["run", "--preload", "--format", "pprof", "--output", str(out), "--", plain_leaks]) == 0
    stacks = pprof_stacks(decode_pprof(out.read_bytes(), tmp_path))
    # the whole stack: make_table, called by main, called by the C library's start-up code
    (table,) = [(k, v) for k, v in stacks.items() if k[:2] == ("make_table", "main")]
    # inuse objects and bytes, alloc objects and bytes: all four blocks still held
    assert len(table[0]) > 2 and table[1] == [4, 400, 4, 400]
    prof = decode_pprof(out.read_bytes(), tmp_path)
    strings = list(prof.string_table)
    assert [strings[t.type] for t in prof.sample_type] == ["inuse_objects", "inuse_space", "alloc_objects",
                                                           "alloc_space"]


def test_a_sampled_interposer_run_exports_its_estimates(plain_leaks: str, tmp_path: Path) -> None:
    kept = tmp_path / "reports"
    out = tmp_path / "sampled.pb.gz"
    assert main(["run", "--preload", "--sample-rate", "0.05", "--sample-seed", "7", "--report-dir", str(kept),
                 "--format", "pprof", "--output", str(out), "--", plain_leaks]) == 0
    (report,) = kept.glob("ringpool-preload.*.json")
    doc = json.loads(report.read_text())
    assert doc["sample_rate"] == 0.05
    prof = decode_pprof(out.read_bytes(), tmp_path)
    strings = list(prof.string_table)
    assert [strings[t.type] for t in prof.sample_type] == ["inuse_objects", "inuse_space", "alloc_objects",
                                                           "alloc_space"]
    assert prof.period == 20 and (strings[prof.period_type.type], strings[prof.period_type.unit]) == ("space", "bytes")
    assert any("values are unbiased estimates" in strings[c] for c in prof.comment)
    # Each stack's values are the report's estimates for its site, rounded.
    starts = sorted((addr, name) for name, addr in function_offsets(plain_leaks).items())
    expected: dict[str, list[int]] = {}
    for site in doc["sites"]:
        if site["module"] != plain_leaks:
            continue
        offset = int(site["offset"], 16)
        leaf = max((a, n) for a, n in starts if a <= offset)[1]
        expected[leaf] = [round(site[k]) for k in ("est_blocks", "est_bytes", "est_allocs", "est_alloc_bytes")]
    got = {k[0]: v for k, v in pprof_stacks(prof).items()}
    assert "make_table" in expected
    for leaf, values in expected.items():
        assert got[leaf] == values
    assert got["make_table"][1] > 0  # 400 bytes at 1/20 per byte: sampled for sure with this seed
