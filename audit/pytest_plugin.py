"""pytest plugin ``ringpool``: fail a test whose pools still hold blocks at its end.

Loaded in every pytest run through the ``pytest11`` entry point, so it costs one
marker registration and nothing else unless a test asks for it:

    @pytest.mark.ringpool_no_leaks                      # any outstanding block fails
    @pytest.mark.ringpool_no_leaks(allow=["cache*"])    # fnmatch patterns of tags that may remain
    def test_parser(): ...

    def test_lexer(ringpool_no_leaks):                  # the fixture does the same
        ringpool_no_leaks.allow("scratch")              # and can allow tags at run time

Checked are the :class:`allocator.Pool` objects created while the test function
runs (not those of fixtures set up before it) that are still alive when it
returns; the failure names each pool and its leaking tags.
"""

from __future__ import annotations

import fnmatch
import gc
import weakref
from collections.abc import Generator, Iterable
from typing import Any

import pytest

MARKER = "ringpool_no_leaks"


class LeakGuard:
    """What the ``ringpool_no_leaks`` fixture returns."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.patterns: list[str] = list(allow)
        self._before: set[int] = set()
        self._refs: list[weakref.ReferenceType[Any]] = []

    def allow(self, *patterns: str) -> None:
        """Tags matching these fnmatch patterns may remain outstanding."""
        for p in patterns:
            if not isinstance(p, str) or not p:
                raise ValueError(f"ringpool_no_leaks: allow() takes non-empty tag patterns, not {p!r}")
        self.patterns.extend(patterns)

    @staticmethod
    def _live_pools() -> list[Any]:
        from allocator import Pool

        return [obj for obj in gc.get_objects() if isinstance(obj, Pool)]

    def start(self) -> None:
        self._before = {id(p) for p in self._live_pools()}
        self._refs = []

    def _new_pools(self) -> list[Any]:
        return [p for p in self._live_pools() if id(p) not in self._before and not p.destroyed]

    def leaks(self) -> list[str]:
        """One line per pool created since start() that still holds blocks of tags not allowed."""
        found: list[str] = []
        for pool in self._new_pools():
            offenders = []
            for stat in pool.snapshot().statistics():
                if stat.blocks > 0 and not any(fnmatch.fnmatchcase(stat.tag, p) for p in self.patterns):
                    offenders.append(f"{stat.tag} ({stat.blocks} blocks, {stat.bytes} bytes)")
            if offenders:
                found.append(f"pool {pool.name!r}: " + ", ".join(offenders))
        return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(allow=[PATTERN, ...]): fail the test if pools it created still hold "
        "blocks of tags not matching the patterns when it returns (ringpool plugin)",
    )


@pytest.fixture
def ringpool_no_leaks() -> LeakGuard:
    """Fail this test if pools it creates still hold blocks when it returns."""
    return LeakGuard()


def _marker_patterns(marker: pytest.Mark) -> list[str]:
    allow = marker.kwargs.get("allow", ())
    if isinstance(allow, str):
        allow = [allow]
    patterns = [*marker.args, *allow]
    for p in patterns:
        if not isinstance(p, str) or not p:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}: tag patterns are non-empty strings, not {p!r}")
    unknown = set(marker.kwargs) - {"allow"}
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}: unknown argument(s) {', '.join(sorted(unknown))}")
    return patterns


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    marker = item.get_closest_marker(MARKER)
    funcargs = getattr(item, "funcargs", {})
    guard = funcargs.get(MARKER) if MARKER in funcargs else None
    if marker is None and guard is None:
        return (yield)
    if guard is None:
        guard = LeakGuard()
    if marker is not None:
        guard.patterns.extend(_marker_patterns(marker))
    guard.start()
    result = yield
    leaks = guard.leaks()
    if leaks:
        pytest.fail("ringpool_no_leaks: outstanding blocks at the end of the test:\n  "
                    + "\n  ".join(leaks), pytrace=False)
    return result
