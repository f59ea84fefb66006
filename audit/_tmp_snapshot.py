"""TEMPORARY stand-in for allocator.Snapshot until the bindings land. Delete then."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class TagStat:
    tag: str
    blocks: int
    bytes: int
    peak_bytes: int
    allocs: int


@dataclass
class TagDiff:
    tag: str
    blocks: int
    blocks_diff: int
    bytes: int
    bytes_diff: int


class Snapshot:
    def __init__(self, doc: dict[str, Any], where: str, nested: bool = False) -> None:
        def need(key: str, typ: type) -> Any:
            if key not in doc:
                raise ValueError(f"{where}: missing field {key!r}")
            v = doc[key]
            if not isinstance(v, typ) or isinstance(v, bool):
                raise ValueError(f"{where}: field {key!r} has the wrong type")
            return v
        if not nested:
            if doc.get("format") != "ringpool-snapshot":
                raise ValueError(f"{where}: field 'format' is {doc.get('format')!r}, expected 'ringpool-snapshot'")
            if doc.get("version") != 1:
                raise ValueError(f"{where}: field 'version' is {doc.get('version')!r}, expected 1")
        self.pool = need("pool", str)
        self.pid = need("pid", int)
        self.taken_at = need("taken_at", str)
        self.reason = need("reason", str)
        self.backing = need("backing", str)
        self.totals = need("totals", dict)
        self._stats = []
        for i, t in enumerate(need("tags", list)):
            for k in ("blocks", "bytes", "peak_bytes", "allocs"):
                v = t.get(k)
                if not isinstance(v, int) or v < 0:
                    raise ValueError(f"{where}: field 'tags[{i}].{k}' must be a non-negative integer")
            self._stats.append(TagStat(t["tag"], t["blocks"], t["bytes"], t["peak_bytes"], t["allocs"]))
        self.blocks = doc.get("blocks")
        self.children = [Snapshot(c, where, True) for c in doc.get("children", [])]

    @classmethod
    def load(cls, path: str) -> "Snapshot":
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a JSON object")
        return cls(doc, path)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Snapshot":
        return cls(doc, "<dict>")

    def statistics(self) -> list[TagStat]:
        return sorted(self._stats, key=lambda s: -s.bytes)

    def compare_to(self, old: "Snapshot") -> list[TagDiff]:
        o = {s.tag: s for s in old._stats}
        n = {s.tag: s for s in self._stats}
        out = []
        for tag in list(n) + [t for t in o if t not in n]:
            a = o.get(tag)
            b = n.get(tag)
            out.append(TagDiff(tag, b.blocks if b else 0, (b.blocks if b else 0) - (a.blocks if a else 0),
                               b.bytes if b else 0, (b.bytes if b else 0) - (a.bytes if a else 0)))
        return sorted(out, key=lambda d: -abs(d.bytes_diff))
