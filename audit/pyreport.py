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

A report with native stacks (``run --python --native``) also holds the stack
table of the interposer's and the pools' reports (``modules``, ``frames``,
``stacks``; ``native_depth``), ``eval_frames`` (the frames that lie in
CPython's evaluation loop), a ``native`` stack index per site and ``entry``
on the Python frames that started a C call of the evaluation loop.  Each
site's frames are then one hybrid stack: its native frames, innermost
first, with each evaluation-loop frame replaced by the chain of Python
frames it was running (up to and including the next entry frame), and
without the leading frames of CPython's allocator functions
(``PyObject_Malloc``, ...).  Native frames are named by the interposer's
symbolizer (:func:`audit.preload.symbolize`): ``file:line`` where DWARF has
it, else ``module+offset``.

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
    """A Python frame, or (``module`` set) a native frame of a report with native
    stacks: its function (``"??"`` when unknown), ``file`` and ``line`` where DWARF
    places it (else ``""`` and 0), the module and the return address's offset from
    the module's load bias."""
    file: str
    line: int
    function: str
    module: str | None = None
    offset: int | None = None
    build_id: str | None = None
    module_base: int | None = None

    @property
    def native(self) -> bool:
        return self.module is not None


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
    #: after_finalization only: the domains (raw, mem, obj) whose allocator was no longer the
    #: hooks' when finalization ended (tracemalloc started before them puts back the one it
    #: found when it stops): the blocks freed after that were not seen going.
    unhooked: tuple[str, ...] = ()


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
    native_depth: int | None = None     # native frames per stack (run --native); None: none

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
    (the launcher compiling the script) keeps its innermost frame.  In a hybrid
    stack the cut is after the program's outermost Python frame below the
    launcher's (the native frames that ran the launcher go with it)."""
    if any(f.native for f in frames):
        boot = next((i for i, f in enumerate(frames) if not f.native and _is_boot(f)), None)
        if boot is None:
            return frames
        program = [i for i in range(boot) if not frames[i].native]
        return frames[:program[-1] + 1 if program else boot + 1]
    end = len(frames)
    while end > 1 and _is_boot(frames[end - 1]):
        end -= 1
    return frames[:end]


# CPython's allocator functions: the leading frames of a native stack that
# only pass the request on to the hooks (a hybrid stack starts below them).
_ALLOCATOR_API: tuple[str, ...] = ("PyMem_*Malloc", "PyMem_*Calloc", "PyMem_*Realloc",
                                   "PyObject_Malloc", "PyObject_Calloc", "PyObject_Realloc",
                                   "_PyObject_Malloc", "_PyMem_*", "_PyObject_Calloc",
                                   "_PyObject_Realloc", "_PyMem_Raw*")


# CPython's call machinery around its evaluation loop: the frames that set
# up a C call of the loop (_PyEval_Vector, and the loop's inlined entry
# _PyEval_EvalFrame as DWARF names it), and those the loop calls a callable
# through (PyObject_Vectorcall, the builtin-function and method trampolines).
# Next to a Python frame of a hybrid stack they say nothing the Python frame
# does not, and go with the eval frame; elsewhere they stay.
_EVAL_GLUE: tuple[str, ...] = (
    "_PyEval_EvalFrameDefault*", "_PyEval_EvalFrame", "_PyEval_Vector", "PyEval_EvalCode",
    "PyEval_EvalCodeEx", "_PyFunction_Vectorcall", "PyObject_Vectorcall", "PyObject_VectorcallDict",
    "_PyObject_VectorcallTstate", "_PyObject_VectorcallDictTstate", "PyObject_Call",
    "_PyObject_Call", "PyObject_CallOneArg", "PyObject_CallNoArgs", "_PyObject_CallNoArgs*",
    "_PyObject_FastCall*", "_PyObject_MakeTpCall", "PyVectorcall_Call", "_PyVectorcall_Call",
    "cfunction_vectorcall_*", "cfunction_call", "method_vectorcall*", "vectorcall_method",
    "_PyObject_Call_Prepend", "slot_tp_call", "method_vectorcall_*", "call_unbound*",
)


@dataclass(frozen=True)
class _Native:
    """The stack table of a report with native stacks, symbolized."""
    stacks: tuple[tuple[Frame, ...], ...]     # native frames, innermost first
    evals: tuple[frozenset[int], ...]         # per stack: indexes of its eval-loop frames


def _native(c: _Checker, doc: dict[str, Any]) -> _Native:
    from audit import poolstacks, preload

    try:
        modules, stacks = poolstacks._tables(f"{c.source}: ", doc)
    except ValueError as exc:
        raise ReportFormatError(c.source, str(exc).split(": ", 1)[-1]) from None
    raw_frames = c.get(doc, "frames", list, "")
    evals_raw = c.get(doc, "eval_frames", list, "")
    evals = set()
    for i, k in enumerate(evals_raw):
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(raw_frames):
            raise c.fail(f"eval_frames[{i}]", f"is not a frame index (0..{len(raw_frames) - 1})")
        f = raw_frames[k]
        evals.add((modules[f[0]].path if f[0] >= 0 else "?", int(f[1], 16)))
    distinct = {st for st in stacks if st}
    sites = tuple(preload.Site(st[0][0], st[0][1], 0, 0, 0, None, st) for st in distinct)
    symbols = preload.symbolize(preload.PreloadReport(c.source, 0, "", "", "exit", {},
                                                      tuple(modules), sites))
    by_path = {m.path: m for m in modules}
    allocator_api = preload.wrapper_verdicts(_ALLOCATOR_API)
    out, out_evals = [], []
    for st in stacks:
        frames = []
        for module, offset in st:
            sym = symbols[(module, offset)]
            mod = by_path.get(module)
            frames.append(Frame(sym.file or "", sym.line or 0, sym.function, module, offset,
                                mod.build_id if mod else None, mod.base if mod else None))
        lead = preload.attributed(st, symbols, allocator_api) if st else 0
        if lead == 0 and st and allocator_api[symbols[st[0]].function]:
            lead = len(st)          # nothing but allocator functions: keep none of them
        out.append(tuple(frames[lead:]))
        out_evals.append(frozenset(i - lead for i, fr in enumerate(st) if fr in evals and i >= lead))
    return _Native(tuple(out), tuple(out_evals))


def _hybrid(python: list[tuple[Frame, bool]], native: tuple[Frame, ...],
            evals: frozenset[int]) -> tuple[Frame, ...]:
    """The native frames with each evaluation-loop frame replaced by the chain of
    Python frames it was running: from the next unused one up to and including
    the next entry frame.  An eval frame left with no Python frame stays as it is;
    Python frames left over (a native stack cut short) go at the outer end."""
    out: list[Frame] = []
    i = 0
    for k, frame in enumerate(native):
        if k in evals and i < len(python):
            while i < len(python):
                out.append(python[i][0])
                i += 1
                if python[i - 1][1]:
                    break
            continue
        out.append(frame)
    out.extend(f for f, _ in python[i:])
    return _without_glue(out)


def _without_glue(frames: list[Frame]) -> tuple[Frame, ...]:
    """Drops the runs of call-machinery frames (_EVAL_GLUE) that touch a Python frame."""
    from audit import preload

    glue = [f.native and preload.is_wrapper(f.function, _EVAL_GLUE) for f in frames]
    drop = [False] * len(frames)
    for p, f in enumerate(frames):
        if f.native:
            continue
        for step in (-1, 1):
            j = p + step
            while 0 <= j < len(frames) and glue[j]:
                drop[j] = True
                j += step
    return tuple(f for f, d in zip(frames, drop) if not d)


def _estimates(c: _Checker, s: dict[str, Any], w: str) -> Estimates:
    return Estimates(c.number(s, "est_blocks", w), c.number(s, "est_bytes", w),
                     c.number(s, "est_allocs", w),
                     c.number(s, "est_alloc_bytes", w) if "est_alloc_bytes" in s else 0.0,
                     c.count(s, "sampled_blocks", w), c.count(s, "samples", w))


def _sites(c: _Checker, raw: Any, where: str, depth: int, sampled: bool,
           native: _Native | None = None) -> tuple[Site, ...]:
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
            entry = f.get("entry", False)
            if not isinstance(entry, bool):
                raise c.fail(f"{wf}.entry", f"must be bool, found {type(entry).__name__}")
            frames.append((Frame(c.get(f, "file", str, wf), c.count(f, "line", wf),
                                 c.get(f, "function", str, wf)), entry))
        if native is not None and "native" in s:
            index = c.count(s, "native", w)
            if index >= len(native.stacks):
                raise c.fail(f"{w}.native", f"is {index}, but the report has "
                                            f"{len(native.stacks)} stacks")
            stack = _hybrid(frames, native.stacks[index], native.evals[index])
        else:
            stack = tuple(f for f, _ in frames)
        out.append(Site(_trim(stack), c.count(s, "blocks", w), c.count(s, "bytes", w),
                        c.optional_count(s, "allocs", w), c.optional_count(s, "peak_bytes", w),
                        _estimates(c, s, w) if sampled else None))
    return tuple(out)


def _section(c: _Checker, obj: dict[str, Any], where: str, depth: int, sampled: bool,
             native: _Native | None = None) -> Section:
    taken_at = c.get(obj, "taken_at", str, where)
    raw_totals = c.get(obj, "totals", dict, where)
    tw = f"{where}.totals" if where else "totals"
    totals = {k: c.count(raw_totals, k, tw) for k in ("blocks", "bytes")}
    for k in raw_totals:
        if k not in totals:
            totals[k] = c.count(raw_totals, k, tw)
    sites = _sites(c, c.get(obj, "sites", list, where), f"{where}.sites" if where else "sites", depth,
                   sampled, native)
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
    native_depth = None
    native = None
    if "native_depth" in doc:
        native_depth = c.count(doc, "native_depth", "")
        if not 1 <= native_depth <= 256:
            raise c.fail("native_depth", f"must be from 1 to 256, found {native_depth}")
        if "native_error" not in doc:
            native = _native(c, doc)
    before = _section(c, doc, "", depth, rate is not None, native)
    after = None
    if "after_finalization" in doc:
        raw_after = c.get(doc, "after_finalization", dict, "")
        after = _section(c, raw_after, "after_finalization", depth, rate is not None, native)
        if "unhooked" in raw_after:
            unhooked = c.get(raw_after, "unhooked", list, "after_finalization")
            if not all(d in ("raw", "mem", "obj") for d in unhooked):
                raise c.fail("after_finalization.unhooked", f"must name raw, mem or obj, found {unhooked!r}")
            after = Section(after.taken_at, after.totals, after.sites, tuple(unhooked))
    return PythonReport(path=source, pid=c.count(doc, "pid", ""),
                        program=c.get(doc, "program", str, ""), python=c.get(doc, "python", str, ""),
                        reason=reason, depth=depth, domains=tuple(domains), before=before, after=after,
                        sample_rate=rate, native_depth=native_depth)


# --------------------------------------------------------------------- rows
def _where(frame: Frame) -> str:
    """A native frame's place: its source file:line (DWARF), else module+offset."""
    if frame.file and frame.line:
        return f"{frame.file}:{frame.line}"
    return f"{os.path.basename(frame.module or '?')}+{frame.offset or 0:#x}"


def frame_text(frame: Frame) -> str:
    if frame.native:
        return f"{_where(frame)} ({frame.function})"
    return f"{frame.file}:{frame.line} ({frame.function})"


def _file(frame: Frame) -> str:
    if frame.native:
        return frame.file or (frame.module or "?")
    return frame.file


def key(site: Site, by: str) -> str:
    if not site.frames:
        return NO_FRAME
    top = site.frames[0]
    if by == "line":
        return frame_text(top)
    if by == "function":
        if top.native and not top.file:
            return f"{top.function} ({os.path.basename(top.module or '?')})"
        return f"{top.function} ({_file(top)})"
    if by == "file":
        return _file(top)
    return " <- ".join(frame_text(f) for f in site.frames)


def frame_id(frame: Frame, by: str = "line") -> tuple[Any, ...]:
    """What tells one frame from another under ``by`` (line and stack: the frame;
    function: the function and its file, or its module; file: the file, or the
    module): the identity :func:`key` renders, which two frames may render alike."""
    where: tuple[Any, ...] = (("native", frame.module or "?") if frame.native and not frame.file
                              else ("file", frame.file))
    if by == "file":
        return where
    if by == "function":
        return (frame.function, *where)
    if frame.native and not (frame.file and frame.line):
        return (frame.function, "at", frame.module or "?", frame.offset or 0)
    return (frame.function, "native" if frame.native else "python", frame.file, frame.line)


def frame_fields(fid: tuple[Any, ...]) -> dict[str, Any]:
    """A frame of a row's identity (:func:`frame_id`) as ``json`` writes it: the
    fields it has of function, file, line, module and offset (hex)."""
    if len(fid) == 2:                                   # --by file: the file, or the module
        return {"module" if fid[0] == "native" else "file": fid[1]}
    if len(fid) == 3:                                   # --by function
        return {"function": fid[0], "module" if fid[1] == "native" else "file": fid[2]}
    if fid[1] == "at":                                  # a native frame without a line
        return {"function": fid[0], "module": fid[2], "offset": f"{fid[3]:#x}"}
    return {"function": fid[0], "file": fid[2], "line": fid[3]}


def ident(site: Site, by: str) -> tuple[tuple[Any, ...], ...]:
    """A row's identity under ``by``: its frames as :func:`frame_id` gives them
    (the whole stack for ``stack``, else the top frame; () without a frame)."""
    if not site.frames:
        return ()
    if by == "stack":
        return tuple(frame_id(f) for f in site.frames)
    return (frame_id(site.frames[0], by),)


def normalize_by(by: str | None) -> str:
    by = BY_ALIASES.get(by or "line", by or "line")
    if by not in BY_CHOICES:
        raise ValueError(f"--by {by}: Python reports group by {', '.join(BY_CHOICES)}")
    return by


def rows(report: PythonReport, by: str = "line", finalization: bool = False) -> list[dict[str, Any]]:
    """Sites grouped by ``by`` (by :func:`ident`: two rows may share a key text); each
    row ``{"key", "ident", "frames", "frame_texts", "blocks", "bytes", "peak_bytes",
    "allocs"}`` (``frames``: :func:`frame_fields` of each frame of ``ident``), largest bytes first.  With finalization, the
    rows of what finalization left (empty when the report has no such section)."""
    by = normalize_by(by)
    section = report.after if finalization else report.before
    if section is None:
        return []
    grouped: dict[tuple[tuple[Any, ...], ...], dict[str, Any]] = {}
    for site in section.sites:
        i = ident(site, by)
        row = grouped.get(i)
        if row is None:
            k = key(site, by)
            texts = [frame_text(f) for f in site.frames] if by == "stack" else [k]
            row = grouped[i] = {"key": k, "ident": i, "frame_texts": texts,
                                "frames": [frame_fields(f) for f in i], "blocks": 0, "bytes": 0,
                                "peak_bytes": site.peak_bytes, "allocs": None, "sites": 0}
        elif row["sites"]:
            row["peak_bytes"] = None    # peaks of several sites do not add up to the row's peak
        row["sites"] += 1
        row["blocks"] += site.blocks
        row["bytes"] += site.bytes
        if site.allocs is not None:
            row["allocs"] = (row["allocs"] or 0) + site.allocs
    return sorted(grouped.values(), key=lambda r: (-r["bytes"], -r["blocks"], r["key"], repr(r["ident"])))
