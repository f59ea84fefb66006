"""What ``ringpool-audit run --python`` starts: ``python audit/_pystart.py ARGS``.

It runs :mod:`audit._pyboot` from its cached bytecode (a script given by path
is compiled from source at every start, which costs the audited program
millions of instructions for the launcher's own code) and without importing
the ``audit`` package. Under another interpreter than the CLI's,
``$RINGPOOL_PYTHON_PACKAGE`` names the directory that holds the packages.
"""

import importlib.util
import os
import sys

# `run --python` with another interpreter names the directory of the packages here (one
# path, any bytes): on sys.path where $PYTHONPATH's first entry would be.
_package = os.environ.pop("RINGPOOL_PYTHON_PACKAGE", None)
if _package:
    sys.path.insert(1, _package)
# Under -E, -I, -s or -S, the directory that holds the packages for the hooks alone: it
# is taken off sys.path once they are loaded, so the program's sys.path is the interpreter's.
_load = os.environ.pop("RINGPOOL_PYTHON_LOAD_PATH", None)
_spec = importlib.util.spec_from_file_location(
    "audit._pyboot", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pyboot.py"))
assert _spec is not None and _spec.loader is not None
_boot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_boot)
if _load:
    sys.path.insert(0, _load)
    try:
        _boot._load_hooks()
        if _boot._native():
            _boot._load_hooks("allocator._pystack")
    except (ImportError, ValueError):
        pass  # main() says so
    finally:
        sys.path.remove(_load)
        sys.path_importer_cache.pop(_load, None)
try:
    _status = _boot.main(sys.argv[1:])
except BaseException as _exc:
    # The exception that ends the program is printed (and its exit status given) by the
    # interpreter, as for `python SCRIPT`, with the program's frames only: a bare raise
    # adds no frame of its own to the traceback.
    _boot.strip_launcher(_exc)
    if isinstance(_exc, KeyboardInterrupt):
        # CPython ends by SIGINT after finalization, before the C library's atexit handlers
        _boot.finalize_before_signal()
    raise
sys.exit(_status)
