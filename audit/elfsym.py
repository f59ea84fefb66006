"""Function names for code addresses that are right or say they are unknown.

A stripped program still has a dynamic symbol table and ``.eh_frame``; its
full symbol table and DWARF may live in a separate debug file found by build
id (``/usr/lib/debug/.build-id/xx/yyyy.debug``, what ``-dbgsym`` and ``-dbg``
packages install) or by ``.gnu_debuglink`` (used only when its build id and the
CRC-32 the link gives are the object's). Naming an address by the nearest
preceding symbol, as ``addr2line`` does without DWARF, credits code to a
function that does not contain it. Here an address gets a name only when:

- DWARF (in the object or its debug file) places it in a function and line
  (``addr2line`` then answers); or
- a symbol's extent contains it (``st_value <= a < st_value + st_size``, what
  ``nm -S`` shows); or
- the ``.eh_frame`` entry (FDE) containing it starts exactly at a symbol.

Anything else is unknown (``??``), shown by the caller as ``module+offset``.
Addresses are offsets from the module's load bias (ELF virtual addresses).
This module reads ELF files itself (pure Python, no extra dependency); one
``addr2line`` process per module answers DWARF lines in one batch (two more,
delimited, when a function or file name holds a newline).
"""

from __future__ import annotations

import bisect
import os
import re
import secrets
import shutil
import stat
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from typing import Iterable

DEBUG_DIRS_ENV = "RINGPOOL_DEBUG_DIRS"
DEFAULT_DEBUG_DIR = "/usr/lib/debug"

SHT_SYMTAB, SHT_NOBITS, SHT_DYNSYM = 2, 8, 11
STT_NOTYPE, STT_FUNC, STT_GNU_IFUNC = 0, 2, 10
PT_NOTE = 4
NT_GNU_BUILD_ID = 3


class ElfError(ValueError):
    """Not an ELF file this reader understands."""


#: The largest file read as an object or a debug file (it is read whole): a report can
#: name any path, and a file past this (a sparse file of 64 GiB behind an ELF header)
#: filled the memory and ended the command with MemoryError.
MAX_OBJECT_BYTES = 4 << 30


