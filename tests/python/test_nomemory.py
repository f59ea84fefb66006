"""A MemoryError at any allocation of a pool call leaves the pool whole.

CPython's test hook ``_testcapi.set_nomemory(n, n + 1)`` makes the nth
allocation from then on fail (every domain, ours included when the Python
hooks are running).  Each case sweeps n over every allocation a call makes,
on a fresh pool family each time, and then checks that the pool is usable:
no lock left held, no Block left sealed, a new allocation, free, walk,
snapshot and destroy work (no PoolBusy), and after the destroy every Block of
the family is dead (none live over freed memory).  Each case runs in a
process of its own, so that a crash shows as a signal."""

from __future__ import annotations

import pytest

from child_helpers import run_script

try:
    import _testcapi  # noqa: F401 -- CPython's test module (python3-dev ships it)
except ImportError:  # pragma: no cover
    pytest.skip("_testcapi (CPython's test hooks) is not available", allow_module_level=True)

SWEEP = r"""
import gc, sys, _testcapi, tempfile, os
from allocator import Pool

hooks = sys.argv[1] == "hooks"
opname = sys.argv[2]
if hooks:
    from allocator import _pyhooks
    _pyhooks.start()
report = os.path.join(tempfile.mkdtemp(), "r.json")

def make():
    p = Pool("p")
    blocks = [p.alloc(16 + i, tag=f"t{i % 3}") for i in range(8)]
    c = p.child("c")
    blocks += [c.alloc(8) for _ in range(3)]
    p.add_cleanup(lambda: c.alloc(5))           # a cleanup that allocates
    p.add_cleanup(lambda: p.child("late").alloc(7))   # and one that makes a child
    return p, blocks

def collect(p, blocks):
    del p, blocks[:]
    gc.collect()

OPS = {
    "blocks": lambda p, b: list(p.blocks()),
    "iter": lambda p, b: [x for x in p],
    "snapshot": lambda p, b: p.snapshot(),
    "snapshot_blocks": lambda p, b: p.snapshot(blocks=True, children=True),
    "destroy": lambda p, b: p.destroy(),
    "reset": lambda p, b: p.reset(),
    "alloc": lambda p, b: p.alloc(32, "x"),
    "calloc": lambda p, b: p.calloc(4, 8, "x"),
    "strdup": lambda p, b: p.strdup("abc", "x"),
    "memdup": lambda p, b: p.memdup(b"abc", "x"),
    "free": lambda p, b: b[0].free(),
    "resize": lambda p, b: b[1].resize(100),
    "child": lambda p, b: p.child("k").alloc(3),
    "tobytes": lambda p, b: b[2].tobytes(),
    "write_report": lambda p, b: p.write_report(report),
}
op = OPS[opname]
problems = []
n = 0
while True:
    p, blocks = make()
    gc.collect()        # empties the free lists too: every allocation reaches the hook
    gc.disable()
    _testcapi.set_nomemory(n, n + 1)
    failed = False
    try:
        op(p, blocks)
    except MemoryError:
        failed = True
    except BaseException as e:
        _testcapi.remove_mem_hooks()
        problems.append(f"{n}: raised {e!r}")
    _testcapi.remove_mem_hooks()
    gc.enable()
    if p._lock._is_owned():
        problems.append(f"{n}: the pool's lock is left held")
    try:
        if not p.destroyed:
            for b in blocks:
                if not b.freed:
                    memoryview(b).release()     # not left sealed
            x = p.alloc(10)
            x.free()
            list(p.blocks())
            p.snapshot()
        p.destroy()
        if any(not b.freed for b in blocks):
            problems.append(f"{n}: a Block is live after destroy()")
    except BaseException as e:
        problems.append(f"{n}: afterwards {e!r}")
    if not failed:
        break
    n += 1
if hooks:
    _pyhooks.stop()
print(n, len(problems))
for line in problems[:5]:
    print(line)
"""

OPS = ["blocks", "iter", "snapshot", "snapshot_blocks", "destroy", "reset", "alloc", "calloc",
       "strdup", "memdup", "free", "resize", "child", "tobytes", "write_report"]


@pytest.mark.parametrize("hooks", ["plain", "hooks"])
@pytest.mark.parametrize("op", OPS)
def test_a_memory_error_anywhere_leaves_the_pool_usable(op: str, hooks: str) -> None:
    r = run_script(SWEEP, hooks, op, timeout=300)
    points, problems = map(int, r.stdout.split("\n", 1)[0].split())
    assert points > 0 and problems == 0, r.stdout


LATE_CHILD = r"""
from allocator import Pool
kept = []
p = Pool("p")
p.add_cleanup(lambda: p.child("late").alloc(7))     # made and dropped by a cleanup
p.destroy()
p = Pool("p")
p.add_cleanup(lambda: kept.append(p.child("late").alloc(7)))
p.destroy()
p = Pool("p")
p.add_cleanup(lambda: kept.append(p.child("late").alloc(7)))
p.reset()
p.destroy()
import gc; gc.collect()
print([(b.freed, b.pool.destroyed) for b in kept])
"""


def test_a_child_that_a_cleanup_makes_dies_with_the_destroy() -> None:
    # A child pool made by a cleanup of a pool being destroyed or reset is
    # freed by the same library call: its Blocks are dead, its pool
    # destroyed, and its finalizer does not destroy it a second time.
    assert run_script(LATE_CHILD, dev=True).stdout == "[(True, True), (True, True)]\n"


DEFAULT_POOL = r"""
import gc, _testcapi
import allocator
from allocator import _stat
held = []
for call in (allocator.stat_pool, allocator.stat_create_pool, allocator.stat_destroy_pool):
    for n in range(40):
        allocator.stat_create_pool()
        gc.collect()
        _testcapi.set_nomemory(n, n + 1)
        try:
            call()
        except MemoryError:
            pass
        finally:
            _testcapi.remove_mem_hooks()
        if not _stat._lock.acquire(timeout=1):
            print([(call.__name__, n)])     # held: the next call would hang
            raise SystemExit(0)
        _stat._lock.release()
allocator.stat_destroy_pool()
print(held)
"""


def test_a_memory_error_leaves_the_default_pool_lock_free() -> None:
    # The default pool's module lock was a threading.Lock: a MemoryError at
    # the end of `with _lock:` left it held, and the next stat_pool() hung.
    assert run_script(DEFAULT_POOL).stdout == "[]\n"
