"""Runs a Python program with the allocator hooks on: ``python -m audit._pyboot``.

Started by ``ringpool-audit run --python`` through ``audit/_pystart.py`` (run
by its path, it loads this module's cached bytecode: the audited program pays
neither ``-m``'s machinery nor the ``audit`` package's import); the arguments are what ``python``
would get after its own options (``SCRIPT ARGS``, a directory or zip file with a ``__main__.py``, ``-- SCRIPT ARGS``, ``-m MODULE ARGS``,
``-c CODE ARGS`` or ``- ARGS``, the program read from stdin); the interpreter's options
are given to the interpreter, before ``_pystart.py``.  The
environment names the report (``RINGPOOL_PYTHON_REPORT``, ``%p`` the pid) and
the frames kept per allocation (``RINGPOOL_PYTHON_DEPTH``) and, for sampling,
the rate per byte and the seed (``RINGPOOL_PYTHON_SAMPLE_RATE``,
``RINGPOOL_PYTHON_SAMPLE_SEED``), and, for native stacks, the native frames
per stack (``RINGPOOL_PYTHON_NATIVE``, 1 to 256; unset or 0: none).  The report is
written when the program ends, before the interpreter's finalization (an
``atexit`` callback registered before the program runs, so it runs after the
program's own), rewritten after finalization with what it left, and written
before an ``os.exec*`` replaces the process.  The program runs as ``python``
runs it (docs/python-programs.md, "The program runs as under python").
"""

from __future__ import annotations

import atexit
import builtins
import io
import os
import sys
import types

# Not `from typing import ...`: importing typing costs the audited program
# about 12 M instructions of start-up (mypy reads this constant as typing's).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REPORT_ENV = "RINGPOOL_PYTHON_REPORT"
DEPTH_ENV = "RINGPOOL_PYTHON_DEPTH"
RATE_ENV = "RINGPOOL_PYTHON_SAMPLE_RATE"
SEED_ENV = "RINGPOOL_PYTHON_SAMPLE_SEED"
NATIVE_ENV = "RINGPOOL_PYTHON_NATIVE"
USAGE = "usage: python -m audit._pyboot ([--] SCRIPT | -m MODULE | -c CODE | -) [ARGS...]"


_rule: types.ModuleType | None = None


def _printable() -> types.ModuleType:
    """audit/printable.py (the CLI's naming rule, docs/cli.md "Names in text output"),
    loaded from beside this file when a message is written: not the ``audit`` package,
    nor ``re`` at start-up, for the audited program."""
    global _rule
    if _rule is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "audit.printable", os.path.join(os.path.dirname(os.path.abspath(__file__)), "printable.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _rule = module
    return _rule


def _name(text: str) -> str:
    """A name (a path, the interpreter) written by the rule."""
    return str(_printable().printable(text))


def _say(message: str) -> None:
    """One line on stderr, whatever the message holds (names go through _name first)."""
    print(f"ringpool python hooks: {_printable().printable_escaped(message)}", file=sys.stderr)


def _fail(message: str) -> int:
    _say(message)
    return 1


def _load_hooks(name: str = "allocator._pyhooks") -> types.ModuleType:
    """allocator._pyhooks (or another extension module of the package: the
    native stacks' allocator._pystack) without running allocator/__init__.py
    (the bindings, cffi and the report reader: tens of milliseconds of
    start-up the audited program would pay).  A later ``from allocator import
    _pyhooks`` finds the same module in sys.modules."""
    import importlib.machinery
    import importlib.util

    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("allocator")
    locations = package.submodule_search_locations if package is not None else None
    spec = importlib.machinery.PathFinder.find_spec(name, list(locations or []))
    if spec is None or spec.loader is None:
        raise ImportError(f"{name} is not installed beside the allocator package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _sampling() -> tuple[float, int | None]:
    """(rate, seed) from the environment; rate 0.0: exact mode."""
    text = os.environ.get(RATE_ENV)
    if not text:
        return 0.0, None
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"${RATE_ENV} must be a number in (0, 1], not {text!r}") from None
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"${RATE_ENV} must be a number in (0, 1], not {text!r}")
    seed_text = os.environ.get(SEED_ENV)
    if not seed_text:
        return rate, None
    try:
        seed = int(seed_text, 0)
    except ValueError:
        raise ValueError(f"${SEED_ENV} must be an integer, not {seed_text!r}") from None
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"${SEED_ENV} must be from 0 to 2**64-1, not {seed_text!r}")
    return rate, seed


