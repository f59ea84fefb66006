#!/usr/bin/env python3
"""Overhead of libringpool-preload.so beside heaptrack and valgrind.

Runs each workload uninstrumented, under the interposer, under heaptrack and
under valgrind (memcheck, --leak-check=full), side by side in one run, each
as a whole process measured by /usr/bin/time -v: median wall time of
--repeat runs and the largest peak RSS. Checks that every instrumented run
printed what the uninstrumented run printed and that the interposer wrote its
report. Prints a Markdown table (ratios to uninstrumented) and, with --json,
writes the raw numbers.

    make bench-preload                     # installs the programs, then runs this
    python3 benches/preload/overhead.py --alloc-loop build/preload-bench/alloc_loop \
        [--repeat 3] [--valgrind-repeat 1] [--only python3,sort,cc1] [--stack-depth 64] [--json out.json]

Tools: native, preload (whole stacks, --stack-depth frames), preload-1 (the
caller of malloc only), heaptrack, valgrind; runs are interleaved (round r
runs each tool once).

Standard library only: it runs with the system python3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]

PY_WORKLOAD = r"""
import json, re, collections
docs = [{"id": i, "name": "item-%d" % i, "tags": ["t%d" % (i % 7), "x" * (i % 13)],
         "nested": {"a": [i, i * 2, str(i)], "b": None}} for i in range(60000)]
total = 0
for _ in range(3):
    text = json.dumps(docs)
    back = json.loads(text)
    words = collections.Counter(re.findall(r"item-(\d*7)\b", text))
    total += len(back) + len(words) + sum(len(m) for m in re.findall(r'"t[0-6]"', text))
