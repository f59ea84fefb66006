"""Pool: a ringpool pool seen from Python."""

from __future__ import annotations

import functools
import gc
import operator
import os
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Iterator, Literal, NoReturn, cast, overload

from audit import schema

from . import _lowlevel as ll
from ._ringpool import _FamilyLock  # created by _lowlevel at import
from ._block import _TOKEN, Block
from ._errors import (BlockFreedError, CleanupError, InvalidArgument, InvalidBlock,
                      OutOfMemory, PoolBusy, PoolDestroyedError, PoolLostAtFork,
                      RingpoolError, _LOST_AT_FORK)
from ._snapshot import Snapshot

if TYPE_CHECKING:
    from typing_extensions import Buffer  # the buffer protocol (PEP 688), for type checkers

#: What the library's own report is read with (``Pool.snapshot`` of a pool that
#: records stacks): anything it writes.
_OWN_REPORT = schema.Limits(max_bytes=sys.maxsize, max_depth=sys.maxsize,
                            max_text=sys.maxsize)

_BACKINGS = {"malloc": 0, "arena": ll.POOL_ARENA}

_lib = ll.lib
_SIZE_MAX = ll.SIZE_MAX
_fast_alloc = Block._alloc
# A bulk free (destroy, reset, a finalizer) and the state changes around it,
# in one C call that nothing can stop halfway (_ringpool_glue.h); looked up
# once, so that calling them allocates nothing.
_bulk_free = Block._bulk_free
_kill_table = Block._kill_table
# The pools of a call parked again when this thread's cleanup call returns
# (_ringpool_glue.h, rpy_cleanup_call).
_fence_window = Block._fence
_held_state = Block._held_state
_DESTROY, _RESET, _STAT_DESTROY = 0, 1, 2
# _PoolState.held: not held; held by a destroy or reset under way; held by
# a reset that keeps the pool.
_FREE, _HELD, _KEPT = 0, 1, 2
#: Walks blocks() makes before it gives up on a pool whose blocks are freed
#: during every one of them.
_WALK_TRIES = 8

#: ``keep_bytes`` value that keeps every arena chunk on reset.
KEEP_ALL: int = ll.SIZE_MAX


@dataclass(frozen=True)
class PoolInfo:
    """Pool-wide figures (``rp_pool_get_info``)."""

    name: str
    backing: str
    thread_safe: bool
    checked: bool
    blocks: int
    bytes: int
    peak_bytes: int
    allocs: int
    tags: int
    children: int
    reserved_bytes: int
    chunks: int


def _check_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    # An exact int: an int subclass's comparisons or arithmetic are Python
    # code that could free blocks or destroy the pool in the middle of a call.
    value = operator.index(value)
    if value < 0:
        raise InvalidArgument(f"{what} must be >= 0, got {value}")
    return value


#: Most frames a pool's stacks may hold (``Pool(stacks=N)``).
MAX_STACK_DEPTH = 256


def _stack_depth(stacks: object) -> int | None:
    """``stacks`` as the C option: None (no flag), 0 (the flag, default depth) or a depth."""
    if isinstance(stacks, bool):
        return 0 if stacks else None
    if not isinstance(stacks, int):
        raise TypeError(f"stacks must be a bool or an int depth, not {type(stacks).__name__}")
    stacks = operator.index(stacks)
    if not 1 <= stacks <= MAX_STACK_DEPTH:
        raise InvalidArgument(f"stacks depth must be in 1..{MAX_STACK_DEPTH}, got {stacks}")
    return stacks


def _check_name(name: object) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"pool name must be a str, not {type(name).__name__}")
    return ll.encode(_exact_str(name), "pool name")


def _exact_str(text: str) -> str:
    """``text`` as an exact str, without running any method of a str subclass
    (whose ``__hash__``, ``__eq__`` or ``encode`` could re-enter the pool)."""
    return text if type(text) is str else str.__str__(text)


def _caller_tag(depth: int) -> str:
    """"file:line" of the caller ``depth`` frames above this function's caller."""
    frame = sys._getframe(depth + 1)
    filename = frame.f_code.co_filename
    try:
        rel = os.path.relpath(filename)
        if not rel.startswith(".."):
            filename = rel
    except ValueError:  # another drive
        pass
    return f"{filename}:{frame.f_lineno}"


def _kill_all(table: dict[int, Block], why: str) -> None:
    """Every Block of a pool's table is dead (its memory was freed, or is about to
    be with no Python code in between), saying why, and the table is emptied.
    Never fails (in C: no MemoryError can stop it halfway)."""
    _kill_table(table, why)


class _PoolState:
    """What the finalizer of a pool handle needs; holds no Pool or Block.

    A Block keeps its Pool alive, so a pool's handle is collected only with
    its Blocks, as garbage of one gc pass.  That pass runs every finalizer of
    the garbage (``__del__`` methods, this one) before it clears anything, in
    no set order: a ``__del__`` may still use a Block after the handle's
    finalizer ran.  So the finalizer gets the pool's table of blocks (bound
    in ``ffi.gc``, not held here: a parent's state must not keep its children's
    Blocks alive), kills every Block before freeing the C side, and waits for
    the end of the gc pass while one still has a buffer view.
    """

    __slots__ = ("name", "ptr", "alive", "held", "owner", "parent", "children",
                 "cleanups", "cleanup_errors", "lock", "lost", "__weakref__")

    def __init__(self, name: str, ptr: ll.CData, owner: str,
                 parent: _PoolState | None, lock: threading.RLock) -> None:
        self.lock = lock                     # the family's lock (shared with the Pool)
        self.name = name
        self.ptr = ptr
        self.alive = True
        # _HELD / _KEPT while a destroy or reset of its family works on the
        # pool (set in C, _ringpool_glue.h): alive only within the cleanup
        # call that opened it (_open_lineage).
        self.held = _FREE
        self.owner = owner                   # "python", "child" or "stat"
        self.parent = parent
        # in creation order; a dict, so a child leaves in O(1) (a list's remove
        # scanned every sibling: destroying 10^5 children newest first took 389 s)
        self.children: dict[_PoolState, None] = {}
        self.cleanups: list[_Cleanup] = []
        self.cleanup_errors: list[BaseException] = []
        # In a forked child: the fork went without the family's lock (_lose_family).
        self.lost = False

    def mark_dead(self) -> None:
        """The C pool is gone (with its children): without recursion, a
        chain of pools deeper than Python's recursion limit is one too."""
        todo = [self]
        while todo:
            state = todo.pop()
            state.alive = False
            todo.extend(state.children)
            state.children = {}
            state.cleanups = []
        if self.parent is not None:
            self.parent.children.pop(self, None)

    def finalize(self, table: dict[int, Block], ptr: ll.CData) -> None:
        """ffi.gc finalizer of the handle: the Pool object was collected."""
        with self.lock:                      # a parent may be destroyed in another thread
            self._finalize(table, ptr)

    def _finalize(self, table: dict[int, Block], ptr: ll.CData) -> None:
        why = "was bulk-freed when its pool was garbage-collected"
        if not self.alive:                   # destroyed with its parent: the memory is gone
            _kill_all(table, why)
            return
        if self.children:
            # The C destroy would take the children's memory while their
            # Blocks are still live: their finalizers run in this gc pass
            # (a child keeps its parent alive, so they are garbage too).
            _deferred.append((self, table, ptr))
            return
        try:
            warning = _leak_warning(self.name, ptr)
        except Exception:  # noqa: BLE001 -- a finalizer; MemoryError near OOM
            warning = f"pool {self.name!r} garbage-collected with outstanding blocks, freed now"
        try:
            # Seals the blocks (all or nothing: BlockInUse while a view is
            # alive), destroys the pool and kills them, in one call.
            _bulk_free(_DESTROY, ll.address(ptr), [table], [], [], None, why)
        except BaseException:  # noqa: BLE001 -- a finalizer; MemoryError near OOM too
            # A view of a block is alive (garbage too, most likely: views are
            # released when the gc pass clears them): try again after the pass.
            _deferred.append((self, table, ptr))
            return
        self.alive = False
        self.mark_dead()
        if warning:
            warnings.warn(warning, ResourceWarning, stacklevel=2)
        for exc in self.cleanup_errors:
            warnings.warn(f"cleanup of pool {self.name!r} raised {exc!r}",
                          RuntimeWarning, stacklevel=2)


