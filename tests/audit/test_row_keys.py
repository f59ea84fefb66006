"""Rows of interposer and Python-hooks reports are known by their frames (function, file,
line, module and offset as each --by mode has them), not by their key text: two sites whose
texts read alike stay two rows in show and in diff, and the gate sees either grow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from audit import preload
from audit.cli import main

ROOT = Path(__file__).resolve().parents[2]

# Python: a function "f) (b.py:3 (x" at a.py:2 and a function "x" at "a.py:2 (f) (b.py":3
# both read "a.py:2 (f) (b.py:3 (x)"; a function "g) <- m.py:5 (<module>" at a.py:2, alone
# on its thread's stack, reads like g at a.py:2 called from m.py:5 (stacks of depth 2).
COLLIDING_PY = """
import _thread, sys, time
keep = []
def named(src, filename, name):
    ns = {"keep": keep}
    exec(compile(src, filename, "exec"), ns)
    f = ns["f"]
    f.__code__ = f.__code__.replace(co_name=name, co_qualname=name)
    return f
one = named("def f(n):\\n    keep.append(bytearray(n))\\n", "a.py", "f) (b.py:3 (x")
two = named("\\ndef f(n):\\n    keep.append(bytearray(n))\\n", "a.py:2 (f) (b.py", "x")
one(int(sys.argv[1]))
two(int(sys.argv[2]))
g = named("def f(n):\\n    keep.append(bytearray(n))\\n", "a.py", "g")
exec(compile("\\n\\n\\n\\ng(70000)\\n", "m.py", "exec"), {"g": g})
alone = named("def f(n):\\n    keep.append(bytearray(n))\\n", "a.py", "g) <- m.py:5 (<module>")
_thread.start_new_thread(alone, (90000,))   # called from C: the only Python frame of its stack
while len(keep) < 4:
    time.sleep(0.01)
