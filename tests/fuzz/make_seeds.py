#!/usr/bin/env python3
"""Writes the hand-made inputs of the C fuzzer (tests/fuzz/fuzz_pool.c).

Any byte string is a valid input; these are spelled in the harness's
decoding, one operation at a time, so that each one reaches a situation a
random input rarely builds:

  corpus/seed-*      libFuzzer seeds, replayed by ``make test-fuzz``;
  scenarios/*        fixed scenarios of the out-of-memory injection
                     (``fuzz_pool --oom BACKING --scenario FILE``).

Run it again after changing the decoding in fuzz_pool.c:
``python3 tests/fuzz/make_seeds.py``.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

# Operation codes: the first value of each range in run_input().
CREATE, CREATE_CHILD, DESTROY, RESET, ALLOC, THREAD = 0, 20, 34, 40, 45, 99
CALLOC, ALIGNED, RESIZE, FREE = 100, 110, 120, 150
STRINGS, DESTRUCTOR, CLEANUP, CHECK = 190, 202, 212, 222
REPORT, INTERN, MISUSE, BUFFER_TAG = 228, 233, 239, 246

UNSYNC, CHECKED, ARENA = 1, 2, 4
# the input's first byte: no checked pool (bit 1), RINGPOOL_SHARD_BIAS=0 (bit 2)
NO_CHECKED, LOCKED, STACKS = 2, 4, 16
STAT = 254
# create()'s flag that makes a stack pool when the input's mode has STACKS
STACK_POOL = 8
# op_thread's operations (the index of each in its table)
T_ALLOC, T_FREE, T_CREATE = 0, 2, 10


def u16(v: int) -> list[int]:
    return [v & 0xFF, (v >> 8) & 0xFF]


def create(flags: int, chunk: int = 3, keep: int = 0) -> list[int]:
    """A root pool; chunk indexes the harness's chunk sizes, keep its caps."""
    return [CREATE, flags, chunk | (keep << 3)]


def create_huge_chunk(which: int) -> list[int]:
    """An arena pool whose chunk_size rounding overflows."""
    return [CREATE, ARENA | (which << 6), 7 << 5]


def alloc(pool: int, size: int, tag: int = 0, plain: bool = False) -> list[int]:
    """size < 65 or < 5000; tag indexes the static tags."""
    how = 2 | int(plain)
    if size < 65:
        return [ALLOC, pool, how, tag, 0, size]
    return [ALLOC, pool, how, tag, 215, *u16(size)]


def destructor(block: int, fn: int = 1) -> list[int]:
    return [DESTRUCTOR, *u16(block), fn]


def destructor_action(block: int, arg: int) -> list[int]:
    """dtor_c: arg % 4 is 0 destroy another pool, 1 create a sibling, 2 create a
    child of the block's pool, 3 add a cleanup (action arg >> 2) to it."""
    return [DESTRUCTOR, *u16(block), 240, arg]


def create_child(parent: int) -> list[int]:
    """A child inheriting the options of the pool parent indexes."""
    return [CREATE_CHILD, 0, 0, parent]


def alloc_big(pool: int, size: int) -> list[int]:
    """30000 <= size < 42000."""
    return [ALLOC, pool, 2, 0, 240, *u16(size - 30000)]


