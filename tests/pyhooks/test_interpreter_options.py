"""``run --python -- python [OPTIONS] SCRIPT``: the interpreter's own options reach it,
as CPython reads its command line, and the hooks still run and write the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import line_of, run_cli, run_cli_out

Script = Callable[[str, str], Path]

#: Writes what the interpreter made of its options to the file named by its first argument,
#: and leaks 50 buffers of 2000 bytes on the line marked LEAK.
PROBE = """
    \"""doc\"""
    import json, sys, warnings
    KEEP = [bytearray(2000) for _ in range(50)]   # LEAK
    try:
        warnings.warn("probe", UserWarning)
        warned = "no error"
    except UserWarning:
        warned = "error"
    try:
        assert False
        asserts = False
    except AssertionError:
        asserts = True
    flags = {name: getattr(sys.flags, name) for name in dir(sys.flags)
             if not name.startswith("_") and name not in ("count", "index")}
    with open(sys.argv[1], "w", encoding="utf-8") as fh:
        json.dump({"flags": flags, "warnoptions": sys.warnoptions, "xoptions": sys._xoptions,
                   "warned": warned, "asserts": asserts, "path": sys.path, "argv": sys.argv,
                   "doc": __doc__, "stdout_buffered": hasattr(sys.stdout, "buffer") and
                   sys.stdout.line_buffering}, fh)
"""


def _probe(script: Script, capsys: pytest.CaptureFixture[str], tmp_path: Path,
           options: list[str], interpreter: str = sys.executable) -> dict[str, Any]:
    s = script("probe.py", PROBE)
    seen = tmp_path / "seen.json"
    code, out, err = run_cli_out(["run", "--python", "--by", "line", "--format", "json", "--",
                                  interpreter, *options, str(s), str(seen)], capsys, tmp_path)
    assert code == 0, err
    assert "Traceback" not in err
    rows = {r["key"]: r for r in json.loads(out)["rows"]}
    key = f"{s}:{line_of(s, '# LEAK')} (<listcomp>)"
    assert key in rows, (options, sorted(rows)[:10])
    assert rows[key]["blocks"] >= 50 and 50 * 2000 <= rows[key]["bytes"] < 50 * 2200, rows[key]
    result: dict[str, Any] = json.loads(seen.read_text(encoding="utf-8"))
    return result


def _plain(script: Script, tmp_path: Path, options: list[str]) -> dict[str, Any]:
    """What the same interpreter makes of the same options without the tool."""
    s = script("probe.py", PROBE)
    seen = tmp_path / "plain.json"
    subprocess.run([sys.executable, *options, str(s), str(seen)], check=True, timeout=120,
                   capture_output=True)
    result: dict[str, Any] = json.loads(seen.read_text(encoding="utf-8"))
    return result


@pytest.mark.parametrize("options", [
    ["-X", "dev"], ["-Xdev"], ["-O"], ["-OO"], ["-OOu"], ["-I"], ["-E"], ["-P"], ["-s"], ["-S"],
    ["-B"], ["-b"], ["-bb"], ["-q"], ["-R"], ["-W", "error"], ["-Werror::UserWarning"],
    ["-X", "frozen_modules=off", "-X", "utf8"], ["--check-hash-based-pycs", "always"],
    ["-I", "-X", "dev", "-O"], ["-O", "--"],
])
def test_interpreter_options_take_effect(script: Script, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path, options: list[str]) -> None:
    seen = _probe(script, capsys, tmp_path, options)
    plain = _plain(script, tmp_path, options)
    for name in ("flags", "warnoptions", "xoptions", "warned", "asserts", "doc", "argv"):
        want = plain[name]
        if name == "argv":
            want = [str(tmp_path / "probe.py"), str(tmp_path / "seen.json")]
        assert seen[name] == want, (options, name, seen[name], want)
    # The launcher's own directory is not left on the program's sys.path.
    assert seen["path"] == plain["path"], (options, seen["path"], plain["path"])


