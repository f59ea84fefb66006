"""Shared fixtures for the audit CLI tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from _audit_testlib import report_doc

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


def lib_a() -> Path:
    return Path(os.environ.get("RINGPOOL_LIB_A", ROOT / "build" / "libringpool.a"))


@pytest.fixture(scope="session")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/audit/programs/leaky.c compiled with the system cc against the static library."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    assert cc is not None, "a C compiler is needed (make setup-sys installs gcc)"
    library = lib_a()
    assert library.exists(), f"{library} is missing: run `make lib` first"
    out = tmp_path_factory.mktemp("programs") / "leaky"
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", str(PROGRAMS / "leaky.c"), str(library),
                    "-lpthread", "-o", str(out)], check=True)
    return str(out)
