#!/usr/bin/env python3
"""Cost of the interposer's sampling mode beside its exact modes and heaptrack.

For each workload (smaller versions of overhead.py's), in one run:
  instructions (valgrind --tool=callgrind, deterministic) of the program
  native, under the interposer counting every block with one frame and with
  whole stacks (64 frames), and sampling at RATE with whole stacks;
  wall time, median of interleaved repeats (/usr/bin/time -v), for the same
  modes and heaptrack.

    python3 benches/preload/sampling.py --alloc-loop build/preload-bench/alloc_loop [--rate 1e-4]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instructions import instructions, small_workloads  # noqa: E402
from overhead import preload_lib  # noqa: E402


def modes(lib: str, rate: str, work: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    report = {"RINGPOOL_PRELOAD_REPORT": str(work / "r.%p.json")}
    return {
        "native": ([], {}),
        "exact, 1 frame": ([], {"LD_PRELOAD": lib, "RINGPOOL_PRELOAD_STACK_DEPTH": "1", **report}),
        "exact, stacks": ([], {"LD_PRELOAD": lib, "RINGPOOL_PRELOAD_STACK_DEPTH": "64", **report}),
        f"sampled {rate}, stacks": ([], {"LD_PRELOAD": lib, "RINGPOOL_PRELOAD_STACK_DEPTH": "64",
                                         "RINGPOOL_PRELOAD_SAMPLE_RATE": rate,
                                         "RINGPOOL_PRELOAD_SAMPLE_SEED": "1", **report}),
    }


def wall(argv: list[str], env: dict[str, str], work: Path) -> float:
    timing = work / "time.txt"
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(timing)] + argv, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}")
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)",
                  timing.read_text())
    assert m
    return int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alloc-loop", required=True)
    ap.add_argument("--rate", default="1e-4")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved wall-time runs per mode")
    ap.add_argument("--no-callgrind", action="store_true")
    args = ap.parse_args()
    lib = preload_lib(ap)
    with tempfile.TemporaryDirectory(prefix="rp-sampling-") as tmp:
        work = Path(tmp)
        cases = small_workloads(work, args.alloc_loop)
        table = modes(lib, args.rate, work)
        names = list(table)
        if not args.no_callgrind:
            print("### Instructions (callgrind), ratio to native\n")
            print("| workload | " + " | ".join(names) + " |")
            print("|---|" + "---:|" * len(names))
            for name, argv in cases:
                counts = []
                for mode in names:
                    (work / "bench.db").unlink(missing_ok=True)
                    env = dict(os.environ, GIT_PAGER="cat")
                    env.pop("LD_PRELOAD", None)
                    env.update(table[mode][1])
                    counts.append(instructions(argv, env, work))
                cells = [f"{counts[0]:,}"] + [f"{c / counts[0]:.3f}x" for c in counts[1:]]
                print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        tools = names + (["heaptrack"] if shutil.which("heaptrack") else [])
        print(f"\n### Wall time, median of {args.repeat} interleaved runs, ratio to native\n")
        print("| workload | " + " | ".join(tools) + " |")
        print("|---|" + "---:|" * len(tools))
        for name, argv in cases:
            times: dict[str, list[float]] = {t: [] for t in tools}
            for r in range(args.repeat):
                for t in tools:
                    (work / "bench.db").unlink(missing_ok=True)
                    env = dict(os.environ, GIT_PAGER="cat")
                    env.pop("LD_PRELOAD", None)
                    run_argv = argv
                    if t == "heaptrack":
                        run_argv = ["heaptrack", "-o", str(work / f"h{r}")] + argv
                    else:
                        env.update(table[t][1])
                    times[t].append(wall(run_argv, env, work))
                for f in work.glob("r.*.json"):
                    f.unlink()
                for f in work.glob("h*.zst"):
                    f.unlink()
            base = statistics.median(times["native"])
            cells = [f"{base:.3f} s"] + [f"{statistics.median(times[t]) / base:.2f}x" for t in tools[1:]]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