def _leak_warning(name: str, ptr: ll.CData) -> str:
    """The ResourceWarning of a pool collected with blocks outstanding, or ""."""
    blocks, nbytes = ll.outstanding(ptr)
    if not blocks:
        return ""
    tags = [f"{t[0]} ({t[1]} blocks, {t[2]} bytes)" for t in ll.tag_stats(ptr) if t[1]]
    return (f"pool {name!r} garbage-collected with {blocks} outstanding "
            f"blocks ({nbytes} bytes), freed now; tags: {', '.join(tags)}")


#: Finalizers that met a live buffer view: retried when the gc pass ends.
_deferred: list[tuple[_PoolState, dict[int, Block], ll.CData]] = []


def _retry_deferred(phase: str, info: dict[str, int]) -> None:
    if phase != "stop" or not _deferred:
        return
    # children before their parents: a parent's finalizer waits for its
    # children's, so in any other order a chain of N garbage pools took N
    # collections to be freed (its cleanups run one pool a collection)
    depth: dict[int, int] = {}

    def depth_of(state: _PoolState) -> int:
        path = []
        s: _PoolState | None = state
        while s is not None and id(s) not in depth:
            path.append(s)
            s = s.parent
        d = depth[id(s)] if s is not None else -1
        for s in reversed(path):
            d += 1
            depth[id(s)] = d
        return depth[id(state)]

    todo = sorted(_deferred, key=lambda entry: -depth_of(entry[0]))
    _deferred.clear()
    for state, table, ptr in todo:
        if state.alive and any(block._exports for block in table.values()):
            # Still viewed (the view outlived the pass): the memory stays.
            warnings.warn(f"pool {state.name!r} garbage-collected while a buffer view of "
                          "one of its blocks is alive: its memory is not freed",
                          ResourceWarning, stacklevel=2)
            continue
        try:
            state.finalize(table, ptr)
        except BaseException:  # noqa: BLE001 -- in a gc callback; MemoryError near OOM
            _deferred.append((state, table, ptr))


gc.callbacks.append(_retry_deferred)


# Every pool family's lock, in creation order.  os.fork() takes them all first
# (as the C library takes its own locks), so the child never inherits a lock
# held by a thread that does not exist there, nor a family half-updated.
_family_locks: weakref.WeakValueDictionary[int, threading.RLock] = weakref.WeakValueDictionary()
_family_ids = iter(range(1, 1 << 62))
#: The family locks each forking thread took, by its ident (two threads may
#: fork at once, and each lets go of its own only).
_forking: dict[int, list[threading.RLock]] = {}


def _new_family_lock() -> threading.RLock:
    # An RLock whose __exit__ allocates nothing (_ringpool_glue.h): with
    # RLock's own, a MemoryError at the end of `with lock:` left it held.
    lock = cast(threading.RLock, _FamilyLock())
    _family_locks[next(_family_ids)] = lock
    return lock


#: How long os.fork() waits for the family locks before it forks without the
#: ones it could not take (see _before_fork), and each wait for one lock.
_FORK_PATIENCE = 2.0
_FORK_TRY = 0.05
#: The family locks a fork went without, by the forking thread's ident:
#: made anew in the child.
_not_taken: dict[int, list[threading.RLock]] = {}
#: Module locks os.fork() takes after the family locks (the default pool's,
#: allocator._stat): each is held only for short sections that take no
#: family lock after it, so waiting for it cannot deadlock; left out, a
#: fork while another thread held one left it held for ever in the child.
_fork_module_locks: list[threading.RLock] = []


def _before_fork() -> None:
    """Takes every family lock for os.fork().  Taken in creation order and
    waited for one by one, they deadlocked with a thread holding a later
    family's lock and waiting for an earlier one (a cleanup of one pool that
    allocates from a pool made before it): the fork held the earlier lock and
    waited for the later one for ever.  Now a lock that does not come within
    _FORK_TRY lets go of the locks this attempt took and the attempt starts
    again, so that thread can finish.  A lock held by a thread that waits for
    one this thread held before the fork (a fork from a pool's cleanup) never
    comes: after _FORK_PATIENCE the fork goes without it, and the child, where
    its holder does not exist, gets it anew."""
    locks = [lock for _, lock in sorted(_family_locks.items())]
    deadline = time.monotonic() + _FORK_PATIENCE
    while True:
        taken: list[threading.RLock] = []
        missed: list[threading.RLock] = []
        late = time.monotonic() >= deadline
        for lock in locks:
            if lock.acquire(timeout=_FORK_TRY) if not late else lock.acquire(blocking=False):
                taken.append(lock)
            elif late:
                missed.append(lock)
            else:
                break
        else:
            for lock in _fork_module_locks:
                lock.acquire()
                taken.append(lock)
            me = threading.get_ident()
            _forking[me] = taken
            _not_taken[me] = missed
            return
        for lock in reversed(taken):
            lock.release()
        time.sleep(_FORK_TRY / 10)   # the holder may be waiting for one of those


def _after_fork() -> None:
    me = threading.get_ident()
    _not_taken.pop(me, None)
    taken = _forking.pop(me, [])
    while taken:
        taken.pop().release()


def _after_fork_in_child() -> None:
    lost = _not_taken.pop(threading.get_ident(), [])
    for lock in lost:
        lock._at_fork_reinit()  # type: ignore[attr-defined]
    if lost:
        _lose_families(lost)
    _after_fork()


