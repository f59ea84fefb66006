"""Bulk destroy against per-block free, with pytest-benchmark.

Every round frees a freshly filled container: ``benchmark.pedantic(setup=...)``
fills it (untimed) through the C kernel of ``ringpool-audit bench``, and the
timed call is one C call that frees all blocks, so no Python loop is measured.
Results are grouped per block count; correctness (blocks held after the fill)
goes into ``extra_info``.

    .venv/bin/python -m pytest benches/test_bench_bulk.py --benchmark-group-by=group
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.commands.bench import DEFAULT_SEED, kernel

K = kernel()
LIB, FFI = K.lib, K.ffi
COUNTS = [1_000, 10_000, 100_000]
STRATEGIES = {
    "ringpool-malloc-bulk-destroy": (LIB.RPB_RP_DESTROY, 0),
    "ringpool-malloc-per-block-free": (LIB.RPB_RP_FREE, 0),
    "ringpool-arena-bulk-destroy": (LIB.RPB_RP_DESTROY, LIB.RPB_POOL_ARENA),
    "ringpool-arena-per-block-free": (LIB.RPB_RP_FREE, LIB.RPB_POOL_ARENA),
    "glibc-free": (LIB.RPB_GLIBC_FREE, 0),
}
ROUNDS = {1_000: 200, 10_000: 40, 100_000: 8}


@pytest.fixture(scope="module")
def works() -> Any:
    items = {n: LIB.rpb_work_new(n, 0, LIB.RPB_ORDER_RANDOM, DEFAULT_SEED) for n in COUNTS}
    assert all(w != FFI.NULL for w in items.values())
    yield items
    for w in items.values():
        LIB.rpb_work_delete(w)


@pytest.mark.parametrize("blocks", COUNTS, ids=lambda n: f"{n}blocks")
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_free(benchmark: Any, works: Any, blocks: int, strategy: str) -> None:
    code, flags = STRATEGIES[strategy]
    work = works[blocks]
    held: list[int] = []

    def fill() -> None:
        assert LIB.rpb_fill(work, code, flags) == 0, FFI.string(LIB.rpb_last_error(work))
        held.append(int(LIB.rpb_outstanding(work)))

    benchmark.group = f"free {blocks} blocks (mixed sizes, random order)"
    benchmark.extra_info["blocks"] = blocks
    benchmark.extra_info["bytes"] = int(LIB.rpb_work_bytes(work))
    benchmark.pedantic(LIB.rpb_release, args=(work,), setup=fill, rounds=ROUNDS[blocks],
                       warmup_rounds=1, iterations=1)
    assert LIB.rpb_filled(work) == 0
    assert held and all(h == blocks for h in held)
    benchmark.extra_info["held_after_fill"] = held[0]
    benchmark.extra_info["kernel_ns_per_block_last_round"] = int(LIB.rpb_release_ns(work)) / blocks
