"""Helpers for the Python-hooks tests: scripts written to a temporary
directory and run in fresh interpreters (the hooks replace the allocators of
the whole process, so the test process itself is never hooked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

from audit.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str, str], Path]:
    """script(name, source) writes a dedented script and returns its path."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
        return path

    return write


def run_python(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full,
                          cwd=cwd, timeout=120, check=False)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def line_of(path: Path, marker: str) -> int:
    """The 1-based line of path that contains marker."""
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if marker in text:
            return n
    raise AssertionError(f"{marker!r} not in {path}")


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def run_cli_out(argv: list[str], capsys: pytest.CaptureFixture[str],
                tmp_path: Path) -> tuple[int, str, str]:
    """run_cli with ``--output FILE`` added after the command: (code, the file's text, stderr)."""
    out_file = tmp_path / "cli-output.txt"
    out_file.unlink(missing_ok=True)
    code, _, err = run_cli([argv[0], "--output", str(out_file), *argv[1:]], capsys)
    return code, out_file.read_text(encoding="utf-8") if out_file.exists() else "", err