@dataclass
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass
class ElfFile:
    path: str
    data: bytes
    is64: bool
    end: str
    sections: list[Section] = field(default_factory=list)

    @classmethod
    def open(cls, path: str) -> "ElfFile":
        # A report names its modules, and a debug link its file: a FIFO there would block
        # the open (and then the read), a terminal the read, /dev/zero never end. Only a
        # regular file is read, and whole only once its header is an ELF header.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ElfError(f"{path}: not a regular file")
            if st.st_size > MAX_OBJECT_BYTES:
                raise ElfError(f"{path}: {st.st_size} bytes, more than the "
                               f"{MAX_OBJECT_BYTES >> 30} GiB read as an object")
            data = fh.read(64)
            if len(data) < 52 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
                raise ElfError(f"{path}: not an ELF file")
            data += fh.read(MAX_OBJECT_BYTES + 1 - len(data))
            if len(data) > MAX_OBJECT_BYTES:    # grown since fstat
                raise ElfError(f"{path}: more than the {MAX_OBJECT_BYTES >> 30} GiB read as an object")
        elf = cls(path, data, data[4] == 2, "<" if data[5] == 1 else ">")
        elf._read_sections()
        return elf

    def _u(self, fmt: str, at: int) -> tuple[int, ...]:
        return struct.unpack_from(self.end + fmt, self.data, at)

    def _read_sections(self) -> None:
        if self.is64:
            shoff, = self._u("Q", 40)
            shentsize, shnum, shstrndx = self._u("HHH", 58)
        else:
            shoff, = self._u("I", 32)
            shentsize, shnum, shstrndx = self._u("HHH", 46)
        if shoff == 0 or shnum == 0 or shoff + shnum * shentsize > len(self.data):
            return
        raw = []
        for i in range(shnum):
            at = shoff + i * shentsize
            if self.is64:
                name, typ, _flags, addr, off, size, link, _info, _align, ent = self._u("IIQQQQIIQQ", at)
            else:
                name, typ, _flags, addr, off, size, link, _info, _align, ent = self._u("IIIIIIIIII", at)
            raw.append((name, typ, addr, off, size, link, ent))
        names = raw[shstrndx] if shstrndx < len(raw) else None
        for name, typ, addr, off, size, link, ent in raw:
            text = self._cstr(names[3] + name) if names else ""
            self.sections.append(Section(text, typ, addr, off, size, link, ent))

    def _cstr(self, at: int) -> str:
        end = self.data.find(b"\0", at)
        return self.data[at:end if end >= 0 else len(self.data)].decode("utf-8", "replace")

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def has_dwarf(self) -> bool:
        s = self.section(".debug_info")
        return s is not None and s.type != SHT_NOBITS and s.size > 0

    def has_symtab(self) -> bool:
        return any(s.type == SHT_SYMTAB and s.size > 0 for s in self.sections)

    def build_id(self) -> str | None:
        for s in self.sections:
            if s.name == ".note.gnu.build-id" and s.type != SHT_NOBITS:
                return self._note_build_id(s.offset, s.size)
        return None

    def _note_build_id(self, at: int, size: int) -> str | None:
        end = at + size
        while at + 12 <= end:
            namesz, descsz, typ = self._u("III", at)
            name_at = at + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            if typ == NT_GNU_BUILD_ID and self.data[name_at:name_at + namesz] == b"GNU\0":
                return self.data[desc_at:desc_at + descsz].hex()
            at = desc_at + ((descsz + 3) & ~3)
        return None

    def debuglink(self) -> str | None:
        s = self.section(".gnu_debuglink")
        if s is None or s.type == SHT_NOBITS:
            return None
        return self._cstr(s.offset) or None

    def debuglink_crc(self) -> int | None:
        """The CRC-32 of its debug file that .gnu_debuglink gives after the name."""
        s = self.section(".gnu_debuglink")
        if s is None or s.type == SHT_NOBITS:
            return None
        end = self.data.find(b"\0", s.offset, s.offset + s.size)
        at = (end - s.offset + 4) // 4 * 4 + s.offset if end >= 0 else -1
        if end < 0 or at + 4 > s.offset + s.size:
            return None
        crc, = self._u("I", at)
        return int(crc)

    def function_symbols(self) -> list[tuple[int, int, str, bool]]:
        """(value, size, name, global) of code symbols in .symtab and .dynsym."""
        found = []
        for s in self.sections:
            if s.type not in (SHT_SYMTAB, SHT_DYNSYM) or s.link >= len(self.sections):
                continue
            strtab = self.sections[s.link]
            ent = 24 if self.is64 else 16
            for at in range(s.offset, s.offset + s.size - ent + 1, ent):
                if self.is64:
                    name, info, _other, shndx, value, size = self._u("IBBHQQ", at)
                else:
                    name, value, size, info, _other, shndx = self._u("IIIBBH", at)
                kind = info & 0xF
                if shndx == 0 or name == 0 or kind not in (STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE):
                    continue
                if kind == STT_NOTYPE and size == 0 and not self._in_code(value):
                    continue
                found.append((value, size, self._cstr(strtab.offset + name), (info >> 4) != 0))
        return found

    def init_functions(self) -> set[int]:
        """Addresses in .init_array: the object's static initializers (read
        from the section, or from its R_*_RELATIVE relocations when the
        object is position independent and the section holds zeros)."""
        arr = self.section(".init_array")
        if arr is None or arr.type == SHT_NOBITS or arr.size == 0:
            return set()
        word = 8 if self.is64 else 4
        found = set()
        for at in range(arr.offset, arr.offset + arr.size - word + 1, word):
            value, = self._u("Q" if self.is64 else "I", at)
            if value not in (0, (1 << (8 * word)) - 1):
                found.add(value)
        relative = 8                          # R_X86_64_RELATIVE
        for sec in self.sections:
            if sec.name != ".rela.dyn" or sec.type == SHT_NOBITS or not self.is64:
                continue
            for at in range(sec.offset, sec.offset + sec.size - 24 + 1, 24):
                r_offset, r_info, r_addend = self._u("QQq", at)
                if (r_info & 0xFFFFFFFF) == relative and arr.addr <= r_offset < arr.addr + arr.size:
                    found.add(r_addend)
        return found

    def _in_code(self, addr: int) -> bool:
        text = self.section(".text")
        return text is not None and text.addr <= addr < text.addr + text.size

    # ------------------------------------------------------------ .eh_frame
    def fde_ranges(self) -> list[tuple[int, int]]:
        """Sorted (start, end) of every function .eh_frame describes."""
        s = self.section(".eh_frame")
        if s is None or s.type == SHT_NOBITS or s.size == 0:
            return []
        fast = self._fde_ranges_from_hdr(s)
        if fast is not None:
            return fast
        ranges = []
        cies: dict[int, int | None] = {}
        at, end = s.offset, s.offset + s.size
        while at + 4 <= end:
            length, = self._u("I", at)
            head = 4
            if length == 0:
                break
            if length == 0xFFFFFFFF:
                length, = self._u("Q", at + 4)
                head = 12
            body = at + head
            nxt = body + length
            if nxt > end:
                break
            cie_id, = self._u("I", body)
            if cie_id != 0:
                cie_at = body - cie_id
                enc = cies.get(cie_at)
                if enc is None:
                    enc = self._cie_encoding(cie_at)
                    cies[cie_at] = enc
                if enc is not None:
                    ptr_at = body + 4
                    vaddr = s.addr + (ptr_at - s.offset)
                    start, used = self._read_encoded(ptr_at, enc, vaddr)
                    span, _ = self._read_encoded(ptr_at + used, enc & 0x0F, 0)
                    if span > 0:
                        ranges.append((start, start + span))
            at = nxt
        ranges.sort()
        return ranges

    def _fde_ranges_from_hdr(self, s: Section) -> list[tuple[int, int]] | None:
        """The same list from .eh_frame_hdr's sorted search table (the one the
        unwinder uses), reading one range field per FDE instead of walking
        every record: a few times faster on a large program (cc1). None when
        the table is absent or in a layout this does not read (then the full
        walk of .eh_frame runs)."""
        h = self.section(".eh_frame_hdr")
        if h is None or h.type == SHT_NOBITS or h.size < 12 or not self.is64 or self.end != "<":
            return None
        d, o = self.data, h.offset
        if d[o] != 1 or d[o + 3] != 0x3B:                   # version 1, datarel sdata4 table
            return None
        try:
            _ptr, used = self._read_encoded(o + 4, d[o + 1], h.addr + 4)
            count, used2 = self._read_encoded(o + 4 + used, d[o + 2], h.addr + 4 + used)
        except struct.error:
            return None
        table = o + 4 + used + used2
        if table + 8 * count > o + h.size:
            return None
        pairs = struct.unpack_from(f"<{2 * count}i", d, table)
        delta = s.offset - s.addr                          # file offset of a .eh_frame address
        cies: dict[int, int | None] = {}
        ranges = []
        lo, hi = s.offset, s.offset + s.size
        unpack = struct.Struct("<IIii").unpack_from
        for k in range(count):
            start = (h.addr + pairs[2 * k]) & ((1 << 64) - 1)
            fde = h.addr + pairs[2 * k + 1] + delta         # file offset of the FDE
            if not lo <= fde < hi - 16:
                return None
            length, cie_id, _begin, span = unpack(d, fde)
            if length == 0xFFFFFFFF:
                return None
            cie_at = fde + 4 - cie_id
            enc = cies.get(cie_at, -1)
            if enc == -1:
                enc = self._cie_encoding(cie_at)
                cies[cie_at] = enc
            if enc is None:
                return None
            if enc & 0x0F != 0x0B:                          # not sdata4: read it the long way
                _b, used = self._read_encoded(fde + 8, enc, 0)
                span, _ = self._read_encoded(fde + 8 + used, enc & 0x0F, 0)
            if span > 0:
                ranges.append((start, start + span))
        ranges.sort()
        return ranges

    def _cie_encoding(self, at: int) -> int | None:
        length, = self._u("I", at)
        body = at + (12 if length == 0xFFFFFFFF else 4)
        body += 8 if length == 0xFFFFFFFF else 4          # CIE id
        version = self.data[body]
        aug_end = self.data.find(b"\0", body + 1)
        aug = self.data[body + 1:aug_end].decode("ascii", "replace")
        p = aug_end + 1
        if "eh" in aug:
            p += 8 if self.is64 else 4
        _, p = _uleb(self.data, p)                          # code alignment
        _, p = _sleb(self.data, p)                          # data alignment
        if version == 1:
            p += 1
        else:
            _, p = _uleb(self.data, p)
        if not aug.startswith("z"):
            return 0x00                                     # absolute pointers
        _, p = _uleb(self.data, p)
        for ch in aug[1:]:
            if ch == "R":
                return self.data[p]
            if ch == "P":
                enc = self.data[p]
                _, used = self._read_encoded(p + 1, enc & 0x7F, 0)
                p += 1 + used
            elif ch == "L":
                p += 1
            elif ch in "SB":
                continue
            else:
                return None
        return 0x00

    def _read_encoded(self, at: int, enc: int, vaddr: int) -> tuple[int, int]:
        fmt = enc & 0x0F
        if fmt == 0x00:
            value, = self._u("Q" if self.is64 else "I", at)
            used = 8 if self.is64 else 4
        elif fmt == 0x01:
            value, nxt = _uleb(self.data, at)
            used = nxt - at
        elif fmt == 0x09:
            value, nxt = _sleb(self.data, at)
            used = nxt - at
        else:
            code, used = {0x02: ("H", 2), 0x03: ("I", 4), 0x04: ("Q", 8),
                          0x0A: ("h", 2), 0x0B: ("i", 4), 0x0C: ("q", 8)}.get(fmt, ("I", 4))
            value, = self._u(code, at)
        if enc & 0x70 == 0x10:                              # pc-relative
            value += vaddr
        mask = (1 << 64) - 1 if self.is64 else (1 << 32) - 1
        return value & mask, used


