"""Stacks that are not a thread's own or that the unwind tables describe
oddly or not at all (tests/stacks/odd.c): under the interposer the program
exits normally, every block is counted exactly, and every recorded frame is
an address in a module's executable segments (or in code the program made
outside every module): a truncated stack is fine, a word that is not a
return address recorded as a frame is not."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from audit import preload

HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("RINGPOOL_STACKS_TESTBIN", str(HERE.parents[1] / "build" / "stacks-tests")))


@functools.lru_cache(maxsize=None)
def code_ranges(path: str) -> tuple[tuple[int, int], ...]:
    """[start, end) of each executable PT_LOAD of the ELF file at path."""
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in "".join(f[6:-1]):
            found.append((int(f[2], 16), int(f[2], 16) + int(f[5], 16)))
    return tuple(found)


def library(build: str) -> str:
    """The interposer, or its -fsanitize=undefined build (make test-stacks
    names it in RINGPOOL_PRELOAD_UBSAN_LIB)."""
    if build == "plain":
        return preload.library_path()
    path = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB", "")
    if not os.path.isfile(path):
        pytest.skip("no UBSan build of the interposer (RINGPOOL_PRELOAD_UBSAN_LIB)")
    return path


def run_odd(mode: str, depth: int, tmp: Path, build: str = "plain") -> tuple[preload.PreloadReport, str]:
    program = BIN / "odd"
    if not program.is_file():
        pytest.fail(f"{program} is missing: run `make stacks-test-bins`")
    report = tmp / f"{mode}.{depth}.json"
    env = dict(os.environ, LD_PRELOAD=library(build), RINGPOOL_PRELOAD_STACK_DEPTH=str(depth),
               RINGPOOL_PRELOAD_REPORT=str(report))
    proc = subprocess.run([str(program), mode], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "runtime error" not in proc.stderr, proc.stderr
    return preload.load(str(report)), proc.stdout


# stale-*: a stack of the program's own whose upper pages a walk read
# (following unwind tables past the stack's end; the scenario of
# tests/stacks/stale_pages.h, which tests/c/test_pool_stack_pages.c runs
# against libringpool's walker) are unmapped, made
# PROT_NONE, replaced by a smaller mapping, shrunk by mremap (the last walks
# before and after at the same place too: -same-place), shrunk by
# glibc's realloc of a big block, or freed by glibc's free of a block it
# mapped under a low mmap threshold and replaced by a smaller mapping;
# then walks start there again. They are not compared with libunwind's
# stacks: with RINGPOOL_PRELOAD_UNWINDER=libunwind they crash too.
MODES = ["data-word", "no-tables", "coroutines", "small-stacks", "stack-room", "thread-churn",
         "alt-stack", "small-alt-stack", "long-jumps", "jit", "jit-then-library", "own-stack", "stale-munmap",
         "stale-prot-none", "stale-remap-smaller", "stale-mremap", "stale-munmap-same-place",
         "stale-prot-none-same-place", "stale-malloc", "stale-free", "garbage-rbp", "deep"]


@pytest.mark.parametrize("build", ["plain", "ubsan"])
@pytest.mark.parametrize("depth", [64, 256])
@pytest.mark.parametrize("mode", MODES)
def test_odd_stacks_are_counted_exactly_and_hold_only_code(mode: str, depth: int, build: str,
                                                           tmp_path: Path) -> None:
    if not shutil.which("readelf"):
        pytest.skip("readelf missing")
    report, out = run_odd(mode, depth, tmp_path, build)
    leaks = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"^LEAK (\d+) (\d+)$", out, re.M)}
    jit = [(int(m.group(1), 16), int(m.group(2), 16)) for m in re.finditer(r"^JIT (\S+) (\S+)$", out, re.M)]
    assert leaks
    got: dict[int, int] = {}
    for site in report.sites:
        if site.blocks and site.bytes % site.blocks == 0 and site.bytes // site.blocks in leaks:
            got[site.bytes // site.blocks] = got.get(site.bytes // site.blocks, 0) + site.blocks
        for module, offset in site.frames():
            if module == "?":
                assert any(lo < offset <= hi for lo, hi in jit), (site, hex(offset))
            elif os.path.isfile(module):
                assert any(lo < offset <= hi for lo, hi in code_ranges(module)), \
                    f"{module}+{offset:#x} is not a return address (stack {site.frames()})"
    assert got == leaks
    longest = max(len(s.frames()) for s in report.sites if s.blocks and s.bytes // s.blocks in leaks)
    # the walk cannot go past a frame without unwind tables or outside every
    # module, and ends before the data word; elsewhere it goes on past the leaf
    assert longest == 1 if mode in ("data-word", "no-tables", "jit") else longest > 1


@pytest.mark.parametrize("build", ["plain", "ubsan"])
@pytest.mark.parametrize("depth", [64, 256])
def test_a_library_loaded_where_code_outside_every_module_was(depth: int, build: str, tmp_path: Path) -> None:
    """A stack that ended at a return address outside every module (code
    the program made) is cut there by a cached rule; once that code is
    unmapped and a library loaded at its address, stacks through the
    library's frame there go on to the program's frames (odd.c,
    jit-then-library: cut after one frame, and counted with the code's
    blocks, while the rule outlived the unmapping)."""
    report, out = run_odd("jit-then-library", depth, tmp_path, build)
    if "MOVED" in out:
        pytest.skip("the library was not loaded at its fixed address again")
    through = [s for s in report.sites if s.blocks and s.bytes == 321 * s.blocks]
    assert sum(s.blocks for s in through) == 3, report.sites
    for site in through:
        frames = site.frames()
        assert frames[0][0].endswith("jitlib.so") and len(frames) > 3, frames
        assert any(module.endswith("/odd") for module, _ in frames[1:]), frames


def test_threads_keep_their_stack_room(tmp_path: Path) -> None:
    """The interposer's thread-locals come out of every thread's stack: a
    thread asking for 64 KiB keeps all but a few KiB of it (the walker's
    buffers, 33 KiB, are mapped apart), and one asking for
    PTHREAD_STACK_MIN gets made at all (small-stacks above)."""
    native = subprocess.run([str(BIN / "odd"), "stack-room"], capture_output=True, text=True, check=True)
    _, out = run_odd("stack-room", 64, tmp_path)
    room = {name: int(re.search(r"^ROOM (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
            for name, text in (("native", native.stdout), ("preload", out))}
    assert room["preload"] >= room["native"] - 12 * 1024, room


def test_exited_threads_hand_their_walk_buffers_on(tmp_path: Path) -> None:
    """2,000 threads one after the other, each allocating from deep calls:
    resident memory stays flat (a thread's walk buffers are taken by the
    next; kept per thread, 2,000 of them are some 20 MiB)."""
    _, out = run_odd("thread-churn", 64, tmp_path)
    growth = int(re.search(r"^GROWTH (-?\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert growth < 8 * 1024, growth


def stacks_by_unwinder(mode: str, depth: int, unwinder: str, tmp: Path) -> dict[tuple[tuple[str, int], ...], int]:
    report = tmp / f"{mode}.{depth}.{unwinder}.json"
    env = dict(os.environ, LD_PRELOAD=preload.library_path(), RINGPOOL_PRELOAD_STACK_DEPTH=str(depth),
               RINGPOOL_PRELOAD_UNWINDER=unwinder, RINGPOOL_PRELOAD_ALL_SITES="1",
               RINGPOOL_PRELOAD_REPORT=str(report))
    proc = subprocess.run([str(BIN / "odd"), mode], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    found: dict[tuple[tuple[str, int], ...], int] = {}
    for site in preload.load(str(report)).sites:
        found[site.frames()] = found.get(site.frames(), 0) + site.allocs
    return found


@pytest.mark.parametrize("depth", [64, 256])
@pytest.mark.parametrize("mode", ["coroutines", "small-stacks", "alt-stack", "small-alt-stack", "long-jumps",
                                  "garbage-rbp", "deep"])
def test_odd_stacks_are_walked_as_libunwind_walks_them(mode: str, depth: int, tmp_path: Path) -> None:
    """Allocation for allocation, the cached walker (its memo and splices
    across stack switches, longjmp and signal frames, its buffers handed
    from thread to thread) records the stacks libunwind finds."""
    cached = stacks_by_unwinder(mode, depth, "cached", tmp_path)
    assert cached == stacks_by_unwinder(mode, depth, "libunwind", tmp_path)
    assert max(len(s) for s in cached) > 5
