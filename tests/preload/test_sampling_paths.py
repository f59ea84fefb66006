"""The sampling mode's short paths: calloc, realloc, reallocarray and free of
unsampled blocks, threads, a forked child, allocating signal handlers.

In sampling mode a block that gets no sample bypasses all bookkeeping (a
countdown, then a tail call into the real function; a free checks one filter
byte). These tests check the estimates that come out of those paths against
sample_paths.c's ground truth, that blocks moved or freed by realloc leave
nothing behind, and that a signal handler allocating while the interposer is
busy neither hangs nor leaves freed blocks in the table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from audit import preload
from preload_helpers import REPO, program, run

MB2 = 2_000_000
# function -> (outstanding blocks, outstanding bytes) in the parent
TRUTH = {"keep_calloc": (1000, MB2), "keep_array": (1000, MB2), "grow": (1000, MB2),
         "thread_keep": (20000, MB2)}


def _reports(tmp: Path) -> dict[int, dict[str, Any]]:
    docs = {}
    for path in tmp.glob("r.*.json"):
        doc = json.loads(path.read_text())
        docs[doc["pid"]] = doc
        path.unlink()
    return docs


def _by_function(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    report = preload.parse(doc, "r.json")
    symbols = preload.symbolize(report)
    out: dict[str, dict[str, Any]] = {}
    for raw, site in zip(doc["sites"], report.sites):
        out[symbols[(site.module, site.offset)].function] = raw
    return out


def _sampled(lib: str, tmp: Path, rate: str, seed: str,
             argv: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess[bytes],
                                                  dict[int, dict[str, Any]]]:
    proc = run(lib, [program("sample_paths"), *argv], tmp,
               env={"RINGPOOL_PRELOAD_SAMPLE_RATE": rate, "RINGPOOL_PRELOAD_SAMPLE_SEED": seed})
    return proc, _reports(tmp)


def test_calloc_realloc_threads_and_fork_estimates(lib: str, tmp_path: Path) -> None:
    proc, docs = _sampled(lib, tmp_path, "1e-3", "17")
    assert proc.returncode == 0, proc.stderr
    assert len(docs) == 2, sorted(docs)            # the parent's and the child's
    child_pid = max(docs, key=lambda pid: "child_keep" in _by_function(docs[pid]))
    parent = _by_function(docs[min(set(docs) - {child_pid})])
    child = _by_function(docs[child_pid])
    for fn, (blocks, nbytes) in TRUTH.items():
        s = parent[fn]
        # one run at 1e-3 on 2 MB: relative standard deviation 2.2%
        assert s["est_bytes"] == pytest.approx(nbytes, rel=0.10), fn
        assert s["est_blocks"] == pytest.approx(blocks, rel=0.15), fn
        assert s["sampled_blocks"] <= blocks, fn
    # every block start() made was moved by grow or freed by realloc(p, 0),
    # and churn freed all it allocated
    assert "start" not in parent and "churn" not in parent
    assert "moved_and_freed" not in parent
    assert "child_keep" not in parent
    assert child["child_keep"]["est_bytes"] == pytest.approx(MB2, rel=0.10)
    assert child["keep_calloc"]["sampled_blocks"] == parent["keep_calloc"]["sampled_blocks"]
    # grow allocated its 1,000 kept blocks 10 times each plus 20,000 moved ones
    allocated = 1000 * sum(range(200, 2001, 200)) + 20000 * 800
    assert parent["grow"]["est_alloc_bytes"] == pytest.approx(allocated, rel=0.10)


def test_short_paths_are_unbiased_over_seeds(lib: str, tmp_path: Path) -> None:
    est: dict[str, list[float]] = {fn: [] for fn in TRUTH}
    for seed in range(1, 13):
        proc, docs = _sampled(lib, tmp_path, "1e-3", str(seed), ("nofork",))
        assert proc.returncode == 0, proc.stderr
        (doc,) = docs.values()
        sites = _by_function(doc)
        for fn in TRUTH:
            est[fn].append(sites[fn]["est_bytes"] if fn in sites else 0.0)
    for fn, (_, nbytes) in TRUTH.items():
        # 12 runs: the mean's relative standard deviation is 0.65%
        assert statistics.mean(est[fn]) == pytest.approx(nbytes, rel=0.03), fn
        assert len(set(est[fn])) > 1


def test_rate_one_counts_what_the_exact_mode_counts(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [program("sample_paths"), "nofork"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (exact,) = _reports(tmp_path).values()
    proc, docs = _sampled(lib, tmp_path, "1", "1", ("nofork",))
    assert proc.returncode == 0, proc.stderr
    (sampled,) = docs.values()
    e, s = _by_function(exact), _by_function(sampled)
    for fn in TRUTH:
        assert (s[fn]["blocks"], s[fn]["bytes"]) == (e[fn]["blocks"], e[fn]["bytes"]), fn
        assert s[fn]["samples"] == e[fn]["bytes"], fn
    assert "start" not in s and "start" not in e


def _sigalloc_sampled(lib: str, tmp: Path, variant: str, iters: int) -> None:
    for old in tmp.glob("*.json"):
        old.unlink()
    try:
        proc = run(lib, [program("sigalloc"), variant, str(iters)], tmp, timeout=60,
                   env={"LD_PRELOAD": f"{lib}:{program('libsigsafe.so')}",
                        "RINGPOOL_PRELOAD_SAMPLE_RATE": "1e-2",
                        "RINGPOOL_PRELOAD_SAMPLE_SEED": "3"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"sigalloc {variant} hung under the interposer in sampling mode")
    assert proc.returncode == 0 and b"runtime error" not in proc.stderr, proc.stderr.decode()
    words = proc.stdout.split()
    kept = int(words[3]) + int(words[5])           # "handler N kept_h N kept_m N iters N"
    (doc,) = _reports(tmp).values()
    assert doc["totals"]["dropped"] == 0
    sampled = sum(s["sampled_blocks"] for s in doc["sites"] if s["module"].endswith("/sigalloc"))
    # every sampled block still in the table is one the program kept: a freed
    # block left behind (a lost deferred free) would show up here, as the
    # program allocates and frees hundreds of thousands of them
    assert 0 < sampled <= kept


@pytest.mark.parametrize("variant", ["single", "threads"])
def test_allocating_signal_handler_under_sampling(lib: str, tmp_path: Path, variant: str) -> None:
    for _ in range(3):
        _sigalloc_sampled(lib, tmp_path, variant, 300000)


@pytest.mark.parametrize("variant", ["single", "threads"])
def test_sampling_paths_are_ubsan_clean(tmp_path: Path, variant: str) -> None:
    ubsan = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB",
                           str(REPO / "build" / "libringpool-preload-ubsan.so"))
    _sigalloc_sampled(ubsan, tmp_path, variant, 100000)
    proc = run(ubsan, [program("sample_paths")], tmp_path,
               env={"RINGPOOL_PRELOAD_SAMPLE_RATE": "1e-3", "RINGPOOL_PRELOAD_SAMPLE_SEED": "2"})
    assert proc.returncode == 0 and b"runtime error" not in proc.stderr, proc.stderr.decode()
