"""Typed thin wrappers over ``allocator._ringpool``: C results -> exceptions.

Pool handles are cffi pointers (``CData``), blocks are integer addresses
(0 for a failed allocation); nothing here knows Pool or Block objects.  Allocation always
uses the ``_noexc`` twins (the plain forms abort when the out-of-memory
handler returns), and misuse reported through the C error handler is turned
into the matching exception (see ``_errors``).  cffi releases the GIL around
every call made here.
"""

from __future__ import annotations

import gc
import importlib
import itertools
from typing import Any, NoReturn

from ._errors import InvalidArgument, error_class


def _refuse_subinterpreters() -> None:
    """ImportError in a subinterpreter, before the extension is loaded there.
    Its block type, token and locks are made once per process, in the main
    interpreter (the glue registers them with PyGILState_Ensure, which takes
    the main interpreter's thread state): imported from a subinterpreter, the
    package failed with "cannot import name '_BlockBuffer'", and had imported
    itself into the main interpreter's sys.modules meanwhile."""
    for name in ("_xxsubinterpreters", "_interpreters"):   # CPython 3.11-3.12, 3.13
        try:
            interpreters = importlib.import_module(name)
        except ImportError:
            continue
        break
    else:
        return
    if interpreters.get_current() != interpreters.get_main():
        raise ImportError("allocator: subinterpreters are not supported (the package's types "
                          "and locks belong to the main interpreter): import it from the main "
                          "interpreter only")


_refuse_subinterpreters()

from ._ringpool import ffi as ffi  # noqa: E402 -- after the refusal above
from ._ringpool import lib as lib  # noqa: E402

CData = Any  # a cffi pointer


def _realize_every_type() -> None:
    """Builds every C type and function of the module now, with the gc off.

    cffi builds a type the first time it is used (``ffi.new("rp_pool_info *")``,
    ``lib.rp_pool_create_child_ex``), and its builder is not re-entrant: the
    objects it allocates can start the gc, and a gc callback or ``__del__`` that
    uses the same type meanwhile builds it a second time underneath, which
    fails one of cffi's assertions (``_realize_c_struct_or_union``,
    ``realize_c_type_or_func_lock_held``) and aborts the process.  After this
    every entry of the module's type table is built, so no later call builds
    one (``tests/python/test_reentrancy.py``).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in dir(lib):
            getattr(lib, name)
        typedefs, structs, unions = ffi.list_types()
        for name in typedefs:
            ffi.typeof(name)
        for kind, names in (("struct", structs), ("union", unions)):
            for name in names:
                try:    # the size builds the fields of a lazy struct
                    ffi.sizeof(f"{kind} {name}")
                except ffi.error:
                    pass    # an opaque one (rp_pool): nothing to build
        for spelling in _TYPE_SPELLINGS:
            ffi.typeof(spelling)
    finally:
        if was_enabled:
            gc.enable()


#: The type strings the bindings give ffi.new() and ffi.cast(): parsed once here.
_TYPE_SPELLINGS = ("char[]", "char *", "void *", "size_t", "size_t *", "uintptr_t",
                   "rp_pool_info *", "rp_pool_options *", "rp_tag_stat[]",
                   "rp_memprof_params *", "rp_memprof **")
_realize_every_type()

NULL: CData = ffi.NULL
POOL_UNSYNC: int = lib.RP_POOL_UNSYNC
POOL_CHECKED: int = lib.RP_POOL_CHECKED
POOL_ARENA: int = lib.RP_POOL_ARENA
POOL_STACKS: int = lib.RP_POOL_STACKS
POOL_STACK_DEPTH_SHIFT = 20   # RP_POOL_STACK_DEPTH(n): n << 20 within the mask
POOL_STACK_DEPTH_MASK: int = lib.RP_POOL_STACK_DEPTH_MASK
MAX_ALIGN: int = lib.RP_MAX_ALIGN
MAX_SIZE: int = lib.RP_MAX_SIZE
REPORT_BLOCKS: int = lib.RP_REPORT_BLOCKS
REPORT_CHILDREN: int = lib.RP_REPORT_CHILDREN
SIZE_MAX: int = int(ffi.cast("size_t", -1))

# The misuse handler is process-wide: record instead of abort.
lib.rpy_install_handlers()
# The block buffer type on this module object (once per process the type,
# once per module object the token: an import after sys.modules was purged
# makes a new module object of the same extension).
if lib.rpy_register_block_type(b"allocator._ringpool") != 0:
    raise ImportError("allocator._ringpool: cannot create the block buffer type")


def strerror(code: int) -> str:
    """The C library's message for an ``rp_error`` code."""
    return str(ffi.string(lib.rp_strerror(code)).decode())


