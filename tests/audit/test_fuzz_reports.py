"""Fuzz of `show` and `diff` over mutated reports, in every output format.

Hypothesis builds valid reports (ringpool snapshots with children and blocks,
and interposer reports), then damages them: a value replaced anywhere by a
hostile one (huge or negative integers, floats, lone surrogates, deep nesting,
wrong types), a key dropped or added, the text cut, bytes flipped or inserted.
Whatever the input, the CLI must answer exit 0, or exit 1 with exactly one
line that names the file; never a traceback, and every case within a time
bound (an interval timer interrupts a hang).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import time
from types import FrameType
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from audit.cli import main
from audit.formatters import FORMAT_NAMES

CASE_SECONDS = 20.0       # the bound for one command on a mutated report
EXAMPLES = int(os.environ.get("RINGPOOL_FUZZ_EXAMPLES", "150"))

# ----------------------------------------------------------------- reports
texts = st.text(st.characters(codec="utf-8"), max_size=12)
hostile_texts = st.one_of(
    texts,
    st.sampled_from(["\ud800", "a\udfffb", "\udc80", "", "x" * 3000, "\x00\n\r\t",
                     "%s%n", "../../etc", "\u202e\ufeff", "\U0001f600"]))
counts = st.integers(0, 2**20)
hostile_ints = st.one_of(
    st.integers(-2**70, 2**70),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**400, -(10**400)]))
scalars = st.one_of(st.none(), st.booleans(), hostile_ints, hostile_texts,
                    st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(hostile_texts, inner, max_size=4)),
    max_leaves=12)


@st.composite
def snapshot_docs(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    names = draw(st.lists(texts, max_size=6, unique=True))
    tags: list[dict[str, Any]] = [{"tag": n, "blocks": draw(counts), "bytes": draw(counts),
             "peak_bytes": draw(counts), "allocs": draw(counts)} for n in names]
    doc: dict[str, Any] = {
        "pool": draw(texts), "pid": draw(st.integers(0, 2**31)),
        "taken_at": "2026-11-26T04:20:00Z",
        "reason": draw(st.sampled_from(["destroy", "exit", "request"])),
        "backing": draw(st.sampled_from(["malloc", "arena"])),
        "totals": {"blocks": sum(t["blocks"] for t in tags),
                   "bytes": sum(t["bytes"] for t in tags),
                   "peak_bytes": draw(counts), "allocs": sum(t["allocs"] for t in tags)},
        "tags": tags,
    }
    with_blocks: bool = draw(st.booleans())
    if tags and with_blocks and doc["totals"]["blocks"] < 50:
        doc["blocks"] = [{"address": f"{0x1000 + 16 * i:#x}", "size": 8, "tag": t["tag"]}
                         for i, t in enumerate(x for x in tags for _ in range(x["blocks"]))]
    if depth < 2 and draw(st.booleans()):
        doc["children"] = draw(st.lists(snapshot_docs(depth + 1), max_size=2))
    if draw(st.booleans()):
        doc[draw(texts)] = draw(json_values)       # a field a newer writer may add
    if depth == 0:
        doc = {"format": "ringpool-snapshot", "version": 1, **doc}
    return doc


@st.composite
def preload_docs(draw: st.DrawFn) -> dict[str, Any]:
    modules = ["/nonexistent/app", "/nonexistent/libc.so.6"]
    sites = [{"module": draw(st.sampled_from(modules)), "offset": f"{draw(counts):#x}",
              "blocks": draw(counts), "bytes": draw(counts), "allocs": draw(counts),
              "symbol": draw(st.one_of(st.none(), texts))}
             for _ in range(draw(st.integers(0, 5)))]
    return {"format": "ringpool-preload", "version": 1, "pid": 7, "exe": modules[0],
            "taken_at": "2026-11-26T04:20:00Z", "reason": "exit",
            "totals": {"blocks": sum(s["blocks"] for s in sites),
                       "bytes": sum(s["bytes"] for s in sites),
                       "allocs": sum(s["allocs"] for s in sites)},
            "modules": [{"path": m, "base": "0x400000", "build_id": None} for m in modules],
            "sites": sites}


def _paths(value: Any) -> list[tuple[Any, ...]]:
    """Every path into value (keys and indexes), shallow levels only."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, prefix = stack.pop()
        out.append(prefix)
        if len(prefix) >= 6:
            continue
        if isinstance(node, dict):
            stack.extend((sub, prefix + (key,)) for key, sub in node.items())
        elif isinstance(node, list):
            stack.extend((sub, prefix + (i,)) for i, sub in enumerate(node))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> bytes:
    doc = draw(base)
    deep: int | None = None
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        action = draw(st.sampled_from(["replace", "drop", "add", "deepen", "duplicate"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "drop":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(hostile_texts)] = draw(json_values)
        elif action == "deepen" and deep is None:
            # Spliced into the text below: json.dumps itself cannot nest that deep.
            deep = draw(st.sampled_from([11, 200, 3001, 100000]))
            parent[path[-1]] = _DEEP
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(parent[path[-1]])
    text = json.dumps(doc, allow_nan=True)
    if deep is not None:
        nested = '{"a": ' * deep + "1" + "}" * deep if deep % 2 else "[" * deep + "]" * deep
        text = text.replace(json.dumps(_DEEP), nested)
    data = text.encode("utf-8", "surrogatepass")
    edit = draw(st.sampled_from(["none", "none", "cut", "flip", "insert"]))
    if edit == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif edit == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    elif edit == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


_DEEP = "\x00deep\x00"
reports = st.one_of(mutated(snapshot_docs()), mutated(preload_docs()))


# ---------------------------------------------------------------- harness
class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_bound(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise _Hang(f"a case ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _run(argv: list[str]) -> tuple[int, bytes, str]:
    # stdout like a pipe's (binary formats write to its buffer), stderr as text.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.StringIO()
    start = time.monotonic()
    with _time_bound(CASE_SECONDS), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main(argv)
    assert time.monotonic() - start < CASE_SECONDS
    out.flush()
    return code, out.buffer.getvalue(), err.getvalue()


def _check(code: int, err: str, bad: str) -> None:
    event(f"exit {code}")
    assert "Traceback" not in err
    assert code in (0, 1), (code, err)
    assert err.count("\n") == 1, err          # the summary, or the error, in one line
    if code == 1:
        assert err.startswith("ringpool-audit: error: "), err
        assert bad in err, err


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ringpool-fuzz-") as d:
        yield d


_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture,
                                            HealthCheck.data_too_large])


@_SETTINGS
@given(data=reports, fmt=st.sampled_from(FORMAT_NAMES))
def test_show_answers_every_mutated_report(workdir: str, data: bytes, fmt: str) -> None:
    bad = os.path.join(workdir, "mutated.json")
    with open(bad, "wb") as f:
        f.write(data)
    code, _, err = _run(["show", bad, "--format", fmt])
    _check(code, err, bad)


@_SETTINGS
@given(old=reports, new=reports, fmt=st.sampled_from(FORMAT_NAMES))
def test_diff_answers_every_pair_of_mutated_reports(workdir: str, old: bytes, new: bytes,
                                                    fmt: str) -> None:
    paths = []
    for name, data in (("old.json", old), ("new.json", new)):
        path = os.path.join(workdir, name)
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
    code, _, err = _run(["diff", *paths, "--format", fmt])
    event(f"exit {code}")
    assert "Traceback" not in err and code in (0, 1), (code, err)
    assert err.count("\n") == 1, err
    if code == 1:
        assert err.startswith("ringpool-audit: error: "), err
        assert paths[0] in err or paths[1] in err, err