def calloc_big(pool: int, total: int, n_log2: int = 0, reuse: bool = False) -> list[int]:
    """n = 2 ** n_log2 elements, total >= 32768 a multiple of 4; reuse: a big
    block of the pool is freed first and its size taken."""
    r = (n_log2 << 1) | (0x18 if reuse else 0)
    return [CALLOC, pool, 2, 0, 232, r, *u16((total - 32768) // 4)]


def resize_plain(block: int, size: int) -> list[int]:
    """rp_resize(NULL, block, size), size < 5000 or 30000 <= size < 42000."""
    if size < 5000:
        return [RESIZE, 5, *u16(block), 0, 215, *u16(size)]
    return [RESIZE, 5, *u16(block), 0, 240, *u16(size - 30000)]


def calloc_big_plain(pool: int, total: int) -> list[int]:
    """rp_calloc(pool, 1, total), total >= 32768 a multiple of 4."""
    return [CALLOC, pool, 3, 0, 232, 0, *u16((total - 32768) // 4)]


def calloc_small_plain(pool: int, n: int, size: int) -> list[int]:
    """rp_calloc(pool, n, size), n < 40, size < 70."""
    return [CALLOC, pool, 3, 0, n, size]


def stat(how: int, size: int = 0) -> list[int]:
    """The default pool: the first call makes it (how even); then how >> 1 is
    0 alloc, 1 calloc, 2 strdup, 3 strconcat, and how & 1 the plain form."""
    return [STAT, how, 0, size]


def aligned(pool: int, a: int, size: int) -> list[int]:
    """rp_alloc_aligned_noexc, alignment 1 << (a % 13) (a < 250, a % 23 != 0), size < 65."""
    return [ALIGNED, pool, 2, a, 0, 0, size]


def corrupt(block: int, what: int) -> list[int]:
    """A checked block's header or what lies below it overwritten and put back
    (fuzz_pool.c corrupt_probe: 0 size word, 1 origin, 2 guard, 3 raw pointer
    of an aligned block, 4 big-block record)."""
    return [MISUSE, 3 | (what << 2), *u16(block)]


def on_thread(index: int, op: list[int], exits: bool = False) -> list[int]:
    """op (its bytes after the operation code) on the other thread."""
    return [THREAD, index + (224 if exits else 0), *op[1:]]


def resize(block: int, size: int) -> list[int]:
    """resize_noexc(NULL, block, size), size < 5000 or 30000 <= size < 42000."""
    if size < 5000:
        return [RESIZE, 4, *u16(block), 0, 215, *u16(size)]
    return [RESIZE, 4, *u16(block), 0, 240, *u16(size - 30000)]


def free(block: int, twice: bool = False) -> list[int]:
    return [FREE, *u16(block), 6 if twice else 1]


def destroy(pool: int, probe_stale: bool = False, report: bool = False) -> list[int]:
    return [DESTROY, pool, (6 if probe_stale else 0) | int(report)]


def report(pool: int, flags: int = 1) -> list[int]:
    return [REPORT, pool, flags]


def intern(pool: int, raw: bytes) -> list[int]:
    # the harness maps each byte b to 1 + b % 255
    return [INTERN, pool, len(raw), *[(c - 1) % 255 for c in raw]]


def alloc_interned(pool: int, size: int, which: int, count: int) -> list[int]:
    """A block tagged with the pool's interned tag number which (of count)."""
    b = next(v for v in range(225, 256) if v % count == which)
    return [ALLOC, pool, 2, b, 0, size]


def buffer_tag(pool: int, content: int) -> list[int]:
    return [BUFFER_TAG, pool, content]


def write(path: Path, ops: list[list[int]], checked_mode: bool = False, mode: int = 0) -> None:
    data = bytes([int(checked_mode) | mode] + [b for op in ops for b in op])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main() -> None:
    corpus, scenarios = HERE / "corpus", HERE / "scenarios"

    # Destructors on many malloc blocks, then moving resizes: the destructor
    # map loses and gains keys and must grow while blocks move (the OOM
    # injection fails that growth).
    ops = [create(0)]
    ops += [alloc(0, 16 + i) for i in range(24)]
    ops += [destructor(i, 1 + i % 2) for i in range(24)]
    for rnd in range(3):
        ops += [resize(i, 300 + 40 * i + 1000 * rnd) for i in range(24)]
    ops += [free(i) for i in range(0, 24, 3)]
    write(scenarios / "destructors-resized", ops)

    # Every kind of pool alive together, with children, cleanups and reports.
    ops = [create(0), create(CHECKED), create(ARENA, 4), create(ARENA | CHECKED, 2, 1),
           create(UNSYNC), create(UNSYNC | ARENA | CHECKED, 5, 3)]
    for p in range(6):
        ops += [alloc(p, 8 * p, p % 8), alloc(p, 1000 + p, (p + 1) % 8), alloc(p, 40, 2, True)]
    ops += [[CLEANUP, p, 2 * (p % 4)] for p in range(6)]
    ops += [destructor(b) for b in range(0, 18, 4)]
    ops += [report(p, 3) for p in range(6)]
    ops += [[CHECK], destroy(1, report=True), [RESET, 0, 0], [CHECK]]
    write(scenarios / "every-pool", ops)
    write(corpus / "seed-every-pool", ops)

    # The out-of-memory paths of moving and growing: stack pools (their
    # records must grow) and a child of one, a checked pool (its registry),
    # destructors on moved blocks (the destructor map), headerless slots of an
    # unsynchronised pool with destructors, big blocks resized and calloc'd by
    # plain calls, and the default pool's plain calls.
    ops = [create(STACK_POOL), create(CHECKED | STACK_POOL), create(UNSYNC), create_child(0)]
    ops += [alloc(0, 24), alloc(0, 2000), alloc(1, 40), alloc(1, 3000), alloc(2, 8),
            alloc(2, 16), alloc(3, 48), alloc_big(2, 35000), alloc_big(0, 33000)]
    ops += [destructor(4), destructor(5, 2), destructor(0), destructor(2), destructor(6)]
    ops += [resize(0, 900), resize(1, 4000), resize(2, 700), resize(3, 100), resize(4, 12),
            resize(5, 40), resize(6, 3000), resize(4, 64)]
    ops += [resize_plain(7, 41000), resize_plain(8, 39000), resize_plain(3, 60),
            calloc_big_plain(2, 36000), calloc_big_plain(0, 33000)]
    ops += [stat(0, 10), stat(1, 20), stat(3, 5), stat(5), stat(7)]
    ops += [[CHECK], destroy(0), [CHECK]]
    write(scenarios / "moves-and-growth", ops, mode=STACKS)
    write(corpus / "seed-moves-and-growth", ops, mode=STACKS)

    # The same in a process that never has a checked pool (the fast paths of
    # resize: big arena blocks grown and shrunk by realloc, malloc blocks
    # grown by small steps with headroom asked for), and a pool with more
    # tags than its tag table's first 16 buckets (the table grows).
    ops = [create(STACK_POOL), create(0), create(UNSYNC), create_child(0)]
    ops += [alloc(0, 24), alloc(1, 1000), alloc(1, 3000), alloc(2, 8), alloc(2, 16), alloc(3, 48),
            alloc_big(2, 35000), alloc_big(1, 33000), alloc_big(0, 34000)]
    ops += [destructor(3), destructor(0), destructor(5)]
    ops += [resize(0, 900), resize_plain(1, 1100), resize(1, 1200), resize(2, 3300),
            resize(3, 12), resize(4, 40), resize(5, 3000)]
    ops += [resize_plain(6, 41000), resize(6, 36000), resize(6, 1000), resize_plain(7, 39000),
            resize(8, 40000), resize(8, 0),
            calloc_big_plain(2, 36000), calloc_big_plain(1, 33000),
            calloc_small_plain(2, 1, 8), calloc_small_plain(2, 3, 5)]
    ops += [intern(1, b"t%02d" % k) for k in range(18)]
    ops += [alloc_interned(1, 8 + k, k, 8) for k in range(8)]
    ops += [stat(0, 10), stat(1, 20), stat(5)]
    ops += [[CHECK], destroy(0), [CHECK]]
    write(scenarios / "moves-unchecked", ops, mode=STACKS | NO_CHECKED)
    write(corpus / "seed-moves-unchecked", ops, mode=STACKS | NO_CHECKED)

    # Underflows of checked blocks: each part of the header, an aligned
    # block's raw pointer (malloc backing), the big-block record of an arena
    # pool's aligned and big blocks.
    ops = [create(CHECKED), create(CHECKED | ARENA), aligned(0, 6, 40), aligned(1, 7, 24),
           alloc_big(1, 41000), alloc(0, 24), alloc(1, 24)]
    ops += [corrupt(0, 3), corrupt(1, 4), corrupt(2, 4), corrupt(3, 0), corrupt(4, 1),
            corrupt(3, 2), corrupt(2, 0), [CHECK]]
    write(corpus / "seed-checked-underflow", ops)

    # Known defects of the issue, one input each (they trip the harness only
    # when the matching FUZZ_SKIP_* switch is off).
    # A checked block's address reused by an unchecked pool: a valid free must
    # not be reported.
    write(corpus / "seed-checked-then-unchecked",
          [create(CHECKED), alloc(0, 48), free(0), create(0), alloc(1, 48), free(0), [CHECK]])
    # A destroyed checked pool's block used when no checked pool is left.
    write(corpus / "seed-stale-after-last-checked",
          [create(CHECKED), alloc(0, 32), destroy(0, probe_stale=True)], checked_mode=True)
    # Tag bytes that are not UTF-8 (F5..FF leads), then a report.
    write(corpus / "seed-report-utf8",
          [create(0), intern(0, b"\xf5\x80\x80"), alloc_interned(0, 8, 0, 1), intern(0, b"\xff\xbf\xbf"),
           alloc_interned(0, 8, 1, 2), report(0, 1)])
    # A reused tag buffer in a checked pool.
    write(corpus / "seed-tag-buffer",
          [create(CHECKED), buffer_tag(0, 1), buffer_tag(0, 2), buffer_tag(0, 2), [CHECK]],
          checked_mode=True)
    # Recycled malloc blocks: the report's reserved_bytes against rp_pool_get_info.
    write(corpus / "seed-reserved-bytes",
          [create(0)] + [alloc(0, 100) for _ in range(50)] + [free(0) for _ in range(40)]
          + [report(0, 0)])
    # Arena chunk sizes whose rounding overflows.
    write(corpus / "seed-huge-chunk", [create_huge_chunk(w) for w in range(4)]
          + [alloc(0, 16), [CHECK]])
    # Destructors that leave work for their pool's teardown: a child of the
    # pool, a cleanup on it, a sibling; in a child's destroy within a reset,
    # in the reset pool itself (kept), in the final destroy.
    ops = [create(0), create_child(0), alloc(1, 24), alloc(1, 40), alloc(0, 16), alloc(0, 8)]
    ops += [destructor_action(0, 2), destructor_action(1, 3 | 1 << 2), destructor_action(2, 2),
            destructor_action(3, 1)]
    ops += [[RESET, 0, 0], [CHECK], alloc(0, 32), destructor_action(4, 3 | 3 << 2)]
    write(corpus / "seed-destructor-leaves-work", ops)
    # Big callocs of an unsynchronised arena pool (the system's calloc), one
    # in the memory of a big block just freed dirty; no checked pool.
    # (also a scenario: the system's calloc fails there under the injection)
    ops = [create(UNSYNC | ARENA), alloc_big(0, 40000), calloc_big(0, 40000, 0, reuse=True),
           [CHECK], calloc_big(0, 40768, 1), alloc_big(0, 33000), calloc_big(0, 33000, 2, reuse=True),
           [CHECK]]
    write(corpus / "seed-calloc-big-reused", ops, mode=NO_CHECKED)
    write(scenarios / "calloc-big-reused", ops, mode=NO_CHECKED)
    # Thread-safe pools used by another thread (shards), a block freed away
    # from its shard, a pool whose creating thread exited; locked pools.
    write(corpus / "seed-threads",
          [create(0), create(ARENA), on_thread(T_ALLOC, alloc(0, 24)),
           on_thread(T_ALLOC, alloc(1, 40)), free(0), on_thread(T_FREE, free(0)),
           on_thread(T_CREATE, [CREATE, 0, 0], exits=True), alloc(2, 24), alloc(0, 16),
           on_thread(T_ALLOC, alloc(2, 8)), [CHECK]], mode=NO_CHECKED | LOCKED)


if __name__ == "__main__":
    main()