def error_name(code: int) -> str:
    """The symbolic name of an ``rp_error`` code ("RP_EDOUBLEFREE")."""
    return str(ffi.string(lib.rp_error_name(code)).decode())


def last_error() -> tuple[int, int, str]:
    """(first code, number of reports, messages) seen by this thread's last rpy_ call."""
    count = int(lib.rpy_error_count())
    if count == 0:
        return 0, 0, ""
    buf = ffi.new("char[]", 4096)
    lib.rpy_error_text(buf, 4096)
    text = ffi.string(buf).decode("utf-8", "replace")
    return int(lib.rpy_error_code()), count, text


def raise_error(code: int, what: str) -> NoReturn:
    """Raise the exception for ``code``, naming the call and the C message."""
    recorded, _, text = last_error()
    if recorded:
        code = recorded
    message = text or strerror(code)
    raise error_class(code)(f"{what}: {message} ({error_name(code)})")


def _checked_ptr(ptr: CData, what: str) -> CData:
    if ptr == NULL:
        code, _, _ = last_error()
        raise_error(code or -1, what)
    return ptr


def encode(text: str | bytes, what: str) -> bytes:
    """UTF-8 bytes of ``text`` without NUL (C strings end at the first NUL);
    InvalidArgument (a ValueError) naming ``what`` otherwise."""
    if isinstance(text, str):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = ord(text[exc.start])
            raise InvalidArgument(f"{what} must be valid Unicode: it contains the lone "
                                  f"surrogate \\u{bad:04x} at index {exc.start}, which has "
                                  "no UTF-8 encoding") from None
    else:
        data = bytes(text)
    if b"\0" in data:
        raise InvalidArgument(f"{what} must not contain NUL characters")
    return data


def decode(ptr: CData) -> str:
    """A C string as text (bytes that are not UTF-8 become U+FFFD)."""
    return str(ffi.string(ptr).decode("utf-8", "replace"))


# ----------------------------------------------------------------- pools
def pool_create(name: bytes, flags: int, chunk_size: int, keep_bytes: int,
                parent: CData = NULL, stack_depth: int = 0) -> CData:
    flags |= (stack_depth << POOL_STACK_DEPTH_SHIFT) & POOL_STACK_DEPTH_MASK
    opts = ffi.new("rp_pool_options *", {"flags": flags, "chunk_size": chunk_size,
                                         "keep_bytes": keep_bytes})
    return _checked_ptr(lib.rpy_pool_create(parent, name, opts), "rp_pool_create")


def pool_destroy(pool: CData) -> None:
    lib.rpy_pool_destroy(pool)


def pool_reset(pool: CData) -> None:
    rc = int(lib.rpy_pool_reset(pool))
    if rc < 0:
        raise_error(rc, "rp_pool_reset")


def pool_check(pool: CData) -> tuple[int, str]:
    """(0 or RP_ECORRUPT, the findings reported through the error handler)."""
    rc = int(lib.rpy_pool_check(pool))
    _, _, text = last_error()
    return rc, text


def intern_tag(pool: CData, tag: bytes) -> CData:
    lib.rpy_clear_error()
    return _checked_ptr(lib.rp_pool_intern_tag(pool, tag), "rp_pool_intern_tag")


