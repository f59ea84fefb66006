"""Block: one allocation of a Pool, with the buffer protocol."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Literal, NoReturn, overload

from . import _lowlevel as ll
from ._errors import (_LOST_AT_FORK, BlockFreedError, BlockInUse, InvalidArgument, PoolBusy,
                      PoolLostAtFork)
from ._ringpool import _BlockBuffer  # created by _lowlevel at import

#: What _BlockBuffer(...) and Block._make(...) must be given (the glue hands
#: it out once per import of the package, here); the Pool passes it when it
#: adopts a block.
_TOKEN: object = _BlockBuffer._token()

if TYPE_CHECKING:
    # Any object with the buffer protocol (PEP 688; typing_extensions is only
    # read by type checkers, which bundle it).
    from typing_extensions import Buffer

    from ._pool import Pool


class Block(_BlockBuffer):
    """A block of native memory owned by a :class:`Pool`.

    ``memoryview(block)`` and ``bytes(block)`` see the payload (read-write).
    Blocks are made by the pool (``Pool.alloc`` and friends), never directly.

    Safety: while a buffer view of the block is alive (a memoryview, a numpy
    array over it, ...), ``free()``, ``resize()`` and the pool's
    ``destroy()``/``reset()`` raise ``BlockInUse`` (a ``BufferError``);
    release the views first.
    A freed block (freed, resized away, or its pool destroyed or reset)
    raises :class:`BlockFreedError` on every use and exports nothing, so no
    Python object can reach freed memory.
    """

    # Every field (the payload's address and size, _pool, _tag, _why, the
    # export count) lives in the C base type (_ringpool_glue.h), which also
    # makes the hot-path Blocks itself (_BlockBuffer._alloc).
    __slots__ = ()

    _pool: Pool

    def __new__(cls, *args: object, **kwargs: object) -> Block:
        raise TypeError("Blocks are made by a Pool (pool.alloc(), pool.calloc(), ...)")

    @classmethod
    def _make(cls, token: object, pool: Pool, addr: int, size: int, tag: str) -> Block:
        """A Block over a block the library just handed to ``pool``.  ``token``
        is the glue's (_TOKEN): without it no Block is made over a made-up
        address by mistake."""
        self: Block = _BlockBuffer.__new__(cls, token, addr, size)  # type: ignore[assignment]
        self._pool = pool
        self._tag = tag
        return self

    # -- state ----------------------------------------------------------------
    # The glue raises through these (_ringpool_glue.h): a dead block, one a
    # free or resize is under way on, one a live buffer view holds.
    def _raise_freed(self) -> NoReturn:
        if self._pool._state.lost:   # a forked child: the pool's family is lost there
            raise PoolLostAtFork(f"block {self._tag!r}: its pool {self._pool.name!r} "
                                 f"{_LOST_AT_FORK}")
        why = self._why or "was freed"
        raise BlockFreedError(
            f"block {self._tag!r} of pool {self._pool.name!r} {why}: it can no longer be used")

    def _raise_busy(self) -> NoReturn:
        raise PoolBusy(f"block {self._tag!r} of pool {self._pool.name!r} is being freed or "
                       "resized (called from a memprof tracker of that free or resize?)")

    def _raise_in_use(self, views: int) -> NoReturn:
        raise BlockInUse(f"block has {views} live buffer view(s) (memoryview, ...): release "
                         "them before freeing, resizing or destroying")

    def _live(self) -> None:
        if not self._alive:
            self._raise_freed()

    @property
    def freed(self) -> bool:
        """True once the block was freed, resized away or bulk-freed with its pool."""
        return not self._alive

    # -- properties -----------------------------------------------------------
    @property
    def address(self) -> int:
        """The payload's address (an int)."""
        self._live()
        return self._addr

    @property
    def size(self) -> int:
        """The requested size in bytes."""
        self._live()
        return self._size

    @property
    def tag(self) -> str:
        """The origin tag."""
        self._live()
        return self._tag

    @property
    def pool(self) -> Pool:
        """The pool the block belongs (or belonged) to."""
        return self._pool

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Block cannot be pickled or copied (it is native memory of "
                        "one pool): use bytes(block) or pool.memdup(block)")

    def __len__(self) -> int:
        self._live()
        return self._size

    def __repr__(self) -> str:
        if not self._alive:
            return f"<Block {self._tag!r} of pool {self._pool.name!r}, freed>"
        return (f"<Block {self._tag!r} size={self._size} at {self._addr:#x} "
                f"of pool {self._pool.name!r}>")

    # -- copies without an export (usable from cleanups) -----------------------
    def tobytes(self) -> bytes:
        """A copy of the payload."""
        with self._pool._lock:
            self._pool._reach(self)
            buf = ll.ffi.buffer(ll.pointer(self._addr), self._size)
            # Making buf may have run the gc, whose callbacks or __del__ may
            # have freed this block: check again with nothing left to allocate.
            self._live()
            return bytes(buf)

    def write(self, data: Buffer, offset: int = 0) -> None:
        """Copies ``data`` into the payload at ``offset`` (bounds-checked)."""
        view = memoryview(data).cast("B")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, not {type(offset).__name__}")
        # An exact int: an int subclass's comparisons run Python code (that
        # could free this block) between the checks and the copy.
        offset = operator.index(offset)
        with self._pool._lock:
            self._pool._reach(self)
            if offset < 0 or offset + len(view) > self._size:
                raise InvalidArgument(f"write of {len(view)} bytes at offset {offset} "
                                 f"exceeds the block's {self._size} bytes")
            buf = ll.ffi.buffer(ll.pointer(self._addr), self._size)
            self._live()  # as in tobytes(): the gc may have run meanwhile
            buf[offset:offset + len(view)] = view

    # -- lifetime -------------------------------------------------------------
    def free(self) -> None:
        """Frees the block (``rp_free``). A second free raises BlockFreedError."""
        self._pool._free_block(self)

    @overload
    def resize(self, size: int, *, raise_on_oom: Literal[True] = ...) -> Block: ...
    @overload
    def resize(self, size: int, *, raise_on_oom: bool) -> Block | None: ...

    def resize(self, size: int, *, raise_on_oom: bool = True) -> Block | None:
        """A block of ``size`` bytes with this one's content (up to the smaller
        size) and tag (``rp_resize``); this Block is dead afterwards, even if the
        address did not change.  On failure raises OutOfMemory (or returns None
        with ``raise_on_oom=False``) and this block stays valid."""
        return self._pool._resize_block(self, size, raise_on_oom)
