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


def run_odd(mode: str, depth: int, tmp: Path) -> tuple[preload.PreloadReport, str]:
    program = BIN / "odd"
    if not program.is_file():
        pytest.fail(f"{program} is missing: run `make stacks-test-bins`")
    report = tmp / f"{mode}.{depth}.json"
    env = dict(os.environ, LD_PRELOAD=preload.library_path(), RINGPOOL_PRELOAD_STACK_DEPTH=str(depth),
               RINGPOOL_PRELOAD_REPORT=str(report))
    proc = subprocess.run([str(program), mode], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    return preload.load(str(report)), proc.stdout


MODES = ["data-word", "no-tables", "coroutines", "alt-stack", "long-jumps", "jit"]


@pytest.mark.parametrize("depth", [64, 256])
@pytest.mark.parametrize("mode", MODES)
def test_odd_stacks_are_counted_exactly_and_hold_only_code(mode: str, depth: int, tmp_path: Path) -> None:
    if not shutil.which("readelf"):
        pytest.skip("readelf missing")
    report, out = run_odd(mode, depth, tmp_path)
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
