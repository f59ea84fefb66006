"""Snapshot: statistics, compare_to, and the report format read and written exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from allocator import Pool, Snapshot, TagDiff, TagStat, Totals


def sample_dict() -> dict[str, Any]:
    return {
        "format": "ringpool-snapshot", "version": 1, "pool": "parser", "pid": 4242,
        "taken_at": "2026-11-26T04:20:00Z", "reason": "destroy", "backing": "malloc",
        "totals": {"blocks": 3, "bytes": 96, "peak_bytes": 4096, "allocs": 17,
                   "reserved_bytes": 192},
        "tags": [{"tag": "tokens", "blocks": 2, "bytes": 64, "peak_bytes": 4000, "allocs": 12},
                 {"tag": "(untagged)", "blocks": 1, "bytes": 32, "peak_bytes": 32, "allocs": 5}],
        "blocks": [{"address": "0x7f3a5c001040", "size": 32, "tag": "tokens"},
                   {"address": "0x7f3a5c001080", "size": 32, "tag": "tokens"},
                   {"address": "0x7f3a5c0010c0", "size": 32, "tag": "(untagged)"}],
        "children": [{"pool": "child", "pid": 4242, "taken_at": "2026-11-26T04:20:00Z",
                      "reason": "destroy", "backing": "arena",
                      "totals": {"blocks": 0, "bytes": 0, "peak_bytes": 0, "allocs": 0},
                      "tags": []}],
    }


def test_from_dict_to_dict_round_trip() -> None:
    d = sample_dict()
    snap = Snapshot.from_dict(d, source="sample")
    assert snap.source == "sample" and snap.pool == "parser" and snap.pid == 4242
    assert snap.totals == Totals(3, 96, 4096, 17, 192)
    assert snap.tags[0] == TagStat("tokens", 2, 64, 4000, 12)
    assert snap.blocks is not None and snap.blocks[0].address == 0x7f3a5c001040
    assert snap.children[0].pool == "child" and snap.children[0].totals.reserved_bytes is None
    assert snap.to_dict() == d
    assert json.loads(snap.dumps()) == d
    assert Snapshot.from_dict(json.loads(snap.dumps())) == snap


def test_statistics_sorted_by_bytes() -> None:
    snap = Snapshot.from_dict(sample_dict())
    assert [t.tag for t in snap.statistics()] == ["tokens", "(untagged)"]


def test_compare_to() -> None:
    old = Snapshot.from_dict(sample_dict())
    d = sample_dict()
    d.pop("blocks")
    d["tags"] = [{"tag": "tokens", "blocks": 1, "bytes": 16, "peak_bytes": 4000, "allocs": 13},
                 {"tag": "new", "blocks": 4, "bytes": 400, "peak_bytes": 400, "allocs": 4}]
    d["totals"] = {"blocks": 5, "bytes": 416, "peak_bytes": 4096, "allocs": 22}
    new = Snapshot.from_dict(d)
    assert new.compare_to(old) == [
        TagDiff("new", 4, 4, 400, 400),
        TagDiff("tokens", 1, -1, 16, -48),
        TagDiff("(untagged)", 0, -1, 0, -32),
    ]
    assert all(x.blocks_diff == 0 and x.bytes_diff == 0 for x in new.compare_to(new))
    with pytest.raises(TypeError):
        new.compare_to("old")  # type: ignore[arg-type]


def test_table_formats() -> None:
    snap = Snapshot.from_dict(sample_dict())
    text = snap.table()
    assert text.splitlines()[0].startswith("| tag") and "tokens" in text
    assert "tokens" in snap.table("plain") and "(untagged)" not in snap.table(top=1)
    with pytest.raises(ValueError, match="unknown table format"):
        snap.table("nope")
    with pytest.raises(ValueError):
        snap.table(top=-1)


def test_live_snapshot_diff(pool: Pool) -> None:
    a = pool.alloc(100, tag="a")
    before = pool.snapshot()
    pool.alloc(50, tag="b")
    a.free()
    diff = {d.tag: d for d in pool.snapshot().compare_to(before)}
    assert diff["a"] == TagDiff("a", 0, -1, 0, -100)
    assert diff["b"] == TagDiff("b", 1, 1, 50, 50)


def test_c_report_loads_and_dumps_byte_identical(pool: Pool, tmp_path: Path) -> None:
    for i in range(5):
        pool.alloc(10 * i, tag=f"tag-{i % 3}")
    pool.strdup("x", tag='quote " back \\ slash \t tab é')
    pool.alloc(1, tag="gone").free()
    for blocks in (False, True):
        path = tmp_path / f"c{blocks}.json"
        pool.write_report(path, blocks=blocks)
        snap = Snapshot.load(path)
        assert snap.reason == "request" and snap.pool == "test"
        assert snap.totals.blocks == 6 and (snap.blocks is not None) == blocks
        assert {t.tag for t in snap.tags} >= {"gone", 'quote " back \\ slash \t tab é'}
        out = tmp_path / "py.json"
        snap.dump(out)
        assert out.read_bytes() == path.read_bytes()
        assert Snapshot.load(out) == snap


def test_c_report_with_children(pool: Pool, tmp_path: Path) -> None:
    kid = pool.child("kid")
    kid.alloc(7, tag="k")
    kid.child("grandkid").alloc(3, tag="g")
    path = tmp_path / "tree.json"
    pool.write_report(path, blocks=True, children=True)
    snap = Snapshot.load(path)
    assert [c.pool for c in snap.children] == ["kid"]
    assert snap.children[0].children[0].tags[0].tag == "g"
    out = tmp_path / "tree2.json"
    snap.dump(out)
    assert out.read_bytes() == path.read_bytes()
    live = pool.snapshot(children=True)
    assert live.children[0].pool == "kid" and live.children[0].children[0].pool == "grandkid"


def test_destroy_report_from_environment(backing: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGPOOL_REPORT", str(tmp_path / "leak-%n-%p.json"))
    monkeypatch.setenv("RINGPOOL_REPORT_BLOCKS", "1")
    with Pool("env pool", backing=backing) as p:
        p.alloc(64, tag="leaked")
        p.alloc(8, tag="freed").free()
    path = tmp_path / f"leak-env_pool-{os.getpid()}.json"
    snap = Snapshot.load(path)
    assert snap.reason == "destroy" and snap.backing == backing
    assert {t.tag: t.blocks for t in snap.tags} == {"leaked": 1, "freed": 0}
    assert snap.blocks is not None and snap.blocks[0].size == 64
    snap.dump(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


Mutator = Callable[[dict[str, Any]], Any]


def _set(path: list[Any], value: Any) -> Mutator:
    def mutate(d: dict[str, Any]) -> None:
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return mutate


def _drop(path: list[Any]) -> Mutator:
    def mutate(d: dict[str, Any]) -> None:
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]
    return mutate


MALFORMED = [
    ("format", _set(["format"], "tracemalloc"), "'format'"),
    ("format-missing", _drop(["format"]), "'format'"),
    ("version", _set(["version"], 2), "'version'.*version 2"),
    ("version-str", _set(["version"], "1"), "'version'"),
    ("pool", _set(["pool"], 5), "'pool'"),
    ("pid-negative", _set(["pid"], -1), "'pid'"),
    ("taken_at", _set(["taken_at"], "yesterday"), "'taken_at'"),
    ("taken_at-date", _set(["taken_at"], "2026-13-40T00:00:00Z"), "'taken_at'"),
    ("reason", _set(["reason"], "boredom"), "'reason'"),
    ("backing", _set(["backing"], "mmap"), "'backing'"),
    ("totals", _set(["totals"], []), "'totals'"),
    ("totals-field", _drop(["totals", "allocs"]), "'totals.allocs'.*missing"),
    ("totals-negative", _set(["totals", "bytes"], -96), "'totals.bytes'"),
    ("totals-float", _set(["totals", "blocks"], 3.0), "'totals.blocks'"),
    ("totals-bool", _set(["totals", "peak_bytes"], True), "'totals.peak_bytes'"),
    ("tags", _set(["tags"], {}), "'tags'"),
    ("tag-negative", _set(["tags", 1, "blocks"], -1), r"'tags\[1\].blocks'"),
    ("tag-name", _set(["tags", 0, "tag"], None), r"'tags\[0\].tag'"),
    ("tag-dup", _set(["tags", 1, "tag"], "tokens"), "listed twice"),
    ("sum", _set(["totals", "blocks"], 4), "'totals.blocks'.*sum to 3"),
    ("blocks", _set(["blocks"], "many"), "'blocks'"),
    ("address", _set(["blocks", 0, "address"], "0X7F3A"), r"'blocks\[0\].address'"),
    ("address-int", _set(["blocks", 0, "address"], 1234), r"'blocks\[0\].address'"),
    ("block-tag", _set(["blocks", 0, "tag"], "ghost"), "not in 'tags'"),
    ("block-count", _drop(["blocks", 2]), "lists 2 blocks"),
    ("children", _set(["children"], {}), "'children'"),
    ("child-field", _drop(["children", 0, "totals"]), r"'children\[0\].totals'.*missing"),
]


@pytest.mark.parametrize("mutate,match", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_reports_name_file_and_field(tmp_path: Path, mutate: Mutator,
                                               match: str) -> None:
    d = sample_dict()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match=match) as info:
        Snapshot.load(path)
    assert str(info.value).startswith(str(path) + ": ")


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"), (b"{nonsense}", "invalid JSON"),
    (b'{"format": "ringpool-snapshot", "vers', "truncated JSON"),
    (b"[1, 2]", "must be a JSON object"), (b'{"a": "\xff\xfe"}', "not UTF-8"),
    (b"nonsense", "not a report: .* starts with 'n'"), (b"\xff\xfe{}", "starts with byte 0xff"),
])
def test_unreadable_reports(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        Snapshot.load(path)


def test_missing_report_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        Snapshot.load(tmp_path / "absent.json")


def test_from_dict_rejects_non_dict() -> None:
    with pytest.raises(ValueError, match="here: a report must be a JSON object"):
        Snapshot.from_dict([], source="here")


def test_dump_escapes_like_the_c_writer(tmp_path: Path) -> None:
    d = sample_dict()
    d["tags"][0]["tag"] = "ctl\x01\n\"q\"\\"
    d["blocks"][0]["tag"] = d["blocks"][1]["tag"] = d["tags"][0]["tag"]
    snap = Snapshot.from_dict(d)
    text = snap.dumps()
    assert '"ctl\\u0001\\u000a\\"q\\"\\\\"' in text
    assert Snapshot.from_dict(json.loads(text)) == snap


def test_snapshot_cost_does_not_grow_with_blocks(backing: str) -> None:
    """snapshot() reads per-tag counters (O(tags)); a walk of 1e5 blocks from
    Python would take ~100 ms, far above the bound."""
    import time

    def best_of(pool: Pool) -> float:
        best = float("inf")
        for _ in range(15):
            t0 = time.perf_counter()
            pool.snapshot()
            best = min(best, time.perf_counter() - t0)
        return best

    times = []
    for n in (100, 100_000):
        with Pool("flat", backing=backing) as p:
            keep = [p.alloc(16, tag=f"t{i % 8}") for i in range(n)]
            times.append(best_of(p))
            del keep
    assert times[1] < 5 * times[0] + 0.002, times


def test_report_to_unwritable_path(pool: Pool, tmp_path: Path) -> None:
    from allocator import ReportError
    with pytest.raises(ReportError, match="RP_EIO") as info:
        pool.write_report(tmp_path / "no" / "such" / "dir.json")
    assert isinstance(info.value, OSError)


# -- child pools in statistics(), compare_to() and table() ------------------------
def test_statistics_and_table_include_child_pools(pool: Pool) -> None:
    kid = pool.child("kid")
    grandkid = kid.child("grandkid")
    pool.alloc(10, tag="shared")
    kid.alloc(100, tag="shared")
    kid.alloc(1000, tag="kid-only")
    grandkid.alloc(5, tag="deep")
    snap = pool.snapshot(children=True)
    stats = {t.tag: t for t in snap.statistics()}
    assert set(stats) == {"shared", "kid-only", "deep"}
    assert (stats["shared"].blocks, stats["shared"].bytes) == (2, 110)
    assert stats["shared"].peak_bytes == 100            # the largest pool's peak
    assert [t.tag for t in snap.statistics()] == ["kid-only", "shared", "deep"]
    assert [t.tag for t in snap.statistics(children=False)] == ["shared"]
    table = snap.table("plain")
    lines = table.splitlines()
    assert lines[0].split() == ["pool", "tag", "blocks", "bytes", "peak_bytes", "allocs"]
    assert lines[1].split()[:4] == ["test/kid", "kid-only", "1", "1000"]
    assert any(line.split()[:2] == ["test/kid/grandkid", "deep"] for line in lines)
    assert "kid-only" not in snap.table("plain", children=False)
    assert len(snap.table("plain", top=2).splitlines()) == 3
    # Without children in the snapshot, nothing changes.
    assert [t.tag for t in pool.snapshot().statistics()] == ["shared"]


def test_table_writes_hostile_names_on_one_line(pool: Pool) -> None:
    # pool names and tags went into the table raw: a newline split a row in two and
    # an escape sequence reached the terminal
    kid = pool.child("k\nid\x1b[2J")
    kid.alloc(100, tag="t\nag")
    pool.alloc(10, tag="plain")
    snap = pool.snapshot(children=True)
    for children in (True, False):
        table = snap.table("plain", children=children)
        assert "\x1b" not in table and len(table.splitlines()) == (3 if children else 2), table
    assert "test/k\\nid\\x1b[2J" in snap.table("plain") and "t\\nag" in snap.table("plain")
    assert pool.snapshot().table("plain").splitlines()[1].split()[0] == "plain"


def test_compare_to_counts_child_pools(pool: Pool) -> None:
    kid = pool.child("kid")
    before = pool.snapshot(children=True)
    kid.alloc(64, tag="grown")
    diff = pool.snapshot(children=True).compare_to(before)
    assert diff == [TagDiff("grown", 1, 1, 64, 64)]
    assert pool.snapshot(children=True).compare_to(before, children=False) == []


def test_table_right_aligns_numbers() -> None:
    d = sample_dict()
    del d["children"]
    snap = Snapshot.from_dict(d)
    lines = snap.table("plain").splitlines()
    # The numbers end in the same column whatever their width (4000 and 32).
    assert lines[1].endswith("12") and lines[2].endswith(" 5")
    assert [line.split()[3] for line in lines[1:]] == ["4000", "32"]
    assert lines[1].index("4000") + 4 == lines[2].rindex("32") + 2
