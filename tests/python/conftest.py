"""Fixtures for the allocator tests: every pool test runs on both backings."""

from __future__ import annotations

import gc
import os
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from allocator import Pool
from allocator import _lowlevel as ll

settings.register_profile(
    "ci", max_examples=40, stateful_step_count=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, stateful_step_count=60, deadline=None)
# `make test-py-asan` (RINGPOOL_PY_ASAN set): every call costs several times
# more under the sanitizers, so the state machines run fewer, shorter
# sequences (HYPOTHESIS_PROFILE still wins when set).
settings.register_profile(
    "asan", max_examples=15, stateful_step_count=30, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
if os.environ.get("RINGPOOL_PY_ASAN") and not os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile("asan")
else:
    settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKINGS = ["malloc", "arena"]


@pytest.fixture(params=BACKINGS)
def backing(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pool(backing: str) -> Iterator[Pool]:
    p = Pool("test", backing=backing)
    yield p
    if not p.destroyed:
        p.check()
        p.destroy()


@pytest.fixture
def checked_pool(backing: str) -> Iterator[Pool]:
    p = Pool("checked", backing=backing, checked=True)
    yield p
    p.destroy()


@pytest.fixture(autouse=True)
def _no_injection_left() -> Iterator[None]:
    """A test that arms the out-of-memory countdown must not leak it."""
    yield
    ll.debug_fail_after(0)
    gc.collect()
