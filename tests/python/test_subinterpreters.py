"""The package in a subinterpreter: refused at import, with no effect on the
main interpreter (CPython 3.11's _xxsubinterpreters)."""

from __future__ import annotations

import pytest

from child_helpers import script_output

SUBINTERPRETER = """
import sys
import _xxsubinterpreters as interpreters
first = sys.argv[1] == "main-first"
if first:
    import allocator
    pool = allocator.Pool("main")
    block = pool.alloc(16, "kept")
sub = interpreters.create()
for module in ("allocator", "allocator.memprof", "allocator._ringpool", "allocator._pystack"):
    try:
        interpreters.run_string(sub, f"import {module}")
    except interpreters.RunFailedError as exc:
        assert "ImportError" in str(exc), exc
        assert "subinterpreters are not supported" in str(exc), exc
    else:
        raise AssertionError(f"import {module} in a subinterpreter")
interpreters.destroy(sub)
# the subinterpreter's import left nothing in the main interpreter
assert ("allocator" in sys.modules) == first, sorted(m for m in sys.modules if "alloc" in m)
import allocator
pool = allocator.Pool("after")
assert bytes(pool.memdup(b"abc", "t")) == b"abc"
pool.destroy()
print("ok")
"""


@pytest.mark.parametrize("order", ["sub-first", "main-first"])
def test_a_subinterpreter_importing_the_package_is_refused_clearly(order: str) -> None:
    assert script_output(SUBINTERPRETER, order) == "ok"
