"""Snapshot: counters by tag, like tracemalloc's, in the ringpool report format.

The report format (docs/report-format.md) is versioned JSON written by the C
library; :meth:`Snapshot.load` reads it strictly and :meth:`Snapshot.dump`
writes it in the same layout, so a report written by the C side loads and
dumps back to the same bytes.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

FORMAT = "ringpool-snapshot"
VERSION = 1
REASONS = ("destroy", "exit", "request")
BACKINGS = ("malloc", "arena")
_TAKEN_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_ADDRESS = re.compile(r"0x[0-9a-f]+\Z")


@dataclass(frozen=True)
class TagStat:
    """One tag's counters: outstanding blocks and bytes, peak bytes, allocations ever."""

    tag: str
    blocks: int
    bytes: int
    peak_bytes: int
    allocs: int


@dataclass(frozen=True)
class TagDiff:
    """One tag compared between two snapshots (new minus old)."""

    tag: str
    blocks: int
    blocks_diff: int
    bytes: int
    bytes_diff: int


@dataclass(frozen=True)
class Totals:
    """Pool-wide counters; ``reserved_bytes`` is None when the report omits it."""

    blocks: int
    bytes: int
    peak_bytes: int
    allocs: int
    reserved_bytes: int | None = None


@dataclass(frozen=True)
class BlockRecord:
    """One outstanding block of a snapshot taken with blocks."""

    address: int
    size: int
    tag: str


