"""Soak: a SIGALRM handler that allocates every 200 us while the main thread
allocates (tests/preload/sigalloc.c), many runs per variant, under the
interposer. Counts hangs (no exit within the timeout), crashes and runs whose
report differs from the program's own count of its blocks.

The allocator under the interposer is tests/preload/libs/sigsafe.c (lock-free):
glibc's malloc deadlocks in such a handler by itself once a second thread
exists. `--glibc` adds the single-threaded variant over glibc, with and
without the interposer, as a referee.

    python3 benches/preload/signal_soak.py --runs 200 --bin build/preload-tests
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from audit import preload  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "tests" / "preload" / "sigalloc.c"


def marker_line() -> int:
    for i, text in enumerate(SOURCE.read_text().splitlines(), 1):
        if "/* LEAK-X" in text:
            return i
    raise SystemExit("LEAK-X marker missing in sigalloc.c")


def expected(stdout: bytes) -> tuple[int, int, int]:
    m = re.fullmatch(rb"handler (\d+) kept_h (\d+) kept_m (\d+) iters (\d+)\n", stdout)
    if not m:
        raise ValueError(f"unexpected output {stdout!r}")
    handler, kept_h, kept_m, iters = (int(x) for x in m.groups())
    m_bytes = sum(16 + (i & 255) for i in range(iters) if i % 1000 == 999)
    return kept_h + kept_m, kept_h * 40 + m_bytes, iters + 16 * handler


def one(argv: list[str], preload_list: str, interposed: bool, timeout: float,
        depth: int = 1) -> str:
    """'ok', 'hang', 'crash', 'miscount' or 'error'."""
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGPOOL_")}
        env["LD_PRELOAD"] = preload_list
        env["RINGPOOL_PRELOAD_REPORT"] = os.path.join(tmp, "r.%p.json")
        env["RINGPOOL_PRELOAD_STACK_DEPTH"] = str(depth)
        env["RINGPOOL_PRELOAD_ALL_SITES"] = "1"   # with stacks, fully freed sites count too
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "hang"
        if proc.returncode < 0:
            return "crash"
        if proc.returncode != 0:
            print(f"  exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}",
                  file=sys.stderr)
            return "error"
        if not interposed:
            return "ok"
        want = expected(proc.stdout)
        reports = list(Path(tmp).glob("r.*.json"))
        if len(reports) != 1:
            print(f"  {len(reports)} reports; stderr: {proc.stderr.decode(errors='replace')[-300:]}",
                  file=sys.stderr)
            return "error"
        rep = preload.load(str(reports[0]))
        line = marker_line()
        got = [0, 0, 0]
        for site in rep.sites:
            if not site.module.endswith("/sigalloc"):
                continue
            sym = preload.symbolize(rep)[(site.module, site.offset)]
            if sym.line == line:
                got = [got[0] + site.blocks, got[1] + site.bytes, got[2] + site.allocs]
        if tuple(got) == want and rep.totals["dropped"] == 0:
            return "ok"
        print(f"  counted {tuple(got)} (dropped {rep.totals['dropped']}), program says {want}",
              file=sys.stderr)
        return "miscount"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--iters", type=int, default=300000)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--bin", default="build/preload-tests")
    ap.add_argument("--lib", default=os.environ.get("RINGPOOL_PRELOAD_LIB", "build/libringpool-preload.so"))
    ap.add_argument("--glibc", action="store_true", help="also the single-threaded variant over glibc")
    args = ap.parse_args()
    binary = os.path.abspath(os.path.join(args.bin, "sigalloc"))
    safe = os.path.abspath(os.path.join(args.bin, "libsigsafe.so"))
    lib = os.path.abspath(args.lib)
    cases = [("single, lock-free allocator", "single", f"{lib}:{safe}", True, 1),
             ("threads, lock-free allocator", "threads", f"{lib}:{safe}", True, 1),
             ("single, lock-free allocator, 64-frame stacks", "single", f"{lib}:{safe}", True, 64),
             ("threads, lock-free allocator, 64-frame stacks", "threads", f"{lib}:{safe}", True, 64)]
    if args.glibc:
        cases += [("single, glibc, no interposer", "single", "", False, 1),
                  ("single, glibc, interposer", "single", lib, True, 1)]
    failed = False
    print("| variant | runs | ok | hang | crash | miscount | error |")
    print("|---|---|---|---|---|---|---|")
    for title, variant, pl, interposed, depth in cases:
        tally = {k: 0 for k in ("ok", "hang", "crash", "miscount", "error")}
        for _ in range(args.runs):
            tally[one([binary, variant, str(args.iters)], pl, interposed, args.timeout, depth)] += 1
        print(f"| {title} | {args.runs} | " + " | ".join(str(tally[k]) for k in
              ("ok", "hang", "crash", "miscount", "error")) + " |", flush=True)
        if pl.endswith(safe) and tally["ok"] != args.runs:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
