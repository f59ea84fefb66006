"""``ringpool-audit run --python`` and the Python reports in show, diff and the gate."""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Callable

import pytest

from conftest import line_of, run_cli, run_cli_out

Script = Callable[[str, str], Path]

LEAKY = """
    import sys
    HOLD = []
    def grow(n):
        for _ in range(n):
            HOLD.append(bytearray(1000))   # GROW
    grow(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def test_run_python_names_the_leaking_line(script: Script, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    code, out, err = run_cli_out(["run", "--python", "--format", "json", "--", str(s), "200"], capsys, tmp_path)
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["key"]: r for r in doc["rows"]}
    key = f"{s}:{line_of(s, '# GROW')} (grow)"
    # 200 bytearrays: an object and a 1001-byte buffer each
    assert rows[key]["blocks"] >= 400 and rows[key]["bytes"] >= 200 * 1001
    assert doc["after_finalization"] is not None
    assert "outstanding before finalization" in err and "finalization left" in err
    assert err.startswith(f"{s} exited with status 0")


def test_run_python_text_shows_both_tables(script: Script, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    code, out, err = run_cli_out(["run", "--python", "--top", "3", "--", str(s)], capsys, tmp_path)
    assert code == 0, err
    assert out.startswith("outstanding before finalization, by line\n")
    assert "\nleft by finalization: nothing\n" in out     # a global list is freed at finalization
    assert f"{s}:{line_of(s, '# GROW')} (grow)" in out.split("left by finalization")[0]


def test_run_python_shows_what_finalization_leaves(script: Script,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # ctypes' function-pointer types are cached in a dict of the C extension that
    # finalization does not empty
    s = script("ctypes_user.py", """
        import ctypes
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_double)   # CACHED
    """)
    code, out, err = run_cli_out(["run", "--python", "--", str(s)], capsys, tmp_path)
    assert code == 0, err
    assert "\nleft by finalization, by line\n" in out
    left = out.split("left by finalization, by line")[1]
    assert "ctypes" in left
    m = re.search(r"finalization left (\d+) blocks?, (\d+) bytes?", err)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0


@pytest.mark.parametrize("by, want", [("function", "grow ({s})"), ("file", "{s}"),
                                      ("line", "{s}:{n} (grow)"), ("site", "{s}:{n} (grow)")])
def test_run_python_by(script: Script, capsys: pytest.CaptureFixture[str], by: str, want: str, tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    code, out, err = run_cli_out(["run", "--python", "--by", by, "--format", "csv", "--", str(s)], capsys, tmp_path)
    assert code == 0, err
    assert want.format(s=s, n=line_of(s, "# GROW")) in out


def test_run_python_stack_depth_and_folded(script: Script, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    code, out, err = run_cli_out(["run", "--python", "--python-depth", "4", "--by", "stack",
                              "--format", "folded", "--", str(s)], capsys, tmp_path)
    assert code == 0, err
    n = line_of(s, "# GROW")
    call = line_of(s, "grow(int(")
    # the caller's frame comes before the allocating one (outermost first)
    lines = [ln for ln in out.splitlines() if f"{s}:{n}" in ln and "grow" in ln]
    assert lines and all(ln.index(f"{s}:{call}") < ln.index(f"{s}:{n}") for ln in lines), out


def test_run_python_gate_and_exit_status(script: Script, capsys: pytest.CaptureFixture[str]) -> None:
    s = script("leaky.py", LEAKY)
    n = line_of(s, "# GROW")
    code, _, err = run_cli(["run", "--python", "--max-leak-bytes", "1000000", "--", str(s)], capsys)
    assert code == 0 and "leak gate: passed" in err
    code, _, err = run_cli(["run", "--python", "--fail-on-leak", "--", str(s)], capsys)
    assert code == 2 and "leak gate: FAILED" in err
    code, _, err = run_cli(["run", "--python", "--max-leak-bytes", "50000", "--allow-tag", "<frozen*",
                            "--allow-tag", "*runpy*", "--", str(s), "10"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["run", "--python", "--max-leak-bytes", "50000", "--allow-tag", "<frozen*",
                            "--", str(s), "100"], capsys)
    assert code == 2 and f"{s}:{n} (grow)" in err
    code, _, err = run_cli(["run", "--python", "--", str(s), "10", "3"], capsys)
    assert code == 3 and "FAILED: exited with status 3" in err


def test_reports_kept_work_with_show_and_diff(script: Script, capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    d1, d2 = tmp_path / "small", tmp_path / "big"
    assert run_cli(["run", "--python", "--report-dir", str(d1), "--", str(s), "10"], capsys)[0] == 0
    assert run_cli(["run", "--python", "--report-dir", str(d2), "--", str(s), "300"], capsys)[0] == 0
    [r1] = list(d1.glob("python.*.json"))
    [r2] = list(d2.glob("python.*.json"))
    code, out, err = run_cli(["show", str(r2), "--by", "line", "--format", "markdown"], capsys)
    assert code == 0 and f"{s}:{line_of(s, '# GROW')} (grow)" in out
    code, out, err = run_cli(["diff", str(r1), str(r2), "--format", "json"], capsys)
    assert code == 0, err
    rows = {r["key"]: r for r in json.loads(out)["rows"]}
    grown = rows[f"{s}:{line_of(s, '# GROW')} (grow)"]
    assert grown["blocks_diff"] >= 2 * 290 and grown["bytes_diff"] >= 290 * 1001
    code, _, err = run_cli(["diff", str(r1), str(r2), "--max-leak-bytes", "1000"], capsys)
    assert code == 2
    code, _, err = run_cli(["show", str(r2), "--by", "module"], capsys)
    assert code == 1 and "Python reports group by line, function, file, stack" in err
    code, _, err = run_cli(["show", str(r2), "--suppressions", str(r1)], capsys)
    assert code == 1 and "--suppressions applies to interposer reports only" in err


def test_a_percent_sign_in_the_report_dir_is_literal(script: Script, capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    # the hooks expand %p in the report's path: the directory's own '%p' must stay as it is
    s = script("leaky.py", LEAKY)
    d = tmp_path / "r%p%%"
    code, _, err = run_cli(["run", "--python", "--report-dir", str(d), "--", str(s), "1"], capsys)
    assert code == 0, err
    assert "cannot write" not in err and len(list(d.glob("python.*.json"))) == 1


def test_python_reports_do_not_merge_with_snapshots(script: Script, capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    d = tmp_path / "r"
    assert run_cli(["run", "--python", "--report-dir", str(d), "--", str(s), "1"], capsys)[0] == 0
    [r] = list(d.glob("python.*.json"))
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"format": "ringpool-snapshot", "version": 1, "pool": "p", "pid": 1,
                                "taken_at": "2026-01-01T00:00:00Z", "reason": "exit",
                                "backing": "malloc",
                                "totals": {"blocks": 0, "bytes": 0, "peak_bytes": 0, "allocs": 0},
                                "tags": []}))
    code, _, err = run_cli(["show", str(r), str(snap)], capsys)
    assert code == 1 and "cannot merge Python reports" in err


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version=2), "unsupported version 2"),
    (lambda d: d.update(reason="later"), "field 'reason'"),
    (lambda d: d["sites"][0].update(bytes=-1), "is negative"),
    (lambda d: d["totals"].update(bytes=d["totals"]["bytes"] + 1), "differ from the sites' sums"),
    (lambda d: d["sites"][0].update(frames="x"), "must be list"),
    (lambda d: d.update(depth=0), "must be at least 1"),
    (lambda d: d.update(domains=["heap"]), "field 'domains'"),
    (lambda d: d.pop("pid"), "field 'pid': missing"),
])
def test_malformed_python_reports_are_named(script: Script, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path, mutate: Callable[[dict[str, object]], object],
                                            message: str) -> None:
    s = script("leaky.py", LEAKY)
    d = tmp_path / "r"
    assert run_cli(["run", "--python", "--report-dir", str(d), "--", str(s), "1"], capsys)[0] == 0
    [r] = list(d.glob("python.*.json"))
    doc = json.loads(r.read_text())
    mutate(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, _, err = run_cli(["show", str(bad)], capsys)
    assert code == 1
    assert str(bad) in err and message in err, err


def test_run_python_bad_arguments(script: Script, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    cases = [
        (["run", "--python", "--", str(tmp_path / "nope.py")], "nope.py: no such file"),
        (["run", "--python", "--preload", "--", str(s)], "--python and --preload are exclusive"),
        (["run", "--python", "--blocks", "--", str(s)], "--blocks applies to pool reports"),
        (["run", "--python", "--python-depth", "65", "--", str(s)], "at most 64"),
        (["run", "--python", "--python-depth", "0", "--", str(s)], "must be at least 1"),
        (["run", "--python", "--by", "module", "--", str(s)], "Python reports group by"),
        (["run", "--python", "--", "python3"], "give the script to run after the interpreter"),
        (["run", "--python"], "no command given"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(argv, capsys)
        assert code == 1 and message in err, (argv, err)


def test_run_python_accepts_an_interpreter_and_module(script: Script,
                                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    code, out, err = run_cli_out(["run", "--python", "--format", "csv", "--", sys.executable, str(s)], capsys, tmp_path)
    assert code == 0, err
    assert f"{s}:{line_of(s, '# GROW')} (grow)" in out
    code, out, err = run_cli_out(["run", "--python", "--format", "csv", "--", "-c",
                              "keep = [bytes(100000) for _ in range(3)]"], capsys, tmp_path)
    assert code == 0, err
    assert "<string>:1 (<listcomp>)" in out


def test_run_without_python_suggests_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", "--", sys.executable, "-c", "pass"], capsys)
    assert "hint:" in err and "run --python -- -c pass" in err


@pytest.mark.parametrize("fmt", ["speedscope", "html", "pprof"])
def test_run_python_profiles_name_python_lines(script: Script, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, fmt: str) -> None:
    s = script("leaky.py", LEAKY)
    out_file = tmp_path / f"profile.{fmt}"
    code, _, err = run_cli(["run", "--python", "--python-depth", "2", "--format", fmt, "--output",
                            str(out_file), "--", str(s)], capsys)
    assert code == 0, err
    data = out_file.read_bytes()
    if fmt == "pprof":
        data = gzip.decompress(data)     # profile.proto, gzipped
    assert str(s).encode() in data and b"grow" in data
    if fmt == "speedscope":
        doc = json.loads(data)
        names = {f["name"] for f in doc["shared"]["frames"]}
        assert any("grow" in n and f"{s}:{line_of(s, '# GROW')}" in n for n in names), names



def test_run_python_leaves_the_programs_stdout_alone(script: Script,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    s = script("talker.py", """
        print("program output")
        KEEP = [bytearray(2000) for _ in range(50)]   # KEEP
    """)
    from audit.cli import main
    code = main(["run", "--python", "--format", "csv", "--", str(s)])
    out, err = capfd.readouterr()
    assert code == 0
    assert out == "program output\n"
    assert f"{s}:{line_of(s, '# KEEP')} (<listcomp>)" in err


def test_stacks_do_not_show_the_launcher(script: Script, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    s = script("leaky.py", LEAKY)
    code, out, err = run_cli_out(["run", "--python", "--python-depth", "16", "--by", "stack",
                                  "--format", "csv", "--", str(s)], capsys, tmp_path)
    assert code == 0, err
    grow = [ln for ln in out.splitlines() if f"{s}:{line_of(s, '# GROW')} (grow)" in ln]
    assert grow and all("_pyboot.py" not in ln and "runpy" not in ln for ln in grow), grow
