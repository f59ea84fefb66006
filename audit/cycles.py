"""``run --cycles A,B[,C...]``: the residue per cycle of a program that runs a
cycle (start a runtime, use it, shut it down) N times in one process.

The program is run once per count, with ``{cycles}`` in its arguments replaced
by the count; each run's reports are read, and the difference between two
consecutive counts, divided by the number of cycles between them, is what one
cycle leaves behind: blocks and bytes per cycle for every row (call site,
function, module... with ``--preload``; pool and tag without). The first count
absorbs what only the first cycles allocate (caches, one-time tables), so the
columns of later intervals should agree when the residue is stable.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, Callable

from audit import gate, output, reports
from audit.words import plural
from audit.errors import AuditError
from audit.formatters import Column, Table
from audit.printable import printable

PLACEHOLDER = "{cycles}"

# One run: (command, report directory) -> (exit status text, failed, reports written).
Launch = Callable[[list[str], str], tuple[str, bool, list[str]]]


def cycle_counts(text: str) -> list[int]:
    """--cycles: two or more increasing whole numbers, comma-separated."""
    parts = [p.strip() for p in text.split(",")]
    counts: list[int] = []
    for part in parts:
        try:
            value = int(part, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a number of cycles") from None
        if not 1 <= value <= 10 ** 9:
            raise argparse.ArgumentTypeError(f"{part!r}: a number of cycles is from 1 to 10**9")
        counts.append(value)
    if len(counts) < 2:
        raise argparse.ArgumentTypeError("--cycles needs at least two counts, e.g. 100,1000")
    if any(b <= a for a, b in zip(counts, counts[1:])):
        raise argparse.ArgumentTypeError(f"{text!r}: the counts must increase")
    return counts


def add_cycles_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=cycle_counts, default=None, metavar="A,B[,C...]",
                        help="run the program once per count, with {cycles} in its arguments "
                             "replaced by the count, and show what one cycle leaves behind: "
                             "(report at B - report at A) / (B - A) per row, for each pair of "
                             "consecutive counts (see docs/python-programs.md)")


def command_for(cmd: list[str], count: int) -> list[str]:
    return [arg.replace(PLACEHOLDER, str(count)) for arg in cmd]


def check(args: argparse.Namespace, cmd: list[str]) -> None:
    """Refuses what --cycles cannot do, before anything runs."""
    if getattr(args, "python", False):
        raise AuditError("--cycles does not apply to --python runs: the Python hooks live in the "
                         "interpreter a cycle shuts down; run the host with --preload")
    if args.blocks:
        raise AuditError("--cycles compares counts per row; --blocks lists blocks of one run "
                         "(run the host once without --cycles)")
    if args.format in ("pprof", "speedscope", "html", "folded"):
        raise AuditError(f"--cycles --format {args.format}: a residue per cycle is a table, not "
                         "a profile; use table, csv, json, markdown or github")
    if not any(PLACEHOLDER in arg for arg in cmd[1:]):
        raise AuditError(f"--cycles: put {PLACEHOLDER} in the program's arguments where the number "
                         f"of cycles goes, e.g. -- host script.py {PLACEHOLDER}")


def run(args: argparse.Namespace, cmd: list[str], report_dir: str, launch: Launch) -> int:
    counts: list[int] = args.cycles
    per_count: list[dict[tuple[str, Any, bool], dict[str, Any]]] = []
    loaded_all: list[reports.Report] = []
    kind = "preload" if args.preload else "snapshot"
    for count in counts:
        where = os.path.join(report_dir, f"cycles-{count}")
        status_text, failed, written = launch(command_for(cmd, count), where)
        if failed:
            raise AuditError(f"{printable(cmd[0])} {status_text} at {count} cycles; no residue computed "
                             f"(reports in {printable(where)})")
        loaded = [r for r in reports.load_all(written) if r.kind == kind]
        if not loaded:
            what = "interposer report" if args.preload else "pool report (RINGPOOL_REPORT)"
            raise AuditError(f"{printable(cmd[0])} wrote no {what} at {count} cycles")
        merged = reports.rows_for(loaded, args.by, args.suppressions, args.wrapper)
        # a row is known by its frames where it has them (interposer rows: 'ident'), not
        # by its key text: two sites that read alike stay two rows
        per_count.append({(str(r["pool"]), r.get("ident", str(r["key"])), bool(r.get("suppressed"))): r
                          for r in merged.rows})
        loaded_all.extend(loaded)
        output.summary(f"{printable(cmd[0])} at {count} cycles: {status_text}; " + _totals(merged.rows))

    rows = _residue_rows(counts, per_count)
    intervals = list(zip(counts, counts[1:]))
    last = f"{intervals[-1][0]}_{intervals[-1][1]}"
    sort_key = {"bytes": f"bytes_per_cycle_{last}", "blocks": f"blocks_per_cycle_{last}",
                "peak": f"bytes_per_cycle_{last}", "tag": None}[args.sort]
    if sort_key is None:
        rows.sort(key=lambda r: (r["pool"], r["key"]))
    else:
        rows.sort(key=lambda r: (-r[sort_key], r["pool"], r["key"]))
    if args.min_bytes:
        rows = [r for r in rows if abs(r[f"bytes_per_cycle_{last}"]) >= args.min_bytes]
    verdict = gate.evaluate(args, [{"key": r["key"], "suppressed": r["suppressed"],
                                    "blocks": math.ceil(r[f"blocks_per_cycle_{last}"]),
                                    "bytes": round(r[f"bytes_per_cycle_{last}"])} for r in rows])
    shown = rows[: args.top] if args.top is not None else rows
    several_pools = len({r["pool"] for r in rows}) > 1
    header = args.by or ("site" if kind == "preload" else "tag")
    columns = ([Column("pool", "pool", path=True)] if several_pools else []) + [Column("key", header)]
    for a, b in intervals:
        columns += [Column(f"blocks_per_cycle_{a}_{b}", f"blocks/cycle {a}-{b}", ".1f"),
                    Column(f"bytes_per_cycle_{a}_{b}", f"bytes/cycle {a}-{b}", ".1f")]
    if kind == "preload":
        columns.append(Column("suppressed", "suppressed"))
    title = "residue per cycle by " + header + " (" + ", ".join(
        f"cycles {a} to {b}" for a, b in intervals) + ")"
    table = Table(columns=columns, rows=shown, title=title, value_key=f"bytes_per_cycle_{last}",
                  frames=lambda row: [str(row["key"])],
                  json_extra=(["pool_path"] if several_pools else []) + (["frames"] if args.preload else []),
                  meta={"kind": kind, "cycles": counts,
                        "totals": [_interval_totals(rows, a, b) for a, b in intervals]})
    if args.preload and args.output is None:
        output.summary(_render(table, args.format).rstrip("\n"))
    else:
        output.emit(args, table)
    parts = []
    for a, b in intervals:
        t = _interval_totals(rows, a, b)
        parts.append(f"cycles {a} to {b}: {t['blocks_per_cycle']:.1f} blocks, "
                     f"{t['bytes_per_cycle']:.1f} bytes per cycle")
    line = "residue per cycle: " + "; ".join(parts)
    if len(intervals) >= 2:
        before = _interval_totals(rows, *intervals[-2])
        after = _interval_totals(rows, *intervals[-1])
        line += (f"; last two intervals differ by {after['blocks_per_cycle'] - before['blocks_per_cycle']:+.1f} "
                 f"blocks, {after['bytes_per_cycle'] - before['bytes_per_cycle']:+.1f} bytes per cycle")
    output.summary(verdict.summarize(line, "per cycle "))
    return verdict.exit_code


def _render(table: Table, fmt: str) -> str:
    from audit.formatters import render
    data = render(table, fmt)
    return data if isinstance(data, str) else data.decode("utf-8", "backslashreplace")


def _totals(rows: list[dict[str, Any]]) -> str:
    blocks = sum(int(r["blocks"]) for r in rows if not r.get("suppressed"))
    nbytes = sum(int(r["bytes"]) for r in rows if not r.get("suppressed"))
    return f"{plural(blocks, 'block')}, {plural(nbytes, 'byte')} outstanding"


def _residue_rows(counts: list[int],
                  per_count: list[dict[tuple[str, Any, bool], dict[str, Any]]]) -> list[dict[str, Any]]:
    keys = dict.fromkeys(k for table in per_count for k in table)
    rows = []
    for k in keys:
        pool, _, suppressed = k
        first = next(t[k] for t in per_count if k in t)
        key = str(first["key"])
        row: dict[str, Any] = {"pool": pool, "key": key, "tag": key, "suppressed": suppressed}
        names = first.get("pool_path")
        if names is not None:
            row["pool_path"] = names       # the pool's names, beside its path text (json)
        if "frames" in first:
            row["frames"] = first["frames"]    # the row's identity: two keys may read alike (json)
        for i, (a, b) in enumerate(zip(counts, counts[1:])):
            old, new = per_count[i].get(k), per_count[i + 1].get(k)
            span = b - a
            for what in ("blocks", "bytes"):
                grown = (int(new[what]) if new else 0) - (int(old[what]) if old else 0)
                row[f"{what}_per_cycle_{a}_{b}"] = grown / span
        rows.append(row)
    return rows


def _interval_totals(rows: list[dict[str, Any]], a: int, b: int) -> dict[str, Any]:
    live = [r for r in rows if not r["suppressed"]]
    return {"from": a, "to": b,
            "blocks_per_cycle": sum(r[f"blocks_per_cycle_{a}_{b}"] for r in live),
            "bytes_per_cycle": sum(r[f"bytes_per_cycle_{a}_{b}"] for r in live)}
