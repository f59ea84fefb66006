"""Reading report files and turning them into rows.

Every file is read and checked by :mod:`audit.schema` (regular files or ``-``,
size and nesting limits, strict JSON); ringpool snapshots become
:class:`allocator.Snapshot` records, files in the interposer's format
(``"format": "ringpool-preload"``) go to :mod:`audit.preload`. This module only
dispatches, flattens child pools and merges several reports into one table.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from allocator import Snapshot

from audit import schema
from audit.errors import AuditError
from audit.printable import as_unicode, printable

SNAPSHOT_FORMAT = "ringpool-snapshot"
PRELOAD_FORMAT = "ringpool-preload"
BY_CHOICES = ("site", "stack", "function", "file", "module", "line")
PYTHON_FORMAT = "ringpool-python"


def preload_module() -> Any:
    try:
        import audit.preload as preload
    except ImportError as exc:
        raise AuditError(f"the preload interposer support (audit.preload) is not available: {exc}") from exc
    return preload


@dataclass
class Report:
    """One loaded file: a snapshot (``kind == "snapshot"``) or an interposer report."""

    path: str
    kind: str
    data: Any
    label: str = ""


def load(path: str, limits: schema.Limits = schema.DEFAULT_LIMITS) -> Report:
    """Loads one report file (``-``: standard input) through :mod:`audit.schema`;
    AuditError names the file and what is wrong, in one line."""
    source = "<stdin>" if path == "-" else path
    try:
        doc = schema.read_json(path, limits=limits)
        if schema.report_format(doc) == PYTHON_FORMAT:
            from audit import pyreport
            schema.check_json_values(doc, source, "", limits)
            return Report(path, "python", pyreport.parse(doc, source))
        if schema.report_format(doc) != SNAPSHOT_FORMAT and _claims_preload(doc):
            preload = preload_module()
            schema.check_json_values(doc, source, "", limits)
            return Report(path, "preload", preload.parse(doc, source))
        return Report(path, "snapshot", schema.parse_snapshot(doc, source, limits=limits,
                                                              cls=Snapshot))
    except ValueError as exc:
        raise AuditError(_name_file(source, exc)) from exc


def _claims_preload(doc: Any) -> bool:
    try:
        preload = preload_module()
    except AuditError:
        return schema.report_format(doc) == PRELOAD_FORMAT  # load() then explains what is missing
    return bool(preload.is_preload_report(doc))


def _name_file(path: str, exc: Exception) -> str:
    """exc's message naming path once, printable (the readers name the file raw)."""
    shown = printable(path)
    text = str(exc).replace(path, shown) if path else str(exc)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if shown in text else f"{shown}: {text}"


def load_all(paths: list[str], limits: schema.Limits = schema.DEFAULT_LIMITS) -> list[Report]:
    if paths.count("-") > 1:
        raise AuditError("- (standard input) can be given only once")
    reports = [load(p, limits) for p in paths]
    _assign_labels(reports)
    return reports


def _assign_labels(reports: list[Report]) -> None:
    # Labels are Unicode (they name columns and go into JSON): a file name that is not
    # UTF-8 has U+FFFD for its bytes that are not.
    names = ["stdin" if r.path == "-" else as_unicode(os.path.basename(r.path)) for r in reports]
    counts = Counter(names)
    for report, name in zip(reports, names):
        stem = name[:-5] if name.endswith(".json") else name
        report.label = stem if counts[name] == 1 else as_unicode(report.path)


def walk_pools(snapshot: Snapshot, prefix: str = "") -> Iterator[tuple[str, Snapshot]]:
    """(pool path text, snapshot) for a snapshot and its children, depth first
    (:meth:`audit.schema.PoolReport.walk`)."""
    for path, pool in snapshot.walk(prefix):
        yield path, pool  # type: ignore[misc]  # the children of a Snapshot are Snapshots


def walk_pool_paths(snapshot: Snapshot) -> Iterator[tuple[schema.PoolPath, Snapshot]]:
    """(pool path, snapshot) for a snapshot and its children, depth first; the path is
    the tuple of names, a pool's identity (:meth:`audit.schema.PoolReport.walk_paths`)."""
    for path, pool in snapshot.walk_paths():
        yield path, pool  # type: ignore[misc]  # the children of a Snapshot are Snapshots


@dataclass
class Merged:
    """Rows keyed by (pool, tag) or by preload key, summed over reports."""

    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def snapshot_rows(reports: list[Report]) -> list[dict[str, Any]]:
    """Merged rows: pool, tag, blocks, bytes, peak_bytes, allocs and per-report bytes.

    One dict per (pool path, tag), in the order first seen; linear in the tags
    (the reader already checked every count). ``pool`` is the path as
    :func:`audit.schema.path_text` writes it, ``pool_path`` the tuple of names.
    ``per_report`` (bytes by report label) is there when there are several
    reports, or when pools of one report share a path (sibling pools of one
    name: their rows are summed, as rows of one pool of several reports are)."""
    families = [list(walk_pool_paths(r.data)) for r in reports]
    if len(reports) == 1 and len({path for path, _ in families[0]}) == len(families[0]):
        # Tags are unique within a pool (the reader checked): nothing to merge.
        return [{"pool": text, "pool_path": path, "tag": t.tag, "key": t.tag, "blocks": t.blocks,
                 "bytes": t.bytes, "peak_bytes": t.peak_bytes, "allocs": t.allocs,
                 "suppressed": False}
                for path, snap in families[0] for text in (schema.path_text(path),)
                for t in snap.tags]
    merged: dict[tuple[schema.PoolPath, str], dict[str, Any]] = {}
    for report, family in zip(reports, families):
        label = report.label
        for path, snap in family:
            text = schema.path_text(path)
            for stat in snap.tags:
                tag = stat.tag
                row = merged.get((path, tag))
                if row is None:
                    merged[(path, tag)] = {
                        "pool": text, "pool_path": path, "tag": tag, "key": tag, "blocks": stat.blocks,
                        "bytes": stat.bytes, "peak_bytes": stat.peak_bytes,
                        "allocs": stat.allocs, "suppressed": False,
                        "per_report": {label: stat.bytes}}
                    continue
                row["blocks"] += stat.blocks
                row["bytes"] += stat.bytes
                if stat.peak_bytes > row["peak_bytes"]:
                    row["peak_bytes"] = stat.peak_bytes
                row["allocs"] += stat.allocs
                per = row["per_report"]
                per[label] = per.get(label, 0) + stat.bytes
    return list(merged.values())


def preload_rows(reports: list[Report], by: str, suppressions: str | None,
                 wrappers: list[str] | None = None) -> list[dict[str, Any]]:
    """Interposer rows summed over reports; wrappers: extra patterns (--wrapper)
    on top of audit.preload's default allocation wrappers."""
    preload = preload_module()
    merged: dict[tuple[Any, bool], dict[str, Any]] = {}
    for report in reports:
        try:
            rows = preload.rows(report.data, by=by, suppressions=suppressions,
                                wrappers=preload.wrapper_list(wrappers))
        except ValueError as exc:
            where = suppressions if suppressions is not None and suppressions in str(exc) else report.path
            raise AuditError(_name_file(where, exc)) from exc
        except OSError as exc:
            raise AuditError(f"{printable(str(exc.filename or suppressions))}: cannot read: {exc.strerror}") from exc
        if len(reports) == 1:
            # One report's rows are one per (identity, suppressed) already: nothing to
            # merge, and no identity (a tuple of a tuple per frame) to hash again.
            label = report.label
            return [{"pool": "", "tag": key, "key": key, "ident": r["ident"], "frames": r["frames"],
                     "blocks": int(r["blocks"]), "bytes": int(r["bytes"]),
                     "peak_bytes": None, "allocs": int(r["allocs"]),
                     "suppressed": bool(r.get("suppressed")),
                     "per_report": {label: int(r["bytes"])}}
                    for r in rows for key in (str(r["key"]),)]
        for r in rows:
            key = str(r["key"])
            ident = r["ident"]          # the row's identity; its key text is a rendering
            suppressed = bool(r.get("suppressed"))
            row = merged.get((ident, suppressed))
            if row is None:
                row = {"pool": "", "tag": key, "key": key, "ident": ident, "frames": r["frames"],
                       "blocks": 0, "bytes": 0,
                       "peak_bytes": None, "allocs": 0, "suppressed": suppressed,
                       "per_report": {}}
                merged[(ident, suppressed)] = row
            row["blocks"] += int(r["blocks"])
            row["bytes"] += int(r["bytes"])
            row["allocs"] += int(r["allocs"])
            per = row["per_report"]
            per[report.label] = per.get(report.label, 0) + int(r["bytes"])
    return list(merged.values())


