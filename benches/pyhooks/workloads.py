"""The Python workloads of the hooks' cost bench: ``python workloads.py NAME N``.

Each workload is allocation-heavy pure Python or stdlib C code, the kind of
program tracemalloc, memray and ``ringpool-audit run --python`` are run on:

- ``json``: json.dumps / json.loads of a nested document;
- ``regex``: re.findall and re.sub over generated text;
- ``dictlist``: a dict of lists built, sorted, merged and dropped;
- ``objects``: instances of a small class, a __slots__ class and namedtuples.

``N`` scales the work (N = 0: the interpreter and the imports only, the
baseline subtracted from every mode).  The result is printed so nothing is
optimised away.
"""

from __future__ import annotations

import json
import re
import sys
from collections import namedtuple


def w_json(n: int) -> int:
    doc = {"users": [{"id": i, "name": f"user{i}", "tags": ["a", "b", str(i)],
                      "score": i * 0.5, "active": i % 2 == 0} for i in range(200)]}
    total = 0
    for _ in range(n):
        text = json.dumps(doc)
        total += len(json.loads(text)["users"])
    return total


WORD = re.compile(r"\b(\w+)@(\w+)\.com\b")


def w_regex(n: int) -> int:
    text = " ".join(f"name{i}@host{i % 7}.com and some filler words {i}" for i in range(300))
    total = 0
    for _ in range(n):
        total += len(WORD.findall(text))
        total += len(WORD.sub(r"\2:\1", text))
    return total


def w_dictlist(n: int) -> int:
    total = 0
    for k in range(n):
        groups: dict[str, list[int]] = {}
        for i in range(2000):
            groups.setdefault(f"g{i % 50}", []).append((i * 7919 + k) % 1000)
        merged = []
        for key in sorted(groups):
            merged.extend(sorted(groups[key]))
        total += len(merged) + len({v: key for key, vs in groups.items() for v in vs})
    return total


class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y


class Slotted:
    __slots__ = ("a", "b", "c")

    def __init__(self, a: int, b: str, c: list[int]) -> None:
        self.a = a
        self.b = b
        self.c = c


Pair = namedtuple("Pair", "left right")


def w_objects(n: int) -> int:
    total = 0
    for _ in range(n):
        pts = [Point(i * 0.5, -i) for i in range(1000)]
        sl = [Slotted(i, str(i), [i]) for i in range(1000)]
        pairs = [Pair(p, s) for p, s in zip(pts, sl)]
        total += sum(1 for p in pairs if p.left.x >= 0 and p.right.a >= 0)
    return total


WORKLOADS = {"json": w_json, "regex": w_regex, "dictlist": w_dictlist, "objects": w_objects}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in WORKLOADS or not argv[1].isdigit():
        print(f"usage: workloads.py {{{','.join(WORKLOADS)}}} N", file=sys.stderr)
        return 1
    print(WORKLOADS[argv[0]](int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
