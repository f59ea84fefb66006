"""examples/embed/host: CPython started and stopped N times in one process, its
residue per cycle through `ringpool-audit run --cycles`, plain, under the
interposer and with CPython's allocator domains routed into a ringpool pool."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from audit.cli import main

ROOT = Path(__file__).resolve().parents[2]
HOST = os.environ.get("EMBED_HOST", str(ROOT / "build" / "embed" / "host"))
SCRIPT = str(ROOT / "examples" / "embed" / "cycle.py")
RESULT = "result of every cycle: 2026-01-01 ####-##-## 3.30 4.0 [1, 2, 3]"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RINGPOOL_", "PYTHONMALLOC", "PYTHONDEVMODE")) and k != "LD_PRELOAD"}
    env.update(extra)
    return env


def _host(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HOST, *args], env=_env(**env), capture_output=True, text=True, check=False)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.exists(HOST):
        pytest.fail(f"{HOST} is missing: run `make test-embed` (it builds the host)")
    for name in list(os.environ):
        if name.startswith(("RINGPOOL_", "PYTHONMALLOC", "PYTHONDEVMODE")) or name == "LD_PRELOAD":
            monkeypatch.delenv(name)


def _residue(capsys: pytest.CaptureFixture[str], out: Path) -> dict[str, Any]:
    capsys.readouterr()
    doc = json.loads(out.read_text())
    assert isinstance(doc, dict)
    return doc


def test_three_cycles_print_three_rows_and_the_result() -> None:
    done = _host(SCRIPT, "3", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and lines[-1] == RESULT
    assert [int(line.split()[0]) for line in lines[1:4]] == [1, 2, 3]


def test_the_result_is_the_same_under_the_interposer(tmp_path: Path) -> None:
    from audit import preload
    under = _host(SCRIPT, "2", LD_PRELOAD=str(preload.library_path()), RINGPOOL_PRELOAD_STACK_DEPTH="64",
                  RINGPOOL_PRELOAD_REPORT=str(tmp_path / "r.json"), PYTHONMALLOC="malloc")
    assert under.returncode == 0, under.stderr
    assert under.stdout.splitlines()[-1] == RESULT
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["blocks"] > 1000


def test_a_cycle_with_another_result_fails(tmp_path: Path) -> None:
    script = tmp_path / "varies.py"
    script.write_text("import time\nresult = str(time.monotonic_ns())\n")
    done = _host(str(script), "2")
    assert done.returncode == 1 and "differs from cycle 1's" in done.stderr


def test_interposer_residue_per_cycle_is_stable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sites.json"
    os.environ["PYTHONMALLOC"] = "malloc"      # every object on the C heap (monkeypatch restores)
    assert main(["run", "--preload", "--cycles", "1,2,4", "--by", "module", "--format", "json",
                 "--output", str(out), "--", HOST, SCRIPT, "{cycles}"]) == 0
    doc = _residue(capsys, out)
    libpython = [r for r in doc["rows"] if "libpython" in r["key"] and not r["suppressed"]]
    assert len(libpython) == 1
    first, second = libpython[0]["blocks_per_cycle_1_2"], libpython[0]["blocks_per_cycle_2_4"]
    assert first > 1000 and abs(first - second) <= 0.01 * first
    others = [r for r in doc["rows"] if r not in libpython and not r["suppressed"]]
    assert all(r["blocks_per_cycle_2_4"] == 0 for r in others)


def test_pool_of_every_domain_sees_what_the_interposer_sees(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    pool_out, sites_out = tmp_path / "pool.json", tmp_path / "sites.json"
    assert main(["run", "--cycles", "1,3", "--format", "json", "--output", str(pool_out), "--",
                 HOST, "--pool", "all", "--tag", "module", SCRIPT, "{cycles}"]) == 0
    pool = _residue(capsys, pool_out)
    tags = {r["key"]: r for r in pool["rows"]}
    # what the imports of the script's modules leave, by module
    assert tags["_decimal"]["blocks_per_cycle_1_3"] > 0 and tags["collections"]["blocks_per_cycle_1_3"] > 0
    assert tags["json"]["blocks_per_cycle_1_3"] == 0
    os.environ["PYTHONMALLOC"] = "malloc"
    assert main(["run", "--preload", "--cycles", "1,3", "--by", "module", "--format", "json",
                 "--output", str(sites_out), "--", HOST, SCRIPT, "{cycles}"]) == 0
    sites = _residue(capsys, sites_out)
    in_pool = pool["totals"][0]["blocks_per_cycle"]
    interposed = sites["totals"][0]["blocks_per_cycle"]
    assert in_pool > 1000 and abs(in_pool - interposed) <= 0.01 * interposed


def test_raw_domain_in_a_pool_tagged_by_cycle(tmp_path: Path) -> None:
    done = _host("--pool", "raw", "--checked", SCRIPT, "3", "1",
                 RINGPOOL_REPORT=str(tmp_path / "%n.%p.json"))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:4]]
    assert all(len(r) == 6 for r in rows)
    assert int(rows[2][3]) > int(rows[1][3]) > int(rows[0][3]) > 0     # pool blocks grow
    report = json.loads(next(tmp_path.glob("cpython.*.json")).read_text())
    assert report["reason"] == "destroy"
    residue = {t["tag"]: t for t in report["tags"]}
    assert residue["cycle 000002"]["blocks"] > 0 and residue["cycle 000003"]["blocks"] > 0
    assert sum(t["blocks"] for t in report["tags"]) == int(rows[2][3])


@pytest.mark.parametrize("args, env, message", [
    (["--pool", "heap", SCRIPT, "1"], {}, "unknown option or value"),
    (["--tag", "module", SCRIPT, "1"], {}, "apply to --pool only"),
    (["--pool", "raw", SCRIPT, "1"], {"PYTHONMALLOC": "malloc"}, "unset PYTHONMALLOC"),
    ([SCRIPT, "0"], {}, "N must be an integer from 1"),
    ([SCRIPT, "2", "x"], {}, "EVERY must be an integer"),
    (["missing.py", "1"], {}, "missing.py"),
    ([SCRIPT], {}, "usage: host"),
])
def test_bad_arguments_are_refused(args: list[str], env: dict[str, str], message: str) -> None:
    done = _host(*args, **env)
    assert done.returncode == 1 and message in done.stderr, done.stderr
