"""``run --python`` is transparent: a program run under it behaves as under the plain
interpreter (exit status, stdout, stderr, what it sees of itself), apart from the report.

Each case runs the same command twice, ``python WORDS`` and ``python -m audit run --python
--output FILE -- python WORDS``, and compares the two: the table goes to FILE, so the tool's
stdout is the program's and its stderr the program's followed by the summary line."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
import zipapp
from pathlib import Path
from typing import Callable

import pytest

from _signals_testlib import CTRL_C, TERM, WAIT, interrupted

Script = Callable[[str, str], Path]

SUMMARY = re.compile(r".* (exited with status \d+|killed by \w+); .*(report|Python report)")


class Pair:
    """The plain run and the tool's run of one command."""

    def __init__(self, plain: subprocess.CompletedProcess[bytes],
                 tool: subprocess.CompletedProcess[bytes]) -> None:
        self.plain = plain
        self.tool = tool
        lines = tool.stderr.decode("utf-8", "replace").splitlines(keepends=True)
        assert lines and SUMMARY.match(lines[-1]), tool.stderr.decode("utf-8", "replace")
        self.summary = lines[-1]
        self.tool_err = "".join(lines[:-1])
        self.plain_err = plain.stderr.decode("utf-8", "replace")

    @property
    def plain_status(self) -> int:
        """The plain run's status as a shell (and the tool) gives it: 128+N for signal N."""
        code = self.plain.returncode
        return 128 - code if code < 0 else code

    def assert_same(self, stderr: bool = True) -> None:
        assert self.tool.returncode == self.plain_status, (self.plain.returncode, self.tool.returncode,
                                                           self.plain_err, self.tool_err)
        assert self.tool.stdout == self.plain.stdout
        if stderr:
            assert self.tool_err == self.plain_err


_count = [0]


def both(words: list[str], cwd: Path, stdin: bytes | None = None,
         env: dict[str, str] | None = None) -> Pair:
    _count[0] += 1
    table = cwd / f"table-{_count[0]}.txt"
    full = dict(os.environ)
    full.update(env or {})

    def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, input=stdin if stdin is not None else b"", capture_output=True,
                              cwd=cwd, env=full, timeout=180, check=False)

    plain = run([sys.executable, *words])
    tool = run([sys.executable, "-m", "audit", "run", "--python", "--output", str(table), "--",
                sys.executable, *words])
    return Pair(plain, tool)


def _sanitized(pair: Pair) -> bool:
    """A sanitizer suite (ASan, TSan preloaded): its fatal-signal reports hold pids and addresses."""
    return "Sanitizer" in pair.plain_err


@pytest.mark.parametrize("source, status", [
    ("import sys; sys.exit(3)", 3),
    ("import sys; sys.exit('message')", 1),
    ("import sys; sys.exit(None)", 0),
    ("raise SystemExit(300)", 300 & 0xFF),
    ("import os; os._exit(7)", 7),
    ("print('bye')", 0),
])
def test_exit_status_and_stderr(script: Script, tmp_path: Path, source: str, status: int) -> None:
    script("ends.py", source + "\n")
    pair = both(["ends.py"], tmp_path)
    pair.assert_same()
    assert pair.tool.returncode == status


def test_an_uncaught_exception_prints_the_programs_traceback(script: Script, tmp_path: Path) -> None:
    # The traceback is the one `python app.py` prints: the program's frames only (not the
    # launcher's), the script named by its absolute path (as CPython names it since 3.9).
    script("boom.py", """
        import helper

        def outer():
            helper.inner()

        outer()
    """)
    script("helper.py", "def inner():\n    raise ValueError('boom')\n")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(tmp_path)) if p)}
    pair = both(["boom.py"], tmp_path, env=env)
    pair.assert_same()
    assert pair.tool.returncode == 1
    assert f'File "{tmp_path}/boom.py", line 6, in <module>' in pair.tool_err
    assert "_pyboot" not in pair.tool_err and "_pystart" not in pair.tool_err
    for words in (["-c", "import helper; helper.inner()"], ["-m", "helper_main"], ["-"]):
        script("helper_main.py", "import helper\nhelper.inner()\n")
        pair = both(words, tmp_path, stdin=b"import helper\nhelper.inner()\n", env=env)
        pair.assert_same()
        assert "_pyboot" not in pair.tool_err, words


def test_a_custom_excepthook_gets_the_programs_traceback(script: Script, tmp_path: Path) -> None:
    script("hook.py", """
        import sys, traceback
        def hook(kind, value, tb):
            print("hook:", [f.name for f in traceback.extract_tb(tb)], kind.__name__)
        sys.excepthook = hook
        def f():
            raise KeyError(1)
        f()
    """)
    pair = both(["hook.py"], tmp_path)
    pair.assert_same()
    assert pair.tool.stdout == b"hook: ['<module>', 'f'] KeyError\n"


def test_keyboard_interrupt_ends_by_sigint(script: Script, tmp_path: Path) -> None:
    script("kbi.py", "def wait():\n    raise KeyboardInterrupt\nwait()\n")
    pair = both(["kbi.py"], tmp_path)
    pair.assert_same()
    assert pair.plain.returncode == -signal.SIGINT and pair.tool.returncode == 130
    assert "killed by SIGINT" in pair.summary
    # the report is rewritten after finalization all the same (CPython's SIGINT comes after it)
    assert "; finalization left " in pair.summary, pair.summary


@pytest.mark.parametrize("source, sig", [
    ("import ctypes; ctypes.string_at(0)", signal.SIGSEGV),
    ("import os; os.abort()", signal.SIGABRT),
    ("import os, signal, time; os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)", signal.SIGTERM),
])
def test_fatal_signals(script: Script, tmp_path: Path, source: str, sig: int) -> None:
    script("dies.py", source + "\n")
    pair = both(["dies.py"], tmp_path)
    if _sanitized(pair):
        pytest.skip("the sanitizer's own report of the signal holds pids and addresses")
    pair.assert_same()
    assert pair.plain.returncode == -sig and pair.tool.returncode == 128 + sig
    assert f"killed by {signal.Signals(sig).name}" in pair.summary


def test_broken_pipe_on_stdout(script: Script, tmp_path: Path) -> None:
    script("many.py", "for i in range(200000):\n    print(i)\n")
    table = tmp_path / "pipe-table.txt"
    results = []
    for prefix in ("", f"{sys.executable} -m audit run --python --output {table} -- "):
        proc = subprocess.run(["bash", "-c", f"{prefix}{sys.executable} many.py | head -1; "
                               "echo status ${PIPESTATUS[0]} >&2"], capture_output=True, cwd=tmp_path,
                              timeout=180, check=False)
        err = proc.stderr.decode()
        results.append((proc.stdout, [line for line in err.splitlines() if not SUMMARY.match(line)]))
    assert results[0] == results[1], results
    assert results[0][0] == b"0\n" and "BrokenPipeError: [Errno 32] Broken pipe" in results[0][1]