def _lose_families(locks: list[threading.RLock]) -> None:
    """In the child of a fork that went without ``locks``: each holder was in the
    middle of a call on the family (a cleanup run from the C destroy, a gc
    callback or __del__ between a C call and the Block table's update), so the
    family's Python and C state may disagree here (a live Block over memory
    the C side freed, a C pool half destroyed).  Every pool of the family is
    lost: dead without a destroy, so that no call, Block, destroy() or
    finalizer of it reaches its C memory in this process again.  The pools
    and states are found by a scan of the gc's objects, here only: a registry
    filled at each pool's creation cost every Pool() more instructions for a
    case this rare (docs/python.md, "Threads")."""
    ids = {id(lock) for lock in locks}
    for obj in gc.get_objects():
        if type(obj) is _PoolState:
            if id(obj.lock) in ids:
                obj.lost = True
                obj.alive = False
                obj.held = _FREE
        elif issubclass(type(obj), Pool):   # not isinstance: no __class__ lookup
            fields = obj.__dict__          # not getattr: Pool.__getattr__ raises
            if id(fields.get("_lock")) in ids and "_blocks" in fields:
                _kill_all(fields["_blocks"], _LOST_AT_FORK)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                    after_in_child=_after_fork_in_child)


class _Cleanup:
    """A Python cleanup registered with rp_pool_add_cleanup."""

    __slots__ = ("fn", "state", "pool", "key", "handle", "ran")

    def __init__(self, fn: Callable[[], object], pool: Pool) -> None:
        self.fn = fn
        self.state = pool._state
        # weak: a Pool must not keep itself alive through its own cleanups
        self.pool = weakref.ref(pool)
        # held in the table until it runs or is removed
        self.key, self.handle = ll.register_cleanup(self)
        self.ran = False    # the library consumes a cleanup when it runs it

    def run(self) -> None:
        self.ran = True
        pool = self.pool()
        if pool is None:
            self.fn()
            return
        # how deep this thread holds the family's lock as the cleanup begins
        # (Pool._reentered: deeper, a call of the cleanup is under way)
        calls = _cleanup_calls()
        lock = pool._lock
        calls.append((lock, lock._recursion_count()))  # type: ignore[attr-defined]
        try:
            _open_lineage(pool)
            busy = _mark_busy(pool)
            try:
                self.fn()
            finally:
                for busy_pool in busy:
                    busy_pool._closing = False
        finally:
            calls.pop()

    def failed(self, exc: BaseException) -> None:
        self.state.cleanup_errors.append(exc)


_calls = threading.local()


def _cleanup_calls() -> list[tuple[threading.RLock, int]]:
    """The cleanups this thread runs, innermost last: (family lock, depth)."""
    calls: list[tuple[threading.RLock, int]] | None = getattr(_calls, "stack", None)
    if calls is None:
        calls = _calls.stack = []
    return calls


def _open_lineage(pool: Pool) -> None:
    """Opens to the cleanup of ``pool`` that runs the pools of its destroy()
    or reset() that it may reach: ``pool`` and the pools above it, and those
    below it unless the library already freed them.  Every pool of the call
    is held (dead to Python) from its seal on, and the library destroys child
    pools most recent first, each with its subtree, so the other pools of the
    call (siblings and their subtrees) may be gone: they stay dead.  The glue
    parks every pool of the call again once the cleanup's call has run its
    last Python code, whatever the gc ran meanwhile (``_fence_window``, made
    first: a pool opened here never stays open)."""
    registry = pool._closing_list
    if registry is None or not _fence_window(registry):
        return
    # The second round of the pool's destroy (the cleanups registered while
    # its children went) runs after every pool below it is gone.
    lineage = [pool] if ll.pool_torn(pool._ptr) else pool._subtree()
    up = pool._parent
    while up is not None:
        lineage.append(up)
        up = up._parent
    for p in lineage:
        state = p._state
        if state.held:
            state.alive = True


def _mark_busy(pool: Pool) -> list[Pool]:
    """The pools between a running cleanup's pool and its family's root, that
    pool included, that are not closing yet, marked closing until the cleanup
    returns (then the caller clears them): a destroy() or reset() of one of
    them from there raises PoolBusy.  The library is working on each of them
    (running the cleanup's pool's cleanups, destroying the children of the
    others); those of the family were marked when its destroy or reset began,
    but a pool that a cleanup made during that call was not, and its own
    cleanup's destroy() of it freed the pool under the library's loop over
    its children (heap-use-after-free in destroy_children)."""
    marked = []
    up: Pool | None = pool
    while up is not None:
        if not up._closing:
            marked.append(up)
        up = up._parent
    for p in marked:
        p._closing = True
    return marked


