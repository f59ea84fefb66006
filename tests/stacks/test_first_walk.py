"""A thread's first stack walk made by a signal handler that interrupted
malloc with its lock held (tests/stacks/first_walk.c): the walker built
without munmap hooks (libringpool's and allocator._pystack's copy) looks up
the thread's stack bounds at that walk, and must do it without malloc
(glibc's pthread_getattr_np, which it used, allocates: the thread waited for
itself forever). On the main thread, and on a thread of its own (whose
arena's lock is the one held)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("RINGPOOL_STACKS_TESTBIN", str(HERE.parents[1] / "build" / "stacks-tests")))


@pytest.mark.parametrize("where", ["main", "thread"])
def test_first_walk_in_a_handler_that_interrupted_malloc_returns(where: str) -> None:
    program = BIN / "first_walk"
    if not program.is_file():
        pytest.fail(f"{program} is missing: run `make stacks-test-bins`")
    env = {k: v for k, v in os.environ.items() if k not in ("FIRST_WALK_CHILD", "LD_PRELOAD")}
    proc = subprocess.run([str(program)] + (["thread"] if where == "thread" else []), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.startswith("OK: "), proc.stdout
