"""Every Pool and Block method on both backings (the `pool` fixture)."""

from __future__ import annotations

import os

import pytest

from allocator import (KEEP_ALL, Block, InvalidBlock, OutOfMemory, Pool, PoolDestroyedError,
                       PoolInfo, Snapshot, TagStat)


def stats(pool: Pool) -> dict[str, TagStat]:
    return {t.tag: t for t in pool.snapshot().tags}


def test_alloc_counts_and_tags(pool: Pool) -> None:
    b = pool.alloc(1024, tag="tokens")
    assert isinstance(b, Block)
    assert (b.size, len(b), b.tag, b.pool) == (1024, 1024, "tokens", pool)
    assert b.address % 16 == 0
    assert pool.outstanding() == (1, 1024)
    assert stats(pool)["tokens"] == TagStat("tokens", 1, 1024, 1024, 1)
    b.free()
    assert pool.outstanding() == (0, 0)
    assert stats(pool)["tokens"] == TagStat("tokens", 0, 0, 1024, 1)


def test_default_tag_is_caller_location(pool: Pool) -> None:
    b = pool.alloc(8); line = b.tag.rsplit(":", 1)  # noqa: E702 -- same line on purpose
    assert os.path.basename(line[0]) == "test_pool_api.py"
    assert int(line[1]) == test_default_tag_is_caller_location.__code__.co_firstlineno + 1


def test_size_zero_blocks_are_unique(pool: Pool) -> None:
    a, b = pool.alloc(0, tag="z"), pool.alloc(0, tag="z")
    assert a.address != b.address and len(a) == 0 and bytes(a) == b""
    assert pool.outstanding() == (2, 0)


def test_calloc_zeroed(pool: Pool) -> None:
    # dirty memory first so a non-zeroing calloc would show
    d = pool.alloc(160, tag="dirty")
    memoryview(d)[:] = b"\xff" * 160
    d.free()
    z = pool.calloc(10, 16, tag="table")
    assert z.size == 160 and bytes(z) == bytes(160)


