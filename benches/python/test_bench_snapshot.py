"""Snapshot cost vs outstanding blocks: Pool.snapshot() reads per-tag counters,
O(tags), so it must stay flat from 1e2 to 1e5 blocks; snapshot(blocks=True)
walks the ring, O(blocks), shown beside it for contrast.

Run: make bench-py
"""

from __future__ import annotations

from typing import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from allocator import Block, Pool

TAGS = 8


@pytest.fixture(params=["malloc", "arena"])
def backing(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def filled(backing: str, n: int) -> Iterator[tuple[Pool, list[Block]]]:
    pool = Pool("snap", backing=backing)
    blocks = [pool.alloc(16 + i % 64, tag=f"tag-{i % TAGS}") for i in range(n)]
    yield pool, blocks
    pool.destroy()


@pytest.mark.parametrize("n", [100, 1_000, 10_000, 100_000])
def test_snapshot_by_tag(benchmark: BenchmarkFixture, backing: str, n: int) -> None:
    benchmark.group = f"snapshot by tag ({backing})"
    for pool, _ in filled(backing, n):
        snap = benchmark(pool.snapshot)
        benchmark.extra_info["blocks"] = snap.totals.blocks
        benchmark.extra_info["tags"] = len(snap.tags)
        assert snap.totals.blocks == n and len(snap.tags) == TAGS


@pytest.mark.parametrize("n", [100, 1_000, 10_000])
def test_snapshot_with_blocks(benchmark: BenchmarkFixture, backing: str, n: int) -> None:
    benchmark.group = f"snapshot listing blocks ({backing})"
    for pool, _ in filled(backing, n):
        snap = benchmark.pedantic(pool.snapshot, kwargs={"blocks": True}, rounds=10,
                                  iterations=1)
        assert snap.blocks is not None and len(snap.blocks) == n
