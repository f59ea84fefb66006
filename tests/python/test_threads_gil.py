"""Threads: exact counts with 4 threads on one pool; C calls release the GIL."""

from __future__ import annotations

import threading

import pytest

from allocator import Block, Pool, Snapshot

from child_helpers import script_output

pytestmark = pytest.mark.threads

THREADS = 4
ROUNDS = 1500


@pytest.mark.parametrize("thread_safe", [True, False])
def test_four_threads_keep_exact_counts(backing: str, thread_safe: bool) -> None:
    pool = Pool("shared", backing=backing, thread_safe=thread_safe)
    kept: list[list[Block]] = [[] for _ in range(THREADS)]
    snaps: list[Snapshot] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            start.wait()
            tag = f"thread-{t}"
            for i in range(ROUNDS):
                b = pool.alloc(16 + i % 64, tag=tag)
                b = b.resize(8 + i % 32)
                if i % 3 == 0:
                    kept[t].append(b)      # stays outstanding
                else:
                    b.free()
                if i % 100 == 0:
                    snaps.append(pool.snapshot())
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    expected_blocks = sum(len(k) for k in kept)
    expected_bytes = sum(b.size for k in kept for b in k)
    assert pool.outstanding() == (expected_blocks, expected_bytes)
    stats = {t.tag: t for t in pool.snapshot().tags}
    for t in range(THREADS):
        s = stats[f"thread-{t}"]
        assert (s.blocks, s.bytes, s.allocs) == (len(kept[t]), sum(b.size for b in kept[t]),
                                                 ROUNDS)
    for snap in snaps:                  # every snapshot was internally consistent
        assert sum(x.blocks for x in snap.tags) == snap.totals.blocks
    pool.check()
    pool.destroy()


def test_threads_destroying_while_others_free(backing: str) -> None:
    """A destroy racing frees and allocations never crashes: each call either
    completes or raises the documented error."""
    from allocator import BlockFreedError, PoolDestroyedError
    for _ in range(20):
        pool = Pool("race", backing=backing)
        blocks = [pool.alloc(32, tag="r") for _ in range(200)]
        unexpected: list[BaseException] = []

        def freer(bs: list[Block]) -> None:
            for b in bs:
                try:
                    b.free()
                except BlockFreedError:
                    pass
                except BaseException as exc:  # noqa: BLE001
                    unexpected.append(exc)

        def allocator() -> None:
            for _ in range(200):
                try:
                    pool.alloc(8, tag="late")
                except PoolDestroyedError:
                    return
                except BaseException as exc:  # noqa: BLE001
                    unexpected.append(exc)

        ts = [threading.Thread(target=freer, args=(blocks[::2],)),
              threading.Thread(target=freer, args=(blocks[1::2],)),
              threading.Thread(target=allocator)]
        for th in ts:
            th.start()
        pool.destroy()
        for th in ts:
            th.join()
        assert not unexpected, unexpected
        assert all(b.freed for b in blocks)


GIL_PROBE = r"""
import os, select, tempfile, threading, time
from allocator import _lowlevel as ll

pool = ll.pool_create(b"gil", 0, 0, 0)
tag = ll.intern_tag(pool, b"t")
for _ in range(4000):
    ll.alloc(pool, 8, tag)
fifo = os.path.join(tempfile.mkdtemp(), "report")
os.mkfifo(fifo)
rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
result = []

def writer():
    # a report of 4000 blocks is larger than the pipe: the C call blocks in
    # write() until this process's main thread drains the FIFO
    result.append(int(ll.lib.rpy_pool_write_report(pool, fifo.encode(), ll.lib.RP_REPORT_BLOCKS)))

t = threading.Thread(target=writer)
t.start()
chunks = []
while True:
    select.select([rfd], [], [], 0.05)
    try:
        data = os.read(rfd, 65536)
    except BlockingIOError:
        data = None
    if data:
        chunks.append(data)
    elif not t.is_alive():
        break
    else:
        time.sleep(0.005)
t.join()
os.close(rfd)
report = b"".join(chunks)
ll.pool_destroy(pool)
print(result[0], len(report) > 65536, report.count(b'"address"'))
"""


def test_c_calls_release_the_gil() -> None:
    """One thread blocks inside a C call (writing a report into a full FIFO)
    while the main thread runs Python code that drains the FIFO. If cffi kept
    the GIL during the C call, the reader could never run: the process would
    deadlock (hence the subprocess and its timeout). (Walk visitors no longer
    run under the pool lock, so they cannot serve as the blocking call.)"""
    assert script_output(GIL_PROBE, timeout=60) == "0 True 4000"
