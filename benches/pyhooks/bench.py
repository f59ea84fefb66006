"""Cost of auditing a Python program, side by side in one run: plain, tracemalloc
(1 frame), memray run (default, and --trace-python-allocators) and ringpool's
CPython hooks, exact and sampled at 1e-4 per byte (what ``ringpool-audit run
--python [--sample-rate 1e-4]`` runs: python audit/_pystart.py, report written
at exit and after finalization).

Two measurements, both of whole processes:

- CPU time (user + system, from wait4's rusage) of every mode, the modes
  interleaved, --repeat times; medians.  The machine may be shared: CPU time
  moves less with load than wall time, but it still moves.
- With --callgrind: instructions executed (valgrind --tool=callgrind), which do
  not move with load, for every mode at --callgrind-scale of the work.

Each workload also runs with N = 0 (the interpreter, the imports and the
tool's own start-up and exit) in every mode; "work" figures subtract that
baseline of the same mode, so they are the cost of the workload itself;
"whole" figures are the whole process, start-up and exit included.  Ratios
are against the plain run of the same workload.

    python benches/pyhooks/bench.py [--repeat 5] [--callgrind] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import py_compile
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = {"json": 400, "regex": 150, "dictlist": 150, "objects": 200}
MODES = ["plain", "tracemalloc-1", "memray", "memray-pyalloc", "ringpool", "ringpool-1e-4"]
#: Also measured when asked (--modes): run --python --native, exact and sampled.
EXTRA_MODES = ["ringpool-native", "ringpool-native-1e-4"]
ROOT = HERE.parents[1]
BOOT = ROOT / "audit" / "_pystart.py"


def ringpool_rate(mode: str) -> str | None:
    """"1e-3" for ringpool-1e-3 (or ringpool-native-1e-3): --modes takes any
    rate in (0, 1], e.g. ringpool-1e-9 (hooks installed, almost nothing
    sampled: the cost of the unsampled paths alone); None for other modes."""
    for prefix in ("ringpool-native-", "ringpool-"):
        if mode.startswith(prefix):
            rate = mode[len(prefix):]
            try:
                ok = 0.0 < float(rate) <= 1.0
            except ValueError:
                return None
            return rate if ok else None
    return None


def command(mode: str, workload: str, n: int, tmp: str) -> tuple[list[str], dict[str, str]]:
    py = sys.executable
    script = [str(HERE / "workloads.py"), workload, str(n)]
    env = dict(os.environ)
    env.pop("PYTHONTRACEMALLOC", None)
    # One string-hash seed for every run: dict probing, and so the work, does
    # not move between runs and modes (by about 0.3% of json's instructions).
    env["PYTHONHASHSEED"] = "0"
    if mode == "plain":
        return [py, *script], env
    if mode == "tracemalloc-1":
        return [py, "-X", "tracemalloc=1", *script], env
    if mode == "memray":
        return [py, "-m", "memray", "run", "-q", "-f", "-o", f"{tmp}/memray.bin", *script], env
    if mode == "memray-pyalloc":
        return [py, "-m", "memray", "run", "-q", "-f", "--trace-python-allocators", "-o",
                f"{tmp}/memray.bin", *script], env
    if mode in ("ringpool", "ringpool-native") or ringpool_rate(mode) is not None:
        env["RINGPOOL_PYTHON_REPORT"] = f"{tmp}/python.%p.json"
        env.pop("RINGPOOL_PYTHON_SAMPLE_RATE", None)
        env.pop("RINGPOOL_PYTHON_SAMPLE_SEED", None)
        env.pop("RINGPOOL_PYTHON_NATIVE", None)
        rate = ringpool_rate(mode)
        if rate is not None:
            env["RINGPOOL_PYTHON_SAMPLE_RATE"] = rate
        if "native" in mode:
            env["RINGPOOL_PYTHON_NATIVE"] = "64"     # run --python --native
        return [py, str(BOOT), *script], env
    raise ValueError(mode)


def cpu_time(cmd: list[str], env: dict[str, str]) -> float:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return usage.ru_utime + usage.ru_stime


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    vg = shutil.which("valgrind")
    if vg is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install valgrind)")
    out = subprocess.run([vg, "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          "--trace-children=no", *cmd], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=False)
    m = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed for {' '.join(cmd)}:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def table(title: str, rows: list[list[str]], markdown: bool) -> str:
    head = ["workload"] + [f"{m}" for m in MODES]
    lines = [f"{title}", ""]
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs per mode (default 5)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every workload's N")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions under callgrind")
    ap.add_argument("--callgrind-scale", type=float, default=0.1,
                    help="work under callgrind, as a fraction of the timed work (default 0.1)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    ap.add_argument("--markdown", action="store_true", help="markdown tables")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated subset of the modes (plain is always run)")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.scale <= 0 or args.callgrind_scale <= 0:
        ap.error("--repeat, --scale and --callgrind-scale must be positive")
    modes = ["plain"] + [m.strip() for m in args.modes.split(",") if m.strip() and m.strip() != "plain"]
    bad_modes = [m for m in modes if m not in MODES + EXTRA_MODES and ringpool_rate(m) is None]
    if bad_modes:
        ap.error(f"unknown mode(s) {', '.join(bad_modes)}: choose from "
                 f"{', '.join(MODES + EXTRA_MODES)}, or ringpool-RATE")
    MODES[:] = modes
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    # The launcher runs audit._pyboot from its cached bytecode, as an installed
    # package has it (pip compiles it); a checkout may hold none, or a stale one
    # (PYTHONDONTWRITEBYTECODE), and compiling it at every start is not the cost
    # of the hooks.
    py_compile.compile(str(ROOT / "audit" / "_pyboot.py"), doraise=True)
    out: list[str] = [f"python {sys.version.split()[0]}; {args.repeat} interleaved runs per mode; "
                      f"modes: {', '.join(MODES)}", ""]
    with tempfile.TemporaryDirectory(prefix="rp-pybench-") as tmp:
        cpu_rows, cpu_abs, cpu_whole = [], [], []
        for w in chosen:
            n = max(1, int(WORKLOADS[w] * args.scale))
            work: dict[str, list[float]] = {m: [] for m in MODES}
            base: dict[str, list[float]] = {m: [] for m in MODES}
            for _ in range(args.repeat):
                for m in MODES:
                    work[m].append(cpu_time(*command(m, w, n, tmp)))
                    base[m].append(cpu_time(*command(m, w, 0, tmp)))
            med = {m: statistics.median(work[m]) for m in MODES}
            net = {m: max(med[m] - statistics.median(base[m]), 1e-9) for m in MODES}
            cpu_abs.append([f"{w} (N={n})"] + [f"{med[m]:.3f} s" for m in MODES])
            cpu_rows.append([w] + [f"{net[m] / net['plain']:.2f}x" for m in MODES])
            cpu_whole.append([w] + [f"{med[m] / med['plain']:.2f}x" for m in MODES])
            print(f"{w}: " + ", ".join(f"{m} {med[m]:.3f}s" for m in MODES), file=sys.stderr)
        out.append(table("CPU seconds (user+sys), whole process, median", cpu_abs, args.markdown))
        out.append(table("whole-process ratio to plain (CPU)", cpu_whole, args.markdown))
        out.append(table("work ratio to plain (CPU, minus each mode's N=0 run)", cpu_rows, args.markdown))
        if args.callgrind:
            cg_rows, cg_abs, cg_whole = [], [], []
            for w in chosen:
                n = max(1, int(WORKLOADS[w] * args.scale * args.callgrind_scale))
                full = {m: instructions(*command(m, w, n, tmp)) for m in MODES}
                zero = {m: instructions(*command(m, w, 0, tmp)) for m in MODES}
                net = {m: max(full[m] - zero[m], 1) for m in MODES}
                cg_abs.append([f"{w} (N={n})"] + [f"{full[m] / 1e6:.0f} M" for m in MODES])
                cg_rows.append([w] + [f"{net[m] / net['plain']:.3f}x" for m in MODES])
                cg_whole.append([w] + [f"{full[m] / full['plain']:.3f}x" for m in MODES])
                print(f"{w} callgrind: " + ", ".join(f"{m} {net[m] / 1e6:.0f}M" for m in MODES),
                      file=sys.stderr)
            out.append(table("instructions (callgrind), whole process", cg_abs, args.markdown))
            out.append(table("whole-process ratio to plain (instructions)", cg_whole, args.markdown))
            out.append(table("work ratio to plain (instructions, minus each mode's N=0 run)",
                             cg_rows, args.markdown))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