def outstanding(pool: CData) -> tuple[int, int]:
    nbytes = ffi.new("size_t *")
    blocks = int(lib.rp_pool_outstanding(pool, nbytes))
    return blocks, int(nbytes[0])


def pool_info(pool: CData) -> CData:
    info = ffi.new("rp_pool_info *")
    rc = int(lib.rpy_pool_get_info(pool, info))
    if rc < 0:
        raise_error(rc, "rp_pool_get_info")
    return info


def pool_torn(pool: CData) -> bool:
    """Whether a destroy of ``pool`` runs its second round of cleanups (those
    registered while its children went): every pool below it is gone."""
    return bool(lib.rpy_pool_torn(pool))


def tag_stats(pool: CData) -> list[tuple[str, int, int, int, int]]:
    """(tag, blocks, bytes, peak_bytes, allocs) per tag, in first-use order."""
    cap = 64
    while True:
        out = ffi.new("rp_tag_stat[]", cap)
        n = int(lib.rp_pool_stats(pool, out, cap))
        if n <= cap:
            return [(decode(s.tag), int(s.blocks), int(s.bytes), int(s.peak_bytes),
                     int(s.allocs)) for s in out[0:n]]
        cap = n + 16  # tags were added meanwhile: ask again


def write_report(pool: CData, path: bytes, flags: int) -> None:
    rc = int(lib.rpy_pool_write_report(pool, path, flags))
    if rc < 0:
        raise_error(rc, f"rp_pool_write_report({path.decode(errors='replace')!r})")


@ffi.def_extern()  # type: ignore[misc]
def rpy_py_visit(block: CData, size: int, tag: CData, arg: CData) -> int:
    # Runs inside rp_pool_walk (the library holds no pool lock across the
    # visitor); it only records, the caller converts the records afterwards.
    try:
        ffi.from_handle(arg).append((block, size, tag))
    except BaseException:  # noqa: BLE001 -- must not escape into C; stop the walk
        return 1
    return 0


def walk(pool: CData) -> list[tuple[int, int, str]]:
    """(address, size, tag) of every outstanding block, in rp_pool_walk's order."""
    records: list[tuple[CData, int, CData]] = []
    handle = ffi.new_handle(records)
    rc = int(lib.rpy_pool_walk(pool, handle))
    if rc != 0:
        raise_error(rc if rc < 0 else -1, "rp_pool_walk")
    tags: dict[int, str] = {}        # tags are pool-owned: one pointer per tag
    out = []
    for block, size, tag in records:
        key = int(ffi.cast("uintptr_t", tag))
        name = tags.get(key)
        if name is None:
            name = tags[key] = decode(tag) if key else "(untagged)"
        out.append((int(ffi.cast("uintptr_t", block)), int(size), name))
    return out


#: The cleanups the library holds, by the key that their C registration
#: carries instead of an ffi.new_handle(): an entry leaves when the library
#: runs it (it consumes it) or when it is removed, never because Python code
#: let it go.  With a handle kept only by the pool's list, a cleanup that the
#: library still held after the list had dropped it was called through a
#: handle the gc had taken, and cffi's from_handle() aborted the process.
cleanup_entries: dict[int, Any] = {}
_cleanup_keys = itertools.count(1)   # never reused: a stale key finds nothing


def register_cleanup(entry: Any) -> tuple[int, CData]:
    """A new key for ``entry`` in the table, and the pointer that the
    library's registration carries."""
    key = next(_cleanup_keys)
    cleanup_entries[key] = entry
    return key, ffi.cast("void *", key)


@ffi.def_extern()  # type: ignore[misc]
def rpy_py_cleanup(arg: CData) -> None:
    # Called by the glue's rpy_cleanup_call, which parks the pools of the
    # cleanup's destroy or reset again after the last Python code here ran
    # (the gc, a __del__ or a weakref callback may run anywhere in it).
    try:
        entry = cleanup_entries.pop(int(ffi.cast("uintptr_t", arg)), None)
        if entry is None:
            return
    except BaseException:  # noqa: BLE001 -- must not escape into C
        return
    try:
        entry.run()
    except BaseException as exc:  # noqa: BLE001 -- must not escape into C
        entry.failed(exc)


