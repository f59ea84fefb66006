"""Bad arguments give the documented exception, name the argument, and change nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

import allocator
from allocator import InvalidArgument, OutOfMemory, Pool, ReportError


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


# -- a failed call changes nothing; one reserved_bytes everywhere ---------------
def _everything(pool: Pool, tmp_path: Path) -> tuple[object, ...]:
    report = tmp_path / "r.json"
    pool.write_report(str(report))
    doc = json.loads(report.read_text())
    info = pool.info()
    return (pool.outstanding(), pool.snapshot().tags, info.tags, info.blocks, info.allocs,
            [t["tag"] for t in doc["tags"]])


def test_failed_noexc_calls_leave_no_new_tag(pool: Pool, tmp_path: Path) -> None:
    pool.alloc(8, tag="kept").free()
    before = _everything(pool, tmp_path)
    huge = 1 << 60
    assert pool.alloc(huge, tag="never-1", raise_on_oom=False) is None
    assert pool.calloc(1 << 40, 1 << 40, tag="never-2", raise_on_oom=False) is None
    assert pool.alloc_aligned(64, huge, tag="never-3", raise_on_oom=False) is None
    with pytest.raises(OutOfMemory):
        pool.alloc(huge, tag="never-4")
    assert _everything(pool, tmp_path) == before
    # The tag works normally once an allocation under it succeeds.
    pool.alloc(8, tag="never-1").free()
    assert "never-1" in [t.tag for t in pool.snapshot().tags]


@pytest.mark.parametrize("backing", ["malloc", "arena"])
def test_reserved_bytes_is_the_same_in_info_snapshot_and_report(backing: str,
                                                                tmp_path: Path) -> None:
    with Pool("reserve", backing=backing) as pool:
        blocks = [pool.alloc(100, tag="r") for _ in range(50)]
        for block in blocks[:40]:
            block.free()                   # the malloc backing keeps some for reuse
        report = tmp_path / "r.json"
        pool.write_report(str(report))
        from_report = json.loads(report.read_text())["totals"]["reserved_bytes"]
        assert pool.info().reserved_bytes == from_report
        assert pool.snapshot().totals.reserved_bytes == from_report
        assert from_report >= 10 * 100


def test_a_report_not_written_says_where_and_why(tmp_path: Path) -> None:
    # the reason comes from the library's report-file rule (csrc/outfile.h)
    (tmp_path / "dir.json").mkdir()
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "link.json").symlink_to(tmp_path / "nothing")
    cases = {"dir.json": "it is a directory",
             "fifo.json": "it is a FIFO with no reader (not waited for)",
             "link.json": "it is a symbolic link to nothing",
             "nodir/r.json": "cannot create its temporary file: No such file or directory"}
    with Pool("unwritten") as pool:
        for name, why in cases.items():
            with pytest.raises(ReportError) as info:
                pool.write_report(str(tmp_path / name))
            assert str(tmp_path / name) in str(info.value) and why in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.json", "fifo.json", "link.json"]
