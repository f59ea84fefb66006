"""allocator._pyhooks through its Python interface, each case in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import line_of, load, run_python

Script = Callable[[str, str], Path]


def test_allocations_are_counted_at_the_line_that_made_them(script: Script, tmp_path: Path) -> None:
    s = script("alloc.py", """
        from allocator import _pyhooks
        _pyhooks.start()
        keep = [bytearray(1000) for _ in range(50)]   # ALLOC
        rows = {f[0]: (b, n) for (f, b, n, _p, _a) in _pyhooks.sites() if f}
        print(rows[(__file__, 3, "<listcomp>")][0] >= 50)
        print(sum(n for (b, n) in rows.values()) >= 50 * 1000)
        _pyhooks.stop()
        print(_pyhooks.is_tracing(), _pyhooks.totals())
    """)
    assert line_of(s, "# ALLOC") == 3
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["True", "True", "False (0, 0, 0, 0, 0)"]


def test_freed_blocks_leave_the_counts(script: Script) -> None:
    s = script("free.py", """
        from allocator import _pyhooks
        _pyhooks.start()
        before = _pyhooks.totals()
        junk = [bytearray(4096) for _ in range(100)]
        mid = _pyhooks.totals()
        del junk
        after = _pyhooks.totals()
        print(mid[1] - before[1] >= 409600, after[1] - before[1] < 4096, after[2] >= mid[1])
    """)
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True True True"


def test_bad_depth_and_double_start_are_refused(script: Script) -> None:
    s = script("bad.py", """
        from allocator import _pyhooks
        for d in (0, -1, _pyhooks.MAX_DEPTH + 1):
            try:
                _pyhooks.start(depth=d)
            except ValueError as e:
                print("ValueError", e)
        _pyhooks.start(depth=2)
        try:
            _pyhooks.start()
        except RuntimeError as e:
            print("RuntimeError", e)
        _pyhooks.stop()
        _pyhooks.stop()     # a second stop does nothing
        try:
            _pyhooks.write_report("x.json")
        except RuntimeError as e:
            print("RuntimeError", e)
        try:
            _pyhooks.since(b"abc")
        except TypeError as e:
            print("TypeError", e)
    """)
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "ValueError depth must be between 1 and 64, not 0"
    assert lines[2] == "ValueError depth must be between 1 and 64, not 65"
    assert lines[3] == "RuntimeError the Python allocator hooks are already running"
    assert lines[4] == "RuntimeError the Python allocator hooks are not running"
    assert lines[5].startswith("TypeError since() takes a value returned by mark()")


def test_stop_refuses_when_another_hook_was_installed_on_top(script: Script) -> None:
    s = script("stack.py", """
        import tracemalloc
        from allocator import _pyhooks
        _pyhooks.start()
        tracemalloc.start()
        try:
            _pyhooks.stop()
        except RuntimeError as e:
            print(e)
        tracemalloc.stop()
        _pyhooks.stop()
        print(_pyhooks.is_tracing())
    """)
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    assert "another allocator hook (tracemalloc?) was installed" in r.stdout
    assert r.stdout.splitlines()[-1] == "False"


def test_depth_keeps_the_calling_frames(script: Script) -> None:
    s = script("deep.py", """
        from allocator import _pyhooks
        def inner():
            return bytearray(10000)
        def outer():
            return inner()
        _pyhooks.start(depth=3)
        keep = outer()
        for frames, blocks, nbytes, _p, _a in _pyhooks.sites():
            if frames and frames[0][2] == "inner":
                print([(f[1], f[2]) for f in frames], nbytes >= 10000)
    """)
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    want = [(line_of(s, "return bytearray"), "inner"), (line_of(s, "return inner()"), "outer"),
            (line_of(s, "keep = outer()"), "<module>")]
    assert r.stdout.strip() == f"{want} True"


@pytest.mark.threads
def test_threads_allocating_at_once_are_counted_exactly(script: Script) -> None:
    s = script("threads.py", """
        import threading
        from allocator import _pyhooks
        _pyhooks.start()
        keep = []
        lock = threading.Lock()
        def work():
            mine = [bytearray(1000) for _ in range(2000)]   # PER THREAD
            junk = [bytes(300) for _ in range(2000)]
            del junk
            with lock:
                keep.append(mine)
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()
        for frames, blocks, nbytes, _p, _a in _pyhooks.sites():
            if frames and frames[0][1] == 7 and frames[0][2] == "work.<locals>.<listcomp>":
                # each bytearray: its object and its 1001-byte buffer
                print(blocks >= 4 * 2000 * 2, nbytes >= 4 * 2000 * 1001)
        _pyhooks.stop()
    """)
    assert line_of(s, "# PER THREAD") == 7
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True True"


def test_fork_child_writes_its_own_report(script: Script, tmp_path: Path) -> None:
    s = script("forky.py", """
        import os, sys
        from allocator import _pyhooks
        _pyhooks.start()
        parent_data = [bytearray(2000) for _ in range(10)]
        pid = os.fork()
        if pid == 0:
            child_data = [bytearray(3000) for _ in range(7)]   # CHILD
            _pyhooks.write_report(sys.argv[1])
            os._exit(0)
        os.waitpid(pid, 0)
        _pyhooks.write_report(sys.argv[1])
        print(pid)
    """)
    pattern = str(tmp_path / "r.%p.json")
    r = run_python(str(s), pattern)
    assert r.returncode == 0, r.stderr
    child = int(r.stdout.strip())
    doc = load(tmp_path / f"r.{child}.json")
    assert doc["pid"] == child
    lines = {(site["frames"][0]["line"], site["frames"][0]["function"]): site["bytes"]
             for site in doc["sites"] if site["frames"]}
    assert lines[(7, "<listcomp>")] >= 7 * 3000
    assert lines[(4, "<listcomp>")] >= 10 * 2000      # inherited from the parent
    parent = [p for p in tmp_path.glob("r.*.json") if p.name != f"r.{child}.json"]
    assert len(parent) == 1
    assert all(site["frames"][0]["line"] != 7 for site in load(parent[0])["sites"] if site["frames"])


SUBINTERPRETER = r"""
import sys
import importlib.util
import _xxsubinterpreters as interpreters
origin = importlib.util.find_spec("allocator._pyhooks").origin
if sys.argv[1] == "imported":
    import allocator._pyhooks
