"""`demo` end to end: the workload, the four sections, the leak gate inside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.cli import main


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "demo"
    assert main(["demo", "--keep", str(keep), "--bench-blocks", "1e3,1e4", "--repeat", "1"]) == 0
    out, err = capsys.readouterr()
    sections = out.split("\n== ")
    assert [s.split(".")[0] for s in sections[1:]] == ["1", "2", "3", "4"]
    snapshot, diff, leaks, bench = sections[1:]
    # 1. by-tag snapshot after 1000 requests: the two leaks and the owned tags
    row = {line.split()[1]: line.split()[2:4] for line in snapshot.splitlines()
           if line.startswith(("server", "server/requests"))}
    assert row["cache-entry"] == ["100", "30000"]
    assert row["session"] == ["40", "3840"]
    assert row["config"] == ["1", "4096"] and row["routes"][0] == "12" and row["log-line"][0] == "64"
    # 2. between request 200 and 1000 only the leaking tags (and the log) changed
    changed = [line.split()[1] for line in diff.splitlines() if line.startswith("server")]
    assert changed[:2] == ["cache-entry", "session"]
    # 3. the library's destroy reports, one per pool, and the gate exit code
    assert "exit code 2" in leaks
    assert "cache-entry" in leaks and "session" in leaks and "config" not in leaks.split("\n", 3)[3]
    destroy_reports = sorted((keep / "at-destroy").glob("*.json"))
    assert [p.name.split(".")[0] for p in destroy_reports] == ["requests", "server"]
    assert {json.loads(p.read_text())["reason"] for p in destroy_reports} == {"destroy"}
    # 4. the bench table
    assert "ringpool/arena bulk destroy" in bench and "glibc malloc+free" in bench
    assert "demo: done" in err


def test_demo_without_bench_in_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--no-bench", "--requests", "250", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| cache-entry" in out and "== 4." not in out
    assert "after 250 requests" in out and "request 50 and request 250" in out


def test_demo_keep_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("")
    assert main(["demo", "--no-bench", "--keep", str(target)]) == 1
    assert "cannot create" in capsys.readouterr().err


def test_demo_keep_never_empties_a_linked_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --keep DIR emptied DIR/at-destroy of its .json files before the run and wrote the
    # reports there, through a symbolic link too: another directory lost its .json files
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.json").write_text("{}")
    keep = tmp_path / "demo"
    keep.mkdir()
    (keep / "at-destroy").symlink_to(elsewhere)
    assert main(["demo", "--no-bench", "--requests", "50", "--keep", str(keep)]) == 1
    err = capsys.readouterr().err
    assert "at-destroy: a symbolic link, which the demo never writes through" in err, err
    assert [p.name for p in elsewhere.iterdir()] == ["precious.json"]


@pytest.mark.parametrize("count", ["99999999999999999999", "1000000001"])
def test_demo_requests_beyond_the_bound_are_a_usage_error(
        count: str, capsys: pytest.CaptureFixture[str]) -> None:
    # a count past a C long reached the workload and ended in an OverflowError traceback
    assert main(["demo", "--no-bench", "--requests", count]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a number of requests is from 1 to 1000000000" in err, err


def test_demo_html_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a symbolic link at --html was found only at the end, after the whole demo had run,
    # and the error named --output
    link = tmp_path / "leaks.html"
    link.symlink_to(tmp_path / "elsewhere.html")
    assert main(["demo", "--no-bench", "--requests", "50", "--html", str(link)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, (out, err)
    assert "--html names a symbolic link" in err, err
    assert link.is_symlink() and not (tmp_path / "elsewhere.html").exists()
