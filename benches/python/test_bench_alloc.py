"""Python-level alloc+free of one block: ringpool pools vs cffi's ffi.new vs bytearray.

Run: make bench-py   (or .venv/bin/python -m pytest benches/python --benchmark-group-by=group)
Each round allocates one block of the group's size and frees it again
(ffi.new and bytearray free on the last reference, as Python code does).
"""

from __future__ import annotations

from typing import Callable, Iterator

import cffi
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from allocator import Pool

SIZES = [64, 4096]
ffi = cffi.FFI()


@pytest.fixture(params=[("malloc", True), ("malloc", False), ("arena", True), ("arena", False)],
                ids=["malloc-locked", "malloc-unsync", "arena-locked", "arena-unsync"])
def pool(request: pytest.FixtureRequest) -> Iterator[Pool]:
    backing, thread_safe = request.param
    p = Pool("bench", backing=backing, thread_safe=thread_safe)
    yield p
    p.destroy()


@pytest.mark.parametrize("size", SIZES)
def test_ringpool_alloc_free(benchmark: BenchmarkFixture, pool: Pool, size: int) -> None:
    benchmark.group = f"alloc+free {size} B"
    alloc = pool.alloc

    def pair() -> None:
        alloc(size, "bench").free()

    benchmark(pair)
    benchmark.extra_info["outstanding_after"] = pool.outstanding()
    assert pool.outstanding() == (0, 0)


@pytest.mark.parametrize("size", SIZES)
def test_ringpool_alloc_free_noexc(benchmark: BenchmarkFixture, size: int) -> None:
    benchmark.group = f"alloc+free {size} B"
    with Pool("bench", backing="arena", thread_safe=False) as p:
        alloc = p.alloc

        def pair() -> None:
            b = alloc(size, "bench", raise_on_oom=False)
            assert b is not None
            b.free()

        benchmark(pair)


@pytest.mark.parametrize("size", SIZES)
def test_cffi_new(benchmark: BenchmarkFixture, size: int) -> None:
    benchmark.group = f"alloc+free {size} B"
    new: Callable[[str, int], object] = ffi.new
    benchmark(lambda: new("char[]", size))


@pytest.mark.parametrize("size", SIZES)
def test_bytearray(benchmark: BenchmarkFixture, size: int) -> None:
    benchmark.group = f"alloc+free {size} B"
    benchmark(lambda: bytearray(size))
