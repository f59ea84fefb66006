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


CDEF = """
enum {
    RPB_RP_FREE = 0,        /* ringpool pool, rp_free of every block */
    RPB_RP_DESTROY = 1,     /* ringpool pool, one rp_pool_destroy */
    RPB_GLIBC_FREE = 2,     /* malloc + free of every block */
    RPB_TALLOC_FREE = 3,    /* talloc children, talloc_free of every block */
    RPB_TALLOC_DESTROY = 4, /* talloc children, talloc_free of the parent */
    RPB_APR_DESTROY = 5,    /* apr_palloc, apr_pool_destroy */
    RPB_MI_FREE = 6,        /* mimalloc heap, mi_free of every block */
    RPB_MI_DESTROY = 7,     /* mimalloc heap, mi_heap_destroy */
    RPB_STRATEGIES = 8
};
enum { RPB_ORDER_RANDOM = 0, RPB_ORDER_LIFO = 1, RPB_ORDER_FIFO = 2 };
enum { RPB_POOL_UNSYNC = 1, RPB_POOL_ARENA = 4 };

typedef struct rpb_work rpb_work;

rpb_work *rpb_work_new(size_t n, size_t size, int order, uint64_t seed);
void rpb_work_delete(rpb_work *w);
size_t rpb_work_blocks(const rpb_work *w);
size_t rpb_work_bytes(const rpb_work *w);
size_t rpb_work_size_at(const rpb_work *w, size_t i);
size_t rpb_work_order_at(const rpb_work *w, size_t i);

int rpb_available(int strategy);
const char *rpb_unavailable_reason(int strategy);

int rpb_fill(rpb_work *w, int strategy, unsigned pool_flags);
int rpb_release(rpb_work *w);
int rpb_filled(const rpb_work *w);
size_t rpb_outstanding(const rpb_work *w);
uint64_t rpb_fill_ns(const rpb_work *w);
uint64_t rpb_release_ns(const rpb_work *w);
const char *rpb_last_error(const rpb_work *w);

typedef struct rpd_server rpd_server;
rpd_server *rpd_start(void);
long rpd_serve(rpd_server *s, long n);
int rpd_snapshot(rpd_server *s, const char *path);
void rpd_shutdown(rpd_server *s);
"""

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
