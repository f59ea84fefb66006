#!/usr/bin/env python3
"""Instructions executed with and without the interposer, by callgrind.

Wall time on a shared machine moves by tens of percent from run to run;
`valgrind --tool=callgrind` counts the same instructions for the same binary
and input whatever else runs. This runs smaller versions of the overhead
workloads (see overhead.py) once uninstrumented and once with
libringpool-preload.so preloaded, and prints instructions and their ratio.
Instructions are not time (a cache miss costs more than an add), so read the
ratio as a floor-independent check beside the wall-time table.

    python3 benches/preload/instructions.py --alloc-loop build/preload-bench/alloc_loop [--depths 1,16,64]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead  # noqa: E402  (the workloads' generators)


def instructions(argv: list[str], env: dict[str, str], work: Path) -> int:
    out = work / "callgrind.out"
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + argv,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed under callgrind: {proc.stderr[-400:]}")
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if not found:
        raise RuntimeError("no instruction count in callgrind's output")
    out.unlink(missing_ok=True)
    return int(found[1])


def small_workloads(work: Path, alloc_loop: str) -> list[tuple[str, list[str]]]:
    """The overhead workloads at sizes callgrind runs in minutes, their inputs
    written into work: (name, argv) pairs."""
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    overhead.sqlite_script(work, 20000)
    overhead.git_repo(work, 40)
    overhead.sort_input(work, 200000)
    overhead.c_source(work, 5000)
    cases = [
        ("python3", [python, "-c", overhead.PY_WORKLOAD.replace("range(3)", "range(1)")
                     .replace("60000", "10000")]),
        ("sqlite3", ["sqlite3", str(work / "bench.db"), f".read {work / 'inserts.sql'}"]),
        ("git", ["git", "--no-pager", "-C", str(work / "repo"), "log", "-p", "--stat"]),
        ("sort", ["sort", str(work / "sort-input.txt")]),
        ("alloc-loop", [alloc_loop, "1000000", "4096"]),
    ]
    cc1 = overhead.cc1_path()
    if cc1:
        cases.append(("cc1", [cc1, "-quiet", "-O2", str(work / "big.c"), "-o", str(work / "big.s")]))
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alloc-loop", required=True)
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--depths", default="1,64",
                    help="stack depths to run the interposer with (1 = the caller of malloc only)")
    ap.add_argument("--counts", action="store_true",
                    help="print each run's instruction count beside its ratio")
    args = ap.parse_args()
    lib = overhead.preload_lib(ap)
    if not shutil.which("valgrind"):
        ap.error("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="rp-preload-insn-") as tmp:
        work = Path(tmp)
        cases = small_workloads(work, args.alloc_loop)
        if args.only:
            cases = [c for c in cases if c[0] in set(args.only.split(","))]
        depths = [int(d) for d in args.depths.split(",")]
        print("| workload | native instructions | "
              + " | ".join(f"{'one frame' if d == 1 else f'stacks ({d} frames)'}" for d in depths) + " |")
        print("|---|---|" + "---|" * len(depths))
        for name, argv in cases:
            counts = []
            for depth in [0] + depths:
                (work / "bench.db").unlink(missing_ok=True)
                env = dict(os.environ, GIT_PAGER="cat")
                env.pop("LD_PRELOAD", None)
                if depth:
                    env["LD_PRELOAD"] = lib
                    env["RINGPOOL_PRELOAD_REPORT"] = str(work / "r.%p.json")
                    env["RINGPOOL_PRELOAD_STACK_DEPTH"] = str(depth)
                counts.append(instructions(argv, env, work))
            print(f"| {name} | {counts[0]:,} | "
                  + " | ".join(f"{c / counts[0]:.3f}x ({c:,})" if args.counts else f"{c / counts[0]:.2f}x"
                               for c in counts[1:]) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
