"""Wall time of two operations on big pool families, median of 5 rounds.

    python benches/python/pool_families.py children N   # N children of one root,
                                                         # destroyed one at a time, newest first
    python benches/python/pool_families.py plugin N     # the pytest plugin's leak check after
                                                         # a test made a chain of N pools

Run from the repository root with the package built (``make setup-py``);
docs/benchmarks.md, "Python pool families", has the figures."""

from __future__ import annotations

import statistics
import sys
import time

from allocator import Pool


def children(n: int) -> float:
    root = Pool("root")
    kids = [root.child(f"k{i}") for i in range(n)]
    start = time.perf_counter()
    for kid in reversed(kids):
        kid.destroy()
    took = time.perf_counter() - start
    root.destroy()
    return took


def plugin(n: int) -> float:
    from audit.pytest_plugin import LeakGuard

    guard = LeakGuard()
    guard.start()
    pools = [Pool("root")]
    for i in range(n):
        pools.append(pools[-1].child(f"d{i}"))
    pools[-1].alloc(8, tag="leaf")
    start = time.perf_counter()
    found = guard.leaks()
    took = time.perf_counter() - start
    guard.stop()
    assert len(found) == 1, found
    pools[0].destroy()
    return took


def main(argv: list[str]) -> None:
    what, n = argv[0], int(argv[1])
    run = {"children": children, "plugin": plugin}[what]
    times = [run(n) for _ in range(5)]
    print(f"{what} {n}: median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main(sys.argv[1:])
