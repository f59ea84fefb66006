"""Exceptions of the ``allocator`` package.

Every exception derives from :class:`RingpoolError` and from the builtin a
caller would expect (``MemoryError`` for out of memory, ``ValueError`` for a
freed or foreign block, ...), so ``except MemoryError`` keeps working.
"""

from __future__ import annotations


class RingpoolError(Exception):
    """Base of every error raised by the allocator package.

    ``code`` is the C library's ``rp_error`` number (negative) of the
    condition, 0 when it has none.
    """

    code: int = 0


class OutOfMemory(RingpoolError, MemoryError):
    """The pool could not supply the requested size (RP_ENOMEM, RP_EOVERFLOW)."""

    code = -1


class BlockFreedError(RingpoolError, ValueError):
    """The block was freed, resized away, or its pool was destroyed or reset."""

    code = -5


class BlockInUse(RingpoolError, BufferError):
    """A live buffer view (``memoryview``, ...) of the block, or of a block of
    the pool's family, stops its free, resize, reset or destroy; nothing was
    changed.  Release the views first."""


class InvalidBlock(RingpoolError, ValueError):
    """The object is not a live block of this pool (RP_EFOREIGN, RP_EWRONGPOOL)."""

    code = -8


class PoolDestroyedError(RingpoolError, ValueError):
    """The pool was destroyed (explicitly, by its parent, or by the default-pool facade)."""

    code = -9


class PoolLostAtFork(PoolDestroyedError, BlockFreedError):
    """In a child process made by ``os.fork()``: the pool's family was in use by
    another thread when the process forked (the fork went without its lock), so
    its Python and C state may disagree there.  Every call on its pools and
    every use of their blocks raises this; the memory is never touched in the
    child (it is freed when the child exits)."""

    code = -9


#: Why a pool of a family lost at a fork refuses every call (after "pool 'name' ").
_LOST_AT_FORK = ("was in use by another thread when the process forked: it cannot be used "
                 "in the child process (its memory is left as it is until the child exits)")


class InvalidArgument(RingpoolError, ValueError):
    """The C library rejected an argument (RP_EINVAL, RP_EALIGN)."""

    code = -2


class PoolBusy(RingpoolError, RuntimeError):
    """The pool is inside a walk or a cleanup (RP_EBUSY)."""

    code = -12


class CorruptPool(RingpoolError, RuntimeError):
    """``Pool.check()`` found the ring and the counters disagree (RP_ECORRUPT)."""

    code = -7


class ReportError(RingpoolError, OSError):
    """A report could not be written (RP_EIO)."""

    code = -10


class CleanupError(RingpoolError, RuntimeError):
    """A cleanup callback raised; the pool was still destroyed or reset.

    The first exception is the ``__cause__``; ``errors`` holds them all.
    """

    def __init__(self, message: str, errors: list[BaseException]) -> None:
        super().__init__(message)
        self.errors = errors


class NoDefaultPool(RingpoolError, RuntimeError):
    """The default-pool facade was used before ``stat_create_pool()``."""


# rp_error number -> exception class.
_BY_CODE: dict[int, type[RingpoolError]] = {
    -1: OutOfMemory,        # RP_ENOMEM
    -2: InvalidArgument,    # RP_EINVAL
    -3: InvalidArgument,    # RP_EALIGN
    -4: OutOfMemory,        # RP_EOVERFLOW
    -5: BlockFreedError,    # RP_EDOUBLEFREE
    -6: InvalidBlock,       # RP_EFOREIGN
    -7: CorruptPool,        # RP_ECORRUPT
    -8: InvalidBlock,       # RP_EWRONGPOOL
    -9: PoolDestroyedError,  # RP_EDESTROYED
    -10: ReportError,       # RP_EIO
    -11: InvalidArgument,   # RP_ENOTFOUND
    -12: PoolBusy,          # RP_EBUSY
}


def error_class(code: int) -> type[RingpoolError]:
    """The exception class for an ``rp_error`` code (RingpoolError if unknown)."""
    return _BY_CODE.get(code, RingpoolError)


__all__ = [
    "RingpoolError",
    "OutOfMemory",
    "BlockFreedError",
    "BlockInUse",
    "InvalidBlock",
    "PoolDestroyedError",
    "PoolLostAtFork",
    "InvalidArgument",
    "PoolBusy",
    "CorruptPool",
    "ReportError",
    "CleanupError",
    "NoDefaultPool",
    "error_class",
]