"""


def python_report(tmp_path: Path, name: str, first: int, second: int, depth: int = 1) -> str:
    script = tmp_path / "prog.py"
    script.write_text(COLLIDING_PY)
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "RINGPOOL_PYTHON_REPORT": str(out), "RINGPOOL_PYTHON_DEPTH": str(depth),
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "audit._pyboot", str(script), str(first), str(second)],
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return str(out)


def show_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["show", *argv, "--format", "json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["rows"]
    return rows


# ------------------------------------------------------------------ Python hooks
def test_python_lines_that_read_alike_stay_two_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = python_report(tmp_path, "r", 1000, 30000)
    rows = [r for r in show_json(capsys, report, "--by", "line") if r["key"] == "a.py:2 (f) (b.py:3 (x)"]
    assert sorted(r["bytes"] // 1000 for r in rows) == [1, 30], rows
    # the text table too: one line per row
    assert main(["show", report, "--by", "line"]) == 0
    assert capsys.readouterr().out.count("a.py:2 (f) (b.py:3 (x)") == 2


def test_a_python_name_holding_the_stack_separator_is_one_frame(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    report = python_report(tmp_path, "r", 1000, 2000, depth=2)
    rows = [r for r in show_json(capsys, report, "--by", "stack") if r["key"] == "a.py:2 (g) <- m.py:5 (<module>)"]
    # g called from m.py:5 (70000 bytes), and the thread's own frame (90000 bytes)
    assert sorted(r["bytes"] // 10000 for r in rows) == [7, 9], rows


def test_python_diff_pairs_rows_by_their_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = python_report(tmp_path, "old", 1000, 30000)
    new = python_report(tmp_path, "new", 21000, 10000)      # one grows, the other shrinks alike
    assert main(["diff", old, new, "--by", "line", "--format", "json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out)["rows"] if r["key"] == "a.py:2 (f) (b.py:3 (x)"]
    assert sorted(r["bytes_diff"] for r in rows) == [-20000, 20000], rows
    # the gate sees the growth (the two summed would be no change)
    assert main(["diff", old, new, "--by", "line", "--max-leak-bytes", "10000"]) == 2
    assert "a.py:2 (f) (b.py:3 (x)" in capsys.readouterr().err


# ------------------------------------------------------------------ interposer
PROG = "/nonexistent/prog"
SYMBOLS = {
    # --by site: both read "f (x.c:1) (y.c:2)"
    0x10: preload.Symbol("f (x.c:1)", "y.c", 2),
    0x20: preload.Symbol("f", "x.c:1) (y.c", 2),
    # --by function: both read "?? (prog+0x50)"
    0x50: preload.Symbol("??", None, None),
    0x60: preload.Symbol("?? (prog+0x50)", None, None),
    # --by stack: g at a.c:1 called from main at m.c:5, and one frame "g (a.c:1) < main" at m.c:5
    0x70: preload.Symbol("g", "a.c", 1),
    0x80: preload.Symbol("main", "m.c", 5),
    0x90: preload.Symbol("g (a.c:1) < main", "m.c", 5),
}
STACKS = {0x10: [0x10], 0x20: [0x20], 0x50: [0x50], 0x60: [0x60], 0x70: [0x70, 0x80], 0x90: [0x90]}


def preload_report(tmp_path: Path, name: str, sizes: dict[int, int]) -> str:
    frames = sorted(SYMBOLS)
    doc = {"format": "ringpool-preload", "version": 1, "pid": 1, "exe": PROG, "taken_at": "now",
           "reason": "exit", "totals": {"blocks": len(sizes), "bytes": sum(sizes.values()), "allocs": len(sizes)},
           "modules": [{"path": PROG, "base": "0x1000"}], "stack_depth": 8,
           "frames": [[0, hex(off)] for off in frames],
           "stacks": [[frames.index(f) for f in STACKS[site]] for site in sorted(sizes)],
           "sites": [{"module": PROG, "offset": hex(site), "blocks": 1, "bytes": n, "allocs": 1, "stack": i}
                     for i, (site, n) in enumerate(sorted(sizes.items()))]}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture
def symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    """The names above for the report's frames (what addr2line would say of a program
    whose functions and files are so named)."""
    def symbolize(report: preload.PreloadReport) -> dict[tuple[str, int], preload.Symbol]:
        return {(PROG, off): sym for off, sym in SYMBOLS.items()}
    monkeypatch.setattr(preload, "symbolize", symbolize)


SIZES = {0x10: 1000, 0x20: 30000, 0x50: 500, 0x60: 700, 0x70: 4000, 0x90: 9000}


@pytest.mark.parametrize("by, key, want", [
    ("site", "f (x.c:1) (y.c:2)", [1000, 30000]),
    ("function", "?? (prog+0x50)", [500, 700]),
    ("stack", "g (a.c:1) < main (m.c:5)", [4000, 9000]),
])
def test_interposer_rows_that_read_alike_stay_two_rows(symbols: None, tmp_path: Path, by: str, key: str,
                                                       want: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    report = preload_report(tmp_path, "r", SIZES)
    rows = [r for r in show_json(capsys, report, "--by", by) if r["key"] == key]
    assert sorted(r["bytes"] for r in rows) == want, rows
    # two reports: summed per row, still two rows
    rows = [r for r in show_json(capsys, report, report, "--by", by) if r["key"] == key]
    assert sorted(r["bytes"] for r in rows) == [2 * n for n in want], rows
    assert main(["show", report, "--by", by]) == 0
    assert capsys.readouterr().out.count(key) == 2


def test_interposer_diff_pairs_rows_by_their_frames(symbols: None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    old = preload_report(tmp_path, "old", SIZES)
    new = preload_report(tmp_path, "new", {**SIZES, 0x10: 21000, 0x20: 10000})
    assert main(["diff", old, new, "--format", "json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out)["rows"] if r["key"] == "f (x.c:1) (y.c:2)"]
    assert sorted(r["bytes_diff"] for r in rows) == [-20000, 20000], rows
    assert main(["diff", old, new, "--max-leak-bytes", "10000"]) == 2
    assert "f (x.c:1) (y.c:2)" in capsys.readouterr().err
    # the other way round: the one that shrank before grows now
    assert main(["diff", new, old, "--max-leak-bytes", "10000"]) == 2


def test_interposer_suppressions_still_match_the_text(symbols: None, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    supp = tmp_path / "supp.txt"
    supp.write_text("leak:^f$\n")                 # the function "f" (at 0x20), not "f (x.c:1)"
    report = preload_report(tmp_path, "r", SIZES)
    rows = [r for r in show_json(capsys, report, "--suppressions", str(supp)) if r["key"] == "f (x.c:1) (y.c:2)"]
    assert sorted((r["bytes"], r["suppressed"]) for r in rows) == [(1000, False), (30000, True)], rows


# ------------------------------------------------- interposer, a real program
# f at /r/y.c:2, renamed "f (/r/x.c:1)" in the binary (symbol table and DWARF), and a
# function f whose file is "/r/x.c:1) (/r/y.c", line 2: addr2line names both sites
# "f (/r/x.c:1) (/r/y.c:2)".
COLLIDING_C = r"""
#include <stdlib.h>
void *keep[2];
#line 1 "/r/main.c"
__attribute__((noinline)) void *g(size_t n) { return malloc(n); }
#line 1 "/r/y.c"
__attribute__((noinline)) void *FMARK(size_t n) {
    return malloc(n); }
