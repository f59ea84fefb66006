"""``run --python``: run a Python program with its allocations attributed to Python lines.

The program runs under ``python audit/_pystart.py`` (:mod:`audit._pyboot`; the interpreter given as
the command's first word when it is one, else the interpreter running the
CLI), with :mod:`allocator._pyhooks` routing CPython's allocator domains
through the hooks.  Every process writes one ``ringpool-python`` report (see
:mod:`audit.pyreport`); the table shows what was outstanding before
finalization, and a second table what finalization left.  The tables go to
``--output FILE``, else to stderr: the program's stdout stays the program's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile

from audit import gate, output, reports
from audit.commands._common import by_tag_table, positive_int, totals_line
from audit._process import (describe_status, exit_status, ready_report_dir, run_program,
                            written_since)
from audit.errors import AuditError
from audit.formatters import render
from audit.printable import printable
from audit.words import plural

_PYTHON_NAME = re.compile(r"(python|pypy)(\d+(\.\d+)*)?[dmu]*(\.exe)?\Z")
TEXT_FORMATS = ("table", "github", "markdown")
#: Native frames per stack with --native when --stack-depth is not given (as --preload's).
NATIVE_DEPTH = 64
#: The launcher, run by its path: audit._pyboot from its cached bytecode.
BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pystart.py")
#: The directory holding this package (what PACKAGE_ENV and LOAD_ENV pass on).
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The directory holding this package, for another interpreter (read by the launcher).
PACKAGE_ENV = "RINGPOOL_PYTHON_PACKAGE"
#: The directory holding this package, for the launcher alone (taken off sys.path once the
#: hooks are loaded): under -E, -I, -s and -S.
LOAD_ENV = "RINGPOOL_PYTHON_LOAD_PATH"


def looks_like_python(program: str) -> bool:
    """True when program names a Python interpreter (python, python3, python3.11, ...)."""
    return bool(_PYTHON_NAME.match(os.path.basename(program)))


def add_python_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Python programs")
    group.add_argument("--python", action="store_true",
                       help="CMD is a Python script (or -m MODULE, -c CODE, -, or a python "
                            "interpreter, its options and its arguments): attribute its allocations to "
                            "Python lines through CPython's allocator hooks")
    group.add_argument("--python-depth", type=positive_int, default=None, metavar="N",
                       help="with --python: Python frames kept per allocation (default 1; "
                            "--by stack shows them)")
    group.add_argument("--native", action="store_true",
                       help="with --python: also record the native call stack of each tracked "
                            "allocation (--stack-depth frames, default 64) and show one stack "
                            "per site, native frames with each CPython evaluation-loop frame "
                            "replaced by the Python frames it ran (like memray's --native)")


def hint(cmd: list[str]) -> None:
    """Suggests --python when a Python interpreter is run without it."""
    if cmd and looks_like_python(cmd[0]):
        output.summary(f"hint: {printable(cmd[0])} is a Python interpreter; `ringpool-audit run --python -- "
                       f"{printable(' '.join(cmd[1:])) or 'SCRIPT'}` attributes its memory to Python lines")


#: CPython's options that take no value and that the launcher passes on as they are.
_FLAGS = frozenset("bBdEIOPqRsSuv")
#: CPython's options that take a value (in the same word, -Wd, or the next one, -W d).
_VALUED = frozenset("WX")
#: Options that mean the program's environment is not the CLI's: the hooks' package is then
#: found through the launcher's own path, which it takes off sys.path once they are loaded.
_ISOLATING = frozenset("EIsS")
_REFUSED = {
    "i": "-i (inspect interactively after the program) is not supported under run --python: "
         "the report is written when the program ends",
    "x": "-x (skip the script's first line) is not supported under run --python",
    "h": "-h prints the interpreter's help and runs no program: run it without ringpool-audit",
    "?": "-? prints the interpreter's help and runs no program: run it without ringpool-audit",
    "V": "-V prints the interpreter's version and runs no program: run it without ringpool-audit",
}
_LONG_REFUSED = ("--help", "--help-env", "--help-xoptions", "--help-all", "--version")


def split_options(words: list[str]) -> tuple[list[str], list[str]]:
    """(interpreter options, program) from what follows ``python``, read as CPython reads its
    command line: ``[OPTIONS] (SCRIPT | -m MODULE | -c CODE | -) [ARGS]``.  The options come
    back one per word (``-OOu`` as ``-O -O -u``, ``-Wd`` as ``-W d``); the program is what the
    launcher takes (``-m MODULE ARGS``, ``-c CODE ARGS``, ``- ARGS``, or ``SCRIPT ARGS`` with
    ``--`` before a SCRIPT whose name starts with ``-``).  Raises AuditError on an option that
    CPython does not know, one that lacks its value, or one run --python cannot honour."""
    options: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        if word.startswith("--"):
            if word == "--check-hash-based-pycs":
                if i + 1 >= len(words) or words[i + 1] not in ("always", "default", "never"):
                    raise AuditError(f"run --python: {word} takes always, default or never")
                options += [word, words[i + 1]]
                i += 2
                continue
            if word in _LONG_REFUSED:
                raise AuditError(f"run --python: {word} prints the interpreter's "
                                 f"{'version' if word == '--version' else 'help'} and runs no "
                                 "program: run it without ringpool-audit")
            raise AuditError(f"run --python: unknown interpreter option {printable(word)}"
                             + _script_hint(word))
        i += 1
        for k in range(1, len(word)):
            letter = word[k]
            if letter in ("c", "m") or letter in _VALUED:
                value = word[k + 1:]
                if not value:
                    if i >= len(words):
                        raise AuditError(f"run --python: -{letter} takes a value"
                                         + (" (the code to run)" if letter == "c" else
                                            " (the module to run)" if letter == "m" else ""))
                    value = words[i]
                    i += 1
                if letter in _VALUED:
                    options += [f"-{letter}", value]
                    break
                return options, [f"-{letter}", value, *words[i:]]
            if letter in _REFUSED:
                raise AuditError(f"run --python: {_REFUSED[letter]}" + _script_hint(word))
            if letter not in _FLAGS:
                raise AuditError(f"run --python: unknown interpreter option -{printable(letter)}"
                                 + _script_hint(word))
            options.append(f"-{letter}")
    program = words[i:]
    if program and program[0] != "-" and program[0].startswith("-"):
        program = ["--", *program]
    return options, program


def _script_hint(word: str) -> str:
    """For an option that is also the name of a file ("-app.py" read as -a -p -p ...): how
    to run that file as the script."""
    if not os.path.isfile(word):
        return ""
    return (f" ({printable(word)} is read as options, as python3 reads it; to run the script, "
            f"write ./{printable(word)} or -- {printable(word)})")


def _interpreter(cmd: list[str]) -> tuple[str, list[str]]:
    if looks_like_python(cmd[0]):
        found = shutil.which(cmd[0])
        if found is None:
            raise AuditError(f"{printable(cmd[0])}: command not found")
        return found, cmd[1:]
    return sys.executable, cmd


def run(args: argparse.Namespace, cmd: list[str]) -> int:
    if args.preload:
        raise AuditError("run: --python and --preload are exclusive (--python attributes by "
                         "Python line, --preload by native call site)")
    if args.blocks:
        raise AuditError("run: --blocks applies to pool reports, not to --python")
    from audit import pyreport
    from allocator import _pyhooks
    native = getattr(args, "native", False)
    if native and args.python_depth is not None:
        raise AuditError("--python-depth and --native are exclusive (with --native, the Python "
                         "frames are those the native stack's evaluation-loop frames ran; "
                         "--stack-depth N bounds the native frames)")
    if args.python_depth is None:
        args.python_depth = 1
    if args.python_depth > _pyhooks.MAX_DEPTH:
        raise AuditError(f"--python-depth {args.python_depth}: at most {_pyhooks.MAX_DEPTH}")
    try:
        pyreport.normalize_by(args.by)
    except ValueError as exc:
        raise AuditError(str(exc)) from exc
    interpreter, words = _interpreter(cmd)
    options, rest = split_options(words)
    if not rest:
        raise AuditError("run --python: give the script to run after the interpreter "
                         f"(run --python -- {printable(cmd[0])} [OPTIONS] SCRIPT ARGS)")
    script = rest[1] if rest[0] == "--" else rest[0]
    if rest[0] not in ("-m", "-c", "-") and not (os.path.isfile(script) or os.path.isdir(script)):
        raise AuditError(f"{printable(script)}: no such file (run --python takes a Python script, "
                         "a directory or zip file with a __main__.py, -m MODULE, -c CODE or -, "
                         "after the interpreter's options)")
    temporary = args.report_dir is None
    report_dir = tempfile.mkdtemp(prefix="ringpool-run-") if temporary else args.report_dir
    try:
        return _run_in(args, interpreter, options, rest, report_dir)
    finally:
        if temporary:
            shutil.rmtree(report_dir, ignore_errors=True)


def _run_in(args: argparse.Namespace, interpreter: str, options: list[str], rest: list[str],
            report_dir: str) -> int:
    before, literal_dir = ready_report_dir(report_dir)
    env = dict(os.environ)
    env["RINGPOOL_PYTHON_REPORT"] = os.path.join(literal_dir, "python.%p.json")
    env["RINGPOOL_PYTHON_DEPTH"] = str(args.python_depth)
    for name in ("RINGPOOL_PYTHON_SAMPLE_RATE", "RINGPOOL_PYTHON_SAMPLE_SEED",
                 "RINGPOOL_PYTHON_NATIVE"):
        env.pop(name, None)
    if getattr(args, "native", False):
        env["RINGPOOL_PYTHON_NATIVE"] = str(args.stack_depth or NATIVE_DEPTH)
    if getattr(args, "sample_rate", None) is not None:
        env["RINGPOOL_PYTHON_SAMPLE_RATE"] = repr(args.sample_rate)
    if getattr(args, "sample_seed", None) is not None:
        env["RINGPOOL_PYTHON_SAMPLE_SEED"] = str(args.sample_seed)
    env.pop(PACKAGE_ENV, None)
    env.pop(LOAD_ENV, None)
    if any(o[1:] in _ISOLATING for o in options):
        # -E, -I, -s or -S: $PYTHONPATH, the user's site-packages or site itself may be what
        # found this package; the launcher finds the hooks here, then takes it off sys.path.
        env[LOAD_ENV] = PACKAGE_DIR
    elif os.path.realpath(interpreter) != os.path.realpath(sys.executable):
        # Another interpreter finds this package where this one found it: the launcher
        # puts the directory on sys.path where $PYTHONPATH's first entry goes (not
        # through $PYTHONPATH itself, which splits a directory holding ':').
        env[PACKAGE_ENV] = PACKAGE_DIR
    try:
        status = run_program([interpreter, *options, BOOT, *rest], env)
    except OSError as exc:
        raise AuditError(f"{printable(interpreter)}: cannot run: {exc.strerror}") from exc
    name = printable(" ".join(rest[:2]) if rest[0] in ("-m", "-c") else
                     rest[1] if rest[0] == "--" else rest[0])
    status_text = describe_status(status)
    written = written_since(report_dir, before)
    loaded = [r for r in reports.load_all(written) if r.kind == "python"] if written else []
    if not loaded:
        output.summary(f"{name} {status_text}; it wrote no Python report "
                       "(did it end with os._exit or a signal?)")
        return exit_status(status) if status != 0 else gate.EXIT_ERROR
    merged = reports.rows_for(loaded, args.by, None)
    table = by_tag_table(merged, loaded, args)
    table.title = "outstanding before finalization, by " + table.title.split(" by ", 1)[1]
    final = reports.Merged("python", reports.python_rows(loaded, args.by, finalization=True))
    has_final = any(r.data.after is not None for r in loaded)
    # Domains taken out of the hooks during finalization (by tracemalloc started before them):
    # what finalization freed after that was not seen, so nothing is said to be left.
    out = {d for r in loaded if r.data.after is not None for d in r.data.after.unhooked}
    unhooked = [d for d in ("raw", "mem", "obj") if d in out]
    not_measured = (f"not measured: the {'/'.join(unhooked)} "
                    f"allocator{'s were' if len(unhooked) > 1 else ' was'} taken out of the hooks "
                    "during finalization (tracemalloc, started before them, puts back the "
                    "allocators it found when it stops)")
    final_table = by_tag_table(final, loaded, args)
    final_table.title = "left by finalization, by " + final_table.title.split(" by ", 1)[1]
    if has_final and args.format == "json":
        table.meta["after_finalization"] = [{c.key: row.get(c.key) for c in final_table.columns}
                                            for row in final_table.rows]
        if unhooked:
            table.meta["after_finalization_unhooked"] = unhooked
    text = render(table, args.format)
    if has_final and args.format in TEXT_FORMATS and isinstance(text, str):
        if unhooked:
            text += f"\nleft by finalization: {not_measured}\n"
        elif final_table.rows:
            text += "\n" + str(render(final_table, args.format))
        else:
            text += "\nleft by finalization: nothing\n"
    if args.output is None:
        output.to_stderr(text)
    else:
        output.emit_text(args, text)
    verdict = gate.evaluate(args, merged.rows)
    line = f"{name} {status_text}; " + totals_line(merged, loaded).replace(
        "outstanding", "outstanding before finalization")
    if has_final and unhooked:
        line += f"; finalization {not_measured.split(':')[0]} ({'/'.join(unhooked)} taken out of the hooks)"
    elif has_final:
        fb = sum(int(r["blocks"]) for r in final.rows)
        fn = sum(int(r["bytes"]) for r in final.rows)
        line += (f"; finalization left {plural(fb, 'block')}, {plural(fn, 'byte')} in "
                 f"{plural(len(final.rows), 'key')}")
    if args.report_dir is not None:
        line += f" (in {printable(report_dir)})"
    output.summary(verdict.summarize(line))
    if verdict.failed:
        return gate.EXIT_LEAKS
    return exit_status(status) if status != 0 else gate.EXIT_OK
