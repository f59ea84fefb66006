"""Snapshots of pools nested deeper than Python's recursion limit.

Snapshot's generated ``__eq__``/``__repr__``, ``to_dict()``, ``dumps()`` and the
reader behind ``from_dict()``/``load()`` walked the children by recursion: a
snapshot of a chain of 5,000 pools raised RecursionError from each of them.
They walk without recursion now, and give what they gave for shallow trees
(tests/python/test_snapshot_format.py)."""

from __future__ import annotations

import copy
import pickle
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from allocator import Pool, Snapshot
from audit import schema
from audit.schema import Limits, ReportFormatError

DEPTH = 5000
DEEP = Limits(max_depth=10 * DEPTH)


@pytest.fixture
def chain() -> Iterator[list[Pool]]:
    """A root pool and DEPTH pools below it, one per level, each with a block."""
    root = Pool("root")
    pools = [root]
    for i in range(DEPTH):
        pools.append(pools[-1].child(f"d{i}"))
        pools[-1].alloc(i % 7 + 1, tag=f"t{i % 3}")
    yield pools
    root.destroy()


def _levels(snap: Snapshot) -> list[Snapshot]:
    out = [snap]
    while snap.children:
        assert len(snap.children) == 1
        snap = snap.children[0]
        out.append(snap)
    return out


def test_a_chain_deeper_than_the_recursion_limit_converts(chain: list[Pool]) -> None:
    assert DEPTH > sys.getrecursionlimit()
    snap = chain[0].snapshot(children=True)
    assert len(_levels(snap)) == DEPTH + 1

    d: Any = snap.to_dict()
    assert (d["format"], d["pool"]) == ("ringpool-snapshot", "root")
    for i in range(DEPTH):
        (d,) = d["children"]
        assert d["pool"] == f"d{i}" and "format" not in d
        assert d["tags"] == [{"tag": f"t{i % 3}", "blocks": 1, "bytes": i % 7 + 1,
                              "peak_bytes": i % 7 + 1, "allocs": 1}]
    assert "children" not in d

    text = snap.dumps()
    assert text.startswith('{"format": "ringpool-snapshot", "version": 1,\n  "pool": "root",')
    assert text.count('"pool": ') == DEPTH + 1 and text.endswith("}\n  ]" * DEPTH + "\n}\n")
    # the innermost pool is written as a pool without children is
    leaf = _levels(snap)[-1]
    assert text.index(schema.dumps(leaf)[len('{"format": "ringpool-snapshot", "version": 1,\n  '):
                                          -len("\n}\n")]) > 0


def test_a_deep_snapshot_compares_and_prints(chain: list[Pool]) -> None:
    a = chain[0].snapshot(children=True)
    b = Snapshot.from_dict(a.to_dict(), limits=DEEP)
    assert a == b and not a != b
    _levels(b)[-1].tags[0] = _levels(b)[-1].tags[0]._replace(bytes=10**6)
    assert a != b and not a == b
    assert a != _levels(a)[1] and a != a.to_dict()

    text = repr(a)
    assert text.startswith("Snapshot(pool='root', pid=") and text.count("Snapshot(") == DEPTH + 1
    tail = "source=None, extra={}, parents=())"
    assert text.endswith(f"children=[], {tail}" + f"], {tail}" * DEPTH)


def test_a_deep_snapshot_pickles_and_copies(chain: list[Pool]) -> None:
    snap = chain[0].snapshot(children=True)
    back = pickle.loads(pickle.dumps(snap))
    assert type(back) is Snapshot and back == snap and back.dumps() == snap.dumps()
    deep = copy.deepcopy(snap)
    assert deep == snap and all(a is not b for a, b in zip(_levels(deep), _levels(snap)))
    shallow = copy.copy(snap)
    assert shallow == snap and shallow is not snap and shallow.children is snap.children