def _native() -> int:
    """Native frames per stack from the environment; 0: none."""
    text = os.environ.get(NATIVE_ENV, "")
    if not text:
        return 0
    try:
        value = int(text, 10)
    except ValueError:
        raise ValueError(f"${NATIVE_ENV} must be a number of native frames (1 to 256, 0: none), "
                         f"not {text!r}") from None
    if not 0 <= value <= 256:
        raise ValueError(f"${NATIVE_ENV} must be from 1 to 256 (0: none), not {text!r}")
    return value


def main(argv: list[str]) -> int:
    pattern = os.environ.get(REPORT_ENV)
    if not pattern:
        return _fail(f"${REPORT_ENV} is not set (the report path; %p is the pid)")
    try:
        depth = int(os.environ.get(DEPTH_ENV, "1"))
    except ValueError:
        return _fail(f"${DEPTH_ENV} must be an integer, not {os.environ[DEPTH_ENV]!r}")
    try:
        rate, seed = _sampling()
        native = _native()
    except ValueError as exc:
        return _fail(str(exc))
    if argv[:1] == ["--"]:
        argv = argv[1:]
        if not argv:
            return _fail(USAGE)
        kind = "script"
    elif not argv or (argv[0] in ("-m", "-c") and len(argv) < 2):
        return _fail(USAGE)
    else:
        kind = argv[0] if argv[0] in ("-m", "-c", "-") else "script"
    try:
        _pyhooks = _load_hooks()
        if native:
            _load_hooks("allocator._pystack")
    except ImportError as exc:
        return _fail(f"cannot load the hooks into {_name(sys.executable)} "
                     f"(Python {sys.version.split()[0]}): {exc}")
    program = " ".join(argv[:2]) if kind in ("-m", "-c") else argv[0]
    # A path Python decoded with surrogateescape has no UTF-8: the report names it with
    # U+FFFD for the bytes that are not UTF-8, as it names such files' frames.
    program = program.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if kind == "script" and not os.path.exists(argv[0]):
        return _fail(f"{_name(argv[0])}: no such file")
    try:
        _pyhooks.set_program(program)
        options: dict[str, Any] = {"depth": depth}
        if rate:
            options.update(sample_rate=rate, seed=seed)
        if native:
            options["native"] = native
        _pyhooks.start(**options)
    except (ValueError, RuntimeError, OSError) as exc:
        return _fail(str(exc))

    def at_exit() -> None:
        if not _pyhooks.is_tracing():
            _say("the program stopped the hooks (allocator._pyhooks.stop()); no report is written")
            return
        try:
            _pyhooks.exit_report(pattern, program)
        except OSError as exc:
            _say(f"cannot write the report: {exc}")

    def on_audit(event: str, args: Any) -> None:
        if event == "os.exec" and _pyhooks.is_tracing():
            try:
                _pyhooks.write_report(pattern, "exec")
            except OSError:
                pass

    atexit.register(at_exit)
    sys.addaudithook(on_audit)
    _run(kind, argv, _pyhooks)
    return 0


#: The launcher's own files: their frames are taken off the traceback of an exception that
#: ends the program, which `python SCRIPT` prints from the program's outermost frame.
LAUNCHER_FILES = frozenset(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
                           for name in ("_pystart.py", "_pyboot.py"))


def strip_launcher(exc: BaseException) -> None:
    """Takes the launcher's frames (the outermost ones) off the traceback of exc, the
    exception that ends the program, before the interpreter prints it (or runs sys.excepthook
    with it, or keeps it in sys.last_traceback) as it does for `python SCRIPT`."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in LAUNCHER_FILES:
        tb = tb.tb_next
    exc.__traceback__ = tb


def finalize_before_signal() -> None:
    """The program ends by an uncaught KeyboardInterrupt: CPython kills itself with SIGINT
    after finalization, so the report's after-finalization rewrite is made at the end of
    Py_FinalizeEx (Py_AtExit), as the C library's atexit handlers never run."""
    hooks = sys.modules.get("allocator._pyhooks")
    if hooks is not None and hooks.is_tracing():
        hooks.finalize_before_signal()


def _flush_io() -> None:
    """What CPython does after running a file (a script or stdin) and before it prints the
    exception that ended it: flush stderr then stdout, ignoring errors (pythonrun.c
    flush_io), so the program's buffered output comes before the traceback."""
    for name in ("stderr", "stdout"):
        stream = getattr(sys, name, None)
        if stream is not None:
            try:
                stream.flush()
            except Exception:
                pass


def _importer(path: str) -> Any:
    """The path entry finder that imports from path, a directory or a zip file (None for a
    script), as CPython's start-up asks (import.c get_path_importer: sys.path_importer_cache
    holds None for a script's path afterwards, as it does under `python SCRIPT`)."""
    cache = sys.path_importer_cache
    if path in cache:
        return cache[path]
    cache[path] = None
    for hook in sys.path_hooks:
        try:
            importer = hook(path)
        except ImportError:
            continue
        cache[path] = importer
        return importer
    return None


