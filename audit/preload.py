"""Reports of the malloc interposer (``libringpool-preload.so``).

The interposer writes one JSON file per process (``"format": "ringpool-preload"``,
``"version": 1``, see docs/preload.md): outstanding blocks and bytes per call
site, each site a module path and an offset from the module's load address,
and (with a stack depth above 1) the whole stack of each site through the
report's ``frames`` and ``stacks`` tables. This module loads and checks those
files, symbolizes every frame to function and ``file:line`` with binutils'
``addr2line`` (one batch per module, cached), finds each stack's first frame
that is not an allocation wrapper, applies suppressions (a default list for
the C library's exit-time buffers, plus user files in LeakSanitizer's
``leak:PATTERN`` format) and groups the sites into rows for the CLI.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
import os
import re
import stat
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from audit import elfsym, schema

FORMAT = "ringpool-preload"
VERSION = 1
BY_CHOICES = ("site", "stack", "function", "file", "module")

# Allocation wrappers: functions that only pass an allocation on. A row is
# credited to the first frame of its stack that matches none of these
# (fnmatch patterns on the demangled function name); --wrapper adds more.
DEFAULT_WRAPPERS: tuple[str, ...] = (
    # the C library's malloc family and its string/printf allocators
    "malloc", "calloc", "realloc", "reallocarray", "free", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "__libc_malloc", "__libc_calloc",
    "__libc_realloc", "__libc_memalign", "strdup", "strndup", "__strdup", "__strndup",
    "wcsdup", "asprintf", "vasprintf", "__asprintf*", "__vasprintf*", "___asprintf*",
    "open_memstream", "getline", "getdelim", "__getdelim", "realpath", "__realpath*",
    # C++: operator new and the standard library's allocating members
    "operator new*", "operator new[]*", "std::*", "__gnu_cxx::*",
    # libiberty, git, gnulib, glib and friends
    "xmalloc", "xcalloc", "xrealloc", "xstrdup", "xstrndup", "xmemdup", "xmemdupz",
    "xmallocz", "xmallocz_gently", "xzalloc", "xnmalloc", "xnrealloc", "x2realloc",
    "x2nrealloc", "xcharalloc", "ximalloc", "xicalloc", "xirealloc", "xizalloc",
    "xreallocarray", "xstrcat", "xasprintf", "xvasprintf", "xstrvprintf",
    "xstrprintf", "concat", "reconcat", "do_xmalloc", "do_xrealloc", "xmem*",
    "g_malloc*", "g_malloc0*", "g_realloc*", "g_try_malloc*", "g_try_realloc*",
    "g_strdup*", "g_strndup", "g_memdup*", "g_new*", "g_slice_alloc*", "g_slice_*alloc*",
    "g_strconcat", "g_strjoin*", "g_string_sized_new", "g_array_*", "g_ptr_array_*",
    "PyMem_*Malloc", "PyMem_*Calloc", "PyMem_*Realloc", "PyObject_Malloc",
    "PyObject_Calloc", "PyObject_Realloc", "_PyObject_Malloc", "_PyMem_*",
    "sqlite3Malloc*", "sqlite3_malloc*", "sqlite3_realloc*", "sqlite3Realloc",
    "sqlite3MemMalloc", "sqlite3MemRealloc", "sqlite3DbMalloc*", "sqlite3DbRealloc*",
    "sqlite3DbStrDup", "sqlite3DbStrNDup",
)
LIBRARY_NAME = "libringpool-preload.so"

# Allocations the C library and the dynamic loader make for themselves and
# keep until the process ends (glibc frees some of them only in
# __libc_freeres, which valgrind calls and a normal exit does not): stdio
# buffers, locale and message catalogues, NSS, time zone, atexit records,
# thread-local storage, dlopen bookkeeping. Shown as suppressed, never hidden.
DEFAULT_SUPPRESSIONS: tuple[str, ...] = (
    "_IO_file_doallocate",
    "_IO_*",
    "_nl_*",
    "new_composite_name",
    "setlocale",
    "read_alias_file",
    "extend_alias_table",
    "set_binding_values",
    "textdomain",
    "__textdomain",
    "nss_*",
    "__nss_*",
    "tzset_internal",
    "__tzfile_read",
    "__tzstring*",
    "__new_exitfn",
    "_dl_*",
    "allocate_dtv",
    "__libc_setup_tls",
    "__libc_alloc_buffer_allocate",
    # glibc's non-reentrant lookups keep one static buffer each
    "^getpwuid$",
    "^getgrgid$",
    "^getpwnam$",
    "^getgrnam$",
    "^getpwent$",
    "^getgrent$",
    "^getspnam$",
    "^gethostbyname$",
    "^gethostbyname2$",
    "^gethostbyaddr$",
    "^getservbyname$",
    "^getprotobyname$",
    # libstdc++'s emergency exception pool (72,704 bytes on x86-64), allocated
    # once by its static initializer: by source file where debug files say,
    # else the initializer the .eh_frame and .init_array of libstdc++ give
    "libsupc++/eh_alloc.cc$",
    "^static initializer (libstdc++.so",
    "*/ld-linux-x86-64.so.2$",
    "*/ld-linux*.so*$",
)


@dataclass(frozen=True)
class Module:
    # the name frames and sites use: the file's path, or, when the report holds other
    # code under the same path, that path and the build id (see told_apart)
    path: str
    base: int
    build_id: str | None
    unloaded: bool = False   # dlclose'd before the report; its sites are still its own
    file: str | None = None  # the file's path when path is not it

    @property
    def on_disk(self) -> str:
        """The path the file was loaded from."""
        return self.path if self.file is None else self.file


def told_apart(modules: Iterable[Module]) -> list[Module]:
    """The modules, those that share a path with other code told apart by name.

    A library dlclose'd, replaced on disk and loaded again from the same path (a plugin
    reloaded after a rebuild) gives two modules of one path and two build ids, whose
    code differs at the same offsets. Named by the path alone, their frames were one
    frame, and all were symbolized with the one file the path holds now (the sites of
    the old code named by the new code's functions). Each such module is named
    ``PATH (build id ID)`` (``PATH (no build id)``), with ``file`` the path."""
    modules = list(modules)
    ids: dict[str, set[str | None]] = {}
    for m in modules:
        ids.setdefault(m.path, set()).add(m.build_id.lower() if m.build_id else None)
    return [m if len(ids[m.path]) < 2 else
            replace(m, path=f"{m.path} (build id {m.build_id.lower()})" if m.build_id
                    else f"{m.path} (no build id)", file=m.path)
            for m in modules]


Frame = tuple[str, int]   # (module path, return address minus its load bias)


@dataclass(frozen=True)
class Site:
    module: str
    offset: int          # return address minus the module's load bias
    blocks: int
    bytes: int
    allocs: int
    symbol: str | None   # nearest dynamic symbol, when the interposer found one
    # the whole stack, leaf first: stack[0] is (module, offset); one frame
    # when the report was written with a stack depth of 1 (or has no stacks)
    stack: tuple[Frame, ...] = ()
    # the site's fields among EXTRA_FIELDS (bytes ever allocated, a sampled report's
    # estimates) as the report gives them, unchecked (the profile exports check what
    # they use); None when it has none
    extra: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def frames(self) -> tuple[Frame, ...]:
        return self.stack if self.stack else ((self.module, self.offset),)


@dataclass(frozen=True)
class PreloadReport:
    path: str
    pid: int
    exe: str
    taken_at: str
    reason: str
    totals: dict[str, int]
    modules: tuple[Module, ...]
    sites: tuple[Site, ...]
    stack_depth: int = 1
    # sampling mode: each byte sampled with this probability; the counts of
    # the sites and totals are then estimates (docs/memprof.md)
    sample_rate: float | None = None


@dataclass(frozen=True)
class Symbol:
    function: str        # "??" when unknown
    file: str | None     # source path, None when unknown
    line: int | None


def library_path() -> str:
    """Absolute path of libringpool-preload.so: ``$RINGPOOL_PRELOAD_LIB``, else
    (in a source checkout) ``build/``, else the copy installed in the package.

    Raises FileNotFoundError, saying how to get it for the way ringpool was
    installed, when the file does not exist (see allocator.config.preload_library).
    """
    from allocator.config import preload_library

    return preload_library()


def is_preload_report(doc: dict[str, Any]) -> bool:
    """True when doc (a parsed JSON object) claims the interposer's format."""
    return isinstance(doc, dict) and doc.get("format") == FORMAT


# ------------------------------------------------------------------ loading
def _field(where: str, obj: dict[str, Any], name: str, kind: type) -> Any:
    if name not in obj:
        raise ValueError(f"{where}: missing field {name!r}")
    value = obj[name]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ValueError(f"{where}: field {name!r} must be {kind.__name__}, "
                         f"found {type(value).__name__}")
    return value


def _optional(where: str, obj: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """obj[name] when present (checked as _field does), else default."""
    return _field(where, obj, name, kind) if obj.get(name) is not None else default


def _count(where: str, obj: dict[str, Any], name: str) -> int:
    value: int = _field(where, obj, name, int)
    if value < 0:
        raise ValueError(f"{where}: field {name!r} is negative ({value})")
    return value


def _hex(where: str, obj: dict[str, Any], name: str) -> int:
    text: str = _field(where, obj, name, str)
    if not re.fullmatch(r"0x[0-9a-fA-F]+", text):
        raise ValueError(f"{where}: field {name!r} must be a hex string like \"0x1a2b\", "
                         f"found {text!r}")
    return int(text, 16)


def parse(doc: Any, path: str) -> PreloadReport:
    """Checks a parsed document; ValueError names the file and the field."""
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a report is a JSON object, found {type(doc).__name__}")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{path}: field 'format' must be {FORMAT!r}, found {fmt!r}")
    version = _field(path, doc, "version", int)
    if version != VERSION:
        raise ValueError(f"{path}: field 'version': unsupported version {version} "
                         f"(this reader knows {VERSION})")
    pid = _count(path, doc, "pid")
    exe = _field(path, doc, "exe", str)
    taken_at = _field(path, doc, "taken_at", str)
    reason = _field(path, doc, "reason", str)
    if reason not in ("exit", "signal"):
        raise ValueError(f"{path}: field 'reason' must be 'exit' or 'signal', found {reason!r}")
    raw_totals = _field(path, doc, "totals", dict)
    totals = {name: _count(f"{path}: totals", raw_totals, name)
              for name in ("blocks", "bytes", "allocs")}
    for name, value in raw_totals.items():
        if name not in totals:
            totals[name] = _count(f"{path}: totals", raw_totals, name)
    modules = []
    for i, m in enumerate(_field(path, doc, "modules", list)):
        where = f"{path}: modules[{i}]"
        if not isinstance(m, dict):
            raise ValueError(f"{where}: must be an object")
        modules.append(Module(_field(where, m, "path", str), _hex(where, m, "base"),
                              _optional(where, m, "build_id", str),
                              _optional(where, m, "unloaded", bool, False)))
    modules = told_apart(modules)
    shared = {m.file for m in modules if m.file is not None}
    stacks = _stacks(path, doc, modules)
    sites = []
    n_stacks = -1 if stacks is None else len(stacks)
    for i, s in enumerate(_field(path, doc, "sites", list)):
        if type(s) is dict:
            # The common case, checked in one go; anything else (a missing or wrong
            # field) goes through the checks below, which name it.
            module, offset, blocks, nbytes, allocs, symbol, index = map(s.get, _SITE_FIELDS)
            if (type(module) is str and type(offset) is str and type(blocks) is int
                    and type(nbytes) is int and type(allocs) is int
                    and blocks >= 0 and nbytes >= 0 and allocs >= 0
                    and (symbol is None or type(symbol) is str) and _HEX(offset)
                    and module not in shared):
                if stacks is None or index is None and "stack" not in s:
                    sites.append(Site(module, int(offset, 16), blocks, nbytes, allocs, symbol,
                                      (), _extra(s)))
                    continue
                if type(index) is int and 0 <= index < n_stacks:
                    sites.append(Site(module, int(offset, 16), blocks, nbytes, allocs, symbol,
                                      stacks[index], _extra(s)))
                    continue
        where = f"{path}: sites[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"{where}: must be an object")
        symbol = _optional(where, s, "symbol", str)
        stack: tuple[Frame, ...] = ()
        if stacks is not None and "stack" in s:
            index = _count(where, s, "stack")
            if index >= len(stacks):
                raise ValueError(f"{where}: field 'stack' is {index}, but the report has "
                                 f"{len(stacks)} stacks")
            stack = stacks[index]
        module, offset = _field(where, s, "module", str), _hex(where, s, "offset")
        if module in shared and stack and stack[0][1] == offset:
            # the path of modules told apart: the stack's first frame says which
            module = stack[0][0]
        sites.append(Site(module, offset,
                          _count(where, s, "blocks"), _count(where, s, "bytes"),
                          _count(where, s, "allocs"), symbol, stack, _extra(s)))
    depth = _count(path, doc, "stack_depth") if "stack_depth" in doc else 1
    rate = doc.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                             or not 0.0 < float(rate) <= 1.0):
        raise ValueError(f"{path}: field 'sample_rate' must be a number in (0, 1], found {rate!r}")
    return PreloadReport(path, pid, exe, taken_at, reason, totals, tuple(modules), tuple(sites),
                         depth, None if rate is None else float(rate))


_HEX = re.compile(r"0x[0-9a-fA-F]+").fullmatch
_SITE_FIELDS = ("module", "offset", "blocks", "bytes", "allocs", "symbol", "stack")
#: A site's fields that Site keeps as they are, for the profile exports.
EXTRA_FIELDS = ("alloc_bytes", "est_blocks", "est_bytes", "est_allocs", "est_alloc_bytes")


def _extra(site: dict[str, Any]) -> dict[str, Any] | None:
    return {k: site[k] for k in EXTRA_FIELDS if k in site} or None


def _stacks(path: str, doc: dict[str, Any], modules: list[Module]) -> list[tuple[Frame, ...]] | None:
    """The report's stacks as frame tuples, or None when it has no stack table."""
    if "stacks" not in doc:
        return None
    frames: list[Frame] = []
    paths = [m.path for m in modules]
    for i, f in enumerate(_field(path, doc, "frames", list)):
        if type(f) is list and len(f) == 2:
            # the common case in one go; anything else gets the checks below
            index, text = f
            if type(index) is int and type(text) is str and -1 <= index < len(paths) \
                    and _HEX(text):
                frames.append((paths[index] if index >= 0 else "?", int(text, 16)))
                continue
        where = f"{path}: frames[{i}]"
        if (not isinstance(f, list) or len(f) != 2 or not isinstance(f[0], int)
                or isinstance(f[0], bool) or not isinstance(f[1], str)):
            raise ValueError(f"{where}: must be [MODULE_INDEX, \"0xOFFSET\"]")
        if not -1 <= f[0] < len(modules):
            raise ValueError(f"{where}: module index {f[0]} is not in modules "
                             f"(0..{len(modules) - 1}, or -1)")
        if not re.fullmatch(r"0x[0-9a-fA-F]+", f[1]):
            raise ValueError(f"{where}: offset must be a hex string like \"0x1a2b\", found {f[1]!r}")
        frames.append((modules[f[0]].path if f[0] >= 0 else "?", int(f[1], 16)))
    raw: list[Any] = _field(path, doc, "stacks", list)
    frame = frames.__getitem__
    if set(map(type, raw)) == {list} and min(map(len, raw)) > 0:
        # The common case, checked in one go: non-empty lists of frame indexes in range.
        flat = list(itertools.chain.from_iterable(raw))
        if set(map(type, flat)) == {int} and min(flat) >= 0 and max(flat) < len(frames):
            return [tuple(map(frame, st)) for st in raw]
    stacks = []
    for i, st in enumerate(raw):
        where = f"{path}: stacks[{i}]"
        if not isinstance(st, list) or not st:
            raise ValueError(f"{where}: must be a non-empty list of frame indexes")
        for k in st:
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(frames):
                raise ValueError(f"{where}: frame index {k!r} is not in frames (0..{len(frames) - 1})")
        stacks.append(tuple(frames[k] for k in st))
    return stacks


def load(path: str) -> PreloadReport:
    """Reads and checks one interposer report.

    Raises ValueError naming the file and the field when it is malformed
    (and OSError when it cannot be read).
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (truncated?): {exc.msg} at line "
                         f"{exc.lineno} column {exc.colno}") from exc
    except RecursionError:
        # the json module nests by recursion; no interposer report nests more than a few levels
        raise ValueError(f"{path}: invalid report: JSON nested too deeply for this "
                         "reader") from None
    return parse(doc, path)


# ------------------------------------------------------------- symbolizing
_cache: dict[tuple[str, str | None, int], Symbol] = {}
_modules: dict[tuple[str, str | None], elfsym.ModuleSymbols] = {}


def _module_info(path: str, build_id: str | None) -> elfsym.ModuleSymbols:
    key = (path, build_id)
    if key not in _modules:
        _modules[key] = elfsym.load_module(path, build_id)
    return _modules[key]


def _where(report: PreloadReport) -> Callable[[str], tuple[str, str | None] | None]:
    """For a frame's module: the file to read and the build id it must have; None for
    the path of modules told apart (see told_apart) that a site names without a stack
    to say which of them it is: no file can say what code was there."""
    named = {m.path: (m.on_disk, m.build_id) for m in report.modules}
    shared = {m.file for m in report.modules if m.file is not None}

    def where(module: str) -> tuple[str, str | None] | None:
        found = named.get(module)
        if found is not None:
            return found
        return None if module in shared else (module, None)
    return where


_UNKNOWN = Symbol("??", None, None)


def symbolize(report: PreloadReport) -> dict[tuple[str, int], Symbol]:
    """Function and file:line for every site of report, keyed by (module, offset).

    Covers every frame of every site's stack. A name is given only where it
    is right (see :mod:`audit.elfsym`: DWARF, a symbol whose extent contains
    the address, or the .eh_frame function that starts at a symbol), else
    the function is ``"??"`` and rows show ``module+offset``. Separate debug
    files are found by build id. One pass per module; cached per process.
    """
    where = _where(report)
    # Each distinct frame once (stacks share their frames): a site's own (module, offset)
    # too, as a report may give it a stack that does not start there.
    frames: set[Frame] = {(site.module, site.offset) for site in report.sites}
    frames.update(*[site.stack for site in report.sites if site.stack])
    wanted: dict[tuple[str, str | None], set[int]] = {}
    for module, offset in frames:
        file = where(module)
        if file is not None and (*file, offset) not in _cache:
            wanted.setdefault(file, set()).add(offset)
    for (path, build_id), offsets in wanted.items():
        unique = sorted(offsets)
        info = _module_info(path, build_id)
        # the offsets are return addresses: the call instruction ends just before
        names = elfsym.name_addresses(info, [max(off - 1, 0) for off in unique])
        for off, name in zip(unique, names):
            _cache[(path, build_id, off)] = Symbol(name.function, name.file, name.line)
    out: dict[tuple[str, int], Symbol] = {}
    for frame in frames:
        file = where(frame[0])
        out[frame] = _cache[(*file, frame[1])] if file is not None else _UNKNOWN
    for site in report.sites:
        sym = out[(site.module, site.offset)]
        # the interposer's dladdr name (glibc checks the symbol's size) stands
        # in only when the object cannot be read any more
        file = where(site.module)
        if sym.function == "??" and site.symbol and file is not None and \
                not _module_info(*file).found:
            out[(site.module, site.offset)] = Symbol(site.symbol, sym.file, sym.line)
    return out


def modules_without_symbols(report: PreloadReport) -> list[str]:
    """Modules with outstanding sites whose names come from the dynamic symbol
    table at most: no full symbol table and no DWARF, in the object or in a
    debug file found by build id or debuglink."""
    where = _where(report)
    seen: dict[str, bool] = {}
    for site in report.sites:
        if site.blocks == 0 or site.module in seen or site.module.startswith("("):
            continue
        file = where(site.module)
        if site.module == "?" or file is None:
            continue
        seen[site.module] = _module_info(*file).has_names
    return sorted(m for m, named in seen.items() if not named)


# ------------------------------------------------------------- suppressions
@dataclass(frozen=True)
class Suppression:
    pattern: str
    origin: str          # "default" or "FILE:LINE"

    def matches(self, *texts: str | None) -> bool:
        return any(t is not None and _lsan_match(self.pattern, t) for t in texts)


def _lsan_match(pattern: str, text: str) -> bool:
    """LeakSanitizer's rule: '*' is any run of characters, a leading '^' or a
    trailing '$' anchors; otherwise the pattern may match anywhere."""
    return _lsan_regex(pattern).match(text) is not None


@functools.lru_cache(maxsize=4096)
def _lsan_regex(pattern: str) -> re.Pattern[str]:
    """The pattern as the regular expression fnmatchcase would build, compiled
    once (rows test every frame against every rule)."""
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    core = pattern[1 if start else 0: len(pattern) - (1 if end else 0)]
    glob = ("" if start else "*") + core.replace("[", "[[]") + ("" if end else "*")
    return re.compile(fnmatch.translate(glob))


#: The largest suppressions file read (bytes).
MAX_SUPPRESSIONS_BYTES = 16 << 20

#: What each pipe given as a suppressions file held, by (device, inode): a command
#: reads the file more than once (checked before the run, then for each report), and
#: a pipe gives its bytes once: the later reads found it empty.
_PIPES_READ: dict[tuple[int, int], bytes] = {}


def _read_suppressions_bytes(path: str) -> bytes:
    """The bytes of a suppressions file: a regular file or a pipe (``<(...)``), at
    most MAX_SUPPRESSIONS_BYTES of them. A device, a socket or a directory is refused
    without reading: /dev/zero was read until memory ran out, and a FIFO without a
    writer waited forever."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked next
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ValueError(f"{path}: suppressions file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read suppressions file: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        mode = st.st_mode
        if stat.S_ISFIFO(mode) and (st.st_dev, st.st_ino) in _PIPES_READ:
            return _PIPES_READ[st.st_dev, st.st_ino]
        if stat.S_ISDIR(mode):
            raise ValueError(f"{path}: cannot read suppressions file: Is a directory")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise ValueError(f"{path}: the suppressions file is a device or socket, not a "
                             "regular file or a pipe")
        data = schema.read_fd(fd, MAX_SUPPRESSIONS_BYTES + 1, 1 << 20)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read suppressions file: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_SUPPRESSIONS_BYTES:
        raise ValueError(f"{path}: suppressions file larger than "
                         f"{MAX_SUPPRESSIONS_BYTES >> 20} MiB")
    if stat.S_ISFIFO(mode):
        _PIPES_READ[st.st_dev, st.st_ino] = data
    return data


def read_suppressions(path: str) -> list[Suppression]:
    """Parses a file in LeakSanitizer's format: ``leak:PATTERN`` per line,
    ``#`` comments and blank lines ignored. ValueError names file and line."""
    data = _read_suppressions_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: suppressions file is not UTF-8 text (byte {exc.start})") from exc
    # Lines end at \n (and \r\n, \r): not at the other ends str.splitlines knows
    # (\x1c, U+0085, U+2028...), which a function name, and so a pattern, may hold.
    # (open()'s universal newlines read \r\n and \r as \n.)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        kind, sep, pattern = text.partition(":")
        if not sep or kind.strip() != "leak":
            raise ValueError(f"{path}:{n}: expected 'leak:PATTERN', found {text!r}")
        if not pattern.strip():
            raise ValueError(f"{path}:{n}: empty pattern after 'leak:'")
        found.append(Suppression(pattern.strip(), f"{path}:{n}"))
    return found


def default_suppressions() -> list[Suppression]:
    return [Suppression(p, "default") for p in DEFAULT_SUPPRESSIONS]


def suppression_rules(path: str | None = None) -> list[Suppression]:
    """The default rules, then those of the LeakSanitizer-style file at path."""
    rules = default_suppressions()
    if path is not None:
        rules += read_suppressions(path)
    return rules


@functools.lru_cache(maxsize=64)
def _suppression_matcher(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """The rules as one regular expression: each rule's an alternative, so a
    text is matched in one pass, not once per rule."""
    if not patterns:
        return re.compile(r"(?!x)x")
    return re.compile("|".join(f"(?:{_lsan_regex(p).pattern})" for p in patterns))


def frame_suppression(rules: Sequence[Suppression],
                      symbols: dict[Frame, Symbol]) -> Callable[[Frame], bool]:
    """A test of whether a rule matches a frame's function, file or module (a
    frame without a module, '?' or '', has no module to match), memoised per
    frame: the table, the leak gate and the profile exports decide alike."""
    matcher = _suppression_matcher(tuple(r.pattern for r in rules)).match
    seen: dict[Frame, bool] = {}
    # frames share their functions, files and modules: each text is matched once
    texts: dict[str | None, bool] = {None: False}

    def matches(text: str | None) -> bool:
        verdict = texts.get(text)
        if verdict is None:
            verdict = texts[text] = matcher(text) is not None  # type: ignore[arg-type]
        return verdict

    def suppressed(frame: Frame) -> bool:
        verdict = seen.get(frame)
        if verdict is None:
            sym = symbols[frame]
            module = frame[0] if frame[0] not in ("?", "") else None
            verdict = seen[frame] = matches(sym.function) or matches(sym.file) or matches(module)
        return verdict
    return suppressed


# --------------------------------------------------------------------- rows
def is_pool_module(module: str) -> bool:
    """Blocks allocated inside libringpool itself belong to pools, whose own
    reports show them by tag; rows leave them out so nothing counts twice."""
    return os.path.basename(module).startswith("libringpool.so")


@functools.lru_cache(maxsize=1024)
def _basename(path: str) -> str:
    return os.path.basename(path)


def _frame_name(frame: Frame, sym: Symbol, with_line: bool = True) -> str:
    where = f"{_basename(frame[0])}+{frame[1]:#x}"
    if not with_line:
        return sym.function if sym.function != "??" else f"?? ({where})"
    loc = f"{sym.file}:{sym.line}" if sym.file and sym.line else where
    return f"{sym.function} ({loc})"


def _key(by: str, frame: Frame, sym: Symbol) -> str:
    if by == "module":
        return frame[0]
    if by == "file":
        return sym.file if sym.file else f"?? ({os.path.basename(frame[0])})"
    return _frame_name(frame, sym, with_line=by != "function")


# A row's identity: a tuple of frames, each a tuple of the fields its --by mode shows
# (the key text is only their rendering, and two frames may render alike: a function
# named "f (a.c:1)" without line information, a name holding " < ").
FrameId = tuple[Any, ...]
RowId = tuple[FrameId, ...]


def frame_fields(fid: FrameId) -> dict[str, Any]:
    """A frame of a row's identity as ``json`` writes it: the fields it has of
    function, file, line, module and offset (hex)."""
    kind = fid[0]
    if kind == "module":
        return {"module": fid[1]}
    if kind == "file":
        return {"file": fid[1]}
    if kind == "function":
        return {"function": fid[1]}
    if kind == "line":
        return {"function": fid[1], "file": fid[2], "line": fid[3]}
    if len(fid) == 3:                   # ("at", module, offset): --by function, no name
        return {"function": "??", "module": fid[1], "offset": f"{fid[2]:#x}"}
    return {"function": fid[1], "module": fid[2], "offset": f"{fid[3]:#x}"}


def frame_id(by: str, frame: Frame, sym: Symbol) -> FrameId:
    """What tells one frame from another under ``by``, as _key and _frame_name
    render it: module; file (else the module); function (else module and
    offset); function and file:line (else module and offset) for site and stack."""
    if by == "module":
        return ("module", frame[0])
    if by == "file":
        return ("file", sym.file) if sym.file else ("module", frame[0])
    if by == "function":
        return ("function", sym.function) if sym.function != "??" else ("at", frame[0], frame[1])
    if sym.file and sym.line:
        return ("line", sym.function, sym.file, sym.line)
    return ("at", sym.function, frame[0], frame[1])


class RowLabels:
    """The rows of stacks whose frames are in ``symbols``, under ``by``.

    A frame's identity (:func:`frame_id`), text and json fields (:func:`frame_fields`)
    are the same in every stack it is in: each distinct identity is numbered once, with
    its text and json fields (the same dict for it in every row: rows are read, never
    changed) at its number. A row is read as the numbers of its frames (:meth:`numbers`:
    a tuple of small ints, cheap to hash, the same for rows of one identity), and its
    identity, text and fields are taken from lists by number."""

    def __init__(self, by: str, symbols: dict[Frame, Symbol]) -> None:
        self.whole_stack = by == "stack"
        number: dict[FrameId, int] = {}
        self._idents: list[FrameId] = []
        self._texts: list[str] = []
        self._fields: list[dict[str, Any]] = []
        self._numbers: dict[Frame, int] = {}
        for frame, sym in symbols.items():
            fid = frame_id(by, frame, sym)
            n = number.get(fid)
            if n is None:
                n = number[fid] = len(self._idents)
                self._idents.append(fid)
                # the text is one of the identity's fields; --by stack: 'f (file:line)',
                # the frames joined by ' < '
                self._texts.append(_frame_name(frame, sym) if self.whole_stack else _key(by, frame, sym))
                self._fields.append(frame_fields(fid))
            self._numbers[frame] = n

    def numbers(self, stack: Sequence[Frame], at: int) -> tuple[int, ...]:
        """The row that credits ``stack`` (innermost first) to its frame ``at``: that
        frame, or for ``stack`` every frame from there down, as numbers."""
        return tuple(map(self._numbers.__getitem__, stack[at:] if self.whole_stack else (stack[at],)))

    def ident(self, numbers: tuple[int, ...]) -> RowId:
        """The row's identity (what tells rows apart)."""
        return tuple(map(self._idents.__getitem__, numbers))

    def key(self, numbers: tuple[int, ...]) -> str:
        """The row's text (two rows may share a text)."""
        return " < ".join(map(self._texts.__getitem__, numbers))

    def fields(self, numbers: tuple[int, ...]) -> list[dict[str, Any]]:
        """The row's identity as ``json`` writes it."""
        return list(map(self._fields.__getitem__, numbers))


def base_name(function: str) -> str:
    """A demangled name without its return type, parameter list and glibc's
    internal-alias prefix: 'void std::vector<int>::push_back(int const&)' ->
    'std::vector<int>::push_back', '__GI___strdup' -> '__strdup'."""
    text = function
    if text.endswith(")"):                      # drop the parameter list
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                if not text.startswith("operator") or " " in text[:i]:
                    text = text[:i]
                break
    depth, cut = 0, 0                           # drop a return type before the name
    for i, c in enumerate(text):
        if c in "<(":
            depth += 1
        elif c in ">)":
            depth -= 1
        elif c == " " and depth == 0 and not text[i + 1:].startswith(("const", "[]")) \
                and not text[:i].endswith("operator"):
            cut = i + 1
    text = text[cut:]
    if text.startswith("__GI_"):
        text = text[len("__GI_"):]
    return text


def is_wrapper(function: str, wrappers: Sequence[str]) -> bool:
    """True when a demangled function name, whole or as :func:`base_name`,
    matches one of the wrapper patterns (fnmatch: '*' any run of characters,
    '?' one character)."""
    return wrapper_verdicts(wrappers)[function]


#: The most function names whose wrapper verdict is kept per list of patterns.
_WRAPPER_VERDICTS_MAX = 1 << 20


class WrapperVerdicts(dict[str, bool]):
    """:func:`is_wrapper`'s verdict by function name, for one list of patterns: a name
    is matched the first time it is looked up, however many frames and stacks it
    appears in."""

    def __init__(self, wrappers: tuple[str, ...]) -> None:
        super().__init__()
        self._matcher = _wrapper_matcher(wrappers)

    def __missing__(self, function: str) -> bool:
        verdict = function != "??" and bool(self._matcher.match(function)
                                            or self._matcher.match(base_name(function)))
        if len(self) >= _WRAPPER_VERDICTS_MAX:
            self.clear()
        self[function] = verdict
        return verdict


def wrapper_verdicts(wrappers: Sequence[str]) -> WrapperVerdicts:
    """The verdicts of one list of wrapper patterns (kept for the process: the same
    lists come back, stack after stack and report after report)."""
    return _wrapper_verdicts(tuple(wrappers))


@functools.lru_cache(maxsize=16)
def _wrapper_verdicts(wrappers: tuple[str, ...]) -> WrapperVerdicts:
    return WrapperVerdicts(wrappers)


@functools.lru_cache(maxsize=64)
def _wrapper_matcher(wrappers: tuple[str, ...]) -> re.Pattern[str]:
    """The wrapper patterns as one regular expression (fnmatch's translation:
    one pass per name, whatever the number of patterns)."""
    if not wrappers:
        return re.compile(r"(?!x)x")
    return re.compile("|".join(f"(?:{fnmatch.translate(w)})" for w in wrappers))


def attributed(stack: Sequence[Frame], symbols: dict[Frame, Symbol], wrapper: WrapperVerdicts) -> int:
    """Index of the first frame of stack that is not an allocation wrapper by the
    verdicts ``wrapper`` (:func:`wrapper_verdicts`), 0 when every frame is one: the
    caller of malloc is then all we have."""
    for i, frame in enumerate(stack):
        if not wrapper[symbols[frame].function]:
            return i
    return 0


def wrapper_list(extra: Sequence[str] | None = None, defaults: bool = True) -> list[str]:
    """The default wrapper patterns (unless defaults is False) plus extra."""
    found = list(DEFAULT_WRAPPERS) if defaults else []
    for pattern in extra or ():
        if not pattern.strip():
            raise ValueError("empty --wrapper pattern")
        found.append(pattern.strip())
    return found


def rows(report: PreloadReport, by: str = "site",
         suppressions: str | None = None,
         wrappers: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Sites grouped by ``by`` (site, stack, function, file or module).

    Each site is credited to its stack's first frame that is not an
    allocation wrapper (``wrappers``: fnmatch patterns on function names,
    default :data:`DEFAULT_WRAPPERS`; pass ``[]`` to credit the caller of
    malloc itself). ``site``, ``function``, ``file`` and ``module`` group by
    that frame; ``stack`` by the stack from that frame down.

    Each row: ``{"key", "ident", "frames", "blocks", "bytes", "allocs", "suppressed"}``:
    ``ident`` (:func:`frame_id` per frame) is the row's identity, ``key`` its
    text (two rows may share a text), ``frames`` the identity as ``json`` writes
    it (:func:`frame_fields`). An identity whose sites are partly
    suppressed gives two rows. Sorted by bytes, then
    blocks, descending. suppressions is a path to a LeakSanitizer-style file,
    applied on top of the default list, matched against the frames up to and
    including the credited one. Sites inside libringpool (pool blocks) are
    left out: see :func:`pool_sites`.
    """
    if by not in BY_CHOICES:
        raise ValueError(f"unknown grouping {by!r}: choose one of {', '.join(BY_CHOICES)}")
    wrap = list(DEFAULT_WRAPPERS) if wrappers is None else list(wrappers)
    rules = suppression_rules(suppressions)
    symbols = symbolize(report)
    # A frame's verdicts, identity, text and json fields are the same in every stack it
    # appears in: each is found once per distinct frame or function name, and a stack is
    # read through them.
    frame_suppressed = frame_suppression(rules, symbols)
    wrapper = wrapper_verdicts(wrap)
    labels = RowLabels(by, symbols)
    pool = {module: is_pool_module(module) for module in {site.module for site in report.sites}}

    grouped: dict[tuple[tuple[int, ...], bool], dict[str, Any]] = {}
    for site in report.sites:
        if pool[site.module]:
            continue
        stack = site.frames()
        at = attributed(stack, symbols, wrapper)
        suppressed = any(map(frame_suppressed, stack[: at + 1]))
        shown = labels.numbers(stack, at)
        row = grouped.get((shown, suppressed))
        if row is None:
            row = grouped[(shown, suppressed)] = {
                "key": labels.key(shown), "ident": labels.ident(shown), "frames": labels.fields(shown),
                "blocks": 0, "bytes": 0, "allocs": 0, "suppressed": suppressed}
        row["blocks"] += site.blocks
        row["bytes"] += site.bytes
        row["allocs"] += site.allocs
    return _sorted_rows(list(grouped.values()))


def _sorted_rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by bytes, then blocks, descending, then key, then identity (its repr): the
    repr, dear for a long stack, is taken only for rows that tie on all the rest."""
    found.sort(key=lambda r: (-r["bytes"], -r["blocks"], r["key"]))
    start = 0
    while start < len(found):
        head = found[start]
        end = start + 1
        while end < len(found) and (found[end]["bytes"], found[end]["blocks"], found[end]["key"]) \
                == (head["bytes"], head["blocks"], head["key"]):
            end += 1
        if end - start > 1:
            found[start:end] = sorted(found[start:end], key=lambda r: repr(r["ident"]))
        start = end
    return found


def pool_sites(report: PreloadReport) -> tuple[int, int]:
    """(blocks, bytes) outstanding from allocations made inside libringpool."""
    blocks = sum(s.blocks for s in report.sites if is_pool_module(s.module))
    nbytes = sum(s.bytes for s in report.sites if is_pool_module(s.module))
    return blocks, nbytes


def unsuppressed_totals(table: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """(blocks, bytes) over the rows that are not suppressed."""
    blocks = nbytes = 0
    for row in table:
        if not row["suppressed"]:
            blocks += int(row["blocks"])
            nbytes += int(row["bytes"])
    return blocks, nbytes
