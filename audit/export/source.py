"""From loaded reports to a :class:`~audit.export.model.Profile`.

This is the one place the exporters read reports. Pool snapshots become
stacks ``tag <- child pool <- pool`` (tags are frames under their pool's name);
interposer reports become native stacks: the whole stack when the report has a
``stacks`` table, the call site alone otherwise. Sites inside libringpool
(pool blocks, shown by the pools' own reports) and suppressed stacks (the
default list plus ``--suppressions``; a stack is suppressed when any of its
frames matches, LeakSanitizer's rule) are left out, as the leak gate leaves
them out.

The interposer's stack table (docs/preload.md): each distinct return address
once, each distinct stack once (innermost frame first), and per site the
index of its stack::

    "frames": [[MODULE_INDEX, "0xOFFSET"], ...],      (MODULE_INDEX -1: no module)
    "stacks": [[FRAME_INDEX, ...], ...],
    "sites":  [{"module": ..., "offset": ..., "stack": STACK_INDEX, "blocks": ...}, ...]

A sampled report states ``"sample_rate"`` (per byte) and gives, beside the raw
counts of each site or stack, the estimates ``est_blocks``, ``est_bytes``,
``est_allocs`` and optionally ``est_alloc_bytes``; the profile carries the
estimates. ``alloc_bytes`` (bytes ever allocated), when a report has it, fills
pprof's ``alloc_space``.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

from audit.export.model import Frame, Profile

EXACT_KEYS = ("blocks", "bytes", "allocs", "alloc_bytes")
ESTIMATE_KEYS = ("est_blocks", "est_bytes", "est_allocs", "est_alloc_bytes")


@dataclass
class Source:
    """What a table was built from: the loaded reports and the options that shape a profile."""

    reports: Sequence[Any]            # audit.reports.Report
    by: str | None = None             # --by (labels of native frames in text formats)
    suppressions: str | None = None   # --suppressions FILE


def profile(source: Source) -> Profile:
    """The profile of every report of source; ValueError names the file and the field."""
    kinds = {r.kind for r in source.reports}
    if len(kinds) > 1:
        raise ValueError("cannot export interposer reports and ringpool snapshots as one profile")
    labels = [getattr(r, "label", "") or str(r.path).rsplit("/", 1)[-1] for r in source.reports]
    prof = Profile(name=", ".join(labels) or "ringpool", by=source.by or "site")
    times: list[int] = []
    alloc_known = bool(source.reports)
    for report in source.reports:
        if report.kind == "preload":
            alloc_known = _add_preload(prof, report, source.suppressions) and alloc_known
        else:
            alloc_known = False
            _add_snapshot(prof, report.data)
        stamp = _time_nanos(getattr(report.data, "taken_at", None))
        if stamp is not None:
            times.append(stamp)
    prof.known = (True, True, True, alloc_known and bool(prof.samples))
    prof.time_nanos = min(times) if times else None
    if prof.sample_rate is None:
        prof.comments.append("ringpool-audit: exact counts of outstanding blocks")
    else:
        prof.comments.append(f"ringpool-audit: sampled at {prof.sample_rate:g} per byte; "
                             "values are unbiased estimates")
    return prof.merged()


def _time_nanos(taken_at: Any) -> int | None:
    if not isinstance(taken_at, str):
        return None
    try:
        return calendar.timegm(time.strptime(taken_at, "%Y-%m-%dT%H:%M:%SZ")) * 1_000_000_000
    except ValueError:
        return None


# ----------------------------------------------------------------- pools
def _add_snapshot(prof: Profile, snap: Any, outer: tuple[Frame, ...] = ()) -> None:
    here = (Frame(str(snap.pool), kind="pool"),) + outer
    for stat in snap.tags:
        prof.add((Frame(str(stat.tag), kind="tag"),) + here,
                 [stat.blocks, stat.bytes, stat.allocs, 0])
    for child in snap.children:
        _add_snapshot(prof, child, here)


# ------------------------------------------------------------ interposer
def _raw(report: Any) -> dict[str, Any]:
    """The report's JSON object, for the fields its parsed form does not carry yet (the
    stack table, sampling estimates). Read again through audit.schema; a report read from
    standard input cannot be read twice and gives its parsed fields only."""
    from audit import schema

    if report.path == "-":
        return {}
    doc = schema.read_json(report.path)
    return doc if isinstance(doc, dict) else {}


def _number(where: str, obj: dict[str, Any], name: str) -> float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: field {name!r} must be a non-negative number, found {value!r}")
    return float(value)


def _values(where: str, entry: dict[str, Any], sampled: bool) -> tuple[list[float], bool]:
    """(values in VALUE_TYPES order, whether alloc bytes are known)."""
    keys = ESTIMATE_KEYS if sampled else EXACT_KEYS
    values = [_number(where, entry, k) for k in keys[:3]]
    has_alloc = keys[3] in entry
    values.append(_number(where, entry, keys[3]) if has_alloc else 0.0)
    return values, has_alloc


def _hex(where: str, text: Any) -> int:
    if isinstance(text, str) and text.startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            pass
    raise ValueError(f"{where}: offset must be a hex string like \"0x1a2b\", found {text!r}")


RawFrame = tuple[str, int, "str | None"]   # module path ("" when none), offset, dynamic symbol


def _site_stacks(path: str, doc: dict[str, Any], data: Any) -> list[list[RawFrame]]:
    """Per site of data, its frames innermost first: the whole stack when the report has a
    stack table (``frames``, ``stacks`` and ``sites[i].stack``), else the site alone."""
    one = [[(s.module, s.offset, s.symbol)] for s in data.sites]
    parsed: list[Any] = [getattr(s, "stack", None) for s in data.sites]
    if parsed and all(p for p in parsed):
        return [[(str(f.module), int(f.offset), s.symbol if n == 0 else None) for n, f in enumerate(p)]
                for s, p in zip(data.sites, parsed)]
    if "stacks" not in doc:
        return one
    table, stacks, sites = doc.get("frames"), doc.get("stacks"), doc.get("sites")
    modules = [m.path for m in data.modules]
    if not isinstance(table, list):
        raise ValueError(f"{path}: field 'frames' must be a list when 'stacks' is present")
    if not isinstance(stacks, list):
        raise ValueError(f"{path}: field 'stacks' must be a list")
    frames: list[RawFrame] = []
    for i, f in enumerate(table):
        where = f"{path}: frames[{i}]"
        if not (isinstance(f, list) and len(f) == 2 and isinstance(f[0], int) and not isinstance(f[0], bool)):
            raise ValueError(f"{where}: must be [MODULE_INDEX, \"0xOFFSET\"]")
        if not -1 <= f[0] < len(modules):
            raise ValueError(f"{where}: module index {f[0]} is not in 'modules' (0..{len(modules) - 1}, or -1)")
        frames.append((modules[f[0]] if f[0] >= 0 else "", _hex(where, f[1]), None))
    resolved: list[list[RawFrame]] = []
    for i, st in enumerate(stacks):
        where = f"{path}: stacks[{i}]"
        if not isinstance(st, list) or not st:
            raise ValueError(f"{where}: must be a non-empty list of frame indices")
        for j in st:
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(frames):
                raise ValueError(f"{where}: frame index {j!r} is not in 'frames' (0..{len(frames) - 1})")
        resolved.append([frames[j] for j in st])
    out = []
    for i, site in enumerate(data.sites):
        raw = sites[i] if isinstance(sites, list) and i < len(sites) and isinstance(sites[i], dict) else {}
        k = raw.get("stack")
        if k is None:
            out.append(one[i])
            continue
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(resolved):
            raise ValueError(f"{path}: sites[{i}]: field 'stack' {k!r} is not in 'stacks' (0..{len(resolved) - 1})")
        # Frame 0 is the site itself; keep the site's dynamic symbol for it.
        out.append([(m, o, site.symbol if n == 0 else None) for n, (m, o, _) in enumerate(resolved[k])])
    return out


def _add_preload(prof: Profile, report: Any, suppressions: str | None) -> bool:
    """Adds report's stacks to prof; True when every entry gave its allocated bytes."""
    import audit.preload as preload

    data = report.data
    doc = _raw(report)
    rate = doc.get("sample_rate")
    sampled = rate is not None
    if sampled:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f"{report.path}: field 'sample_rate' must be a number in (0, 1], found {rate!r}")
        if prof.sample_rate not in (None, float(rate)):
            raise ValueError(f"{report.path}: sampled at {rate:g} per byte, another report at "
                             f"{prof.sample_rate:g}; export them separately")
        prof.sample_rate = float(rate)
    elif prof.sample_rate is not None:
        raise ValueError(f"{report.path}: an exact report cannot join sampled ones in one profile")

    raw_sites = doc.get("sites")
    entries: list[tuple[list[RawFrame], dict[str, Any], str]] = []
    for i, (site, frames) in enumerate(zip(data.sites, _site_stacks(report.path, doc, data))):
        raw = raw_sites[i] if isinstance(raw_sites, list) and i < len(raw_sites) else {}
        entry = dict(raw) if isinstance(raw, dict) else {}
        entry.update(blocks=site.blocks, bytes=site.bytes, allocs=site.allocs)
        entries.append((frames, entry, f"{report.path}: sites[{i}]"))

    # Symbolize every distinct frame, one batch per module (audit.preload does the batching).
    distinct = {(m, o): s for fr, _, _ in entries for (m, o, s) in fr}
    fake = tuple(preload.Site(m, o, 0, 0, 0, s) for (m, o), s in distinct.items())
    symbols = preload.symbolize(dataclasses.replace(data, sites=fake)) if fake else {}
    modules = {m.path: m for m in data.modules}
    rules = preload.default_suppressions()
    if suppressions is not None:
        rules += preload.read_suppressions(suppressions)

    alloc_known = True
    for frames, entry, where in entries:
        if preload.is_pool_module(frames[0][0]):
            continue
        stack = []
        for module, offset, _ in frames:
            sym = symbols[(module, offset)]
            mod = modules.get(module)
            stack.append(Frame(sym.function, sym.file, sym.line, module or None, offset,
                               mod.build_id if mod else None, mod.base if mod else (0 if not module else None)))
        if any(r.matches(f.function, f.file, f.module) for f in stack for r in rules):
            continue
        values, has_alloc = _values(where, entry, sampled)
        alloc_known = alloc_known and has_alloc
        prof.add(stack, values)
    return alloc_known
