"""Hostile but legal Python programs under the hooks, each in a fresh interpreter:
the process never crashes, no Python code runs inside an allocator call, and
the counts stay those of an independent model (tracemalloc) where numbers are
involved."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import run_python

Script = Callable[[str, str], Path]
ALLOCATORS = ("pymalloc", "malloc", "debug")


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_a_line_table_whose_hash_is_python_code_is_never_called(script: Script,
                                                                 allocator: str) -> None:
    # A code object's line table may be an instance of a bytes subclass with a
    # __hash__ written in Python. The hooks hash line tables to know a code
    # object again; calling that __hash__ ran Python code inside an allocator
    # call (here, in the middle of a dict's resize, which it then corrupted).
    s = script("hashy.py", """
        import types
        from allocator import _pyhooks
        calls = 0
        victim = {}
        class Table(bytes):
            def __hash__(self):
                global calls
                calls += 1
                for i in range(50):
                    victim[("k", calls, i)] = [i] * 20
                return 1
        def body():
            d = {}
            for i in range(2000):
                d[i] = str(i) * 3
                victim[i] = d[i]
            return d
        code = body.__code__
        fn = types.FunctionType(code.replace(co_linetable=Table(code.co_linetable)), globals())
        _pyhooks.start()
        r = fn()
        rows = {f[0][1]: b for (f, _n, b, _p, _a) in _pyhooks.sites()
                if f and f[0][2] == "body"}
        _pyhooks.stop()
        print(calls, len(r), len(victim), sum(rows.values()) > 2000 * 50)
    """)
    r = run_python(str(s), env={"PYTHONMALLOC": allocator})
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.split() == ["0", "2000", "2000", "True"]
