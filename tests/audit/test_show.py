"""`show`: the by-tag table, every format, sorting, merging, the leak gate, --output."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from audit.cli import main
from _audit_testlib import report_doc, tag

WriteReport = Callable[..., str]


def test_table_lists_tags_with_percent(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("tag"))
    assert header.split() == ["tag", "blocks", "bytes", "peak", "allocs", "%", "bytes"]
    tokens = next(line for line in lines if line.startswith("tokens"))
    assert tokens.split() == ["tokens", "2", "64", "4000", "12", "66.7"]
    assert "1 report: 3 blocks, 96 bytes outstanding in 2 tags" in err
    assert "tokens" not in err  # the summary goes to stderr, the data to stdout


def test_summary_counts_one_block_in_the_singular(write_report: WriteReport,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("one.json", tags=[tag("tokens", 1, 1)])
    assert main(["show", path]) == 0
    assert "1 report: 1 block, 1 byte outstanding in 1 tag" in capsys.readouterr().err


def test_json_format(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "snapshot"
    assert doc["reports"][0]["pool"] == "parser"
    assert doc["reports"][0]["pid"] == 4242
    assert doc["rows"][0] == {"key": "tokens", "blocks": 2, "bytes": 64, "peak_bytes": 4000,
                              "allocs": 12, "percent": 66.7}


def test_csv_format(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["key"] for r in rows] == ["tokens", "(untagged)"]
    assert rows[1]["bytes"] == "32" and rows[1]["allocs"] == "5"


def test_markdown_and_github_formats(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "| tag" in md and "|:--" in md or "|---" in md or "| :" in md
    assert "| tokens" in md
    assert main(["show", path, "--format", "github"]) == 0
    gh = capsys.readouterr().out
    assert gh.startswith("### outstanding by tag")
    assert "| tokens" in gh and "|---" in gh.replace(" ", "").replace(":", "-")


def test_folded_format_has_pool_frames(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    child = report_doc("lexer", [tag("buf", 1, 10)])
    del child["format"], child["version"]
    path = write_report("a.json", report_doc(children=[child]))
    assert main(["show", path, "--format", "folded"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "parser;tokens 64" in lines
    assert "parser;(untagged) 32" in lines
    assert "parser;lexer;buf 10" in lines


def test_children_get_a_pool_column(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    child = report_doc("lexer", [tag("buf", 5, 500)])
    del child["format"], child["version"]
    path = write_report("a.json", report_doc(children=[child]))
    assert main(["show", path]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("pool"))
    assert lines[header].split()[:2] == ["pool", "tag"]
    assert lines[header + 2].split()[:4] == ["parser/lexer", "buf", "5", "500"]


@pytest.mark.parametrize(("sort", "expected"), [
    ("bytes", ["big", "mid", "small"]),
    ("blocks", ["small", "mid", "big"]),
    ("peak", ["mid", "big", "small"]),
    ("tag", ["big", "mid", "small"]),
])
def test_sort(sort: str, expected: list[str], write_report: WriteReport,
              capsys: pytest.CaptureFixture[str]) -> None:
    tags = [tag("small", 9, 10, peak=20), tag("big", 1, 1000, peak=1000), tag("mid", 5, 100, peak=5000)]
    path = write_report("a.json", report_doc(tags=tags))
    assert main(["show", path, "--sort", sort, "--format", "json"]) == 0
    assert [r["key"] for r in json.loads(capsys.readouterr().out)["rows"]] == expected


def test_top_and_min_bytes(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    tags = [tag("a", 1, 10), tag("b", 1, 1000), tag("c", 1, 100), tag("d", 0, 0, peak=5, allocs=3)]
    path = write_report("a.json", report_doc(tags=tags))
    assert main(["show", path, "--top", "2", "--format", "json"]) == 0
    assert [r["key"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["b", "c"]
    assert main(["show", path, "--min-bytes", "11", "--format", "json"]) == 0
    assert [r["key"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["b", "c"]
    assert main(["show", path, "--min-bytes", "0", "--format", "csv"]) == 0
    assert "d,0,0" in capsys.readouterr().out


def test_several_reports_merge_with_a_column_per_report(write_report: WriteReport,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    one = write_report("p.100.json", report_doc(tags=[tag("shared", 1, 10), tag("only1", 2, 20)], pid=100))
    two = write_report("p.200.json", report_doc(tags=[tag("shared", 3, 30)], pid=200))
    assert main(["show", one, two, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["shared"]["blocks"] == 4 and rows["shared"]["bytes"] == 40
    assert rows["shared"]["report:p.100"] == 10 and rows["shared"]["report:p.200"] == 30
    assert rows["only1"]["report:p.200"] == 0
    assert [r["pid"] for r in doc["reports"]] == [100, 200]
    assert main(["show", one, two]) == 0
    out, err = capsys.readouterr()
    assert "p.100 bytes" in out and "p.200 bytes" in out
    assert "2 reports: 6 blocks, 60 bytes" in err


def test_gate_off_by_default(write_report: WriteReport) -> None:
    assert main(["show", write_report("a.json")]) == 0


def test_fail_on_leak(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path, "--fail-on-leak"]) == 2
    err = capsys.readouterr().err
    assert "leak gate: FAILED" in err and "tokens" in err and "(untagged)" in err


def test_allow_tag_patterns(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path, "--fail-on-leak", "--allow-tag", "tok*"]) == 2
    err = capsys.readouterr().err
    assert "(untagged)" in err and "tokens" not in err.split("FAILED")[1]
    assert main(["show", path, "--fail-on-leak", "--allow-tag", "tok*", "--allow-tag", "(untagged)"]) == 0
    assert "leak gate: passed" in capsys.readouterr().err


def test_max_leak_bytes(write_report: WriteReport) -> None:
    path = write_report("a.json")  # 96 bytes outstanding
    assert main(["show", path, "--max-leak-bytes", "96"]) == 0
    assert main(["show", path, "--max-leak-bytes", "95"]) == 2
    assert main(["show", path, "--max-leak-bytes", "50", "--allow-tag", "tokens"]) == 0


def test_gate_ignores_tags_without_outstanding_blocks(write_report: WriteReport) -> None:
    path = write_report("a.json", report_doc(tags=[tag("gone", 0, 0, peak=100, allocs=10)]))
    assert main(["show", path, "--fail-on-leak"]) == 0


def test_output_file_and_force(write_report: WriteReport, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    target = tmp_path / "out.csv"
    assert main(["show", path, "--format", "csv", "--output", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "3 blocks" in err
    assert target.read_text().startswith("key,blocks,bytes")
    target.write_text("keep me")
    assert main(["show", path, "--output", str(target)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    assert main(["show", path, "--output", str(target), "--force"]) == 0
    assert "tokens" in target.read_text()


def test_output_into_missing_directory(write_report: WriteReport, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path, "--output", str(tmp_path / "no" / "such.txt")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_output_never_writes_through_links_nor_waits_on_a_fifo(
        write_report: WriteReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A link to nothing (without --force) and a link to a file (with --force)
    # are refused and left as they were; nothing is created at a link's target.
    path = write_report("a.json")
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "elsewhere.txt")
    assert main(["show", path, "--output", str(dangling)]) == 1
    assert "names a symbolic link" in capsys.readouterr().err
    assert dangling.is_symlink() and not (tmp_path / "elsewhere.txt").exists()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.txt"
    link.symlink_to(victim)
    assert main(["show", path, "--output", str(link), "--force"]) == 1
    assert "names a symbolic link" in capsys.readouterr().err
    assert link.is_symlink() and victim.read_text() == "keep me"
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    # a FIFO without a reader is an error at once, not a hang
    proc = subprocess.run([sys.executable, "-m", "audit", "show", path, "--output", str(fifo),
                           "--force"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "names a FIFO without a reader" in proc.stderr
    assert fifo.is_fifo()


@pytest.mark.skipif(not os.path.exists("/dev/tty"), reason="no /dev/tty")
def test_output_to_a_device_without_its_device(write_report: WriteReport) -> None:
    # /dev/tty in a process without a controlling terminal fails to open with ENXIO,
    # which the writer took for a FIFO without a reader whatever the path was
    path = write_report("a.json")
    proc = subprocess.run([sys.executable, "-m", "audit", "show", path, "--output", "/dev/tty",
                           "--force"], capture_output=True, text=True, timeout=60, check=False,
                          start_new_session=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "FIFO" not in proc.stderr, proc.stderr
    assert "/dev/tty: cannot write: No such device or address" in proc.stderr, proc.stderr


@pytest.mark.parametrize("force", [False, True])
def test_output_naming_a_directory_that_does_not_exist(
        write_report: WriteReport, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        force: bool) -> None:
    # "--output nodir/" passed the early check (its parent, tmp_path, exists), the whole
    # command ran, and the write then failed on a temporary file inside nodir/ whose
    # name the message showed
    path = write_report("a.json")
    target = str(tmp_path / "nodir") + os.sep
    assert main(["show", path, "--output", target] + (["--force"] if force else [])) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".tmp" not in err, err
    assert "--output names a directory" in err, err
    assert not (tmp_path / "nodir").exists()


def test_output_acts_on_its_one_look_at_the_path(
        write_report: WriteReport, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # --output looked at the path twice: once to refuse what was there, once to choose
    # how to write. A FIFO (with a reader) put there between the two looks was written
    # into without --force. Now the first look decides: nothing was there, so a new file
    # is created exclusively, which fails on what appeared meanwhile.
    path = write_report("a.json")
    target = tmp_path / "out.txt"
    real_lstat = os.lstat
    reader: list[int] = []
    looks: list[str] = []

    def lstat_then_plant(name: os.PathLike[str] | str, *args: object, **kwargs: object) -> os.stat_result:
        try:
            return real_lstat(name, *args, **kwargs)   # type: ignore[arg-type]
        finally:
            if os.fspath(name) == str(target):
                looks.append(str(name))
            # the first look is the check before any work, the second the writer's
            if len(looks) == 2 and not reader:
                os.mkfifo(target)
                reader.append(os.open(target, os.O_RDONLY | os.O_NONBLOCK))

    monkeypatch.setattr(os, "lstat", lstat_then_plant)
    try:
        assert main(["show", path, "--output", str(target)]) == 1
        monkeypatch.undo()
        assert "already exists; pass --force" in capsys.readouterr().err
        assert target.is_fifo()
        try:
            written = os.read(reader[0], 1 << 16)
        except BlockingIOError:
            written = b""
        assert written == b""
    finally:
        for fd in reader:
            os.close(fd)


def test_output_force_replaces_a_file_and_never_writes_through_a_hard_link(
        write_report: WriteReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --force truncated the file at the path and wrote into it: a hard link there to another
    # name (planted in a shared directory, say) had that other file overwritten. The file
    # is now replaced (written beside it, renamed over it), with the umask's mode.
    path = write_report("a.json")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out.txt"
    os.link(victim, out)
    os.chmod(victim, 0o600)
    mask = os.umask(0o027)
    try:
        assert main(["show", path, "--output", str(out), "--force"]) == 0
        assert os.umask(0o027) == 0o027         # read, not changed
    finally:
        os.umask(mask)
    capsys.readouterr()
    assert victim.read_text() == "keep me" and "tokens" in out.read_text()
    assert out.stat().st_nlink == 1 and victim.stat().st_nlink == 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "out.txt", "victim.txt"]


def test_output_force_replaces_a_file_whose_name_is_near_the_limit(
        write_report: WriteReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the file written beside it was named PATH.tmp.PID.N: past 255 bytes for a name
    # near the limit, so --force failed with "File name too long"
    path = write_report("a.json")
    out = tmp_path / ("o" * 250)
    out.write_text("old")
    assert main(["show", path, "--output", str(out), "--force"]) == 0, capsys.readouterr().err
    assert "tokens" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", out.name]


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(
        write_report: WriteReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a write cut short (here: the file size limit) left a truncated file at the path
    import resource
    path = write_report("a.json", report_doc(tags=[tag(f"t{i}", 1, 8) for i in range(2000)]))
    old = tmp_path / "old.txt"
    old.write_text("keep me")
    code = (f"import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, (4096, {resource.RLIM_INFINITY})); "
            f"from audit.cli import main; sys.exit(main(sys.argv[1:]))")
    for target, force in ((tmp_path / "new.txt", []), (old, ["--force"])):
        proc = subprocess.run([sys.executable, "-c", code, "show", path, "--output", str(target), *force],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 1 and "cannot write: File too large" in proc.stderr, proc.stderr
    assert old.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "old.txt"]


@pytest.mark.parametrize("fmt", ["table", "github", "markdown"])
def test_numbers_are_right_aligned_in_text_tables(fmt: str, write_report: WriteReport,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json", report_doc(tags=[tag("wide", 1, 123456, allocs=7),
                                                   tag("narrow", 22, 8, allocs=1000)]))
    assert main(["show", path, "--format", fmt]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "wide" in line or "narrow" in line]
    wide, narrow = lines
    # Each number ends where its column ends, whatever its width.
    for a, b in (("123456", "8"), ("7", "1000"), ("1", "22")):
        assert wide.index(f" {a} ") + len(a) == narrow.index(f" {b} ") + len(b), (wide, narrow)


def test_markdown_rule_says_numbers_are_right_aligned(write_report: WriteReport,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    assert main(["show", path, "--format", "markdown"]) == 0
    rule = capsys.readouterr().out.splitlines()[3]
    cells = rule.strip("|").split("|")
    assert cells[0].startswith(":") and not cells[0].endswith(":")      # tag: left
    assert all(c.endswith(":") for c in cells[1:])                      # numbers: right


def test_tags_with_newlines_and_pipes_stay_in_their_row(write_report: WriteReport,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json", report_doc(tags=[tag("a|b\nc", 1, 8)]))
    assert main(["show", path, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "a\\|b\\nc" in line)
    assert row.count("|") - row.count("\\|") == 7