#line 1 "/r/x.c:1) (/r/y.c"
__attribute__((noinline)) void *f(size_t n) {
    return malloc(n); }
#line 2 "/r/main.c"
int main(int argc, char **argv)
{
    if (argc < 3) return 1;
    keep[0] = FMARK((size_t)atol(argv[1]));
    keep[1] = f((size_t)atol(argv[2]));
    return 0;
}
"""
FMARK = b"fmark_00001x"
FMARK_RENAMED = b"f (/r/x.c:1)"
C_KEY = "f (/r/x.c:1) (/r/y.c:2)"


@pytest.fixture(scope="module")
def colliding_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _audit_testlib import c_compiler

    preload.library_path()  # raises with a hint (make preload) when the library is missing
    d = tmp_path_factory.mktemp("rowkeys")
    (d / "prog.c").write_text(COLLIDING_C.replace("FMARK", FMARK.decode()))
    prog = d / "prog"
    subprocess.run([c_compiler(), "-std=c11", "-g", "-O0", "-fno-omit-frame-pointer", "prog.c", "-o", str(prog)],
                   check=True, cwd=d)
    data = prog.read_bytes()
    assert data.count(FMARK) >= 2 and len(FMARK) == len(FMARK_RENAMED)
    prog.write_bytes(data.replace(FMARK, FMARK_RENAMED))
    return prog


def run_program(prog: Path, tmp_path: Path, name: str, first: int, second: int,
                capsys: pytest.CaptureFixture[str]) -> str:
    d = tmp_path / name
    assert main(["run", "--preload", "--report-dir", str(d), "--", str(prog), str(first), str(second)]) == 0
    capsys.readouterr()
    [report] = d.glob("ringpool-preload.*.json")
    return str(report)


def test_a_real_program_whose_sites_read_alike(colliding_program: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    old = run_program(colliding_program, tmp_path, "old", 1000, 30000, capsys)
    rows = [r for r in show_json(capsys, old) if r["key"] == C_KEY]
    assert sorted(r["bytes"] for r in rows) == [1000, 30000], rows
    new = run_program(colliding_program, tmp_path, "new", 21000, 10000, capsys)
    assert main(["diff", old, new, "--format", "json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out)["rows"] if r["key"] == C_KEY]
    assert sorted(r["bytes_diff"] for r in rows) == [-20000, 20000], rows
    assert main(["diff", old, new, "--max-leak-bytes", "10000"]) == 2


def test_json_rows_carry_their_frames(symbols: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # two rows that read alike are told apart in json by their frames
    report = preload_report(tmp_path, "r", SIZES)
    rows = {r["bytes"]: r["frames"] for r in show_json(capsys, report) if r["key"] == "f (x.c:1) (y.c:2)"}
    assert rows == {1000: [{"function": "f (x.c:1)", "file": "y.c", "line": 2}],
                    30000: [{"function": "f", "file": "x.c:1) (y.c", "line": 2}]}
    rows = {r["bytes"]: r["frames"] for r in show_json(capsys, report, "--by", "function")
            if r["key"] == "?? (prog+0x50)"}
    assert rows == {500: [{"function": "??", "module": PROG, "offset": "0x50"}],
                    700: [{"function": "?? (prog+0x50)"}]}
    rows = {r["bytes"]: r["frames"] for r in show_json(capsys, report, "--by", "stack")
            if r["key"] == "g (a.c:1) < main (m.c:5)"}
    assert rows == {4000: [{"function": "g", "file": "a.c", "line": 1}, {"function": "main", "file": "m.c", "line": 5}],
                    9000: [{"function": "g (a.c:1) < main", "file": "m.c", "line": 5}]}
    assert show_json(capsys, report, "--by", "module")[0]["frames"] == [{"module": PROG}]
    new = preload_report(tmp_path, "new", {**SIZES, 0x10: 21000})
    assert main(["diff", report, new, "--format", "json"]) == 0
    [row] = [r for r in json.loads(capsys.readouterr().out)["rows"] if r["bytes_diff"]]
    assert row["frames"] == [{"function": "f (x.c:1)", "file": "y.c", "line": 2}]


def test_python_json_rows_carry_their_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = python_report(tmp_path, "r", 1000, 30000, depth=2)
    rows = {r["bytes"] // 10000: r["frames"] for r in show_json(capsys, report, "--by", "stack")
            if r["key"] == "a.py:2 (g) <- m.py:5 (<module>)"}
    assert rows == {7: [{"function": "g", "file": "a.py", "line": 2},
                        {"function": "<module>", "file": "m.py", "line": 5}],
                    9: [{"function": "g) <- m.py:5 (<module>", "file": "a.py", "line": 2}]}
    rows = {r["bytes"] // 1000: r["frames"] for r in show_json(capsys, report, "--by", "function")
            if r["key"].startswith("f) (b.py:3 (x")}
    assert rows == {1: [{"function": "f) (b.py:3 (x", "file": "a.py"}]}, rows


def test_run_cycles_keeps_sites_that_read_alike_apart(colliding_program: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # FMARK's site grows 1000 bytes a cycle, f's 100000: two rows, and the gate sees f's
    assert main(["run", "--preload", "--cycles", "1,2", "--report-dir", str(tmp_path / "c"), "--format",
                 "json", "--output", str(tmp_path / "c.json"), "--",
                 str(colliding_program), "{cycles}000", "{cycles}00000"]) == 0
    capsys.readouterr()
    rows = [r for r in json.loads((tmp_path / "c.json").read_text())["rows"] if r["key"] == C_KEY]
    assert sorted(r["bytes_per_cycle_1_2"] for r in rows) == [1000.0, 100000.0], rows
    frames = {r["bytes_per_cycle_1_2"]: r["frames"][0] for r in rows}     # told apart in json
    assert frames[1000.0]["function"] == "f (/r/x.c:1)" and frames[1000.0]["file"] == "/r/y.c"
    assert frames[100000.0]["function"] == "f" and frames[100000.0]["file"] == "/r/x.c:1) (/r/y.c"
    assert main(["run", "--preload", "--cycles", "1,2", "--report-dir", str(tmp_path / "g"),
                 "--max-leak-bytes", "50000", "--", str(colliding_program), "{cycles}000", "{cycles}00000"]) == 2


def pool_stacks_report(tmp_path: Path, sizes: dict[int, int]) -> str:
    """A pool report with stacks: one tag "t" reached from the sites of ``sizes``."""
    frames = sorted(SYMBOLS)
    stacks = [[frames.index(f) for f in STACKS[site]] for site in sorted(sizes)]
    doc = {"format": "ringpool-snapshot", "version": 1, "pool": "p", "pid": 1, "taken_at": "2026-11-26T04:20:00Z",
           "reason": "destroy", "backing": "malloc",
           "totals": {"blocks": len(sizes), "bytes": sum(sizes.values()), "peak_bytes": sum(sizes.values()),
                      "allocs": len(sizes)},
           "stack_depth": 8, "modules": [{"path": PROG, "base": "0x1000"}],
           "frames": [[0, hex(off)] for off in frames], "stacks": stacks,
           "tags": [{"tag": "t", "blocks": len(sizes), "bytes": sum(sizes.values()),
                     "peak_bytes": sum(sizes.values()), "allocs": len(sizes),
                     "stacks": [{"stack": i, "blocks": 1, "bytes": n, "allocs": 1}
                                for i, (_, n) in enumerate(sorted(sizes.items()))]}]}
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("by, key, want", [
    ("site", "f (x.c:1) (y.c:2)", [1000, 30000]),
    ("function", "?? (prog+0x50)", [500, 700]),
    ("stack", "g (a.c:1) < main (m.c:5)", [4000, 9000]),
])
def test_pool_stack_rows_that_read_alike_stay_two_rows(symbols: None, tmp_path: Path, by: str, key: str,
                                                       want: list[int], capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from audit import poolstacks
    monkeypatch.setattr(poolstacks, "symbolize", lambda stacks: {(PROG, off): s for off, s in SYMBOLS.items()})
    report = pool_stacks_report(tmp_path, SIZES)
    rows = [r for r in show_json(capsys, report, "--by", by) if r["key"] == key]
    assert sorted(r["bytes"] for r in rows) == want, rows
    # told apart in json by their frames, as interposer rows are
    frames = [r["frames"] for r in sorted(rows, key=lambda r: r["bytes"])]
    assert frames[0] != frames[1] and all(frames), frames