@dataclass(eq=True)
class Snapshot:
    """A pool's counters by tag at one moment (``Pool.snapshot()``, or a
    report file read by :meth:`load`)."""

    pool: str
    pid: int
    taken_at: str
    reason: str
    backing: str
    totals: Totals
    tags: list[TagStat]
    blocks: list[BlockRecord] | None = None
    children: list[Snapshot] = field(default_factory=list)
    source: str | None = field(default=None, compare=False)

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
    def from_dict(cls, d: object, source: str = "<dict>") -> Snapshot:
        """A snapshot from a decoded report; ValueError naming ``source`` and
        the field when anything is missing, mistyped or inconsistent."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}: a report must be a JSON object, "
                             f"not {type(d).__name__}")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise ValueError(f"{source}: field 'format': expected {FORMAT!r}, got {fmt!r}")
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"{source}: field 'version': expected an integer, got {version!r}")
        if version != VERSION:
            raise ValueError(f"{source}: field 'version': version {version} is not "
                             f"supported (this reader knows version {VERSION})")
        return cls._parse(d, source, "")

    @classmethod
    def _parse(cls, d: dict[str, Any], source: str, prefix: str) -> Snapshot:
        def bad(name: str, problem: str) -> ValueError:
            return ValueError(f"{source}: field {prefix + name!r}: {problem}")

        def get(obj: dict[str, Any], name: str, where: str = "") -> Any:
            if name not in obj:
                raise bad(where + name, "missing")
            return obj[name]

        def text(obj: dict[str, Any], name: str, where: str = "") -> str:
            value = get(obj, name, where)
            if not isinstance(value, str):
                raise bad(where + name, f"expected a string, got {value!r}")
            return value

        def count(obj: dict[str, Any], name: str, where: str = "") -> int:
            value = get(obj, name, where)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(where + name, f"expected an integer, got {value!r}")
            if value < 0:
                raise bad(where + name, f"expected a non-negative count, got {value}")
            return int(value)

        pool = text(d, "pool")
        pid = count(d, "pid")
        taken_at = text(d, "taken_at")
        if not _TAKEN_AT.match(taken_at):
            raise bad("taken_at", f"expected ISO-8601 UTC like 2026-11-26T04:20:00Z, "
                                  f"got {taken_at!r}")
        try:
            time.strptime(taken_at, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise bad("taken_at", f"not a valid date and time: {taken_at!r}") from None
        reason = text(d, "reason")
        if reason not in REASONS:
            raise bad("reason", f"expected one of {', '.join(REASONS)}, got {reason!r}")
        backing = text(d, "backing")
        if backing not in BACKINGS:
            raise bad("backing", f"expected 'malloc' or 'arena', got {backing!r}")

        t = get(d, "totals")
        if not isinstance(t, dict):
            raise bad("totals", f"expected an object, got {t!r}")
        totals = Totals(count(t, "blocks", "totals."), count(t, "bytes", "totals."),
                        count(t, "peak_bytes", "totals."), count(t, "allocs", "totals."),
                        count(t, "reserved_bytes", "totals.") if "reserved_bytes" in t
                        else None)

        raw_tags = get(d, "tags")
        if not isinstance(raw_tags, list):
            raise bad("tags", f"expected an array, got {raw_tags!r}")
        tags: list[TagStat] = []
        seen: set[str] = set()
        for i, item in enumerate(raw_tags):
            where = f"tags[{i}]."
            if not isinstance(item, dict):
                raise bad(f"tags[{i}]", f"expected an object, got {item!r}")
            stat = TagStat(text(item, "tag", where), count(item, "blocks", where),
                           count(item, "bytes", where), count(item, "peak_bytes", where),
                           count(item, "allocs", where))
            if stat.tag in seen:
                raise bad(f"tags[{i}].tag", f"tag {stat.tag!r} is listed twice")
            seen.add(stat.tag)
            tags.append(stat)
        for name in ("blocks", "bytes"):
            total = sum(getattr(s, name) for s in tags)
            if total != getattr(totals, name):
                raise bad(f"totals.{name}", f"is {getattr(totals, name)} but the tags "
                                            f"sum to {total}")

        blocks: list[BlockRecord] | None = None
        if "blocks" in d:
            raw_blocks = d["blocks"]
            if not isinstance(raw_blocks, list):
                raise bad("blocks", f"expected an array, got {raw_blocks!r}")
            blocks = []
            for i, item in enumerate(raw_blocks):
                where = f"blocks[{i}]."
                if not isinstance(item, dict):
                    raise bad(f"blocks[{i}]", f"expected an object, got {item!r}")
                addr = text(item, "address", where)
                if not _ADDRESS.match(addr):
                    raise bad(where + "address",
                              f"expected a lower-case hex string like 0x7f3a5c001040, "
                              f"got {addr!r}")
                rec = BlockRecord(int(addr, 16), count(item, "size", where),
                                  text(item, "tag", where))
                if rec.tag not in seen:
                    raise bad(where + "tag", f"tag {rec.tag!r} is not in 'tags'")
                blocks.append(rec)
            if len(blocks) != totals.blocks:
                raise bad("blocks", f"lists {len(blocks)} blocks but totals.blocks "
                                    f"is {totals.blocks}")

        children: list[Snapshot] = []
        if "children" in d:
            raw_children = d["children"]
            if not isinstance(raw_children, list):
                raise bad("children", f"expected an array, got {raw_children!r}")
            for i, item in enumerate(raw_children):
                if not isinstance(item, dict):
                    raise bad(f"children[{i}]", f"expected an object, got {item!r}")
                children.append(cls._parse(item, source, f"{prefix}children[{i}]."))

        return cls(pool=pool, pid=pid, taken_at=taken_at, reason=reason, backing=backing,
                   totals=totals, tags=tags, blocks=blocks, children=children,
                   source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Snapshot:
        """Reads a report file (C library, ``dump()``, ``ringpool-audit``)."""
        name = os.fspath(path)
        try:
            with open(name, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise ValueError(f"{name}: cannot read the report: {exc.strerror or exc}") from exc
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{name}: not UTF-8 at byte {exc.start}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: not valid JSON: {exc.msg} at line {exc.lineno} "
                             f"column {exc.colno}") from None
        return cls.from_dict(data, source=name)

    # -- output ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (key order as in the format)."""
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        d.update(self._body())
        return d

    def _body(self) -> dict[str, Any]:
        totals: dict[str, int] = {"blocks": self.totals.blocks, "bytes": self.totals.bytes,
                                  "peak_bytes": self.totals.peak_bytes,
                                  "allocs": self.totals.allocs}
        if self.totals.reserved_bytes is not None:
            totals["reserved_bytes"] = self.totals.reserved_bytes
        d: dict[str, Any] = {
            "pool": self.pool, "pid": self.pid, "taken_at": self.taken_at,
            "reason": self.reason, "backing": self.backing, "totals": totals,
            "tags": [{"tag": t.tag, "blocks": t.blocks, "bytes": t.bytes,
                      "peak_bytes": t.peak_bytes, "allocs": t.allocs} for t in self.tags],
        }
        if self.blocks is not None:
            d["blocks"] = [{"address": f"{b.address:#x}", "size": b.size, "tag": b.tag}
                           for b in self.blocks]
        if self.children:
            d["children"] = [c._body() for c in self.children]
        return d

    def dumps(self) -> str:
        """The report text, laid out as the C library writes it."""
        return ('{"format": "ringpool-snapshot", "version": 1,\n  '
                + self._dump_body() + "\n}\n")

    def _dump_body(self) -> str:
        s = _json_str
        t = self.totals
        out = [f'"pool": {s(self.pool)}, "pid": {self.pid}, "taken_at": {s(self.taken_at)}, '
               f'"reason": {s(self.reason)}, "backing": {s(self.backing)},\n']
        reserved = "" if t.reserved_bytes is None else f', "reserved_bytes": {t.reserved_bytes}'
        out.append(f'  "totals": {{"blocks": {t.blocks}, "bytes": {t.bytes}, '
                   f'"peak_bytes": {t.peak_bytes}, "allocs": {t.allocs}{reserved}}},\n')
        out.append('  "tags": [')
        out.append(",".join(
            f'\n    {{"tag": {s(x.tag)}, "blocks": {x.blocks}, "bytes": {x.bytes}, '
            f'"peak_bytes": {x.peak_bytes}, "allocs": {x.allocs}}}' for x in self.tags))
        out.append("\n  ]" if self.tags else "]")
        if self.blocks is not None:
            out.append(',\n  "blocks": [')
            out.append(",".join(f'\n    {{"address": "{b.address:#x}", "size": {b.size}, '
                                f'"tag": {s(b.tag)}}}' for b in self.blocks))
            out.append("\n  ]" if self.blocks else "]")
        if self.children:
            out.append(',\n  "children": [')
            out.append(",".join("\n  {" + c._dump_body() + "}" for c in self.children))
            out.append("\n  ]")
        return "".join(out)

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Writes the report to ``path`` (UTF-8, the C library's layout)."""
        with open(os.fspath(path), "w", encoding="utf-8", newline="\n") as f:
            f.write(self.dumps())

    # -- analysis -------------------------------------------------------------
    def statistics(self) -> list[TagStat]:
        """Per-tag counters, largest outstanding bytes first."""
        return sorted(self.tags, key=lambda t: (-t.bytes, -t.blocks, t.tag))

    def compare_to(self, older: Snapshot) -> list[TagDiff]:
        """Per-tag differences from ``older`` to this snapshot (tags of either),
        largest absolute byte change first (tracemalloc's ``compare_to``)."""
        if not isinstance(older, Snapshot):
            raise TypeError(f"compare_to takes a Snapshot, not {type(older).__name__}")
        new = {t.tag: t for t in self.tags}
        old = {t.tag: t for t in older.tags}
        diffs = []
        for tag in list(new) + [t for t in old if t not in new]:
            n, o = new.get(tag), old.get(tag)
            blocks, nbytes = (n.blocks, n.bytes) if n else (0, 0)
            oblocks, obytes = (o.blocks, o.bytes) if o else (0, 0)
            diffs.append(TagDiff(tag, blocks, blocks - oblocks, nbytes, nbytes - obytes))
        return sorted(diffs, key=lambda d: (-abs(d.bytes_diff), -d.bytes,
                                            -abs(d.blocks_diff), d.tag))

    def table(self, fmt: str = "github", *, top: int | None = None) -> str:
        """The per-tag statistics as a text table (tabulate's ``tablefmt``)."""
        from tabulate import tabulate, tabulate_formats  # type: ignore[import-untyped]

        if fmt not in tabulate_formats:
            raise ValueError(f"unknown table format {fmt!r}; one of: "
                             f"{', '.join(sorted(tabulate_formats))}")
        stats = self.statistics()
        if top is not None:
            if isinstance(top, bool) or not isinstance(top, int) or top < 0:
                raise ValueError(f"top must be a non-negative int, got {top!r}")
            stats = stats[:top]
        rows = [[t.tag, t.blocks, t.bytes, t.peak_bytes, t.allocs] for t in stats]
        return str(tabulate(rows, headers=["tag", "blocks", "bytes", "peak_bytes", "allocs"],
                            tablefmt=fmt))


def _json_str(value: str) -> str:
    """A JSON string escaped as the C library does (UTF-8 kept, controls as \\u00XX)."""
    out = ['"']
    for ch in value:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


__all__ = ["Snapshot", "TagStat", "TagDiff", "Totals", "BlockRecord"]
