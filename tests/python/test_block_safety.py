"""Python can never reach freed memory or crash the process."""

from __future__ import annotations

import gc
import warnings

import pytest

import allocator
from allocator import (Block, BlockFreedError, BlockInUse, InvalidBlock, OutOfMemory, Pool,
                       RingpoolError)
from allocator import _lowlevel as ll

from child_helpers import run_script, script_output


def uses(b: Block) -> list[object]:
    """Every way of using a block; each must raise BlockFreedError once it is dead."""
    return [lambda: b.size, lambda: b.address, lambda: b.tag, lambda: len(b),
            lambda: bytes(b), lambda: memoryview(b), lambda: b.free(),
            lambda: b.resize(10), lambda: b.tobytes(), lambda: b.write(b"x")]


def assert_dead(b: Block, match: str) -> None:
    assert b.freed
    for use in uses(b):
        with pytest.raises(BlockFreedError, match=match):
            use()  # type: ignore[operator]


def test_use_after_free(pool: Pool) -> None:
    b = pool.alloc(32, tag="uaf")
    b.free()
    assert_dead(b, "'uaf' of pool 'test' was freed")
    assert pool.outstanding() == (0, 0)


def test_double_free_raises_and_counts_stay(pool: Pool) -> None:
    keep = pool.alloc(5, tag="keep")
    b = pool.alloc(7)
    pool.free(b)
    with pytest.raises(BlockFreedError):
        pool.free(b)
    with pytest.raises(ValueError):  # BlockFreedError is a ValueError
        b.free()
    assert pool.outstanding() == (1, 5)
    assert not keep.freed


def test_use_after_destroy_and_after_with(backing: str) -> None:
    p = Pool("gone", backing=backing)
    b = p.alloc(10, tag="t")
    p.destroy()
    assert_dead(b, "bulk-freed by destroy")
    with Pool("scoped", backing=backing) as q:
        c = q.strdup("hi", tag="s")
    assert_dead(c, "'s' of pool 'scoped'")


def test_resized_block_is_dead(pool: Pool) -> None:
    b = pool.alloc(8, tag="r")
    c = b.resize(16)
    assert_dead(b, "resized")
    assert c.size == 16


def test_exported_buffer_blocks_free_resize_destroy(backing: str) -> None:
    p = Pool("views", backing=backing)
    b = p.alloc(16, tag="v")
    view = memoryview(b)
    part = view[2:6]                    # shares the export
    kid = p.child("kid")                # a refused destroy or reset leaves the children
    for action in (b.free, lambda: p.free(b), lambda: b.resize(32), p.destroy, p.reset):
        # BlockInUse: the package's exception (a RingpoolError) and a BufferError; it was
        # a plain BufferError, outside the package's one base class
        with pytest.raises(BlockInUse, match="live buffer view") as info:
            action()
        assert isinstance(info.value, RingpoolError) and isinstance(info.value, BufferError)
    assert not kid.destroyed
    assert not b.freed and not p.destroyed and p.outstanding() == (1, 16)
    part[:] = b"abcd"
    view.release()
    with pytest.raises(BufferError):    # the slice still holds the export
        b.free()
    part.release()
    assert bytes(b)[2:6] == b"abcd"     # a temporary export, already released
    kid_view = memoryview(kid.alloc(4, tag="k"))    # a view of a child's block stops the parent
    for action in (p.destroy, p.reset):
        with pytest.raises(BlockInUse, match="live buffer view"):
            action()
    kid_view.release()
    p.destroy()
    assert b.freed and kid.destroyed


def test_view_taken_through_a_view_counts(pool: Pool) -> None:
    b = pool.alloc(4)
    inner = memoryview(memoryview(b))   # re-export of the same buffer
    with pytest.raises(BufferError):
        b.free()
    del inner
    gc.collect()
    b.free()


def test_views_keep_pool_alive_against_gc(backing: str) -> None:
    p = Pool("held", backing=backing)
    view = memoryview(p.alloc(8, tag="h"))
    del p
    gc.collect()
    view[:] = b"12345678"               # memory still valid: the view keeps the block alive
    assert bytes(view) == b"12345678"
    pool = view.obj.pool                # type: ignore[attr-defined]
    view.release()
    pool.destroy()