def _set_path0(path0: str | None, safe_path: bool) -> None:
    """sys.path[0] as `python` makes it: path0 in place of the launcher's directory, which the
    interpreter put first; under safe path (-P, -I, PYTHONSAFEPATH) the launcher's directory
    is not there and nothing replaces it, but a directory or zip file run as the program is
    inserted first (main.c pymain_run_python)."""
    if path0 is None:
        return
    if safe_path:
        sys.path.insert(0, path0)
        return
    old = sys.path[0]
    sys.path[0] = path0
    if old != path0 and old not in sys.path:
        sys.path_importer_cache.pop(old, None)


def _run(kind: str, argv: list[str], _pyhooks: types.ModuleType) -> None:
    """Runs the program as `python` runs it (Modules/main.c, Python/pythonrun.c of 3.11).  It
    runs in a fresh __main__ module that stays in sys.modules, so its globals live until
    finalization; the module starts as the interpreter's own __main__ does (pylifecycle.c
    add_main_module: __annotations__, __builtins__ and BuiltinImporter as __loader__)."""
    import importlib.machinery

    main_module = types.ModuleType("__main__")
    globals_ = main_module.__dict__
    globals_["__annotations__"] = {}
    globals_["__builtins__"] = builtins
    globals_["__loader__"] = importlib.machinery.BuiltinImporter
    sys.modules["__main__"] = main_module
    # `python` puts the script's directory (-m: the current one; -c, -: "") first on
    # sys.path, unless PYTHONSAFEPATH (-P, -I) says not to: then sys.path[0] is
    # the standard library's zip entry, and stays it.
    safe_path = bool(getattr(sys.flags, "safe_path", False))
    if kind == "-m":
        # sys.argv[0] is "-m" while the module is found (and its packages imported); runpy
        # then puts the module's file there.
        sys.argv = ["-m", *argv[2:]]
        _set_path0(None if safe_path else os.getcwd(), False)
        import runpy
        runpy._run_module_as_main(argv[1], alter_argv=True)  # type: ignore[attr-defined]
        return
    if kind == "-c":
        sys.argv = ["-c", *argv[2:]]
        _set_path0(None if safe_path else "", False)
        exec(_pyhooks.compile_source(argv[1], "<string>"), globals_)
        return
    sys.argv = list(argv)
    if kind == "-":
        _set_path0(None if safe_path else "", False)
        filename = "<stdin>"
        source = sys.stdin.buffer.read()
    else:
        # CPython runs the script by its absolute path (not normalized: `./a/../x.py` is
        # CWD/./a/../x.py): __file__, the code's co_filename, tracebacks and warnings name it.
        path = argv[0]
        filename = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
        if _importer(filename) is not None:
            # A directory or a zip file (a zipapp): its __main__ module, found on sys.path.
            _set_path0(filename, safe_path)
            import runpy
            runpy._run_module_as_main("__main__", alter_argv=False)  # type: ignore[attr-defined]
            return
        _set_path0(None if safe_path else os.path.dirname(os.path.realpath(path)), False)
        with io.open_code(filename) as fh:
            source = fh.read()
    # The file's name stays in __main__ while the file runs (and while an exception that
    # ends it is printed), and is taken out when it returns (pythonrun.c
    # _PyRun_SimpleFileObject), before the atexit callbacks.
    globals_["__file__"] = filename
    globals_["__cached__"] = None
    try:
        code: Any
        if kind != "-" and (filename.endswith(".pyc") or source[:2] == _magic()[:2]):
            globals_["__loader__"] = importlib.machinery.SourcelessFileLoader("__main__", filename)
            code = _pyc_code(source)
        else:
            if kind != "-":
                globals_["__loader__"] = importlib.machinery.SourceFileLoader("__main__", filename)
            code = _pyhooks.compile_source(source, filename)
        exec(code, globals_)
    except BaseException:
        _flush_io()
        raise
    _flush_io()
    globals_.pop("__file__", None)
    globals_.pop("__cached__", None)


def _magic() -> bytes:
    import importlib.util

    return importlib.util.MAGIC_NUMBER


def _pyc_code(data: bytes) -> Any:
    """The code of a compiled file run as the script (`python app.pyc`), with CPython's
    errors (pythonrun.c run_pyc_file)."""
    import marshal

    if data[:4] != _magic():
        raise RuntimeError("Bad magic number in .pyc file")
    code = marshal.loads(data[16:])
    if not isinstance(code, types.CodeType):
        raise RuntimeError("Bad code object in .pyc file")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
