#!/usr/bin/env python3
"""layout_sim.py -- the arena's small-block layouts replayed on a trace's
sizes: where its peak memory goes and what another layout's floor is.

    build/bench-c/replay --dump build/traces/python3.trace > /tmp/python3.dump
    python3 benches/c/trace/layout_sim.py [--layout NAME ...] [--shrink-moves] [--tags N] < /tmp/python3.dump

Reads `replay --dump` records (malloc/calloc/realloc ID SIZE, free ID,
aligned ID SIZE ALIGN: the alignment is left out) and replays them against
a model of each layout: the slot every block takes, free slots kept by
class and taken first (last in, first out, as the arena's class lists),
chunks carved by a bump pointer and never given back while the pool lives,
the block carved last given back to its chunk when freed and grown in
place (as the arena does), big blocks by their pages. It prints, per
layout:

  - floor:    the most, at any moment, of the live blocks' slots and words
              (headerless), or their sizes rounded up to 16 with the
              16-byte header: as `replay --info`'s floors, with no class
              rounding past 16 bytes and a resize taken as one step;
  - live:     the most, at any moment, of the live blocks' slots with
              their words or headers, in the layout's classes;
  - touched:  the most, at any moment, of the bytes touched: every slot
              ever carved (free or live), the chunks' headers and slot
              words, the big blocks: what the process keeps resident;

and, at the moment of the most touched, how it splits: live slots, free
slots by class, chunk overhead, and the bytes kept by shrinks (the live
blocks' slots less what the same blocks would take allocated at their
present sizes). Layouts:

  default   the 16-byte header on blocks over 16 bytes (classes of 16 bytes
            up to 1 KiB, four per power of two up to 32 KiB, 1 MiB
            chunks), 16-byte headerless slots with a 4-byte word (64 KiB
            chunks)
  hl64      RINGPOOL_HEADERLESS=64: headerless slots of 16/32/64/64 bytes
            for 1-16/17-32/33-48/49-64 bytes, a 4-byte word each
  exact128  headerless slots in exact 16-byte classes up to 128 bytes, a
            1-byte word each (the size's remainder, live and destructor
            bits; the tag and the pool per chunk), the header above
  exact256  the same up to 256 bytes
  exact128-pool, exact256-pool
            as exact128/exact256, but a chunk with no live slot goes to
            one list shared by every class, for the next class that needs
            a chunk (what mimalloc does with an empty page)
  exact128-w4, exact128-w2
            headerless slots in exact 16-byte classes up to 128 bytes with a
            4-byte or a 2-byte word per slot holding the tag as an index, as
            the arena's slot word does (the size's remainder in its class, 4
            bits, the live and destructor bits, 2, and the tag's index in
            the rest: 26 bits, or 10 with a 2-byte word, index 0 meaning
            none); a block whose tag's index does not fit takes the header
            (a tag's index is given at its first block, in that order)

--tags N: the blocks' tags (default 1, as `replay` gives every block one
tag): the allocations take tags 1 to N in turn, so that the layouts whose
word holds fewer bits of a tag's index than N needs show what the blocks
past it cost with a header. The traces carry no tags: with N above 1 the
tags are made up.

--shrink-moves: a shrink to half the block's slot or less moves it to the
smaller class (what the arena does since "A shrink to half its slot or
less moves", docs/benchmarks.md; before, it kept its slot). The model
leaves out what is the same for every layout (the pool, its tag table) and
the C library's own pages: its touched figures run 0.2-0.4 MiB below the
replay's measured peaks on python3.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

PAGE = 4096
MiB = 1024 * 1024
BIG_LIMIT = 32768          # RPI_BIG_LIMIT: a block with its header past it is big
GROW_LIMIT = 4096          # RPI_GROW_LIMIT: the block carved last grows in place up to it
HDR = 16                   # the arena's compact header
HL_CHUNK = 64 * 1024       # RPI_HL_CHUNK
HL_HDR = 64                # RPI_HL_HDR: the headerless chunk's header
CHUNK = 1024 * 1024        # the arena's default chunk
CHUNK_HDR = 32             # rpi_chunk
BIG_EXTRA = 32 + HDR       # rpi_big and the header before a big block

Op = tuple[str, int, int]  # ('a' alloc / 'r' resize / 'f' free, id, size)


def r16(n: int) -> int:
    return (n + 15) & ~15


def class_bytes(total: int) -> int:
    """The arena's class for a block of total bytes with its header."""
    if total <= 1024:
        return r16(max(total, 1))
    p = 1024
    while p * 2 < total:
        p *= 2
    step = p // 4
    return (total + step - 1) // step * step


