"""The allocation stacks of pools that record them (``RP_POOL_STACKS``).

A report of such a pool (docs/report-format.md, "Stacks of pool blocks") opens
each tag into the stacks that reached it::

    "tags": [{"tag": "node", ..., "stacks": [{"stack": 0, "blocks": 2, "bytes": 48, "allocs": 5}]}],
    "stack_depth": 64,
    "modules": [{"path": "/usr/bin/prog", "base": "0x5555...", "build_id": "..."}],
    "frames": [[MODULE_INDEX, "0xOFFSET"], ...],     (MODULE_INDEX -1: no module)
    "stacks": [[FRAME_INDEX, ...], ...]              (innermost frame first; [] = none taken)

the tables of the interposer's report, per pool (child pools carry their own).
:mod:`audit.schema` keeps these fields in ``extra``; this module checks them,
symbolizes the frames with the interposer's symbolizer (:func:`audit.preload.symbolize`,
per module, by build id) and groups them for ``show --by`` and the exporters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from audit import preload
from audit.schema import PoolPath, PoolReport, path_shown, path_text

#: groupings of pool stacks (``show --by``)
BY_CHOICES = ("stack", "site", "function", "file", "module")

Frame = tuple[str, int]   # (module path, or "?" when none; return address minus load bias)


@dataclass(frozen=True)
class TagStack:
    """One tag of one pool reached by one stack."""

    pool: PoolPath               # the pool's path: ("parent", "child")
    tag: str
    stack: tuple[Frame, ...]     # innermost first; () when no stack could be taken
    blocks: int
    bytes: int
    allocs: int


@dataclass(frozen=True)
class PoolStacks:
    """A report's stacks: its pools' entries and the modules they lie in."""

    entries: tuple[TagStack, ...]
    modules: tuple[preload.Module, ...]
    depth: int


def has_stacks(report: PoolReport) -> bool:
    """True when the report, or one of its child pools, recorded stacks."""
    return any("stack_depth" in pool.extra for _, pool in report.walk())


def _int(where: str, obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: field {name!r} must be a non-negative integer, found {value!r}")
    return value


def _list(where: str, obj: Mapping[str, Any], name: str) -> list[Any]:
    value = obj.get(name)
    if not isinstance(value, list):
        raise ValueError(f"{where}: field {name!r} must be a list, found {type(value).__name__}")
    return value


def _tables(where: str, extra: Mapping[str, Any]) -> tuple[list[preload.Module], list[tuple[Frame, ...]]]:
    modules = []
    for i, m in enumerate(_list(where, extra, "modules")):
        at = f"{where}modules[{i}]"
        if not isinstance(m, dict):
            raise ValueError(f"{at}: must be an object")
        path, base, build_id = m.get("path"), m.get("base"), m.get("build_id")
        if not isinstance(path, str) or not path:
            raise ValueError(f"{at}: field 'path' must be a non-empty string")
        if not isinstance(base, str) or not re.fullmatch(r"0x[0-9a-fA-F]{1,16}", base):
            raise ValueError(f"{at}: field 'base' must be a hex string like \"0x1000\", found {base!r}")
        if build_id is not None and (not isinstance(build_id, str)
                                     or not re.fullmatch(r"[0-9a-fA-F]{2,128}", build_id)):
            raise ValueError(f"{at}: field 'build_id' must be a hex string, found {build_id!r}")
        modules.append(preload.Module(path, int(base, 16), build_id))
    modules = preload.told_apart(modules)
    frames: list[Frame] = []
    for i, f in enumerate(_list(where, extra, "frames")):
        at = f"{where}frames[{i}]"
        if (not isinstance(f, list) or len(f) != 2 or not isinstance(f[0], int)
                or isinstance(f[0], bool) or not isinstance(f[1], str)
                or not re.fullmatch(r"0x[0-9a-fA-F]{1,16}", f[1])):
            raise ValueError(f"{at}: must be [MODULE_INDEX, \"0xOFFSET\"]")
        if not -1 <= f[0] < len(modules):
            raise ValueError(f"{at}: module index {f[0]} is not in modules (0..{len(modules) - 1}, or -1)")
        frames.append((modules[f[0]].path if f[0] >= 0 else "?", int(f[1], 16)))
    stacks = []
    for i, st in enumerate(_list(where, extra, "stacks")):
        at = f"{where}stacks[{i}]"
        if not isinstance(st, list):
            raise ValueError(f"{at}: must be a list of frame indexes")
        for k in st:
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(frames):
                raise ValueError(f"{at}: frame index {k!r} is not in frames (0..{len(frames) - 1})")
        stacks.append(tuple(frames[k] for k in st))
    return modules, stacks


def parse(report: PoolReport, source: str | None = None) -> PoolStacks:
    """The stacks of report and its child pools; ValueError names the file and the field."""
    name = source or report.source or "<report>"
    entries: list[TagStack] = []
    modules: dict[str, preload.Module] = {}
    depth = 0
    for path, pool in report.walk_paths():
        extra = pool.extra
        if "stack_depth" not in extra:
            continue
        where = f"{name}: pool {path_shown(path)}: " if pool is not report else f"{name}: "
        depth = max(depth, _int(where, extra, "stack_depth"))
        mods, stacks = _tables(where, extra)
        for m in mods:
            modules.setdefault(m.path, m)
        for t in pool.tags:
            rows = (t.extra or {}).get("stacks")
            if rows is None:
                continue
            at = f"{where}tag {t.tag!r}: stacks"
            if not isinstance(rows, list):
                raise ValueError(f"{at}: must be a list")
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise ValueError(f"{at}[{i}]: must be an object")
                index = _int(f"{at}[{i}]", row, "stack")
                if index >= len(stacks):
                    raise ValueError(f"{at}[{i}]: field 'stack' is {index}, but the pool has "
                                     f"{len(stacks)} stacks")
                entries.append(TagStack(path, t.tag, stacks[index], _int(f"{at}[{i}]", row, "blocks"),
                                        _int(f"{at}[{i}]", row, "bytes"),
                                        _int(f"{at}[{i}]", row, "allocs")))
    return PoolStacks(tuple(entries), tuple(modules.values()), depth)


def symbolize(stacks: PoolStacks) -> dict[Frame, preload.Symbol]:
    """Function and file:line of every frame (the interposer's symbolizer: one pass
    per module, separate debug files found by build id)."""
    distinct = {e.stack for e in stacks.entries if e.stack}
    sites = tuple(preload.Site(s[0][0], s[0][1], 0, 0, 0, None, s) for s in distinct)
    as_report = preload.PreloadReport("", 0, "", "", "exit", {}, stacks.modules, sites, stacks.depth)
    return preload.symbolize(as_report)


NO_STACK = "(no stack)"


def family_tags(report: PoolReport) -> dict[tuple[PoolPath, str], list[int]]:
    """(pool path, tag) -> [blocks, bytes, allocs] over the report's pools, in walk
    order; sibling pools of one name share a path and are summed."""
    out: dict[tuple[PoolPath, str], list[int]] = {}
    for path, pool in report.walk_paths():
        for t in pool.tags:
            c = out.get((path, t.tag))
            if c is None:
                out[(path, t.tag)] = [t.blocks, t.bytes, t.allocs]
            else:
                c[0] += t.blocks
                c[1] += t.bytes
                c[2] += t.allocs
    return out


def keys(stacks: PoolStacks, by: str,
         wrappers: Sequence[str] | None = None) -> Iterator[tuple[TagStack, str, tuple[Any, ...]]]:
    """Each entry with its key for ``by`` and the key's identity (the frames, as
    :func:`audit.preload.frame_id` tells them apart: two keys may read alike): the
    frame credited with the allocation is the first that is not an allocation wrapper
    (as for interposer reports)."""
    if by not in BY_CHOICES:
        raise ValueError(f"--by {by}: pool stacks group by one of {', '.join(BY_CHOICES)}")
    wrapper = preload.wrapper_verdicts(preload.wrapper_list(wrappers))
    symbols = symbolize(stacks)
    labels = preload.RowLabels(by, symbols)
    for e in stacks.entries:
        if not e.stack:
            yield e, NO_STACK, ()
            continue
        shown = labels.numbers(e.stack, preload.attributed(e.stack, symbols, wrapper))
        yield e, labels.key(shown), labels.ident(shown)


def rows(reports: Sequence[Any], by: str, wrappers: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows (pool, tag, key) of ``show --by`` for pool reports (audit.reports.Report),
    summed over reports. Tags of pools without stacks keep one row keyed
    ``(no stack)``, so every outstanding block is counted once."""
    # rows known by their frames (ident), not their key text: two keys may read alike
    merged: dict[tuple[PoolPath, str, tuple[Any, ...]], dict[str, Any]] = {}

    def add(pool: PoolPath, tag: str, key: str, ident: tuple[Any, ...], blocks: int, nbytes: int,
            allocs: int, label: str) -> None:
        row = merged.get((pool, tag, ident))
        if row is None:
            row = merged[(pool, tag, ident)] = {
                "pool": path_text(pool), "pool_path": pool, "tag": tag, "key": key,
                "frames": [preload.frame_fields(f) for f in ident], "blocks": 0,
                "bytes": 0, "peak_bytes": None,
                "allocs": 0, "suppressed": False, "per_report": {}}
        row["blocks"] += blocks
        row["bytes"] += nbytes
        row["allocs"] += allocs
        row["per_report"][label] = row["per_report"].get(label, 0) + nbytes

    for report in reports:
        snap = report.data
        stacks = parse(snap, report.path)
        covered: dict[tuple[PoolPath, str], list[int]] = {}
        for e, key, ident in keys(stacks, by, wrappers):
            add(e.pool, e.tag, key, ident, e.blocks, e.bytes, e.allocs, report.label)
            c = covered.setdefault((e.pool, e.tag), [0, 0, 0])
            c[0] += e.blocks
            c[1] += e.bytes
            c[2] += e.allocs
        # each (pool path, tag) once: sibling pools of one name share a path, and their
        # stacks (covered) are summed as their tags are
        for (path, tag), (tb, tn, ta) in family_tags(snap).items():
            b, n, a = covered.get((path, tag), (0, 0, 0))
            if tb > b or tn > n or ta > a or (path, tag) not in covered:
                add(path, tag, NO_STACK, (), max(tb - b, 0), max(tn - n, 0), max(ta - a, 0), report.label)
    return list(merged.values())
