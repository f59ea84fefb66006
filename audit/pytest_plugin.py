"""pytest plugin ``ringpool``: leak and memory checks per test.

Loaded in every pytest run through the ``pytest11`` entry point, so it costs a
few marker and option registrations and nothing else unless asked:

    @pytest.mark.ringpool_no_leaks                      # pools: any outstanding block fails
    @pytest.mark.ringpool_no_leaks(allow=["cache*"])    # fnmatch patterns of tags that may remain
                                                        # (a module's, class's and test's add up)
    def test_parser(): ...

    def test_lexer(ringpool_no_leaks):                  # the fixture does the same
        ringpool_no_leaks.allow("scratch")              # and can allow tags at run time

    @pytest.mark.limit_memory("24 MB")                  # Python allocations: peak while the test runs
    @pytest.mark.limit_leaks("1 MB")                    # Python allocations: left, per call stack
    def test_cache(): ...

``ringpool_no_leaks`` checks the :class:`allocator.Pool` objects created while
the test function runs (not those of fixtures set up before it) that are still
alive when it returns; the failure names each pool and its leaking tags.  The
pools are noted as they are created, never found by scanning the heap.
The fixture asked for while the test runs (``request.getfixturevalue``) checks the
pools made from that moment on.

``limit_memory`` and ``limit_leaks`` have pytest-memray's names and meaning,
measured by ringpool's CPython allocator hooks (:mod:`allocator._pyhooks`):
``limit_memory`` fails a test whose allocations, at their peak while the test
body ran, exceed the limit; ``limit_leaks`` fails a test when the allocations
one call stack made while the body ran and had not freed when it returned
exceed the limit (``filter_fn(stack)`` may discard stacks; ``stack.frames``
are ``(function, filename, lineno)`` records, innermost first).  Limits are
``<NUMBER> ([KMGTP]B|B)``, powers of 1024, up to 2**64 - 1 bytes.  The hooks run for the test body
only, or for the whole session with ``--ringpool``.

``pytest --ringpool`` audits every test: the hooks run for the whole session,
and each failing test's report gets a section with the Python lines whose
allocations it left behind and those at its peak.  The cost per test is a copy
of two counters per call stack seen (O(call stacks)); nothing walks the heap.
"""

from __future__ import annotations

import fnmatch
import re
import weakref
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import pytest

from audit.printable import printable
from audit.schema import path_shown
from audit.words import plural

MARKER = "ringpool_no_leaks"
LIMIT_MEMORY = "limit_memory"
LIMIT_LEAKS = "limit_leaks"
DEFAULT_DEPTH = 8
TOP = 10

_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?B)\s*", re.IGNORECASE)


_MAX_SIZE = (1 << 64) - 1


def parse_size(text: object, marker: str) -> int:
    """``"24 MB"`` -> 25165824 (whole bytes, rounded down, computed exactly);
    UsageError naming the marker otherwise, also for a size above 2**64 - 1
    bytes."""
    m = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise pytest.UsageError(f"@pytest.mark.{marker}: {text!r} is not a size like '24 MB' "
                                "(<NUMBER> ([KMGTP]B|B))")
    whole, _, frac = m.group(1).partition(".")
    whole = whole.lstrip("0")
    frac = frac[:40]        # a fraction of a byte past that changes nothing
    size: int | None = None
    if len(whole) <= 20:    # else beyond 2**64 in any unit
        scale = 10 ** len(frac)
        size = (int(whole or "0") * scale + int(frac or "0")) * _UNITS[m.group(2).upper()] // scale
    if size is None or size > _MAX_SIZE:
        given = m.group(0)
        shown = given if len(given) <= 60 else given[:57] + "..."
        raise pytest.UsageError(f"@pytest.mark.{marker}: {shown!r} is larger than "
                                f"{_MAX_SIZE} bytes")
    return size


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.1f}TiB"


# ------------------------------------------------------------- pool guard
_guards: list[LeakGuard] = []
_original_init: Any = None


