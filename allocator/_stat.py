"""The default-pool facade (the C library's ``rp_stat_*``, OCaml's ``caml_stat_*``).

``stat_create_pool()`` creates the process-wide default pool; ``stat_alloc``
and friends then allocate blocks tagged "rp_stat" in it, and
``stat_destroy_pool()`` frees everything it holds.  The C facade behaves like
plain malloc/free before a default pool exists; Python cannot track such
memory safely, so here every ``stat_*`` allocation before
``stat_create_pool()`` raises :class:`NoDefaultPool` instead.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, cast

from . import _lowlevel as ll
from ._ringpool import _FamilyLock  # created by _lowlevel at import
from ._block import Block
from ._errors import InvalidBlock, NoDefaultPool, OutOfMemory
from ._pool import Pool, _check_size, _fork_module_locks

_TAG = "rp_stat"
# An RLock whose __exit__ allocates nothing (_ringpool_glue.h): with a
# threading.Lock, a MemoryError at the end of `with _lock:` left it held and
# the next call hung.
_lock = cast(threading.RLock, _FamilyLock())
# os.fork() takes it after every family lock (the order of stat_create_pool,
# below), so the child never starts with it held by a thread it does not have.
_fork_module_locks.append(_lock)
_default: Pool | None = None
# The last Pool made over the library's default pool (the one _default was).
_wrapped: Pool | None = None


def stat_create_pool() -> Pool:
    """Creates the default pool (a no-op when it exists) and returns it."""
    global _default, _wrapped
    while True:
        with _lock:
            if _default is not None and not _default.destroyed:
                return _default
            last = _wrapped
        # The library's default changes in a destroy of its Pool, which holds
        # that Pool's family lock and not _lock (a stat_destroy_pool() of
        # another thread), and here: the library is asked with both held, so
        # the pool it names is not being destroyed meanwhile.  Asked with
        # _lock alone, it named the pool another thread's destroy was about
        # to free, whose Pool read as destroyed by then (held), and a second
        # Pool was made over it: its stat_* calls got plain malloc memory or
        # blocks the destroy freed under them (ThreadSanitizer, make
        # test-py-tsan).  The family's lock first, as a cleanup of the default
        # pool that calls stat_* takes them; never _lock's waiter on it.
        with last._lock if last is not None else contextlib.nullcontext():
            with _lock:
                if _wrapped is not last:
                    continue            # another thread made one meanwhile
                if _default is not None and not _default.destroyed:
                    return _default
                ptr = ll.stat_create_pool()
                # The library's default may be the one a failed stat_destroy_pool()
                # left (another thread asked meanwhile): never two Pools over it.
                if (last is not None and not last.destroyed
                        and last._address == ll.address(ptr)):
                    _default = last
                else:
                    _default = _wrapped = Pool._wrap_default(ptr)
                return _default


def stat_pool() -> Pool | None:
    """The default pool, or None."""
    with _lock:
        return _default if _default is not None and not _default.destroyed else None


def stat_destroy_pool() -> None:
    """Frees every block of the default pool and the pool; a no-op without one.
    While a block of it has a live buffer view it raises BlockInUse and the
    pool stays the default, as it does in the library."""
    global _default
    with _lock:
        pool, _default = _default, None
    if pool is not None:
        try:
            pool.destroy()
        except BaseException:
            # Nothing was destroyed (BlockInUse, PoolBusy): the library never got
            # to rp_stat_destroy_pool, so the pool is still its default, and
            # stat_create_pool() would wrap it in a second Pool whose Blocks
            # this one's destroy would free under it. It stays ours.
            if not pool.destroyed:
                with _lock:
                    if _default is None:
                        _default = pool
            raise


def _pool() -> Pool:
    pool = stat_pool()
    if pool is None:
        raise NoDefaultPool("no default pool: call allocator.stat_create_pool() first")
    return pool


def _addressable(what: str, *sizes: int) -> None:
    """OutOfMemory (as the C call would give) for a size no size_t can hold."""
    for size in sizes:
        if size > ll.SIZE_MAX:
            raise OutOfMemory(f"{what}: {size} bytes cannot be addressed on this machine")


def _alloc(what: str, size: int, call: Callable[[], int]) -> Block:
    pool = _pool()
    with pool._lock:
        pool._live()
        addr = call()
        if not addr:
            ll.failed(what)
        return pool._adopt(addr, size, _TAG)


def stat_alloc(size: int) -> Block:
    """``size`` bytes from the default pool (``rp_stat_alloc``)."""
    size = _check_size(size, "size")
    _addressable("rp_stat_alloc", size)
    return _alloc("rp_stat_alloc", size, lambda: ll.stat_alloc(size))


def stat_calloc(n: int, size: int) -> Block:
    """``n * size`` zeroed bytes from the default pool."""
    n = _check_size(n, "n")
    size = _check_size(size, "size")
    _addressable("rp_stat_calloc", n, size)
    return _alloc("rp_stat_calloc", n * size, lambda: ll.stat_calloc(n, size))


def stat_strdup(s: str | bytes) -> Block:
    """A NUL-terminated copy of ``s`` in the default pool."""
    if not isinstance(s, (str, bytes)):
        raise TypeError(f"stat_strdup takes str or bytes, not {type(s).__name__}")
    data = ll.encode(s, "string")
    return _alloc("rp_stat_strdup", len(data) + 1, lambda: ll.stat_strdup(data))


def stat_strconcat(*parts: str | bytes) -> Block:
    """The concatenation of ``parts``, NUL-terminated, in the default pool."""
    for p in parts:
        if not isinstance(p, (str, bytes)):
            raise TypeError(f"stat_strconcat takes str or bytes, not {type(p).__name__}")
    data = [ll.encode(p, "string") for p in parts]
    return _alloc("rp_stat_strconcat", sum(map(len, data)) + 1,
                  lambda: ll.stat_strconcat(data))


def _own(block: object, what: str) -> Block:
    if not isinstance(block, Block):
        raise TypeError(f"{what} takes a Block, not {type(block).__name__}")
    if block.pool is not _default or block.pool._state.owner != "stat":
        raise InvalidBlock(f"{what}: block {block._tag!r} belongs to pool "
                           f"{block.pool.name!r}, not to the default pool")
    return block


def stat_resize(block: Block, size: int) -> Block:
    """``rp_stat_resize``: a resized copy; ``block`` is dead afterwards."""
    return _own(block, "stat_resize").resize(size)


def stat_free(block: Block) -> None:
    """``rp_stat_free`` of a default-pool block."""
    _own(block, "stat_free").free()


__all__ = ["stat_create_pool", "stat_pool", "stat_destroy_pool", "stat_alloc",
           "stat_calloc", "stat_strdup", "stat_strconcat", "stat_resize", "stat_free"]