print(total)
"""


@dataclass
class Workload:
    name: str
    describe: str
    argv: list[str]
    prepare: Callable[[Path], None] = lambda d: None
    before_each: Callable[[Path], None] = lambda d: None
    env: dict[str, str] = field(default_factory=dict)
    stdin: str = ""        # a file in the work directory fed to the program's stdin


@dataclass
class Measure:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)   # user + system seconds
    rss_kb: int = 0
    digest: str = ""
    failure: str = ""
    allocations: list[int] = field(default_factory=list)   # allocation calls the tool saw


def preload_lib(ap: argparse.ArgumentParser) -> str:
    """The interposer the preload benchmarks run, as an absolute path:
    $RINGPOOL_PRELOAD_LIB, else the build's; an argument error (through ap)
    when it is not built."""
    lib = os.path.abspath(os.environ.get("RINGPOOL_PRELOAD_LIB",
                                         str(REPO / "build" / "libringpool-preload.so")))
    if not os.path.isfile(lib):
        ap.error(f"{lib}: interposer not built (run `make preload`)")
    return lib


def sqlite_script(work: Path, rows: int) -> None:
    with open(work / "inserts.sql", "w") as f:
        f.write("PRAGMA journal_mode=OFF;\nCREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, "
                "score REAL, tag TEXT);\nCREATE INDEX t_tag ON t(tag);\nBEGIN;\n")
        for i in range(rows):
            f.write(f"INSERT INTO t(name, score, tag) VALUES('name-{i * 7919 % 1000003}', "
                    f"{i * 0.5}, 'tag{i % 97}');\n")
        f.write("COMMIT;\nSELECT count(*), sum(score), count(DISTINCT tag) FROM t;\n"
                "SELECT tag, count(*) FROM t GROUP BY tag ORDER BY 2 DESC, 1 LIMIT 3;\n")


def sqlite_fresh(work: Path) -> None:
    (work / "bench.db").unlink(missing_ok=True)


def git_repo(work: Path, commits: int) -> None:
    repo = work / "repo"
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid",
               GIT_AUTHOR_DATE="2026-01-01T00:00:00Z", GIT_COMMITTER_DATE="2026-01-01T00:00:00Z")
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    files = 200
    for f in range(files):
        (repo / f"file{f:03d}.txt").write_text("".join(f"line {i} of file {f}\n" for i in range(200)))
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "initial"], check=True, env=env)
    for c in range(commits):
        for k in range(5):
            f = (c * 37 + k * 11) % files
            path = repo / f"file{f:03d}.txt"
            lines = path.read_text().splitlines(keepends=True)
            lines[(c * 13 + k) % len(lines)] = f"changed in commit {c} ({k})\n"
            path.write_text("".join(lines))
        subprocess.run(["git", "-C", str(repo), "commit", "-qam", f"commit {c}"], check=True, env=env)


def c_source(work: Path, lines: int) -> None:
    """A C file of about `lines` lines for cc1: structs, loops, switches and
    calls between a few hundred functions (enough work for the optimiser)."""
    # declarations instead of #include: cc1 run by hand has no system include path
    out = ["int printf(const char *, ...);", "unsigned long strlen(const char *);"]
    i = 0
    while len(out) < lines - 4:
        prev = max(i - 1, 0)
        out += [f"struct s{i} {{ int a; double b[{i % 7 + 1}]; char *name; }};",
                f"static int f{i}(struct s{i} *p, int n)", "{", "    int t = 0;",
                f"    for (int k = 0; k < n; k++) {{ t += p->a * k + (int)p->b[k % {i % 7 + 1}]; "
                f"if (t > {i * 13}) t -= n; }}",
                f"    if (p->name && strlen(p->name) > {i % 11}) t += f{prev}((struct s{prev} *)0, 0);"
                if i else "    if (p->name) t += 1;",
                f"    switch (n & 3) {{ case 0: t ^= {i}; break; case 1: t += {i * 3}; break; "
                "default: t -= 1; }",
                "    return t;", "}", ""]
        i += 1
    out += ["int main(void)", "{", "    int t = 0;"]
    out += [f"    {{ struct s{k} v = {{0}}; t += f{k}(&v, {k % 5}); }}" for k in range(0, i, 3)]
    out += ["    printf(\"%d\\n\", t);", "    return 0;", "}"]
    (work / "big.c").write_text("\n".join(out) + "\n")


def cc1_path() -> str | None:
    """gcc's compiler proper (cc1), or None without gcc."""
    gcc = shutil.which("gcc")
    if not gcc:
        return None
    path = subprocess.run([gcc, "-print-prog-name=cc1"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.access(path, os.X_OK) else None


def sort_input(work: Path, lines: int) -> None:
    with open(work / "sort-input.txt", "w") as f:
        for i in range(lines):
            f.write(f"{(i * 2654435761) % 4294967296:010d} row {i} {'abcdefgh'[i % 8] * (i % 17)}\n")


def workloads(args: argparse.Namespace, work: Path) -> list[Workload]:
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    return [
        # the script from a file: heaptrack writes the command line into its
        # line-based trace, and a newline in a `-c` argument breaks the trace
        # (its interpreter stops at the first bad line and records nothing)
        Workload("python3", "python3: JSON dump/load and regex over 60k records, 3 rounds",
                 [python, str(work / "workload.py")],
                 prepare=lambda d: (d / "workload.py").write_text(PY_WORKLOAD)),
        Workload("sqlite3", f"sqlite3: {args.sqlite_rows} INSERTs in one transaction, indexed",
                 # sqlite3 itself, its stdin from the file: under `sh -c` heaptrack
                 # traces the shell alone (its library removes itself from
                 # LD_PRELOAD for child processes) and sees no allocation
                 ["sqlite3", str(work / "bench.db")], stdin="inserts.sql",
                 prepare=lambda d: sqlite_script(d, args.sqlite_rows), before_each=sqlite_fresh),
        Workload("git", f"git: log -p --stat over a generated repo ({args.git_commits} commits)",
                 ["git", "--no-pager", "-C", str(work / "repo"), "log", "-p", "--stat"],
                 prepare=lambda d: git_repo(d, args.git_commits),
                 env={"GIT_PAGER": "cat", "PAGER": "cat"}),
        Workload("sort", f"sort: {args.sort_lines} lines (~{args.sort_lines * 30 // 1000000} MB)",
                 ["sort", str(work / "sort-input.txt")],
                 prepare=lambda d: sort_input(d, args.sort_lines)),
        Workload("alloc-loop", f"alloc_loop: {args.loop_rounds} free/malloc pairs over 4096 live blocks",
                 [args.alloc_loop, str(args.loop_rounds), "4096"]),
    ] + ([Workload("cc1", f"cc1: gcc's compiler proper, -O2 on a generated {args.cc1_lines}-line C file "
                          "(what gcc -O2 -c runs)",
                   [cc1, "-quiet", "-O2", str(work / "big.c"), "-o", str(work / "big.s")],
                   prepare=lambda d: c_source(d, args.cc1_lines))] if (cc1 := cc1_path()) else [])


def tool_argv(tool: str, argv: list[str], work: Path, run: int) -> tuple[list[str], dict[str, str]]:
    if tool == "native":
        return argv, {}
    if tool in ("preload", "preload-1"):
        # preload: whole stacks (--stack-depth, default 64, as `ringpool-audit
        # run --preload`); preload-1: the caller of malloc only
        depth = "1" if tool == "preload-1" else os.environ.get("RP_BENCH_STACK_DEPTH", "64")
        return argv, {"LD_PRELOAD": os.environ["RINGPOOL_PRELOAD_LIB"],
                      "RINGPOOL_PRELOAD_STACK_DEPTH": depth,
                      "RINGPOOL_PRELOAD_REPORT": str(work / "reports" / f"r{run}.%p.json")}
    if tool == "heaptrack":
        return ["heaptrack", "-o", str(work / "heaptrack" / f"h{run}")] + argv, {}
    if tool == "valgrind":
        return ["valgrind", "-q", "--leak-check=full", "--trace-children=yes",
                f"--log-file={work / 'valgrind' / f'v{run}.%p.log'}"] + argv, {}
    raise ValueError(tool)


def measure_once(tool: str, wl: Workload, work: Path, run: int, m: Measure) -> None:
    wl.before_each(work)
    argv, extra = tool_argv(tool, wl.argv, work, run)
    env = dict(os.environ, **wl.env, **extra)
    env.pop("RINGPOOL_REPORT", None)
    if tool not in ("preload", "preload-1"):
        env.pop("LD_PRELOAD", None)
    timing = work / "time.txt"
    with open(work / wl.stdin if wl.stdin else os.devnull, "rb") as stdin:
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(timing)] + argv, env=env,
                              stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    text = timing.read_text()
    if proc.returncode != 0:
        m.failure = f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}"
        return
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not wall or not rss:
        m.failure = "no /usr/bin/time output"
        return
    seconds = int(wall[1] or 0) * 3600 + int(wall[2]) * 60 + float(wall[3])
    m.wall.append(seconds)
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    if user and system:
        m.cpu.append(float(user[1]) + float(system[1]))
    m.rss_kb = max(m.rss_kb, int(rss[1]))
    stdout = proc.stdout
    if tool == "heaptrack":   # heaptrack prints its own lines on stdout
        noise = (b"heaptrack", b"Heaptrack", b"starting application, this might take some time")
        stdout = b"\n".join(l for l in stdout.split(b"\n")
                            if l.strip() and not any(n in l for n in noise))
    else:
        stdout = b"\n".join(l for l in stdout.split(b"\n") if l.strip())
    m.digest = hashlib.sha256(stdout).hexdigest()
    note_allocations(tool, m, proc.stderr, work, run)


