"""The interposer's sampling mode (RINGPOOL_PRELOAD_SAMPLE_RATE, run --sample-rate).

sample_gt.c leaks 2,000,000 bytes at each of three call sites (blocks of 100,
4,000 and 100,000 bytes) and allocates and frees 40 MB at a fourth; gt_leaks.c
is the exact mode's ground truth, used here at rate 1, where every byte is a
sample and the estimates must equal the exact counts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from audit import preload
from audit.cli import main
from preload_helpers import program

TRUTH = {"leak_small": (20000, 2_000_000), "leak_pages": (500, 2_000_000),
         "leak_large": (20, 2_000_000)}


def _run(argv: list[str], tmp: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[bytes],
                                                                   list[dict[str, Any]]]:
    full = dict(os.environ)
    full.pop("RINGPOOL_REPORT", None)
    for k in ("RINGPOOL_PRELOAD_SAMPLE_RATE", "RINGPOOL_PRELOAD_SAMPLE_SEED"):
        full.pop(k, None)
    full.update({"LD_PRELOAD": preload.library_path(),
                 "RINGPOOL_PRELOAD_REPORT": str(tmp / "r.%p.json"),
                 "RINGPOOL_PRELOAD_STACK_DEPTH": "1"})
    full.update(env)
    proc = subprocess.run(argv, env=full, capture_output=True, timeout=120)
    docs = [json.loads(p.read_text()) for p in sorted(tmp.glob("r.*.json"))]
    for p in tmp.glob("r.*.json"):
        p.unlink()
    return proc, docs


def _by_function(doc: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    report = preload.parse(doc, str(path))
    symbols = preload.symbolize(report)
    out: dict[str, dict[str, Any]] = {}
    for raw, site in zip(doc["sites"], report.sites):
        fn = symbols[(site.module, site.offset)].function
        out[fn] = raw
    return out


def test_estimates_are_close_to_the_truth(tmp_path: Path) -> None:
    proc, docs = _run([program("sample_gt")], tmp_path,
                      {"RINGPOOL_PRELOAD_SAMPLE_RATE": "1e-3", "RINGPOOL_PRELOAD_SAMPLE_SEED": "11"})
    assert proc.returncode == 0, proc.stderr
    (doc,) = docs
    assert doc["sample_rate"] == pytest.approx(1e-3)
    assert doc["sample_period"] == pytest.approx(1000)
    sites = _by_function(doc, tmp_path / "r.json")
    for fn, (blocks, nbytes) in TRUTH.items():
        s = sites[fn]
        # one run at 1e-3 on 2 MB: relative standard deviation 2.2%
        assert s["est_bytes"] == pytest.approx(nbytes, rel=0.10), fn
        assert s["bytes"] == round(s["est_bytes"])
        assert s["est_bytes"] == pytest.approx(s["samples"] * 1000)
        assert s["est_blocks"] == pytest.approx(blocks, rel=0.15), fn
        assert s["sampled_blocks"] <= blocks
    assert "churn" not in sites            # everything it allocated was freed


def test_mean_estimate_over_seeds_is_unbiased(tmp_path: Path) -> None:
    est: dict[str, list[float]] = {fn: [] for fn in TRUTH}
    for seed in range(1, 31):
        proc, docs = _run([program("sample_gt")], tmp_path,
                          {"RINGPOOL_PRELOAD_SAMPLE_RATE": "1e-3",
                           "RINGPOOL_PRELOAD_SAMPLE_SEED": str(seed)})
        assert proc.returncode == 0, proc.stderr
        sites = _by_function(docs[0], tmp_path / "r.json")
        for fn in TRUTH:
            est[fn].append(sites[fn]["est_bytes"] if fn in sites else 0.0)
    for fn, (_, nbytes) in TRUTH.items():
        # 30 runs: the mean's relative standard deviation is 0.4%
        assert statistics.mean(est[fn]) == pytest.approx(nbytes, rel=0.02), fn
        assert len(set(est[fn])) > 1          # seeds do change the draw


def test_rate_one_equals_the_exact_counts(tmp_path: Path) -> None:
    gt = program("gt_leaks")
    proc, exact = _run([gt], tmp_path, {})
    assert proc.returncode == 0, proc.stderr
    proc, sampled = _run([gt], tmp_path, {"RINGPOOL_PRELOAD_SAMPLE_RATE": "1"})
    assert proc.returncode == 0, proc.stderr
    e = _by_function(exact[0], tmp_path / "r.json")
    s = _by_function(sampled[0], tmp_path / "r.json")
    for fn in ("leak_small", "leak_table", "leak_grown"):
        assert (s[fn]["blocks"], s[fn]["bytes"]) == (e[fn]["blocks"], e[fn]["bytes"]), fn
        assert s[fn]["samples"] == e[fn]["bytes"]


def test_same_seed_same_report(tmp_path: Path) -> None:
    env = {"RINGPOOL_PRELOAD_SAMPLE_RATE": "1e-2", "RINGPOOL_PRELOAD_SAMPLE_SEED": "5"}
    first = _run([program("sample_gt")], tmp_path, env)[1][0]["sites"]
    second = _run([program("sample_gt")], tmp_path, env)[1][0]["sites"]
    assert [(s["offset"], s["samples"]) for s in first] == [(s["offset"], s["samples"]) for s in second]


@pytest.mark.parametrize("value", ["abc", "0", "-1e-3", "2", "1e-3x", "nan"])
def test_bad_rate_warns_and_counts_every_block(tmp_path: Path, value: str) -> None:
    proc, docs = _run([program("gt_leaks")], tmp_path, {"RINGPOOL_PRELOAD_SAMPLE_RATE": value})
    assert proc.returncode == 0
    err = proc.stderr.decode()
    assert "RINGPOOL_PRELOAD_SAMPLE_RATE" in err and "counting every block" in err
    assert len(err.strip().splitlines()) == 1
    assert "sample_rate" not in docs[0]


def test_threads_under_sampling(tmp_path: Path) -> None:
    proc, docs = _run([program("threads")], tmp_path, {"RINGPOOL_PRELOAD_SAMPLE_RATE": "1e-2"})
    assert proc.returncode == 0, proc.stderr
    assert docs and docs[0]["sample_rate"] == pytest.approx(1e-2)


def test_cli_sample_rate_runs_and_marks_estimates(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--preload", "--sample-rate", "1e-3", "--sample-seed", "3",
               "--stack-depth", "1", "--report-dir", str(tmp_path), "--", program("sample_gt")])
    out, err = capsys.readouterr()
    text = out + err                     # the table goes to stderr unless --output is given
    assert rc == 0
    assert "~bytes" in text and "sampled with probability 0.001" in text
    assert "estimated (sampled at 0.001)" in err
    assert "leak_small" in text


@pytest.mark.parametrize("argv,message", [
    (["run", "--sample-rate", "1e-3", "--", "true"], "--sample-rate applies to --preload"),
    (["run", "--preload", "--sample-seed", "3", "--", "true"], "--sample-seed needs --sample-rate"),
])
def test_cli_sampling_option_errors(argv: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "1.5", "x", "-1"])
def test_cli_rejects_bad_rates(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preload", "--sample-rate", value, "--", "true"]) == 1
    err = capsys.readouterr().err
    assert "--sample-rate" in err and repr(value) in err
    assert len(err.strip().splitlines()) == 1


def test_diff_of_sampled_reports_marks_estimates(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for seed in ("1", "2"):
        _, docs = _run([program("sample_gt")], tmp_path,
                       {"RINGPOOL_PRELOAD_SAMPLE_RATE": "1e-3", "RINGPOOL_PRELOAD_SAMPLE_SEED": seed})
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps(docs[0]))
        paths.append(str(path))
    assert main(["diff", *paths]) == 0
    out, err = capsys.readouterr()
    assert "~bytes +/-" in out and "sampled with probability 0.001" in out
    assert err.startswith("estimated: ")