def test_output_before_the_traceback(script: Script, tmp_path: Path) -> None:
    # CPython flushes stdout after the file ran and before it prints the exception: into one
    # pipe, the program's output comes first.
    script("order.py", "print('first')\nraise RuntimeError('then')\n")
    table = tmp_path / "order-table.txt"
    outs = []
    for prefix in ([], ["-m", "audit", "run", "--python", "--output", str(table), "--", sys.executable]):
        proc = subprocess.run([sys.executable, *prefix, "order.py"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, cwd=tmp_path, timeout=180, check=False)
        outs.append([line for line in proc.stdout.decode().splitlines() if not SUMMARY.match(line)])
    assert outs[0] == outs[1]
    assert outs[0][0] == "first"


PROBE_MAIN = """
    \"""the doc\"""
    import os, sys
    main = sys.modules["__main__"]
    def show(v):
        return type(v).__name__ if v is not None and not isinstance(v, (str, dict, list, bool)) else v
    print(list(vars(main)))
    for name in ("__name__", "__doc__", "__file__", "__package__", "__loader__", "__spec__",
                 "__cached__", "__annotations__"):
        print(name, show(getattr(main, name, "<missing>")))
    print("spec", getattr(__spec__, "name", None), getattr(__spec__, "origin", None))
    print("builtins", __builtins__ is __import__("builtins"), main is sys.modules[__name__])
    print("argv", sys.argv)
    print("path0", sys.path[0])
    print("code", sys._getframe().f_code.co_filename)
    print("cache", sys.path_importer_cache.get(os.path.abspath(sys.argv[0]), "<none>") is None)
    print("io", sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering,
          sys.stdout.write_through, sys.stdin.isatty(), sys.stdout.isatty())
    if __name__ == "__main__":
        print("guarded")
"""


def test_main_module_of_a_script(script: Script, tmp_path: Path) -> None:
    script("probe.py", PROBE_MAIN)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.py").symlink_to(tmp_path / "probe.py")
    for words in (["probe.py", "a"], ["./sub/../probe.py"], ["sub/link.py"], [str(tmp_path / "probe.py")],
                  ["-u", "probe.py"], ["-X", "utf8", "probe.py"]):
        pair = both(words, tmp_path)
        pair.assert_same()
        assert b"guarded" in pair.tool.stdout
    pair = both(["probe.py"], tmp_path, env={"PYTHONIOENCODING": "latin-1:backslashreplace"})
    pair.assert_same()
    assert b"io iso8859-1 backslashreplace" in pair.tool.stdout


def test_main_module_of_code_and_stdin(script: Script, tmp_path: Path) -> None:
    source = textwrap.dedent(PROBE_MAIN).lstrip().encode()
    pair = both(["-", "x"], tmp_path, stdin=source)
    pair.assert_same()
    pair = both(["-c", source.decode(), "y"], tmp_path)
    pair.assert_same()
    # the program reads the rest of stdin
    pair = both(["-c", "import sys; print(sys.stdin.read().upper())"], tmp_path, stdin=b"data\n")
    pair.assert_same()
    assert pair.tool.stdout == b"DATA\n\n"


def test_main_module_of_a_package_a_directory_and_a_zipapp(script: Script, tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    script("pkg/__init__.py", "import sys\nprint('importing pkg', sys.argv)\n")
    script("pkg/__main__.py", PROBE_MAIN)
    (tmp_path / "app").mkdir()
    script("app/__main__.py", PROBE_MAIN)
    zipapp.create_archive(tmp_path / "app", tmp_path / "app.pyz")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(tmp_path)) if p)}
    for words in (["-m", "pkg", "a"], ["app", "b"], ["app.pyz", "c"], [str(tmp_path / "app.pyz")],
                  ["-P", "app"]):
        pair = both(words, tmp_path, env=env)
        pair.assert_same()
        assert b"guarded" in pair.tool.stdout, words
    (tmp_path / "empty").mkdir()
    pair = both(["empty"], tmp_path)
    pair.assert_same()
    assert pair.tool.returncode == 1 and "can't find '__main__' module" in pair.tool_err


def test_a_compiled_script(script: Script, tmp_path: Path) -> None:
    import py_compile

    s = script("comp.py", "import sys\nprint('compiled', __file__ is not None, sys.argv)\n")
    py_compile.compile(str(s), cfile=str(tmp_path / "comp.pyc"))
    pair = both(["comp.pyc", "z"], tmp_path)
    pair.assert_same()
    assert pair.tool.stdout == b"compiled True ['comp.pyc', 'z']\n"


