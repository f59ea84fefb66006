"""Whole call stacks from the interposer: leaks behind allocation wrappers are
credited to the user's function and file:line (`--by site`, `--by stack`),
with counts and bytes identical to the one-frame mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from audit import preload
from audit.cli import main

HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("RINGPOOL_STACKS_TESTBIN", str(HERE.parents[1] / "build" / "stacks-tests")))
SOURCES = {"wrappers": "wrappers.c", "wrappers_cxx": "wrappers_cxx.cpp"}


def program(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make stacks-test-bins`")
    return str(path)


def marker_line(source: str, marker: str) -> int:
    for n, line in enumerate((HERE / source).read_text().splitlines(), 1):
        if re.search(rf"\b{re.escape(marker)}\s*(\*/)?$", line):
            return n
    raise AssertionError(f"{marker} not in {source}")


@pytest.mark.parametrize("name", ["threads_signals"])
def test_by_site_past_wrappers_in_threads_and_signal_handlers(name: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    check_sites_at_markers(name, name + ".c", capsys)


def own_counts(name: str) -> dict[str, tuple[int, int]]:
    """What the program says it leaks: marker -> (blocks, bytes)."""
    out = subprocess.run([program(name)], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        _, marker, blocks, nbytes = line.split()
        found[marker] = (int(blocks), int(nbytes))
    return found


def function_of(source: str, line: int) -> str:
    """The name of the function whose body holds line (a C/C++ definition at
    column 0 followed by its body)."""
    name = "?"
    for n, text in enumerate((HERE / source).read_text().splitlines(), 1):
        m = re.match(r"^(?:static\s+)?[\w:<>\*\s]+?\**\b(\w+)\(.*\)\s*$", text)
        if m and not text.startswith((" ", "\t")):
            name = m.group(1)
        if n == line:
            return name
    raise AssertionError(line)


def run_rows(name: str, by: str, depth: int, capsys: pytest.CaptureFixture[str],
             extra: tuple[str, ...] = ()) -> dict[str, dict[str, object]]:
    argv = ["run", "--preload", "--stack-depth", str(depth), "--by", by, *extra,
            "--format", "json", "--", program(name)]
    assert main(argv) == 0
    # run --preload: the table goes to stderr (stdout is the program's), then the summary
    doc, _ = json.JSONDecoder().raw_decode(capsys.readouterr().err)
    return {str(r["key"]): r for r in doc["rows"] if not r["suppressed"]}


def own_rows(rows: dict[str, dict[str, object]], source: str) -> dict[str, tuple[int, int]]:
    return {k: (int(r["blocks"]), int(r["bytes"]))  # type: ignore[call-overload]
            for k, r in rows.items() if f"{source}:" in k}


def check_sites_at_markers(name: str, source: str, capsys: pytest.CaptureFixture[str],
                           signature: bool = False) -> None:
    """`run --preload --by site` credits what the program says each marker leaks to
    the function and line of that marker in source, and nothing else to source.
    signature: a key's function may carry its argument list (C++)."""
    expected = {(function_of(source, marker_line(source, m)), marker_line(source, m)): c
                for m, c in own_counts(name).items()}
    args = r"(?:\(.*\))?" if signature else ""
    got = {}
    for key, counts in own_rows(run_rows(name, "site", 64, capsys), source).items():
        m = re.fullmatch(rf"(\w+){args} \({re.escape(str(HERE / source))}:(\d+)\)", key)
        assert m, key
        got[(m.group(1), int(m.group(2)))] = counts
    assert got == expected


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_by_site_names_the_caller_past_the_wrappers(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    check_sites_at_markers(name, SOURCES[name], capsys, signature=True)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_by_stack_starts_at_the_caller_and_reaches_main(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = SOURCES[name]
    rows = run_rows(name, "stack", 64, capsys)
    for marker, counts in own_counts(name).items():
        line = marker_line(source, marker)
        head = rf"{function_of(source, line)}(\(.*?\))? \({re.escape(str(HERE / source))}:{line}\) < "
        mine = {k: r for k, r in rows.items() if re.match(head, k)}
        assert mine, (marker, list(rows))
        assert all(re.search(rf"< main(\(\))? \({re.escape(str(HERE / source))}:", k) for k in mine), list(mine)
        assert (sum(int(r["blocks"]) for r in mine.values()),  # type: ignore[call-overload]
                sum(int(r["bytes"]) for r in mine.values())) == counts  # type: ignore[call-overload]


def test_deep_stack_lists_every_recursive_frame(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_rows("wrappers", "stack", 64, capsys)
    line = marker_line("wrappers.c", "LEAK-DEEP")
    (key,) = [k for k in rows if k.startswith(f"inner ({HERE / 'wrappers.c'}:{line}) < ")]
    assert key.count("inner (") == 6 and "make_deep (" in key


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_counts_and_bytes_unchanged_from_one_frame_mode(name: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    totals = {}
    for depth in (1, 64):
        rdir = tmp_path / f"d{depth}"
        assert main(["run", "--preload", "--stack-depth", str(depth), "--report-dir", str(rdir),
                     "--format", "json", "--", program(name)]) == 0
        capsys.readouterr()
        (path,) = rdir.glob("ringpool-preload.*.json")
        report = preload.load(str(path))
        assert report.stack_depth == depth
        mine = [s for s in report.sites if s.module == program(name)
                or any(f[0] == program(name) for f in s.frames())]
        totals[depth] = (report.totals["blocks"], report.totals["bytes"], report.totals["allocs"],
                         sum(s.blocks for s in mine), sum(s.bytes for s in mine))
        if depth == 1:
            assert all(len(s.frames()) == 1 for s in report.sites)
    assert totals[1][:3] == totals[64][:3]


def test_one_frame_mode_credits_the_wrapper(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_rows("wrappers", "function", 1, capsys)
    assert "xmalloc" in rows and "make_table" not in rows


def test_user_wrapper_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    plain = run_rows("wrappers", "function", 64, capsys)
    assert "make_table" in plain and "make_deep" not in plain
    rows = run_rows("wrappers", "function", 64, capsys, ("--wrapper", "inner", "--wrapper", "make_t*"))
    assert "inner" not in rows and "make_deep" in rows
    assert "make_table" not in rows and int(rows["main"]["bytes"]) == 300  # type: ignore[call-overload]


def test_bad_stack_depth_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "257", "x"):
        assert main(["run", "--preload", "--stack-depth", bad, "--", "true"]) == 1
        err = capsys.readouterr().err
        assert "--stack-depth" in err and ("from 1 to 256" in err or "not a number of frames" in err)


def test_stack_depth_needs_preload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--stack-depth", "4", "--", "true"]) == 1
    assert "--stack-depth applies to --preload" in capsys.readouterr().err


def test_empty_wrapper_pattern_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--wrapper", " ", "--", "true"]) == 1
    assert "empty pattern" in capsys.readouterr().err


def test_bad_stack_depth_variable_falls_back_to_one_frame(tmp_path: Path) -> None:
    env = dict(os.environ, LD_PRELOAD=preload.library_path(), RINGPOOL_PRELOAD_STACK_DEPTH="lots",
               RINGPOOL_PRELOAD_REPORT=str(tmp_path / "r.json"))
    proc = subprocess.run([program("wrappers")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "RINGPOOL_PRELOAD_STACK_DEPTH=lots" in proc.stderr
    assert preload.load(str(tmp_path / "r.json")).stack_depth == 1


def test_malformed_stack_tables_are_named(tmp_path: Path) -> None:
    doc = {"format": "ringpool-preload", "version": 1, "pid": 1, "exe": "/bin/x",
           "taken_at": "2026-01-01T00:00:00Z", "reason": "exit",
           "totals": {"blocks": 1, "bytes": 8, "allocs": 1},
           "modules": [{"path": "/bin/x", "base": "0x1000"}],
           "sites": [{"module": "/bin/x", "offset": "0x10", "blocks": 1, "bytes": 8, "allocs": 1,
                      "stack": 0}],
           "stack_depth": 64, "stacks": [[0, 1]], "frames": [[0, "0x10"], [0, "0x20"]]}
    ok = preload.parse(doc, "r.json")
    assert ok.sites[0].stack == (("/bin/x", 0x10), ("/bin/x", 0x20))
    for field, value, message in (
            ("stacks", [[0, 2]], "frame index 2 is not in frames"),
            ("stacks", [[]], "non-empty list"),
            ("frames", [[3, "0x10"], [0, "0x20"]], "module index 3"),
            ("frames", [[0, "16"], [0, "0x20"]], "hex string"),
            ("stacks", [], "field 'stack' is 0, but the report has 0 stacks")):
        bad = dict(doc, **{field: value})
        with pytest.raises(ValueError, match=re.escape(message)):
            preload.parse(bad, "r.json")


def stack_multiset(argv: list[str], tmp: Path, unwinder: str,
                   depth: int = 64) -> dict[tuple[tuple[str, int], ...], int]:
    env = dict(os.environ, LD_PRELOAD=preload.library_path(), RINGPOOL_PRELOAD_STACK_DEPTH=str(depth),
               RINGPOOL_PRELOAD_UNWINDER=unwinder, RINGPOOL_PRELOAD_ALL_SITES="1",
               RINGPOOL_PRELOAD_REPORT=str(tmp / f"{unwinder}.%p.json"), PYTHONHASHSEED="0")
    proc = subprocess.run(argv, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    found: dict[tuple[tuple[str, int], ...], int] = {}
    for path in tmp.glob(f"{unwinder}.*.json"):
        for site in preload.load(str(path)).sites:
            found[site.frames()] = found.get(site.frames(), 0) + site.allocs
    return found


@pytest.mark.parametrize("argv", [["wrappers_cxx"], ["wrappers"], ["memo"], ["memo_fork"],
                                  ["/usr/bin/python3", "-c", "import json, re, decimal; "
                                   "json.loads(json.dumps([{'a': str(i)} for i in range(2000)]))"],
                                  ["/usr/bin/sqlite3", ":memory:",
                                   "create table t(a, b); "
                                   + " ".join(f"insert into t values({i}, 'row {i}');" for i in range(300))
                                   + " create index i on t(b); select count(*), sum(length(b)) from t;"]],
                         ids=["c++", "c", "one-word-apart", "repeated-across-fork", "python3", "sqlite3"])
def test_cached_walker_gives_libunwind_stacks(argv: list[str], tmp_path: Path) -> None:
    if "/" not in argv[0]:
        argv = [program(argv[0])]
    elif not os.path.isfile(argv[0]):
        pytest.skip(f"{argv[0]} is not installed")
    cached = stack_multiset(argv, tmp_path, "cached")
    general = stack_multiset(argv, tmp_path, "libunwind")
    assert cached == general
    assert max(len(s) for s in cached) > 5


@pytest.mark.parametrize("name", ["splice", "splice_o2"])
@pytest.mark.parametrize("depth", [64, 9])
def test_stacks_sharing_their_callers_are_walked_as_libunwind_walks_them(name: str, depth: int,
                                                                      tmp_path: Path) -> None:
    """Consecutive stacks that share their outer frames and differ below
    (recursion of changing depth, twin callers, alloca frames at and around
    the point where the stacks meet, signal handlers on the thread's and on
    an alternate stack, threads, stacks deeper than recorded): the walker
    that takes shared frames over from its previous walk records, allocation
    for allocation, the stacks libunwind finds."""
    cached = stack_multiset([program(name)], tmp_path, "cached", depth)
    general = stack_multiset([program(name)], tmp_path, "libunwind", depth)
    assert cached == general
    assert max(len(s) for s in cached) == depth
    assert sum(cached.values()) > 10 * 300


@pytest.mark.parametrize("depth", [64, 9])
def test_stacks_coming_back_to_the_same_places_are_walked_as_libunwind_walks_them(depth: int,
                                                                                 tmp_path: Path) -> None:
    """Allocations that return to the same places with others in between
    (where the walker answers from the walk it kept for the place a capture
    starts at), among them one place reached through twin callers whose
    frames are identical, at one and at two levels further out, and one
    below an alloca frame: allocation for allocation, the stacks libunwind
    finds, and each twin's allocations under its own caller."""
    cached = stack_multiset([program("slots")], tmp_path, "cached", depth)
    general = stack_multiset([program("slots")], tmp_path, "libunwind", depth)
    assert cached == general
    assert sum(cached.values()) >= 4 * 400 * 10
    assert max(len(s) for s in cached) == depth if depth == 9 else max(len(s) for s in cached) > 15


def test_table_gives_each_stack_its_own_frames() -> None:
    """The stack table alone: stacks sharing their outer frames with stacks
    interned before them, at every length, and near misses (one frame
    different, one more or fewer), interned twice: every id has exactly
    the frames of the stack it was given for."""
    proc = subprocess.run([program("table")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_stacks_one_return_address_apart_are_told_apart(capsys: pytest.CaptureFixture[str]) -> None:
    """Each allocation's stack differs from the one before in a single
    return address (two callers with identical frames, a recursion one
    level deeper or shallower): every stack is counted on its own."""
    rows = own_rows(run_rows("memo", "stack", 64, capsys), "memo.c")
    leaf = rf"leaf \({re.escape(str(HERE / 'memo.c'))}:{marker_line('memo.c', 'LEAK-LEAF')}\) < "
    got: dict[str, tuple[int, int]] = {}
    for key, counts in rows.items():
        assert re.match(leaf, key), key
        callers = [frame.split(" (")[0] for frame in key.split(" < ")[1:]]
        name = callers[0] if callers[0] != "down" else f"down{callers.count('down')}"
        assert name not in got, (name, list(rows))
        assert "main" in callers, key
        got[name] = counts
    assert got == own_counts("memo")


def test_threads_and_signal_handlers_get_whole_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_rows("threads_signals", "stack", 64, capsys)
    src = re.escape(str(HERE / "threads_signals.c"))
    thread = marker_line("threads_signals.c", "LEAK-THREAD")
    signal = marker_line("threads_signals.c", "LEAK-SIGNAL")
    mine = {k: r for k, r in rows.items() if re.match(rf"worker_leak \({src}:{thread}\) < worker ", k)}
    assert sum(int(r["blocks"]) for r in mine.values()) == 100  # type: ignore[call-overload]
    assert sum(int(r["bytes"]) for r in mine.values()) == 4000  # type: ignore[call-overload]
    # the handler's stack goes on through the signal frame into the interrupted main
    (key,) = [k for k in rows if re.match(rf"on_alarm \({src}:{signal}\) < ", k)]
    assert "< main (" in key and int(rows[key]["bytes"]) == 56  # type: ignore[call-overload]


def test_unloaded_and_reloaded_code_is_walked_with_its_own_rules(tmp_path: Path) -> None:
    env = dict(os.environ, LD_PRELOAD=preload.library_path(), RINGPOOL_PRELOAD_STACK_DEPTH="64",
               RINGPOOL_PRELOAD_REPORT=str(tmp_path / "r.json"))
    proc = subprocess.run([program("dlcycle"), str(BIN)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = preload.load(str(tmp_path / "r.json"))
    leaks = {11: [0, 0], 22: [0, 0]}
    for site in report.sites:
        if not site.blocks or site.bytes // site.blocks not in leaks:
            continue
        modules = [os.path.basename(m) for m, _ in site.frames()]
        # inner and plugin_leak in the (unloaded) plugin, then load_and_leak
        # and main: reached only if the plugin's frames were read right
        assert modules[2:4] == ["dlcycle", "dlcycle"], modules
        leaks[site.bytes // site.blocks][0] += site.blocks
        leaks[site.bytes // site.blocks][1] += site.bytes
    assert leaks == {11: [50, 550], 22: [50, 1100]}


@pytest.mark.parametrize("path", ["/usr/bin/git", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                                  "/usr/lib/gcc/x86_64-linux-gnu/12/cc1", "/usr/bin/python3"])
def test_function_extents_from_the_unwind_table_agree_with_readelf(path: str) -> None:
    """The symbolizer reads .eh_frame's function extents through .eh_frame_hdr's
    search table (fast on large programs); readelf walks .eh_frame itself."""
    from audit import elfsym
    if not os.path.isfile(path) or not shutil.which("readelf"):
        pytest.skip(f"{path} or readelf missing")
    out = subprocess.run(["readelf", "--debug-dump=frames", path], capture_output=True, text=True).stdout
    expected = sorted({(int(a, 16), int(b, 16))
                       for a, b in re.findall(r"FDE cie=\w+ pc=([0-9a-f]+)\.\.([0-9a-f]+)", out)
                       if int(b, 16) > int(a, 16)})
    assert sorted(set(elfsym.ElfFile.open(os.path.realpath(path)).fde_ranges())) == expected
