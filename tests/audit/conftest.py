"""Shared fixtures for the audit CLI tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from _audit_testlib import c_compiler, report_doc, static_library

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"


@pytest.fixture
def write_report(tmp_path: Path) -> Callable[..., str]:
    def write(name: str, doc: dict[str, Any] | str | None = None, **kwargs: Any) -> str:
        path = tmp_path / name
        if isinstance(doc, str):
            path.write_text(doc, encoding="utf-8")
        else:
            path.write_text(json.dumps(doc if doc is not None else report_doc(**kwargs)), encoding="utf-8")
        return str(path)

    return write


@pytest.fixture(scope="session")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/audit/programs/leaky.c compiled with the system cc against the static library."""
    out = tmp_path_factory.mktemp("programs") / "leaky"
    subprocess.run([c_compiler(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", str(PROGRAMS / "leaky.c"), str(static_library()),
                    "-lpthread", "-o", str(out)], check=True)
    return str(out)