@pytest.mark.parametrize("bad", [-1, -(1 << 70)])
def test_negative_sizes(pool: Pool, bad: int) -> None:
    for call in (lambda: pool.alloc(bad), lambda: pool.calloc(bad, 1),
                 lambda: pool.calloc(1, bad), lambda: pool.alloc_aligned(16, bad),
                 lambda: pool.alloc(1).resize(bad)):
        with pytest.raises(ValueError, match=">= 0"):
            call()


@pytest.mark.parametrize("bad", [1.0, "10", None, True, b"1"])
def test_non_int_sizes(pool: Pool, bad: object) -> None:
    for call in (lambda: pool.alloc(bad), lambda: pool.calloc(bad, 1),  # type: ignore[arg-type]
                 lambda: pool.alloc_aligned(16, bad),                     # type: ignore[arg-type]
                 lambda: pool.alloc(1).resize(bad)):                      # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be an int"):
            call()


@pytest.mark.parametrize("align", [0, 3, 12, -8, 1 << 27, (1 << 64)])
def test_bad_alignment(pool: Pool, align: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        pool.alloc_aligned(align, 10)


def test_non_int_alignment(pool: Pool) -> None:
    with pytest.raises(TypeError):
        pool.alloc_aligned(16.0, 10)  # type: ignore[arg-type]


def test_bad_tags(pool: Pool) -> None:
    with pytest.raises(TypeError):
        pool.alloc(1, tag=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        pool.alloc(1, tag="a\0b")
    assert pool.outstanding() == (0, 0)


@pytest.mark.parametrize("size", [1 << 47, 1 << 62, 1 << 64, 1 << 100])
def test_impossible_sizes_raise_memoryerror(pool: Pool, size: int) -> None:
    keep = pool.alloc(3, tag="keep")
    for call in (lambda: pool.alloc(size), lambda: pool.alloc_aligned(64, size),
                 lambda: pool.calloc(size, 2), lambda: keep.resize(size)):
        with pytest.raises(OutOfMemory) as info:
            call()
        assert isinstance(info.value, MemoryError) and isinstance(info.value, RingpoolError)
    assert not keep.freed and pool.outstanding() == (1, 3)
    pool.check()


def test_calloc_overflow_is_oom(pool: Pool) -> None:
    with pytest.raises(MemoryError):
        pool.calloc(1 << 33, 1 << 33)
    pool.check()


def run_under_injection(pool: Pool, n: int) -> tuple[int, list[Block]]:
    """One scenario with the nth underlying allocation failing; (failures, live)."""
    live: list[Block] = []
    failures = 0
    ll.debug_fail_after(n)
    steps = [lambda: pool.alloc(100, tag=f"inj{n}"), lambda: pool.calloc(4, 50, tag="c"),
             lambda: pool.strdup("abc" * 50, tag="s"), lambda: pool.memdup(b"x" * 3000),
             lambda: pool.alloc_aligned(256, 70, tag="al"), lambda: pool.alloc(1 << 16),
             lambda: live[0].resize(9000) if live else pool.alloc(1)]
    for step in steps:
        try:
            got = step()
        except OutOfMemory:
            failures += 1
            continue
        if live and got is not None and live[0].freed:
            live[0] = got
        elif got is not None:
            live.append(got)
    ll.debug_fail_after(0)
    return failures, live


def test_oom_injection_keeps_pool_consistent(backing: str) -> None:
    saw_failure = False
    for n in range(1, 25):
        with Pool("inject", backing=backing, checked=True) as p:
            failures, live = run_under_injection(p, n)
            saw_failure |= failures > 0
            p.check()
            assert p.outstanding() == (len(live), sum(b.size for b in live))
            assert sum(t.blocks for t in p.snapshot().tags) == len(live)
            for b in live:
                b.free()
            assert p.outstanding() == (0, 0)
    assert saw_failure


def test_oom_injection_sticky_noexc(pool: Pool) -> None:
    b = pool.alloc(16, tag="old")
    ll.debug_fail_after(1, sticky=True)
    assert pool.alloc(1 << 20, raise_on_oom=False) is None
    assert b.resize(1 << 20, raise_on_oom=False) is None
    with pytest.raises(OutOfMemory):
        pool.alloc(1 << 20)
    ll.debug_fail_after(0)
    assert not b.freed and pool.outstanding() == (1, 16)
    pool.check()


def test_pool_create_under_injection() -> None:
    ll.debug_fail_after(1)
    with pytest.raises(OutOfMemory):
        Pool("nomem")
    ll.debug_fail_after(0)


def test_gc_of_pool_with_blocks_warns_naming_tags(backing: str) -> None:
    p = Pool("leaky", backing=backing)
    p.alloc(10, tag="leak-one")
    p.alloc(20, tag="leak-two")
    p.alloc(5, tag="freed-one").free()
    with pytest.warns(ResourceWarning) as record:
        del p
        gc.collect()
    text = str(record[0].message)
    assert "'leaky'" in text and "leak-one" in text and "leak-two" in text
    assert "freed-one" not in text and "2 outstanding blocks (30 bytes)" in text


def test_gc_of_empty_pool_is_silent(backing: str) -> None:
    p = Pool("tidy", backing=backing)
    p.alloc(10).free()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del p
        gc.collect()


def test_checked_mode_misuse_recorded_not_aborted(checked_pool: Pool) -> None:
    """The C error handler records; a foreign pointer never aborts the process."""
    foreign = ll.ffi.new("char[64]")
    with pytest.raises(InvalidBlock, match="RP_EFOREIGN"):
        ll.free(ll.address(foreign) + 16)
    checked_pool.check()


def test_misuse_never_kills_the_interpreter(tmp_path: object) -> None:
    """The same misuse in a fresh interpreter: it must exit normally."""
    code = ("from allocator import Pool, BlockFreedError\n"
            "p = Pool('x', checked=True); b = p.alloc(8); b.free()\n"
            "for f in (b.free, lambda: bytes(b), lambda: b.resize(3)):\n"
            "    try: f()\n"
            "    except BlockFreedError: pass\n"
            "p.destroy(); p.destroy(); print('alive')\n")
    assert script_output(code, timeout=60) == "alive"


def test_corrupt_header_reported_and_block_kept(backing: str) -> None:
    """A header overwritten behind the library's back (here through a raw
    pointer: the safe API cannot reach it) is reported as CorruptPool by
    check() and by free(); the block stays live and counted, as in C."""
    from allocator import CorruptPool
    with Pool("corrupt", backing=backing, checked=True) as p:
        b = p.alloc(16, tag="victim")
        p.alloc(8, tag="bystander")
        word = ll.ffi.cast("unsigned char *", b.address - 8)
        saved = bytes(word[0:8])
        for i in range(8):
            word[i] = 0xAB
        with pytest.raises(CorruptPool, match="victim"):
            p.check()
        with pytest.raises(CorruptPool, match="overwritten"):
            b.free()
        assert not b.freed and p.outstanding() == (2, 24)
        for i, v in enumerate(saved):
            word[i] = v
        p.check()
        b.free()
        assert p.outstanding() == (1, 8)


# Each forging attempt by name, and what it gave: "made", or the refusal's type.
TRY_EACH = r"""
def try_each(attempts):
    for name, attempt in attempts.items():
        try:
            attempt()
            print(name, "made")
        except (TypeError, RuntimeError) as e:
            print(name, type(e).__name__)
"""


FORGE = TRY_EACH + r"""
from allocator import Block, Pool
from allocator._ringpool import _BlockBuffer
pool = Pool("forge")
attempts = {
    "_BlockBuffer": lambda: bytes(memoryview(_BlockBuffer(0x10, 4096))),
    "_BlockBuffer.__new__": lambda: bytes(memoryview(_BlockBuffer.__new__(Block, 0x10, 64))),
    "_BlockBuffer with a token of its own": lambda: bytes(memoryview(_BlockBuffer(object(), 0x10, 64))),
    "Block._make": lambda: Block._make(pool, 0x10, 64, "made-up").free(),
    "Block._make with a token of its own": lambda: Block._make(object(), pool, 0x10, 64, "t").free(),
    "the token again": lambda: _BlockBuffer._token(),
}
try_each(attempts)
b = pool.alloc(8, "real")
b.write(b"12345678")
print(b.tobytes(), pool.outstanding())
pool.destroy()
"""


def test_no_block_is_made_over_a_made_up_address() -> None:
    # _BlockBuffer(address, size) and Block._make(pool, address, ...) made a
    # Block over any address: viewing or freeing it crashed the process.
    assert run_script(FORGE, timeout=60).stdout.splitlines() == [
        "_BlockBuffer TypeError", "_BlockBuffer.__new__ TypeError",
        "_BlockBuffer with a token of its own TypeError", "Block._make TypeError",
        "Block._make with a token of its own TypeError", "the token again RuntimeError",
        "b'12345678' (1, 8)"]


REIMPORT = TRY_EACH + r"""
import sys
import allocator
from allocator import Pool

old = Pool("first")
old_block = old.alloc(8, "old")
view = memoryview(old_block)

def purge():
    for name in list(sys.modules):
        if name.split(".")[0] in ("allocator", "audit"):
            del sys.modules[name]

purge()
import allocator as again
import audit.cli
assert again is not allocator and again.Pool is not Pool
from allocator import Block
from allocator._ringpool import _BlockBuffer, lib

pool = again.Pool("second", backing="arena")
b = pool.alloc(8, "new")
b.write(b"12345678")
s = pool.strdup("hello", tag="s")
c = pool.calloc(4, 4, tag="c")
print(b.tobytes(), bytes(s), bytes(c), pool.outstanding())
grown = b.resize(32)
print(bytes(grown)[:8], b.freed, pool.outstanding())

# the Pools of the first import still make and free their Blocks
made = old.strdup("old", tag="old-strdup")
print(bytes(made), old.outstanding())
try:
    old.destroy()
except BufferError as e:
    print("destroy stopped:", type(e).__name__)
view.release()
old.destroy()
print("old blocks freed:", old_block.freed, made.freed)

# forging a Block is still refused, and the token is not handed out again,
# nor after registering the same module object again
attempts = {
    "_BlockBuffer": lambda: bytes(memoryview(_BlockBuffer(0x10, 4096))),
    "_BlockBuffer with a token of its own": lambda: bytes(memoryview(_BlockBuffer(object(), 0x10, 64))),
    "Block._make with a token of its own": lambda: Block._make(object(), pool, 0x10, 64, "t").free(),
    "the token again": lambda: _BlockBuffer._token(),
    "the token after registering again": lambda: (lib.rpy_register_block_type(b"allocator._ringpool"),
                                                  _BlockBuffer._token()),
}
try_each(attempts)
pool.destroy()
print("new blocks freed:", grown.freed, s.freed, c.freed)
"""


def test_the_package_can_be_imported_again_after_sys_modules_is_purged() -> None:
    # pytester's inline runs, importlib.reload and any tool that purges
    # sys.modules import the package a second time in one process: that
    # import raised "RuntimeError: the Block token was already taken".
    assert run_script(REIMPORT, timeout=60).stdout.splitlines() == [
        "b'12345678' b'hello\\x00' b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
        "\\x00\\x00\\x00\\x00\\x00' (3, 30)",
        "b'12345678' True (3, 54)",
        "b'old\\x00' (2, 12)",
        "destroy stopped: BlockInUse",
        "old blocks freed: True True",
        "_BlockBuffer TypeError",
        "_BlockBuffer with a token of its own TypeError",
        "Block._make with a token of its own TypeError",
        "the token again RuntimeError",
        "the token after registering again RuntimeError",
        "new blocks freed: True True True"]


IN_USE = ("block has {} live buffer view(s) (memoryview, ...): release them before "
          "freeing, resizing or destroying")


def test_every_call_a_view_stops_raises_block_in_use_with_the_count(backing: str) -> None:
    # The glue raises BlockInUse itself (Block._raise_in_use), on every path a
    # live view stops: a pool's free, resize, destroy and reset, a block's own
    # free and resize, and the default pool's stat_free, stat_resize and
    # stat_destroy_pool (untested until now).
    p = Pool("views", backing=backing)
    b = p.alloc(16, tag="v")
    first, second = memoryview(b), memoryview(b)
    for action in (b.free, lambda: p.free(b), lambda: b.resize(32), p.destroy, p.reset):
        with pytest.raises(BlockInUse) as info:
            action()
        assert str(info.value) == IN_USE.format(2)
        assert isinstance(info.value, RingpoolError) and isinstance(info.value, BufferError)
    second.release()
    with pytest.raises(BlockInUse, match=r"^block has 1 live buffer view\(s\)"):
        p.destroy()
    first.release()
    p.destroy()
    assert b.freed

    allocator.stat_create_pool()
    try:
        s = allocator.stat_alloc(8)
        view = memoryview(s)
        for action in (lambda: allocator.stat_free(s), lambda: allocator.stat_resize(s, 64)):
            with pytest.raises(BlockInUse) as info:
                action()
            assert str(info.value) == IN_USE.format(1)
        assert not s.freed and allocator.stat_pool() is not None
        view.release()
        allocator.stat_free(s)
        assert s.freed
    finally:
        allocator.stat_destroy_pool()
