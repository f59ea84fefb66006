"""`bench`: the C kernel's measurements, every format, the plot, progress on stderr."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest

from audit.cli import main
from audit.commands import bench

SMALL = ["bench", "--blocks", "200,2000", "--repeat", "2"]


def test_json_rows_cover_every_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--format", "json", "--no-peers"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    names = {r["strategy"] for r in doc["rows"]}
    assert names == {"ringpool/malloc per-block free", "ringpool/malloc bulk destroy",
                     "ringpool/arena per-block free", "ringpool/arena bulk destroy",
                     "glibc malloc+free"}
    assert {r["blocks"] for r in doc["rows"]} == {200, 2000}
    for row in doc["rows"]:
        assert row["rounds"] == 2
        assert row["fill_ns_per_block"] > 0 and row["free_ns_per_block"] > 0
        assert (row["bulk_speedup"] is not None) == (row["kind"] == "bulk")
    glibc = [r for r in doc["rows"] if r["family"] == "glibc"]
    assert all(r["free_vs_glibc"] == 1.0 and r["total_vs_glibc"] == 1.0 for r in glibc)
    assert doc["sizes"] == "mixed" and doc["order"] == "random" and doc["repeat"] == 2
    assert "round 1/2" in err and "round 2/2" in err  # progress on stderr
    assert "bulk destroy over per-block free at 2000 blocks" in err


def test_speedup_and_ratio_are_computed_from_the_medians(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--format", "json", "--no-peers", "--backing", "malloc"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    for n in (200, 2000):
        group = {r["strategy"]: r for r in rows if r["blocks"] == n}
        per = group["ringpool/malloc per-block free"]
        bulk = group["ringpool/malloc bulk destroy"]
        glibc = group["glibc malloc+free"]
        assert bulk["bulk_speedup"] == pytest.approx(per["free_ns_per_block"] / bulk["free_ns_per_block"], rel=0.02, abs=0.01)
        assert per["free_vs_glibc"] == pytest.approx(per["free_ns_per_block"] / glibc["free_ns_per_block"], rel=0.02, abs=0.001)


def test_sizes_orders_and_text_formats(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("table", "github", "markdown"):
        assert main(["bench", "--blocks", "100", "--repeat", "1", "--sizes", "64", "--order", "lifo",
                     "--no-peers", "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "ringpool/arena bulk destroy" in out and "glibc malloc+free" in out
        assert "bulk speed-up" in out


def test_csv_and_folded(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--blocks", "100", "--repeat", "1", "--order", "fifo", "--no-peers",
                 "--format", "csv", "--unsync"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 5 and float(rows[0]["free_ns_per_block"]) > 0
    assert main(["bench", "--blocks", "100", "--repeat", "1", "--no-peers", "--format", "folded"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert all(line.rsplit(" ", 1)[0].endswith(";100") for line in lines)
    # a strategy is one frame, named as the table names it (folded keeps inner spaces)
    assert any(line.startswith("ringpool/arena bulk destroy;100 ") for line in lines), lines
    # the value is a whole number of picoseconds per block: speedscope's folded
    # importer takes only whole counts, and a bulk destroy's 0.03 ns must not read 0
    assert all(re.fullmatch(r"[0-9]+", line.rsplit(" ", 1)[1]) for line in lines), lines
    assert all(int(line.rsplit(" ", 1)[1]) > 0 for line in lines), lines


def test_plot_is_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "bench.png"
    assert main([*SMALL, "--no-peers", "--backing", "arena", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot in {png}" in capsys.readouterr().err
    assert main([*SMALL, "--no-peers", "--plot", str(png)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*SMALL, "--no-peers", "--plot", str(tmp_path / "bench.txt")]) == 1
    assert "--plot writes .png" in capsys.readouterr().err
    # a link at the plot's path, even to nothing, is refused, never written through
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "elsewhere.png")
    assert main([*SMALL, "--no-peers", "--backing", "arena", "--plot", str(link)]) == 1
    assert "--plot names a symbolic link" in capsys.readouterr().err
    assert link.is_symlink() and not (tmp_path / "elsewhere.png").exists()


def test_plot_without_matplotlib_fails_before_measuring(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bench ran although --plot could not be drawn")

    monkeypatch.setattr(bench, "measure", must_not_run)
    png = tmp_path / "bench.png"
    assert main([*SMALL, "--no-peers", "--plot", str(png)]) == 1
    err = capsys.readouterr().err
    assert "matplotlib" in err and "ringpool[plot]" in err
    assert not png.exists()


def test_peers_when_installed(capsys: pytest.CaptureFixture[str]) -> None:
    k = bench.kernel()
    expected = {"ringpool/malloc bulk destroy", "glibc malloc+free"}
    if k.lib.rpb_available(k.lib.RPB_TALLOC_DESTROY):
        expected |= {"talloc per-block free", "talloc free(parent)"}
    if k.lib.rpb_available(k.lib.RPB_APR_DESTROY):
        expected.add("APR apr_pool_destroy")
    if k.lib.rpb_available(k.lib.RPB_MI_DESTROY):
        expected |= {"mimalloc mi_free", "mimalloc mi_heap_destroy"}
    assert main(["bench", "--blocks", "300", "--repeat", "1", "--backing", "malloc", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    names = {r["strategy"] for r in json.loads(out)["rows"]}
    assert expected <= names
    for family in ("talloc", "apr", "mimalloc"):
        if not any(r.startswith(family.upper() if family == "apr" else family) for r in names):
            assert f"{family} skipped" in err


@pytest.mark.parametrize("seed", ["-1", str(1 << 64), "99999999999999999999999", "x"])
def test_a_seed_the_kernel_cannot_take_is_a_usage_error(seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    # a negative seed or one past 2**64-1 reached the C kernel's uint64_t and ended in
    # an OverflowError traceback after the tool had started measuring
    assert main(["bench", "--blocks", "100", "--repeat", "1", "--no-peers", "--seed", seed]) == 1
    err = capsys.readouterr().err
    assert "argument --seed" in err and "Traceback" not in err and "OverflowError" not in err


def test_the_seed_range_ends_are_taken(capsys: pytest.CaptureFixture[str]) -> None:
    for seed in ("0", str((1 << 64) - 1)):
        assert main(["bench", "--blocks", "100", "--repeat", "1", "--no-peers", "--backing", "malloc",
                     "--format", "json", "--seed", seed]) == 0
        assert json.loads(capsys.readouterr().out)["seed"] == int(seed)


def test_kernel_rejects_misuse() -> None:
    k = bench.kernel()
    lib, ffi = k.lib, k.ffi
    assert lib.rpb_work_new(0, 0, 0, 1) == ffi.NULL
    assert lib.rpb_work_new(10, 0, 7, 1) == ffi.NULL
    work = lib.rpb_work_new(50, 0, lib.RPB_ORDER_RANDOM, 1)
    try:
        assert lib.rpb_fill(work, 99, 0) == -1
        assert ffi.string(lib.rpb_last_error(work)) == b"no such strategy"
        assert lib.rpb_fill(work, lib.RPB_RP_FREE, 1 << 9) == -1
        assert ffi.string(lib.rpb_last_error(work)) == b"unknown pool flags"
        assert lib.rpb_release(work) == -1
        assert lib.rpb_fill(work, lib.RPB_RP_DESTROY, lib.RPB_POOL_ARENA) == 0
        assert lib.rpb_outstanding(work) == 50
        assert lib.rpb_fill(work, lib.RPB_RP_DESTROY, 0) == -1
        assert b"already filled" in ffi.string(lib.rpb_last_error(work))
        assert lib.rpb_release(work) == 0 and lib.rpb_filled(work) == 0
        # The free order is a permutation, fixed by the seed; mixed sizes are in range.
        order = [lib.rpb_work_order_at(work, i) for i in range(50)]
        assert sorted(order) == list(range(50)) and order != list(range(50))
        sizes = [lib.rpb_work_size_at(work, i) for i in range(50)]
        assert all(8 <= s <= 4096 for s in sizes) and len(set(sizes)) > 10
        assert lib.rpb_work_bytes(work) == sum(sizes)
    finally:
        lib.rpb_work_delete(work)
    lifo = lib.rpb_work_new(5, 16, lib.RPB_ORDER_LIFO, 1)
    assert [lib.rpb_work_order_at(lifo, i) for i in range(5)] == [4, 3, 2, 1, 0]
    lib.rpb_work_delete(lifo)


def test_bench_ignores_report_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RINGPOOL_REPORT", str(tmp_path / "%n.%p.json"))
    assert main(["bench", "--blocks", "100", "--repeat", "1", "--no-peers"]) == 0
    capsys.readouterr()
    assert list(tmp_path.iterdir()) == []
