"""``diff``: what changed between two reports, per tag."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from audit import gate, output, reports, schema
from audit.commands._common import (ReportsCommand, add_input_options, input_limits, positive_int, row_noun,
                                    sample_rate, wrapper_pattern)
from audit.errors import AuditError
from audit.formatters import Column, Table
from audit.words import plural


class DiffCommand(ReportsCommand):
    """Compare two reports tag by tag (like tracemalloc's compare_to).

    For every tag (child pools by their path): outstanding blocks and bytes in
    NEW and their change since OLD, sorted by the absolute byte change, largest
    first. Tags that appear only in NEW are marked "new", tags listed in OLD but
    absent from NEW "gone". The leak gate looks at growth: --fail-on-leak fails
    when a tag that is not allowed gained blocks, --max-leak-bytes N when the
    byte growth of such tags exceeds N.
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("old", metavar="OLD", help="the earlier report")
        parser.add_argument("new", metavar="NEW", help="the later report (- reads standard input)")
        add_input_options(parser)
        parser.add_argument("--top", type=positive_int, metavar="N", help="show only the first N rows")
        parser.add_argument("--changed-only", action="store_true",
                            help="hide tags whose blocks and bytes did not change")
        parser.add_argument("--by", choices=reports.BY_CHOICES, default=None,
                            help="interposer reports: group by call site, function, file or module")
        parser.add_argument("--wrapper", action="append", metavar="PATTERN", type=wrapper_pattern,
                            help="interposer reports: also treat functions matching PATTERN as "
                                 "allocation wrappers; repeatable")
        parser.add_argument("--suppressions", metavar="FILE",
                            help="interposer reports: a suppressions file")
        gate.add_gate_options(parser)
        output.add_output_options(parser)

    def _run(self, args: argparse.Namespace) -> int:
        output.check_output(args)
        old, new = reports.load_all([args.old, args.new], input_limits(args))
        if old.kind != new.kind:
            raise AuditError(f"cannot compare {old.path} ({old.kind}) with {new.path} ({new.kind})")
        if old.kind == "snapshot":
            if args.by is not None or args.suppressions is not None or args.wrapper:
                flag = ("--by" if args.by is not None else
                        "--suppressions" if args.suppressions is not None else "--wrapper")
                applies = "interposer and Python reports" if flag == "--by" else "interposer reports"
                raise AuditError(f"diff {flag}: pool reports are compared tag by tag (even those "
                                 f"that record stacks); {flag} applies to {applies}")
            rows = _snapshot_diff(old, new)
        elif old.kind == "python":
            if args.suppressions is not None:
                raise AuditError("--suppressions applies to interposer reports only")
            rows = _python_diff(old, new, args.by)
        else:
            rows = _preload_diff(old, new, args.by or "site", args.suppressions, args.wrapper)
        rows.sort(key=lambda r: (-abs(int(r["bytes_diff"])), str(r["pool"]), str(r["key"])))
        gate_rows = [{"key": r["key"], "blocks": r["blocks_diff"], "bytes": r["bytes_diff"],
                      "suppressed": r.get("suppressed", False)} for r in rows]
        verdict = gate.evaluate(args, gate_rows)
        shown = [r for r in rows if not args.changed_only or r["blocks_diff"] or r["bytes_diff"]]
        if args.top is not None:
            shown = shown[: args.top]
        several_pools = len({tuple(r.get("pool_path", ())) for r in rows}) > 1
        rate = sample_rate([old, new])
        est = "~" if rate is not None else ""          # sampled: the counts are estimates
        columns = ([Column("pool", "pool", path=True)] if several_pools else []) + [
            Column("key", "tag" if old.kind == "snapshot" else
                   (args.by or ("line" if old.kind == "python" else "site"))),
            Column("blocks", est + "blocks"), Column("blocks_diff", est + "blocks +/-", "+d"),
            Column("bytes", est + "bytes"), Column("bytes_diff", est + "bytes +/-", "+d"),
            Column("status", "status"),
        ]
        if old.kind == "preload":      # as show: suppressed rows are listed, never judged nor drawn
            columns.append(Column("suppressed", "suppressed"))

        def frames(row: dict[str, Any]) -> list[str]:
            # a pool is one frame per name of its path, whatever the name holds ("a/b")
            return [*row.get("pool_path", ()), str(row["key"])]

        title = f"{new.label} compared to {old.label}"
        if rate is not None:
            title += f" (estimates: each byte sampled with probability {rate:g})"
        table = Table(columns=columns, rows=shown, title=title,
                      frames=frames, value_key="bytes_diff",
                      meta={"old": args.old, "new": args.new, "kind": old.kind},
                      json_extra=(["pool_path"] if several_pools else [])
                      + (["frames"] if old.kind in ("preload", "python") else []))
        output.emit(args, table)
        grown = sum(int(r["bytes_diff"]) for r in rows if int(r["bytes_diff"]) > 0)
        shrunk = -sum(int(r["bytes_diff"]) for r in rows if int(r["bytes_diff"]) < 0)
        n_new = sum(1 for r in rows if r["status"] == "new")
        n_gone = sum(1 for r in rows if r["status"] == "gone")
        line = (("estimated: " if rate is not None else "")
                + f"{plural(len(rows), row_noun(old.kind))}: +{grown} / -{shrunk} bytes, net {grown - shrunk:+d}; "
                f"{n_new} new, {n_gone} gone")
        output.summary(verdict.summarize(line))
        return verdict.exit_code


def _status(in_old: bool, in_new: bool) -> str:
    if in_new and not in_old:
        return "new"
    if in_old and not in_new:
        return "gone"
    return ""


def _pools(report: reports.Report) -> dict[schema.PoolPath, Any]:
    """Each pool of the report by its path below the root (the root's is ``()``); sibling
    pools of one name share a path: one snapshot sums their tags."""
    pools: dict[schema.PoolPath, Any] = {}
    root = len(report.data.parents) + 1       # the report's root pool: its parents, its name
    for path, snap in reports.walk_pool_paths(report.data):
        rel = path[root:]
        seen = pools.get(rel)
        pools[rel] = snap if seen is None else _summed(seen, snap)
    return pools


def _summed(a: Any, b: Any) -> Any:
    """A pool whose tags are the tags of a and b summed by tag (no children)."""
    return dataclasses.replace(a, tags=_sum_tags(a.tags, b.tags), children=[], blocks=None)


def _sum_tags(a: list[Any], b: list[Any]) -> list[Any]:
    merged = {t.tag: t for t in a}
    for t in b:
        m = merged.get(t.tag)
        merged[t.tag] = t if m is None else m._replace(
            blocks=m.blocks + t.blocks, bytes=m.bytes + t.bytes,
            peak_bytes=max(m.peak_bytes, t.peak_bytes), allocs=m.allocs + t.allocs, extra=None)
    return list(merged.values())


def _snapshot_diff(old: reports.Report, new: reports.Report) -> list[dict[str, Any]]:
    # Root pools are compared whatever their names; children are matched by their path
    # below the root: the tuple of names, so that a child "a/b" and a child "b" of a
    # child "a" stay two pools.
    old_pools, new_pools = _pools(old), _pools(new)
    root: schema.PoolPath = (*new.data.parents, new.data.pool)
    pairs: list[tuple[schema.PoolPath, Any, Any]] = [
        (root + rel, old_pools.get(rel), snap) for rel, snap in new_pools.items()]
    pairs += [(root + rel, snap, None) for rel, snap in old_pools.items() if rel not in new_pools]
    rows: list[dict[str, Any]] = []
    for path, old_snap, new_snap in pairs:
        text = schema.path_text(path)
        old_tags = {str(s.tag) for s in old_snap.statistics(children=False)} if old_snap is not None else set()
        new_tags = {str(s.tag) for s in new_snap.statistics(children=False)} if new_snap is not None else set()
        if old_snap is not None and new_snap is not None:
            diffs = new_snap.compare_to(old_snap, children=False)
            for d in diffs:
                tag = str(d.tag)
                rows.append({"pool": text, "pool_path": path, "key": tag, "blocks": int(d.blocks),
                             "blocks_diff": int(d.blocks_diff), "bytes": int(d.bytes),
                             "bytes_diff": int(d.bytes_diff),
                             "status": _status(tag in old_tags, tag in new_tags)})
        else:
            only = new_snap if new_snap is not None else old_snap
            sign = 1 if new_snap is not None else -1
            for s in only.statistics(children=False):
                rows.append({"pool": text, "pool_path": path, "key": str(s.tag),
                             "blocks": int(s.blocks) if sign > 0 else 0,
                             "blocks_diff": sign * int(s.blocks),
                             "bytes": int(s.bytes) if sign > 0 else 0,
                             "bytes_diff": sign * int(s.bytes),
                             "status": "new" if sign > 0 else "gone"})
    if len(pairs) == 1:
        for r in rows:
            r["pool"] = ""
            r["pool_path"] = ()
    return rows


def _preload_diff(old: reports.Report, new: reports.Report, by: str,
                  suppressions: str | None, wrappers: list[str] | None = None) -> list[dict[str, Any]]:
    # paired by identity (frames), not by the key text two rows may share
    old_rows = {(r["ident"], r["suppressed"]): r for r in reports.preload_rows([old], by, suppressions, wrappers)}
    new_rows = {(r["ident"], r["suppressed"]): r for r in reports.preload_rows([new], by, suppressions, wrappers)}
    return _keyed_diff(old_rows, new_rows, suppressed=True)


def _python_diff(old: reports.Report, new: reports.Report, by: str | None) -> list[dict[str, Any]]:
    old_rows = {r["ident"]: r for r in reports.python_rows([old], by)}
    new_rows = {r["ident"]: r for r in reports.python_rows([new], by)}
    return _keyed_diff(old_rows, new_rows, suppressed=False)


def _keyed_diff(old_rows: dict[Any, dict[str, Any]], new_rows: dict[Any, dict[str, Any]],
                suppressed: bool) -> list[dict[str, Any]]:
    """A row per key of NEW, then per key only OLD has: the counts in NEW and their change
    since OLD. The dicts are keyed by row identity (``ident``, two rows may share a key
    text); ``suppressed``: by (ident, suppressed) pairs (interposer rows), and each row
    says whether it is suppressed."""
    rows = []
    for key in list(new_rows) + [k for k in old_rows if k not in new_rows]:
        o, n = old_rows.get(key), new_rows.get(key)
        ob, obytes = (int(o["blocks"]), int(o["bytes"])) if o else (0, 0)
        nb, nbytes = (int(n["blocks"]), int(n["bytes"])) if n else (0, 0)
        either = n if n is not None else o
        assert either is not None
        row = {"pool": "", "key": str(either["key"]), "frames": either["frames"], "blocks": nb,
               "blocks_diff": nb - ob, "bytes": nbytes, "bytes_diff": nbytes - obytes,
               "status": _status(o is not None, n is not None)}
        if suppressed:
            row["suppressed"] = bool(either.get("suppressed"))
        rows.append(row)
    return rows
