"""The extensions built for every supported Python use CPython's public C API only.

Private functions (``_Py...``) leave the public headers between releases (3.13
moved ``_PySet_NextEntry`` and many others to the internal API): an extension
that calls one fails to compile, or to import, on the next Python.  Two checks:
the C sources call none, and the compiled extensions need none from libpython
but the few that public macros expand to (``Py_DECREF``, ``Py_None``,
``PyWeakref_Check``...).  allocator._pyhooks is left out on purpose: it reads
CPython 3.11's frames through the internal headers and refuses to load on any
other version.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The C of allocator._ringpool (the glue and its cdef), allocator._pystack and
# audit._bench.
SOURCES = ["allocator/_ringpool_glue.h", "allocator/_ringpool_cdef.h", "allocator/_pystack.c",
           "allocator/_pystack.h", "audit/_bench_kernel.c", "audit/bench_kernel.h"]
MODULES = ["allocator._ringpool", "allocator._pystack", "audit._bench"]

# Symbols of libpython that public macros and inline functions of Python.h
# reference: the extension never names them itself.
PUBLIC_MACRO_SYMBOLS = {
    "_Py_Dealloc",                  # Py_DECREF
    "_Py_NoneStruct",               # Py_None
    "_Py_TrueStruct",               # Py_True
    "_Py_FalseStruct",              # Py_False
    "_Py_NotImplementedStruct",     # Py_NotImplemented
    "_PyWeakref_RefType",           # PyWeakref_Check
    "_PyWeakref_ProxyType",         # PyWeakref_Check
    "_PyWeakref_CallableProxyType",  # PyWeakref_Check
}

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_PRIVATE = re.compile(r"\b_Py[A-Za-z0-9_]*")


@pytest.mark.parametrize("source", SOURCES)
def test_sources_name_no_private_cpython_api(source: str) -> None:
    code = _COMMENT.sub(" ", (ROOT / source).read_text())
    assert sorted(set(_PRIVATE.findall(code))) == []


@pytest.mark.parametrize("module", MODULES)
def test_extensions_need_no_private_cpython_symbol(module: str) -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    path = importlib.import_module(module).__file__
    assert path is not None and path.endswith(".so"), path
    out = subprocess.run([nm, "-D", "--undefined-only", path], capture_output=True, text=True,
                         check=True).stdout
    names = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    assert sorted(n for n in names if n.startswith("_Py") and n not in PUBLIC_MACRO_SYMBOLS) == []
