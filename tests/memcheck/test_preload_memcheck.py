"""The interposer under valgrind's memcheck: every case runs a test program
of tests/preload or tests/stacks with libringpool-preload.so in LD_PRELOAD,
whole stacks on, and fails on any memcheck error (exit status 99 from
--error-exitcode), a crash, or a block the program kept that memcheck
calls lost.

memcheck sees glibc's malloc, which it replaces with its own, not ours:
`--soname-synonyms=somalloc=nouserintercepts` keeps valgrind from
replacing the interposer's exported malloc family (since valgrind 3.12 it
replaces every global malloc by default, and the interposer would see no
call), so the program calls the interposer, and the interposer calls the
malloc it finds next (dlsym RTLD_NEXT), which is memcheck's. memcheck then
checks the program's blocks as it would without the interposer, and every
read the interposer makes (its tables, the stack walk, the words around a
block) against them.

Cases left out, and why:
- odd.c stale-malloc and stale-free: they need glibc's own mappings of big
  blocks (realloc shrinking one in place, free of a block glibc mapped);
  memcheck's malloc maps no block of its own and moves every realloc.
- odd.c small-alt-stack: the alternate stack is sysconf(_SC_MINSIGSTKSZ) +
  4 KiB; valgrind's signal frame takes 3.8 KiB of it (the kernel's: 1.3 KiB)
  and sysconf answers 1,348 bytes under valgrind, which leaves a handler
  1.6 KiB, too little for a whole-stack walk.
- api and realloc_fail: they pass sizes near SIZE_MAX on purpose, which
  memcheck reports as fishy arguments of its malloc (and its pvalloc
  aborts the program).
- depswap: glibc's dynamic loader reads past a block of its own with an
  unreplaced strncmp (memcheck reports it without the interposer too).
- vforks: a minute under memcheck; forks and threads cover the same hooks.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from audit import preload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PRELOAD_BIN = Path(os.environ.get("RINGPOOL_PRELOAD_TESTBIN", REPO / "build" / "preload-tests"))
STACKS_BIN = Path(os.environ.get("RINGPOOL_STACKS_TESTBIN", REPO / "build" / "stacks-tests"))
SUPPRESSIONS = HERE / "preload.supp"


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    status: int = 0
    # the program drops blocks on purpose (memcheck calls them lost): leak
    # records are not errors for it
    leaks_on_purpose: bool = False
    extra: tuple[str, ...] = field(default=())


def _p(name: str, *args: str) -> tuple[str, ...]:
    return (str(PRELOAD_BIN / name), *args)


def _s(name: str, *args: str) -> tuple[str, ...]:
    return (str(STACKS_BIN / name), *args)


ODD_MODES = ["data-word", "no-tables", "coroutines", "small-stacks", "stack-room", "thread-churn",
             "alt-stack", "long-jumps", "jit", "jit-then-library", "own-stack", "stale-munmap",
             "stale-prot-none", "stale-remap-smaller", "stale-mremap", "stale-munmap-same-place",
             "stale-prot-none-same-place", "garbage-rbp", "deep"]

CASES = [
    Case("gt_leaks.depth1", _p("gt_leaks"), (("RINGPOOL_PRELOAD_STACK_DEPTH", "1"),)),
    Case("gt_leaks", _p("gt_leaks")),
    Case("threads", _p("threads"), (("RINGPOOL_PRELOAD_ALL_SITES", "1"),)),
    Case("forks", _p("forks")),
    Case("cxx", _p("cxx")),
    Case("pools", _p("pools", "pool.json")),
    Case("behave-signal", _p("behave", "0", "signal"), (("RINGPOOL_PRELOAD_SIGNAL", "USR2"),)),
    Case("sigalloc", _p("sigalloc", "threads", "2000")),
    Case("sigmix", _p("sigmix", "2000")),
    Case("dlswap", _p("dlswap", str(PRELOAD_BIN / "libplugin_a.so"), str(PRELOAD_BIN / "libplugin_b.so"))),
    # by relative names (from the case's directory, made in the temporary directory): the
    # report reads /proc/self/maps for their absolute paths, as dlclose does
    Case("dlswap-relative", _p("dlswap", *(os.path.join("..", os.path.relpath(PRELOAD_BIN / name,
                                                                         tempfile.gettempdir()))
                                           for name in ("libplugin_a.so", "libplugin_b.so")))),
    Case("table_churn", _p("table_churn", "3000", "600"), (("RINGPOOL_PRELOAD_ALL_SITES", "1"),)),
    Case("sampling", _p("sample_paths", "nofork"),
         (("RINGPOOL_PRELOAD_SAMPLE_RATE", "1e-3"), ("RINGPOOL_PRELOAD_SAMPLE_SEED", "17"))),
    Case("startup", _p("startup")),
    Case("wrappers", _s("wrappers")),
    Case("wrappers_cxx", _s("wrappers_cxx"), leaks_on_purpose=True),
    Case("threads_signals", _s("threads_signals")),
    Case("memo", _s("memo")),
    Case("splice_o2", _s("splice_o2")),
    Case("slots", _s("slots")),
    Case("dlcycle", _s("dlcycle", str(STACKS_BIN))),
] + [Case(f"odd-{mode}", _s("odd", mode)) for mode in ODD_MODES]


def _valgrind() -> str | None:
    return shutil.which("valgrind")


def run_case(case: Case, lib: str, valgrind: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGPOOL_PRELOAD_")}
    env.pop("RINGPOOL_REPORT", None)
    with tempfile.TemporaryDirectory(prefix="rp-memcheck-") as tmp:
        env.update({"LD_PRELOAD": lib, "RINGPOOL_PRELOAD_STACK_DEPTH": "64",
                    "RINGPOOL_PRELOAD_REPORT": str(Path(tmp) / "r.%p.json")})
        env.update(dict(case.env))
        leak_kinds = "none" if case.leaks_on_purpose else "definite,indirect,possible"
        argv = [valgrind, "--tool=memcheck", "-q", "--soname-synonyms=somalloc=nouserintercepts",
                "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
                f"--errors-for-leak-kinds={leak_kinds}", "--error-exitcode=99", "--num-callers=40",
                f"--suppressions={SUPPRESSIONS}", *case.extra, *case.argv]
        proc = subprocess.run(argv, env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=600)
        reports = list(Path(tmp).glob("r.*.json"))
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode == case.status and not reports:
            err += "\n(no report was written: the interposer did not run)"
            return -1, err
        return proc.returncode, err


@functools.lru_cache(maxsize=None)
def results(lib: str, valgrind: str) -> dict[str, tuple[int, str]]:
    """Every case at once, as many at a time as there are processors (each
    runs for seconds under memcheck)."""
    for case in CASES:
        if not Path(case.argv[0]).is_file():
            pytest.fail(f"{case.argv[0]} is missing: run `make preload-test-bins stacks-test-bins`")
    with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        futures = {case.name: pool.submit(run_case, case, lib, valgrind) for case in CASES}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_interposer_is_clean_under_memcheck(case: Case) -> None:
    valgrind = _valgrind()
    if valgrind is None:
        pytest.skip("valgrind is not installed (make setup-sys)")
    status, err = results(preload.library_path(), valgrind)[case.name]
    assert status == case.status, f"exit status {status}, valgrind says:\n{err[-12000:]}"
    assert not re.search(r"^==\d+== (Invalid|Conditional|Use of uninit|Syscall param)", err, re.M), err[-12000:]
