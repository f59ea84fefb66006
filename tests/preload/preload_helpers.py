"""Shared by the interposer's test files: where the test programs are, how to
run one under the interposer, where a marker line is."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from audit import preload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(os.environ.get("RINGPOOL_PRELOAD_TESTBIN", REPO / "build" / "preload-tests"))


def program(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make preload-test-bins`")
    return str(path)


def marker_lines(source: str, marker: str) -> list[int]:
    """The lines of source holding the comment /* marker."""
    lines = (HERE / source).read_text().splitlines()
    return [i + 1 for i, text in enumerate(lines) if re.search(rf"/\* {marker}\b", text)]


def marker_line(source: str, marker: str) -> int:
    hits = marker_lines(source, marker)
    assert hits, f"{marker} not in {source}"
    return hits[0]


def site_key(function: str, source: str, line: int) -> str:
    return f"{function} ({HERE / source}:{line})"


def clean_env(lib: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RINGPOOL_PRELOAD_") or k == "RINGPOOL_PRELOAD_LIB"}
    env.pop("RINGPOOL_REPORT", None)
    if lib is not None:
        env["LD_PRELOAD"] = lib
    env.update(extra)
    return env


def run(lib: str, argv: list[str], tmp: Path, env: dict[str, str] | None = None,
        pattern: str = "r.%p.json", cwd: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    full = clean_env(lib, RINGPOOL_PRELOAD_REPORT=str(tmp / pattern))
    full.update(env or {})
    return subprocess.run(argv, env=full, capture_output=True, timeout=timeout, cwd=cwd)


def reports(tmp: Path) -> dict[int, preload.PreloadReport]:
    found = {}
    for path in tmp.glob("*.json"):
        r = preload.load(str(path))
        found[r.pid] = r
    return found


def only_report(tmp: Path) -> preload.PreloadReport:
    found = reports(tmp)
    assert len(found) == 1, f"expected one report, found {sorted(found)}"
    return next(iter(found.values()))


def sites_of(report: preload.PreloadReport, name: str) -> preload.PreloadReport:
    """The report restricted to sites inside module `name`."""
    return preload.PreloadReport(report.path, report.pid, report.exe, report.taken_at,
                                 report.reason, report.totals, report.modules,
                                 tuple(s for s in report.sites if s.module.endswith("/" + name)))
