"""ringpool for Python: pooled native memory with origin tags and leak auditing.

>>> from allocator import Pool
>>> with Pool("parser") as pool:
...     b = pool.alloc(16, tag="tokens")
...     memoryview(b)[0:5] = b"abcde"
...     bytes(b)[:5]
...     pool.snapshot().statistics()[0].tag
b'abcde'
'tokens'
"""

from __future__ import annotations

from ._block import Block
from ._errors import (BlockFreedError, BlockInUse, CleanupError, CorruptPool, InvalidArgument,
                      InvalidBlock, NoDefaultPool, OutOfMemory, PoolBusy,
                      PoolDestroyedError, PoolLostAtFork, ReportError, RingpoolError)
from ._pool import KEEP_ALL, MAX_STACK_DEPTH, Pool, PoolInfo
from ._snapshot import BlockRecord, Snapshot, TagDiff, TagStat, Totals
from ._stat import (stat_alloc, stat_calloc, stat_create_pool, stat_destroy_pool,
                    stat_free, stat_pool, stat_resize, stat_strconcat, stat_strdup)

from ._ringpool import lib as _lib

#: The C library's version (RINGPOOL_VERSION_* in ringpool.h), which is the package's.
__version__ = f"{_lib.RINGPOOL_VERSION_MAJOR}.{_lib.RINGPOOL_VERSION_MINOR}.{_lib.RINGPOOL_VERSION_PATCH}"

__all__ = [
    "Pool", "PoolInfo", "Block", "Snapshot", "TagStat", "TagDiff", "Totals",
    "BlockRecord", "KEEP_ALL", "MAX_STACK_DEPTH",
    "RingpoolError", "OutOfMemory", "BlockFreedError", "BlockInUse", "InvalidBlock",
    "PoolDestroyedError", "PoolLostAtFork", "InvalidArgument", "PoolBusy", "CorruptPool",
    "ReportError", "CleanupError", "NoDefaultPool",
    "stat_create_pool", "stat_pool", "stat_destroy_pool", "stat_alloc",
    "stat_calloc", "stat_strdup", "stat_strconcat", "stat_resize", "stat_free",
]