code = (
    "import importlib.util\n"
    f"spec = importlib.util.spec_from_file_location('allocator._pyhooks', {origin!r})\n"
    "m = importlib.util.module_from_spec(spec)\n"
    "m.start()\n"
)
try:
    interpreters.run_string(interpreters.create(), code)
except Exception as e:
    print(type(e).__name__, e)
"""


def test_subinterpreters_are_refused_clearly(script: Script) -> None:
    s = script("sub.py", SUBINTERPRETER)
    # first loaded by a subinterpreter: the import fails
    r = run_python(str(s), "fresh")
    assert r.returncode == 0, r.stderr
    assert "ImportError" in r.stdout and "subinterpreters are not supported" in r.stdout
    # already loaded by the main interpreter: the subinterpreter's copy refuses to start
    r = run_python(str(s), "imported")
    assert r.returncode == 0, r.stderr
    assert "RuntimeError" in r.stdout and "subinterpreters are not supported" in r.stdout


def test_report_is_written_before_exec(script: Script, tmp_path: Path) -> None:
    s = script("execer.py", """
        import os, sys
        keep = [bytearray(5000) for _ in range(3)]   # BEFORE EXEC
        os.execv(sys.executable, [sys.executable, "-c", "print('replaced')"])
    """)
    pattern = str(tmp_path / "python.%p.json")
    r = run_python("-m", "audit._pyboot", str(s), env={"RINGPOOL_PYTHON_REPORT": pattern})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "replaced"
    [path] = list(tmp_path.glob("python.*.json"))
    doc = load(path)
    assert doc["reason"] == "exec"
    assert any(site["frames"] and site["frames"][0]["line"] == 2 and site["bytes"] >= 15000
               for site in doc["sites"])


def test_exit_report_has_a_finalization_section(script: Script, tmp_path: Path) -> None:
    s = script("fin.py", """
        import json
        data = bytes(range(256)) * 20   # KEPT
    """)
    pattern = str(tmp_path / "python.%p.json")
    r = run_python("-m", "audit._pyboot", str(s), env={"RINGPOOL_PYTHON_REPORT": pattern})
    assert r.returncode == 0, r.stderr
    [path] = list(tmp_path.glob("python.*.json"))
    doc = load(path)
    assert doc["format"] == "ringpool-python" and doc["reason"] == "exit"
    assert doc["program"] == str(s)
    kept = [site for site in doc["sites"] if site["frames"] and site["frames"][0]["line"] == 2]
    assert kept and kept[0]["bytes"] >= 256 * 20
    after = doc["after_finalization"]
    assert after["totals"]["bytes"] < doc["totals"]["bytes"]
    # the module's globals are cleared by finalization: the string is gone
    assert not [site for site in after["sites"] if site["frames"]
                and site["frames"][0]["file"] == str(s) and site["frames"][0]["line"] == 2]
    json.dumps(doc)


def test_boot_errors_are_one_line(script: Script, tmp_path: Path) -> None:
    r = run_python("-m", "audit._pyboot", "x.py")
    assert r.returncode == 1 and "RINGPOOL_PYTHON_REPORT is not set" in r.stderr
    env = {"RINGPOOL_PYTHON_REPORT": str(tmp_path / "p.json")}
    r = run_python("-m", "audit._pyboot", str(tmp_path / "missing.py"), env=env)
    assert r.returncode == 1 and "missing.py: no such file" in r.stderr
    r = run_python("-m", "audit._pyboot", "-m", env=env)
    assert r.returncode == 1 and "usage:" in r.stderr
    r = run_python("-m", "audit._pyboot", "-c", "pass", env={**env, "RINGPOOL_PYTHON_DEPTH": "x"})
    assert r.returncode == 1 and "must be an integer" in r.stderr
    r = run_python("-m", "audit._pyboot", "-c", "pass", env={**env, "RINGPOOL_PYTHON_DEPTH": "0"})
    assert r.returncode == 1 and "depth must be between 1 and 64" in r.stderr
    r = run_python("-m", "audit._pyboot", "-c", "pass",
                   env={"RINGPOOL_PYTHON_REPORT": str(tmp_path / "nodir" / "p.json")})
    assert "cannot write the report" in r.stderr and "nodir" in r.stderr


def test_report_paths_that_are_not_utf8(script: Script, tmp_path: Path) -> None:
    # write_report and exit_report took the path as UTF-8 text: a path Python decoded with
    # surrogateescape (a directory named in Latin-1) raised UnicodeEncodeError, and the run
    # wrote no report. They take paths as os.fsencode does: str, bytes, os.PathLike.
    s = script("bytes_paths.py", """
        import os, sys
        from pathlib import Path
        from allocator import _pyhooks
        d = os.fsencode(sys.argv[1]) + b"/caf\\xe9\\xff"
        os.mkdir(d)
        _pyhooks.start()
        keep = bytearray(54321)
        _pyhooks.write_report(d + b"/b.json")
        _pyhooks.write_report(os.fsdecode(d + b"/s.json"))
        _pyhooks.write_report(path=Path(os.fsdecode(d + b"/p.json")), reason="x")
        try:
            _pyhooks.write_report(d + b"/nodir\\xfe/r.json")
        except OSError as e:
            print(type(e).__name__, os.fsencode(e.filename) == d + b"/nodir\\xfe/r.json")
        for bad in (b"a\\0b", 3):
            try:
                _pyhooks.write_report(bad)
            except (ValueError, TypeError) as e:
                print(type(e).__name__)
        _pyhooks.exit_report(d + b"/e.json", "prog")
        print(sorted(os.listdir(d)))
    """)
    r = run_python(str(s), str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["FileNotFoundError True", "ValueError", "TypeError",
                                     "[b'b.json', b'e.json', b'p.json', b's.json']"]
    for name in ("b", "s", "p", "e"):
        doc = load(Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9\xff/" + name.encode() + b".json")))
        assert doc["totals"]["bytes"] >= 54321


def test_report_paths_follow_the_rule_of_every_report_writer(
        script: Script, tmp_path: Path) -> None:
    # The rule of csrc/outfile.h, as for the library's and the interposer's
    # reports: a link planted at the temporary name beside the report is never
    # followed; a link to a regular file and a directory at the report's path
    # are refused and left alone; a character device is written straight in,
    # and so is a FIFO, which without a reader is refused at once.
    s = script("paths.py", """
        import os, stat, sys
        from allocator import _pyhooks
        d = sys.argv[1]
        _pyhooks.start()
        for name in ("victim", "victim2"):
            with open(os.path.join(d, name), "w") as f:
                f.write("keep me\\n")
        os.symlink(os.path.join(d, "victim"), os.path.join(d, f".rp-{os.getpid()}-0.tmp"))
        _pyhooks.write_report(os.path.join(d, "r.json"))
        print("r.json", os.path.isfile(os.path.join(d, "r.json")))
        os.symlink(os.path.join(d, "victim2"), os.path.join(d, "link.json"))
        os.mkfifo(os.path.join(d, "fifo.json"))
        os.mkdir(os.path.join(d, "dir.json"))
        names = ["link.json", "fifo.json", "dir.json"]
        try:
            os.mknod(os.path.join(d, "null.json"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
            names.append("null.json")
        except PermissionError:
            pass
        for name in names:
            try:
                _pyhooks.write_report(os.path.join(d, name))
                print(name, "written")
            except OSError as e:
                print(name, type(e).__name__, e.strerror, e.filename == os.path.join(d, name))
        _pyhooks.write_report("/dev/null")
        print("/dev/null written")
        _pyhooks.stop()
    """)
    r = run_python(str(s), str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "r.json True"
    assert lines[1] == ("link.json FileExistsError it is a symbolic link to a regular file (not "
                        "followed: only a link to a character device or FIFO is); name the file "
                        "itself True")
    assert lines[2] == "fifo.json OSError it is a FIFO with no reader (not waited for) True"
    assert lines[3] == "dir.json IsADirectoryError it is a directory True"
    assert lines[4:] in (["null.json written", "/dev/null written"], ["/dev/null written"])
    for name in ("victim", "victim2"):
        assert (tmp_path / name).read_text() == "keep me\n"
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "fifo.json").is_fifo()
    if len(lines) > 5:
        assert (tmp_path / "null.json").is_char_device()
    assert load(tmp_path / "r.json")["format"] == "ringpool-python"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name and not p.is_symlink()]


def test_a_program_that_stops_the_hooks_gets_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {"RINGPOOL_PYTHON_REPORT": str(tmp_path / "p.%p.json")}
    r = run_python("-m", "audit._pyboot", "-c", "from allocator import _pyhooks; _pyhooks.stop()",
                   env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == ("ringpool python hooks: the program stopped the hooks "
                        "(allocator._pyhooks.stop()); no report is written\n")
    assert not list(tmp_path.iterdir())


CODE_AT_AN_OLD_ADDRESS = """
    import sys
    from allocator import _pyhooks
    options = {"native": 16} if sys.argv[1] == "native" else {"depth": int(sys.argv[1])}
    _pyhooks.start(**options)
    keep = []
    for i in range(1000):
        k = i % 5
        # each code object dies after its call, and the next one is often made at its
        # address: the same file, function name, first line and instruction offsets,
        # but the allocating line moves down by k blank lines
        src = "def f():\\n" + "\\n" * k + "    return bytearray(%d)\\n" % (1000 * (k + 1))
        ns = {}
        exec(compile(src, sys.intern("gen.py"), "exec"), ns)
        keep.append(ns["f"]())
        del ns
    for frames, blocks, nbytes, _p, _a in _pyhooks.sites():
        if frames and frames[0][0] == "gen.py" and frames[0][2] == "f":
            print(frames[0][1], blocks, nbytes)
    _pyhooks.stop()
"""


def test_a_code_object_made_at_a_dead_ones_address_keeps_its_own_lines(script: Script) -> None:
    s = script("reuse.py", CODE_AT_AN_OLD_ADDRESS)
    for mode in ("1", "3", "native"):
        r = run_python(str(s), mode)
        assert r.returncode == 0, r.stderr
        rows: dict[int, list[int]] = {}
        for text in r.stdout.splitlines():      # with native stacks, a line has several sites
            line, blocks, nbytes = map(int, text.split())
            rows.setdefault(line, [0, 0])
            rows[line][0] += blocks
            rows[line][1] += nbytes
        # line L: 200 bytearrays of 1000 * (L - 1) bytes (a block of one more) and their
        # 56-byte objects, nothing from the other lines
        assert rows == {line: [400, 200 * (1000 * (line - 1) + 1 + 56)] for line in range(2, 7)}, \
            (mode, rows)


FILL_STDOUT = """
    import fcntl, os, sys
    # stdout (a pipe) made non-blocking and filled up: the report's first
    # write finds it full; "full" on stderr tells the reader it may start
    fcntl.fcntl(1, fcntl.F_SETPIPE_SZ, 4096)
    fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        while True:
            os.write(1, bytes(512))
    except BlockingIOError:
        pass
    os.write(2, b"full\\n")
    if sys.argv[1] == "request":
        from allocator import _pyhooks
        _pyhooks.start()
        keep = [str(i) * 50 for i in range(3000)]
        try:
            _pyhooks.write_report("/dev/stdout")
        except OSError as e:
            print("refused:", e, file=sys.stderr)
        _pyhooks.stop()
"""


@pytest.mark.parametrize("mode", ["request", "exit"])
def test_report_to_a_full_non_blocking_stdout(script: Script, mode: str) -> None:
    # The program made its stdout pipe non-blocking and filled it: the
    # report, on request and at exit (before and after finalization: two
    # documents), waits for the reader instead of stopping at EAGAIN.
    s = script("fill.py", FILL_STDOUT)
    env = dict(os.environ)
    if mode == "request":
        argv, want = [str(s), "request"], ["request"]
    else:
        argv, want = ["-m", "audit._pyboot", str(s), "exit"], ["exit", "exit"]
        env["RINGPOOL_PYTHON_REPORT"] = "/dev/stdout"
    proc = subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None and proc.stdout is not None
    assert proc.stderr.readline() == b"full\n"
    # a moment for the report's first write to find the pipe full (the
    # fixed code's outcome does not depend on it)
    time.sleep(0.3)
    out = proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert err == b""
    text = out.lstrip(b"\0").decode()
    docs: list[dict[str, object]] = []
    at = 0
    decoder = json.JSONDecoder()
    while at < len(text):
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
        while at < len(text) and text[at].isspace():
            at += 1
    assert [d["reason"] for d in docs] == want
    assert all(d["format"] == "ringpool-python" for d in docs)
    assert len(out) - len(out.lstrip(b"\0")) >= 4096     # the pipe was full before it


def test_a_report_that_cannot_be_written_whole_keeps_the_old_one(script: Script,
                                                                  tmp_path: Path) -> None:
    # past RLIMIT_FSIZE the write fails with EFBIG (SIGXFSZ blocked while
    # the report is written): one error naming the path, the temporary file
    # removed, the old report intact, the program alive
    s = script("fsize.py", """
        import resource, sys
        from allocator import _pyhooks
        _pyhooks.start()
        keep = [str(i) * 50 for i in range(3000)]
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, resource.RLIM_INFINITY))
        try:
            _pyhooks.write_report(sys.argv[1])
        except OSError as e:
            print(e.errno, e.strerror, e.filename == sys.argv[1])
        _pyhooks.stop()
    """)
    report = tmp_path / "r.json"
    report.write_text("old report\n")
    r = run_python(str(s), str(report))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "27 File too large True\n"
    assert report.read_text() == "old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fsize.py", "r.json"]