def python_rows(reports: list[Report], by: str | None,
                finalization: bool = False) -> list[dict[str, Any]]:
    """Rows of Python-attributed reports (audit.pyreport), summed over reports."""
    from audit import pyreport
    merged: dict[Any, dict[str, Any]] = {}
    for report in reports:
        try:
            rows = pyreport.rows(report.data, by or "line", finalization)
        except ValueError as exc:
            raise AuditError(str(exc)) from exc
        for r in rows:
            row = merged.get(r["ident"])     # the row's identity; its key text is a rendering
            if row is None:
                row = merged[r["ident"]] = {**r, "pool": "", "tag": r["key"], "suppressed": False,
                                          "per_report": {}}
            else:
                row["blocks"] += r["blocks"]
                row["bytes"] += r["bytes"]
                row["allocs"] = None if row["allocs"] is None else row["allocs"] + (r["allocs"] or 0)
                row["peak_bytes"] = None
            per = row["per_report"]
            per[report.label] = per.get(report.label, 0) + int(r["bytes"])
    return list(merged.values())


def pool_stack_rows(reports: list[Report], by: str,
                    wrappers: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows (pool, tag, frame) of pool reports with stacks (RP_POOL_STACKS), for --by."""
    from audit import poolstacks
    without = [r.path for r in reports if not poolstacks.has_stacks(r.data)]
    if len(without) == len(reports):
        raise AuditError(f"--by applies to interposer reports and to reports of pools that record "
                         f"stacks (RP_POOL_STACKS, $RINGPOOL_POOL_STACKS); {printable(without[0])} has no stacks "
                         "(rows are origin tags)")
    if by not in poolstacks.BY_CHOICES:
        raise AuditError(f"--by {by}: pool stacks group by one of {', '.join(poolstacks.BY_CHOICES)}")
    try:
        return poolstacks.rows(reports, by, wrappers)
    except ValueError as exc:
        raise AuditError(str(exc)) from exc


def rows_for(reports: list[Report], by: str | None, suppressions: str | None,
             wrappers: list[str] | None = None) -> Merged:
    kinds = {r.kind for r in reports}
    if len(kinds) > 1 and "python" in kinds:
        python_paths = [printable(r.path) for r in reports if r.kind == "python"]
        raise AuditError(f"cannot merge Python reports ({', '.join(python_paths)}) with other "
                         "kinds of report in one table; show them separately")
    if len(kinds) > 1:
        preload_paths = [printable(r.path) for r in reports if r.kind == "preload"]
        raise AuditError(f"cannot merge interposer reports ({', '.join(preload_paths)}) with "
                         "ringpool snapshots in one table; show them separately")
    kind = kinds.pop() if kinds else "snapshot"
    if kind == "python":
        from audit import pyreport
        if suppressions is not None or wrappers:
            flag = "--suppressions" if suppressions is not None else "--wrapper"
            raise AuditError(f"{flag} applies to interposer reports only")
        return Merged(kind, python_rows(reports, by))
    if kind == "preload":
        return Merged(kind, preload_rows(reports, by or "site", suppressions, wrappers))
    # Name the option that does not apply: --by does, to pools that record stacks.
    if suppressions is not None:
        raise AuditError(f"--suppressions applies to interposer reports only; "
                         f"{reports[0].path} is a ringpool snapshot (rows are origin tags)")
    if by is not None:
        return Merged(kind, pool_stack_rows(reports, by, wrappers))
    if wrappers:
        raise AuditError(f"--wrapper applies to interposer reports, and with --by to reports of pools "
                         f"that record stacks; {reports[0].path} is a ringpool snapshot shown by tag")
    return Merged(kind, snapshot_rows(reports))