def test_strdup_and_strconcat(pool: Pool) -> None:
    s = pool.strdup("hello", tag="names")
    assert bytes(s) == b"hello\0" and s.size == 6
    u = pool.strdup("héllo", tag="names")
    assert bytes(u) == "héllo".encode() + b"\0"
    c = pool.strconcat("ab", b"cd", "", "e", tag="cat")
    assert bytes(c) == b"abcde\0"
    assert bytes(pool.strconcat(tag="cat")) == b"\0"
    with pytest.raises(ValueError, match="NUL"):
        pool.strdup("a\0b")
    with pytest.raises(TypeError):
        pool.strdup(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pool.strconcat("a", 1)  # type: ignore[arg-type]


def test_memdup(pool: Pool) -> None:
    assert bytes(pool.memdup(b"\x00\x01", tag="raw")) == b"\x00\x01"
    assert bytes(pool.memdup(bytearray(b"xyz"))) == b"xyz"
    assert bytes(pool.memdup(memoryview(b"abcdef")[1:4])) == b"bcd"
    assert len(pool.memdup(b"")) == 0
    with pytest.raises(TypeError):
        pool.memdup("text")  # type: ignore[arg-type]


@pytest.mark.parametrize("align", [1, 2, 16, 64, 4096, 1 << 20])
def test_alloc_aligned(pool: Pool, align: int) -> None:
    a = pool.alloc_aligned(align, 100, tag="page")
    assert a.address % align == 0 and a.size == 100
    memoryview(a)[:] = b"\x5a" * 100
    r = a.resize(5000)
    assert bytes(r)[:100] == b"\x5a" * 100
    r.free()
    assert pool.outstanding() == (0, 0)


def test_resize_keeps_tag_and_content(pool: Pool) -> None:
    b = pool.alloc(16, tag="grow")
    memoryview(b)[:] = bytes(range(16))
    c = b.resize(4096)
    assert c.tag == "grow" and c.size == 4096 and bytes(c)[:16] == bytes(range(16))
    assert b.freed and not c.freed
    d = c.resize(4)
    assert bytes(d) == bytes(range(4))
    e = d.resize(0)
    assert e.size == 0 and pool.outstanding() == (1, 0)
    assert stats(pool)["grow"].allocs == 1


def test_free_through_pool_and_wrong_pool(pool: Pool, backing: str) -> None:
    b = pool.alloc(8, tag="x")
    with Pool("other", backing=backing) as other:
        with pytest.raises(InvalidBlock, match="belongs to pool 'test'"):
            other.free(b)
        with pytest.raises(ValueError):  # InvalidBlock is a ValueError
            other.free(b)
    assert not b.freed
    pool.free(b)
    assert b.freed
    with pytest.raises(TypeError):
        pool.free(object())  # type: ignore[arg-type]


def test_blocks_walk_returns_the_live_blocks(pool: Pool) -> None:
    made = [pool.alloc(n, tag=f"t{n % 3}") for n in range(1, 30)]
    for b in made[::2]:
        b.free()
    live = list(pool.blocks())
    assert sorted(id(b) for b in live) == sorted(id(b) for b in made[1::2])
    assert list(iter(pool)) == live


def test_info(pool: Pool, backing: str) -> None:
    for n in range(10):
        pool.alloc(100, tag=f"tag{n % 2}")
    info = pool.info()
    assert isinstance(info, PoolInfo)
    assert (info.blocks, info.bytes, info.allocs, info.tags) == (10, 1000, 10, 2)
    assert info.backing == backing and info.peak_bytes == 1000
    assert info.reserved_bytes >= 1000
    assert (info.chunks > 0) == (backing == "arena")


def test_snapshot_and_check(pool: Pool) -> None:
    pool.alloc(10, tag="a")
    pool.alloc(20, tag="b")
    snap = pool.snapshot()
    assert isinstance(snap, Snapshot)
    assert snap.pool == "test" and snap.reason == "request" and snap.pid == os.getpid()
    assert (snap.totals.blocks, snap.totals.bytes) == (2, 30)
    assert snap.blocks is None
    full = pool.snapshot(blocks=True)
    assert full.blocks is not None and sorted(b.size for b in full.blocks) == [10, 20]
    pool.check()


def test_options_validation(backing: str) -> None:
    with pytest.raises(ValueError, match="backing"):
        Pool("p", backing="mmap")
    with pytest.raises(TypeError):
        Pool(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        Pool("a\0b")
    with pytest.raises(ValueError, match="arena"):
        Pool("p", backing="malloc", chunk_size=4096)
    with pytest.raises(ValueError):
        Pool("p", backing="arena", chunk_size=-1)
    with pytest.raises(TypeError):
        Pool("p", backing="arena", keep_bytes=1.5)  # type: ignore[arg-type]
    with Pool("p", backing="arena", chunk_size=1 << 16, keep_bytes=KEEP_ALL) as p:
        p.alloc(100)
        assert p.info().chunks >= 1
    for ts in (True, False):
        for ck in (True, False):
            with Pool("p", thread_safe=ts, checked=ck, backing=backing) as p:
                assert (p.thread_safe, p.checked, p.backing) == (ts, ck, backing)
                p.alloc(1).free()


def test_context_manager_and_idempotent_destroy(backing: str) -> None:
    with Pool("ctx", backing=backing) as p:
        p.alloc(10)
    assert p.destroyed
    p.destroy()
    p.destroy()
    with pytest.raises(PoolDestroyedError):
        p.alloc(1)
    with pytest.raises(PoolDestroyedError):
        p.snapshot()
    with pytest.raises(PoolDestroyedError):
        p.outstanding()
    with pytest.raises(PoolDestroyedError):
        with p:
            pass


def test_raise_on_oom_false_returns_none(pool: Pool) -> None:
    huge = 1 << 60
    assert pool.alloc(huge, raise_on_oom=False) is None
    assert pool.calloc(1 << 40, 1 << 40, raise_on_oom=False) is None
    assert pool.alloc_aligned(64, huge, raise_on_oom=False) is None
    b = pool.alloc(8, tag="keep")
    assert b.resize(huge, raise_on_oom=False) is None
    assert not b.freed and pool.outstanding() == (1, 8)
    with pytest.raises(OutOfMemory):
        b.resize(huge)
    assert not b.freed
    pool.check()


def test_repr(pool: Pool) -> None:
    b = pool.alloc(3, tag="r")
    assert "size=3" in repr(b) and "'r'" in repr(b) and "'test'" in repr(pool)
    b.free()
    assert "freed" in repr(b)


def test_block_cannot_be_made_directly() -> None:
    with pytest.raises(TypeError, match="made by a Pool"):
        Block(0, 10)


def test_tobytes_and_write(pool: Pool) -> None:
    b = pool.calloc(1, 8, tag="w")
    b.write(b"abc", 2)
    assert b.tobytes() == b"\0\0abc\0\0\0"
    with pytest.raises(ValueError, match="exceeds"):
        b.write(b"abc", 6)
    with pytest.raises(ValueError):
        b.write(b"a", -1)
    with pytest.raises(TypeError):
        b.write(b"a", 1.0)  # type: ignore[arg-type]


def test_pools_and_blocks_cannot_be_pickled_or_copied(pool: Pool) -> None:
    import copy
    import pickle
    b = pool.alloc(4)
    for obj in (pool, b):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(obj)
        with pytest.raises(TypeError):
            copy.copy(obj)
        with pytest.raises(TypeError):
            copy.deepcopy(obj)
