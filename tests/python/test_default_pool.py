"""The default-pool facade (rp_stat_*)."""

from __future__ import annotations

import threading
import time

import pytest

import allocator
from allocator import BlockFreedError, BlockInUse, InvalidBlock, NoDefaultPool, Pool


def test_facade_lifecycle() -> None:
    assert allocator.stat_pool() is None
    with pytest.raises(NoDefaultPool, match="stat_create_pool"):
        allocator.stat_alloc(10)
    pool = allocator.stat_create_pool()
    try:
        assert allocator.stat_create_pool() is pool and allocator.stat_pool() is pool
        a = allocator.stat_alloc(10)
        z = allocator.stat_calloc(4, 4)
        s = allocator.stat_strdup("hi")
        c = allocator.stat_strconcat("a", b"b")
        assert (a.tag, bytes(z), bytes(s), bytes(c)) == ("rp_stat", bytes(16), b"hi\0", b"ab\0")
        a2 = allocator.stat_resize(a, 100)
        assert a.freed and a2.size == 100
        allocator.stat_free(z)
        assert z.freed
        with pytest.raises(BlockFreedError):
            allocator.stat_free(z)
        assert pool.outstanding() == (3, 100 + 3 + 3)
        with Pool("other") as other:
            with pytest.raises(InvalidBlock):
                allocator.stat_free(other.alloc(1))
        with pytest.raises(TypeError):
            allocator.stat_free("x")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            allocator.stat_alloc(-1)
        with pytest.raises(MemoryError):
            allocator.stat_alloc(1 << 62)
    finally:
        allocator.stat_destroy_pool()
    assert allocator.stat_pool() is None and pool.destroyed and s.freed
    with pytest.raises(NoDefaultPool):
        allocator.stat_strdup("x")
    allocator.stat_destroy_pool()      # no-op without a pool


def test_a_destroy_a_view_stopped_leaves_the_default_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    # stat_destroy_pool() stopped by a live view (BlockInUse) forgot the default pool that
    # the library still had: stat_create_pool() then made a second Pool over the same C
    # pool, and the first one's destroy freed the second one's blocks under them (a write
    # through a view of one reached freed memory)
    pool = allocator.stat_create_pool()
    try:
        b = allocator.stat_alloc(8)
        view = memoryview(b)
        with pytest.raises(BlockInUse):
            allocator.stat_destroy_pool()
        assert allocator.stat_pool() is pool and not b.freed and not pool.destroyed
        assert allocator.stat_create_pool() is pool
        c = allocator.stat_alloc(64)
        assert c.pool is pool and pool.outstanding() == (2, 72)
        # another thread's stat_create_pool() while the destroy is being refused: the
        # library's default is still this pool, which it gets
        made: list[Pool] = []
        destroy = pool.destroy

        def destroy_meanwhile() -> None:
            made.append(allocator.stat_create_pool())
            destroy()
        monkeypatch.setattr(pool, "destroy", destroy_meanwhile)
        with pytest.raises(BlockInUse):
            allocator.stat_destroy_pool()
        monkeypatch.undo()
        assert made == [pool] and allocator.stat_pool() is pool
        view.release()
    finally:
        allocator.stat_destroy_pool()
    assert b.freed and c.freed and pool.destroyed and allocator.stat_pool() is None


@pytest.mark.threads
def test_create_while_another_thread_destroys_the_default_pool(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # stat_create_pool() asked the library for its default while another
    # thread's stat_destroy_pool() was about to destroy it; by the time it
    # looked, that pool's Pool read as destroyed, so it made a second Pool
    # over the C pool the destroy freed: the library's default was gone, and
    # the stat_* calls of that Pool got plain malloc memory or blocks freed
    # under them (ThreadSanitizer: a block written by rp_stat_strdup freed by
    # rp_stat_destroy_pool).  Here the library's answer is held back until
    # the destroy is done (or until it is clear that it waits for this call).
    from allocator import _lowlevel as ll
    from allocator import _stat
    pool = allocator.stat_create_pool()
    allocator.stat_alloc(8)
    started, go = threading.Event(), threading.Event()
    destroy, ask = pool.destroy, ll.stat_create_pool

    def destroy_later() -> None:
        started.set()
        go.wait(10)
        destroy()

    def ask_then_wait() -> ll.CData:
        ptr = ask()
        go.set()
        for _ in range(50):             # the destroy, if this call does not hold it back
            if pool.destroyed:
                break
            time.sleep(0.01)
        return ptr

    monkeypatch.setattr(pool, "destroy", destroy_later)
    monkeypatch.setattr(ll, "stat_create_pool", ask_then_wait)
    t = threading.Thread(target=allocator.stat_destroy_pool)
    t.start()
    try:
        started.wait(10)
        made = allocator.stat_create_pool()
    finally:
        go.set()
        t.join()
        monkeypatch.undo()
    # the pool the library named was the one going: no second Pool over it
    assert made is pool and pool.destroyed
    assert allocator.stat_pool() is None and ll.lib.rp_stat_pool() == ll.NULL
    new = allocator.stat_create_pool()
    try:
        assert new is not pool and new._address == ll.address(ll.lib.rp_stat_pool())
        assert allocator.stat_alloc(8).pool is new
    finally:
        allocator.stat_destroy_pool()
    assert _stat._default is None or _stat._default.destroyed