def test_pickle_inspect_warnings_atexit_and_threads(script: Script, tmp_path: Path) -> None:
    script("misc.py", """
        import atexit, inspect, pickle, sys, threading, time, warnings

        def main():
            return 1

        class Point:
            pass

        print(inspect.getsource(main), end="")
        print(type(pickle.loads(pickle.dumps(Point()))).__module__)
        warnings.warn("plain")
        warnings.filterwarnings("error", module="__main__", message="strict")
        try:
            warnings.warn("strict")
        except UserWarning as exc:
            print("as error:", exc)
        warnings.warn("hidden", DeprecationWarning)
        atexit.register(lambda: print("first registered, last run", flush=True))
        atexit.register(lambda: print("at exit: __file__ in globals:", "__file__" in globals(),
                                      flush=True))

        def slow():
            time.sleep(0.3)
            print("non-daemon thread joined before the atexit callbacks", flush=True)

        threading.Thread(target=slow).start()
        threading.Thread(target=lambda: (time.sleep(60), print("never")), daemon=True).start()
        print("main done", flush=True)
    """)
    pair = both(["misc.py"], tmp_path)
    pair.assert_same()
    assert b"at exit: __file__ in globals: False" in pair.tool.stdout
    assert f"{tmp_path}/misc.py:11: UserWarning: plain" in pair.tool_err
    pair = both(["-W", "error::DeprecationWarning", "misc.py"], tmp_path)
    pair.assert_same()
    assert pair.tool.returncode == 1


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_children_import_main(script: Script, tmp_path: Path, method: str) -> None:
    script("mp.py", f"""
        import multiprocessing, sys

        def double(x):
            return x * 2

        class Box:
            def __init__(self, v):
                self.v = v

        def unbox(b):
            return (b.v, type(b).__module__, __name__)

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("{method}")
            with ctx.Pool(2) as pool:
                print(pool.map(double, [1, 2, 3]))
                print(pool.map(unbox, [Box(1)]))
            print("done")
    """)
    pair = both(["mp.py"], tmp_path)
    pair.assert_same()
    assert pair.tool.stdout == b"[2, 4, 6]\n[(1, '__mp_main__', '__mp_main__')]\ndone\n"


def test_a_terminal_is_a_terminal(script: Script, tmp_path: Path) -> None:
    script("tty.py", """
        import sys
        with open(sys.argv[1], "w") as fh:
            print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty(),
                  sys.stdout.line_buffering, sys.stdout.encoding, file=fh)
    """)
    seen = []
    for n, prefix in enumerate(([], ["-m", "audit", "run", "--python", "--output",
                                     str(tmp_path / "tty-table.txt"), "--", sys.executable])):
        master, slave = pty.openpty()
        try:
            subprocess.run([sys.executable, *prefix, "tty.py", f"seen{n}"], stdin=slave, stdout=slave,
                           stderr=slave, cwd=tmp_path, timeout=180, check=True)
        finally:
            os.close(slave)
            os.close(master)
        seen.append((tmp_path / f"seen{n}").read_text())
    assert seen[0] == seen[1]
    assert seen[0].startswith("True True True")


