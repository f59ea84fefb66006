"""Random re-entrancy: cleanups, weakref finalizers of Blocks and Pools and
``__del__`` of cyclic garbage that call back into the pools (allocate, free,
resize, reset, destroy, walk, snapshot, view, gc, the default pool), under gc
thresholds down to 1.  Each seed runs in a child process, so a crash fails
the test, not the runner; the process must exit 0 and print "ok" (a pool's
check() passes at the end).  Seeds 118 and 148 aborted the process (a cleanup
the library still held was called through a handle the gc had taken:
"ffi.from_handle() detected that the address passed points to garbage").
Seeds 89, 180, 244 and 274 crashed (or hung) the process (SIGSEGV, or "corrupted
double-linked list"): a cleanup registered on a pool during its destroy ran
after the pools below it were gone, and reached them.
Seed 1316 aborted in cffi: a cleanup's child() built the rp_pool_options type
for the first time, the gc ran meanwhile, and a use of the same type from
there built it again underneath (an assertion of cffi's type builder).
Seeds 1438 and 1500 read freed memory (ASan: heap-use-after-free in
destroy_children): a cleanup destroyed a pool that another cleanup had made
during the same destroy or reset, under the library's loop over it.  Seed
2505 walked a freed pool (rp_pool_walk): a child made while a reset released
its Blocks was marked dead with the reset's children, so its cleanup ran
unfenced.  A gc callback may empty `blocks` between the driver's check and
its choice (IndexError), which the driver ignores as it does the pools'
refusals.  $RINGPOOL_REENTRANCY_SEEDS adds seeds ("601-1500"); `make
test-py-asan` runs the driver under AddressSanitizer (docs/python.md).
"""

from __future__ import annotations

import os

import pytest

from child_helpers import script_output

FUZZ = r"""import sys, gc, random, weakref
from allocator import Pool, RingpoolError, stat_create_pool, stat_alloc, stat_destroy_pool
seed = int(sys.argv[1]); rng = random.Random(seed)
pools = []
blocks = []
def rand_pool():
    live = [p for p in pools if not p.destroyed]
    return rng.choice(live) if live else None
depth = [0]
def evil():
    if depth[0] > 3: return
    depth[0] += 1
    try:
        for _ in range(rng.randrange(1, 4)):
            act(nested=True)
    finally:
        depth[0] -= 1
def act(nested=False):
    op = rng.randrange(20)
    try:
        if op == 0 or not pools:
            p = Pool(f"p{len(pools)}", backing=rng.choice(["malloc", "arena"]), thread_safe=rng.random() < .5)
            pools.append(p)
        p = rand_pool()
        if p is None: return
        if op in (1, 2, 3):
            b = p.alloc(rng.randrange(0, 200), tag=rng.choice("abc"))
            if rng.random() < .3: weakref.finalize(b, evil)
            if rng.random() < .5: blocks.append(b)
            if rng.random() < .2:
                class C: pass
                c = C(); c.c = c; c.b = b; c.__class__.__del__ = lambda self: evil()
        elif op == 4:
            k = p.child("k"); pools.append(k)
            if rng.random() < .3: weakref.finalize(k, evil)
        elif op == 5: p.add_cleanup(evil)
        elif op == 6 and blocks: rng.choice(blocks).free()
        elif op == 7 and blocks:
            i = rng.randrange(len(blocks)); blocks[i] = blocks[i].resize(rng.randrange(0, 300))
        elif op == 8: p.destroy()
        elif op == 9: p.reset()
        elif op == 10: gc.collect()
        elif op == 11: list(p.blocks())
        elif op == 12: p.snapshot(blocks=True, children=True)
        elif op == 13 and blocks:
            b = rng.choice(blocks)
            with memoryview(b) as v:
                if len(v): v[0] = 1
                if rng.random() < .3: act(nested=True)
        elif op == 14 and blocks: b = rng.choice(blocks); b.tobytes(); b.write(b"z"[:len(b)])
        elif op == 15 and blocks: del blocks[rng.randrange(len(blocks))]
        elif op == 16 and pools: 
            i = rng.randrange(len(pools)); del pools[i]
        elif op == 17:
            gc.set_threshold(rng.choice([1, 2, 10, 700]))
        elif op == 18 and not nested:
            stat_create_pool(); b = stat_alloc(rng.randrange(50)); blocks.append(b)
        elif op == 19 and rng.random() < .3: stat_destroy_pool()
    except (RingpoolError, ValueError, BufferError, MemoryError, TypeError, IndexError) as e:
        pass
for _ in range(400):
    act()
gc.set_threshold(700)
for p in list(pools):
    try:
        if not p.destroyed: p.check()
    except RingpoolError as e:
        if type(e).__name__ == "CorruptPool": raise
blocks.clear(); pools.clear(); gc.collect()
print("ok")
"""

SEEDS = [118, 148, 89, 180, 244, 274, 1316, 1438, 1500, 2505, 1, 2, 3, 4, 5, 6, 7, 8]


def _more_seeds(spec: str) -> list[int]:
    """$RINGPOOL_REENTRANCY_SEEDS: more seeds to run, "601-1500" or "7,9,20-30"."""
    seeds: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if part:
            first, _, last = part.partition("-")
            seeds.extend(range(int(first), int(last or first) + 1))
    return [seed for seed in seeds if seed not in SEEDS]


SEEDS += _more_seeds(os.environ.get("RINGPOOL_REENTRANCY_SEEDS", ""))


@pytest.mark.parametrize("seed", SEEDS)
def test_reentrant_callbacks_never_crash(seed: int) -> None:
    assert script_output(FUZZ, str(seed), quiet=True).endswith("ok"), seed


# The same driver with a memprof tracker (rate 1, 0.1 or 0.01, seeded) whose
# alloc and dealloc callbacks call back into the pools: a dealloc that a destroy
# or reset runs (outside every cleanup) reached pools the library had freed
# (seeds 4, 5, 11, 19, 29 and 277: SIGSEGV, SIGABRT, heap corruption), and,
# once those were held, seed 277 a child pool that a gc callback had made
# while a reset listed its pools.
FUZZ_MEMPROF = FUZZ.replace(
    "from allocator import Pool,", "from allocator import memprof, Pool,", 1).replace(
    "    op = rng.randrange(20)\n",
    "    op = rng.randrange(20) if rng.random() < .9 else 19\n", 1).replace(
    "        elif op == 19 and rng.random() < .3: stat_destroy_pool()\n",
    """        elif op == 19 and rng.random() < .3: stat_destroy_pool()
        elif op == 19:
            if memprof.running() is None:
                memprof.start(rate=rng.choice([1.0, 0.1, 0.01]), seed=rng.randrange(1, 1 << 62),
                              tracker=memprof.Tracker(alloc=lambda a: evil() or 1,
                                                      dealloc=lambda v: evil()))
            else:
                memprof.stop()
""", 1).replace(
    "for _ in range(400):\n    act()\n",
    "for _ in range(400):\n    act()\nif memprof.running(): memprof.stop()\n", 1)
assert FUZZ_MEMPROF.count("memprof") == 7

MEMPROF_SEEDS = [4, 5, 11, 19, 29, 277, 1, 2, 3, 15]


@pytest.mark.parametrize("seed", MEMPROF_SEEDS)
def test_reentrant_memprof_callbacks_never_crash(seed: int) -> None:
    assert script_output(FUZZ_MEMPROF, str(seed), quiet=True).endswith("ok"), seed
