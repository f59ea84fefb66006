"""The bench kernel and the demo workload (C) under ASan+UBSan and valgrind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _audit_testlib import c_compiler

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "audit" / "_bench_kernel.c", ROOT / "audit" / "_demo_workload.c",
           *sorted((ROOT / "csrc").glob("*.c"))]


def _build(out: Path, extra: list[str]) -> Path:
    subprocess.run([c_compiler(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1", "-D_GNU_SOURCE",
                    "-DRP_BUILDING", f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}",
                    f"-I{ROOT / 'audit'}", *extra,
                    str(Path(__file__).parent / "programs" / "kernel_driver.c"),
                    *map(str, SOURCES), "-o", str(out), "-ldl", "-lpthread"], check=True)
    return out


def _check_report(path: Path) -> None:
    doc = json.loads(path.read_text())
    tags = {t["tag"]: t for t in doc["tags"]}
    assert doc["pool"] == "server" and tags["cache-entry"]["blocks"] == 50


def test_asan_ubsan(tmp_path: Path) -> None:
    exe = _build(tmp_path / "driver-asan", ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                                            "-fno-omit-frame-pointer"])
    report = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGPOOL_")}
    env["ASAN_OPTIONS"] = "detect_leaks=1"
    result = subprocess.run([str(exe), str(report)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "kernel driver: ok" in result.stdout
    _check_report(report)


def test_valgrind(tmp_path: Path) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.fail("valgrind is missing: `make setup-sys` installs it")
    exe = _build(tmp_path / "driver", [])
    report = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGPOOL_")}
    result = subprocess.run([valgrind, "-q", "--error-exitcode=99", "--leak-check=full",
                             "--errors-for-leak-kinds=definite,indirect", str(exe), str(report)],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    _check_report(report)


def test_callgrind_driver_builds_and_checks_its_arguments(tmp_path: Path) -> None:
    """benches/audit/callgrind_bulk.c, the program the instruction counts come from."""
    exe = tmp_path / "callgrind_bulk"
    subprocess.run([c_compiler(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-D_GNU_SOURCE", "-DRP_BUILDING",
                    f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'audit'}",
                    str(ROOT / "benches" / "audit" / "callgrind_bulk.c"), *map(str, SOURCES),
                    "-o", str(exe), "-ldl", "-lpthread"], check=True)
    ok = subprocess.run([str(exe), "rp-destroy", "1e3", "arena"], capture_output=True, text=True)
    assert ok.returncode == 0 and "rp-destroy 1000 blocks: fill" in ok.stdout
    for argv in (["rp-destroy"], ["nope", "10"], ["glibc", "0"], ["glibc", "10", "huge"]):
        bad = subprocess.run([str(exe), *argv], capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr
