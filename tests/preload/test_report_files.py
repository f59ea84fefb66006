"""Where the interposer's report goes: never over something that is not a
regular file, straight into devices and FIFOs, and one file per process even
when the name has no %p."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from audit import preload
from preload_helpers import clean_env, program


def run_to(lib: str, argv: list[str], report: str, cwd: Path | None = None,
           umask: int | None = None) -> subprocess.CompletedProcess[bytes]:
    env = clean_env(lib, RINGPOOL_PRELOAD_REPORT=report)
    return subprocess.run(argv, env=env, capture_output=True, timeout=60, cwd=cwd,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def test_fixed_name_in_a_forking_program_loses_no_report(lib: str, tmp_path: Path) -> None:
    fixed = tmp_path / "r.json"
    proc = run_to(lib, [program("forks")], str(fixed))
    assert proc.returncode == 0, proc.stderr
    child = int(re.fullmatch(rb"child (\d+)\n", proc.stdout)[1])  # type: ignore[index]
    beside = tmp_path / f"r.{child}.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.json", beside.name])
    assert preload.load(str(beside)).pid == child
    assert preload.load(str(fixed)).pid != child        # the parent keeps the name
    assert f"its report is {beside}".encode() in proc.stderr


def test_fixed_name_across_exec_keeps_every_process(lib: str, tmp_path: Path) -> None:
    fixed = tmp_path / "r.json"
    proc = run_to(lib, ["/bin/sh", "-c", "/bin/sh -c 'echo a'; /bin/sh -c 'echo b'"], str(fixed))
    assert proc.returncode == 0 and proc.stdout == b"a\nb\n"
    found = {preload.load(str(p)).pid: p.name for p in tmp_path.glob("*.json")}
    assert len(found) == 3 and "r.json" in found.values()
    assert proc.stderr.count(b"has no %p") == 2


def test_report_to_dev_stderr_and_fd(lib: str, tmp_path: Path) -> None:
    proc = run_to(lib, [program("gt_leaks")], "/dev/stderr")
    assert proc.returncode == 0 and proc.stdout == b"gt_leaks done\n"
    doc = json.loads(proc.stderr)
    assert doc["format"] == "ringpool-preload" and doc["totals"]["blocks"] == 12
    assert not list(Path("/dev").glob("stderr.*.tmp"))


def test_report_into_a_fifo(lib: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # the read end is open before the program runs: a reader exists
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        proc = run_to(lib, [program("gt_leaks")], str(fifo))
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(b"".join(chunks))["totals"]["bytes"] == 2768


def test_fifo_without_reader_does_not_hang(lib: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = run_to(lib, [program("behave"), "6"], str(fifo))
    assert proc.returncode == 6 and b"a FIFO with no reader" in proc.stderr


def test_character_device_is_written_not_replaced(lib: str, tmp_path: Path) -> None:
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    proc = run_to(lib, [program("gt_leaks")], str(null))
    assert proc.returncode == 0 and proc.stderr == b""
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_symlink_at_the_path_is_left_alone(lib: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    link = tmp_path / "r.json"
    link.symlink_to(victim)
    proc = run_to(lib, [program("behave"), "0"], str(link))
    assert proc.returncode == 0
    assert b"it is a symbolic link" in proc.stderr
    assert link.is_symlink() and victim.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "victim.txt"]


def test_directory_at_the_path_is_left_alone(lib: str, tmp_path: Path) -> None:
    (tmp_path / "r.json").mkdir()
    proc = run_to(lib, [program("behave"), "0"], str(tmp_path / "r.json"))
    assert proc.returncode == 0 and b"it is a directory" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_regular_file_is_replaced_with_the_umask_mode(lib: str, tmp_path: Path) -> None:
    old = tmp_path / "r.json"
    old.write_text("old report\n")
    proc = run_to(lib, [program("gt_leaks")], str(old), umask=0o027)
    assert proc.returncode == 0, proc.stderr
    assert preload.load(str(old)).totals["blocks"] == 12
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]   # no temporary left
