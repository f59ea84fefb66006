#!/usr/bin/env python3
"""Wall time of naming an interposer report's frames: load, symbolize, group by stack.

Runs `git log -p --stat` over a generated repository (overhead.git_repo) under the
interposer (`ringpool-audit run --preload`, 64-frame stacks), then times, each round in
a fresh process (the symbolizer caches per process),
`preload.rows(preload.load(REPORT), by="stack")`. With --delimited every module takes
the path of a module whose function or file names hold a newline: addr2line asked twice
more, each address between queries of a random address (audit/elfsym.py).

Wall time on a shared machine is an upper bound: read the minimum.

    PYTHONPATH=. python3 benches/preload/symbolize.py [--commits 300] [--rounds 5] [--delimited]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead  # noqa: E402  (the workloads' generators)

TIMED = """
import sys, time
from audit import elfsym, preload
if sys.argv[2] == "delimited":
    plain = elfsym._run_addr2line
    def longer(args, addrs):
        out = plain(args, addrs)
        # one line more in the first answer: its count is no longer two lines an address
        return out + "\\n" if out is not None and args[0] == "-f" else out
    elfsym._run_addr2line = longer
start = time.perf_counter()
report = preload.load(sys.argv[1])
rows = preload.rows(report, by="stack")
took = time.perf_counter() - start
frames = len({f for s in report.sites for f in s.frames()})
print(f"{took:.3f} {len(rows)} {len(report.sites)} {frames} {len(report.modules)}")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=300, help="commits of the generated repository")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--delimited", action="store_true",
                    help="every module through the delimited path (as a name holding a newline makes it)")
    args = ap.parse_args()
    lib = overhead.preload_lib(ap)
    repo_root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, RINGPOOL_PRELOAD_LIB=lib,
               PYTHONPATH=os.pathsep.join(p for p in (str(repo_root), os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory(prefix="ringpool-symbolize-") as tmp:
        work = Path(tmp)
        overhead.git_repo(work, args.commits)
        reports = work / "reports"
        subprocess.run([sys.executable, "-m", "audit", "run", "--preload", "--report-dir", str(reports),
                        "--output", str(work / "table.txt"), "--", "git", "--no-pager", "-C",
                        str(work / "repo"), "log", "-p", "--stat"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        (report,) = reports.glob("ringpool-preload.*.json")
        times = []
        for _ in range(args.rounds):
            out = subprocess.run([sys.executable, "-c", TIMED, str(report),
                                  "delimited" if args.delimited else "plain"],
                                 env=env, check=True, capture_output=True, text=True).stdout.split()
            times.append(float(out[0]))
        rows, sites, frames, modules = out[1:]
    print(f"git log -p --stat, {args.commits} commits: {sites} sites, {frames} distinct frames, "
          f"{modules} modules, {rows} stacks")
    print(f"load + symbolize + rows by stack ({'delimited' if args.delimited else 'usual'} path), "
          f"{args.rounds} rounds: min {min(times):.3f} s, median {statistics.median(times):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