class Pool:
    """A ringpool pool: every block it hands out is tagged, counted, and freed
    at the latest when the pool is destroyed.

    ``with Pool(...) as pool:`` destroys the pool on exit; ``destroy()`` is
    idempotent; a pool garbage-collected while it still holds blocks frees
    them and issues a ResourceWarning naming their tags.

    The allocating methods take ``raise_on_oom``: with the default (True) a
    request the pool cannot supply raises :class:`OutOfMemory`; with False
    they return None instead (the ``_noexc`` twins of the C API).  Misuse
    (bad sizes, alignments, freed blocks) always raises.
    """

    _name: str
    _closing: bool      # destroy()/reset() under way: a second one is PoolBusy
    _seal_new: bool     # the library is about to free this pool's blocks
    _closing_list: list[Pool] | None   # see _init_common

    def __init__(self, name: str, thread_safe: bool = True, checked: bool = False,
                 backing: str = "malloc", chunk_size: int | None = None,
                 keep_bytes: int | None = None, stacks: bool | int = False) -> None:
        self._setup(name, thread_safe, checked, backing, chunk_size, keep_bytes, None, stacks)

    # -- construction ---------------------------------------------------------
    def _setup(self, name: str, thread_safe: bool, checked: bool, backing: str,
               chunk_size: int | None, keep_bytes: int | None,
               parent: Pool | None, stacks: bool | int = False) -> None:
        if "_state" in self.__dict__:
            raise InvalidArgument(f"pool {self._name!r} is already initialised: "
                                  "Pool.__init__ runs once (make a new Pool)")
        bname = _check_name(name)
        name = _exact_str(name)
        depth = _stack_depth(stacks)
        backing = _exact_str(backing) if isinstance(backing, str) else backing
        if backing not in _BACKINGS:
            raise InvalidArgument(f"backing must be 'malloc' or 'arena', not {backing!r}")
        sizes: list[int] = []
        for what, value in (("chunk_size", chunk_size), ("keep_bytes", keep_bytes)):
            if value is not None:
                value = _check_size(value, what)
                if backing != "arena":
                    raise InvalidArgument(f"{what} applies to backing='arena' only")
                if value > ll.SIZE_MAX:
                    raise InvalidArgument(f"{what} must be <= {ll.SIZE_MAX}")
            sizes.append(value or 0)
        chunk_size, keep_bytes = sizes
        thread_safe, checked = bool(thread_safe), bool(checked)
        flags = _BACKINGS[backing]
        if not thread_safe:
            flags |= ll.POOL_UNSYNC
        if checked:
            flags |= ll.POOL_CHECKED
        if depth is not None:
            flags |= ll.POOL_STACKS
        self._name = name
        self._backing = backing
        self._thread_safe = bool(thread_safe)
        self._checked = bool(checked)
        self._parent = parent
        # One lock per pool family: Python-side state and every C call of the
        # family happen under it (unsynchronised pools included).
        self._lock: threading.RLock = (parent._lock if parent is not None
                                       else _new_family_lock())
        with self._lock:
            registry = None
            if parent is not None:
                parent._live()
                # Made by a cleanup while an ancestor is being destroyed or
                # reset: listed among the pools the library frees in that
                # call before the C pool exists (a failure here makes none).
                registry = parent._closing_list
                if registry is not None:
                    registry.append(self)
            ptr = ll.pool_create(bname, flags, chunk_size, keep_bytes,
                                 parent._ptr if parent is not None else ll.NULL, depth or 0)
            state = _PoolState(name, ptr, "child" if parent else "python",
                               parent._state if parent else None, self._lock)
            self._init_common(ptr, state)
            if parent is not None:
                parent._state.children[state] = None
                parent._children.add(self)
                # Made by a cleanup while an ancestor is being destroyed or
                # reset: the library frees this pool in the same call, so its
                # blocks must never export a view that could outlive them.
                self._seal_new = parent._seal_new
                self._closing_list = registry
            self._gc = ll.ffi.gc(ptr, functools.partial(state.finalize, self._blocks))

    def _init_common(self, ptr: ll.CData, state: _PoolState) -> None:
        self._ptr = ptr
        self._address = ll.address(ptr)   # for the GIL-holding hot path (Block._alloc)
        self._state = state
        self._blocks: dict[int, Block] = {}
        # Frees and resizes of this pool's blocks made so far (blocks() walks
        # again when one happened during its walk).
        self._frees = 0
        self._tags: dict[str, ll.CData] = {}
        self._tag_addresses: dict[str, int] = {}
        self._children: weakref.WeakSet[Pool] = weakref.WeakSet()
        self._closing = False    # destroy()/reset() under way: a second one is PoolBusy
        self._seal_new = False   # the library is about to free this pool's blocks
        # During a destroy()/reset() of this pool's family: the pools whose Blocks
        # die with it, to which a pool that a cleanup makes meanwhile adds itself.
        self._closing_list = None

    @classmethod
    def _wrap_default(cls, ptr: ll.CData) -> Pool:
        """The facade's pool (rp_stat_pool): destroyed by rp_stat_destroy_pool."""
        self = cls.__new__(cls)
        name = ll.decode(ll.lib.rp_pool_name(ptr))
        info = ll.pool_info(ptr)
        self._name = name
        self._backing = "arena" if info.flags & ll.POOL_ARENA else "malloc"
        self._thread_safe = not info.flags & ll.POOL_UNSYNC
        self._checked = bool(info.flags & ll.POOL_CHECKED)
        self._parent = None
        self._lock = _new_family_lock()
        self._init_common(ptr, _PoolState(name, ptr, "stat", None, self._lock))
        self._gc = None
        return self

    # -- properties -----------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def backing(self) -> str:
        """"malloc" or "arena"."""
        return self._backing

    @property
    def thread_safe(self) -> bool:
        return self._thread_safe

    @property
    def checked(self) -> bool:
        return self._checked

    @property
    def stacks(self) -> bool:
        """True when every block records its allocation stack: ``Pool(stacks=...)``,
        or ``$RINGPOOL_POOL_STACKS`` for every pool (docs/python.md)."""
        with self._lock:
            self._live()
            return bool(ll.pool_info(self._ptr).flags & ll.POOL_STACKS)

    @property
    def parent(self) -> Pool | None:
        return self._parent

    @property
    def destroyed(self) -> bool:
        """True once destroyed (explicitly, by ``with``, by its parent or by reset of its
        parent), and while a destroy() or reset() under way will destroy it."""
        # No lock: waiting here for another thread's destroy (cleanups
        # included) could deadlock a caller that holds a lock its cleanups
        # take (the default pool's, in allocator._stat).  Both slots are read
        # at once (_held_state), so a destroy or reset of another thread
        # cannot change one between the two reads.  Within the call (this
        # thread holds the family's lock: its cleanups, a tracker, a gc
        # callback or __del__ it runs) the state is read as it is: the opened
        # lineage of a cleanup is alive.  From outside the call a held pool
        # goes with it whether or not a cleanup has it open meanwhile, so the
        # answer never turns back from True to False.
        code = _held_state(self._state)
        held, alive = code >> 1, code & 1
        if held == _HELD and not self._lock._is_owned():  # type: ignore[attr-defined]
            return True
        return not alive and held != _KEPT

    def __repr__(self) -> str:
        state = "destroyed" if self.destroyed else f"{len(self._blocks)} blocks"
        return f"<Pool {self._name!r} {self._backing} {state}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pool cannot be pickled or copied (it owns native memory): "
                        "dump a snapshot instead")

    def __enter__(self) -> Pool:
        self._live()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.destroy()

    if not TYPE_CHECKING:
        def __getattr__(self, name: str) -> NoReturn:
            # Reached only for attributes that do not exist: a Pool made by
            # Pool.__new__ / object.__new__ without __init__ has none of its own.
            if name.startswith("_") and not name.startswith("__"):
                raise RingpoolError("this Pool was never initialised (made without "
                                    "Pool.__init__): it cannot be used")
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- internals --------------------------------------------------------------
    def _reentered(self) -> bool:
        """True when this thread already runs a call on this pool's family (it
        holds the family lock) other than a destroy/reset that runs a cleanup
        of the family, whose own calls hold the lock no deeper than it did
        when the cleanup began: a gc callback, ``__del__`` or weakref callback
        run inside that call, a cleanup's own calls included (making a child
        pool, allocating), or a memprof tracker that a destroy runs outside its
        cleanups.  Destroying or resetting then would free memory the
        interrupted call is about to use (a child pool whose C pool the call
        had made and not yet listed)."""
        lock = self._lock
        if not lock._is_owned():  # type: ignore[attr-defined]
            return False
        depth = 0
        for held_lock, at in reversed(_cleanup_calls()):
            if held_lock is lock:
                depth = at
                break
        return bool(lock._recursion_count() > depth)  # type: ignore[attr-defined]

    def _refuse_reentry(self, what: str) -> None:
        if self._reentered():
            raise PoolBusy(f"{what} of pool {self._name!r} called while a call on the pool "
                           "(or its family) is running in this thread: from a finalizer, "
                           "gc callback or __del__ it interrupted")

    def _refuse_closing_below(self, what: str) -> None:
        """PoolBusy while a pool below this one is being destroyed or reset (from
        one of its cleanups): the library would free that pool under the call
        that is running its cleanups."""
        for pool in self._subtree():
            if pool._closing:
                raise PoolBusy(f"{what} of pool {self._name!r} called while pool "
                               f"{pool._name!r} below it is being destroyed or reset "
                               "(from one of its cleanups?)")

    def _live(self) -> None:
        state = self._state
        if state.alive:
            return
        if state.lost:
            raise PoolLostAtFork(f"pool {self._name!r} {_LOST_AT_FORK}")
        if state.held == _KEPT:
            raise PoolBusy(f"pool {self._name!r} is being reset: it takes no call outside "
                           "its cleanups (from a gc callback, __del__ or memprof tracker?)")
        if state.held:
            raise PoolDestroyedError(f"pool {self._name!r} is being destroyed (with "
                                     "its parent, or fenced off from this cleanup)")
        raise PoolDestroyedError(f"pool {self._name!r} was destroyed")

    def _reach(self, block: Block) -> None:
        """``block`` of this pool may be reached now (under the family lock):
        BlockFreedError when it is dead, else the pool's _live() (a pool that
        a destroy or reset holds, or a destroyed one).  The one check of the
        block calls: free, resize, tobytes and write."""
        if not block._alive:
            block._raise_freed()
        if block._busy:
            # a memprof tracker of its free or resize: the library may have
            # freed the memory already (copies read it: heap-use-after-free)
            block._raise_busy()
        if not self._state.alive:
            self._live()

    def _tag(self, tag: str | None, depth: int, raise_on_oom: bool) -> tuple[ll.CData, str]:
        """The pool-owned copy of the tag (``rp_pool_intern_tag``), cached;
        NULL when out of memory and not raise_on_oom."""
        if tag is None:
            tag = _caller_tag(depth + 1)
        elif not isinstance(tag, str):
            raise TypeError(f"tag must be a str or None, not {type(tag).__name__}")
        else:
            tag = _exact_str(tag)
        ptr = self._tags.get(tag)
        if ptr is None:
            try:
                ptr = ll.intern_tag(self._ptr, ll.encode(tag, "tag"))
            except OutOfMemory:
                if raise_on_oom:
                    raise
                return ll.NULL, tag
            self._tags[tag] = ptr
            self._tag_addresses[tag] = ll.address(ptr)
        return ptr, tag

    def _adopt(self, addr: int, size: int, tag: str) -> Block:
        block = Block._make(_TOKEN, self, addr, size, tag)
        try:
            self._blocks[addr] = block
        except BaseException:
            # Not in the table, a destroy would not kill it: it never leaves
            # here live (the memory stays the pool's, listed by blocks()).
            block._kill()
            raise
        if self._seal_new:
            block._begin_free()
        return block

    def _failed(self, what: str, raise_on_oom: bool) -> Block | None:
        code, _, _ = ll.last_error()
        if code in (0, -1, -4) and not raise_on_oom:
            return None
        ll.failed(what)

    def _too_big(self, what: str, size: int, raise_on_oom: bool) -> Block | None:
        if raise_on_oom:
            raise OutOfMemory(f"{what}: {size} bytes cannot be addressed on this machine")
        return None

    def _subtree(self) -> list[Pool]:
        """This pool and every Python pool below it, destroyed or not,
        including pools that cleanups created during a destroy or reset."""
        out: list[Pool] = []
        stack: list[Pool] = [self]
        while stack:
            pool = stack.pop()
            out.append(pool)
            stack.extend(pool._children)
        return out

    def _bulk_free(self, op: int, why: str) -> None:
        """Destroys or resets this pool's family in the library (op), with every
        state change around it in one C call that nothing stops halfway: no new
        views on the family's blocks and no second destroy/reset meanwhile (all
        or nothing: BlockInUse while a block has a live view), then every Block
        freed dead, with those of pools that cleanups made meanwhile.  The
        family, its tables and the subtree are listed in that call, with no
        Python code run before the seal (a __del__ that the gc ran while they
        were listed here made a child of the pool that was left out)."""
        keep = self if op == _RESET else None
        rc = _bulk_free(op, self._address, self, keep, why)
        if rc:
            ll.raise_error(rc, "rp_pool_reset")

    def _raise_cleanup_errors(self) -> None:
        errors = self._state.cleanup_errors
        if errors:
            self._state.cleanup_errors = []
            raise CleanupError(f"{len(errors)} cleanup(s) of pool {self._name!r} raised",
                               errors) from errors[0]

    # -- lifecycle --------------------------------------------------------------
    def destroy(self) -> None:
        """Runs cleanups, destroys children, frees every block; idempotent.

        Raises BlockInUse, a BufferError (and destroys nothing), while a
        block of the pool or of a child has live buffer views."""
        state = self._state
        if not state.alive and not state.held:
            return
        self._refuse_reentry("destroy()")  # before taking the (reentrant) lock
        with self._lock:
            if not state.alive:
                if state.held == _KEPT:
                    self._live()    # PoolBusy: a reset under way keeps it
                return              # gone, or going with the call under way
            if self._closing:
                raise PoolBusy(f"pool {self._name!r} is being destroyed or reset "
                               "(destroy called from a cleanup?)")
            self._refuse_closing_below("destroy()")
            self._bulk_free(_STAT_DESTROY if self._state.owner == "stat" else _DESTROY,
                            f"was bulk-freed by destroy() of pool {self._name!r}")
            # Every pool below this one is gone, with the ones the cleanups
            # made meanwhile, and their Blocks dead; what follows only tidies
            # (the finalizer of a dead pool only empties its table).
            self._state.mark_dead()
            if self._gc is not None:
                self._gc = ll.ffi.gc(self._gc, None)  # detach the finalizer
                self._gc = None
            self._raise_cleanup_errors()

    def reset(self) -> None:
        """Runs cleanups, destroys children and frees every block; the pool
        stays usable (``rp_pool_reset``).  Tag totals and peaks are kept."""
        self._refuse_reentry("reset()")  # before taking the (reentrant) lock
        with self._lock:
            self._live()
            if self._closing:
                raise PoolBusy(f"pool {self._name!r} is being destroyed or reset")
            self._refuse_closing_below("reset()")
            before = self._state.children.copy()
            self._bulk_free(_RESET, f"was bulk-freed by reset() of pool {self._name!r}")
            # The children (with those the cleanups made meanwhile, which the
            # call marked dead) are destroyed, every Block of the family is
            # dead; what follows only tidies.  A child made after the
            # library's call, by a weakref callback or __del__ that the
            # release of the freed Blocks ran, lives on: marked dead, its C
            # pool stayed unfenced and was freed under its own cleanup's
            # calls by the next destroy (heap-use-after-free in rp_pool_walk).
            # So a child is marked dead when the call did (not alive), or when
            # it was there before the call even if the call did not mark it:
            # a child whose Pool was collected and whose finalizer waits
            # (_deferred) is no pool the call listed, but its C pool is gone.
            # A child that left the dict meanwhile was marked dead already.
            for child in list(self._state.children):
                if child in before or not child.alive:
                    child.mark_dead()
            # A cleanup registered on this pool during the reset by a child's
            # cleanup (the library had run this pool's already) stays
            # registered: its handle must live on with it (forgotten, the next
            # destroy, reset or finalizer called from_handle() on a dead
            # handle, which aborts the process).
            self._state.cleanups = [e for e in self._state.cleanups if not e.ran]
            self._raise_cleanup_errors()

    def child(self, name: str, *, thread_safe: bool | None = None,
              checked: bool | None = None, backing: str | None = None,
              chunk_size: int | None = None, keep_bytes: int | None = None,
              stacks: bool | int | None = None) -> Pool:
        """A child pool, destroyed (or reset away) with this one.  Options
        default to this pool's (``stacks``: a child of a pool that records
        stacks records them too, at its parent's depth)."""
        child = Pool.__new__(Pool)
        child._setup(name, self._thread_safe if thread_safe is None else thread_safe,
                     self._checked if checked is None else checked,
                     self._backing if backing is None else backing,
                     chunk_size, keep_bytes, self, self.stacks if stacks is None else stacks)
        return child

    def add_cleanup(self, fn: Callable[[], object]) -> None:
        """Registers ``fn()`` to run when the pool is destroyed or reset, last
        registered first, before children and blocks are freed (blocks are
        still usable, but no new buffer views: use ``Block.tobytes()``).  An
        exception in ``fn`` is caught; destroy()/reset() finish their work and
        then raise CleanupError."""
        if not callable(fn):
            raise TypeError(f"cleanup must be callable, not {type(fn).__name__}")
        with self._lock:
            self._live()
            entry = _Cleanup(fn, self)
            try:
                ll.add_cleanup(self._ptr, entry.handle)
            except BaseException:
                ll.cleanup_entries.pop(entry.key, None)
                raise
            self._state.cleanups.append(entry)

    def remove_cleanup(self, fn: Callable[[], object]) -> bool:
        """Unregisters the last registration of ``fn``; False if there is none."""
        with self._lock:
            self._live()
            for entry in reversed(list(self._state.cleanups)):
                if entry.fn is fn or entry.fn == fn:
                    # fn.__eq__ is Python code: it may have destroyed the pool
                    # or removed the entry meanwhile.
                    self._live()
                    if not any(e is entry for e in self._state.cleanups):
                        continue
                    ll.remove_cleanup(self._ptr, entry.handle)
                    ll.cleanup_entries.pop(entry.key, None)
                    self._state.cleanups = [e for e in self._state.cleanups
                                            if e is not entry]
                    return True
            return False

    # -- allocation -------------------------------------------------------------
    @overload
    def alloc(self, size: int, tag: str | None = None, *,
              raise_on_oom: Literal[True] = ...) -> Block: ...
    @overload
    def alloc(self, size: int, tag: str | None = None, *,
              raise_on_oom: bool) -> Block | None: ...

    def alloc(self, size: int, tag: str | None = None, *,
              raise_on_oom: bool = True) -> Block | None:
        """``size`` bytes (uninitialised) tagged ``tag`` (default: the caller's "file:line")."""
        # The hot path of the bindings: kept flat (see benches/python).
        if type(size) is not int or size < 0:
            size = _check_size(size, "size")
        with self._lock:
            if not self._state.alive:
                self._live()
            taddr = self._tag_addresses.get(tag) if type(tag) is str else None
            if taddr is None:
                tptr, tag = self._tag(tag, 1, raise_on_oom)
                if tptr == ll.NULL:
                    return None
                taddr = self._tag_addresses[tag]
            assert tag is not None
            if size > _SIZE_MAX:
                return self._too_big("alloc", size, raise_on_oom)
            # rp_alloc_noexc with the GIL held, the Block made in C (see the glue).
            block = _fast_alloc(self, self._address, size, taddr, tag)
            if block is None:
                return self._failed("alloc", raise_on_oom)
            try:
                self._blocks[block._addr] = block
            except BaseException:
                block._free()   # not in the table: a destroy would not kill it
                raise
            if self._seal_new:
                block._begin_free()
            return block

    @overload
    def calloc(self, n: int, size: int, tag: str | None = None, *,
               raise_on_oom: Literal[True] = ...) -> Block: ...
    @overload
    def calloc(self, n: int, size: int, tag: str | None = None, *,
               raise_on_oom: bool) -> Block | None: ...

    def calloc(self, n: int, size: int, tag: str | None = None, *,
               raise_on_oom: bool = True) -> Block | None:
        """``n * size`` zeroed bytes; an overflowing product is OutOfMemory."""
        n = _check_size(n, "n")
        size = _check_size(size, "size")
        with self._lock:
            self._live()
            tptr, tstr = self._tag(tag, 1, raise_on_oom)
            if tptr == ll.NULL:
                return None
            if n > ll.SIZE_MAX or size > ll.SIZE_MAX:
                return self._too_big("calloc", max(n, size), raise_on_oom)
            addr = ll.calloc(self._ptr, n, size, tptr)
            if not addr:
                return self._failed("calloc", raise_on_oom)
            return self._adopt(addr, n * size, tstr)

    @overload
    def strdup(self, s: str | bytes, tag: str | None = None, *,
               raise_on_oom: Literal[True] = ...) -> Block: ...
    @overload
    def strdup(self, s: str | bytes, tag: str | None = None, *,
               raise_on_oom: bool) -> Block | None: ...

    def strdup(self, s: str | bytes, tag: str | None = None, *,
               raise_on_oom: bool = True) -> Block | None:
        """A NUL-terminated copy of ``s`` (str is UTF-8 encoded); size is len + 1."""
        if not isinstance(s, (str, bytes)):
            raise TypeError(f"strdup takes str or bytes, not {type(s).__name__}")
        data = ll.encode(s, "string")
        with self._lock:
            self._live()
            tptr, tstr = self._tag(tag, 1, raise_on_oom)
            if tptr == ll.NULL:
                return None
            addr = ll.strdup(self._ptr, data, tptr)
            if not addr:
                return self._failed("strdup", raise_on_oom)
            return self._adopt(addr, len(data) + 1, tstr)

    @overload
    def strconcat(self, *parts: str | bytes, tag: str | None = None,
                  raise_on_oom: Literal[True] = ...) -> Block: ...
    @overload
    def strconcat(self, *parts: str | bytes, tag: str | None = None,
                  raise_on_oom: bool) -> Block | None: ...

    def strconcat(self, *parts: str | bytes, tag: str | None = None,
                  raise_on_oom: bool = True) -> Block | None:
        """The concatenation of ``parts``, NUL-terminated (``rp_strconcat``)."""
        for p in parts:
            if not isinstance(p, (str, bytes)):
                raise TypeError(f"strconcat takes str or bytes, not {type(p).__name__}")
        data = [ll.encode(p, "string") for p in parts]
        with self._lock:
            self._live()
            tptr, tstr = self._tag(tag, 1, raise_on_oom)
            if tptr == ll.NULL:
                return None
            addr = ll.strconcat(self._ptr, tptr, data)
            if not addr:
                return self._failed("strconcat", raise_on_oom)
            return self._adopt(addr, sum(map(len, data)) + 1, tstr)

    @overload
    def memdup(self, data: Buffer, tag: str | None = None, *,
               raise_on_oom: Literal[True] = ...) -> Block: ...
    @overload
    def memdup(self, data: Buffer, tag: str | None = None, *,
               raise_on_oom: bool) -> Block | None: ...

    def memdup(self, data: Buffer, tag: str | None = None, *,
               raise_on_oom: bool = True) -> Block | None:
        """A copy of any bytes-like object."""
        if isinstance(data, str):
            raise TypeError("memdup takes a bytes-like object, not str (use strdup)")
        # The size is the pinned buffer's: an object's buffer may change size
        # between two exports (another thread shrinking a bytearray), and the
        # copy read the first export's size out of the second's memory.
        src = ll.ffi.from_buffer(data)  # requires a C-contiguous buffer
        size = len(src)
        try:
            with self._lock:
                self._live()
                tptr, tstr = self._tag(tag, 1, raise_on_oom)
                if tptr == ll.NULL:
                    return None
                addr = ll.memdup(self._ptr, src, size, tptr)
                if not addr:
                    return self._failed("memdup", raise_on_oom)
                return self._adopt(addr, size, tstr)
        finally:
            ll.ffi.release(src)

    @overload
    def alloc_aligned(self, align: int, size: int, tag: str | None = None, *,
                      raise_on_oom: Literal[True] = ...) -> Block: ...
    @overload
    def alloc_aligned(self, align: int, size: int, tag: str | None = None, *,
                      raise_on_oom: bool) -> Block | None: ...

    def alloc_aligned(self, align: int, size: int, tag: str | None = None, *,
                      raise_on_oom: bool = True) -> Block | None:
        """``size`` bytes at an address multiple of ``align`` (a power of two
        up to 64 MiB); freed like any block."""
        if isinstance(align, bool) or not isinstance(align, int):
            raise TypeError(f"align must be an int, not {type(align).__name__}")
        align = operator.index(align)
        if align <= 0 or align & (align - 1) or align > ll.MAX_ALIGN:
            raise InvalidArgument(f"align must be a power of two up to {ll.MAX_ALIGN}, "
                                  f"got {align}")
        size = _check_size(size, "size")
        with self._lock:
            self._live()
            tptr, tstr = self._tag(tag, 1, raise_on_oom)
            if tptr == ll.NULL:
                return None
            if size > ll.SIZE_MAX:
                return self._too_big("alloc_aligned", size, raise_on_oom)
            addr = ll.alloc_aligned(self._ptr, align, size, tptr)
            if not addr:
                return self._failed("alloc_aligned", raise_on_oom)
            return self._adopt(addr, size, tstr)

    def free(self, block: Block) -> None:
        """Frees ``block``, which must belong to this pool (InvalidBlock otherwise)."""
        if not isinstance(block, Block):
            raise TypeError(f"free takes a Block, not {type(block).__name__}")
        if block._pool is not self:
            raise InvalidBlock(f"block {block._tag!r} belongs to pool "
                               f"{block._pool.name!r}, not to pool {self._name!r}")
        self._free_block(block)

    def _free_block(self, block: Block) -> None:
        with self._lock:
            if not self._state.alive:   # held (_open_lineage), or destroyed
                self._reach(block)
            addr = block._addr
            self._frees += 1        # before the free: blocks() must see it
            if self._state.owner == "stat":
                # BlockFreedError / BlockInUse / PoolBusy; atomic under the GIL
                block._begin_busy()
                code = _lib.rpy_stat_free(addr)
                if code:
                    block._abort_free()
                    ll.raise_error(code, "rp_free")
                block._kill()
            else:
                # Checks, rp_free and the state change in one C call with the
                # GIL held: BlockFreedError / BlockInUse, or the library's
                # report (checked pools), after which the block stays live.
                code = block._free()
                if code:
                    ll.raise_error(code, "rp_free")
            del self._blocks[addr]

    def _resize_block(self, block: Block, size: int, raise_on_oom: bool) -> Block | None:
        size = _check_size(size, "size")
        with self._lock:
            # BlockFreedError / BlockInUse; no new views, and no free or resize
            # of this block from a memprof tracker that the resize calls.
            if not self._state.alive:   # held (_open_lineage), or destroyed
                self._reach(block)
            block._begin_busy()
            try:
                self._frees += 1    # before the free: blocks() must see it
                if size > ll.SIZE_MAX:
                    self._too_big("resize", size, raise_on_oom)
                    block._abort_free()
                    return None
                # The library's call, this Block's death and the new Block's
                # birth in one C call with the GIL held (nothing can fail
                # between them); None: the resize failed, this block is intact.
                new = block._resize(self._address, size, self._state.owner == "stat")
                if new is None:
                    self._failed("resize", raise_on_oom)
                    block._abort_free()
                    return None
            except BaseException:
                block._abort_free()     # nothing if the resize was made (block dead)
                raise
            block._why = "was resized (use the Block that resize() returned)"
            # The table: a dead Block left in it is skipped; a new one that
            # cannot be listed is killed (its memory stays the pool's).
            self._blocks.pop(block._addr, None)
            try:
                self._blocks[new._addr] = new
                if self._seal_new:
                    new._begin_free()
            except BaseException:
                new._kill()
                raise
            return new

    # -- audit --------------------------------------------------------------------
    def outstanding(self) -> tuple[int, int]:
        """(blocks, bytes) outstanding; O(tags), never a walk of the blocks."""
        with self._lock:
            self._live()
            return ll.outstanding(self._ptr)

    def check(self) -> None:
        """Walks the ring against the counters (``rp_pool_check``); raises
        CorruptPool with the findings when they disagree."""
        with self._lock:
            self._live()
            rc, text = ll.pool_check(self._ptr)
            if rc != 0:
                ll.raise_error(rc, f"check of pool {self._name!r}")

    def info(self) -> PoolInfo:
        """Pool-wide counters, reserved bytes and chunks (``rp_pool_get_info``)."""
        with self._lock:
            self._live()
            i = ll.pool_info(self._ptr)
            return PoolInfo(self._name, self._backing, self._thread_safe, self._checked,
                            int(i.blocks), int(i.bytes), int(i.peak_bytes), int(i.allocs),
                            int(i.tags), int(i.children), int(i.reserved_bytes),
                            int(i.chunks))

    def blocks(self) -> Iterator[Block]:
        """The live blocks, from a walk of the ring (``rp_pool_walk``)."""
        # Called while this thread runs a call on the family (from a cleanup,
        # a gc callback or a __del__ it ran): that call may be between the
        # library's allocation and the Block it makes of it, so a record with
        # no Block here is left out, never given a second Block.
        nested = self._lock._is_owned()  # type: ignore[attr-defined]
        with self._lock:
            self._live()
            for _ in range(_WALK_TRIES):
                # The walk's visitor and the loop below allocate, so the gc may
                # run in between, and its callbacks or a __del__ may free blocks
                # of this pool: a record may then name freed memory, which must
                # never get a live Block.  Any free of this pool's blocks counts
                # (_frees); when one happened, the Blocks made here die and the
                # walk is made again.
                frees = self._frees
                found = ll.walk(self._ptr)
                out: list[Block] = []
                adopted: list[Block] = []
                try:
                    for addr, size, tag in found:
                        block = self._blocks.get(addr)
                        # None: allocated by C code sharing the pool; dead: a
                        # table entry that a failed statement left
                        if block is None or not block._alive:
                            if nested:
                                continue
                            block = self._adopt(addr, size, tag)
                            adopted.append(block)
                        out.append(block)
                finally:
                    if self._frees != frees:
                        for block in adopted:
                            block._kill()
                            if self._blocks.get(block._addr) is block:
                                del self._blocks[block._addr]
                if self._frees == frees:
                    return iter(out)
            raise PoolBusy(f"blocks() of pool {self._name!r}: its blocks were freed during "
                           f"each of {_WALK_TRIES} walks (from a gc callback or __del__?)")

    def __iter__(self) -> Iterator[Block]:
        return self.blocks()

    def snapshot(self, *, blocks: bool = False, children: bool = False) -> Snapshot:
        """Counters by tag now: O(tags), never a walk of the blocks unless
        ``blocks`` is true (then every block is listed).  ``children`` nests
        snapshots of this pool's live child pools."""
        blocks, children = bool(blocks), bool(children)
        with self._lock:
            self._live()
            snap = self._snapshot(blocks, children)
        # a child pool's snapshot names the pools it lies in, as its report does
        # (``parents``, outermost first: docs/report-format.md, "Pool paths")
        names = []
        up = self._parent
        while up is not None:
            names.append(up._name)
            up = up._parent
        snap.parents = tuple(reversed(names))
        return snap

    def _snapshot(self, blocks: bool, children: bool) -> Snapshot:
        """This pool's snapshot, with its live children's nested (children):
        built children first, without recursion (a chain of pools deeper than
        Python's recursion limit raised RecursionError)."""
        order: list[tuple[Pool, ll.CData, list[Pool]]] = []   # parents before children
        stack: list[Pool] = [self]
        while stack:
            pool = stack.pop()
            info = ll.pool_info(pool._ptr)
            kids = (pool._live_children()
                    if children and not info.flags & ll.POOL_STACKS else [])
            order.append((pool, info, kids))
            stack.extend(reversed(kids))
        built: dict[int, Snapshot] = {}
        for pool, info, kids in reversed(order):
            if info.flags & ll.POOL_STACKS:
                snap = pool._report_snapshot(blocks, children)
            else:
                info, tags, walked = pool._counters(blocks)
                snap = Snapshot._from_counters(
                    pool=pool._name, backing=pool._backing,
                    totals=(int(info.blocks), int(info.bytes), int(info.peak_bytes),
                            int(info.allocs), int(info.reserved_bytes)),
                    tags=tags, blocks=walked,
                    children=[built.pop(id(c)) for c in kids])
            built[id(pool)] = snap
        return built[id(self)]

    def _counters(self, blocks: bool) -> tuple[ll.CData, list[tuple[str, int, int, int, int]],
                                               list[tuple[int, int, str]] | None]:
        """The pool's totals, its tags and (blocks) the walk of its blocks, as
        of one moment.  Each is a call of its own, and Python code runs between
        them (the gc's callbacks and __del__ methods, which may allocate from
        this pool or free its blocks): the totals then counted a block the tags
        did not, or the walk listed a block the totals and tags did not
        (a snapshot of 10 blocks listing 11).  Any free of this pool's blocks
        from Python (_frees) and any allocation (the library's count) meanwhile
        make the reads again, as blocks() walks again."""
        for _ in range(_WALK_TRIES):
            frees = self._frees
            info = ll.pool_info(self._ptr)
            tags = ll.tag_stats(self._ptr)
            walked = ll.walk(self._ptr) if blocks else None
            after = ll.pool_info(self._ptr)
            if self._frees == frees and after.allocs == info.allocs:
                return info, tags, walked
        raise PoolBusy(f"snapshot of pool {self._name!r}: its blocks were allocated or freed "
                       f"during each of {_WALK_TRIES} reads (from a gc callback or __del__?)")

    def _report_snapshot(self, blocks: bool, children: bool) -> Snapshot:
        """A pool that records stacks: the library's report, which carries them
        (each tag's ``extra["stacks"]``, the tables in ``extra``), read back."""
        import tempfile
        flags = (ll.REPORT_BLOCKS if blocks else 0) | (ll.REPORT_CHILDREN if children else 0)
        fd, path = tempfile.mkstemp(prefix="ringpool-snapshot-", suffix=".json")
        os.close(fd)
        try:
            ll.write_report(self._ptr, os.fsencode(path), flags)
            # the library's own file, read whatever its size and depth: with the
            # readers' defaults a family nested more than 100 deep raised
            # ReportFormatError (and one past the json module's nesting, "nested
            # too deeply")
            snap = Snapshot.load(path, limits=_OWN_REPORT)
        finally:
            os.unlink(path)
        # the library lists children newest first; snapshots in creation order
        todo = [snap]
        while todo:
            s = todo.pop()
            s.reason = "request"
            s.source = None
            s.children.reverse()
            todo.extend(s.children)
        return snap

    def _live_children(self) -> list[Pool]:
        order = {id(s): i for i, s in enumerate(self._state.children)}
        kids = [c for c in self._children if c._state.alive]
        return sorted(kids, key=lambda c: order.get(id(c._state), 0))

    def write_report(self, path: str | os.PathLike[str], *, blocks: bool = False,
                     children: bool = True) -> None:
        """The C library's JSON report of this pool (docs/report-format.md)."""
        flags = (ll.REPORT_BLOCKS if blocks else 0) | (ll.REPORT_CHILDREN if children else 0)
        bpath = os.fsencode(path)  # __fspath__ may run Python code: not under the lock
        with self._lock:
            self._live()
            ll.write_report(self._ptr, bpath, flags)


__all__ = ["Pool", "PoolInfo", "KEEP_ALL", "MAX_STACK_DEPTH", "BlockFreedError"]
