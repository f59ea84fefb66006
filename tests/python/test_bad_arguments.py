"""Bad arguments give the documented exception, name the argument, and change nothing."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

import allocator
from allocator import InvalidArgument, OutOfMemory, Pool


@pytest.fixture
def default_pool() -> Iterator[Pool]:
    pool = allocator.stat_create_pool()
    yield pool
    allocator.stat_destroy_pool()


@pytest.mark.parametrize("call", [
    lambda: allocator.stat_alloc(2**64),
    lambda: allocator.stat_alloc(2**200),
    lambda: allocator.stat_calloc(2**64, 1),
    lambda: allocator.stat_calloc(1, 2**64),
    lambda: allocator.stat_calloc(2**33, 2**33),
], ids=["alloc-2**64", "alloc-2**200", "calloc-n", "calloc-size", "calloc-product"])
def test_default_pool_sizes_beyond_size_t_are_out_of_memory(
        default_pool: Pool, call: Callable[[], object]) -> None:
    before = default_pool.outstanding()
    with pytest.raises(OutOfMemory):
        call()
    assert default_pool.outstanding() == before


def test_default_pool_resize_beyond_size_t_keeps_the_block(default_pool: Pool) -> None:
    block = allocator.stat_alloc(8)
    with pytest.raises(OutOfMemory):
        allocator.stat_resize(block, 2**64)
    assert not block.freed and default_pool.outstanding() == (1, 8)
    allocator.stat_free(block)


@pytest.mark.parametrize("text", ["\ud800", "tag\udfff", "\udc80end"])
def test_lone_surrogate_in_a_tag_is_a_value_error_naming_the_tag(pool: Pool,
                                                                   text: str) -> None:
    before = (pool.outstanding(), pool.snapshot().tags)
    for call in (lambda: pool.alloc(8, tag=text), lambda: pool.calloc(2, 4, tag=text),
                 lambda: pool.strdup("x", tag=text), lambda: pool.memdup(b"x", tag=text),
                 lambda: pool.alloc_aligned(64, 8, tag=text),
                 lambda: pool.strconcat("a", tag=text)):
        with pytest.raises(ValueError, match=r"^tag must be valid Unicode.*surrogate") as info:
            call()
        assert isinstance(info.value, InvalidArgument)
        assert not isinstance(info.value, UnicodeError)
    assert (pool.outstanding(), pool.snapshot().tags) == before


def test_lone_surrogate_in_a_pool_name_is_a_value_error_naming_it(pool: Pool) -> None:
    with pytest.raises(InvalidArgument, match=r"^pool name must be valid Unicode.*\\ud800"):
        Pool("bad\ud800")
    with pytest.raises(InvalidArgument, match="^pool name must be valid Unicode"):
        pool.child("\udfff")
    assert pool.info().children == 0


def test_lone_surrogate_in_string_data_names_it(pool: Pool) -> None:
    with pytest.raises(InvalidArgument, match="^string must be valid Unicode"):
        pool.strdup("ab\ud800")
    with pytest.raises(InvalidArgument, match="^string must be valid Unicode"):
        pool.strconcat("ok", "\udc00")
    assert pool.outstanding() == (0, 0)