def _note_new_pools() -> None:
    """While a guard is active, Pool._init_common notes each new pool: every way a
    Pool is made goes through it (Pool(), pool.child() through Pool._setup, and the
    default pool of stat_create_pool() through Pool._wrap_default, which a wrap of
    _setup alone missed: a test leaking stat_alloc() blocks passed)."""
    global _original_init
    from allocator import Pool

    if _original_init is not None:
        return
    original = Pool._init_common

    def init_common(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        for guard in _guards:
            guard._refs.append(weakref.ref(self))
        return result

    _original_init = original
    Pool._init_common = init_common  # type: ignore[method-assign]


def _stop_noting() -> None:
    global _original_init
    if _guards or _original_init is None:
        return
    from allocator import Pool

    Pool._init_common = _original_init  # type: ignore[method-assign]
    _original_init = None


class LeakGuard:
    """What the ``ringpool_no_leaks`` fixture returns."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.patterns: list[str] = list(allow)
        self._refs: list[weakref.ReferenceType[Any]] = []

    def allow(self, *patterns: str) -> None:
        """Tags matching these fnmatch patterns may remain outstanding."""
        for p in patterns:
            if not isinstance(p, str) or not p:
                raise ValueError(f"ringpool_no_leaks: allow() takes non-empty tag patterns, not {p!r}")
        self.patterns.extend(patterns)

    def start(self) -> None:
        self._refs = []
        _note_new_pools()
        _guards.append(self)

    def stop(self) -> None:
        if self in _guards:
            _guards.remove(self)
        _stop_noting()

    def _new_pools(self) -> list[Any]:
        pools = (ref() for ref in self._refs)
        return [p for p in pools if p is not None and not p.destroyed]

    def leaks(self) -> list[str]:
        """One line per pool created since start() that still holds blocks of tags not allowed."""
        found: list[str] = []
        for pool in self._new_pools():
            # a snapshot names the pools above it and the line names the path: each
            # costs the pool's depth, so a chain of N pools cost N**2 (a chain of 4,000
            # empty pools and a leaking leaf took 3 s); only a pool with blocks pays it
            if pool.outstanding()[0] == 0:
                continue
            offenders = []
            for stat in pool.snapshot().statistics():
                if stat.blocks > 0 and not any(fnmatch.fnmatchcase(stat.tag, p) for p in self.patterns):
                    offenders.append(f"{printable(stat.tag)} ({plural(stat.blocks, 'block')}, "
                                     f"{plural(stat.bytes, 'byte')})")
            if offenders:
                found.append(f"pool '{path_shown(_pool_path(pool))}': " + ", ".join(offenders))
        return found


def _pool_path(pool: Any) -> tuple[str, ...]:
    """The pool's names from its root pool down (audit.schema.PoolPath): a child ``b`` of
    ``a`` is named ``a/b``, a root pool named ``a/b`` is ``a\\/b`` (path_shown)."""
    names = []
    while pool is not None:
        names.append(str(pool.name))
        pool = pool.parent
    return tuple(reversed(names))


# ------------------------------------------------------- Python allocations
class StackFrame(NamedTuple):
    function: str
    filename: str
    lineno: int


@dataclass(frozen=True)
class Stack:
    """A call stack given to ``limit_leaks(filter_fn=...)``: frames innermost first."""

    frames: tuple[StackFrame, ...]


def _stack(frames: tuple[tuple[str, int, str], ...]) -> Stack:
    return Stack(tuple(StackFrame(func, file, line) for file, line, func in frames))


def _where(frames: tuple[tuple[str, int, str], ...]) -> str:
    if not frames:
        return "(no Python frame)"
    file, line, func = frames[0]
    return f"{printable(func)}:{printable(file)}:{line}"


class Measurement:
    """Python allocations while a test body runs (the hooks started here unless
    they already run for the session)."""

    def __init__(self, depth: int) -> None:
        from allocator import _pyhooks

        self.hooks = _pyhooks
        self.started = not _pyhooks.is_tracing()
        if self.started:
            _pyhooks.start(depth=depth)
        self.starts = _pyhooks.starts()
        self.mark = _pyhooks.mark()
        self.base = _pyhooks.totals()[1]
        _pyhooks.reset_peak()
        self.peak = 0
        self.left: list[tuple[tuple[tuple[str, int, str], ...], int, int]] = []
        self.at_peak: list[tuple[tuple[tuple[str, int, str], ...], int, int]] = []
        self.lost: str | None = None     # why the test's allocations were not measured

    def finish(self) -> None:
        h = self.hooks
        if not h.is_tracing():
            # the counters went with the stop: a limit would pass on nothing
            self.lost = ("the test stopped ringpool's allocator hooks (allocator._pyhooks.stop()): "
                         "its Python allocations were not measured")
            return
        if h.starts() != self.starts:
            # stopped and started again: the counters began at zero, and compared
            # with the mark and base of the old ones they hid the test's allocations
            # (a 5 MB peak passed limit_memory("1 MB") under --ringpool)
            self.lost = ("the test stopped and started ringpool's allocator hooks again "
                         "(allocator._pyhooks.stop(), start()): its Python allocations were "
                         "not measured")
            if self.started:
                try:
                    h.stop()
                except RuntimeError as exc:
                    self.lost += f"; they could not be stopped after the test: {exc}"
            return
        self.peak = max(h.totals()[2] - self.base, 0)
        self.left = sorted(h.since(self.mark), key=lambda r: -r[2])
        self.at_peak = sorted(h.peaks_since(self.mark), key=lambda r: -r[2])
        if self.started:
            try:
                h.stop()
            except RuntimeError as exc:
                self.lost = f"ringpool's allocator hooks could not be stopped after the test: {exc}"

    def lines(self, rows: list[tuple[tuple[tuple[str, int, str], ...], int, int]],
              top: int = TOP, blocks: bool = True) -> list[str]:
        return [f"- {_where(frames)} -> {format_size(nbytes)}" + (f" ({n} blocks)" if blocks else "")
                for frames, n, nbytes in rows[:top] if nbytes > 0]


def _depth(config: pytest.Config) -> int:
    value = config.getoption("ringpool_depth", DEFAULT_DEPTH)
    return int(value) if value is not None else DEFAULT_DEPTH


def _check_limit_memory(marker: pytest.Mark, m: Measurement) -> str | None:
    limit = _one_size(marker, LIMIT_MEMORY, {"current_thread_only"})
    if m.peak <= limit:
        return None
    return "\n".join([f"Test was limited to {format_size(limit)} but allocated {format_size(m.peak)}",
                      "Python lines at the peak (bytes above the start of the test):",
                      *m.lines(m.at_peak, blocks=False)])


def _check_limit_leaks(marker: pytest.Mark, m: Measurement) -> str | None:
    limit = _one_size(marker, LIMIT_LEAKS, {"filter_fn", "current_thread_only"})
    filter_fn: Callable[[Stack], bool] | None = marker.kwargs.get("filter_fn")
    if filter_fn is not None and not callable(filter_fn):
        raise pytest.UsageError(f"@pytest.mark.{LIMIT_LEAKS}: filter_fn must be callable, "
                                f"not {filter_fn!r}")
    over = [r for r in m.left if r[2] > limit and (filter_fn is None or filter_fn(_stack(r[0])))]
    if not over:
        return None
    return "\n".join([f"Test was allowed to leak {format_size(limit)} per location "
                      f"but at least one location leaked more",
                      "Python lines that leaked more than the limit:", *m.lines(over)])


def _one_size(marker: pytest.Mark, name: str, allowed: set[str]) -> int:
    if len(marker.args) != 1:
        raise pytest.UsageError(f"@pytest.mark.{name}: takes one size, like {name}(\"24 MB\")")
    unknown = set(marker.kwargs) - allowed
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.{name}: unknown argument(s) {', '.join(sorted(unknown))}")
    if marker.kwargs.get("current_thread_only"):
        raise pytest.UsageError(f"@pytest.mark.{name}: current_thread_only=True is not supported "
                                "(allocations of every thread are counted)")
    return parse_size(marker.args[0], name)


# ------------------------------------------------------------------ hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ringpool", "ringpool memory audit")
    group.addoption("--ringpool", action="store_true", default=False,
                    help="audit every test with ringpool's CPython allocator hooks: a failing "
                         "test's report lists the Python lines whose allocations it left")
    group.addoption("--ringpool-depth", type=int, default=None, metavar="N",
                    help=f"Python frames kept per allocation (default {DEFAULT_DEPTH})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(allow=[PATTERN, ...]): fail the test if pools it created still hold "
        "blocks of tags not matching the patterns when it returns (ringpool plugin)",
    )
    config.addinivalue_line(
        "markers", f"{LIMIT_MEMORY}(SIZE): fail the test if its Python allocations exceed "
                   "SIZE (e.g. '24 MB') at their peak (ringpool plugin)")
    config.addinivalue_line(
        "markers", f"{LIMIT_LEAKS}(SIZE, filter_fn=None): fail the test if the allocations of "
                   "one call stack left when it returns exceed SIZE (ringpool plugin)")
    depth = config.getoption("ringpool_depth", None)
    if depth is not None and not 1 <= depth <= 64:
        raise pytest.UsageError(f"--ringpool-depth {depth}: must be between 1 and 64")
    if config.getoption("ringpool", False):
        from allocator import _pyhooks

        if not _pyhooks.is_tracing():
            _pyhooks.start(depth=_depth(config))
            config.stash[_SESSION_KEY] = True


_SESSION_KEY = pytest.StashKey[bool]()
_MEASURE_KEY = pytest.StashKey[Measurement]()
_CALL_GUARD_KEY = pytest.StashKey[list[LeakGuard]]()     # the guard of the running call, if any


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_SESSION_KEY, False):
        from allocator import _pyhooks

        try:
            _pyhooks.stop()
        except RuntimeError:
            pass        # another hook was installed on top; the process ends soon anyway


@pytest.fixture
def ringpool_no_leaks(request: pytest.FixtureRequest) -> LeakGuard:
    """Fail this test if pools it creates still hold blocks when it returns."""
    running: list[LeakGuard] | None = request.node.stash.get(_CALL_GUARD_KEY, None)
    if running:
        # asked for while the test runs, beside a marker: the marker's guard, so that
        # allow() adds to its patterns and each leaking pool is named once
        return running[0]
    guard = LeakGuard()
    if running is not None:
        # asked for while the test function runs (request.getfixturevalue): the
        # check ran only for a guard among the test's arguments, so a leak passed;
        # this one notes the pools made from now on and is checked the same way
        guard.start()
        running.append(guard)
    return guard


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
    markers = list(item.iter_markers(MARKER))     # the test's, its class's, its module's
    marker = markers[0] if markers else None
    funcargs = getattr(item, "funcargs", {})
    guard = funcargs.get(MARKER) if MARKER in funcargs else None
    mem_marker = item.get_closest_marker(LIMIT_MEMORY)
    leak_marker = item.get_closest_marker(LIMIT_LEAKS)
    audit_all = bool(item.config.getoption("ringpool", False))
    running: list[LeakGuard] = []      # the call's guard, or the fixture's asked for late
    measure: Measurement | None = None
    try:
        # every argument is checked before anything starts: a bad size raised after
        # guard.start() left the guard noting every pool made for the rest of the session
        # the patterns of every level add up, as allow() adds to the marker's: the
        # closest marker alone dropped a module's or class's allow=[...]
        patterns = [p for m in markers for p in _marker_patterns(m)]
        if mem_marker is not None:
            _one_size(mem_marker, LIMIT_MEMORY, {"current_thread_only"})   # bad sizes fail first
        if leak_marker is not None:
            _one_size(leak_marker, LIMIT_LEAKS, {"filter_fn", "current_thread_only"})
        if marker is not None and guard is None:
            guard = LeakGuard()
        if guard is not None:
            guard.patterns.extend(patterns)
            guard.start()
            running.append(guard)
        item.stash[_CALL_GUARD_KEY] = running
        if mem_marker is not None or leak_marker is not None or audit_all:
            measure = Measurement(_depth(item.config))
        try:
            result = yield
        finally:
            if measure is not None:
                measure.finish()
                item.stash[_MEASURE_KEY] = measure
    finally:
        if _CALL_GUARD_KEY in item.stash:
            del item.stash[_CALL_GUARD_KEY]
        for g in running:
            g.stop()
    problems = []
    for g in running:
        leaks = g.leaks()
        if leaks:
            problems.append("ringpool_no_leaks: outstanding blocks at the end of the test:\n  "
                            + "\n  ".join(leaks))
    if measure is not None and mem_marker is not None:
        problems.append(_check_limit_memory(mem_marker, measure) or "")
    if measure is not None and leak_marker is not None:
        problems.append(_check_limit_leaks(leak_marker, measure) or "")
    if measure is not None and measure.lost is not None:
        problems.append(measure.lost)
    problems = [p for p in problems if p]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                        pytest.TestReport]:
    report = yield
    measure = item.stash.get(_MEASURE_KEY, None)
    if call.when == "call" and report.failed and measure is not None \
            and item.config.getoption("ringpool", False):
        text = [f"peak of the test's Python allocations: {format_size(measure.peak)}",
                "left when the test returned:", *(measure.lines(measure.left) or ["- nothing"]),
                "at the peak:", *(measure.lines(measure.at_peak, blocks=False) or ["- nothing"])]
        report.sections.append(("ringpool: top Python lines", "\n".join(text)))
    return report