def test_each_option_as_python_reads_it(script: Script, capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    seen = _probe(script, capsys, tmp_path, ["-X", "dev", "-I", "-OO", "-Wd", "-u"])
    assert seen["flags"]["dev_mode"] and seen["flags"]["isolated"] == 1
    assert seen["flags"]["ignore_environment"] and seen["flags"]["safe_path"]
    assert seen["flags"]["no_user_site"] and seen["flags"]["optimize"] == 2
    assert seen["xoptions"] == {"dev": True} and seen["warnoptions"] == ["default", "d"]
    assert seen["asserts"] is False and seen["doc"] is None
    seen = _probe(script, capsys, tmp_path, ["-W", "error"])
    assert seen["warned"] == "error" and seen["warnoptions"] == ["error"]


def test_isolated_modes_find_the_hooks_without_the_environment(
        script: Script, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # -E and -I ignore $PYTHONPATH, -S skips site-packages: the hooks are found all the same,
    # and $PYTHONPATH is ignored as the interpreter ignores it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(elsewhere))
    for options in (["-E"], ["-I"], ["-s", "-E"], ["-S", "-E"]):
        seen = _probe(script, capsys, tmp_path, options)
        assert str(elsewhere) not in seen["path"], options
    for options in ([], ["-S"], ["-s"]):
        seen = _probe(script, capsys, tmp_path, options)
        assert str(elsewhere) in seen["path"], options


def test_dev_mode_counts_as_the_default_allocator(script: Script, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    # -X dev installs the debug hooks of PYTHONMALLOC=debug: each allocation is still one block.
    s = script("leaky.py", "KEEP = [bytearray(1000) for _ in range(300)]   # LEAK\n")
    rows = []
    for options in ([], ["-X", "dev"], ["-I"], ["-O"], ["-E"]):
        code, out, err = run_cli_out(["run", "--python", "--by", "line", "--format", "json", "--",
                                      sys.executable, *options, str(s)], capsys, tmp_path)
        assert code == 0, err
        got = {r["key"]: r for r in json.loads(out)["rows"]}[f"{s}:1 (<listcomp>)"]
        rows.append((got["blocks"], got["bytes"]))
    assert len(set(rows)) == 1 and rows[0][0] >= 300, rows


def _cli(argv: list[str], cwd: Path, stdin: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    with open(stdin if stdin is not None else "/dev/null", "rb") as fh:
        return subprocess.run([sys.executable, "-m", "audit", *argv], stdin=fh, capture_output=True,
                              text=True, cwd=cwd, timeout=120, check=False, env=env)


def test_code_module_and_stdin_after_options(script: Script, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, out, err = run_cli_out(["run", "--python", "--format", "csv", "--", sys.executable,
                                  "-OXdev", "-ckeep = [bytes(100000) for _ in range(3)]\nassert 0"],
                                 capsys, tmp_path)
    assert code == 0, err
    assert "<string>:1 (<listcomp>)" in out
    script("probe_mod.py", "import sys\nKEEP = [bytearray(5000)]   # LEAK\nprint(sys.flags.optimize)\n")
    # the module is found through PYTHONPATH, not the working directory: the sanitizer
    # suites run with PYTHONSAFEPATH set, under which -m puts no directory first
    # (as the plain interpreter does)
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(tmp_path)) if p)
    env = dict(os.environ, PYTHONPATH=path)
    for words in (["-O", "-m", "probe_mod"], ["-Omprobe_mod"], ["-O", "-mprobe_mod"]):
        proc = _cli(["run", "--python", "--format", "csv", "--", sys.executable, *words], tmp_path,
                    env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "1\n" and "probe_mod.py:2 (<module>)" in proc.stderr, words
    stdin = tmp_path / "stdin.py"
    stdin.write_text("import sys\nKEEP = [bytearray(7000)]\nprint(sys.argv, sys.flags.optimize)\n")
    proc = _cli(["run", "--python", "--format", "csv", "--", sys.executable, "-O", "-", "a"], tmp_path,
                stdin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "['-', 'a'] 1\n" and "<stdin>:2 (<module>)" in proc.stderr


def test_a_script_named_like_an_option_after_double_dash(script: Script, capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    s = script("-leaky.py", "KEEP = [bytearray(3000) for _ in range(10)]\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, out, err = run_cli_out(["run", "--python", "--format", "csv", "--", sys.executable, "-O",
                                      "--", s.name], capsys, tmp_path)
    finally:
        os.chdir(cwd)
    assert code == 0, err
    assert "-leaky.py:1 (<listcomp>)" in out


@pytest.mark.parametrize("words, message", [
    (["-X"], "run --python: -X takes a value"),
    (["-W"], "run --python: -W takes a value"),
    (["-c"], "run --python: -c takes a value"),
    (["-m"], "run --python: -m takes a value"),
    (["-Z", "{s}"], "run --python: unknown interpreter option -Z"),
    (["-J", "{s}"], "run --python: unknown interpreter option -J"),
    (["--frobnicate", "{s}"], "run --python: unknown interpreter option --frobnicate"),
    (["--check-hash-based-pycs"], "takes always, default or never"),
    (["--check-hash-based-pycs", "sometimes", "{s}"], "takes always, default or never"),
    (["-i", "{s}"], "-i (inspect interactively after the program) is not supported"),
    (["-x", "{s}"], "-x (skip the script's first line) is not supported"),
    (["-V"], "-V prints the interpreter's version and runs no program"),
    (["--version"], "--version prints the interpreter's version and runs no program"),
    (["-h"], "-h prints the interpreter's help"),
    (["--help"], "--help prints the interpreter's help"),
    (["-O"], "give the script to run after the interpreter"),
    (["-O", "--"], "give the script to run after the interpreter"),
    (["-O", "{s}x"], "no such file"),
])
def test_bad_interpreter_options_are_one_line(script: Script, capsys: pytest.CaptureFixture[str],
                                              words: list[str], message: str) -> None:
    s = script("leaky.py", "KEEP = [bytearray(10)]\n")
    argv = [w.replace("{s}", str(s)) for w in words]
    code, out, err = run_cli(["run", "--python", "--", "python3", *argv], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("ringpool-audit: error: ") and message in err, err


@pytest.mark.parametrize("name, read_as", [("-app.py", "unknown interpreter option -a"),
                                           ("-i.py", "-i (inspect interactively"),
                                           ("--app.py", "unknown interpreter option --app.py")])
def test_a_script_named_like_an_option_gets_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   name: str, read_as: str) -> None:
    # `run --python -- -app.py` said only "unknown interpreter option -a", though -app.py was a
    # file in the working directory: the message now says how to run it
    (tmp_path / name).write_text("KEEP = [bytearray(10)]\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, out, err = run_cli(["run", "--python", "--", name], capsys)
        assert code == 1 and out == "" and err.count("\n") == 1, err
        assert read_as in err and f"write ./{name} or -- {name}" in err, err
        code, out, err = run_cli(["run", "--python", "--format", "csv", "--", f"./{name}"], capsys)
        assert code == 0, err
    finally:
        os.chdir(cwd)
