"""Reports of the Python allocator hooks (``"format": "ringpool-python"``).

``ringpool-audit run --python`` (through :mod:`allocator._pyhooks`) writes one
JSON file per process: outstanding blocks and bytes per *site*, a site being
the stack of Python frames (innermost first, ``--python-depth`` deep) that
made the allocations.  The main section is what was outstanding when the
program finished, before the interpreter's finalization; the optional
``after_finalization`` section is what finalization left behind.  See
docs/python-programs.md.

This module checks those files (pure Python, one-line errors naming the file
and the field) and groups sites into rows for the CLI: ``--by line``
(``file:line (function)`` of the innermost frame, the default), ``function``,
``file`` or ``stack`` (every recorded frame).

A sampled report (``run --python --sample-rate R``) states ``sample_rate``
(per byte); its sites' ``blocks``, ``bytes``, ``peak_bytes`` and ``allocs``
are the rounded estimates, and each site also carries the estimates as
numbers (``est_blocks``, ``est_bytes``, ``est_allocs``, ``est_alloc_bytes``)
and what was sampled (``sampled_blocks``, ``samples``), as the interposer's
sampled reports do.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from audit.schema import ReportFormatError

FORMAT = "ringpool-python"
VERSION = 1
BY_CHOICES = ("line", "function", "file", "stack")
BY_ALIASES = {"site": "line"}
NO_FRAME = "(no Python frame)"
REASONS = ("exit", "request", "exec")


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    function: str


@dataclass(frozen=True)
class Estimates:
    """A sampled site's unbiased estimates (floats; blocks/bytes/allocs of the
    site carry them rounded) and what was sampled."""
    blocks: float
    bytes: float
    allocs: float
    alloc_bytes: float
    sampled_blocks: int
    samples: int


@dataclass(frozen=True)
class Site:
    frames: tuple[Frame, ...]   # innermost first; empty: no Python frame
    blocks: int
    bytes: int
    allocs: int | None
    peak_bytes: int | None
    estimates: Estimates | None = None      # sampled reports only


@dataclass(frozen=True)
class Section:
    taken_at: str
    totals: dict[str, int]
    sites: tuple[Site, ...]


@dataclass(frozen=True)
class PythonReport:
    path: str
    pid: int
    program: str
    python: str
    reason: str
    depth: int
    domains: tuple[str, ...]
    before: Section                 # outstanding before finalization (or at the request)
    after: Section | None           # left by finalization, when written after it
    sample_rate: float | None = None    # per byte; None: exact counts

    # Fields the CLI's report metadata reads, like a snapshot's.
    @property
    def taken_at(self) -> str:
        return self.before.taken_at

    @property
    def pool(self) -> str:
        return f"python:{os.path.basename(self.program) or self.pid}"


def is_python_report(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("format") == FORMAT


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, problem: str) -> ReportFormatError:
        return ReportFormatError(self.source, problem, field)

    def get(self, obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
        field = f"{where}.{name}" if where else name
        if name not in obj:
            raise self.fail(field, "missing")
        value = obj[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(field, f"must be {kind.__name__}, found {type(value).__name__}")
        return value

    def count(self, obj: dict[str, Any], name: str, where: str) -> int:
        value: int = self.get(obj, name, int, where)
        if value < 0:
            raise self.fail(f"{where}.{name}" if where else name, f"is negative ({value})")
        return value

    def optional_count(self, obj: dict[str, Any], name: str, where: str) -> int | None:
        return self.count(obj, name, where) if name in obj else None

    def number(self, obj: dict[str, Any], name: str, where: str) -> float:
        field = f"{where}.{name}" if where else name
        if name not in obj:
            raise self.fail(field, "missing")
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"must be a number, found {type(value).__name__}")
        if not math.isfinite(value) or value < 0:
            raise self.fail(field, f"must be a finite number >= 0, found {value!r}")
        return float(value)


_BOOT = tuple(os.sep + os.path.join("audit", name) for name in ("_pyboot.py", "_pystart.py"))


def _is_boot(frame: Frame) -> bool:
    return frame.file.endswith(_BOOT) or frame.file == "<frozen runpy>"


def _trim(frames: tuple[Frame, ...]) -> tuple[Frame, ...]:
    """Drops the launcher's frames (audit/_pyboot.py and runpy below it) from the
    outer end of a stack: they are not the program's.  A stack made only of them
    (the launcher compiling the script) keeps its innermost frame."""
    end = len(frames)
    while end > 1 and _is_boot(frames[end - 1]):
        end -= 1
    return frames[:end]


def _estimates(c: _Checker, s: dict[str, Any], w: str) -> Estimates:
    return Estimates(c.number(s, "est_blocks", w), c.number(s, "est_bytes", w),
                     c.number(s, "est_allocs", w),
                     c.number(s, "est_alloc_bytes", w) if "est_alloc_bytes" in s else 0.0,
                     c.count(s, "sampled_blocks", w), c.count(s, "samples", w))


def _sites(c: _Checker, raw: Any, where: str, depth: int, sampled: bool) -> tuple[Site, ...]:
    if not isinstance(raw, list):
        raise c.fail(where, f"must be list, found {type(raw).__name__}")
    out = []
    for i, s in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(s, dict):
            raise c.fail(w, "must be an object")
        frames_raw = c.get(s, "frames", list, w)
        if len(frames_raw) > depth:
            raise c.fail(f"{w}.frames", f"has {len(frames_raw)} frames, more than the depth {depth}")
        frames = []
        for j, f in enumerate(frames_raw):
            wf = f"{w}.frames[{j}]"
            if not isinstance(f, dict):
                raise c.fail(wf, "must be an object")
            frames.append(Frame(c.get(f, "file", str, wf), c.count(f, "line", wf),
                                c.get(f, "function", str, wf)))
        out.append(Site(_trim(tuple(frames)), c.count(s, "blocks", w), c.count(s, "bytes", w),
                        c.optional_count(s, "allocs", w), c.optional_count(s, "peak_bytes", w),
                        _estimates(c, s, w) if sampled else None))
    return tuple(out)


def _section(c: _Checker, obj: dict[str, Any], where: str, depth: int, sampled: bool) -> Section:
    taken_at = c.get(obj, "taken_at", str, where)
    raw_totals = c.get(obj, "totals", dict, where)
    tw = f"{where}.totals" if where else "totals"
    totals = {k: c.count(raw_totals, k, tw) for k in ("blocks", "bytes")}
    for k in raw_totals:
        if k not in totals:
            totals[k] = c.count(raw_totals, k, tw)
    sites = _sites(c, c.get(obj, "sites", list, where), f"{where}.sites" if where else "sites", depth,
                   sampled)
    blocks = sum(s.blocks for s in sites)
    nbytes = sum(s.bytes for s in sites)
    if (blocks, nbytes) != (totals["blocks"], totals["bytes"]):
        raise c.fail(tw, f"blocks/bytes {totals['blocks']}/{totals['bytes']} differ from the "
                         f"sites' sums {blocks}/{nbytes}")
    return Section(taken_at, totals, sites)


def parse(doc: Any, source: str) -> PythonReport:
    """Checks a decoded document; ReportFormatError names the file and the field."""
    c = _Checker(source)
    if not isinstance(doc, dict):
        raise ReportFormatError(source, f"a report is a JSON object, found {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise c.fail("format", f"must be {FORMAT!r}, found {doc.get('format')!r}")
    version = c.get(doc, "version", int, "")
    if version != VERSION:
        raise c.fail("version", f"unsupported version {version} (this reader knows {VERSION})")
    reason = c.get(doc, "reason", str, "")
    if reason not in REASONS:
        raise c.fail("reason", f"must be one of {', '.join(REASONS)}, found {reason!r}")
    depth = c.count(doc, "depth", "")
    if depth < 1:
        raise c.fail("depth", f"must be at least 1, found {depth}")
    domains = c.get(doc, "domains", list, "")
    if not all(d in ("raw", "mem", "obj") for d in domains):
        raise c.fail("domains", f"must name raw, mem or obj, found {domains!r}")
    rate = None
    if "sample_rate" in doc:
        rate = c.number(doc, "sample_rate", "")
        if not 0.0 < rate <= 1.0:
            raise c.fail("sample_rate", f"must be in (0, 1], found {doc['sample_rate']!r}")
    before = _section(c, doc, "", depth, rate is not None)
    after = None
    if "after_finalization" in doc:
        raw_after = c.get(doc, "after_finalization", dict, "")
        after = _section(c, raw_after, "after_finalization", depth, rate is not None)
    return PythonReport(path=source, pid=c.count(doc, "pid", ""),
                        program=c.get(doc, "program", str, ""), python=c.get(doc, "python", str, ""),
                        reason=reason, depth=depth, domains=tuple(domains), before=before, after=after,
                        sample_rate=rate)


# --------------------------------------------------------------------- rows
def frame_text(frame: Frame) -> str:
    return f"{frame.file}:{frame.line} ({frame.function})"


def key(site: Site, by: str) -> str:
    if not site.frames:
        return NO_FRAME
    top = site.frames[0]
    if by == "line":
        return frame_text(top)
    if by == "function":
        return f"{top.function} ({top.file})"
    if by == "file":
        return top.file
    return " <- ".join(frame_text(f) for f in site.frames)


def normalize_by(by: str | None) -> str:
    by = BY_ALIASES.get(by or "line", by or "line")
    if by not in BY_CHOICES:
        raise ValueError(f"--by {by}: Python reports group by {', '.join(BY_CHOICES)}")
    return by


def rows(report: PythonReport, by: str = "line", finalization: bool = False) -> list[dict[str, Any]]:
    """Sites grouped by ``by``; each row ``{"key", "frames", "blocks", "bytes",
    "peak_bytes", "allocs"}``, largest bytes first.  With finalization, the
    rows of what finalization left (empty when the report has no such section)."""
    by = normalize_by(by)
    section = report.after if finalization else report.before
    if section is None:
        return []
    grouped: dict[str, dict[str, Any]] = {}
    for site in section.sites:
        k = key(site, by)
        row = grouped.get(k)
        if row is None:
            frames = [frame_text(f) for f in site.frames] if by == "stack" else [k]
            row = grouped[k] = {"key": k, "frames": frames, "blocks": 0, "bytes": 0,
                                "peak_bytes": site.peak_bytes, "allocs": None, "sites": 0}
        elif row["sites"]:
            row["peak_bytes"] = None    # peaks of several sites do not add up to the row's peak
        row["sites"] += 1
        row["blocks"] += site.blocks
        row["bytes"] += site.bytes
        if site.allocs is not None:
            row["allocs"] = (row["allocs"] or 0) + site.allocs
    return sorted(grouped.values(), key=lambda r: (-r["bytes"], -r["blocks"], r["key"]))