def note_allocations(tool: str, m: Measure, stderr: bytes, work: Path, run: int) -> None:
    """Adds the allocation calls the tool recorded in this run to m; a tool
    that recorded none, or a heaptrack that could not read its own trace,
    fails the measure (it did not do the work it is timed for)."""
    seen = allocations_seen(tool, stderr, work, run)
    if seen is not None:
        m.allocations.append(seen)
        if seen == 0:
            m.failure = "the tool saw no allocation (it did not trace the workload's process)"
    if tool == "heaptrack" and b"failed to parse" in stderr:
        m.failure = "heaptrack could not read its own trace: " + \
            stderr.decode(errors="replace").strip().splitlines()[0][:200]


def allocations_seen(tool: str, stderr: bytes, work: Path, run: int) -> int | None:
    """Allocation calls the tool recorded in this run: heaptrack's own count
    (its "allocations:" line), the interposer's reports' totals.allocs summed
    over the run's processes; None for the other tools."""
    if tool == "heaptrack":
        found = re.findall(rb"^\s*allocations:\s*(\d+)", stderr, re.M)
        return sum(int(n) for n in found) if found else 0
    if tool in ("preload", "preload-1"):
        total = 0
        for f in (work / "reports").glob(f"r{run}.*.json"):
            try:
                total += int(json.loads(f.read_text())["totals"]["allocs"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return total
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alloc-loop", required=True, help="path of the built alloc_loop program")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool (median wall time)")
    ap.add_argument("--valgrind-repeat", type=int, default=1, help="runs under valgrind")
    ap.add_argument("--tools", default="native,preload-1,preload,heaptrack,valgrind",
                    help="preload = whole stacks (--stack-depth), preload-1 = one frame")
    ap.add_argument("--stack-depth", type=int, default=64, help="frames per block for the preload tool")
    ap.add_argument("--cc1-lines", type=int, default=5000)
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--sqlite-rows", type=int, default=300000)
    ap.add_argument("--git-commits", type=int, default=300)
    ap.add_argument("--sort-lines", type=int, default=1500000)
    ap.add_argument("--loop-rounds", type=int, default=10000000)
    ap.add_argument("--json", help="also write the raw numbers here")
    args = ap.parse_args(argv)
    load_at_start = os.getloadavg()[0]
    for name in ("repeat", "valgrind_repeat", "sqlite_rows", "git_commits", "sort_lines", "loop_rounds",
                 "stack_depth", "cc1_lines"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be a positive integer")
    os.environ["RINGPOOL_PRELOAD_LIB"] = preload_lib(ap)
    os.environ["RP_BENCH_STACK_DEPTH"] = str(args.stack_depth)
    if not os.access(args.alloc_loop, os.X_OK):
        ap.error(f"{args.alloc_loop}: not an executable (run `make bench-preload`)")
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t not in ("native", "preload", "preload-1", "heaptrack", "valgrind"):
            ap.error(f"unknown tool {t!r}")
        if t in ("heaptrack", "valgrind") and not shutil.which(t):
            ap.error(f"{t} is not installed (make bench-preload installs it)")
    if "native" not in tools:
        tools.insert(0, "native")

    results: dict[str, dict[str, Measure]] = {}
    with tempfile.TemporaryDirectory(prefix="rp-preload-bench-") as tmp:
        work = Path(tmp)
        for sub in ("reports", "heaptrack", "valgrind"):
            (work / sub).mkdir()
        chosen = workloads(args, work)
        if args.only:
            names = set(args.only.split(","))
            unknown = names - {w.name for w in chosen}
            if unknown:
                ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
            chosen = [w for w in chosen if w.name in names]
        for wl in chosen:
            print(f"[{wl.name}] preparing", file=sys.stderr, flush=True)
            wl.prepare(work)
            results[wl.name] = {t: Measure() for t in tools}
            run = 0
            # interleaved: round r runs every tool once, so a change in the
            # machine's load falls on all of them alike
            for r in range(max(args.repeat, args.valgrind_repeat)):
                for t in tools:
                    reps = args.valgrind_repeat if t == "valgrind" else args.repeat
                    m = results[wl.name][t]
                    if r >= reps or m.failure:
                        continue
                    run += 1
                    measure_once(t, wl, work, run, m)
            for t in tools:
                m = results[wl.name][t]
                med = statistics.median(m.wall) if m.wall else float("nan")
                print(f"[{wl.name}] {t:9s} median {med:7.2f} s  peak RSS {m.rss_kb / 1024:7.1f} MiB"
                      + (f"  allocations seen {statistics.median(m.allocations):,.0f}"
                         if m.allocations else "")
                      + (f"  FAILED {m.failure}" if m.failure else ""), file=sys.stderr, flush=True)
            native = results[wl.name]["native"]
            for t, m in results[wl.name].items():
                if not m.failure and m.digest != native.digest:
                    m.failure = "output differs from the uninstrumented run"
            if any(t.startswith("preload") for t in tools) and not any((work / "reports").iterdir()):
                for t in tools:
                    if t.startswith("preload"):
                        results[wl.name][t].failure = "no interposer report written"
            for f in (work / "reports").iterdir():
                f.unlink()

    print_table(results, tools, chosen, load_at_start)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "load_at_start": load_at_start, "repeat": args.repeat,
                       "results": {w: {t: {"wall": m.wall, "cpu": m.cpu, "rss_kb": m.rss_kb,
                                           "allocations": m.allocations, "failure": m.failure}
                                       for t, m in r.items()} for w, r in results.items()}},
                      f, indent=2)
    ours_failed = False
    for w, r in results.items():
        for t, m in r.items():
            if m.failure:
                print(f"FAILED {w}/{t}: {m.failure}", file=sys.stderr)
                ours_failed = ours_failed or t in ("native", "preload", "preload-1")
    return 1 if ours_failed else 0


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def print_table(results: dict[str, dict[str, Measure]], tools: list[str],
                chosen: list[Workload], load_at_start: float) -> None:
    print(f"\nMachine: {machine()}; load average at the start: {load_at_start:.2f}\n")
    print("Ratios to the uninstrumented run: wall = median elapsed time, CPU = median user+system "
          "time (all processes the tool starts), RSS = largest peak resident set of one process.\n")
    others = [t for t in tools if t != "native"]
    head = ["workload", "native wall (s)"] + [f"{t} wall" for t in others] \
        + [f"{t} CPU" for t in others] \
        + ["native peak RSS (MiB)"] + [f"{t} RSS" for t in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for wl in chosen:
        r = results[wl.name]
        nat = r["native"]
        nw = max(statistics.median(nat.wall), 0.005) if nat.wall else float("nan")
        cells = [wl.name, f"{nw:.2f}"]
        for t in tools:
            if t == "native":
                continue
            m = r[t]
            cells.append("failed" if m.failure else f"{statistics.median(m.wall) / nw:.2f}x")
        nc = max(statistics.median(nat.cpu), 0.005) if nat.cpu else float("nan")
        for t in others:
            m = r[t]
            cells.append("failed" if m.failure or not m.cpu else f"{statistics.median(m.cpu) / nc:.2f}x")
        cells.append(f"{nat.rss_kb / 1024:.1f}")
        for t in tools:
            if t == "native":
                continue
            m = r[t]
            cells.append("failed" if m.failure else f"{m.rss_kb / max(nat.rss_kb, 1):.2f}x")
        print("| " + " | ".join(cells) + " |")
    print()
    for wl in chosen:
        print(f"- {wl.name}: {wl.describe}")
    counted = [t for t in others if any(results[w.name][t].allocations for w in chosen)]
    if counted:
        print("\nAllocation calls each tool recorded (median per run; the interposer's "
              "totals.allocs, heaptrack's own count):\n")
        print("| workload | " + " | ".join(counted) + " |")
        print("|---|" + "---:|" * len(counted))
        for wl in chosen:
            r = results[wl.name]
            print(f"| {wl.name} | " + " | ".join(
                f"{statistics.median(r[t].allocations):,.0f}" if r[t].allocations else "-"
                for t in counted) + " |")


if __name__ == "__main__":
    sys.exit(main())
