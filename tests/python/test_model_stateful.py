"""Hypothesis drives random alloc/calloc/resize/free/snapshot/reset/destroy
sequences against a pure Python model and checks every count, byte and tag."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from allocator import Block, BlockFreedError, Pool

TAGS = st.sampled_from(["alpha", "beta", "gamma", "δέλτα", "(untagged)"])
SIZES = st.integers(min_value=0, max_value=3000)


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


@dataclass
class Model:
    tags: dict[str, TagModel] = field(default_factory=dict)
    live: list[LiveBlock] = field(default_factory=list)
    peak: int = 0
    allocs: int = 0

    def total_bytes(self) -> int:
        return sum(lb.block.size for lb in self.live)


class PoolMachine(RuleBasedStateMachine):
    backing = "malloc"

    def __init__(self) -> None:
        super().__init__()
        self.pool = Pool("model", backing=self.backing, checked=True)
        self.model = Model()
        self.dead: list[Block] = []
        self.counter = 0

    def teardown(self) -> None:
        self.pool.destroy()

    # -- helpers ---------------------------------------------------------------
    def _fill(self, size: int) -> bytes:
        self.counter += 1
        return bytes([self.counter % 251]) * size

    def _added(self, block: Block, tag: str, content: bytes, new: bool = True) -> None:
        self.model.tags.setdefault(tag, TagModel()).add(block.size, new)
        self.model.allocs += new
        self.model.live.append(LiveBlock(block, tag, content))
        self.model.peak = max(self.model.peak, self.model.total_bytes())

    # -- rules -----------------------------------------------------------------
    @rule(size=SIZES, tag=TAGS)
    def alloc(self, size: int, tag: str) -> None:
        b = self.pool.alloc(size, tag=tag)
        content = self._fill(size)
        memoryview(b)[:] = content
        self._added(b, tag, content)

    @rule(n=st.integers(0, 40), size=st.integers(0, 40), tag=TAGS)
    def calloc(self, n: int, size: int, tag: str) -> None:
        b = self.pool.calloc(n, size, tag=tag)
        self._added(b, tag, bytes(n * size))

    @rule(text=st.text(st.characters(blacklist_characters="\0"), max_size=30), tag=TAGS)
    def strdup(self, text: str, tag: str) -> None:
        b = self.pool.strdup(text, tag=tag)
        self._added(b, tag, text.encode() + b"\0")

    @rule(data=st.data(), size=SIZES)
    def resize(self, data: st.DataObject, size: int) -> None:
        if not self.model.live:
            return
        i = data.draw(st.integers(0, len(self.model.live) - 1))
        lb = self.model.live.pop(i)
        old = lb.block
        new = old.resize(size)
        self.model.tags[lb.tag].sub(len(lb.content))
        keep = lb.content[:size]
        tail = self._fill(size - len(keep))
        assert bytes(new)[:len(keep)] == keep
        memoryview(new)[len(keep):] = tail
        self.dead.append(old)
        self._added(new, lb.tag, keep + tail, new=False)

    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        if not self.model.live:
            return
        i = data.draw(st.integers(0, len(self.model.live) - 1))
        lb = self.model.live.pop(i)
        assert bytes(lb.block) == lb.content
        size = lb.block.size
        lb.block.free()
        self.model.tags[lb.tag].sub(size)
        self.dead.append(lb.block)

    @rule(data=st.data())
    def use_dead(self, data: st.DataObject) -> None:
        if not self.dead:
            return
        b = data.draw(st.sampled_from(self.dead))
        action = data.draw(st.sampled_from(["free", "bytes", "resize", "size", "view"]))
        with pytest.raises(BlockFreedError):
            if action == "free":
                b.free()
            elif action == "bytes":
                bytes(b)
            elif action == "resize":
                b.resize(1)
            elif action == "size":
                _ = b.size
            else:
                memoryview(b)

    @rule()
    def reset(self) -> None:
        self.pool.reset()
        for lb in self.model.live:
            self.dead.append(lb.block)
        self.model.live.clear()
        for t in self.model.tags.values():
            t.blocks = t.bytes = 0

    @rule()
    def destroy_and_recreate(self) -> None:
        self.pool.destroy()
        self.dead.extend(lb.block for lb in self.model.live)
        self.pool = Pool("model", backing=self.backing, checked=True)
        self.model = Model()

    @rule()
    def snapshot_matches_model(self) -> None:
        snap = self.pool.snapshot(blocks=True)
        got = {t.tag: (t.blocks, t.bytes, t.peak_bytes, t.allocs) for t in snap.tags}
        want = {tag: (m.blocks, m.bytes, m.peak, m.allocs)
                for tag, m in self.model.tags.items()}
        assert got == want
        assert (snap.totals.blocks, snap.totals.bytes) == (len(self.model.live),
                                                           self.model.total_bytes())
        assert snap.totals.allocs == self.model.allocs
        assert snap.blocks is not None
        assert sorted((b.address, b.size, b.tag) for b in snap.blocks) == sorted(
            (lb.block.address, lb.block.size, lb.tag) for lb in self.model.live)

    @invariant()
    def counts_match(self) -> None:
        assert self.pool.outstanding() == (len(self.model.live), self.model.total_bytes())
        assert all(b.freed for b in self.dead)

    @invariant()
    def pool_is_consistent(self) -> None:
        self.pool.check()


class ArenaPoolMachine(PoolMachine):
    backing = "arena"


TestMallocModel = PoolMachine.TestCase
TestArenaModel = ArenaPoolMachine.TestCase
