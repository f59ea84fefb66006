"""The cost bench's workloads run, and run the same under the hooks (make bench-pyhooks measures them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_python

WORKLOADS = Path(__file__).resolve().parents[2] / "benches" / "pyhooks" / "workloads.py"


@pytest.mark.parametrize("name", ["json", "regex", "dictlist", "objects"])
def test_workload_gives_the_same_result_under_the_hooks(name: str, tmp_path: Path) -> None:
    plain = run_python(str(WORKLOADS), name, "2")
    assert plain.returncode == 0, plain.stderr
    hooked = run_python("-m", "audit._pyboot", str(WORKLOADS), name, "2",
                        env={"RINGPOOL_PYTHON_REPORT": str(tmp_path / "python.%p.json")})
    assert hooked.returncode == 0, hooked.stderr
    assert hooked.stdout == plain.stdout and int(plain.stdout) > 0
    assert len(list(tmp_path.glob("python.*.json"))) == 1


def test_bad_workload_arguments() -> None:
    r = run_python(str(WORKLOADS), "nope", "1")
    assert r.returncode == 1 and "usage: workloads.py" in r.stderr
