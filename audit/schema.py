"""The report schema: one reader for every ringpool report file.

Pure Python (no C extension is imported), so it serves ``allocator.Snapshot``,
the CLI (``show``, ``diff``, the leak gate) and every exporter alike.  It does
three things, each with a limit and a one-line error:

1. **read** a file: only a regular file or ``-`` (standard input); FIFOs,
   devices and directories are refused before anything is read, and at most
   ``Limits.max_bytes`` bytes are read (:func:`read_bytes`, :func:`read_json`);
2. **decode** strict UTF-8 JSON: bare ``NaN``/``Infinity``, integers of more
   than 4300 digits and nesting deeper than the interpreter allows are refused
   with a message, never a traceback (:func:`decode_json`);
3. **validate and normalize** a decoded ``ringpool-snapshot`` document into
   typed records (:func:`parse_snapshot`): every count an integer from 0 to
   2**64 - 1, strings valid Unicode (no lone surrogates) and at most
   ``Limits.max_text`` characters, children nested at most
   ``Limits.max_depth`` levels, tags unique, totals equal to the tags' sums.

Every error is a :class:`ReportFormatError` (a ``ValueError``) whose text is
one line that starts with the source (the file name) and names the field.

Fields the reader does not know are kept, not rejected, so reports can grow
(a ``stacks`` table, frames per block, sampling rates and estimates): they
are checked only for sanity (:func:`check_json_values`) and land in the
``extra`` mapping of the record they belong to, in document order; the
writers (:func:`to_dict`, :func:`dumps`) put them back.

The format is described in docs/report-format.md.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Iterator, Mapping, NamedTuple, Sequence, TypeVar, overload

from audit.printable import printable

FORMAT = "ringpool-snapshot"
PRELOAD_FORMAT = "ringpool-preload"
VERSION = 1
REASONS = ("destroy", "exit", "request")
BACKINGS = ("malloc", "arena")

#: Largest count a report may carry (counts are ``size_t`` in the C library).
MAX_COUNT = 2**64 - 1
#: Smallest and largest integer accepted anywhere (in fields this reader does not know).
MIN_INT = -(2**63)
MAX_INT = MAX_COUNT

_TAKEN_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_ADDRESS = re.compile(r"0x[0-9a-f]+\Z")

# The keys of the records, in the order the writers use.
_TOP_KEYS = ("format", "version")
_POOL_KEYS = ("pool", "pid", "taken_at", "reason", "backing", "totals", "tags", "blocks",
              "children")
_TOTALS_KEYS = ("blocks", "bytes", "peak_bytes", "allocs", "reserved_bytes")
_TAG_KEYS = ("tag", "blocks", "bytes", "peak_bytes", "allocs")
_BLOCK_KEYS = ("address", "size", "tag")


class ReportFormatError(ValueError):
    """A report that cannot be read or is malformed.

    ``str(error)`` is one line: ``"<source>: <what is wrong>"``, naming the
    field (``'tags[3].bytes'``) when one is at fault.  ``source`` and
    ``field`` (or None) are kept as attributes.
    """

    def __init__(self, source: str, problem: str, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = f"field {field!r}: " if field is not None else ""
        super().__init__(_one_line(f"{printable(source)}: {where}{problem}"))


@dataclass(frozen=True)
class Limits:
    """What a reader accepts; the defaults fit any report a real program writes.

    ``max_bytes``: the largest file read (bytes); ``max_depth``: levels of
    nested child pools; ``max_text``: characters of a pool name, tag or other
    string; ``max_nesting``: JSON nesting inside fields the reader does not know.
    """

    max_bytes: int = 1 << 30
    max_depth: int = 100
    max_text: int = 1 << 20
    max_nesting: int = 64
    #: Appended to the message of a file over ``max_bytes`` (how to raise the limit).
    size_hint: str = ""


DEFAULT_LIMITS = Limits()


# ------------------------------------------------------------------ records
class TagStat(NamedTuple):
    """One tag's counters: outstanding blocks and bytes, peak bytes, allocations ever.

    ``extra`` holds the tag's fields this reader does not know (None when
    there are none)."""

    tag: str
    blocks: int
    bytes: int
    peak_bytes: int
    allocs: int
    extra: Mapping[str, Any] | None = None


class BlockRecord(NamedTuple):
    """One outstanding block of a report written with blocks."""

    address: int
    size: int
    tag: str
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Totals:
    """Pool-wide counters; ``reserved_bytes`` is None when the report omits it."""

    blocks: int
    bytes: int
    peak_bytes: int
    allocs: int
    reserved_bytes: int | None = None
    extra: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(eq=True)
class PoolReport:
    """One pool of a report, with its child pools (``children``, nested).

    ``extra`` holds the fields this reader does not know, in document order
    (for the root: also top-level tables such as ``stacks``).  ``source``
    names where the report came from (a file name), not compared.
    ``parents``: the names of the pools the report's root pool lies in,
    outermost first (a child pool's own report), else ``()``."""

    pool: str
    pid: int
    taken_at: str
    reason: str
    backing: str
    totals: Totals
    tags: list[TagStat]
    blocks: list[BlockRecord] | None = None
    children: list[PoolReport] = field(default_factory=list)
    source: str | None = field(default=None, compare=False)
    extra: dict[str, Any] = field(default_factory=dict)
    parents: tuple[str, ...] = ()

    def walk_paths(self) -> Iterator[tuple[PoolPath, PoolReport]]:
        """(path, pool) for this pool and its descendants, depth first; the path
        is the tuple of pool names from the outermost pool down (``parents``,
        then this pool's name: ``("parser", "child")``), a pool's identity
        wherever reports are read (:func:`path_text` writes it as one string)."""
        stack: list[tuple[PoolPath, PoolReport]] = [((*self.parents, self.pool), self)]
        while stack:
            path, report = stack.pop()
            yield path, report
            stack.extend((path + (c.pool,), c) for c in reversed(report.children))

    def walk(self, prefix: str = "") -> Iterator[tuple[str, PoolReport]]:
        """(path, pool) for this pool and its descendants, depth first; the path
        is :func:`path_text` of :meth:`walk_paths`' tuple (``parser/child``; a
        ``/`` or a backslash inside a name is written with a backslash before
        it), after ``prefix + "/"`` when a prefix is given."""
        for path, report in self.walk_paths():
            text = path_text(path)
            yield (f"{prefix}/{text}" if prefix else text), report


P = TypeVar("P", bound=PoolReport)


# -------------------------------------------------------------- pool paths
#: A pool's position: the names from the root pool of its report down to it.
PoolPath = tuple[str, ...]

_PATH_ESCAPES = re.compile(r"[\\/]")


def _name_text(name: str) -> str:
    if "/" not in name and "\\" not in name:
        return name
    return _PATH_ESCAPES.sub(lambda m: "\\" + m.group(), name)


def path_text(path: Sequence[str]) -> str:
    """The one string of a pool path (docs/report-format.md, "Pool paths"): the
    names joined with ``/``, each name with a backslash written ``\\\\`` and a
    ``/`` written ``\\/``.  One-to-one: ``("a/b",)`` is ``a\\/b``, ``("a", "b")``
    is ``a/b``; :func:`path_names` reads it back."""
    return "/".join(map(_name_text, path))


def path_names(text: str) -> PoolPath:
    """The pool path a :func:`path_text` string names; ValueError for a string
    that no path gives (a backslash before anything but ``\\`` or ``/``)."""
    if "\\" not in text:
        return tuple(text.split("/"))
    names: list[str] = []
    name: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt not in ("\\", "/"):
                raise ValueError(f"pool path {shown(text)}: a backslash must be followed by "
                                 "a backslash or a '/'")
            name.append(nxt)
        elif ch == "/":
            names.append("".join(name))
            name = []
        else:
            name.append(ch)
    names.append("".join(name))
    return tuple(names)


def path_shown(path: Sequence[str]) -> str:
    """The pool path as text outputs write it (tables, folded rows, messages): each
    name by :func:`audit.printable.printable`'s rule (a backslash ``\\\\``, a
    newline ``\\n``, ...) and a ``/`` inside a name ``\\/``, joined with ``/``:
    :func:`path_text` with control characters escaped, never a backslash twice."""
    return "/".join(printable(name).replace("/", "\\/") for name in path)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (restored after).

    Decoding and checking a report creates millions of objects and no cycles;
    each collection on the way would walk every object made so far, which
    costs more than all the rest (about 7x for a report of a million tags)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ----------------------------------------------------------------- messages
def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def shown(value: Any, limit: int = 60) -> str:
    """A short one-line repr of ``value`` for messages (long values are cut)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {len(str(value))} digits"
    if isinstance(value, (list, dict)) and len(value) > 8:
        return f"a JSON {'array' if isinstance(value, list) else 'object'} of {len(value)} items"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ----------------------------------------------------------------- reading
def read_bytes(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
               stdin: IO[bytes] | None = None) -> bytes:
    """The bytes of a report file, at most ``limits.max_bytes`` of them.

    ``"-"`` reads standard input (or ``stdin``).  Anything but a regular file
    (a FIFO, a device, a socket, a directory) is refused without reading or
    waiting.  Raises ReportFormatError with a one-line message."""
    name = os.fspath(path)
    cap = limits.max_bytes
    if name == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        try:
            data = stream.read(cap + 1)
        except OSError as exc:
            raise ReportFormatError("<stdin>", f"cannot read: {exc.strerror or exc}") from None
        if len(data) > cap:
            raise ReportFormatError("<stdin>", f"more than {cap} bytes: larger than the "
                                               f"{_size(cap)} a report may have"
                                               f"{limits.size_hint}")
        return data
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked next.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ReportFormatError(name, "cannot read: no such file") from None
    except IsADirectoryError:
        raise ReportFormatError(name, "cannot read: is a directory, not a report file") from None
    except OSError as exc:
        raise ReportFormatError(name, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ReportFormatError(name, "cannot read: is a directory, not a report file")
        if not stat.S_ISREG(st.st_mode):
            raise ReportFormatError(name, f"cannot read: is {_file_kind(st.st_mode)}, not a "
                                          "regular file (use - to read standard input)")
        if st.st_size > cap:
            raise ReportFormatError(name, f"{st.st_size} bytes: larger than the "
                                          f"{_size(cap)} a report may have{limits.size_hint}")
        data = read_fd(fd, cap + 1, 1 << 24)
    except OSError as exc:
        raise ReportFormatError(name, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise ReportFormatError(name, f"more than {cap} bytes: larger than the "
                                      f"{_size(cap)} a report may have{limits.size_hint}")
    return data


def read_fd(fd: int, most: int, step: int) -> bytes:
    """Up to ``most`` bytes of ``fd`` (made blocking), read ``step`` at a time
    until its end: a caller that passes its limit plus one tells a file over
    the limit by the length, without reading the rest of it."""
    os.set_blocking(fd, True)
    chunks = []
    left = most
    while left > 0:
        chunk = os.read(fd, min(left, step))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


class _BadConstant(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _BadConstant(name)


def decode_json(raw: bytes, source: str) -> Any:
    """Strict UTF-8 JSON; ReportFormatError (one line) for anything else."""
    if not raw.strip():
        raise ReportFormatError(source, "empty file, not a report")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportFormatError(source, f"not UTF-8 text (byte {exc.start})") from None
    try:
        with gc_paused():
            return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        # A report cut short (a crash while writing, a full disk) does not end its object.
        stripped = text.strip()
        cut = stripped.startswith("{") and not stripped.endswith("}")
        what = "truncated JSON (the object never closes)" if cut else "invalid JSON"
        raise ReportFormatError(source, f"{what}: {exc.msg} (line {exc.lineno}, "
                                        f"column {exc.colno})") from None
    except _BadConstant as exc:
        raise ReportFormatError(source, f"invalid JSON: {exc.args[0]} is not a JSON "
                                        "number") from None
    except RecursionError:
        raise ReportFormatError(source, "invalid report: JSON nested too deeply for this "
                                        "reader") from None
    except MemoryError:
        raise ReportFormatError(source, f"out of memory decoding {len(raw)} bytes of "
                                        "JSON") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "integer string conversion" in first:
            first = ("an integer has more digits than this reader accepts "
                     f"({sys.get_int_max_str_digits()})")
        raise ReportFormatError(source, f"invalid JSON: {first}") from None


def read_json(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
              stdin: IO[bytes] | None = None) -> Any:
    """:func:`read_bytes` then :func:`decode_json`."""
    name = os.fspath(path)
    raw = read_bytes(name, limits=limits, stdin=stdin)
    return decode_json(raw, "<stdin>" if name == "-" else name)


def report_format(doc: Any) -> str | None:
    """The ``format`` a decoded document claims (a string), or None."""
    if isinstance(doc, dict):
        fmt = doc.get("format")
        if isinstance(fmt, str):
            return fmt
    return None


# ---------------------------------------------------------- generic checks
def _text_ok(value: str, limits: Limits) -> str | None:
    """None if ``value`` is acceptable text, else what is wrong with it."""
    if len(value) > limits.max_text:
        return f"a string of {len(value)} characters (at most {limits.max_text})"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            return f"contains a lone surrogate (\\u{ord(bad):04x}): not valid Unicode"
    return None


def check_json_values(value: Any, source: str, where: str,
                      limits: Limits = DEFAULT_LIMITS) -> None:
    """Checks any decoded JSON value for what readers downstream cannot
    handle: integers outside [-2**63, 2**64 - 1], numbers that are not
    finite, strings with lone surrogates or longer than ``limits.max_text``,
    and nesting deeper than ``limits.max_nesting``.  Iterative (no recursion).
    ``where`` names the field in messages."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        kind = type(item)
        if kind is str:
            problem = _text_ok(item, limits)
            if problem:
                raise ReportFormatError(source, problem, path)
        elif kind is int:
            if not MIN_INT <= item <= MAX_INT:
                raise ReportFormatError(source, f"{shown(item)} is out of range "
                                                f"[{MIN_INT}, {MAX_INT}]", path)
        elif kind is float:
            if not math.isfinite(item):
                raise ReportFormatError(source, f"{item!r} is not a finite number", path)
        elif kind is dict:
            if depth >= limits.max_nesting:
                raise ReportFormatError(source, f"nested deeper than {limits.max_nesting} "
                                                "levels", path)
            for key, sub in item.items():
                problem = _text_ok(key, limits)
                if problem:
                    raise ReportFormatError(source, f"a key {problem}", path)
                stack.append((sub, f"{path}.{key}" if path else key, depth + 1))
        elif kind is list:
            if depth >= limits.max_nesting:
                raise ReportFormatError(source, f"nested deeper than {limits.max_nesting} "
                                                "levels", path)
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
        elif item is None or kind is bool:
            pass
        else:
            raise ReportFormatError(source, f"unexpected value {shown(item)}", path)


# ------------------------------------------------------- ringpool-snapshot
class _Fields:
    """Field checks that raise ReportFormatError naming source and field."""

    __slots__ = ("source", "prefix", "limits")

    def __init__(self, source: str, prefix: str, limits: Limits) -> None:
        self.source = source
        self.prefix = prefix
        self.limits = limits

    def bad(self, name: str, problem: str) -> ReportFormatError:
        return ReportFormatError(self.source, problem, self.prefix + name)

    def wrong_type(self, name: str, expected: str, value: Any) -> ReportFormatError:
        """The error for a field that is not of the JSON type ``expected`` ("an array")."""
        return self.bad(name, f"expected {expected}, got {_json_type(value)} {shown(value)}")

    def get(self, obj: Mapping[str, Any], name: str, where: str = "") -> Any:
        if name not in obj:
            raise self.bad(where + name, "missing")
        return obj[name]

    def text(self, obj: Mapping[str, Any], name: str, where: str = "") -> str:
        value = self.get(obj, name, where)
        if type(value) is not str:
            raise self.wrong_type(where + name, "a string", value)
        problem = _text_ok(value, self.limits)
        if problem:
            raise self.bad(where + name, problem)
        return value

    def count(self, obj: Mapping[str, Any], name: str, where: str = "") -> int:
        value = self.get(obj, name, where)
        if type(value) is not int:
            raise self.wrong_type(where + name, "an integer", value)
        if value < 0:
            raise self.bad(where + name, f"expected a non-negative count, got {shown(value)}")
        if value > MAX_COUNT:
            raise self.bad(where + name, f"{shown(value)} is larger than the largest count "
                                         f"(2**64 - 1)")
        return value

    def extras(self, obj: Mapping[str, Any], known: tuple[str, ...],
               where: str) -> dict[str, Any] | None:
        out: dict[str, Any] | None = None
        for key, value in obj.items():
            if key not in known:
                check_json_values(value, self.source, self.prefix + where + key, self.limits)
                problem = _text_ok(key, self.limits)
                if problem:
                    raise ReportFormatError(self.source, f"a key {problem}",
                                            (self.prefix + where).rstrip(".") or None)
                if out is None:
                    out = {}
                out[key] = value
        return out


@overload
def parse_snapshot(doc: Any, source: str = ..., *, limits: Limits = ...) -> PoolReport: ...
@overload
def parse_snapshot(doc: Any, source: str = ..., *, limits: Limits = ...,
                   cls: type[P]) -> P: ...


def parse_snapshot(doc: Any, source: str = "<dict>", *, limits: Limits = DEFAULT_LIMITS,
                   cls: type[PoolReport] = PoolReport) -> PoolReport:
    """A validated ``ringpool-snapshot`` document as records (``cls``, a
    PoolReport subclass, for the root and every child pool)."""
    if not isinstance(doc, dict):
        raise ReportFormatError(source, f"a report must be a JSON object, not "
                                        f"{type(doc).__name__}")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise ReportFormatError(source, f"expected {FORMAT!r}, got {shown(fmt)}", "format")
    version = doc.get("version")
    if type(version) is not int:
        raise ReportFormatError(source, f"expected an integer, got {shown(version)}",
                                "version")
    if version != VERSION:
        raise ReportFormatError(source, f"version {shown(version)} is not supported (this "
                                        f"reader knows version {VERSION})", "version")
    with gc_paused():
        return _parse_pool(doc, source, "", 0, limits, cls, _TOP_KEYS + _POOL_KEYS + ("parents",))


def _parse_pool(d: dict[str, Any], source: str, prefix: str, depth: int, limits: Limits,
                cls: type[P], known: tuple[str, ...]) -> P:
    f = _Fields(source, prefix, limits)
    pool = f.text(d, "pool")
    pid = f.count(d, "pid")
    taken_at = f.text(d, "taken_at")
    if not _TAKEN_AT.match(taken_at):
        raise f.bad("taken_at", f"expected ISO-8601 UTC like 2026-11-26T04:20:00Z, "
                                f"got {shown(taken_at)}")
    try:
        time.strptime(taken_at, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise f.bad("taken_at", f"not a valid date and time: {taken_at!r}") from None
    reason = f.text(d, "reason")
    if reason not in REASONS:
        raise f.bad("reason", f"expected one of {', '.join(REASONS)}, got {shown(reason)}")
    backing = f.text(d, "backing")
    if backing not in BACKINGS:
        raise f.bad("backing", f"expected 'malloc' or 'arena', got {shown(backing)}")

    t = f.get(d, "totals")
    if type(t) is not dict:
        raise f.wrong_type("totals", "an object", t)
    totals = Totals(f.count(t, "blocks", "totals."), f.count(t, "bytes", "totals."),
                    f.count(t, "peak_bytes", "totals."), f.count(t, "allocs", "totals."),
                    f.count(t, "reserved_bytes", "totals.") if "reserved_bytes" in t else None,
                    f.extras(t, _TOTALS_KEYS, "totals."))

    raw_tags = f.get(d, "tags")
    if type(raw_tags) is not list:
        raise f.wrong_type("tags", "an array", raw_tags)
    tags, seen, sum_blocks, sum_bytes = _parse_tags(raw_tags, f)
    for name, total, value in (("blocks", sum_blocks, totals.blocks),
                               ("bytes", sum_bytes, totals.bytes)):
        if total != value:
            raise f.bad(f"totals.{name}", f"is {value} but the tags sum to {total}")

    blocks: list[BlockRecord] | None = None
    if "blocks" in d:
        blocks = _parse_blocks(d["blocks"], seen, f)
        if len(blocks) != totals.blocks:
            raise f.bad("blocks", f"lists {len(blocks)} blocks but totals.blocks "
                                  f"is {totals.blocks}")

    children: list[P] = []
    if "children" in d:
        raw_children = d["children"]
        if type(raw_children) is not list:
            raise f.wrong_type("children", "an array", raw_children)
        if raw_children and depth >= limits.max_depth:
            raise f.bad("children", f"child pools nested deeper than {limits.max_depth} "
                                    "levels")
        for i, item in enumerate(raw_children):
            if type(item) is not dict:
                raise f.wrong_type(f"children[{i}]", "an object", item)
            children.append(_parse_pool(item, source, f"{prefix}children[{i}].", depth + 1,
                                        limits, cls, _POOL_KEYS))

    parents: tuple[str, ...] = ()
    if depth == 0 and "parents" in d:
        raw_parents = d["parents"]
        if type(raw_parents) is not list:
            raise f.wrong_type("parents", "an array of pool names", raw_parents)
        if len(raw_parents) > limits.max_depth:
            raise f.bad("parents", f"more than {limits.max_depth} enclosing pools")
        for i, name in enumerate(raw_parents):
            if type(name) is not str:
                raise f.wrong_type(f"parents[{i}]", "a string", name)
            problem = _text_ok(name, limits)
            if problem:
                raise f.bad(f"parents[{i}]", problem)
        parents = tuple(raw_parents)
    extra = f.extras(d, known, "") or {}
    return cls(pool=pool, pid=pid, taken_at=taken_at, reason=reason, backing=backing,
               totals=totals, tags=tags, blocks=blocks,
               children=children,  # type: ignore[arg-type]
               source=source, extra=extra, parents=parents)


def _parse_tags(raw: list[Any], f: _Fields) -> tuple[list[TagStat], set[str], int, int]:
    fast = _parse_tags_fast(raw, f.limits)
    if fast is not None:
        return fast
    # Something is off (or a tag has fields this reader does not know): one
    # tag at a time, for the exact message or the extras.
    tags: list[TagStat] = []
    seen: dict[str, int] = {}
    sum_blocks = sum_bytes = 0
    for i, item in enumerate(raw):
        stat = _parse_tag(item, i, f)
        at = seen.get(stat.tag)
        if at is not None:
            if "\ufffd" not in stat.tag:
                raise f.bad(f"tags[{i}].tag", f"tag {shown(stat.tag)} is listed twice")
            # Tags that differ only in bytes that are not UTF-8 are written alike (each
            # maximal invalid sequence as U+FFFD): one tag here, its counts summed (its
            # peak, the sum of theirs, is an upper bound), its lists (the stacks of a pool
            # that records them) joined.
            first = tags[at]
            extra = dict(first.extra or {})
            for key, value in (stat.extra or {}).items():
                old = extra.get(key)
                extra[key] = old + value if isinstance(old, list) and isinstance(value, list) else \
                    value if old is None else old
            tags[at] = first._replace(blocks=first.blocks + stat.blocks, bytes=first.bytes + stat.bytes,
                                      peak_bytes=first.peak_bytes + stat.peak_bytes,
                                      allocs=first.allocs + stat.allocs, extra=extra or None)
        else:
            seen[stat.tag] = len(tags)
            tags.append(stat)
        sum_blocks += stat.blocks
        sum_bytes += stat.bytes
    return tags, set(seen), sum_blocks, sum_bytes


_TAG_TYPES = {dict}
_INT_TYPES = {int}
_STR_TYPES = {str}


def _parse_tags_fast(raw: list[Any], limits: Limits
                     ) -> tuple[list[TagStat], set[str], int, int] | None:
    """The common case, a column at a time with the loops in C: every tag an
    object of exactly the five known fields, with valid values.  None when
    any check fails (the caller then finds and names the problem)."""
    if not raw:
        return [], set(), 0, 0
    if set(map(type, raw)) != _TAG_TYPES or set(map(len, raw)) != {5}:
        return None
    try:
        names = [item["tag"] for item in raw]
        columns = [[item[key] for item in raw] for key in _TAG_KEYS[1:]]
    except KeyError:
        return None
    if set(map(type, names)) != _STR_TYPES:
        return None
    for column in columns:
        if (set(map(type, column)) != _INT_TYPES or min(column) < 0
                or max(column) > MAX_COUNT):
            return None
    seen = set(names)
    if len(seen) != len(names) or max(map(len, names)) > limits.max_text:
        return None
    joined = "".join(names)
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            return None
    blocks, nbytes, peaks, allocs = columns
    tags = list(map(TagStat, names, blocks, nbytes, peaks, allocs))
    return tags, seen, sum(blocks), sum(nbytes)


def _parse_tag(item: Any, i: int, f: _Fields) -> TagStat:
    if type(item) is not dict:
        raise f.wrong_type(f"tags[{i}]", "an object", item)
    where = f"tags[{i}]."
    return TagStat(f.text(item, "tag", where), f.count(item, "blocks", where),
                   f.count(item, "bytes", where), f.count(item, "peak_bytes", where),
                   f.count(item, "allocs", where), f.extras(item, _TAG_KEYS, where))


def _parse_blocks(raw: Any, seen: set[str], f: _Fields) -> list[BlockRecord]:
    if type(raw) is not list:
        raise f.wrong_type("blocks", "an array", raw)
    out: list[BlockRecord] = []
    for i, item in enumerate(raw):
        where = f"blocks[{i}]."
        if type(item) is not dict:
            raise f.wrong_type(f"blocks[{i}]", "an object", item)
        addr = f.text(item, "address", where)
        if not _ADDRESS.match(addr) or len(addr) > 18:
            raise f.bad(where + "address", f"expected a lower-case hex string like "
                                           f"0x7f3a5c001040, got {shown(addr)}")
        rec = BlockRecord(int(addr, 16), f.count(item, "size", where),
                          f.text(item, "tag", where),
                          f.extras(item, _BLOCK_KEYS, where) if len(item) != 3 else None)
        if rec.tag not in seen:
            raise f.bad(where + "tag", f"tag {shown(rec.tag)} is not in 'tags'")
        out.append(rec)
    return out


@overload
def load_snapshot(path: str | os.PathLike[str], *, limits: Limits = ...) -> PoolReport: ...
@overload
def load_snapshot(path: str | os.PathLike[str], *, limits: Limits = ...,
                  cls: type[P]) -> P: ...


def load_snapshot(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
                  cls: type[PoolReport] = PoolReport) -> PoolReport:
    """:func:`read_json` then :func:`parse_snapshot`."""
    name = os.fspath(path)
    doc = read_json(name, limits=limits)
    return parse_snapshot(doc, "<stdin>" if name == "-" else name, limits=limits, cls=cls)


# ------------------------------------------------------------------ writing
def to_dict(report: PoolReport) -> dict[str, Any]:
    """The report as JSON-ready data (key order as in the format, extras last)."""
    d: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    d.update(_body(report))
    return d


def _body(r: PoolReport) -> dict[str, Any]:
    t = r.totals
    totals: dict[str, Any] = {"blocks": t.blocks, "bytes": t.bytes,
                              "peak_bytes": t.peak_bytes, "allocs": t.allocs}
    if t.reserved_bytes is not None:
        totals["reserved_bytes"] = t.reserved_bytes
    if t.extra:
        totals.update(t.extra)
    d: dict[str, Any] = {
        "pool": r.pool, "pid": r.pid, "taken_at": r.taken_at,
        "reason": r.reason, "backing": r.backing, "totals": totals,
        "tags": [_with_extra({"tag": s.tag, "blocks": s.blocks, "bytes": s.bytes,
                              "peak_bytes": s.peak_bytes, "allocs": s.allocs}, s.extra)
                 for s in r.tags],
    }
    if r.blocks is not None:
        d["blocks"] = [_with_extra({"address": f"{b.address:#x}", "size": b.size,
                                    "tag": b.tag}, b.extra) for b in r.blocks]
    if r.children:
        d["children"] = [_body(c) for c in r.children]
    d.update(r.extra)
    if r.parents:
        d["parents"] = list(r.parents)
    return d


def _with_extra(d: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    if extra:
        d.update(extra)
    return d


def dumps(report: PoolReport) -> str:
    """The report text, laid out as the C library writes it (fields this
    writer does not know follow the known ones of their object)."""
    return ('{"format": "ringpool-snapshot", "version": 1,\n  '
            + _dump_body(report) + "\n}\n")


def _dump_body(r: PoolReport) -> str:
    s = json_str
    t = r.totals
    out = [f'"pool": {s(r.pool)}, "pid": {r.pid}, "taken_at": {s(r.taken_at)}, '
           f'"reason": {s(r.reason)}, "backing": {s(r.backing)},\n']
    reserved = "" if t.reserved_bytes is None else f', "reserved_bytes": {t.reserved_bytes}'
    out.append(f'  "totals": {{"blocks": {t.blocks}, "bytes": {t.bytes}, '
               f'"peak_bytes": {t.peak_bytes}, "allocs": {t.allocs}{reserved}'
               f'{_dump_extra(t.extra)}}},\n')
    out.append('  "tags": [')
    out.append(",".join(
        f'\n    {{"tag": {s(x.tag)}, "blocks": {x.blocks}, "bytes": {x.bytes}, '
        f'"peak_bytes": {x.peak_bytes}, "allocs": {x.allocs}{_dump_extra(x.extra)}}}'
        for x in r.tags))
    out.append("\n  ]" if r.tags else "]")
    if r.blocks is not None:
        out.append(',\n  "blocks": [')
        out.append(",".join(f'\n    {{"address": "{b.address:#x}", "size": {b.size}, '
                            f'"tag": {s(b.tag)}{_dump_extra(b.extra)}}}' for b in r.blocks))
        out.append("\n  ]" if r.blocks else "]")
    if r.children:
        out.append(',\n  "children": [')
        out.append(",".join("\n  {" + _dump_body(c) + "}" for c in r.children))
        out.append("\n  ]")
    for key, value in r.extra.items():
        out.append(f",\n  {s(key)}: {json.dumps(value, ensure_ascii=False)}")
    if r.parents:
        out.append(',\n  "parents": [' + ", ".join(map(s, r.parents)) + "]")
    return "".join(out)


def _dump_extra(extra: Mapping[str, Any] | None) -> str:
    if not extra:
        return ""
    return "".join(f", {json_str(k)}: {json.dumps(v, ensure_ascii=False)}"
                   for k, v in extra.items())


def json_str(value: str) -> str:
    """A JSON string escaped as the C library does (UTF-8 kept, controls as
    \\u00XX, lone surrogates as U+FFFD)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    out = ['"']
    for ch in value:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


__all__ = [
    "FORMAT", "PRELOAD_FORMAT", "VERSION", "REASONS", "BACKINGS", "MAX_COUNT",
    "ReportFormatError", "Limits", "DEFAULT_LIMITS",
    "TagStat", "BlockRecord", "Totals", "PoolReport", "PoolPath",
    "path_text", "path_names", "path_shown",
    "read_bytes", "decode_json", "read_json", "report_format", "check_json_values", "gc_paused",
    "parse_snapshot", "load_snapshot", "to_dict", "dumps", "json_str", "shown",
]
