"""allocator.memprof: sampled allocation tracking with Python callbacks."""

from __future__ import annotations

import math
import sys
import threading
import types
from typing import Any

import pytest

from allocator import InvalidArgument, Pool, RingpoolError, memprof

from child_helpers import run_script


@pytest.fixture(autouse=True)
def _no_profile_left() -> Any:
    yield
    assert memprof.running() is None, "a test left a profile running"


def test_bad_arguments_raise_value_or_type_errors() -> None:
    for rate in (0, -1e-3, 1.5, math.nan, math.inf):
        with pytest.raises(ValueError):
            memprof.start(rate)
    with pytest.raises(TypeError):
        memprof.start("0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        memprof.start(True)
    with pytest.raises(InvalidArgument):
        memprof.start(0.5, callstack_size=memprof.MAX_CALLSTACK + 1)
    with pytest.raises(InvalidArgument):
        memprof.start(0.5, seed=-1)
    with pytest.raises(InvalidArgument):
        memprof.start(0.5, seed=2 ** 64)
    with pytest.raises(InvalidArgument, match=r"seed must be an int in 1\.\.2\*\*64-1"):
        memprof.start(0.5, seed=0)      # would have been a random stream, not a fixed one
    assert memprof.running() is None
    with pytest.raises(RingpoolError):
        memprof.stop()


def test_one_profile_at_a_time_and_discard_needs_stop() -> None:
    with memprof.start(0.5) as prof:
        assert memprof.running() is prof and prof.running
        with pytest.raises(memprof.ProfileRunning):
            memprof.start(0.5)
        with pytest.raises(memprof.ProfileRunning):
            prof.discard()
    assert not prof.running
    assert prof.tracked() == 0


def test_rate_one_samples_every_byte_and_tracks_until_freed() -> None:
    offered: list[memprof.Allocation] = []
    gone: list[object] = []

    def alloc(a: memprof.Allocation) -> object:
        offered.append(a)
        return ("value", a.tag)

    tracker = memprof.Tracker(alloc=alloc, dealloc=gone.append)
    with memprof.start(1.0, callstack_size=8, tracker=tracker, seed=1) as prof:
        with Pool("rate-one") as pool:
            a = pool.alloc(10, tag="a")
            b = pool.calloc(3, 4, tag="b")
            pool.alloc(0, tag="zero")            # no byte, no sample
            assert [(x.size, x.samples, x.tag, x.pool) for x in offered] == [
                (10, 10, "a", "rate-one"), (12, 12, "b", "rate-one")]
            assert offered[0].address == a.address
            assert offered[0].estimated_bytes == 10.0
            assert 1 <= len(offered[0].callstack) <= 8
            assert prof.tracked() == 2
            a.free()
            assert gone == [("value", "a")]
            b.resize(100)                        # dealloc, then a fresh sample of 100 bytes
            assert gone[-1] == ("value", "b") and offered[-1].size == 100
        # leaving the pool bulk-frees the rest: every tracked block is dealloc'd
        assert prof.tracked() == 0
        assert len(gone) == 3


def test_stopped_profile_keeps_tracking_until_discarded() -> None:
    gone: list[object] = []
    prof = memprof.start(1.0, tracker=memprof.Tracker(alloc=lambda a: a.size,
                                                       dealloc=gone.append))
    pool = Pool("stopped")
    try:
        x, y = pool.alloc(7), pool.alloc(9)
        prof.stop()
        pool.alloc(5)                            # not sampled any more
        assert prof.tracked() == 2
        x.free()
        assert gone == [7]
        prof.discard()                           # y forgotten, no callback
        y.free()
        assert gone == [7]
    finally:
        pool.destroy()
        if prof.running:
            prof.stop()
        prof.discard()


def test_exceptions_in_callbacks_go_to_unraisablehook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    def bad_alloc(a: memprof.Allocation) -> object:
        raise KeyError("from alloc")

    def bad_dealloc(value: object) -> None:
        raise ZeroDivisionError("from dealloc")

    with memprof.start(1.0, tracker=memprof.Tracker(alloc=bad_alloc)), Pool("exc") as pool:
        b = pool.alloc(16)                       # the allocation itself succeeds
        memoryview(b)[0] = 1
    assert len(seen) == 1 and isinstance(seen[0].exc_value, KeyError)
    seen.clear()
    with memprof.start(1.0, tracker=memprof.Tracker(alloc=lambda a: 1, dealloc=bad_dealloc)), \
            Pool("exc2") as pool:
        pool.alloc(16).free()
    assert len(seen) == 1 and isinstance(seen[0].exc_value, ZeroDivisionError)
    assert "dealloc" in seen[0].err_msg


def test_callbacks_may_allocate_from_the_same_pool_unsampled() -> None:
    pool = Pool("reentrant")
    inner: list[Any] = []

    def alloc(a: memprof.Allocation) -> object:
        inner.append(pool.alloc(64, tag="from-callback"))
        return a.tag

    try:
        with memprof.start(1.0, tracker=memprof.Tracker(alloc=alloc)) as prof:
            pool.alloc(8, tag="outer")
            assert len(inner) == 1               # the callback's own block was not offered
            assert prof.tracked() == 1
    finally:
        pool.destroy()
    assert all(blk.freed for blk in inner)


def test_stop_inside_alloc_callback_discards_that_sample() -> None:
    gone: list[object] = []

    def alloc(a: memprof.Allocation) -> object:
        memprof.stop()
        return "discarded"

    prof = memprof.start(1.0, tracker=memprof.Tracker(alloc=alloc, dealloc=gone.append))
    with Pool("stop-inside") as pool:
        pool.alloc(4)
        assert gone == ["discarded"]             # handed back at once
        assert prof.tracked() == 0
    prof.discard()


def test_estimates_match_allocated_bytes() -> None:
    total = 0
    est = 0.0

    def alloc(a: memprof.Allocation) -> None:
        nonlocal est
        est += a.estimated_bytes
        return None

    with memprof.start(1e-3, tracker=memprof.Tracker(alloc=alloc), seed=2024), \
            Pool("estimates", backing="arena") as pool:
        for i in range(6000):
            size = 256 + (i % 7) * 512
            total += size
            pool.alloc(size).free()
    # relative standard deviation sqrt((1 - r) / (r * total)) is about 2% here
    assert abs(est / total - 1) < 0.08


def test_same_seed_same_samples() -> None:
    def run() -> list[tuple[int, int]]:
        got: list[tuple[int, int]] = []
        with memprof.start(1e-2, tracker=memprof.Tracker(alloc=lambda a: got.append(
                (a.size, a.samples))), seed=77), Pool("seeded") as pool:
            for i in range(3000):
                pool.alloc(1 + i % 200).free()
        return got

    first = run()
    assert first and run() == first


@pytest.mark.threads
def test_threads_allocate_while_profiles_start_and_stop() -> None:
    stop = threading.Event()
    pool = Pool("threads")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while not stop.is_set():
                pool.alloc(100).free()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(30):
            with memprof.start(1e-3, tracker=memprof.Tracker(alloc=lambda a: a.size,
                                                               dealloc=lambda v: None)):
                pass
    finally:
        stop.set()
        for t in threads:
            t.join()
        pool.destroy()
    assert not errors


# A sample drawn before a stop is offered after it, and a value that a free
# took from the library's table reaches dealloc after the library's lock is
# released: a callback may run after another thread discarded its profile.
# The tracker's data was an ffi.new_handle() of the profile, which the gc could
# have taken by then, and cffi's from_handle() aborted the process.
DISCARD_WHILE_SAMPLING = r"""
import gc, sys, threading
from allocator import Pool, memprof
sys.setswitchinterval(1e-5)
gc.set_threshold(5)
pool = Pool("p")
stop = threading.Event()
def work():
    while not stop.is_set():
        pool.calloc(1, 64, tag="t").free()   # calloc: the GIL is released
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads:
    t.start()
for _ in range(300):
    with memprof.start(1.0, tracker=memprof.Tracker(alloc=lambda a: a.size,
                                                    dealloc=lambda v: None)):
        pass
    gc.collect()
stop.set()
for t in threads:
    t.join()
pool.destroy()
print("ok")
"""


@pytest.mark.threads
def test_callbacks_of_a_profile_another_thread_discarded() -> None:
    assert run_script(DISCARD_WHILE_SAMPLING, timeout=300).stdout == "ok\n"


@pytest.mark.threads
def test_profiles_start_while_another_thread_tags_pools() -> None:
    # rp_memprof_start reads the flags of every live pool without its lock,
    # and a new tag (RPI_POOL_UNLISTED) or a destroy (RPI_POOL_TORN) set a bit
    # of a pool's flags under its lock: a data race, which ThreadSanitizer
    # reports (make test-py-tsan) when a start walks the 300 pools while the
    # other thread interns a tag. Those bits now live apart, under the lock.
    pools = [Pool(f"p{i}") for i in range(300)]
    done = threading.Event()
    errors: list[BaseException] = []

    def tag() -> None:
        try:
            i = 0
            while not done.is_set():
                pools[i % len(pools)].alloc(8, tag=f"tag-{i}")
                i += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=tag)
    t.start()
    try:
        for _ in range(200):
            with memprof.start(1e-3):
                pass
    finally:
        done.set()
        t.join()
        for p in pools:
            p.destroy()
    assert not errors


def test_unraisable_record_shape() -> None:
    # The object given to sys.unraisablehook carries what the default hook reads.
    seen: list[types.SimpleNamespace] = []
    old = sys.unraisablehook
    sys.unraisablehook = seen.append  # type: ignore[assignment]
    try:
        with memprof.start(1.0, tracker=memprof.Tracker(alloc=lambda a: 1 / 0)), \
                Pool("shape") as pool:
            pool.alloc(1)
    finally:
        sys.unraisablehook = old
    (rec,) = seen
    assert rec.exc_type is ZeroDivisionError and rec.exc_traceback is not None
    assert rec.err_msg.startswith("Exception ignored in memprof")
