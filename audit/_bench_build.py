"""cffi builder for ``audit._bench``: the C kernel behind ``ringpool-audit bench`` and
the bundled workload of ``ringpool-audit demo``.

Out-of-line API mode. The kernel (``_bench_kernel.c``) is compiled together with
the ringpool C sources, so timings never go through a Python loop. Peer
allocators (talloc, APR, mimalloc) are opened with dlopen at run time; the build
needs none of their headers.

This script does not import the package it builds.
"""

from __future__ import annotations

import glob
import os

from cffi import FFI  # type: ignore[import-untyped, unused-ignore]

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)


def _rel(path: str) -> str:
    """Paths relative to the working directory when possible (setuptools prefers them)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - other drive on Windows
        return path
    return path if rel.startswith("..") else rel


def _cdef_of(header: str) -> str:
    """A header's declarations for cffi: the same file the C side compiles,
    without its preprocessor lines (cffi's cdef takes no #include or #ifndef)."""
    with open(os.path.join(_HERE, header), encoding="utf-8") as f:
        return "".join(line for line in f if not line.lstrip().startswith("#"))


CDEF = _cdef_of("bench_kernel.h") + _cdef_of("demo_workload.h")

ffibuilder = FFI()
ffibuilder.cdef(CDEF)

_core_sources = sorted(glob.glob(os.path.join(_ROOT, "csrc", "*.c")))
ffibuilder.set_source(
    "audit._bench",
    '#include "bench_kernel.h"\n#include "demo_workload.h"\n',
    sources=[_rel(os.path.join(_HERE, name)) for name in ("_bench_kernel.c", "_demo_workload.c")] + [_rel(p) for p in _core_sources],
    include_dirs=[
        _rel(os.path.join(_ROOT, "csrc", "include")),
        _rel(os.path.join(_ROOT, "csrc")),
        _rel(_HERE),
    ],
    define_macros=[("RP_BUILDING", None), ("_GNU_SOURCE", None)],
    extra_compile_args=["-O2", "-std=c11"],
    libraries=["dl", "pthread"],
)

if __name__ == "__main__":  # pragma: no cover - manual build
    ffibuilder.compile(verbose=True)