def add_cleanup(pool: CData, handle: CData) -> None:
    rc = int(lib.rpy_pool_add_cleanup(pool, handle))
    if rc < 0:
        raise_error(rc, "rp_pool_add_cleanup")


def remove_cleanup(pool: CData, handle: CData) -> bool:
    rc = int(lib.rpy_pool_remove_cleanup(pool, handle))
    if rc == -11:  # RP_ENOTFOUND
        return False
    if rc < 0:
        raise_error(rc, "rp_pool_remove_cleanup")
    return True


# ------------------------------------------------------------ allocation
# Blocks are integer addresses here (0 = failure: read last_error()).
def alloc(pool: CData, size: int, tag: CData) -> int:
    return int(lib.rpy_alloc(pool, size, tag))


def calloc(pool: CData, n: int, size: int, tag: CData) -> int:
    return int(lib.rpy_calloc(pool, n, size, tag))


def resize(pool: CData, block: int, size: int) -> int:
    return int(lib.rpy_resize(pool, block, size))


def strdup(pool: CData, s: bytes, tag: CData) -> int:
    return int(lib.rpy_strdup(pool, s, tag))


def memdup(pool: CData, data: CData, size: int, tag: CData) -> int:
    return int(lib.rpy_memdup(pool, data, size, tag))


def alloc_aligned(pool: CData, align: int, size: int, tag: CData) -> int:
    return int(lib.rpy_alloc_aligned(pool, align, size, tag))


def strconcat(pool: CData, tag: CData, parts: list[bytes]) -> int:
    args = [ffi.new("char[]", p) for p in parts]
    lib.rpy_clear_error()
    return address(lib.rp_strconcat_noexc(pool, tag, len(args), *args))


def free(block: int) -> None:
    code = int(lib.rpy_free(block))
    if code:
        raise_error(code, "rp_free")


def failed(what: str) -> NoReturn:
    """Raise for a failed (0/NULL) result of the last call (OutOfMemory by default)."""
    code, _, _ = last_error()
    raise_error(code or -1, what)


def address(ptr: CData) -> int:
    return int(ffi.cast("uintptr_t", ptr))


def pointer(address: int) -> CData:
    """A ``char *`` cdata for an address (for ffi.buffer)."""
    return ffi.cast("char *", address)


# ----------------------------------------------------------- default pool
def stat_create_pool() -> CData:
    lib.rp_stat_create_pool()
    return lib.rp_stat_pool()


def stat_pool() -> CData:
    return lib.rp_stat_pool()


def stat_destroy_pool() -> None:
    lib.rpy_stat_destroy_pool()


def stat_alloc(size: int) -> int:
    return int(lib.rpy_stat_alloc(size))


def stat_calloc(n: int, size: int) -> int:
    return int(lib.rpy_stat_calloc(n, size))


def stat_resize(block: int, size: int) -> int:
    return int(lib.rpy_stat_resize(block, size))


def stat_strdup(s: bytes) -> int:
    return int(lib.rpy_stat_strdup(s))


def stat_strconcat(parts: list[bytes]) -> int:
    args = [ffi.new("char[]", p) for p in parts]
    lib.rpy_clear_error()
    return address(lib.rp_stat_strconcat_noexc(len(args), *args))


def stat_free(block: int) -> None:
    code = int(lib.rpy_stat_free(block))
    if code:
        raise_error(code, "rp_stat_free")


# ------------------------------------------------------------- testing
def debug_fail_after(n: int, sticky: bool = False) -> None:
    """Make the nth underlying allocation from now fail (and all after it if sticky)."""
    lib.rp_debug_fail_after(n, 1 if sticky else 0)


def debug_alloc_count() -> int:
    return int(lib.rp_debug_alloc_count())

