"""The report schema: one reader for every ringpool report file.

Pure Python (no C extension is imported), so it serves ``allocator.Snapshot``,
the CLI (``show``, ``diff``, the leak gate) and every exporter alike.  It does
three things, each with a limit and a one-line error:

1. **read** a file: only a regular file or ``-`` (standard input); FIFOs,
   devices and directories are refused before anything is read, and at most
   ``Limits.max_bytes`` bytes are read (:func:`read_bytes`, :func:`read_json`);
2. **decode** strict UTF-8 JSON: bare ``NaN``/``Infinity``, integers of more
   than 4300 digits and nesting deeper than a report within the limits has
   are refused with a message, never a traceback (:func:`decode_json`);
3. **validate and normalize** a decoded ``ringpool-snapshot`` document into
   typed records (:func:`parse_snapshot`): every count an integer from 0 to
   2**64 - 1, strings valid Unicode (no lone surrogates) and at most
   ``Limits.max_text`` characters, children nested at most
   ``Limits.max_depth`` levels, tags unique, totals equal to the tags' sums.

Nothing reads, checks, compares or writes a report by recursion: with a
raised ``Limits.max_depth``, a report of child pools nested deeper than the
interpreter's recursion limit is read, compared and written back.

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
import itertools
import json
import math
import os
import re
import stat
import sys
import time
import dataclasses
from dataclasses import dataclass, field
from typing import (IO, Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence, SupportsIndex,
                    TypeVar, cast, overload)

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

    # The generated __eq__ and __repr__ compared and wrote the children by
    # recursion: a report nested deeper than the recursion limit raised
    # RecursionError.  These give the same answers without recursion.
    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _reports_equal(self, other)  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return _report_repr(self)

    # pickle and copy.deepcopy took a frame per level too: a report is pickled
    # as the list of its pools, depth first, each without its children.
    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        nodes = []
        for report in self.pools():
            state = dict(report.__dict__)
            kids = state.pop("children")
            nodes.append((type(report), state, len(kids)))
        return (_rebuild, (nodes,))

    def __copy__(self) -> PoolReport:
        """A shallow copy (the children list shared), as without __reduce_ex__."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def pools(self) -> Iterator[PoolReport]:
        """This pool and its descendants, depth first (:meth:`walk_paths`'
        order), without their paths.  ValueError for a pool among its own
        descendants."""
        stack: list[Any] = [self]
        inside: set[int] = set()
        while stack:
            report = stack.pop()
            if type(report) is _Exit:
                inside.discard(id(report.report))
                continue
            if id(report) in inside:
                raise _circular(report)
            yield report
            if report.children:
                inside.add(id(report))
                stack.append(_Exit(report))
                stack.extend(reversed(report.children))

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

# The fields the generated __eq__ compared, children aside, in its order.
_COMPARED = ("pool", "pid", "taken_at", "reason", "backing", "totals", "tags", "blocks",
             "extra", "parents")


class _Exit(NamedTuple):
    """A marker on a walk's stack: the walk leaves ``report`` (for cycles)."""

    report: PoolReport


def _rebuild(nodes: list[tuple[type[PoolReport], dict[str, Any], int]]) -> PoolReport:
    """The report whose pools :meth:`PoolReport.__reduce_ex__` listed."""
    top: list[PoolReport] = []
    # the pools being filled, innermost last, with the children each still waits for
    open_: list[list[Any]] = []
    for cls, state, n in nodes:
        report = object.__new__(cls)
        report.__dict__.update(state)
        report.children = []
        if open_:
            parent = open_[-1]
            parent[0].children.append(report)
            parent[1] -= 1
            if parent[1] == 0:
                open_.pop()
        else:
            top.append(report)
        if n:
            open_.append([report, n])
    return top[0]


def _circular(report: PoolReport) -> ValueError:
    return ValueError(f"pool {shown(report.pool)} is among its own descendants "
                      "(circular children)")


def _own_method(value: object, name: str) -> bool:
    """``value`` is a report whose ``name`` method is PoolReport's own (not a
    subclass's, which then decides for its instances)."""
    return (isinstance(value, PoolReport)
            and getattr(type(value), name) is getattr(PoolReport, name))


def _reports_equal(a: PoolReport, b: PoolReport) -> bool:
    """What the generated __eq__ answered (equal classes, equal fields, the
    children pairwise), without recursion; a pair met again (a pool among its
    own descendants) is taken as equal, as an identical pair is."""
    stack = [(a, b)]
    seen: set[tuple[int, int]] = set()
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        if not (_own_method(x, "__eq__") and x.__class__ is y.__class__):
            if not x == y:
                return False
            continue
        pair = (id(x), id(y))
        if pair in seen:
            continue
        seen.add(pair)
        for name in _COMPARED:
            u, v = getattr(x, name), getattr(y, name)
            if not (u is v or u == v):
                return False
        xs, ys = x.children, y.children
        if type(xs) is not list or type(ys) is not list:
            if not xs == ys:
                return False
            continue
        if len(xs) != len(ys):
            return False
        stack.extend(zip(reversed(xs), reversed(ys)))
    return True


def _report_repr(report: PoolReport) -> str:
    """The generated __repr__'s text (``Class(pool=..., children=[...], ...)``),
    without recursion; a pool among its own descendants is ``...``."""
    out: list[str] = []
    stack: list[Any] = [report]
    inside: set[int] = set()
    while stack:
        item = stack.pop()
        if type(item) is str:
            out.append(item)
            continue
        if type(item) is _Exit:
            inside.discard(id(item.report))
            continue
        if not _own_method(item, "__repr__"):
            out.append(repr(item))
            continue
        if id(item) in inside:
            out.append("...")
            continue
        inside.add(id(item))
        fields = [(f.name, getattr(item, f.name)) for f in dataclasses.fields(item) if f.repr]
        head: list[str] = []
        tail: list[str] = []
        at = head
        for name, value in fields:
            if name == "children" and type(value) is list:
                at = tail
                continue
            at.append(f"{name}={value!r}")
        if at is head:         # children not a list: written as it is
            out.append(f"{type(item).__qualname__}({', '.join(head)})")
            inside.discard(id(item))
            continue
        out.append(f"{type(item).__qualname__}(" + "".join(h + ", " for h in head)
                   + "children=[")
        stack.append("]" + "".join(", " + t for t in tail) + ")")
        stack.append(_Exit(item))
        for i, child in enumerate(reversed(item.children)):
            stack.append(child)
            if i != len(item.children) - 1:
                stack.append(", ")
    return "".join(out)


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
            data = _read_report_bytes(getattr(stream, "read1", stream.read), stream.read,
                                      cap + 1, "<stdin>")
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
        os.set_blocking(fd, True)
        data = _read_report_bytes(lambda n: os.read(fd, n), lambda n: read_fd(fd, n, 1 << 24),
                                  cap + 1, name)
    except OSError as exc:
        raise ReportFormatError(name, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise ReportFormatError(name, f"more than {cap} bytes: larger than the "
                                      f"{_size(cap)} a report may have{limits.size_hint}")
    return data


#: What JSON reads as whitespace before a value.
_JSON_BLANKS = b" \t\n\r"
#: How much a report is read by before its first byte is checked.
_HEAD_BYTES = 1 << 16


def _read_report_bytes(read_some: Callable[[int], bytes], read_rest: Callable[[int], bytes],
                       most: int, source: str) -> bytes:
    """Up to ``most`` bytes: ``read_some(n)`` (at most n bytes, whatever is there) until
    the first byte that is not JSON whitespace, then ``read_rest(n)`` (n bytes or the end).
    A report is a JSON object: when that byte is not ``{`` the input is refused at once,
    without reading up to the limit (``show - < /dev/zero`` read 1 GiB to say so)."""
    chunks: list[bytes] = []
    left = most
    while left > 0:
        chunk = read_some(min(left, _HEAD_BYTES))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        left -= len(chunk)
        body = chunk.lstrip(_JSON_BLANKS)
        if body:
            if body[:1] != b"{":
                raise ReportFormatError(source, "not a report: a report must be a JSON object, "
                                                "which starts with '{', and this starts with "
                                                f"{_first_byte(body[0])}")
            break
    if left > 0:
        chunks.append(read_rest(left))
    return b"".join(chunks)


def _first_byte(byte: int) -> str:
    if 0x21 <= byte < 0x7F:
        return f"'{chr(byte)}'"
    return f"byte 0x{byte:02x}"


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


def json_nesting(limits: Limits) -> int:
    """The deepest JSON nesting a report within ``limits`` has: two levels per
    level of child pools (the pool's object, its ``children`` array), the
    fields the reader does not know, and the few levels of the report's own
    layout (the root object, ``tags``, a tag, ``blocks``, a block)."""
    return 2 * limits.max_depth + limits.max_nesting + 4


def decode_json(raw: bytes, source: str, *, max_nesting: int | None = None) -> Any:
    """Strict UTF-8 JSON; ReportFormatError (one line) for anything else.

    The json module decodes by recursion, so it refuses nesting deeper than
    the interpreter's recursion limit allows; given ``max_nesting``, a
    document nested deeper than that but not deeper than ``max_nesting`` is
    decoded again without recursion (the same values), and one nested deeper
    than ``max_nesting`` is refused (JSON "nested too deeply")."""
    if not raw.strip():
        raise ReportFormatError(source, "empty file, not a report")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportFormatError(source, f"not UTF-8 text (byte {exc.start})") from None
    try:
        try:
            with gc_paused():
                return json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            pass
        # Nested deeper than the json module could go from here.
        if max_nesting is None or max_nesting < _json_module_reach():
            raise ReportFormatError(source, "invalid report: JSON nested too deeply for this "
                                            "reader")
        try:
            with gc_paused():
                return _loads_deep(text, max_nesting)
        except _TooDeep:
            raise ReportFormatError(source, f"invalid report: JSON nested too deeply for this "
                                            f"reader (more than {max_nesting} levels)") from None
    except ReportFormatError:
        raise       # a ValueError itself: not one of the decoders' errors below
    except (json.JSONDecodeError, _BadConstant, MemoryError, ValueError) as exc:
        # The same errors, whichever decoder met them.
        raise _decode_error(exc, source, raw, text) from None


def _decode_error(exc: Exception, source: str, raw: bytes, text: str) -> ReportFormatError:
    """What json.loads or _loads_deep raised on ``text``, as the reader says it."""
    if isinstance(exc, json.JSONDecodeError):      # a ValueError: before the one below
        # A report cut short (a crash while writing, a full disk) does not end its object.
        stripped = text.strip()
        cut = stripped.startswith("{") and not stripped.endswith("}")
        what = "truncated JSON (the object never closes)" if cut else "invalid JSON"
        return ReportFormatError(source, f"{what}: {exc.msg} (line {exc.lineno}, "
                                         f"column {exc.colno})")
    if isinstance(exc, _BadConstant):
        return ReportFormatError(source, f"invalid JSON: {exc.args[0]} is not a JSON number")
    if isinstance(exc, MemoryError):
        return ReportFormatError(source, f"out of memory decoding {len(raw)} bytes of JSON")
    # A ValueError: e.g. an integer of more than 4300 digits.
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "integer string conversion" in first:
        first = ("an integer has more digits than this reader accepts "
                 f"({sys.get_int_max_str_digits()})")
    return ReportFormatError(source, f"invalid JSON: {first}")


def _json_module_reach() -> int:
    """How deep the json module's decoder nests from the caller's frame (each
    level of JSON is one level of the interpreter's recursion limit), less a
    margin: a document it refused as nested too deeply is deeper than this."""
    depth = 0
    frame = sys._getframe(1)
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return sys.getrecursionlimit() - depth - 50


class _TooDeep(Exception):
    pass


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_JSON_CONSTANTS = {"null": None, "true": True, "false": False}
#: The json module's string scanner (its C one when there is one).
_scanstring: Callable[[str, int, bool], tuple[str, int]] = getattr(json.decoder, "scanstring")


def _loads_deep(text: str, max_nesting: int) -> Any:
    """``json.loads(text, parse_constant=...)`` without recursion, for the
    documents the json module cannot nest into: the same values (duplicate
    keys: the last one), json.JSONDecodeError for text that is not JSON,
    _TooDeep past ``max_nesting`` levels.  Strings and numbers are read by
    the json module's own scanners."""
    scanstring = _scanstring
    space = cast(Callable[[str, int], "re.Match[str]"], _JSON_SPACE.match)
    number = _JSON_NUMBER.match
    Error = json.JSONDecodeError
    # Open containers, innermost last: [the list or dict, the key a value is for].
    open_: list[list[Any]] = []
    pos = space(text, 0).end()
    while True:
        # A value starts at pos.
        ch = text[pos:pos + 1]
        value: Any
        if ch == "{" or ch == "[":
            if len(open_) >= max_nesting:
                raise _TooDeep
            pos = space(text, pos + 1).end()
            container: Any = {} if ch == "{" else []
            closer = "}" if ch == "{" else "]"
            if text[pos:pos + 1] == closer:
                value, pos = container, pos + 1
            else:
                open_.append([container, None])
                if ch == "{":
                    if text[pos:pos + 1] != '"':
                        raise Error("Expecting property name enclosed in double quotes",
                                    text, pos)
                    key, pos = scanstring(text, pos + 1, True)
                    pos = space(text, pos).end()
                    if text[pos:pos + 1] != ":":
                        raise Error("Expecting ':' delimiter", text, pos)
                    pos = space(text, pos + 1).end()
                    open_[-1][1] = key
                continue
        elif ch == '"':
            value, pos = scanstring(text, pos + 1, True)
        else:
            m = number(text, pos)
            if m is not None and not text.startswith("-Infinity", pos):
                integer, frac, exp = m.groups()
                value = float(integer + (frac or "") + (exp or "")) if frac or exp \
                    else int(integer)
                pos = m.end()
            else:
                for word in ("null", "true", "false", "NaN", "Infinity", "-Infinity"):
                    if text.startswith(word, pos):
                        value = _JSON_CONSTANTS[word] if word in _JSON_CONSTANTS \
                            else _refuse_constant(word)
                        pos += len(word)
                        break
                else:
                    raise Error("Expecting value", text, pos)
        # A value ends before pos: it goes into the innermost open container,
        # which may end after it (and so be a value of the one around it).
        while True:
            pos = space(text, pos).end()
            if not open_:
                if pos != len(text):
                    raise Error("Extra data", text, pos)
                return value
            top = open_[-1]
            container = top[0]
            if type(container) is dict:
                container[top[1]] = value
                ch = text[pos:pos + 1]
                if ch == "}":
                    open_.pop()
                    value, pos = container, pos + 1
                    continue
                if ch != ",":
                    raise Error("Expecting ',' delimiter", text, pos)
                pos = space(text, pos + 1).end()
                if text[pos:pos + 1] != '"':
                    raise Error("Expecting property name enclosed in double quotes",
                                text, pos)
                key, pos = scanstring(text, pos + 1, True)
                pos = space(text, pos).end()
                if text[pos:pos + 1] != ":":
                    raise Error("Expecting ':' delimiter", text, pos)
                top[1] = key
                pos = space(text, pos + 1).end()
                break
            container.append(value)
            ch = text[pos:pos + 1]
            if ch == "]":
                open_.pop()
                value, pos = container, pos + 1
                continue
            if ch != ",":
                raise Error("Expecting ',' delimiter", text, pos)
            pos = space(text, pos + 1).end()
            break


def read_json(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
              stdin: IO[bytes] | None = None) -> Any:
    """:func:`read_bytes` then :func:`decode_json`, to the nesting a report
    within ``limits`` may have (:func:`json_nesting`)."""
    name = os.fspath(path)
    raw = read_bytes(name, limits=limits, stdin=stdin)
    return decode_json(raw, "<stdin>" if name == "-" else name,
                       max_nesting=json_nesting(limits))


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


_PLAIN_KINDS = frozenset({str, int, bool, type(None)})


def _plain(values: Iterable[Any], limits: Limits) -> bool:
    """True when each of ``values`` is None, a boolean, an integer in range or ASCII text
    of at most ``limits.max_text`` characters: nothing :func:`_check_values` would report
    or descend into. False sends the container through the item-by-item checks, which
    name what is wrong."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return not values or MIN_INT <= min(values) and max(values) <= MAX_INT
    if not kinds <= _PLAIN_KINDS:
        return False
    if int in kinds:
        ints = [v for v in values if type(v) is int]
        if not (MIN_INT <= min(ints) and max(ints) <= MAX_INT):
            return False
    if str in kinds:
        texts = [v for v in values if type(v) is str]
        if not ("".join(texts).isascii() and max(map(len, texts)) <= limits.max_text):
            return False
    return True


def _plain_keys(keys: Iterable[Any], limits: Limits) -> bool:
    """True when every one of ``keys`` is ASCII text within ``limits.max_text``: no key
    :func:`_text_ok` would refuse."""
    keys = list(keys)
    if set(map(type, keys)) - {str}:
        return False
    return "".join(keys).isascii() and (not keys or max(map(len, keys)) <= limits.max_text)


def _plain_items(items: list[Any], depth: int, limits: Limits) -> bool:
    """True when ``items`` (a list's or an object's values, at nesting ``depth``) hold
    nothing :func:`_check_values` would report: plain values (:func:`_plain`), or lists or
    objects of plain values within the nesting limit (a report's stacks, frames and
    sites: a hundred thousand small containers checked in a few passes)."""
    kinds = set(map(type, items))
    if kinds <= _PLAIN_KINDS:
        return _plain(items, limits)
    if depth >= limits.max_nesting:
        return False
    if kinds == {list}:
        return _plain(list(itertools.chain.from_iterable(items)), limits)
    if kinds == {dict}:
        return (_plain_keys(itertools.chain.from_iterable(items), limits)
                and _plain(list(itertools.chain.from_iterable(map(dict.values, items))), limits))
    return False


def check_json_values(value: Any, source: str, where: str,
                      limits: Limits = DEFAULT_LIMITS) -> None:
    """Checks any decoded JSON value for what readers downstream cannot
    handle: integers outside [-2**63, 2**64 - 1], numbers that are not
    finite, strings with lone surrogates or longer than ``limits.max_text``,
    and nesting deeper than ``limits.max_nesting``.  Iterative (no recursion).
    ``where`` names the field in messages."""
    _check_values(value, source, where, limits)


def _check_values(value: Any, source: str, where: str | Callable[[], str],
                  limits: Limits) -> None:
    """:func:`check_json_values`, ``where`` also a function that gives it
    (called only for a message).  An item's place is kept as links (its
    container's place, its key or index) and written out for a message."""
    Place = tuple[Any, "str | int"]  # (the container's place or None, key or index)

    def field(place: Place | None) -> str:
        steps: list[str | int] = []
        while place is not None:
            place, step = place
            steps.append(step)
        path = where if isinstance(where, str) else where()
        for step in reversed(steps):
            if isinstance(step, int):
                path = f"{path}[{step}]"
            else:
                path = f"{path}.{step}" if path else step
        return path

    stack: list[tuple[Any, Place | None, int]] = [(value, None, 0)]
    while stack:
        item, place, depth = stack.pop()
        kind = type(item)
        if kind is str:
            problem = _text_ok(item, limits)
            if problem:
                raise ReportFormatError(source, problem, field(place))
        elif kind is int:
            if not MIN_INT <= item <= MAX_INT:
                raise ReportFormatError(source, f"{shown(item)} is out of range "
                                                f"[{MIN_INT}, {MAX_INT}]", field(place))
        elif kind is float:
            if not math.isfinite(item):
                raise ReportFormatError(source, f"{item!r} is not a finite number",
                                        field(place))
        elif kind is dict:
            if depth >= limits.max_nesting:
                raise ReportFormatError(source, f"nested deeper than {limits.max_nesting} "
                                                "levels", field(place))
            if not _plain_keys(item, limits):
                for key in item:
                    problem = _text_ok(key, limits)
                    if problem:
                        raise ReportFormatError(source, f"a key {problem}", field(place))
            if not _plain_items(list(item.values()), depth + 1, limits):
                stack.extend((sub, (place, key), depth + 1) for key, sub in item.items())
        elif kind is list:
            if depth >= limits.max_nesting:
                raise ReportFormatError(source, f"nested deeper than {limits.max_nesting} "
                                                "levels", field(place))
            if not _plain_items(item, depth + 1, limits):
                stack.extend((sub, (place, i), depth + 1) for i, sub in enumerate(item))
        elif item is None or kind is bool:
            pass
        else:
            raise ReportFormatError(source, f"unexpected value {shown(item)}", field(place))


# ------------------------------------------------------- ringpool-snapshot
class _Fields:
    """Field checks that raise ReportFormatError naming source and field."""

    __slots__ = ("source", "limits", "parent", "index")

    def __init__(self, source: str, limits: Limits, parent: _Fields | None = None,
                 index: int = 0) -> None:
        self.source = source
        self.limits = limits
        # A child pool's fields are named after its place, children[i]. under its
        # parent's: written out only for a message (each pool holding its own
        # prefix took memory quadratic in the depth).
        self.parent = parent
        self.index = index

    @property
    def prefix(self) -> str:
        """``children[i].children[j].`` down to this pool, ``""`` for the root."""
        parts: list[str] = []
        f: _Fields | None = self
        while f is not None and f.parent is not None:
            parts.append(f"children[{f.index}].")
            f = f.parent
        return "".join(reversed(parts))

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
                _check_values(value, self.source, lambda: self.prefix + where + key,
                              self.limits)
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
        return _parse_pools(doc, source, limits, cls)


def _parse_pools(doc: dict[str, Any], source: str, limits: Limits, cls: type[P]) -> P:
    """The document's pools, without recursion (with a raised ``max_depth``, a
    report nests as deep as memory allows), checked in the order the fields
    appear: a pool's own fields up to its children, each child's whole
    subtree in turn, then the pool's ``parents`` and the fields the reader
    does not know."""
    top: list[P] = []
    # (the object, its field checks, its depth, the keys it may have, its parent's list)
    stack: list[Any] = [(doc, _Fields(source, limits), 0, _TOP_KEYS + _POOL_KEYS + ("parents",),
                         top)]
    while stack:
        item = stack.pop()
        if type(item) is _Made:
            # every child is made: the pool's remaining checks, then the pool
            item.into.append(_finish_pool(item, source, limits, cls))
            continue
        if type(item) is _Child:
            # a child's type is checked when the children before it are read
            raw = item.raw[item.at]
            if type(raw) is not dict:
                raise item.f.wrong_type(f"children[{item.at}]", "an object", raw)
            stack.append((raw, _Fields(source, limits, item.f, item.at), item.depth,
                          _POOL_KEYS, item.into))
            continue
        d, f, depth, known, into = item
        made = _start_pool(d, f, depth, known, into)
        stack.append(made)
        for i in reversed(range(len(made.raw_children))):
            stack.append(_Child(made.raw_children, i, made.f, depth + 1, made.children))
    return top[0]


class _Child(NamedTuple):
    """The i-th of a pool's raw children, to be read (``into`` its parent's list)."""

    raw: list[Any]
    at: int
    f: _Fields
    depth: int
    into: list[Any]


@dataclass
class _Made:
    """A pool whose own fields are read, waiting for its children."""

    d: dict[str, Any]
    f: _Fields
    depth: int
    known: tuple[str, ...]
    into: list[Any]
    fields: dict[str, Any]
    raw_children: list[Any]
    children: list[Any]


def _start_pool(d: dict[str, Any], f: _Fields, depth: int, known: tuple[str, ...],
                into: list[Any]) -> _Made:
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

    raw_children: list[Any] = []
    if "children" in d:
        raw_children = d["children"]
        if type(raw_children) is not list:
            raise f.wrong_type("children", "an array", raw_children)
        if raw_children and depth >= f.limits.max_depth:
            raise f.bad("children", f"child pools nested deeper than {f.limits.max_depth} "
                                    "levels")
    fields = dict(pool=pool, pid=pid, taken_at=taken_at, reason=reason, backing=backing,
                  totals=totals, tags=tags, blocks=blocks)
    return _Made(d, f, depth, known, into, fields, raw_children, [])


def _finish_pool(made: _Made, source: str, limits: Limits, cls: type[P]) -> P:
    d, f, depth = made.d, made.f, made.depth
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
    extra = f.extras(d, made.known, "") or {}
    return cls(**made.fields, children=made.children, source=source, extra=extra,
               parents=parents)


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


def _body(root: PoolReport) -> dict[str, Any]:
    """The pool's object and its children's, nested, without recursion."""
    top: list[dict[str, Any]] = []
    stack: list[Any] = [(root, top)]
    inside: set[int] = set()
    while stack:
        item = stack.pop()
        if type(item) is _Exit:
            inside.discard(id(item.report))
            continue
        r, into = item
        if id(r) in inside:
            raise _circular(r)
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
            # filled as the children are written, each after the one before it
            kids: list[dict[str, Any]] = []
            d["children"] = kids
            inside.add(id(r))
            stack.append(_Exit(r))
            stack.extend((c, kids) for c in reversed(r.children))
        d.update(r.extra)
        if r.parents:
            d["parents"] = list(r.parents)
        into.append(d)
    return top[0]


def _with_extra(d: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    if extra:
        d.update(extra)
    return d


def dumps(report: PoolReport) -> str:
    """The report text, laid out as the C library writes it (fields this
    writer does not know follow the known ones of their object)."""
    return ('{"format": "ringpool-snapshot", "version": 1,\n  '
            + _dump_body(report) + "\n}\n")


def _dump_body(root: PoolReport) -> str:
    """The pool's text and its children's, nested, without recursion: each
    pool's text up to its children, then theirs, then the rest of its own."""
    s = json_str
    out: list[str] = []
    stack: list[Any] = [root]
    inside: set[int] = set()
    while stack:
        r = stack.pop()
        if type(r) is str:
            out.append(r)
            continue
        if type(r) is _Exit:
            inside.discard(id(r.report))
            continue
        if id(r) in inside:
            raise _circular(r)
        t = r.totals
        out.append(f'"pool": {s(r.pool)}, "pid": {r.pid}, "taken_at": {s(r.taken_at)}, '
                   f'"reason": {s(r.reason)}, "backing": {s(r.backing)},\n')
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
        rest = []
        for key, value in r.extra.items():
            rest.append(f",\n  {s(key)}: {json.dumps(value, ensure_ascii=False)}")
        if r.parents:
            rest.append(',\n  "parents": [' + ", ".join(map(s, r.parents)) + "]")
        if not r.children:
            out.extend(rest)
            continue
        out.append(',\n  "children": [')
        # pushed in reverse: "\n  {" child "}", ",\n  {" next child "}", ..., then the rest
        stack.append("\n  ]" + "".join(rest))
        stack.append(_Exit(r))
        inside.add(id(r))
        last = len(r.children) - 1
        for i, c in enumerate(reversed(r.children)):
            stack.append("}")
            stack.append(c)
            stack.append("\n  {" if i == last else ",\n  {")
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
    "read_bytes", "decode_json", "json_nesting", "read_json", "report_format",
    "check_json_values", "gc_paused",
    "parse_snapshot", "load_snapshot", "to_dict", "dumps", "json_str", "shown",
]
