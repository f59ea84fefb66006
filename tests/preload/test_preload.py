"""The malloc interposer on its ground-truth programs and on real programs.

The C programs beside this file are built by `make preload-test-bins` into
$RINGPOOL_PRELOAD_TESTBIN (default build/preload-tests); each leaking line
carries a LEAK-x marker, so expected function and file:line come from the
source, never from a copy of the output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from audit import preload
from preload_helpers import marker_line, marker_lines, only_report, program, reports, run, site_key

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def program_rows(report: preload.PreloadReport, name: str, by: str = "site") -> dict[str, Any]:
    """Rows of sites inside the test program itself, by key."""
    sub = preload.PreloadReport(report.path, report.pid, report.exe, report.taken_at,
                                report.reason, report.totals, report.modules,
                                tuple(s for s in report.sites if s.module.endswith("/" + name)))
    return {r["key"]: r for r in preload.rows(sub, by=by)}


# ------------------------------------------------------------ ground truth
def test_ground_truth_exact(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("gt_leaks")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"gt_leaks done\n"
    rep = only_report(tmp_path)
    assert rep.reason == "exit" and rep.exe.endswith("/gt_leaks")
    expected = {
        site_key("leak_small", "gt_leaks.c", marker_line("gt_leaks.c", "LEAK-A")): (7, 168),
        site_key("leak_table", "gt_leaks.c", marker_line("gt_leaks.c", "LEAK-B")): (3, 600),
        site_key("leak_grown", "gt_leaks.c", marker_line("gt_leaks.c", "LEAK-C")): (2, 2000),
    }
    table = preload.rows(rep, by="site")
    leaking = {r["key"]: (r["blocks"], r["bytes"]) for r in table if r["blocks"]}
    assert leaking == expected
    assert all(not r["suppressed"] for r in table)
    # nothing else is outstanding in the whole process: no stdio, no libc leftovers
    assert (rep.totals["blocks"], rep.totals["bytes"]) == (12, 2768)
    assert rep.totals["untracked_frees"] == 0 and rep.totals["dropped"] == 0
    by_function = {r["key"]: r["bytes"] for r in preload.rows(rep, by="function")}
    assert by_function == {"leak_small": 168, "leak_table": 600, "leak_grown": 2000}
    by_file = preload.rows(rep, by="file")
    assert [(r["key"], r["blocks"], r["bytes"]) for r in by_file] == \
        [(str(HERE / "gt_leaks.c"), 12, 2768)]
    by_module = preload.rows(rep, by="module")
    assert [(r["key"], r["blocks"]) for r in by_module] == [(program("gt_leaks"), 12)]


def test_outstanding_equals_valgrind_in_use_at_exit(lib: str, tmp_path: Path) -> None:
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is missing: `make setup-sys` installs it"
    vg = subprocess.run([valgrind, "--leak-check=no", program("gt_leaks")],
                        capture_output=True, text=True, timeout=300)
    assert vg.returncode == 0, vg.stderr
    use = re.search(r"in use at exit: ([\d,]+) bytes in ([\d,]+) blocks", vg.stderr)
    total = re.search(r"total heap usage: ([\d,]+) allocs", vg.stderr)
    assert use and total, vg.stderr
    vg_bytes, vg_blocks, vg_allocs = (int(x.replace(",", ""))
                                      for x in (use[1], use[2], total[1]))
    proc = run(lib, [program("gt_leaks")], tmp_path)
    assert proc.returncode == 0
    rep = only_report(tmp_path)
    assert (rep.totals["blocks"], rep.totals["bytes"]) == (vg_blocks, vg_bytes)
    # valgrind counts realloc as an allocation too: the totals agree exactly
    assert rep.totals["allocs"] == vg_allocs


def test_threads_counts_exact(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("threads")], tmp_path, env={"RINGPOOL_PRELOAD_ALL_SITES": "1"})
    assert proc.returncode == 0, proc.stderr
    rep = only_report(tmp_path)
    rows = program_rows(rep, "threads")
    key = site_key("worker", "threads.c", marker_line("threads.c", "LEAK-T"))
    assert {k: (r["blocks"], r["bytes"], r["allocs"]) for k, r in rows.items() if r["blocks"]} \
        == {key: (1000, 48000, 1000)}
    # 4 threads x 200000 mallocs in the loop, all freed, plus the leaks
    loop = sum(r["allocs"] for k, r in rows.items() if k != key)
    assert loop == 4 * 200000
    assert rep.totals["untracked_frees"] == 0 and rep.totals["dropped"] == 0


def test_fork_child_writes_its_own_report(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("forks")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    child = int(re.fullmatch(rb"child (\d+)\n", proc.stdout)[1])  # type: ignore[index]
    found = reports(tmp_path)
    assert len(found) == 2 and child in found
    parent = next(pid for pid in found if pid != child)
    p_line = marker_line("forks.c", "LEAK-P")
    k_lines = marker_lines("forks.c", "LEAK-K")

    def leaks(pid: int) -> dict[str, tuple[int, int]]:
        return {k: (r["blocks"], r["bytes"])
                for k, r in program_rows(found[pid], "forks").items() if r["blocks"]}

    assert leaks(parent) == {site_key("main", "forks.c", p_line): (1, 333)}
    assert leaks(child) == {site_key("main", "forks.c", p_line): (1, 333),
                            site_key("main", "forks.c", k_lines[0]): (1, 77),
                            site_key("main", "forks.c", k_lines[1]): (1, 77)}


@pytest.mark.parametrize("depth", ["1", "64"])
def test_vfork_children_write_no_report(lib: str, depth: str, tmp_path: Path) -> None:
    """vfork children whose exec fails and which call _exit, posix_spawn
    children and fork children, made while two threads allocate: a child of
    vfork shares its parent's memory and writes no report (it wrote the
    parent's tables under its own pid); each fork child writes its own; the
    parent's counts are exact."""
    proc = run(lib, [program("vforks")], tmp_path,
               env={"RINGPOOL_PRELOAD_INHERIT": "0", "RINGPOOL_PRELOAD_STACK_DEPTH": depth})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    forked = {int(p) for p in re.findall(r"^forked (\d+)$", out, re.M)}
    leaks = {int(n): int(b) for n, b in re.findall(r"^LEAK (\d+) (\d+)$", out, re.M)}
    found = reports(tmp_path)
    assert len(forked) == 3 and forked < set(found) and len(found) == 4, (sorted(found), forked)
    (parent,) = [r for pid, r in found.items() if pid not in forked]
    got: dict[int, int] = {}
    for site in parent.sites:
        if site.blocks and site.bytes % site.blocks == 0 and site.bytes // site.blocks in leaks:
            got[site.bytes // site.blocks] = got.get(site.bytes // site.blocks, 0) + site.blocks
    assert got == leaks
    for pid in forked:
        assert any(s.bytes == 402 for s in found[pid].sites), pid


def test_malloc_family_errno_alignment_usable_size(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("api")], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"api ok\n"
    rows = program_rows(only_report(tmp_path), "api")
    got = {k: (r["blocks"], r["bytes"]) for k, r in rows.items() if r["blocks"]}
    want = {site_key("main", "api.c", marker_line("api.c", m)): (1, size)
            for m, size in (("LEAK-AL", 100), ("LEAK-MA", 50), ("LEAK-PM", 70),
                            ("LEAK-VA", 33), ("LEAK-PV", 10))}
    assert got == want
    # the same checks pass without the interposer (they test the program too)
    plain = subprocess.run([program("api")], capture_output=True, timeout=60)
    assert plain.returncode == 0 and plain.stdout == b"api ok\n"


def test_cxx_new_attributed_to_its_caller(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("cxx")], tmp_path)
    if proc.returncode == 77:
        pytest.skip("libstdc++.so.6 is not installed")
    assert proc.returncode == 0 and proc.stdout == b"cxx ok\n", proc.stderr
    rows = program_rows(only_report(tmp_path), "cxx")
    got = {k: (r["blocks"], r["bytes"], r["allocs"]) for k, r in rows.items() if r["blocks"]}
    assert got == {site_key("main", "cxx.c", marker_line("cxx.c", "LEAK-NEW")): (1, 40, 1),
                   site_key("main", "cxx.c", marker_line("cxx.c", "LEAK-NEWARR")): (1, 80, 1),
                   site_key("main", "cxx.c", marker_line("cxx.c", "LEAK-AFTER")): (1, 11, 1)}


