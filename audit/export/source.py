"""From loaded reports to a :class:`~audit.export.model.Profile`.

This is the one place the exporters read reports. Pool snapshots become
stacks ``tag <- child pool <- pool`` (tags are frames under their pool's name);
reports of the Python hooks give their stacks of Python frames;
interposer reports become native stacks: the whole stack when the report has a
``stacks`` table, the call site alone otherwise. Sites inside libringpool
(pool blocks, shown by the pools' own reports) and suppressed stacks (the
default list plus ``--suppressions``; a stack is suppressed when any of its
frames up to the first one that is not an allocation wrapper matches, as for
the table) are left out, as the leak gate leaves them out.

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
    wrappers: Sequence[str] | None = None  # --wrapper PATTERN (on top of the default list)
    finalization: bool = False        # Python reports: what finalization left, not what preceded it


KINDS = ("snapshot", "preload", "python")


def readable(source: Source) -> bool:
    """True when every report of source is of a kind this module turns into stacks
    (other kinds export the rows of their table)."""
    return bool(source.reports) and all(r.kind in KINDS for r in source.reports)


def profile(source: Source) -> Profile:
    """The profile of every report of source; ValueError names the file and the field."""
    kinds = {r.kind for r in source.reports}
    if len(kinds) > 1:
        raise ValueError("cannot export reports of different kinds (" + ", ".join(sorted(kinds))
                         + ") as one profile; export them separately")
    labels = [_label(r) for r in source.reports]
    prof = Profile(name=", ".join(labels) or "ringpool", by=source.by or "site")
    times: list[int] = []
    alloc_known = bool(source.reports)
    for report in source.reports:
        if report.kind == "preload":
            alloc_known = _add_preload(prof, report, source) and alloc_known
        elif report.kind == "python":
            alloc_known = False
            _add_python(prof, report, source.finalization)
        else:
            alloc_known = False
            _add_snapshot(prof, report.data, report.path)
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


def _label(report: Any) -> str:
    """An interposer report is named after its program and pid, any other after its file."""
    exe = getattr(report.data, "exe", None) if report.kind == "preload" else None
    if isinstance(exe, str) and exe:
        return f"{exe.rstrip('/').rsplit('/', 1)[-1]} (pid {report.data.pid})"
    return getattr(report, "label", "") or str(report.path).rsplit("/", 1)[-1]


def _time_nanos(taken_at: Any) -> int | None:
    if not isinstance(taken_at, str):
        return None
    try:
        return calendar.timegm(time.strptime(taken_at, "%Y-%m-%dT%H:%M:%SZ")) * 1_000_000_000
    except ValueError:
        return None


# ----------------------------------------------------------------- pools
def _add_snapshot(prof: Profile, snap: Any, path: str = "") -> None:
    """Each tag of each pool, child pools included, as the stack tag <- pool <- parents;
    a pool that recorded stacks (RP_POOL_STACKS) opens each tag into the native stacks
    that reached it: frames <- tag <- pool <- parents."""
    from audit import poolstacks

    opened = _pool_stacks(snap, path)
    # Each (pool path, tag) once, in walk order, the path from the outermost pool (a
    # child pool's own report names its parents): sibling pools of one name share a
    # path, their tags summed as their stacks are.
    for key, left in poolstacks.family_tags(snap).items():
        pool_path, name = key
        tag = (Frame(str(name), kind="tag"),) + tuple(Frame(str(n), kind="pool") for n in reversed(pool_path))
        for frames, values in opened.get(key, ()):
            prof.add(tuple(frames) + tag, [*values, 0])
            left = [max(a - b, 0) for a, b in zip(left, values)]
        if key not in opened or any(left):
            prof.add(tag, [*left, 0])


def _pool_stacks(snap: Any, path: str) -> dict[tuple[tuple[str, ...], str], list[tuple[list[Frame], list[int]]]]:
    """(pool path, tag) -> [(native frames innermost first, [blocks, bytes, allocs])]."""
    from audit import poolstacks

    if not poolstacks.has_stacks(snap):
        return {}
    stacks = poolstacks.parse(snap, path or None)
    symbols = poolstacks.symbolize(stacks)
    modules = {m.path: m for m in stacks.modules}
    out: dict[tuple[tuple[str, ...], str], list[tuple[list[Frame], list[int]]]] = {}
    for e in stacks.entries:
        frames = []
        for module, offset in e.stack:
            sym = symbols[(module, offset)]
            mod = modules.get(module)
            frames.append(Frame(sym.function, sym.file, sym.line, None if module == "?" else module,
                                offset, mod.build_id if mod else None, mod.base if mod else None))
        if not frames:
            frames = [Frame("(no stack)", kind="tag")]
        out.setdefault((e.pool, e.tag), []).append((frames, [e.blocks, e.bytes, e.allocs]))
    return out


# ---------------------------------------------------------------- Python
def _join_rate(prof: Profile, path: str, rate: Any) -> None:
    """Sets the profile's sampling rate from a report's (None: exact); reports sampled at
    different rates, or exact and sampled ones, do not make one profile."""
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f"{path}: field 'sample_rate' must be a number in (0, 1], found {rate!r}")
        if prof.sample_rate not in (None, float(rate)):
            raise ValueError(f"{path}: sampled at {rate:g} per byte, another report at "
                             f"{prof.sample_rate:g}; export them separately")
        if prof.sample_rate is None and prof.samples:
            raise ValueError(f"{path}: a sampled report cannot join exact ones in one profile")
        prof.sample_rate = float(rate)
    elif prof.sample_rate is not None:
        raise ValueError(f"{path}: an exact report cannot join sampled ones in one profile")


def _python_frame(f: Any) -> Frame:
    """A frame of a Python report's site: a Python frame, or a native one (run --native)."""
    if getattr(f, "module", None) is not None:
        return Frame(str(f.function), f.file or None, f.line or None,
                     None if f.module == "?" else f.module, f.offset, f.build_id, f.module_base)
    return Frame(str(f.function), str(f.file), int(f.line), kind="python")


