"""The public API as a type checker sees it from a program's code.

`make test-py` runs `mypy --strict` on this file (beside the package) and
pytest runs it: a Block is a buffer (PEP 688) wherever a program passes one,
and the write/memdup calls take any C-contiguous buffer, not only bytes,
bytearray and memoryview. Each assert_type pins what the checker infers.
"""
from __future__ import annotations

import array
from typing import assert_type

from allocator import Block, Pool, Snapshot, TagStat


def _use(pool: Pool) -> bytes:
    b = pool.calloc(1, 16, tag="t")
    assert_type(b, Block)
    view = memoryview(b)
    view[0] = 1
    copy = bytes(b)
    b.write(array.array("B", [2, 3]), offset=1)
    b.write(pool.memdup(b"\x07\x08", tag="u"), offset=4)
    b.write(view[8:10], offset=8)
    view.release()
    dup = pool.memdup(b, tag="dup")
    assert_type(dup, Block)
    doubles = pool.memdup(array.array("d", [1.0]), tag="doubles")
    maybe = pool.memdup(b, tag="maybe", raise_on_oom=False)
    assert_type(maybe, Block | None)
    assert maybe is not None
    snap = pool.snapshot()
    assert_type(snap, Snapshot)
    stats = snap.statistics()
    assert_type(stats, list[TagStat])
    assert {s.tag for s in stats} >= {"t", "u", "dup", "doubles", "maybe"}
    return copy + dup.tobytes() + doubles.tobytes() + maybe.tobytes()


def test_buffers_go_where_bytes_go() -> None:
    with Pool("typing") as pool:
        out = _use(pool)
    assert out[:16] == b"\x01" + b"\x00" * 15
    assert out[16:32] == b"\x01\x02\x03\x00\x07\x08" + b"\x00" * 10
    assert len(out) == 16 + 16 + 8 + 16
