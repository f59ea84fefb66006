"""The installed plugin's limit_memory and limit_leaks markers (CPython's
allocator hooks), run by the install tests in a fresh venv. Expected:
test_under_memory_limit passes; test_over_memory_limit and
test_over_leak_limit fail, naming the lines marked PEAK-LINE and LEAK-LINE."""

from typing import Any

import pytest

HELD: list[Any] = []


@pytest.mark.limit_memory("1 MB")
def test_under_memory_limit() -> None:
    bytearray(100_000)


@pytest.mark.limit_memory("1 MB")
def test_over_memory_limit() -> None:
    bytearray(4_000_000)  # PEAK-LINE


@pytest.mark.limit_leaks("100 KB")
def test_over_leak_limit() -> None:
    HELD.append(bytearray(500_000))  # LEAK-LINE
