"""run --python --native: each site's stack is the native stack with the Python
frames in place of CPython's evaluation loop.  A tiny C extension, built here
with debug information, allocates from C: its function must show up in the
hybrid stack just under the Python line that called it, with the same counts
as the run without native stacks."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable

import pytest

from audit import pyreport
from conftest import line_of, run_cli

Script = Callable[[str, str], Path]

EXT_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static void *kept[4096];
static size_t nkept;

/* a bytes object from C: the block comes from PyBytes_FromStringAndSize */
static PyObject *make_buffer(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n < 0 && PyErr_Occurred())
        return NULL;
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);   /* MAKE_BUFFER */
    return b;
}

/* a block of the MEM domain kept by the extension (never freed) */
static PyObject *raw_block(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n < 0 && PyErr_Occurred())
        return NULL;
    void *p = PyMem_Malloc((size_t)n);   /* RAW_BLOCK */
    if (p == NULL)
        return PyErr_NoMemory();
    if (nkept < sizeof kept / sizeof kept[0])
        kept[nkept++] = p;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"make_buffer", make_buffer, METH_O, NULL},
    {"raw_block", raw_block, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "rpnative", NULL, -1, methods,
                                 NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_rpnative(void) { return PyModule_Create(&def); }
"""

PROGRAM = """
import os, sys; sys.path.insert(0, os.path.dirname(__file__))  # beside the script, also under PYTHONSAFEPATH
import rpnative

KEEP = []

def load(n):
    for _ in range(n):
        KEEP.append(rpnative.make_buffer(5000))   # CALL_BUFFER

def grab(n):
    for _ in range(n):
        rpnative.raw_block(3000)                  # CALL_RAW

load(int(sys.argv[1]))
grab(int(sys.argv[2]))
"""


@pytest.fixture(scope="session")
def extension(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the built extension, its source): -O0 -g, so that the functions keep
    their frames (no tail calls) and DWARF names them with their lines."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    assert cc is not None, "a C compiler is needed (make setup-sys-build installs gcc)"
    d = tmp_path_factory.mktemp("rpnative")
    src = d / "rpnative.c"
    src.write_text(EXT_SOURCE, encoding="utf-8")
    out = d / f"rpnative{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run([cc, "-shared", "-fPIC", "-O0", "-g", "-fno-optimize-sibling-calls",
                    f"-I{sysconfig.get_paths()['include']}", str(src), "-o", str(out)],
                   check=True, timeout=120)
    return out, src


@pytest.fixture
def program(script: Script, extension: tuple[Path, Path]) -> Path:
    s = script("prog.py", PROGRAM)
    shutil.copy(extension[0], s.parent / extension[0].name)
    return s


def _report(directory: Path) -> pyreport.PythonReport:
    [path] = list(directory.glob("python.*.json"))
    return pyreport.parse(json.loads(path.read_text(encoding="utf-8")), str(path))


def _by_program_line(report: pyreport.PythonReport, program: Path) -> dict[int, tuple[int, int]]:
    """(blocks, bytes) per line of program, by the innermost Python frame of each site."""
    out: dict[int, tuple[int, int]] = {}
    for site in report.before.sites:
        python = [f for f in site.frames if not f.native]
        if python and python[0].file == str(program):
            b, n = out.get(python[0].line, (0, 0))
            out[python[0].line] = (b + site.blocks, n + site.bytes)
    return out


def _stack_with(report: pyreport.PythonReport, function: str) -> tuple[pyreport.Frame, ...]:
    stacks = [s.frames for s in report.before.sites if any(f.function == function for f in s.frames)]
    assert stacks, [[pyreport.frame_text(f) for f in s.frames] for s in report.before.sites][:20]
    return max(stacks, key=len)


def _under(frames: tuple[pyreport.Frame, ...], function: str) -> pyreport.Frame:
    """The Python frame that called the native function (only native frames between)."""
    i = next(k for k, f in enumerate(frames) if f.function == function)
    for f in frames[i + 1:]:
        if not f.native:
            return f
    raise AssertionError(f"no Python frame under {function}")


def test_native_function_shows_under_the_python_line(program: Path, extension: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    d = tmp_path / "native"
    code, _, err = run_cli(["run", "--python", "--native", "--report-dir", str(d), "--by", "stack",
                            "--", str(program), "40", "30"], capsys)
    assert code == 0, err
    report = _report(d)
    assert report.native_depth == 64
    src = extension[1]
    buf = _stack_with(report, "make_buffer")
    f = next(f for f in buf if f.function == "make_buffer")
    assert (f.file, f.line) == (str(src), line_of(src, "MAKE_BUFFER"))   # DWARF: file:line
    assert f.module is not None and f.module.endswith(extension[0].name)
    caller = _under(buf, "make_buffer")
    assert (caller.file, caller.line, caller.function) == (str(program), line_of(program, "# CALL_BUFFER"), "load")
    # the whole Python stack is there, outer frames after it, the launcher gone
    python = [x for x in buf if not x.native]
    assert [(x.function, x.line) for x in python[-2:]] == [("load", line_of(program, "# CALL_BUFFER")),
                                                          ("<module>", line_of(program, "load(int("))]
    assert not any("_pyboot" in x.file or "_pystack" in x.file for x in buf)
    # the allocator's own entry (PyMem_Malloc) is not the innermost frame: raw_block is
    raw = _stack_with(report, "raw_block")
    assert raw[0].function == "raw_block" and raw[0].line == line_of(src, "RAW_BLOCK")
    assert _under(raw, "raw_block").line == line_of(program, "# CALL_RAW")
    # the table: one row per hybrid stack, the native function before the Python line
    assert f"{src}:{line_of(src, 'MAKE_BUFFER')} (make_buffer)" in err
    assert f"{program}:{line_of(program, '# CALL_BUFFER')} (load)" in err


def test_native_counts_equal_the_run_without(program: Path, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    got = {}
    for mode in ("plain", "native"):
        d = tmp_path / mode
        extra = ["--native"] if mode == "native" else []
        code, _, err = run_cli(["run", "--python", *extra, "--report-dir", str(d), "--",
                                str(program), "40", "30"], capsys)
        assert code == 0, err
        got[mode] = _by_program_line(_report(d), program)
    assert got["native"] == got["plain"]
    blocks, nbytes = got["native"][line_of(program, "# CALL_RAW")]
    assert (blocks, nbytes) == (30, 30 * 3000)
    blocks, nbytes = got["native"][line_of(program, "# CALL_BUFFER")]
    assert blocks >= 40 and nbytes >= 40 * 5000


@pytest.mark.parametrize("by, want", [
    ("line", "{src}:{raw} (raw_block)"),
    ("function", "raw_block ({src})"),
    ("file", "{src}"),
])
def test_native_by_names_the_native_function(program: Path, extension: tuple[Path, Path],
                                             capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             by: str, want: str) -> None:
    out = tmp_path / "rows.json"
    code, _, err = run_cli(["run", "--python", "--native", "--by", by, "--format", "json", "--output",
                            str(out), "--", str(program), "5", "30"], capsys)
    assert code == 0, err
    rows = {r["key"]: r for r in json.loads(out.read_text())["rows"]}
    key = want.format(src=extension[1], raw=line_of(extension[1], "RAW_BLOCK"))
    assert rows[key]["blocks"] == 30 and rows[key]["bytes"] == 90000, sorted(rows)[:10]


@pytest.mark.threads
def test_native_with_threads_and_fork(script: Script, extension: tuple[Path, Path],
                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Two waves of four threads: each thread gives its walk buffers back as it
    # exits, and one of the second wave may take them. Under ThreadSanitizer
    # (make test-pyhooks-tsan) the give-back ran in the last round of key
    # destructors, after the runtime had ended the thread's state, and the
    # runtime crashed.
    s = script("threads.py", """
        import os, sys, threading; sys.path.insert(0, os.path.dirname(__file__))  # beside the script, also under PYTHONSAFEPATH
        import rpnative

        def worker():
            for _ in range(25):
                rpnative.raw_block(1000)           # THREAD_RAW

        for _ in range(2):
            threads = [threading.Thread(target=worker) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        pid = os.fork()
        if pid == 0:
            for _ in range(7):
                rpnative.raw_block(2000)           # CHILD_RAW
            raise SystemExit(0)
        assert os.waitpid(pid, 0)[1] == 0
    """)
    shutil.copy(extension[0], s.parent / extension[0].name)
    d = tmp_path / "r"
    code, _, err = run_cli(["run", "--python", "--native", "--report-dir", str(d), "--", str(s)], capsys)
    assert code == 0, err
    reports = [pyreport.parse(json.loads(p.read_text()), str(p)) for p in d.glob("python.*.json")]
    assert len(reports) == 2
    child = next(r for r in reports if _by_program_line(r, s).get(line_of(s, "# CHILD_RAW")))
    parent = next(r for r in reports if r is not child)
    assert _by_program_line(parent, s)[line_of(s, "# THREAD_RAW")] == (200, 200_000)
    assert line_of(s, "# CHILD_RAW") not in _by_program_line(parent, s)
    # the child keeps the parent's blocks (its heap is a copy) and adds its own
    lines = _by_program_line(child, s)
    assert lines[line_of(s, "# CHILD_RAW")] == (7, 14_000)
    assert lines[line_of(s, "# THREAD_RAW")] == (200, 200_000)
    stack = _stack_with(parent, "raw_block")
    assert _under(stack, "raw_block").function == "worker"
    assert any(f.function == "Thread.run" for f in stack)


def test_native_with_sampling(program: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = tmp_path / "r"
    # 2000 blocks of 3000 bytes at 1e-3 per byte: about 6000 samples
    code, _, err = run_cli(["run", "--python", "--native", "--sample-rate", "1e-3", "--sample-seed", "11",
                            "--report-dir", str(d), "--", str(program), "0", "2000"], capsys)
    assert code == 0, err
    report = _report(d)
    assert report.sample_rate == 1e-3 and report.native_depth == 64
    blocks, nbytes = _by_program_line(report, program)[line_of(program, "# CALL_RAW")]
    assert abs(nbytes - 6_000_000) < 0.1 * 6_000_000 and abs(blocks - 2000) < 200
    stack = _stack_with(report, "raw_block")
    assert stack[0].function == "raw_block" and _under(stack, "raw_block").function == "grab"
    assert "estimated (sampled at 0.001)" in err


def _doc(directory: Path) -> tuple[Path, dict[str, Any]]:
    [path] = list(directory.glob("python.*.json"))
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_native_reports_work_with_show_diff_gate_and_exports(program: Path, capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    d1, d2 = tmp_path / "small", tmp_path / "big"
    assert run_cli(["run", "--python", "--native", "--report-dir", str(d1), "--", str(program), "1", "5"],
                   capsys)[0] == 0
    assert run_cli(["run", "--python", "--native", "--report-dir", str(d2), "--", str(program), "1", "50"],
                   capsys)[0] == 0
    (r1, doc), (r2, _) = _doc(d1), _doc(d2)
    assert {"native_depth", "modules", "frames", "stacks", "eval_frames"} <= set(doc)
    assert any("native" in site for site in doc["sites"])
    code, out, err = run_cli(["show", str(r2), "--by", "function", "--format", "csv"], capsys)
    assert code == 0 and "raw_block (" in out and "rpnative.c)" in out, err
    code, out, err = run_cli(["diff", str(r1), str(r2), "--by", "stack", "--format", "json"], capsys)
    assert code == 0, err
    grown = [r for r in json.loads(out)["rows"] if "(raw_block)" in r["key"]]
    assert grown and grown[0]["blocks_diff"] == 45 and grown[0]["bytes_diff"] == 45 * 3000
    code, _, err = run_cli(["diff", str(r1), str(r2), "--max-leak-bytes", "1000"], capsys)
    assert code == 2, err
    code, _, err = run_cli(["run", "--python", "--native", "--max-leak-bytes", "100000",
                            "--allow-tag", "*rpnative.c*", "--", str(program), "1", "50"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["run", "--python", "--native", "--max-leak-bytes", "100000",
                            "--", str(program), "1", "50"], capsys)
    assert code == 2 and "(raw_block)" in err
    call_raw = f"{program}:{line_of(program, '# CALL_RAW')} (grab)"
    for fmt in ("folded", "speedscope", "html", "pprof"):
        out_file = tmp_path / f"p.{fmt}"
        code, _, err = run_cli(["show", str(r2), "--format", fmt, "--output", str(out_file)], capsys)
        assert code == 0, (fmt, err)
        data = out_file.read_bytes()
        if fmt == "pprof":
            data = gzip.decompress(data)
            assert b"raw_block" in data and b"rpnative" in data and str(program).encode() in data
        elif fmt == "folded":
            # root first: the Python caller, then the native function it called
            lines = [ln for ln in data.decode().splitlines() if "raw_block" in ln]
            assert lines and all(call_raw in ln.split(";")[-2] or call_raw in ln for ln in lines)
            assert any(ln.split(";")[-1].startswith("raw_block") for ln in lines), lines
        else:
            assert b"raw_block" in data and str(program).encode() in data


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["sites"][-1].update(native=10 ** 6), "field 'sites["),
    (lambda d: d.update(eval_frames=[-1]), "field 'eval_frames[0]'"),
    (lambda d: d.update(native_depth=0), "field 'native_depth'"),
    (lambda d: d["frames"].__setitem__(0, [99, "0x10"]), "module index 99"),
    (lambda d: d["sites"][0]["frames"][0].update(entry="yes") if d["sites"][0]["frames"] else
     d["sites"][1]["frames"][0].update(entry="yes"), ".entry': must be bool"),
])
def test_malformed_native_reports_are_named(program: Path, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path, mutate: Callable[[dict[str, Any]], object],
                                            message: str) -> None:
    d = tmp_path / "r"
    assert run_cli(["run", "--python", "--native", "--report-dir", str(d), "--", str(program), "1", "1"],
                   capsys)[0] == 0
    _, doc = _doc(d)
    doc["sites"].sort(key=lambda s: "native" not in s)      # a site with a native stack last
    doc["sites"].reverse()
    mutate(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, _, err = run_cli(["show", str(bad)], capsys)
    assert code == 1 and str(bad) in err and message in err, err


def test_native_bad_arguments(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["run", "--native", "--", str(program)], "--native applies to --python runs"),
        (["run", "--python", "--native", "--python-depth", "3", "--", str(program)],
         "--python-depth and --native are exclusive"),
        (["run", "--python", "--stack-depth", "8", "--", str(program)],
         "--stack-depth applies to --preload and --python --native runs only"),
        (["run", "--python", "--native", "--stack-depth", "300", "--", str(program)],
         "the stack depth must be from 1 to 256"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(argv, capsys)
        assert code in (1, 2) and message in err, (argv, code, err)


def test_native_stack_depth_bounds_the_native_frames(program: Path, capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    d = tmp_path / "r"
    code, _, err = run_cli(["run", "--python", "--native", "--stack-depth", "3", "--report-dir", str(d),
                            "--", str(program), "1", "3"], capsys)
    assert code == 0, err
    _, doc = _doc(d)
    assert doc["native_depth"] == 3 and all(len(st) <= 3 for st in doc["stacks"])
    report = _report(d)
    stack = _stack_with(report, "raw_block")
    assert stack[0].function == "raw_block"


def test_hooks_refuse_a_bad_native_depth() -> None:
    code = ("from allocator import _pyhooks\n"
            "for bad in (-1, 257):\n"
            "    try:\n"
            "        _pyhooks.start(native=bad)\n"
            "    except ValueError as exc:\n"
            "        print('refused', exc)\n"
            "print(_pyhooks.is_tracing(), _pyhooks.MAX_NATIVE_DEPTH)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("refused native must be a number of native frames from 1 to 256") == 2
    assert proc.stdout.strip().endswith("False 256")


def test_same_native_stack_from_two_python_lines_is_told_apart(script: Script, extension: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    # both calls reach make_buffer through the same native frames (the same
    # eval-loop instruction handler): only the Python frames differ, and each
    # allocation follows one from the other line
    s = script("alternate.py", """
        import os, sys; sys.path.insert(0, os.path.dirname(__file__)); import rpnative  # also under PYTHONSAFEPATH
        KEEP = []

        def first():
            KEEP.append(rpnative.make_buffer(700))    # FIRST

        def second():
            KEEP.append(rpnative.make_buffer(900))    # SECOND

        for _ in range(50):
            first()
            second()
    """)
    shutil.copy(extension[0], s.parent / extension[0].name)
    d = tmp_path / "r"
    code, _, err = run_cli(["run", "--python", "--native", "--report-dir", str(d), "--", str(s)], capsys)
    assert code == 0, err
    report = _report(d)
    made: dict[int, list[int]] = {}
    for site in report.before.sites:
        if any(f.function == "make_buffer" for f in site.frames):
            caller = _under(site.frames, "make_buffer")
            if caller.file == str(s):
                made.setdefault(caller.line, []).append(site.blocks)
    assert {line: sum(b) for line, b in made.items()} == {line_of(s, "# FIRST"): 50,
                                                          line_of(s, "# SECOND"): 50}, made