def test_a_shallow_snapshot_pickles_as_before() -> None:
    with Pool("p") as pool:
        kid = pool.child("k")
        kid.alloc(3, tag="t")
        pool.alloc(5, tag="u")
        snap = pool.snapshot(blocks=True, children=True)
        snap.extra["x"] = [1, {"y": None}]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(snap, protocol))
        assert back == snap and repr(back) == repr(snap) and back.dumps() == snap.dumps()
    assert copy.deepcopy(snap) == snap and copy.deepcopy(snap).extra is not snap.extra


def test_a_deep_snapshot_sums_its_tags(chain: list[Pool]) -> None:
    snap = chain[0].snapshot(children=True)
    by_tag = {t.tag: (t.blocks, t.bytes) for t in snap.statistics()}
    want = {f"t{k}": (sum(1 for i in range(DEPTH) if i % 3 == k),
                      sum(i % 7 + 1 for i in range(DEPTH) if i % 3 == k)) for k in range(3)}
    assert by_tag == want
    assert snap.compare_to(snap) and all(d.bytes_diff == 0 for d in snap.compare_to(snap))
    assert sum(1 for _ in snap.walk_paths()) == DEPTH + 1


def test_a_deep_snapshot_reads_back(chain: list[Pool], tmp_path: Path) -> None:
    snap = chain[0].snapshot(children=True)
    assert Snapshot.from_dict(snap.to_dict(), limits=DEEP) == snap
    path = tmp_path / "deep.json"
    snap.dump(path)
    back = Snapshot.load(path, limits=DEEP)
    assert back == snap and back.dumps() == snap.dumps()


def test_the_readers_default_limit_refuses_a_deep_snapshot_clearly(chain: list[Pool],
                                                                 tmp_path: Path) -> None:
    # the reader's documented limit (docs/report-format.md): child pools nested at most
    # 100 levels; a deeper report is one ValueError line naming the file, never a
    # RecursionError, whichever way it is read
    snap = chain[0].snapshot(children=True)
    with pytest.raises(ReportFormatError, match="nested deeper than 100 levels"):
        Snapshot.from_dict(snap.to_dict(), "deep")
    path = tmp_path / "deep.json"
    snap.dump(path)
    with pytest.raises(ReportFormatError, match=r"deep\.json: .*JSON nested too deeply"):
        Snapshot.load(path)
    # between the two: decoded, then refused by the pool depth
    short = _levels(snap)[DEPTH - 150]
    short.parents = ()
    short.dump(path)
    with pytest.raises(ReportFormatError, match="nested deeper than 100 levels"):
        Snapshot.load(path)
    assert Snapshot.load(path, limits=Limits(max_depth=150)) == short


@pytest.mark.parametrize("depth", [150, DEPTH])
def test_a_deep_family_of_pools_with_stacks_snapshots(depth: int) -> None:
    # a pool that records stacks takes its snapshot from the library's report, read
    # back with the readers' defaults: a family nested more than 100 deep raised
    # ReportFormatError (a ValueError outside the package's exceptions)
    root = Pool("root", stacks=4)
    try:
        pool = root
        for i in range(depth):
            pool = pool.child(f"d{i}")
        pool.alloc(24, tag="deep")
        snap = root.snapshot(children=True)
        levels = _levels(snap)
        assert [s.pool for s in levels] == ["root"] + [f"d{i}" for i in range(depth)]
        assert [(t.tag, t.blocks, t.bytes) for t in levels[-1].tags] == [("deep", 1, 24)]
        assert levels[-1].tags[0].extra and levels[-1].tags[0].extra["stacks"]
    finally:
        root.destroy()


def test_circular_children_are_refused_not_recursed() -> None:
    with Pool("loop") as pool:
        snap = pool.snapshot()
    snap.children.append(snap)
    with pytest.raises(ValueError, match="among its own descendants"):
        snap.to_dict()
    with pytest.raises(ValueError, match="among its own descendants"):
        snap.dumps()
    assert repr(snap).endswith("children=[...], source=None, extra={}, parents=())")
    assert snap == snap