def test_tracemalloc_started_before_the_hooks_is_not_called_a_leak(script: Script, tmp_path: Path) -> None:
    # -X tracemalloc starts tracemalloc before the hooks; its stop in Py_FinalizeEx puts back
    # the allocators it found, which takes the hooks out: what finalization frees after that
    # was counted as left (about ten blocks).  The report now says which domains were taken
    # out, and the CLI does not call those blocks left.
    script("tm.py", "import sys\nKEEP = [bytearray(100)]\n")
    out = tmp_path / "tm-table.json"
    report_dir = tmp_path / "reports"
    for options, started in (([], False), (["-X", "tracemalloc"], True), (["-X", "tracemalloc=5"], True)):
        for f in [out, *report_dir.glob("*")]:
            f.unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, "-m", "audit", "run", "--python", "--report-dir",
                               str(report_dir), "--output", str(out), "--format", "json", "--",
                               sys.executable, *options, "tm.py"], capture_output=True, text=True,
                              cwd=tmp_path, timeout=180, check=False)
        assert proc.returncode == 0, proc.stderr
        (report,) = report_dir.glob("python.*.json")
        after = json.loads(report.read_text())["after_finalization"]
        meta = json.loads(out.read_text())
        if started:
            assert after["unhooked"] == ["raw", "mem", "obj"], after.keys()
            assert meta["after_finalization_unhooked"] == ["raw", "mem", "obj"]
            assert "finalization not measured (raw/mem/obj taken out of the hooks)" in proc.stderr
        else:
            assert "unhooked" not in after and "after_finalization_unhooked" not in meta
            assert "finalization left 0 blocks" in proc.stderr, proc.stderr
    # the table: one line instead of the blocks
    proc = subprocess.run([sys.executable, "-m", "audit", "run", "--python", "--", sys.executable,
                           "-X", "tracemalloc", "tm.py"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert ("left by finalization: not measured: the raw/mem/obj allocators were taken out of the "
            "hooks during finalization") in proc.stderr
    assert "left by finalization, by line" not in proc.stderr
    # tracemalloc started by the program runs above the hooks: its stop puts them back
    script("tm2.py", "import tracemalloc\ntracemalloc.start()\nKEEP = [bytearray(100)]\n")
    proc = subprocess.run([sys.executable, "-m", "audit", "run", "--python", "--", sys.executable,
                           "tm2.py"], capture_output=True, text=True, cwd=tmp_path, timeout=180,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "not measured" not in proc.stderr and "; finalization left " in proc.stderr, proc.stderr


def _interrupted(argv: list[str], cwd: Path, sig: int, group: bool) -> tuple[int, bytes]:
    """The status and stdout of argv signalled once it is ready (_signals_testlib)."""
    return interrupted(argv, cwd, sig, group)[:2]


def test_ctrl_c_reaches_the_program_which_ends_as_it_likes(script: Script, tmp_path: Path) -> None:
    # Ctrl-C: the CLI ended its wait with KeyboardInterrupt and killed the program 0.25 s
    # later, in the middle of the program's own handling of it.
    script("ctrlc.py", CTRL_C)
    table = tmp_path / "ctrlc-table.txt"
    plain = _interrupted([sys.executable, "ctrlc.py"], tmp_path, signal.SIGINT, True)
    tool = _interrupted([sys.executable, "-m", "audit", "run", "--python", "--output", str(table), "--",
                         sys.executable, "ctrlc.py"], tmp_path, signal.SIGINT, True)
    assert plain == (0, b"ready\ncaught\ncleaned up\n")
    assert tool == plain
    assert table.exists()
    # not caught: the program ends by SIGINT, and the CLI says so with status 130
    script("plain_wait.py", WAIT)
    plain = _interrupted([sys.executable, "plain_wait.py"], tmp_path, signal.SIGINT, True)
    tool = _interrupted([sys.executable, "-m", "audit", "run", "--python", "--output",
                         str(tmp_path / "t2.txt"), "--", sys.executable, "plain_wait.py"], tmp_path,
                        signal.SIGINT, True)
    assert plain[0] == -signal.SIGINT and tool == (130, plain[1])


def test_sigterm_sent_to_the_cli_reaches_the_program(script: Script, tmp_path: Path) -> None:
    # `kill PID` of the CLI ended the CLI alone and left the program running.
    script("term.py", TERM)
    plain = _interrupted([sys.executable, "term.py"], tmp_path, signal.SIGTERM, False)
    tool = _interrupted([sys.executable, "-m", "audit", "run", "--python", "--output",
                         str(tmp_path / "term-table.txt"), "--", sys.executable, "term.py"], tmp_path,
                        signal.SIGTERM, False)
    assert plain == (5, b"ready\nterminated\n")
    assert tool == plain