def test_pool_blocks_not_counted_twice(lib: str, tmp_path: Path) -> None:
    pool_report = tmp_path / "pool.json.out"
    proc = run(lib, [program("pools"), str(pool_report)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rep = only_report(tmp_path)
    # the interposer's rows: the plain malloc, and no site inside libringpool
    # (the pool's name, copied with strdup, shows at strdup's call of malloc)
    table = preload.rows(rep, by="module")
    assert all("libringpool.so" not in r["key"] for r in table)
    rows = program_rows(rep, "pools")
    assert [(k, r["blocks"], r["bytes"]) for k, r in rows.items()] == \
        [(site_key("main", "pools.c", marker_line("pools.c", "LEAK-D")), 1, 64)]
    assert any(s.module.endswith("libringpool.so.0") for s in rep.sites)
    # ...because libringpool made them, and the pool's report has them by tag
    blocks, nbytes = preload.pool_sites(rep)
    assert blocks >= 5 and nbytes >= 500
    doc = json.loads(pool_report.read_text())
    tags = {t["tag"]: (t["blocks"], t["bytes"]) for t in doc["tags"]}
    assert tags["tokens"] == (5, 500) and tags["scratch"] == (0, 0)


def test_output_and_exit_status_unchanged(lib: str, tmp_path: Path) -> None:
    plain = subprocess.run([program("behave"), "3"], capture_output=True, timeout=60)
    under = run(lib, [program("behave"), "3"], tmp_path)
    assert (under.returncode, under.stdout, under.stderr) == \
        (plain.returncode, plain.stdout, plain.stderr) == (3, b"stdout line 3\n", b"stderr line\n")


def test_signal_writes_report_on_demand(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("behave"), "0", "signal"], tmp_path,
               env={"RINGPOOL_PRELOAD_SIGNAL": "USR2"}, pattern="r.%p.%r.json")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert len(names) == 2 and names[0].endswith(".exit.json") and names[1].endswith(".signal.json")
    at_signal = preload.load(str(tmp_path / names[1]))
    at_exit = preload.load(str(tmp_path / names[0]))
    assert at_signal.reason == "signal" and at_exit.reason == "exit"
    sig_bytes = sum(r["bytes"] for r in program_rows(at_signal, "behave").values())
    exit_bytes = sum(r["bytes"] for r in program_rows(at_exit, "behave").values())
    assert (sig_bytes, exit_bytes) == (4000, 9000)


def test_exec_children_inherit_absolute_path(lib: str, tmp_path: Path) -> None:
    libdir, name = os.path.split(lib)
    rel = {"LD_PRELOAD": f"./{name}"}
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir()
    off.mkdir()
    proc = run(lib, [program("behave"), "0", "exec"], on, env=rel, cwd=libdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines()[-1] == f"child LD_PRELOAD={os.path.realpath(lib)}"
    # exec keeps the pid: the report is the exec'd shell's, written when it exits
    assert os.path.basename(only_report(on).exe) in ("dash", "bash", "sh")
    proc = run(lib, [program("behave"), "0", "exec"], off, cwd=libdir,
               env={**rel, "RINGPOOL_PRELOAD_INHERIT": "0"})
    assert proc.stdout.decode().splitlines()[-1] == "child LD_PRELOAD="
    assert reports(off) == {}


def test_exec_children_keep_a_link_to_a_library_under_a_path_ld_preload_splits(
        lib: str, tmp_path: Path) -> None:
    # run --preload names an interposer under "my lib:x/" through a link in a directory
    # of its own; the interposer rewrote its LD_PRELOAD entry to realpath(link), the path
    # with the space and the colon, so every exec'd child printed "cannot be preloaded:
    # ignored" and ran unaudited. The link is kept; a relative name that resolves to such
    # a path is left as it was.
    where = tmp_path / "my lib:x"
    where.mkdir()
    shutil.copy(lib, where / "libringpool-preload.so")
    links = tmp_path / "links"
    links.mkdir()
    (links / "libringpool-preload.so").symlink_to(where / "libringpool-preload.so")
    out = tmp_path / "out"
    out.mkdir()
    for preload_as, cwd in ((str(links / "libringpool-preload.so"), None),
                            ("./libringpool-preload.so", str(where))):
        for old in out.iterdir():
            old.unlink()
        proc = run(preload_as, [program("behave"), "0", "exec"], out, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.decode().splitlines()[-1] == f"child LD_PRELOAD={preload_as}"
        if cwd is None:      # the exec'd shell (after chdir("/")) loaded it: its report
            assert b"cannot be preloaded" not in proc.stderr, proc.stderr
            assert os.path.basename(only_report(out).exe) in ("dash", "bash", "sh")


def test_relative_report_path_survives_chdir_and_exec(lib: str, tmp_path: Path) -> None:
    env = dict(os.environ, LD_PRELOAD=lib, RINGPOOL_PRELOAD_REPORT="rel.%p.json")
    env.pop("RINGPOOL_REPORT", None)
    proc = subprocess.run([program("behave"), "0", "exec"], env=env, cwd=tmp_path,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("rel.*.json")      # written by the shell, after chdir("/")
    assert os.path.basename(preload.load(str(path)).exe) in ("dash", "bash", "sh")


def test_direct_exit_calls_write_report(lib: str, tmp_path: Path) -> None:
    """dash ends with _exit(): the report is written all the same."""
    proc = run(lib, ["/bin/sh", "-c", "echo hi"], tmp_path)
    assert proc.returncode == 0 and proc.stdout == b"hi\n"
    assert only_report(tmp_path).reason == "exit"


def test_quick_exit_writes_report(lib: str, tmp_path: Path) -> None:
    """quick_exit runs no destructor and calls glibc's _exit internally (not the
    interposer's): the report is written all the same, after the program's own
    at_quick_exit handlers (what they allocate is in it)."""
    proc = run(lib, [program("behave"), "5", "quick_exit"], tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == b"stdout line 5\n"
    rep = only_report(tmp_path)
    assert rep.reason == "exit"
    rows = program_rows(rep, "behave")
    assert rows[site_key("main", "behave.c", marker_line("behave.c", "LEAK-S"))]["bytes"] == 4000
    assert rows[site_key("at_quick", "behave.c", marker_line("behave.c", "LEAK-Q"))]["bytes"] == 6000


def test_default_report_goes_beside_pool_reports(lib: str, tmp_path: Path) -> None:
    env = dict(os.environ, LD_PRELOAD=lib, RINGPOOL_REPORT=str(tmp_path / "%n.%p.json"))
    env.pop("RINGPOOL_PRELOAD_REPORT", None)
    proc = subprocess.run([program("gt_leaks")], env=env, capture_output=True,
                          cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("ringpool-preload.*.json")
    assert preload.load(str(path)).totals["blocks"] == 12


def test_strange_program_path_is_escaped(lib: str, tmp_path: Path) -> None:
    odd = os.fsencode(tmp_path) + b'/we"ird\\ \x01 \xff name'
    shutil.copy(os.fsencode(program("gt_leaks")), odd)
    proc = run(lib, [odd.decode("utf-8", "surrogateescape")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rep = only_report(tmp_path)
    assert rep.exe.endswith('/we"ird\\ \x01 \ufffd name')
    assert rep.totals["blocks"] == 12


def test_all_sites_lists_freed_sites(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("gt_leaks")], tmp_path, env={"RINGPOOL_PRELOAD_ALL_SITES": "1"})
    assert proc.returncode == 0
    rows = program_rows(only_report(tmp_path), "gt_leaks", by="function")
    # per churn(): 1000 malloc + 1000 calloc + the reallocs that did not free
    # (realloc(q, 0) frees) + aligned_alloc + posix_memalign; strdup's malloc
    # is a call site inside the C library
    per_call = 1000 + 1000 + sum(1 for i in range(1000) if i % 13) + 2
    assert rows["churn"]["blocks"] == 0 and rows["churn"]["allocs"] == 2 * per_call
    assert rows["leak_grown"]["allocs"] == 4   # 2 mallocs + 2 reallocs


def test_alloc_bytes_sum_the_requested_sizes_of_every_allocation(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("gt_leaks")], tmp_path, env={"RINGPOOL_PRELOAD_ALL_SITES": "1"})
    assert proc.returncode == 0
    rep = only_report(tmp_path)
    with open(rep.path, encoding="utf-8") as fh:
        doc = json.load(fh)
    mine = [s for s in doc["sites"] if s["module"].endswith("/gt_leaks")]
    # churn(), twice: malloc(i % 97 + 1), calloc(3, i + 1), the reallocs to
    # (i % 13) * 100 that did not free, aligned_alloc(64, 128), posix_memalign(96)
    churn = sum(i % 97 + 1 + 3 * (i + 1) + (i % 13) * 100 for i in range(1000)) + 128 + 96
    leaks = 7 * 24 + 3 * 200 + 2 * 10 + 2 * 1000     # leak_grown: malloc(10), realloc to 1000
    assert sum(s["alloc_bytes"] for s in mine) == 2 * churn + leaks
    for s in mine:
        assert s["alloc_bytes"] >= s["bytes"] and (s["alloc_bytes"] > 0) == (s["allocs"] > 0)


@pytest.mark.parametrize("var, value, words, reported", [
    ("RINGPOOL_PRELOAD_SIGNAL", "BOGUS", "unknown signal", True),
    ("RINGPOOL_PRELOAD_SIGNAL", "9", "unknown signal", True),
    ("RINGPOOL_PRELOAD_REPORT", "", "empty report path", False),
    ("RINGPOOL_PRELOAD_REPORT", "/tmp/x.%q.json", "unknown %-escape", False),
    ("RINGPOOL_PRELOAD_REPORT", "/" + "d" * 5000, "path too long", False),
    ("RINGPOOL_PRELOAD_ALL_SITES", "maybe", "expected 1/yes/true", True),
    ("RINGPOOL_PRELOAD_INHERIT", "2", "expected 1/yes/true", True),
])
def test_bad_configuration_warns_once_and_program_runs(lib: str, tmp_path: Path, var: str,
                                                       value: str, words: str,
                                                       reported: bool) -> None:
    proc = run(lib, [program("behave"), "4"], tmp_path, env={var: value})
    err = proc.stderr.decode()
    # the program does what it does without the interposer: status, output
    assert proc.returncode == 4 and proc.stdout == b"stdout line 4\n"
    lines = [ln for ln in err.splitlines() if ln.startswith("ringpool-preload:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ringpool-preload: {var}={value[:200]}") and words in lines[0]
    assert ("running without a report" in lines[0]) == (not reported)
    assert bool(list(tmp_path.glob("*.json"))) == reported


def test_bad_configuration_is_inherited_without_stopping_children(lib: str,
                                                                  tmp_path: Path) -> None:
    proc = run(lib, ["/bin/sh", "-c", "/bin/sh -c 'echo child ran'; echo parent ran"],
               tmp_path, env={"RINGPOOL_PRELOAD_REPORT": "/tmp/x.%q.json"})
    assert proc.returncode == 0 and proc.stdout == b"child ran\nparent ran\n"
    assert proc.stderr.decode().count("unknown %-escape") == 2   # one line per process


def test_unwritable_report_keeps_exit_status(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("behave"), "5"], tmp_path, pattern="missing-dir/r.%p.json")
    assert proc.returncode == 5 and proc.stdout == b"stdout line 5\n"
    assert b"ringpool-preload: cannot write report" in proc.stderr
    assert b"cannot create its temporary file: No such file or directory" in proc.stderr


# ------------------------------------------------------------ real programs
PY_WORKLOAD = r"""
import json, re, collections
docs = [{"id": i, "name": "item-%d" % i, "tags": ["t%d" % (i % 7), "x" * (i % 13)]}
        for i in range(20000)]
text = json.dumps(docs)
back = json.loads(text)
words = collections.Counter(re.findall(r"item-(\d*7)\b", text))
print(len(back), len(text), len(words), sum(int(k) for k in words) % 1000003)
"""


def test_python3_json_regex_workload(lib: str, tmp_path: Path) -> None:
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    plain = subprocess.run([python, "-c", PY_WORKLOAD], capture_output=True, timeout=120)
    under = run(lib, [python, "-c", PY_WORKLOAD], tmp_path)
    assert under.returncode == plain.returncode == 0, under.stderr
    assert under.stdout == plain.stdout and under.stderr == plain.stderr
    rep = only_report(tmp_path)
    assert rep.totals["allocs"] > 1000 and rep.totals["dropped"] == 0
    assert preload.rows(rep, by="module")  # symbolizes a real interpreter's sites


def test_sort_large_input(lib: str, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("".join(f"{(i * 7919) % 100003:06d} line {i}\n" for i in range(200000)))
    plain = subprocess.run(["sort", str(data)], capture_output=True, timeout=120)
    under = run(lib, ["sort", str(data)], tmp_path)
    assert under.returncode == plain.returncode == 0, under.stderr
    assert under.stdout == plain.stdout and len(under.stdout) == data.stat().st_size
    rep = only_report(tmp_path)
    assert rep.exe.endswith("/sort") and rep.totals["allocs"] > 0


# ----------------------------------------------------------- the reader
def good_doc() -> dict[str, Any]:
    return {"format": "ringpool-preload", "version": 1, "pid": 7, "exe": "/bin/x",
            "taken_at": "2026-11-26T04:20:00Z", "reason": "exit",
            "totals": {"blocks": 1, "bytes": 8, "allocs": 2},
            "modules": [{"path": "/nonexistent/libc.so.6", "base": "0x7f0000000000"}],
            "sites": [{"module": "/nonexistent/libc.so.6", "offset": "0x1234", "blocks": 1,
                       "bytes": 8, "allocs": 2, "symbol": "_IO_file_doallocate"},
                      {"module": "/nonexistent/app", "offset": "0x99", "blocks": 2,
                       "bytes": 64, "allocs": 2}]}


def write(tmp: Path, doc: Any, name: str = "rep.json") -> str:
    path = tmp / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(format="ringpool-snapshot"), "'format'"),
    (lambda d: d.update(version=2), "unsupported version 2"),
    (lambda d: d.pop("sites"), "missing field 'sites'"),
    (lambda d: d["totals"].update(bytes=-1), "'bytes' is negative"),
    (lambda d: d["sites"][0].update(blocks="1"), "'blocks' must be int"),
    (lambda d: d["sites"][1].update(offset="99"), "sites[1]: field 'offset' must be a hex"),
    (lambda d: d["modules"][0].update(base=5), "modules[0]: field 'base' must be str"),
    (lambda d: d.update(reason="destroy"), "'reason' must be 'exit' or 'signal'"),
    (lambda d: d["sites"][0].update(allocs=True), "'allocs' must be int"),
])
def test_malformed_reports_name_file_and_field(tmp_path: Path, change: Any, words: str) -> None:
    doc = good_doc()
    change(doc)
    path = write(tmp_path, doc)
    with pytest.raises(ValueError) as err:
        preload.load(path)
    assert path in str(err.value) and words in str(err.value)


def test_truncated_and_non_object_reports(tmp_path: Path) -> None:
    text = json.dumps(good_doc())
    path = write(tmp_path, text[: len(text) // 2])
    with pytest.raises(ValueError, match="not valid JSON"):
        preload.load(path)
    with pytest.raises(ValueError, match="JSON object"):
        preload.load(write(tmp_path, "[1, 2]", "list.json"))
    assert preload.is_preload_report(good_doc())
    assert not preload.is_preload_report({"format": "ringpool-snapshot"})


def test_default_and_user_suppressions(tmp_path: Path) -> None:
    rep = preload.load(write(tmp_path, good_doc()))
    table = preload.rows(rep, by="function")
    by_key = {r["key"]: r for r in table}
    assert by_key["_IO_file_doallocate"]["suppressed"] is True     # default list
    assert by_key["?? (app+0x99)"]["suppressed"] is False
    assert preload.unsuppressed_totals(table) == (2, 64)
    supp = tmp_path / "supp.txt"
    supp.write_text("# known\n\nleak:^/nonexistent/app$\n")
    table = preload.rows(rep, by="site", suppressions=str(supp))
    assert all(r["suppressed"] for r in table)
    assert preload.unsuppressed_totals(table) == (0, 0)


@pytest.mark.parametrize("text, words", [
    ("leak:\n", ":1: empty pattern"),
    ("# c\nfoo\n", ":2: expected 'leak:PATTERN'"),
    ("race:x\n", ":1: expected 'leak:PATTERN'"),
])
def test_bad_suppression_files(tmp_path: Path, text: str, words: str) -> None:
    rep = preload.load(write(tmp_path, good_doc()))
    supp = tmp_path / "supp.txt"
    supp.write_text(text)
    with pytest.raises(ValueError) as err:
        preload.rows(rep, suppressions=str(supp))
    assert str(supp) in str(err.value) and words in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        preload.rows(rep, suppressions=str(tmp_path / "absent.txt"))


def test_bad_grouping_and_pool_sites(tmp_path: Path) -> None:
    doc = good_doc()
    doc["sites"].append({"module": "/x/libringpool.so.0", "offset": "0x10", "blocks": 4,
                         "bytes": 400, "allocs": 4})
    rep = preload.load(write(tmp_path, doc))
    with pytest.raises(ValueError, match="unknown grouping 'line'"):
        preload.rows(rep, by="line")
    assert preload.pool_sites(rep) == (4, 400)
    assert all("libringpool" not in r["key"] for r in preload.rows(rep, by="module"))


def test_library_path_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RINGPOOL_PRELOAD_LIB", str(tmp_path / "nope.so"))
    with pytest.raises(FileNotFoundError, match="make preload"):
        preload.library_path()


# ------------------------------------------------------------ the CLI
def test_cli_run_preload_groups_and_gates(lib: str, tmp_path: Path,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    """`ringpool-audit run --preload` finds the report, symbolizes, groups, gates."""
    cli = pytest.importorskip("audit.cli", reason="the audit CLI is not in this tree")
    status = cli.main(["run", "--preload", "--by", "function", "--format", "json",
                       "--report-dir", str(tmp_path), "--fail-on-leak", "--", program("gt_leaks")])
    err = capfd.readouterr().err     # without --output: stderr, never the program's stdout
    assert status == 2
    doc = json.loads(err[err.index("{"):err.rindex("}") + 1])
    got = {r["key"]: (r["blocks"], r["bytes"]) for r in doc["rows"]}
    assert got == {"leak_small": (7, 168), "leak_table": (3, 600), "leak_grown": (2, 2000)}
    supp = tmp_path / "supp.txt"
    supp.write_text("leak:leak_\n")
    status = cli.main(["run", "--preload", "--suppressions", str(supp), "--fail-on-leak",
                       "--format", "csv", "--", program("gt_leaks")])
    capfd.readouterr()
    assert status == 0


# --------------------------------------------------------------- UBSan
@pytest.mark.parametrize("name", ["gt_leaks", "threads", "forks", "api"])
def test_ubsan_build_is_clean(tmp_path: Path, name: str) -> None:
    ubsan = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB",
                           str(REPO / "build" / "libringpool-preload-ubsan.so"))
    if not os.path.isfile(ubsan):
        pytest.fail(f"{ubsan} is missing: run `make preload-test-bins`")
    proc = run(ubsan, [program(name)], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"runtime error" not in proc.stderr
    assert reports(tmp_path)
