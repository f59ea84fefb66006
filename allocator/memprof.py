"""Sampled allocation tracking for ringpool pools, after OCaml's ``Gc.Memprof``.

Every byte allocated from any pool is sampled with probability ``rate``; an
allocation of *n* bytes receives *k* ~ Binomial(*n*, ``rate``) samples, and the
allocations with *k* >= 1 are offered to the tracker's ``alloc`` callback.
``k / rate`` estimates the allocation's bytes without bias
(``Allocation.estimated_bytes``).  What ``alloc`` returns (anything but
``None``) is kept for the block and handed to ``dealloc`` when the block goes:
freed, resized (a resize is a dealloc and a fresh sample) or bulk-freed by its
pool's destroy or reset.  See docs/memprof.md for the model and the rules.

>>> from allocator import Pool, memprof
>>> live = {}
>>> tracker = memprof.Tracker(alloc=lambda a: live.setdefault(a.address, a.samples),
...                           dealloc=lambda user: None)
>>> with memprof.start(rate=1.0, tracker=tracker) as profile, Pool("p") as pool:
...     b = pool.alloc(10, tag="t")
...     profile.tracked()
1

Callbacks run on the allocating thread with sampling off on that thread, and
may allocate; an exception raised in one is passed to ``sys.unraisablehook``
(it never propagates into the allocation that triggered it).
"""

from __future__ import annotations

import atexit
import itertools
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any, Callable

from . import _lowlevel as ll
from ._errors import InvalidArgument, RingpoolError

__all__ = ["Allocation", "Tracker", "Profile", "ProfileRunning", "start", "stop", "running",
           "MAX_CALLSTACK"]

MAX_CALLSTACK: int = int(ll.lib.RP_MEMPROF_MAX_STACK)
_ffi = ll.ffi
_lib = ll.lib


class ProfileRunning(RingpoolError, RuntimeError):
    """A profile is already running (one at a time), or the profile is still
    running where a stopped one is needed."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """A sampled allocation, as offered to ``Tracker.alloc``."""

    address: int
    size: int
    samples: int
    rate: float
    tag: str
    pool: str
    callstack: tuple[int, ...]   # return addresses, innermost first

    @property
    def estimated_bytes(self) -> float:
        """``samples / rate``: an unbiased estimate of ``size``."""
        return self.samples / self.rate


@dataclass(frozen=True, slots=True)
class Tracker:
    """``alloc(allocation)`` returns the value to keep for the block, or
    ``None`` not to track it; ``dealloc(value)`` runs when a tracked block goes."""

    alloc: Callable[[Allocation], object] | None = None
    dealloc: Callable[[object], None] | None = None


def _unraisable(exc: BaseException, what: str, obj: object) -> None:
    hook_args = types.SimpleNamespace(exc_type=type(exc), exc_value=exc,
                                      exc_traceback=exc.__traceback__,
                                      err_msg=f"Exception ignored in memprof {what} callback",
                                      object=obj)
    try:
        sys.unraisablehook(hook_args)
    except BaseException:  # noqa: BLE001 -- a broken hook must not reach C either
        pass


class Profile:
    """One sampling profile; ``start()`` makes them.  A context manager: leaving
    the ``with`` block stops the profile (if it runs) and discards it."""

    def __init__(self, rate: float, callstack_size: int, tracker: Tracker) -> None:
        self.rate = rate
        self.callstack_size = callstack_size
        self.tracker = tracker
        self._ptr: Any = ll.NULL
        self._values: dict[int, object] = {}   # C user pointer -> Python value
        self._ids = itertools.count(1)
        self._mutex = threading.Lock()
        self._key = next(_profile_keys)     # what the library's tracker carries
        self._discarded = False

    # ---- callbacks (from C, on the allocating thread, GIL taken by cffi)
    def _on_alloc(self, a: Any) -> int:
        alloc = self.tracker.alloc
        if alloc is None:
            return 0
        stack = tuple(int(_ffi.cast("uintptr_t", a.callstack[i]))
                      for i in range(int(a.callstack_len)))
        info = Allocation(address=int(_ffi.cast("uintptr_t", a.block)), size=int(a.size),
                          samples=int(a.samples), rate=self.rate,
                          tag=_ffi.string(a.tag).decode("utf-8", "replace"),
                          pool=_ffi.string(_lib.rp_pool_name(a.pool)).decode("utf-8", "replace"),
                          callstack=stack)
        try:
            value = alloc(info)
        except BaseException as exc:  # noqa: BLE001 -- reported, never lost
            _unraisable(exc, "alloc", alloc)
            return 0
        if value is None:
            return 0
        with self._mutex:
            key = next(self._ids)
            self._values[key] = value
        return key

    def _on_dealloc(self, key: int) -> None:
        with self._mutex:
            value = self._values.pop(key, None)
        dealloc = self.tracker.dealloc
        if dealloc is not None:
            try:
                dealloc(value)
            except BaseException as exc:  # noqa: BLE001 -- reported, never lost
                _unraisable(exc, "dealloc", dealloc)

    # ---- control
    @property
    def running(self) -> bool:
        """True while this profile samples."""
        return bool(self._ptr != ll.NULL and _lib.rp_memprof_running() == self._ptr)

    def tracked(self) -> int:
        """Blocks this profile tracks now."""
        if self._discarded:
            return 0
        return int(_lib.rp_memprof_tracked(self._ptr))

    def stop(self) -> None:
        """No new samples; tracked blocks still reach ``dealloc`` until discard()."""
        if not self.running:
            raise RingpoolError("this profile is not running")
        _lib.rp_memprof_stop()
        global _current
        _current = None

    def discard(self) -> None:
        """Forgets the tracked blocks without calling the tracker (the profile
        must be stopped)."""
        if self._discarded:
            return
        if self.running:
            raise ProfileRunning("stop the profile before discarding it")
        rc = int(_lib.rp_memprof_discard(self._ptr))
        if rc < 0:
            ll.raise_error(rc, "rp_memprof_discard")
        self._discarded = True
        with self._mutex:
            self._values.clear()
        _profiles.pop(self._key, None)

    def __enter__(self) -> Profile:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.stop()
        self.discard()


#: The profiles the library may still call back, by the key that their
#: tracker's data carries instead of an ffi.new_handle(); a profile leaves when
#: it is discarded.  A sample drawn before a stop is offered after it, and the
#: values of blocks a free or a bulk free took from the table reach dealloc
#: after the library's lock is released: a callback may run after its profile
#: was discarded in another thread.  Through a handle, that profile could be
#: garbage by then, and cffi's from_handle() aborted the process; a stale key
#: finds nothing, and the callback does nothing (discard forgot the values).
_profiles: dict[int, Profile] = {}
_profile_keys = itertools.count(1)   # never reused


@_ffi.def_extern()  # type: ignore[misc]
def rpy_py_memprof_alloc(allocation: Any, data: Any) -> Any:
    try:
        profile = _profiles.get(int(_ffi.cast("uintptr_t", data)))
        key = profile._on_alloc(allocation) if profile is not None else 0
    except BaseException as exc:  # noqa: BLE001 -- must not escape into C
        _unraisable(exc, "alloc", None)
        key = 0
    return _ffi.cast("void *", key)


@_ffi.def_extern()  # type: ignore[misc]
def rpy_py_memprof_dealloc(user: Any, data: Any) -> None:
    try:
        profile = _profiles.get(int(_ffi.cast("uintptr_t", data)))
        if profile is not None:
            profile._on_dealloc(int(_ffi.cast("uintptr_t", user)))
    except BaseException as exc:  # noqa: BLE001 -- must not escape into C
        _unraisable(exc, "dealloc", None)


_current: Profile | None = None


def start(rate: float, callstack_size: int = 0, tracker: Tracker | None = None, *,
          seed: int | None = None) -> Profile:
    """Starts sampling every pool of the process at ``rate`` per byte
    (0 < rate <= 1) with ``callstack_size`` return addresses per sample.
    ``seed`` fixes the random stream (default: ``$RINGPOOL_MEMPROF_SEED``, else
    random).  Raises ``ValueError`` for bad arguments and ``ProfileRunning``
    if a profile already runs."""
    global _current
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"rate must be a number, not {type(rate).__name__}")
    if not 0.0 < float(rate) <= 1.0:
        raise InvalidArgument(f"rate must be in (0, 1], got {rate!r}")
    if isinstance(callstack_size, bool) or not isinstance(callstack_size, int):
        raise TypeError(f"callstack_size must be an int, not {type(callstack_size).__name__}")
    if not 0 <= callstack_size <= MAX_CALLSTACK:
        raise InvalidArgument(f"callstack_size must be in 0..{MAX_CALLSTACK}, got {callstack_size}")
    # 0 is not a seed: the C side reads it as "none given" (then $RINGPOOL_MEMPROF_SEED, else random)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 1 <= seed < 2 ** 64):
        raise InvalidArgument(f"seed must be an int in 1..2**64-1 (None: random), got {seed!r}")
    profile = Profile(float(rate), callstack_size, tracker or Tracker())
    params = _ffi.new("rp_memprof_params *")
    params.rate = float(rate)
    params.callstack_size = callstack_size
    params.seed = seed or 0
    params.tracker.alloc = _lib.rpy_py_memprof_alloc
    params.tracker.dealloc = _lib.rpy_py_memprof_dealloc
    params.tracker.data = _ffi.cast("void *", profile._key)
    out = _ffi.new("rp_memprof **")
    _profiles[profile._key] = profile
    rc = int(_lib.rp_memprof_start(params, out))
    if rc == -12:  # RP_EBUSY
        _profiles.pop(profile._key, None)
        raise ProfileRunning("a sampling profile is already running; stop it first")
    if rc < 0:
        _profiles.pop(profile._key, None)
        ll.raise_error(rc, "rp_memprof_start")
    profile._ptr = out[0]
    _current = profile
    return profile


def running() -> Profile | None:
    """The profile started from Python that runs now, if any."""
    if _current is not None and _current.running:
        return _current
    return None


def stop() -> None:
    """Stops the running profile (see ``Profile.stop``)."""
    profile = running()
    if profile is None:
        raise RingpoolError("no sampling profile is running")
    profile.stop()


@atexit.register
def _shutdown() -> None:
    # No Python callback may run once the interpreter finalizes.
    for profile in list(_profiles.values()):
        try:
            if profile.running:
                profile.stop()
            profile.discard()
        except RingpoolError:
            pass
