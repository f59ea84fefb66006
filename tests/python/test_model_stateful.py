"""Hypothesis drives random sequences of the Python API against a pure Python
model and checks every count, byte and tag.

A family of pools: up to three root pools and their children, nested up to
five deep, each made with its own backing (malloc, arena), checking and
thread safety, so checked and unchecked pools and both backings meet in one
family.  The operations: create a root or a child, alloc, calloc, strdup,
memdup, resize (in either backing, growing and shrinking), free (by the block
or through its pool), reset, destroy (of any pool, mid-sequence: its
children go with it), snapshot (with the children and the blocks), info and
outstanding, buffer views held and released; and misuse: a block freed
through another pool, a block or pool used after a free, resize, reset or
destroy, a free, resize, reset or destroy that a live view stops, sizes that
cannot be allocated, negative sizes, NULs and lone surrogates in tags and
strings.  Every misuse must raise an
exception of the package (a RingpoolError) and change nothing; after every
step each live pool's counters and ring agree with the model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from allocator import (Block, BlockFreedError, BlockInUse, InvalidArgument, InvalidBlock,
                       OutOfMemory, Pool, PoolDestroyedError, RingpoolError)

TAGS = st.sampled_from(["alpha", "beta", "gamma", "δέλτα", "(untagged)"])
# the arena's classes end at 32 KiB; past them a block is a big block of its own
SIZES = st.one_of(st.integers(min_value=0, max_value=3000),
                  st.integers(min_value=30000, max_value=70000))
MAX_DEPTH = 5
MAX_ROOTS = 3


@dataclass
class TagModel:
    blocks: int = 0
    bytes: int = 0
    peak: int = 0
    allocs: int = 0

    def add(self, size: int, new: bool) -> None:
        self.blocks += 1
        self.bytes += size
        self.peak = max(self.peak, self.bytes)
        self.allocs += new

    def sub(self, size: int) -> None:
        self.blocks -= 1
        self.bytes -= size


@dataclass
class LiveBlock:
    block: Block
    tag: str
    content: bytes                   # what the model says the payload holds
    owner: PoolModel


@dataclass(eq=False)
class PoolModel:
    pool: Pool
    name: str
    parent: PoolModel | None
    depth: int
    children: list[PoolModel] = field(default_factory=list)   # live ones, in creation order
    alive: bool = True
    tags: dict[str, TagModel] = field(default_factory=dict)
    live: list[LiveBlock] = field(default_factory=list)
    allocs: int = 0

    def total_bytes(self) -> int:
        return sum(len(lb.content) for lb in self.live)

    def subtree(self) -> list[PoolModel]:
        out, todo = [], [self]
        while todo:
            m = todo.pop()
            out.append(m)
            todo.extend(m.children)
        return out


class FamilyMachine(RuleBasedStateMachine):
    backing = "malloc"
    checked = True

    def __init__(self) -> None:
        super().__init__()
        self.pools: list[PoolModel] = []          # live pools
        self.dead_pools: list[PoolModel] = []
        self.dead: list[Block] = []
        self.views: list[tuple[memoryview, LiveBlock]] = []
        self.counter = 0
        self._new_root(self.backing, self.checked, True)

    def teardown(self) -> None:
        for view, _ in self.views:
            view.release()
        for m in self.pools:
            if m.parent is None:
                m.pool.destroy()

    # -- helpers ---------------------------------------------------------------
    def _fill(self, size: int) -> bytes:
        self.counter += 1
        return bytes([self.counter % 251]) * size

    def _new_root(self, backing: str, checked: bool, thread_safe: bool) -> None:
        self.counter += 1
        name = f"root{self.counter}"
        pool = Pool(name, backing=backing, checked=checked, thread_safe=thread_safe)
        self.pools.append(PoolModel(pool, name, None, 0))

    def _pool(self, data: st.DataObject, where: Callable[[PoolModel], bool] = lambda m: True
              ) -> PoolModel | None:
        choices = [m for m in self.pools if where(m)]
        return data.draw(st.sampled_from(choices)) if choices else None

    def _block(self, data: st.DataObject) -> LiveBlock | None:
        live = [lb for m in self.pools for lb in m.live]
        return data.draw(st.sampled_from(live)) if live else None

    def _added(self, m: PoolModel, block: Block, tag: str, content: bytes,
               new: bool = True) -> None:
        assert block.size == len(content) and block.tag == tag and block.pool is m.pool
        m.tags.setdefault(tag, TagModel()).add(len(content), new)
        m.allocs += new
        m.live.append(LiveBlock(block, tag, content, m))

    def _viewed(self, lb: LiveBlock) -> bool:
        return any(v is lb for _, v in self.views)

    def _family_viewed(self, m: PoolModel) -> bool:
        return any(v.owner in m.subtree() for _, v in self.views)

    def _bury(self, m: PoolModel) -> None:
        """m and every pool below it are gone, with their blocks."""
        assert not self._family_viewed(m)
        for d in m.subtree():
            d.alive = False
            self.pools.remove(d)
            self.dead_pools.append(d)
            self.dead.extend(lb.block for lb in d.live)
            d.live.clear()
            d.children = []
        if m.parent is not None:
            m.parent.children.remove(m)

    def _refused(self, call: Callable[[], object], expected: type[RingpoolError]) -> None:
        """call() must raise the package's exception ``expected`` (a RingpoolError)."""
        try:
            call()
        except RingpoolError as exc:
            assert isinstance(exc, expected), (type(exc), expected, exc)
        else:
            raise AssertionError(f"no {expected.__name__} raised")

    # -- pools -----------------------------------------------------------------
    @precondition(lambda self: sum(m.parent is None for m in self.pools) < MAX_ROOTS)
    @rule(backing=st.sampled_from(["malloc", "arena"]), checked=st.booleans(),
          thread_safe=st.booleans())
    def new_root(self, backing: str, checked: bool, thread_safe: bool) -> None:
        self._new_root(backing, checked, thread_safe)

    @rule(data=st.data(), options=st.fixed_dictionaries({}, optional={
        "backing": st.sampled_from(["malloc", "arena"]), "checked": st.booleans(),
        "thread_safe": st.booleans()}))
    def child(self, data: st.DataObject, options: dict[str, Any]) -> None:
        m = self._pool(data, lambda m: m.depth < MAX_DEPTH)
        if m is None:
            return
        self.counter += 1
        name = f"c{self.counter}"
        kid = m.pool.child(name, **options)
        info = kid.info()
        assert (info.backing, info.checked, info.thread_safe) == (
            options.get("backing", m.pool.backing), options.get("checked", m.pool.checked),
            options.get("thread_safe", m.pool.thread_safe))
        km = PoolModel(kid, name, m, m.depth + 1)
        m.children.append(km)
        self.pools.append(km)

    @rule(data=st.data())
    def reset(self, data: st.DataObject) -> None:
        m = self._pool(data)
        if m is None:
            return
        if self._family_viewed(m):
            # a view of a block of the pool or of a pool below it: nothing changes
            self._refused(m.pool.reset, BlockInUse)
            return
        m.pool.reset()
        for kid in list(m.children):
            self._bury(kid)
        self.dead.extend(lb.block for lb in m.live)
        m.live.clear()
        for t in m.tags.values():      # the tags' totals and peaks are kept
            t.blocks = t.bytes = 0

    @rule(data=st.data())
    def destroy(self, data: st.DataObject) -> None:
        # any pool, a root or one deep in a family, mid-sequence
        m = self._pool(data)
        if m is None:
            return
        if self._family_viewed(m):
            self._refused(m.pool.destroy, BlockInUse)
            assert not m.pool.destroyed
            return
        m.pool.destroy()
        self._bury(m)
        m.pool.destroy()               # idempotent

    # -- blocks ----------------------------------------------------------------
    @rule(data=st.data(), size=SIZES, tag=TAGS)
    def alloc(self, data: st.DataObject, size: int, tag: str) -> None:
        m = self._pool(data)
        if m is None:
            return
        b = m.pool.alloc(size, tag=tag)
        content = self._fill(size)
        b.write(content)
        self._added(m, b, tag, content)

    @rule(data=st.data(), n=st.integers(0, 40), size=st.integers(0, 40), tag=TAGS)
    def calloc(self, data: st.DataObject, n: int, size: int, tag: str) -> None:
        m = self._pool(data)
        if m is None:
            return
        b = m.pool.calloc(n, size, tag=tag)
        assert b.tobytes() == bytes(n * size)
        self._added(m, b, tag, bytes(n * size))

    @rule(data=st.data(), text=st.text(st.characters(blacklist_categories=("Cs",),
                                                     blacklist_characters="\0"), max_size=30),
          tag=TAGS)
    def strdup(self, data: st.DataObject, text: str, tag: str) -> None:
        m = self._pool(data)
        if m is None:
            return
        b = m.pool.strdup(text, tag=tag)
        self._added(m, b, tag, text.encode() + b"\0")

    @rule(data=st.data(), payload=st.binary(max_size=100), tag=TAGS)
    def memdup(self, data: st.DataObject, payload: bytes, tag: str) -> None:
        m = self._pool(data)
        if m is None:
            return
        b = m.pool.memdup(payload, tag=tag)
        self._added(m, b, tag, payload)

    @rule(data=st.data(), size=SIZES)
    def resize(self, data: st.DataObject, size: int) -> None:
        lb = self._block(data)
        if lb is None:
            return
        m = lb.owner
        if self._viewed(lb):
            self._refused(lambda: lb.block.resize(size), BlockInUse)
            assert not lb.block.freed and lb.block.tobytes() == lb.content
            return
        new = lb.block.resize(size)
        m.live.remove(lb)
        m.tags[lb.tag].sub(len(lb.content))
        keep = lb.content[:size]
        assert new.tobytes()[:len(keep)] == keep
        tail = self._fill(size - len(keep))
        new.write(tail, len(keep))
        self.dead.append(lb.block)
        self._added(m, new, lb.tag, keep + tail, new=False)

    @rule(data=st.data(), through_pool=st.booleans())
    def free(self, data: st.DataObject, through_pool: bool) -> None:
        lb = self._block(data)
        if lb is None:
            return
        assert lb.block.tobytes() == lb.content
        if self._viewed(lb):
            self._refused(lambda: lb.owner.pool.free(lb.block) if through_pool
                          else lb.block.free(), BlockInUse)
            assert not lb.block.freed
            return
        if through_pool:
            lb.owner.pool.free(lb.block)
        else:
            lb.block.free()
        lb.owner.live.remove(lb)
        lb.owner.tags[lb.tag].sub(len(lb.content))
        self.dead.append(lb.block)

    @rule(data=st.data())
    def hold_view(self, data: st.DataObject) -> None:
        lb = self._block(data)
        if lb is None:
            return
        view = memoryview(lb.block)
        assert view.tobytes() == lb.content
        self.views.append((view, lb))

    @rule(data=st.data())
    def release_view(self, data: st.DataObject) -> None:
        if not self.views:
            return
        i = data.draw(st.integers(0, len(self.views) - 1))
        view, lb = self.views.pop(i)
        assert view.tobytes() == lb.content
        view.release()

    # -- misuse: each raises the package's exception and changes nothing ---------
    @rule(data=st.data())
    def free_through_another_pool(self, data: st.DataObject) -> None:
        lb = self._block(data)
        if lb is None:
            return
        other = self._pool(data, lambda m: m is not lb.owner)
        if other is None:
            return
        self._refused(lambda: other.pool.free(lb.block), InvalidBlock)
        assert not lb.block.freed and lb.block.tobytes() == lb.content

    @rule(data=st.data(), action=st.sampled_from(
        ["alloc-huge", "alloc-negative", "calloc-overflow", "calloc-negative", "aligned-huge",
         "aligned-not-a-power", "resize-huge", "resize-negative", "strdup-nul",
         "strdup-surrogate", "tag-nul", "tag-surrogate", "name-nul", "write-past-end"]))
    def cannot(self, data: st.DataObject, action: str) -> None:
        m = self._pool(data)
        if m is None:
            return
        pool = m.pool
        lb = self._block(data)
        calls: dict[str, tuple[Callable[[], object], type[RingpoolError]]] = {
            "alloc-huge": (lambda: pool.alloc(2**63, tag="alpha"), OutOfMemory),
            "alloc-negative": (lambda: pool.alloc(-1, tag="alpha"), InvalidArgument),
            "calloc-overflow": (lambda: pool.calloc(2**40, 2**40, tag="beta"), OutOfMemory),
            "calloc-negative": (lambda: pool.calloc(-3, 8, tag="beta"), InvalidArgument),
            "aligned-huge": (lambda: pool.alloc_aligned(64, 2**63, tag="gamma"), OutOfMemory),
            "aligned-not-a-power": (lambda: pool.alloc_aligned(24, 8, tag="gamma"),
                                    InvalidArgument),
            "strdup-nul": (lambda: pool.strdup("a\0b", tag="alpha"), InvalidArgument),
            "strdup-surrogate": (lambda: pool.strdup("a\ud800", tag="alpha"), InvalidArgument),
            "tag-surrogate": (lambda: pool.alloc(8, tag="\udfff"), InvalidArgument),
            "tag-nul": (lambda: pool.alloc(8, tag="al\0pha"), InvalidArgument),
            "name-nul": (lambda: pool.child("c\0d"), InvalidArgument),
        }
        if lb is not None:
            # a live view stops a resize before the size is looked at
            calls["resize-huge"] = (lambda: lb.block.resize(2**63),
                                    BlockInUse if self._viewed(lb) else OutOfMemory)
            calls["resize-negative"] = (lambda: lb.block.resize(-1), InvalidArgument)
            calls["write-past-end"] = (lambda: lb.block.write(b"xy", max(len(lb.content) - 1, 0)),
                                       InvalidArgument)
        if action not in calls:
            return
        call, expected = calls[action]
        self._refused(call, expected)
        if lb is not None:
            assert not lb.block.freed and lb.block.tobytes() == lb.content

    @rule(data=st.data(), action=st.sampled_from(
        ["free", "bytes", "resize", "size", "view", "write", "free-through-pool"]))
    def use_dead_block(self, data: st.DataObject, action: str) -> None:
        if not self.dead:
            return
        b = data.draw(st.sampled_from(self.dead))
        calls: dict[str, Callable[[], object]] = {
            "free": b.free, "bytes": lambda: bytes(b), "resize": lambda: b.resize(1),
            "size": lambda: b.size, "view": lambda: memoryview(b),
            "write": lambda: b.write(b"x"),
        }
        if action == "free-through-pool":
            owner = next((m for m in self.pools if m.pool is b.pool), None)
            if owner is None:
                return   # its pool is gone too: use_dead_pool's business
            calls[action] = lambda: owner.pool.free(b)
        self._refused(calls[action], BlockFreedError)
        assert b.freed

    @rule(data=st.data(), action=st.sampled_from(
        ["alloc", "calloc", "strdup", "memdup", "child", "reset", "snapshot", "outstanding",
         "info", "check", "blocks", "aligned"]))
    def use_dead_pool(self, data: st.DataObject, action: str) -> None:
        if not self.dead_pools:
            return
        pool = data.draw(st.sampled_from(self.dead_pools)).pool
        calls: dict[str, Callable[[], object]] = {
            "alloc": lambda: pool.alloc(8, tag="alpha"),
            "calloc": lambda: pool.calloc(2, 8, tag="alpha"),
            "strdup": lambda: pool.strdup("x", tag="alpha"),
            "memdup": lambda: pool.memdup(b"x", tag="alpha"),
            "child": lambda: pool.child("late"),
            "reset": pool.reset,
            "snapshot": lambda: pool.snapshot(children=True),
            "outstanding": pool.outstanding,
            "info": pool.info,
            "check": pool.check,
            "blocks": lambda: list(pool.blocks()),
            "aligned": lambda: pool.alloc_aligned(16, 8, tag="alpha"),
        }
        self._refused(calls[action], PoolDestroyedError)
        assert pool.destroyed
        pool.destroy()                 # idempotent on a dead pool

    # -- what the pools say ------------------------------------------------------
    @rule(data=st.data())
    def snapshot_matches_model(self, data: st.DataObject) -> None:
        m = self._pool(data)
        if m is None:
            return
        snap = m.pool.snapshot(blocks=True, children=True)
        pairs = [(snap, m)]
        while pairs:
            s, pm = pairs.pop()
            assert s.pool == pm.name
            got = {t.tag: (t.blocks, t.bytes, t.peak_bytes, t.allocs) for t in s.tags}
            want = {tag: (t.blocks, t.bytes, t.peak, t.allocs) for tag, t in pm.tags.items()}
            assert got == want
            assert (s.totals.blocks, s.totals.bytes, s.totals.allocs) == (
                len(pm.live), pm.total_bytes(), pm.allocs)
            assert s.blocks is not None
            assert sorted((b.address, b.size, b.tag) for b in s.blocks) == sorted(
                (lb.block.address, len(lb.content), lb.tag) for lb in pm.live)
            assert [c.pool for c in s.children] == [c.name for c in pm.children]
            pairs.extend(zip(s.children, pm.children))
        # the family's tags summed, as statistics() sums them
        family: dict[str, list[int]] = {}
        for d in m.subtree():
            for tag, t in d.tags.items():
                f = family.setdefault(tag, [0, 0, 0])
                f[0] += t.blocks
                f[1] += t.bytes
                f[2] += t.allocs
        assert {t.tag: [t.blocks, t.bytes, t.allocs] for t in snap.statistics()} == family
        assert snap == type(snap).from_dict(snap.to_dict())

    @invariant()
    def counters_match(self) -> None:
        for m in self.pools:
            assert m.pool.outstanding() == (len(m.live), m.total_bytes())
            info = m.pool.info()
            assert (info.blocks, info.bytes, info.allocs, info.children) == (
                len(m.live), m.total_bytes(), m.allocs, len(m.children))
            m.pool.check()
        assert all(b.freed for b in self.dead)
        assert all(m.pool.destroyed for m in self.dead_pools)


class ArenaFamilyMachine(FamilyMachine):
    backing = "arena"


class UncheckedFamilyMachine(FamilyMachine):
    checked = False


class UncheckedArenaFamilyMachine(FamilyMachine):
    backing = "arena"
    checked = False


# Many short sequences (each example a seed of its own), a few seconds a machine;
# fewer and shorter under `make test-py-asan` (RINGPOOL_PY_ASAN), where every
# call costs several times more (docs/python.md, "Sanitizers").
_EXAMPLES, _STEPS = (15, 30) if os.environ.get("RINGPOOL_PY_ASAN") else (50, 40)
for _machine in (FamilyMachine, ArenaFamilyMachine, UncheckedFamilyMachine,
                 UncheckedArenaFamilyMachine):
    _machine.TestCase.settings = settings(max_examples=_EXAMPLES, stateful_step_count=_STEPS)

TestMallocModel = FamilyMachine.TestCase
TestArenaModel = ArenaFamilyMachine.TestCase
TestUncheckedMallocModel = UncheckedFamilyMachine.TestCase
TestUncheckedArenaModel = UncheckedArenaFamilyMachine.TestCase
