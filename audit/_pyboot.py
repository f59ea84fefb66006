"""Runs a Python program with the allocator hooks on: ``python -m audit._pyboot``.

Started by ``ringpool-audit run --python``; the arguments are what ``python``
would get (``SCRIPT ARGS``, ``-m MODULE ARGS`` or ``-c CODE ARGS``).  The
environment names the report (``RINGPOOL_PYTHON_REPORT``, ``%p`` the pid) and
the frames kept per allocation (``RINGPOOL_PYTHON_DEPTH``).  The report is
written when the program ends, before the interpreter's finalization (an
``atexit`` callback registered before the program runs, so it runs after the
program's own), rewritten after finalization with what it left, and written
before an ``os.exec*`` replaces the process.
"""

from __future__ import annotations

import atexit
import builtins
import io
import os
import runpy
import sys
import types
from typing import Any

REPORT_ENV = "RINGPOOL_PYTHON_REPORT"
DEPTH_ENV = "RINGPOOL_PYTHON_DEPTH"
USAGE = "usage: python -m audit._pyboot (SCRIPT | -m MODULE | -c CODE) [ARGS...]"


def _fail(message: str) -> int:
    print(f"ringpool python hooks: {message}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    pattern = os.environ.get(REPORT_ENV)
    if not pattern:
        return _fail(f"${REPORT_ENV} is not set (the report path; %p is the pid)")
    try:
        depth = int(os.environ.get(DEPTH_ENV, "1"))
    except ValueError:
        return _fail(f"${DEPTH_ENV} must be an integer, not {os.environ[DEPTH_ENV]!r}")
    if not argv or (argv[0] in ("-m", "-c") and len(argv) < 2):
        return _fail(USAGE)
    try:
        from allocator import _pyhooks
    except ImportError as exc:
        return _fail(f"cannot load the hooks into {sys.executable} "
                     f"(Python {sys.version.split()[0]}): {exc}")
    program = " ".join(argv[:2]) if argv[0] in ("-m", "-c") else argv[0]
    if argv[0] not in ("-m", "-c") and not os.path.exists(argv[0]):
        return _fail(f"{argv[0]}: no such file")
    try:
        _pyhooks.set_program(program)
        _pyhooks.start(depth=depth)
    except (ValueError, RuntimeError) as exc:
        return _fail(str(exc))

    def at_exit() -> None:
        try:
            _pyhooks.exit_report(pattern, program)
        except OSError as exc:
            print(f"ringpool python hooks: cannot write the report: {exc}", file=sys.stderr)

    def on_audit(event: str, args: Any) -> None:
        if event == "os.exec" and _pyhooks.is_tracing():
            try:
                _pyhooks.write_report(pattern, "exec")
            except OSError:
                pass

    atexit.register(at_exit)
    sys.addaudithook(on_audit)
    # Like `python SCRIPT`: the program runs in a fresh __main__ module that
    # stays in sys.modules, so its globals live until finalization.
    main_module = types.ModuleType("__main__")
    main_module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main_module
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[0] = os.getcwd()
        runpy._run_module_as_main(argv[1], alter_argv=True)  # type: ignore[attr-defined]
    elif argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""
        exec(compile(argv[1], "<string>", "exec", dont_inherit=True), main_module.__dict__)
    else:
        path = argv[0]
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(path))
        with io.open_code(path) as fh:
            source = fh.read()
        main_module.__dict__.update({"__file__": path, "__cached__": None})
        exec(compile(source, path, "exec", dont_inherit=True), main_module.__dict__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