def _add_python(prof: Profile, report: Any, finalization: bool) -> None:
    """A report of the Python allocator hooks (audit.pyreport): each site is a stack of
    Python frames, innermost first (with --native, a hybrid stack: native frames with
    the Python ones in place of the evaluation loop's); a site without a frame is one
    frame saying so.
    A sampled report gives its estimates."""
    data = report.data
    _join_rate(prof, str(report.path), getattr(data, "sample_rate", None))
    section = data.after if finalization else data.before
    if section is None:
        return
    for site in section.sites:
        stack = [_python_frame(f) for f in site.frames]
        if not stack:
            stack = [Frame("(no Python frame)", kind="python")]
        est = getattr(site, "estimates", None)
        if est is not None:
            prof.add(stack, [est.blocks, est.bytes, est.allocs, 0])
        else:
            prof.add(stack, [site.blocks, site.bytes, site.allocs or 0, 0])


# ------------------------------------------------------------ interposer
def _number(where: str, obj: dict[str, Any], name: str) -> int | float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: field {name!r} must be a non-negative number, found {value!r}")
    return value  # an int stays exact


def _values(where: str, entry: dict[str, Any], sampled: bool) -> tuple[list[int | float], bool]:
    """(values in VALUE_TYPES order, whether alloc bytes are known)."""
    keys = ESTIMATE_KEYS if sampled else EXACT_KEYS
    values = [_number(where, entry, k) for k in keys[:3]]
    has_alloc = keys[3] in entry
    values.append(_number(where, entry, keys[3]) if has_alloc else 0)
    return values, has_alloc


def _add_preload(prof: Profile, report: Any, source: Source) -> bool:
    """Adds report's stacks to prof; True when every entry gave its allocated bytes."""
    import audit.preload as preload

    data = report.data
    rate = data.sample_rate        # checked by audit.preload, as the report gives it
    sampled = rate is not None
    # whichever comes first: an exact report and a sampled one do not make one profile
    _join_rate(prof, str(report.path), rate)

    # Every frame of every stack, one addr2line batch per module (audit.preload caches them).
    symbols = preload.symbolize(data)
    modules = {m.path: m for m in data.modules}
    suppressed = preload.frame_suppression(preload.suppression_rules(source.suppressions), symbols)
    wrappers = preload.wrapper_list(source.wrappers)

    # One Frame per distinct (module, offset), made once: stacks share their frames, and
    # equal frames being one object makes every later lookup by frame cheap.
    made: dict[tuple[str, int], Frame] = {}
    for raw_frame, sym in symbols.items():
        module, offset = raw_frame
        mod = modules.get(module)
        named = module not in ("?", "")     # "?": no module; "": a module without a name
        made[raw_frame] = Frame(sym.function, sym.file, sym.line, module if named else None,
                                offset, mod.build_id if mod else None,
                                mod.base if mod else (None if named else 0))
    wrapper = preload.wrapper_verdicts(wrappers)

    alloc_known = True
    for i, site in enumerate(data.sites):
        raw = site.frames()        # (module as the report names it, "?" when none; offset)
        if preload.is_pool_module(raw[0][0]):
            continue
        # Suppressed as the table and the leak gate decide: a rule matches one of the frames
        # up to and including the first that is not an allocation wrapper.
        at = preload.attributed(raw, symbols, wrapper)
        if any(map(suppressed, raw[: at + 1])):
            continue
        # the site's fields beyond the parsed counts (alloc_bytes, the estimates), kept by
        # audit.preload as the report gives them: the report is not read a second time
        entry = site.extra or {}
        values, has_alloc = _site_values(report.path, i, site, entry, sampled)
        alloc_known = alloc_known and has_alloc
        prof.add(map(made.__getitem__, raw), values)
    return alloc_known


def _site_values(path: str, i: int, site: Any, entry: dict[str, Any],
                 sampled: bool) -> tuple[list[int | float], bool]:
    """A site's values (_values of its report entry, the parsed counts in place of the
    entry's own): the site's message names the file and the site only when it is wrong."""
    if sampled:
        return _values(f"{path}: sites[{i}]", entry, sampled)
    # the parsed counts are non-negative integers (audit.preload checked them)
    if "alloc_bytes" not in entry:
        return [site.blocks, site.bytes, site.allocs, 0], False
    return [site.blocks, site.bytes, site.allocs,
            _number(f"{path}: sites[{i}]", entry, "alloc_bytes")], True