def big_bytes(n: int) -> int:
    return (n + BIG_EXTRA + PAGE - 1) // PAGE * PAGE


@dataclass
class HlClass:
    """A headerless class: requests up to top bytes take a slot of slot
    bytes and a word of word bytes; with tag_bits, a block whose tag's index
    (1 up) does not fit in them takes a block with a header instead (0: the
    tag is not in the word)."""
    top: int
    slot: int
    word: int
    tag_bits: int = 0

    @property
    def count(self) -> int:   # slots in a chunk, after the header and words
        return (HL_CHUNK - HL_HDR) // (self.slot + self.word)


@dataclass
class Chunk:
    cls: int                  # index in Layout.hl
    carved: int = 0           # slots carved
    live: int = 0
    touched: int = 0          # bytes touched (pages)
    floor_touched: int = 0    # pages touched by a class that had it before


@dataclass
class Block:
    kind: str                 # 'hl', 'h' (a header), 'big'
    cls: int                  # hl: class index; h: class bytes
    bytes: int                # what it takes: slot + word, class bytes, pages
    chunk: int = -1           # hl: its chunk; h: its chunk (1-based), or -1 once reused
    off: int = 0              # h: its offset in that chunk


@dataclass
class Layout:
    name: str
    hl: list[HlClass]
    pool_chunks: bool = False
    shrink_moves: bool = False
    ntags: int = 1
    # state
    nallocs: int = 0
    tag_of: dict[object, int] = field(default_factory=dict)       # block -> its tag's index
    blocks: dict[object, Block] = field(default_factory=dict)
    sizes: dict[object, int] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    free: dict[int, list[int]] = field(default_factory=dict)      # hl class -> chunks of free slots
    current: dict[int, int] = field(default_factory=dict)         # hl class -> its current chunk
    empty: list[int] = field(default_factory=list)                # pool_chunks: chunks with no live slot
    hl_touched: int = 0
    h_free: dict[int, int] = field(default_factory=dict)          # class bytes -> free blocks
    h_chunks: int = 0
    h_cur: int = 0
    h_touched: int = 0
    big: int = 0
    live: int = 0
    peak_live: int = 0
    peak_touched: int = 0

    @property
    def hl_top(self) -> int:
        return self.hl[-1].top if self.hl else 0

    def hl_class(self, n: int) -> int:
        """The headerless class of a request of n <= hl_top bytes."""
        n = max(n, 1)
        for i, c in enumerate(self.hl):
            if n <= c.top:
                return i
        raise ValueError(n)

    def headerless(self, n: int, tag: int) -> bool:
        """Whether a block of n bytes of tag index tag takes a headerless
        slot."""
        if n > self.hl_top:
            return False
        bits = self.hl[self.hl_class(n)].tag_bits
        return bits == 0 or tag < 1 << bits

    def fresh(self, n: int, tag: int = 1) -> int:
        """What a block of n bytes takes allocated at that size."""
        if self.headerless(n, tag):
            c = self.hl[self.hl_class(n)]
            return c.slot + c.word
        if n + HDR > BIG_LIMIT:
            return big_bytes(n)
        return class_bytes(n + HDR)

    def floor_cost(self, n: int, tag: int = 1) -> int:
        if self.headerless(n, tag):
            c = self.hl[self.hl_class(n)]
            return c.slot + c.word
        return r16(n) + HDR

    # -- headerless slots
    def chunk_touch(self, ch: Chunk) -> None:
        c = self.hl[ch.cls]
        first = HL_CHUNK - c.slot * c.count
        pages = {0}
        if ch.carved:
            pages.update(range(HL_HDR // PAGE, (HL_HDR + c.word * ch.carved - 1) // PAGE + 1))
            pages.update(range(first // PAGE, (first + c.slot * ch.carved - 1) // PAGE + 1))
        t = max(len(pages) * PAGE, ch.floor_touched)
        self.hl_touched += t - ch.touched
        ch.touched = t

    def hl_alloc(self, bid: object, k: int) -> None:
        c = self.hl[k]
        fl = self.free.setdefault(k, [])
        if fl:
            ci = fl.pop()
        else:
            ci = self.current.get(k, -1)
            if ci < 0 or self.chunks[ci].carved >= c.count:
                if self.pool_chunks and self.empty:
                    ci = self.empty.pop()
                    old = self.chunks[ci]
                    self.chunks[ci] = Chunk(k, touched=old.touched, floor_touched=old.touched)
                else:
                    ci = len(self.chunks)
                    self.chunks.append(Chunk(k))
                self.current[k] = ci
            self.chunks[ci].carved += 1
            self.chunk_touch(self.chunks[ci])
        self.chunks[ci].live += 1
        self.blocks[bid] = Block('hl', k, c.slot + c.word, ci)
        self.live += c.slot + c.word

    def hl_free(self, b: Block) -> None:
        ch = self.chunks[b.chunk]
        ch.live -= 1
        if self.pool_chunks and ch.live == 0 and self.current.get(b.cls) != b.chunk:
            # every slot of it free: off its class's list, onto the shared one
            self.free[b.cls] = [x for x in self.free[b.cls] if x != b.chunk]
            self.empty.append(b.chunk)
            return
        self.free.setdefault(b.cls, []).append(b.chunk)

    # -- blocks with a header
    def h_touch(self) -> None:
        t = (self.h_chunks - 1) * CHUNK + (CHUNK_HDR + self.h_cur + PAGE - 1) // PAGE * PAGE
        self.h_touched = max(self.h_touched, t)

    def h_alloc(self, bid: object, n: int) -> None:
        if n + HDR > BIG_LIMIT:
            b = big_bytes(n)
            self.big += b
            self.live += b
            self.blocks[bid] = Block('big', 0, b)
            return
        cs = class_bytes(n + HDR)
        if self.h_free.get(cs):
            self.h_free[cs] -= 1
            self.blocks[bid] = Block('h', cs, cs)
        else:
            if self.h_chunks == 0 or self.h_cur + cs > CHUNK - CHUNK_HDR:
                self.h_chunks += 1
                self.h_cur = 0
            self.blocks[bid] = Block('h', cs, cs, self.h_chunks, self.h_cur)
            self.h_cur += cs
            self.h_touch()
        self.live += cs

    def carved_last(self, b: Block) -> bool:
        return b.chunk == self.h_chunks and b.off + b.cls == self.h_cur

    def h_free_block(self, b: Block) -> None:
        if self.carved_last(b):
            self.h_cur = b.off        # back to the chunk
        else:
            self.h_free[b.cls] = self.h_free.get(b.cls, 0) + 1

    # -- the trace's operations
    def alloc(self, bid: object, n: int, tag: int | None = None) -> None:
        if tag is None:   # a new block: the next tag in turn
            tag = self.nallocs % self.ntags + 1
            self.nallocs += 1
        if self.headerless(n, tag):
            self.hl_alloc(bid, self.hl_class(n))
        else:
            self.h_alloc(bid, n)
        self.sizes[bid] = n
        self.tag_of[bid] = tag

    def free_(self, bid: object) -> None:
        b = self.blocks.pop(bid)
        del self.sizes[bid]
        del self.tag_of[bid]
        self.live -= b.bytes
        if b.kind == 'hl':
            self.hl_free(b)
        elif b.kind == 'h':
            self.h_free_block(b)
        else:
            self.big -= b.bytes

    def move(self, bid: object, n: int) -> None:
        tmp = ('moving', bid)
        self.alloc(tmp, n, self.tag_of[bid])
        self.free_(bid)
        self.blocks[bid] = self.blocks.pop(tmp)
        self.sizes[bid] = self.sizes.pop(tmp)
        self.tag_of[bid] = self.tag_of.pop(tmp)

    def resize(self, bid: object, n: int) -> None:
        b = self.blocks[bid]
        tag = self.tag_of[bid]
        if (self.shrink_moves and n < self.sizes[bid] and b.kind != 'big'
                and 2 * self.fresh(n, tag) <= b.bytes):
            self.move(bid, n)
            return
        if b.kind == 'hl':
            if self.headerless(n, tag) and self.hl_class(n) == b.cls:
                self.sizes[bid] = n
                return
        elif b.kind == 'h':
            total = n + HDR
            if total <= b.cls:              # within its class (a shrink keeps it)
                self.sizes[bid] = n
                return
            ncs = class_bytes(total)
            if (total <= GROW_LIMIT and self.carved_last(b) and not self.h_free.get(ncs)
                    and b.off + ncs <= CHUNK - CHUNK_HDR):
                # the block carved last grows into the chunk's rest
                self.h_cur = b.off + ncs
                self.live += ncs - b.cls
                b.cls = b.bytes = ncs
                self.h_touch()
                self.sizes[bid] = n
                return
        elif n + HDR > BIG_LIMIT:           # a big block resized by realloc
            nb = big_bytes(n)
            self.big += nb - b.bytes
            self.live += nb - b.bytes
            b.bytes = nb
            self.sizes[bid] = n
            return
        self.move(bid, n)

    def touched(self) -> int:
        return self.hl_touched + self.h_touched + self.big


def replay(lay: Layout, ops: list[Op], stop: int | None = None) -> int:
    """Replays ops on a fresh layout (up to index stop); returns the index at
    which the touched total was largest."""
    at = 0
    for i, (kind, bid, n) in enumerate(ops):
        if stop is not None and i > stop:
            break
        if kind == 'f':
            lay.free_(bid)
            continue
        if kind == 'r':
            lay.resize(bid, n)
        else:
            lay.alloc(bid, n)
        lay.peak_live = max(lay.peak_live, lay.live)
        t = lay.touched()
        if t > lay.peak_touched:
            lay.peak_touched = t
            at = i
    return at


def floor(lay: Layout, ops: list[Op]) -> int:
    sizes: dict[int, int] = {}
    tags: dict[int, int] = {}
    cur = peak = nallocs = 0
    for kind, bid, n in ops:
        if kind == 'f':
            cur -= lay.floor_cost(sizes.pop(bid), tags.pop(bid))
            continue
        if kind == 'r':
            cur -= lay.floor_cost(sizes[bid], tags[bid])
        else:   # the tags in turn, as Layout.alloc gives them
            tags[bid] = nallocs % lay.ntags + 1
            nallocs += 1
        sizes[bid] = n
        cur += lay.floor_cost(n, tags[bid])
        peak = max(peak, cur)
    return peak


def layouts() -> dict[str, tuple[list[HlClass], bool]]:
    e128 = [HlClass(16 * k, 16 * k, 1) for k in range(1, 9)]
    e256 = [HlClass(16 * k, 16 * k, 1) for k in range(1, 17)]
    # a word of 4 or 2 bytes: the size's remainder (4 bits), the live and
    # destructor bits, the tag's index in the rest
    e128w4 = [HlClass(16 * k, 16 * k, 4, 32 - 6) for k in range(1, 9)]
    e128w2 = [HlClass(16 * k, 16 * k, 2, 16 - 6) for k in range(1, 9)]
    return {
        'default': ([HlClass(16, 16, 4)], False),
        'hl64': ([HlClass(16, 16, 4), HlClass(32, 32, 4), HlClass(48, 64, 4), HlClass(64, 64, 4)], False),
        'exact128': (e128, False),
        'exact256': (e256, False),
        'exact128-pool': (e128, True),
        'exact256-pool': (e256, True),
        'exact128-w4': (e128w4, False),
        'exact128-w2': (e128w2, False),
    }


def read_ops(f: object) -> list[Op]:
    ops: list[Op] = []
    for line in f:  # type: ignore[attr-defined]
        w = line.split()
        if w[0] == 'free':
            ops.append(('f', int(w[1]), 0))
        elif w[0] == 'realloc':
            ops.append(('r', int(w[1]), int(w[2])))
        else:
            ops.append(('a', int(w[1]), int(w[2])))
    return ops


def mib(n: int) -> str:
    return f'{n / MiB:.2f}'


def main() -> None:
    all_ = layouts()
    ap = argparse.ArgumentParser(description=(__doc__ or '').split('\n\n')[0])
    ap.add_argument('--layout', action='append', choices=list(all_), help='layouts (default: all)')
    ap.add_argument('--shrink-moves', action='store_true',
                    help='a shrink to half its slot or less moves the block to the smaller class')
    ap.add_argument('--tags', type=int, default=1, metavar='N',
                    help='the allocations take tags 1 to N in turn (default 1, as replay gives)')
    args = ap.parse_args()
    if args.tags < 1:
        ap.error('--tags: at least 1')
    ops = read_ops(sys.stdin)
    for name in args.layout or list(all_):
        hl, pool_chunks = all_[name]
        lay = Layout(name, hl, pool_chunks, args.shrink_moves, args.tags)
        at = replay(lay, ops)
        # replayed again up to the most touched, to say what it is made of
        snap = Layout(name, hl, pool_chunks, args.shrink_moves, args.tags)
        replay(snap, ops, stop=at)
        hl_live = sum(b.bytes for b in snap.blocks.values() if b.kind == 'hl')
        h_live = sum(b.bytes for b in snap.blocks.values() if b.kind == 'h')
        kept = sum(b.bytes - snap.fresh(snap.sizes[k], snap.tag_of[k]) for k, b in snap.blocks.items())
        hl_free = {k: len(v) * snap.hl[k].slot for k, v in snap.free.items() if v}
        h_free = sum(cs * n for cs, n in snap.h_free.items())
        tags = f' ({args.tags} tags)' if args.tags > 1 else ''
        print(f'## {name}{" (shrinks move)" if args.shrink_moves else ""}{tags}: floor {mib(floor(lay, ops))} MiB; '
              f'most live {mib(lay.peak_live)} MiB; most touched {mib(lay.peak_touched)} MiB')
        print(f'   at the most touched: {len(snap.blocks)} live blocks; headerless: {len(snap.chunks)} chunks, '
              f'{mib(snap.hl_touched)} MiB touched, live slots {mib(hl_live)}, '
              f'free slots {mib(sum(hl_free.values()))}, empty chunks {len(snap.empty)}; '
              f'with a header: {snap.h_chunks} chunks, {mib(snap.h_touched)} MiB touched, '
              f'live {mib(h_live)}, free {mib(h_free)}; big {mib(snap.big)}')
        print(f'   kept by shrinks (live slots less what the blocks take allocated at their sizes): '
              f'{mib(kept)} MiB')
        fr = ', '.join(f'{snap.hl[k].slot}: {mib(v)}' for k, v in sorted(hl_free.items()))
        print(f'   free headerless slots by class (slot bytes: MiB): {fr or "none"}')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
