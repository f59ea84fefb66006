"""Pool(stacks=...): every block records its allocation stack; snapshots and
reports open each tag into the stacks that reached it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from allocator import Pool, Snapshot

from child_helpers import run_script


def tag_stacks(snap: Snapshot, tag: str) -> list[dict[str, int]]:
    (stat,) = [t for t in snap.tags if t.tag == tag]
    assert stat.extra is not None
    return list(stat.extra["stacks"])


@pytest.mark.parametrize("backing", ["malloc", "arena"])
def test_snapshot_opens_tags_into_stacks(backing: str) -> None:
    with Pool("py-stacks", stacks=True, backing=backing) as pool:
        assert pool.stacks
        blocks = [pool.alloc(40, tag="node") for _ in range(3)]
        name = pool.alloc(7, tag="name")
        snap = pool.snapshot()
        assert snap.extra["stack_depth"] == 64
        rows = tag_stacks(snap, "node")
        assert sum(r["blocks"] for r in rows) == 3 and sum(r["bytes"] for r in rows) == 120
        assert sum(r["allocs"] for r in rows) == 3
        assert all(0 <= r["stack"] < len(snap.extra["stacks"]) for r in rows)
        assert snap.extra["frames"] and snap.extra["modules"]
        assert snap.reason == "request" and snap.pool == "py-stacks"
        # the counters are the same as without stacks
        assert [(t.tag, t.blocks, t.bytes) for t in snap.tags] == [("node", 3, 120), ("name", 1, 7)]
        blocks[0].free()
        rows = tag_stacks(pool.snapshot(), "node")
        assert sum(r["blocks"] for r in rows) == 2
        # a resize keeps the block's stack
        blocks[1] = blocks[1].resize(5000)
        rows = tag_stacks(pool.snapshot(), "node")
        assert sum(r["bytes"] for r in rows) == 5040 and sum(r["allocs"] for r in rows) == 3
        name.free()
        blocks[1].free()
        blocks[2].free()


def test_depth_children_and_round_trip(tmp_path: Path) -> None:
    with Pool("deep", stacks=3) as pool:
        kid = pool.child("kid")
        assert kid.stacks
        other = pool.child("other", stacks=False)
        b = kid.alloc(16, tag="t")
        snap = pool.snapshot(children=True)
        assert [c.pool for c in snap.children] == ["kid", "other"]   # creation order
        kid_snap = snap.children[0]
        assert kid_snap.extra["stack_depth"] == 3
        (row,) = tag_stacks(kid_snap, "t")
        assert len(kid_snap.extra["stacks"][row["stack"]]) <= 3
        # a pool made without the flag records none (unless $RINGPOOL_POOL_STACKS says so)
        assert other.stacks == ("RINGPOOL_POOL_STACKS" in os.environ)
        path = tmp_path / "s.json"
        snap.dump(path)
        again = Snapshot.load(path)
        assert tag_stacks(again.children[0], "t") == [row]
        assert again.children[0].extra["frames"] == kid_snap.extra["frames"]
        b.free()


def test_pools_without_stacks_stay_as_they_were() -> None:
    with Pool("plain") as pool:
        b = pool.alloc(8, tag="t")
        snap = pool.snapshot()
        assert not pool.stacks
        assert "stack_depth" not in snap.extra and snap.tags[0].extra is None
        b.free()


@pytest.mark.parametrize("value, error", [(0, ValueError), (257, ValueError), (-1, ValueError),
                                          ("64", TypeError), (2.0, TypeError), (None, TypeError)])
def test_bad_stack_depths_are_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="stacks"):
        Pool("bad", stacks=value)  # type: ignore[arg-type]


def test_environment_variable_turns_stacks_on_for_every_pool() -> None:
    code = ("from allocator import Pool\n"
            "with Pool('p') as p:\n"
            "    b = p.alloc(8, tag='t')\n"
            "    s = p.snapshot()\n"
            "    print(p.stacks, s.extra.get('stack_depth'))\n"
            "    b.free()\n")
    env = {k: v for k, v in os.environ.items() if k != "RINGPOOL_POOL_STACKS"}
    run = run_script(code, env={**env, "RINGPOOL_POOL_STACKS": "5"})
    assert run.stdout.split() == ["True", "5"] and run.stderr == ""
    bad = run_script(code, env={**env, "RINGPOOL_POOL_STACKS": "lots"})
    assert bad.stdout.split() == ["False", "None"]
    (line,) = bad.stderr.splitlines()
    assert "RINGPOOL_POOL_STACKS" in line and '"lots"' in line


def test_write_report_carries_stacks(tmp_path: Path) -> None:
    with Pool("w", stacks=True) as pool:
        b = pool.alloc(8, tag="t")
        path = tmp_path / "r.json"
        pool.write_report(path)
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["tags"][0]["stacks"][0]["blocks"] == 1
        b.free()


def test_listed_blocks_name_their_stack() -> None:
    with Pool("b", stacks=True) as pool:
        one = [pool.alloc(8, tag="t") for _ in range(2)]
        snap = pool.snapshot(blocks=True)
        assert snap.blocks is not None and len(snap.blocks) == 2
        (row,) = tag_stacks(snap, "t")           # one call site: one stack
        for b in snap.blocks:
            assert b.extra is not None and b.extra["stack"] == row["stack"]
        for b in one:
            b.free()
