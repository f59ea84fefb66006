"""A user's test suite, run by the install tests in a fresh venv: the
``ringpool_no_leaks`` marker and fixture come from the installed pytest plugin.
Expected: test_clean and test_allowed_by_fixture pass, test_forgotten_pool fails
naming its pool and tag."""

from typing import Any

import pytest

from allocator import Pool

KEEP: list[Any] = []


@pytest.mark.ringpool_no_leaks
def test_clean() -> None:
    with Pool("clean") as pool:
        pool.alloc(10, tag="short-lived")


@pytest.mark.ringpool_no_leaks
def test_forgotten_pool() -> None:
    pool = Pool("forgetful")
    pool.alloc(64, tag="never-freed")
    KEEP.append(pool)


def test_allowed_by_fixture(ringpool_no_leaks: Any) -> None:
    ringpool_no_leaks.allow("scratch-*")
    pool = Pool("allowed")
    pool.alloc(8, tag="scratch-1")
    KEEP.append(pool)
