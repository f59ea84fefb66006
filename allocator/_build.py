"""cffi builder for ``allocator._ringpool`` (out-of-line API mode).

Compiles every ``csrc/*.c`` file of the C library (top level only) into the
extension together with the binding glue in ``_ringpool_glue.h``.  The cdef
(what Python may call) lives in ``_ringpool_cdef.h``.  This script must not
import the ``allocator`` package: it runs before the package is built.
"""

from __future__ import annotations

import glob
import os

from cffi import FFI  # type: ignore[import-untyped]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")


def _read(name: str) -> str:
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def _sources() -> list[str]:
    # Paths relative to the project root keep the build reproducible and let
    # setuptools accept them; csrc/preload/ is a separate shared object.
    found = sorted(glob.glob(os.path.join(CSRC, "*.c")))
    if not found:
        raise RuntimeError(f"no C sources found in {CSRC}")
    return [os.path.relpath(p, ROOT) for p in found]


ffibuilder = FFI()
ffibuilder.cdef(_read("_ringpool_cdef.h"))
ffibuilder.set_source(
    "allocator._ringpool",
    _read("_ringpool_glue.h"),
    sources=_sources(),
    include_dirs=[os.path.join(CSRC, "include"), CSRC],
    define_macros=[
        ("RP_BUILDING", "1"),
        ("_GNU_SOURCE", "1"),
        # The glue defines a type with buffer slots (_ringpool_glue.h), which
        # the limited API of cffi's default (3.2) lacks: build for this
        # interpreter's full API instead.
        ("_CFFI_NO_LIMITED_API", None),
    ],
    extra_compile_args=["-std=c11"],
    py_limited_api=False,
)

if __name__ == "__main__":
    os.chdir(ROOT)
    ffibuilder.compile(tmpdir=ROOT, verbose=True)
