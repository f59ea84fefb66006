"""Pieces shared by show and run: the by-tag table and its options."""

from __future__ import annotations

import argparse
import dataclasses
from operator import itemgetter
from typing import Any

from audit import gate, schema
from audit.errors import AuditError
from audit.export.source import Source
from audit.formatters import Column, Table
from audit.printable import as_unicode
from audit.reports import BY_CHOICES, Merged, Report
from audit.words import plural

# --sort: the count to order by, largest first (ties by pool, then tag); "tag" alone
# orders by tag then pool.
SORT_KEYS = {"bytes": "bytes", "blocks": "blocks", "peak": "peak_bytes", "tag": ""}


def sort_rows(rows: list[dict[str, Any]], how: str) -> None:
    """Sorts rows in place for --sort; two stable sorts on plain keys, so a
    million rows cost about a second."""
    if how == "tag":
        rows.sort(key=itemgetter("key", "pool"))
        return
    rows.sort(key=itemgetter("pool", "key"))
    count = SORT_KEYS[how]
    rows.sort(key=lambda r: r[count] or 0, reverse=True)   # reverse keeps ties in order


def positive_int(text: str) -> int:
    value = gate.non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def wrapper_pattern(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty pattern would match nothing")
    return text.strip()


def add_input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input")
    group.add_argument("--max-report-bytes", type=gate.non_negative_int, metavar="N",
                       default=schema.DEFAULT_LIMITS.max_bytes,
                       help="refuse report files larger than N bytes (default: "
                            f"{schema.DEFAULT_LIMITS.max_bytes}); a report is a regular file, "
                            "or - for standard input")


def input_limits(args: argparse.Namespace) -> schema.Limits:
    """The reader's limits for the options of add_input_options."""
    return dataclasses.replace(schema.DEFAULT_LIMITS, max_bytes=args.max_report_bytes,
                               size_hint="; --max-report-bytes N raises the limit")


def add_table_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("table")
    group.add_argument("--top", type=positive_int, metavar="N", help="show only the first N rows")
    group.add_argument("--sort", choices=list(SORT_KEYS), default="bytes",
                       help="row order (default: bytes, largest first)")
    group.add_argument("--min-bytes", type=gate.non_negative_int, default=0, metavar="N",
                       help="hide rows with fewer than N outstanding bytes")
    group.add_argument("--by", choices=BY_CHOICES, default=None,
                       help="interposer reports: group rows by call site (default), whole stack, "
                            "function, source file or module; each block is credited to the "
                            "first frame of its stack that is not an allocation wrapper; reports "
                            "of pools that record stacks: each tag opened the same way; Python "
                            "reports: by line (default), function, file or stack")
    group.add_argument("--wrapper", action="append", metavar="PATTERN", type=wrapper_pattern,
                       help="interposer and pool-stack reports: also treat functions matching PATTERN (fnmatch, "
                            "e.g. 'my_alloc*') as allocation wrappers; repeatable")
    group.add_argument("--suppressions", metavar="FILE",
                       help="interposer reports: a suppressions file; suppressed rows never fail the gate")


def by_tag_table(merged: Merged, reports: list[Report], args: argparse.Namespace) -> Table:
    rows = list(merged.rows)
    total_bytes = sum(map(itemgetter("bytes"), rows))
    for r in rows:
        r["percent"] = round(100.0 * r["bytes"] / total_bytes, 1) if total_bytes else 0.0
    sort_rows(rows, args.sort)
    if args.min_bytes:
        rows = [r for r in rows if r["bytes"] >= args.min_bytes]
    if args.top is not None:
        rows = rows[: args.top]
    preload = merged.kind == "preload"
    python = merged.kind == "python"
    # pool reports with stacks (--by): each tag opened into its frames
    pool_stacks = merged.kind == "snapshot" and args.by is not None
    key_header = args.by if pool_stacks else _key_header(merged.kind, args.by)
    pools = {tuple(r.get("pool_path", ())) for r in rows}
    has_children = any(len(p) > 1 for p in pools)
    several_pools = len(pools) > 1
    columns: list[Column] = []
    json_extra: list[str] = []
    if not preload and not python and (has_children or several_pools):
        columns.append(Column("pool", "pool", path=True))
        json_extra.append("pool_path")     # the names, beside the path text
    if preload or python or pool_stacks:
        json_extra.append("frames")        # the row's identity: two keys may read alike
    if pool_stacks:
        columns.append(Column("tag", "tag"))
    columns.append(Column("key", key_header))
    rate = sample_rate(reports)
    est = "~" if rate is not None else ""          # sampled: the counts are estimates
    columns += [Column("blocks", est + "blocks"), Column("bytes", est + "bytes")]
    if not preload:
        columns.append(Column("peak_bytes", est + "peak"))
    columns += [Column("allocs", est + "allocs"), Column("percent", "% bytes", ".1f")]
    if preload:
        columns.append(Column("suppressed", "suppressed"))
    if len(reports) > 1:
        for report in reports:
            key = f"report:{report.label}"
            columns.append(Column(key, f"{report.label} bytes"))
            for r in rows:
                r[key] = r["per_report"].get(report.label, 0)
    meta: dict[str, Any] = {
        "kind": merged.kind,
        "reports": [_report_meta(r) for r in reports],
    }

    def frames(row: dict[str, Any]) -> list[str]:
        if preload:
            return [str(row["key"])]
        if python:
            return [str(f) for f in reversed(row["frame_texts"])]   # outermost first
        # a pool is one frame per name of its path, whatever the name holds ("a/b")
        if pool_stacks:
            return [*row["pool_path"], str(row["tag"]), str(row["key"])]
        return [*row["pool_path"], str(row["key"])]

    title = "outstanding by " + key_header
    if rate is not None:
        meta["sample_rate"] = rate
        title += f" (estimates: each byte sampled with probability {rate:g})"

    source = Source(reports, args.by, args.suppressions, getattr(args, "wrapper", None))
    return Table(columns=columns, rows=rows, title=title, frames=frames, value_key="bytes", meta=meta,
                 json_extra=json_extra, source=source)


def _key_header(kind: str, by: str | None) -> str:
    if kind == "preload":
        return by or "site"
    if kind == "python":
        from audit import pyreport
        try:
            return pyreport.normalize_by(by)
        except ValueError as exc:
            raise AuditError(str(exc)) from exc
    return "tag"


def _report_meta(report: Report) -> dict[str, Any]:
    data = report.data
    meta: dict[str, Any] = {"path": as_unicode(report.path), "label": report.label, "kind": report.kind}
    for attr in ("pool", "pid", "taken_at", "reason", "backing"):
        value = getattr(data, attr, None)
        if value is not None:
            meta[attr] = value
    parents = getattr(data, "parents", None)
    if parents:                 # a child pool's own report: the pools it lies in
        meta["parents"] = list(parents)
    return meta


def sample_rate(reports: list[Report]) -> float | None:
    """The sampling rate of sampled interposer reports among reports, else None."""
    rates = [r.data.sample_rate for r in reports if getattr(r.data, "sample_rate", None)]
    return min(rates) if rates else None


def row_noun(kind: str) -> str:
    """What a summary line calls a row of a report of this kind: a pool report's rows
    are origin tags, the interposer's and the Python hooks' are keys (site, stack,
    line...)."""
    return "key" if kind in ("preload", "python") else "tag"


def totals_line(merged: Merged, reports: list[Report]) -> str:
    blocks = sum(map(int, map(itemgetter("blocks"), merged.rows)))
    nbytes = sum(map(int, map(itemgetter("bytes"), merged.rows)))
    what = row_noun(merged.kind)
    rate = sample_rate(reports)
    est = f"estimated (sampled at {rate:g}) " if rate is not None else ""
    return (f"{plural(len(reports), 'report')}: {est}{plural(blocks, 'block')}, {plural(nbytes, 'byte')} outstanding "
            f"in {plural(len(merged.rows), what)}")


def require_files(paths: list[str]) -> None:
    if not paths:
        raise AuditError("no report files given")


class ReportsCommand:
    """A command that reads reports (show, diff): its work, ``_run``, runs with the
    cyclic garbage collector paused (millions of rows, no cycles: see audit.schema)."""

    def run(self, args: argparse.Namespace) -> int:
        with schema.gc_paused():
            return self._run(args)

    def _run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError
