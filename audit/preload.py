"""Reports of the malloc interposer (``libringpool-preload.so``).

The interposer writes one JSON file per process (``"format": "ringpool-preload"``,
``"version": 1``, see docs/preload.md): outstanding blocks and bytes per call
site, each site a module path and an offset from the module's load address.
This module loads and checks those files, symbolizes sites to function and
``file:line`` with binutils' ``addr2line`` (one batch per module), applies
suppressions (a default list for the C library's exit-time buffers, plus user
files in LeakSanitizer's ``leak:PATTERN`` format) and groups the sites into
rows for the CLI.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable

FORMAT = "ringpool-preload"
VERSION = 1
BY_CHOICES = ("site", "function", "file", "module")
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
    "*/ld-linux-x86-64.so.2$",
    "*/ld-linux*.so*$",
)


@dataclass(frozen=True)
class Module:
    path: str
    base: int
    build_id: str | None


@dataclass(frozen=True)
class Site:
    module: str
    offset: int          # return address minus the module's load bias
    blocks: int
    bytes: int
    allocs: int
    symbol: str | None   # nearest dynamic symbol, when the interposer found one


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


@dataclass(frozen=True)
class Symbol:
    function: str        # "??" when unknown
    file: str | None     # source path, None when unknown
    line: int | None


def library_path() -> str:
    """Absolute path of libringpool-preload.so.

    ``$RINGPOOL_PRELOAD_LIB`` if set, else ``<repo>/build/libringpool-preload.so``.
    Raises FileNotFoundError, with a hint, when the file does not exist.
    """
    env = os.environ.get("RINGPOOL_PRELOAD_LIB")
    if env:
        path = os.path.abspath(env)
        where = "$RINGPOOL_PRELOAD_LIB"
    else:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(repo, "build", LIBRARY_NAME)
        where = "the build directory"
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: the interposer library is missing ({where}); "
            "build it with `make preload` in the repository")
    return path


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
        build_id = m.get("build_id")
        if build_id is not None and not isinstance(build_id, str):
            raise ValueError(f"{where}: field 'build_id' must be str")
        modules.append(Module(_field(where, m, "path", str), _hex(where, m, "base"), build_id))
    sites = []
    for i, s in enumerate(_field(path, doc, "sites", list)):
        where = f"{path}: sites[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"{where}: must be an object")
        symbol = s.get("symbol")
        if symbol is not None and not isinstance(symbol, str):
            raise ValueError(f"{where}: field 'symbol' must be str")
        sites.append(Site(_field(where, s, "module", str), _hex(where, s, "offset"),
                          _count(where, s, "blocks"), _count(where, s, "bytes"),
                          _count(where, s, "allocs"), symbol))
    return PreloadReport(path, pid, exe, taken_at, reason, totals, tuple(modules), tuple(sites))


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
    return parse(doc, path)


# ------------------------------------------------------------- symbolizing
_cache: dict[tuple[str, int], Symbol] = {}
_DISCRIMINATOR = re.compile(r"\s*\(discriminator \d+\)$")


def _parse_location(text: str) -> tuple[str | None, int | None]:
    text = _DISCRIMINATOR.sub("", text.strip())
    path, _, line = text.rpartition(":")
    if not path or path == "??" or not line.isdigit() or line == "0":
        return (None if not path or path == "??" else os.path.normpath(path)), None
    return os.path.normpath(path), int(line)


def _addr2line(module: str, offsets: list[int]) -> list[Symbol]:
    tool = shutil.which("addr2line")
    unknown = [Symbol("??", None, None)] * len(offsets)
    if tool is None or not os.path.isfile(module):
        return unknown
    # The offsets are return addresses: the call instruction ends just before.
    query = "".join(f"{max(off - 1, 0):#x}\n" for off in offsets)
    try:
        proc = subprocess.run([tool, "-f", "-C", "-e", module], input=query,
                              capture_output=True, text=True, check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return unknown
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 2 * len(offsets):
        return unknown
    result = []
    for i in range(len(offsets)):
        function = lines[2 * i].strip() or "??"
        file, line = _parse_location(lines[2 * i + 1])
        result.append(Symbol(function, file, line))
    return result


def symbolize(report: PreloadReport) -> dict[tuple[str, int], Symbol]:
    """Function and file:line for every site of report, keyed by (module, offset).

    One addr2line process per module; results are cached for the process.
    Where addr2line knows no function, the interposer's dynamic symbol is used.
    """
    wanted: dict[str, list[int]] = {}
    for site in report.sites:
        if (site.module, site.offset) not in _cache:
            wanted.setdefault(site.module, []).append(site.offset)
    for module, offsets in wanted.items():
        unique = sorted(set(offsets))
        for off, sym in zip(unique, _addr2line(module, unique)):
            _cache[(module, off)] = sym
    out: dict[tuple[str, int], Symbol] = {}
    for site in report.sites:
        sym = _cache[(site.module, site.offset)]
        if sym.function == "??" and site.symbol:
            sym = Symbol(site.symbol, sym.file, sym.line)
        out[(site.module, site.offset)] = sym
    return out


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
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    core = pattern[1 if start else 0: len(pattern) - (1 if end else 0)]
    glob = ("" if start else "*") + core.replace("[", "[[]") + ("" if end else "*")
    return fnmatch.fnmatchcase(text, glob)


def read_suppressions(path: str) -> list[Suppression]:
    """Parses a file in LeakSanitizer's format: ``leak:PATTERN`` per line,
    ``#`` comments and blank lines ignored. ValueError names file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ValueError(f"{path}: suppressions file not found") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: suppressions file is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ValueError(f"{path}: cannot read suppressions file: {exc.strerror}") from exc
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


# --------------------------------------------------------------------- rows
def is_pool_module(module: str) -> bool:
    """Blocks allocated inside libringpool itself belong to pools, whose own
    reports show them by tag; rows leave them out so nothing counts twice."""
    return os.path.basename(module).startswith("libringpool.so")


def _key(by: str, site: Site, sym: Symbol) -> str:
    where = f"{os.path.basename(site.module)}+{site.offset:#x}"
    if by == "module":
        return site.module
    if by == "file":
        return sym.file if sym.file else f"?? ({os.path.basename(site.module)})"
    if by == "function":
        return sym.function if sym.function != "??" else f"?? ({where})"
    loc = f"{sym.file}:{sym.line}" if sym.file and sym.line else where
    return f"{sym.function} ({loc})"


def rows(report: PreloadReport, by: str = "site",
         suppressions: str | None = None) -> list[dict[str, Any]]:
    """Sites grouped by ``by`` (site, function, file or module).

    Each row: ``{"key", "blocks", "bytes", "allocs", "suppressed"}``; a key
    whose sites are partly suppressed gives two rows. Sorted by bytes, then
    blocks, descending. suppressions is a path to a LeakSanitizer-style file,
    applied on top of the default list. Sites inside libringpool (pool blocks)
    are left out: see :func:`pool_sites`.
    """
    if by not in BY_CHOICES:
        raise ValueError(f"unknown grouping {by!r}: choose one of {', '.join(BY_CHOICES)}")
    rules = default_suppressions()
    if suppressions is not None:
        rules += read_suppressions(suppressions)
    symbols = symbolize(report)
    grouped: dict[tuple[str, bool], dict[str, Any]] = {}
    for site in report.sites:
        if is_pool_module(site.module):
            continue
        sym = symbols[(site.module, site.offset)]
        suppressed = any(r.matches(sym.function, sym.file, site.module) for r in rules)
        key = _key(by, site, sym)
        row = grouped.setdefault((key, suppressed), {
            "key": key, "blocks": 0, "bytes": 0, "allocs": 0, "suppressed": suppressed})
        row["blocks"] += site.blocks
        row["bytes"] += site.bytes
        row["allocs"] += site.allocs
    return sorted(grouped.values(), key=lambda r: (-r["bytes"], -r["blocks"], r["key"]))


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
