"""Fixtures shared by the interposer's test files."""

from __future__ import annotations

import pytest

from audit import preload


@pytest.fixture(scope="session")
def lib() -> str:
    return preload.library_path()