def _leb128(data: bytes, at: int, signed: bool) -> tuple[int, int]:
    """The LEB128 number at data[at:], and the offset just past it."""
    value = shift = 0
    while True:
        b = data[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if signed and b & 0x40:
                value -= 1 << shift
            return value, at


def _uleb(data: bytes, at: int) -> tuple[int, int]:
    return _leb128(data, at, False)


def _sleb(data: bytes, at: int) -> tuple[int, int]:
    return _leb128(data, at, True)


def debug_dirs() -> list[str]:
    extra = [d for d in os.environ.get(DEBUG_DIRS_ENV, "").split(":") if d]
    return extra + [DEFAULT_DEBUG_DIR]


def debug_candidates(path: str, build_id: str | None, debuglink: str | None) -> Iterable[tuple[str, bool]]:
    """Where the separate debug file of an object may be, each with True when found by
    ``.gnu_debuglink`` name: by build id under each debug directory's ``.build-id/``,
    then by that name (gdb's order). The name is the object's to choose: one holding a
    ``/`` (``../../x``, an absolute path) is not followed out of the directories."""
    dirs = debug_dirs()
    if build_id and _BUILD_ID.fullmatch(build_id):     # a report's: never a path
        for d in dirs:
            cand = os.path.join(d, ".build-id", build_id[:2], build_id[2:] + ".debug")
            if os.path.isfile(cand):
                yield cand, False
    if debuglink and "/" not in debuglink and debuglink not in (".", ".."):
        here = os.path.dirname(os.path.realpath(path)) if path else ""
        for cand in [os.path.join(here, debuglink), os.path.join(here, ".debug", debuglink)] + \
                [os.path.join(d, here.lstrip("/"), debuglink) for d in dirs]:
            if os.path.isfile(cand) and os.path.realpath(cand) != os.path.realpath(path):
                yield cand, True


_BUILD_ID = re.compile("[0-9a-fA-F]{4,128}")


def find_debug_file(path: str, build_id: str | None, debuglink: str | None) -> str | None:
    """The first place :func:`debug_candidates` names, unchecked."""
    return next((cand for cand, _ in debug_candidates(path, build_id, debuglink)), None)


@dataclass(frozen=True)
class Name:
    function: str               # "??" when unknown
    file: str | None
    line: int | None


@dataclass
class ModuleSymbols:
    """What is known about one object: where its names come from."""

    path: str
    found: bool = False         # the object (or its debug file) could be read
    debug_file: str | None = None
    dwarf_file: str | None = None
    is64: bool = True           # the DWARF file's class
    has_symtab: bool = False
    symbols: list[tuple[int, int, str, bool]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    fdes: list[tuple[int, int]] = field(default_factory=list)
    fde_starts: list[int] = field(default_factory=list)
    by_start: dict[int, str] = field(default_factory=dict)
    inits: set[int] = field(default_factory=set)

    @property
    def has_names(self) -> bool:
        """True when more than the dynamic symbol table is known."""
        return self.dwarf_file is not None or self.has_symtab

    def function_at(self, addr: int) -> str | None:
        """The name of the function whose extent contains addr, or None."""
        i = bisect.bisect_right(self.starts, addr)
        best: tuple[int, int, str, bool] | None = None
        # symbols can nest (aliases, local labels): look back over a few
        for value, size, name, glob in reversed(self.symbols[max(0, i - 64):i]):
            if size > 0 and value <= addr < value + size:
                if best is None or value > best[0] or (value == best[0] and _better(name, glob, best)):
                    best = (value, size, name, glob)
        if best is not None:
            return best[2]
        j = bisect.bisect_right(self.fde_starts, addr) - 1
        if j >= 0 and self.fdes[j][0] <= addr < self.fdes[j][1]:
            start = self.fdes[j][0]
            if start in self.by_start:
                return self.by_start[start]
            if start in self.inits:
                # a function .init_array calls: the object's own start-up code
                return f"static initializer ({os.path.basename(self.path)})"
        return None


def _same_object(debug: ElfFile, build_id: str | None, crc: int | None) -> bool:
    """True when debug is the debug file of the object: the same build id when both have
    one, and the CRC-32 that the object's .gnu_debuglink gives when found by that name
    (gdb's check). A debug file of another build (left beside a rebuilt program, or one a
    debug link names on purpose) would name every address wrongly."""
    theirs = debug.build_id()
    if build_id and theirs and theirs != build_id:
        return False
    return crc is None or zlib.crc32(debug.data) == crc


def _better(name: str, glob: bool, than: tuple[int, int, str, bool]) -> bool:
    return (glob, -len(name)) > (than[3], -len(than[2]))


#: Entries looked at per directory level when a path is matched (see _lost_bytes_path).
_MATCH_ENTRIES = 4096
#: Paths that match, at most, before the build id picks one.
_MATCH_PATHS = 16


def _lost_bytes_path(path: str) -> list[str]:
    """The paths on disk that path may have been written from: a report's strings are
    UTF-8, and a byte that is not (a directory named in Latin-1, say) reached it as
    U+FFFD, so the file cannot be opened by that name. Each U+FFFD here stands for one
    or more bytes; each component holding one is matched against its directory's
    entries (bounded: _MATCH_ENTRIES per directory, _MATCH_PATHS in all). The names come
    back as the file system's bytes (surrogateescape), so open() finds them."""
    if "\ufffd" not in path or not path.startswith("/"):
        return []
    found = [b"/"]
    for part in path.encode("utf-8", "surrogateescape").split(b"/")[1:]:
        if not part:
            continue
        if "\ufffd".encode() not in part:
            found = [os.path.join(d, part) for d in found]
            continue
        pattern = re.compile(b".+?".join(re.escape(p) for p in part.split("\ufffd".encode())) + b"\\Z",
                             re.DOTALL)
        matched: list[bytes] = []
        for d in found:
            try:
                with os.scandir(d) as it:
                    for n, entry in enumerate(it):
                        if n >= _MATCH_ENTRIES or len(matched) >= _MATCH_PATHS:
                            break
                        if pattern.match(entry.name):
                            matched.append(os.path.join(d, entry.name))
            except OSError:
                continue
        found = matched
        if not found:
            return []
    return [os.fsdecode(f) for f in found]


def _names_process_files(path: str) -> bool:
    """True when path leads into /proc (through /dev/fd, /dev/stdin or any link): a
    process's files, not a file on disk. dlopen of a memfd_create'd object names it
    /proc/self/fd/N, which for the reader of a report is its own descriptor N (a file of
    its own, of the shell's, whatever it is), and another process's /proc entries have
    gone with it or belong to a process that took its number."""
    for _ in range(40):                         # the kernel's limit of links followed
        try:
            parent = os.path.realpath(os.path.dirname(path) or ".")
            if parent == "/proc" or parent.startswith("/proc/"):
                return True
            here = os.path.join(parent, os.path.basename(path))
            if here == "/proc" or not os.path.islink(here):
                return here == "/proc"
            path = os.path.join(parent, os.readlink(here))
        except (OSError, ValueError):
            return False
    return True


_DELETED = " (deleted)"


def load_module(path: str, build_id: str | None) -> ModuleSymbols:
    """Reads an object (if it is still the one the report saw: same build id)
    and its separate debug file. A path holding U+FFFD (bytes that were not UTF-8)
    is found on disk by its build id among the paths it may stand for, and a path
    ending in " (deleted)" that names no file (a program replaced on disk while it ran)
    by the file at the path without it, when that has the build id. A relative path
    is read only to be checked against a build id."""
    info = ModuleSymbols(path)
    elf: ElfFile | None = None
    if "\0" in path:
        # no file has such a name (a report written by hand): found by build id or not at all
        path = ""
    if path and not path.startswith("/") and not build_id:
        # relative to the directory the program ran in, not the reader's (the interposer
        # writes an absolute path when it can): without a build id nothing tells whether
        # a file found here is that object
        path = ""
    if build_id and "\ufffd" in path:
        for cand in _lost_bytes_path(path):
            try:
                if ElfFile.open(cand).build_id() == build_id:
                    path = cand
                    break
            except (OSError, ElfError, struct.error, IndexError):
                continue
    if build_id and path.endswith(_DELETED) and not os.path.lexists(path):
        # the program's own file, replaced while it ran: the kernel names it so
        # (/proc/self/exe); the file now at the path is taken when it has the build id
        try:
            if ElfFile.open(path[:-len(_DELETED)]).build_id() == build_id:
                path = path[:-len(_DELETED)]
        except (OSError, ElfError, struct.error, IndexError):
            pass
    try:
        if not path:
            raise ElfError("no path")
        if _names_process_files(path):
            raise ElfError(f"{path}: a process's file, not one on disk")
        elf = ElfFile.open(path)
        if build_id and elf.build_id() not in (None, build_id):
            elf = None                     # replaced on disk since the run
    except (OSError, ElfError, struct.error, IndexError):
        elf = None
    wanted_id = build_id or (elf.build_id() if elf else None)
    debug: ElfFile | None = None
    for cand, by_link in debug_candidates(path, wanted_id, elf.debuglink() if elf else None):
        try:
            debug = ElfFile.open(cand)
            if _same_object(debug, wanted_id, elf.debuglink_crc() if by_link and elf else None):
                break
        except (OSError, ElfError, struct.error, IndexError):
            pass
        debug = None
    info.found = elf is not None or debug is not None
    info.debug_file = debug.path if debug else None
    symbols: list[tuple[int, int, str, bool]] = []
    for obj in (debug, elf):
        if obj is None:
            continue
        try:
            symbols += obj.function_symbols()
            info.has_symtab = info.has_symtab or obj.has_symtab()
            if info.dwarf_file is None and obj.has_dwarf():
                info.dwarf_file = obj.path
                info.is64 = obj.is64
            if not info.fdes:
                info.fdes = obj.fde_ranges()
            if not info.inits:
                info.inits = obj.init_functions()
        except (struct.error, IndexError):
            continue
    symbols.sort()
    info.symbols = symbols
    info.starts = [s[0] for s in symbols]
    info.fde_starts = [f[0] for f in info.fdes]
    for value, _size, name, glob in symbols:
        old = info.by_start.get(value)
        if old is None or (glob and old.startswith("_")):
            info.by_start[value] = name
    return info


def _lines(text: str) -> list[str]:
    """A tool's output lines: split at newlines only (str.splitlines also splits at \\r,
    \\x1c, U+0085, U+2028..., which a function or file name may hold). The tools' output
    is decoded as UTF-8, bytes that are not UTF-8 becoming U+FFFD as in the reports."""
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n") if text else []


def _demangle(names: Iterable[str]) -> dict[str, str]:
    # One name a line each way: a name holding a newline is left as it is.
    wanted = sorted({n for n in names if n.startswith("_Z") and "\n" not in n})
    tool = shutil.which("c++filt")
    if not wanted or tool is None:
        return {}
    try:
        proc = subprocess.run([tool], input="\n".join(wanted) + "\n", capture_output=True,
                              encoding="utf-8", errors="replace", check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = _lines(proc.stdout)
    return dict(zip(wanted, out)) if len(out) == len(wanted) else {}


def _run_addr2line(args: list[str], addrs: Iterable[int]) -> str | None:
    """addr2line's output for the addresses (one batch), None when it cannot answer."""
    tool = shutil.which("addr2line")
    if tool is None:
        return None
    query = "".join(f"{a:#x}\n" for a in addrs)
    try:
        proc = subprocess.run([tool, *args], input=query, capture_output=True,
                              encoding="utf-8", errors="replace", check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _addr2line(path: str, addrs: list[int], is64: bool = True) -> list[tuple[str, str]] | None:
    """(function, location) for each address, as addr2line -f prints them (two lines an
    address). A function or file name may hold newlines: then the output has more than
    two lines per address and which lines are whose is asked again with delimiters
    (:func:`_delimited`)."""
    out = _run_addr2line(["-f", "-C", "-e", path], addrs)
    if out is None:
        return None
    lines = _lines(out)
    if len(lines) == 2 * len(addrs):
        # every answer is at least two lines: exactly two each, the split is the only one
        return [(lines[2 * i], lines[2 * i + 1]) for i in range(len(addrs))]
    locations = _delimited(["-e", path], addrs, is64)
    answers = _delimited(["-f", "-C", "-e", path], addrs, is64)
    if locations is None or answers is None:
        return None
    found = []
    for location, answer in zip(locations, answers):
        # "function\nlocation": the location, known whole, ends it
        if not answer.endswith("\n" + location):
            return None
        found.append((answer[:-len(location) - 1], location))
    return found


def _delimited(args: list[str], addrs: list[int], is64: bool) -> list[str] | None:
    """addr2line's answer for each address, newlines and all. The addresses go in
    between queries of a random address S, with -a (each answer then starts with its
    address in hex, "0x" and 16 or 8 digits): a program cannot name anything after S's
    line, which it cannot know, so the output splits at S's lines alone. The answer for
    S itself (usually "??" and "??:0", but whatever the debug information says) is what
    stands between the first two, and starts each later piece before its address."""
    sentinel = secrets.randbits(63 if is64 else 31) | (1 << (63 if is64 else 31))
    query = [sentinel, sentinel]
    for a in addrs:
        query += [a, sentinel]
    out = _run_addr2line(["-a", *args], query)
    if out is None:
        return None
    lines = _lines(out)
    marks = [i for i, line in enumerate(lines) if _hex(line) == sentinel]
    if len(marks) != len(query) - len(addrs):
        return None
    own = lines[marks[0] + 1:marks[1]]
    answers = []
    for a, start, end in zip(addrs, marks[1:], marks[2:]):
        piece = lines[start + 1:end]
        head = len(own)
        if piece[:head] != own or len(piece) <= head + 1 or _hex(piece[head]) != a:
            return None
        answers.append("\n".join(piece[head + 1:]))
    return answers


def _hex(line: str) -> int | None:
    """The address of an addr2line -a line ("0x" and hex digits), else None."""
    return int(line[2:], 16) if _HEX.fullmatch(line) else None


_HEX = re.compile("0x[0-9a-f]+")
_DISCRIMINATOR = re.compile(r" \(discriminator [0-9]+\)\Z")


def parse_location(text: str) -> tuple[str | None, int | None]:
    """(file, line) of an addr2line location ("FILE:LINE", maybe " (discriminator N)"
    after it); the file name exact, spaces and all."""
    text = _DISCRIMINATOR.sub("", text)
    path, _, line = text.rpartition(":")
    if not path or path == "??" or not line.isdigit() or line == "0":
        return (None if not path or path == "??" else os.path.normpath(path)), None
    return os.path.normpath(path), int(line)


def name_addresses(info: ModuleSymbols, addrs: list[int]) -> list[Name]:
    """A Name for every address of one module (addresses inside the call:
    a return address minus one)."""
    own = [info.function_at(a) for a in addrs]
    names = _demangle(n for n in own if n)
    result = [Name(names.get(n, n) if n else "??", None, None) for n in own]
    if info.dwarf_file is not None and addrs:
        answers = _addr2line(info.dwarf_file, addrs, info.is64)
        if answers is not None:
            for i, (function, location) in enumerate(answers):
                file, line = parse_location(location)
                if file is not None and line is not None:
                    # DWARF placed it: a real function and line
                    fn = function if function and function != "??" else result[i].function
                    result[i] = Name(fn, file, line)
    return result
