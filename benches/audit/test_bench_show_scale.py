"""`ringpool-audit show` and `diff` against the number of tags in a report.

Both must be linear in the tags: a report of 1.3 million tags (about 130 MB,
what a program tagging every call site of a large code base writes) is shown
in under 15 seconds. Each size is measured beside the floor any Python reader
pays, ``json.loads`` of the same file, so the table reads as "show costs k
times decoding the JSON", whatever the machine.

The time per tag (``us_per_tag`` in extra_info, CPU seconds of this process,
which the load of a shared machine does not inflate as it does wall time)
stays flat from 1e4 to 1.3e6 tags; ``test_show_is_linear`` checks it.

Run: make bench-audit-show (all sizes); make test runs the 10k size once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from audit.cli import main

SIZES = [10_000, 100_000, 1_000_000, 1_300_000]
IDS = ["10k", "100k", "1M", "1.3M"]
LIMIT_SECONDS = 15.0          # for 1.3 million tags
_cpu: dict[tuple[str, int], float] = {}


def write_report(path: Path, tags: int) -> None:
    """A valid report of ``tags`` distinct "file:line" tags (streamed, not built in memory)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"format": "ringpool-snapshot", "version": 1,\n  "pool": "big", "pid": 1, '
                  '"taken_at": "2026-11-26T04:20:00Z", "reason": "exit", "backing": "malloc",\n')
        total_blocks = sum(1 + i % 3 for i in range(tags))
        total_bytes = sum(16 * (1 + i % 100) for i in range(tags))
        out.write(f'  "totals": {{"blocks": {total_blocks}, "bytes": {total_bytes}, '
                  f'"peak_bytes": {total_bytes}, "allocs": {tags * 4}}},\n  "tags": [')
        for start in range(0, tags, 10_000):
            out.write(("," if start else "") + ",".join(
                f'\n    {{"tag": "src/mod{i % 977}/file{i // 977}.c:{i % 4999}", '
                f'"blocks": {1 + i % 3}, "bytes": {16 * (1 + i % 100)}, '
                f'"peak_bytes": {32 * (1 + i % 100)}, "allocs": 4}}'
                for i in range(start, min(start + 10_000, tags))))
        out.write("\n  ]\n}\n")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], str]:
    made: dict[int, str] = {}
    root = tmp_path_factory.mktemp("scale")

    def get(tags: int) -> str:
        if tags not in made:
            path = root / f"tags-{tags}.json"
            write_report(path, tags)
            made[tags] = str(path)
        return made[tags]

    return get


def _measure(benchmark: BenchmarkFixture, kind: str, tags: int, run: Callable[[], object]) -> None:
    rounds = 3 if tags <= 100_000 else 1
    cpu: list[float] = []

    def timed() -> object:
        start = time.process_time()
        result = run()
        cpu.append(time.process_time() - start)
        return result

    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=0)  # type: ignore[no-untyped-call]
    best = min(cpu)
    _cpu[(kind, tags)] = best
    benchmark.extra_info.update(tags=tags, cpu_seconds=round(best, 3),
                                us_per_tag=round(1e6 * best / tags, 3))


@pytest.mark.parametrize("tags", SIZES, ids=IDS)
def test_json_loads_floor(benchmark: BenchmarkFixture, reports: Callable[[int], str],
                          tags: int) -> None:
    benchmark.group = f"show {tags} tags"
    path = reports(tags)

    def load() -> object:
        with open(path, "rb") as f:
            return json.loads(f.read())

    _measure(benchmark, "json.loads", tags, load)


@pytest.mark.parametrize("tags", SIZES, ids=IDS)
def test_show(benchmark: BenchmarkFixture, reports: Callable[[int], str], tags: int,
              tmp_path: Path) -> None:
    benchmark.group = f"show {tags} tags"
    path, out = reports(tags), str(tmp_path / "table.txt")
    _measure(benchmark, "show", tags,
             lambda: main(["show", path, "--output", out, "--force"]))
    assert os.path.getsize(out) > 60 * tags          # every tag got its line
    if tags == 1_300_000:
        assert _cpu[("show", tags)] < LIMIT_SECONDS


@pytest.mark.parametrize("tags", SIZES, ids=IDS)
def test_diff(benchmark: BenchmarkFixture, reports: Callable[[int], str], tags: int,
              tmp_path: Path) -> None:
    benchmark.group = f"show {tags} tags"
    path, out = reports(tags), str(tmp_path / "diff.txt")
    _measure(benchmark, "diff", tags,
             lambda: main(["diff", path, path, "--output", out, "--force"]))
    assert os.path.getsize(out) > 60 * tags


def test_show_is_linear() -> None:
    """CPU time per tag at the largest size measured is within 2.5x of the
    smallest from 1e5 up (below that, fixed costs dominate)."""
    per_tag = {n: t / n for (kind, n), t in _cpu.items() if kind == "show" and n >= 100_000}
    if len(per_tag) < 2:
        pytest.skip("needs show measured at two sizes from 1e5 (make bench-audit-show)")
    assert max(per_tag.values()) < 2.5 * min(per_tag.values()), per_tag
