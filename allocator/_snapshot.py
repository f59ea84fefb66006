"""Snapshot: counters by tag, like tracemalloc's, in the ringpool report format.

The report format (docs/report-format.md) is versioned JSON written by the C
library; :meth:`Snapshot.load` reads it strictly and :meth:`Snapshot.dump`
writes it in the same layout, so a report written by the C side loads and
dumps back to the same bytes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from audit import schema
from audit.printable import printable
from audit.schema import BlockRecord, PoolReport, TagStat, Totals

FORMAT = schema.FORMAT
VERSION = schema.VERSION
REASONS = schema.REASONS
BACKINGS = schema.BACKINGS


@dataclass(frozen=True)
class TagDiff:
    """One tag compared between two snapshots (new minus old)."""

    tag: str
    blocks: int
    blocks_diff: int
    bytes: int
    bytes_diff: int


@dataclass(eq=False, repr=False)  # PoolReport's __eq__ and __repr__: no recursion
class Snapshot(PoolReport):
    """A pool's counters by tag at one moment (``Pool.snapshot()``, or a
    report file read by :meth:`load`).  The fields are those of
    :class:`audit.schema.PoolReport`; ``children`` are Snapshots.

    Nothing here walks the children by recursion: a snapshot of pools nested
    deeper than Python's recursion limit compares, prints, converts
    (:meth:`to_dict`, :meth:`dumps`) and reads back like any other."""

    children: list[Snapshot] = field(default_factory=list)  # type: ignore[assignment]

    # -- construction ---------------------------------------------------------
    @classmethod
    def _from_counters(cls, *, pool: str, backing: str,
                       totals: tuple[int, int, int, int, int],
                       tags: Iterable[tuple[str, int, int, int, int]],
                       blocks: list[tuple[int, int, str]] | None,
                       children: list[Snapshot]) -> Snapshot:
        now = datetime.datetime.now(datetime.timezone.utc)
        return cls(pool=pool, pid=os.getpid(), taken_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   reason="request", backing=backing, totals=Totals(*totals),
                   tags=[TagStat(*t) for t in tags],
                   blocks=None if blocks is None else [BlockRecord(*b) for b in blocks],
                   children=children)

    @classmethod
    def from_dict(cls, d: object, source: str = "<dict>", *,
                  limits: schema.Limits = schema.DEFAULT_LIMITS) -> Snapshot:
        """A snapshot from a decoded report; ValueError (an
        :class:`audit.schema.ReportFormatError`) naming ``source`` and the field
        when anything is missing, mistyped, out of range or inconsistent, or
        beyond ``limits`` (child pools nested more than 100 levels by default:
        ``Limits(max_depth=N)`` reads deeper ones)."""
        return schema.parse_snapshot(d, source, limits=limits, cls=cls)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             limits: schema.Limits = schema.DEFAULT_LIMITS) -> Snapshot:
        """Reads a report file (C library, ``dump()``, ``ringpool-audit``); only
        a regular file (or ``-`` for standard input), within the limits of
        :class:`audit.schema.Limits` (1 GiB, child pools nested 100 levels by
        default).  ValueError with a one-line message."""
        return schema.load_snapshot(path, limits=limits, cls=cls)

    # -- output ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (key order as in the format)."""
        return schema.to_dict(self)

    def dumps(self) -> str:
        """The report text, laid out as the C library writes it."""
        return schema.dumps(self)

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Writes the report to ``path`` (UTF-8, the C library's layout)."""
        with open(os.fspath(path), "w", encoding="utf-8", newline="\n") as f:
            f.write(self.dumps())

    # -- analysis -------------------------------------------------------------
    def _by_tag(self, children: bool) -> list[TagStat]:
        """This pool's tags, or (children and the snapshot holds child pools)
        the whole family's summed by tag, in first-seen order."""
        if not children or not self.children:
            return self.tags
        merged: dict[str, list[int]] = {}
        for pool in self.pools():
            for t in pool.tags:
                m = merged.get(t.tag)
                if m is None:
                    merged[t.tag] = [t.blocks, t.bytes, t.peak_bytes, t.allocs]
                else:
                    m[0] += t.blocks
                    m[1] += t.bytes
                    m[2] = max(m[2], t.peak_bytes)
                    m[3] += t.allocs
        return [TagStat(tag, m[0], m[1], m[2], m[3]) for tag, m in merged.items()]

    def statistics(self, *, children: bool = True) -> list[TagStat]:
        """Per-tag counters, largest outstanding bytes first.

        When the snapshot holds child pools (``snapshot(children=True)``, or a
        report with children), their tags count too, summed by tag: blocks,
        bytes and allocs add up, ``peak_bytes`` is the largest of the pools'
        peaks.  ``children=False``: this pool's own tags only."""
        return sorted(self._by_tag(children), key=lambda t: (-t.bytes, -t.blocks, t.tag))

    def compare_to(self, older: Snapshot, *, children: bool = True) -> list[TagDiff]:
        """Per-tag differences from ``older`` to this snapshot (tags of either),
        largest absolute byte change first (tracemalloc's ``compare_to``).
        Child pools count as in :meth:`statistics`."""
        if not isinstance(older, Snapshot):
            raise TypeError(f"compare_to takes a Snapshot, not {type(older).__name__}")
        new = {t.tag: t for t in self._by_tag(children)}
        old = {t.tag: t for t in older._by_tag(children)}
        diffs = []
        for tag in list(new) + [t for t in old if t not in new]:
            n, o = new.get(tag), old.get(tag)
            blocks, nbytes = (n.blocks, n.bytes) if n else (0, 0)
            oblocks, obytes = (o.blocks, o.bytes) if o else (0, 0)
            diffs.append(TagDiff(tag, blocks, blocks - oblocks, nbytes, nbytes - obytes))
        return sorted(diffs, key=lambda d: (-abs(d.bytes_diff), -d.bytes,
                                            -abs(d.blocks_diff), d.tag))

    def table(self, fmt: str = "github", *, top: int | None = None,
              children: bool = True) -> str:
        """The per-tag statistics as a text table (tabulate's ``tablefmt``),
        numbers right-aligned, largest outstanding bytes first.  When the
        snapshot holds child pools with tags, each pool's tags get their own
        rows and a ``pool`` column gives the pool's path (``parent/child``); pool
        names and tags are written by the CLI's one rule (a newline as ``\\n``);
        ``children=False`` shows this pool's tags only."""
        from tabulate import tabulate, tabulate_formats  # type: ignore[import-untyped]

        if fmt not in tabulate_formats:
            raise ValueError(f"unknown table format {fmt!r}; one of: "
                             f"{', '.join(sorted(tabulate_formats))}")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
            raise ValueError(f"top must be a non-negative int, got {top!r}")
        headers = ["tag", "blocks", "bytes", "peak_bytes", "allocs"]
        if children and any(c.tags for c in self.pools() if c is not self):
            family = [(path, t) for path, pool in self.walk_paths() for t in pool.tags]
            family.sort(key=lambda pt: (-pt[1].bytes, -pt[1].blocks, pt[1].tag, pt[0]))
            rows: list[list[object]] = [[schema.path_shown(path), printable(t.tag), t.blocks,
                                         t.bytes, t.peak_bytes, t.allocs]
                                        for path, t in family]
            headers.insert(0, "pool")
        else:
            rows = [[printable(t.tag), t.blocks, t.bytes, t.peak_bytes, t.allocs]
                    for t in self.statistics(children=False)]
        if top is not None:
            rows = rows[:top]
        return str(tabulate(rows, headers=headers, tablefmt=fmt))


__all__ = ["Snapshot", "TagStat", "TagDiff", "Totals", "BlockRecord"]
