"""The three report writers -- the library's (csrc/report.c), the
interposer's (csrc/preload/report.c) and the Python hooks'
(allocator/_pyhooks.c) -- follow one rule for where a report file may go
(csrc/outfile.h): the same hostile paths give each the same outcome.

Each writer runs in a process of its own that prints its pid and waits for a
line before it writes, so that links can be planted at the temporary names
that process would pick (DIR/.rp-PID-N.tmp)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from preload_helpers import clean_env, program

WRITERS = ("library", "interposer", "pyhooks")

LIBRARY = """
import os, sys
from allocator import Pool
print(os.getpid(), flush=True)
sys.stdin.readline()
Pool("rule").destroy()
"""

PYHOOKS = """
import os, sys
from allocator import _pyhooks
print(os.getpid(), flush=True)
sys.stdin.readline()
_pyhooks.start()
try:
    _pyhooks.write_report(sys.argv[1])
except OSError as e:
    print(f"refused: {e}", file=sys.stderr)
_pyhooks.stop()
"""


@dataclass
class Outcome:
    written: bool
    stderr: str


def _env(writer: str, lib: str, path: str) -> dict[str, str]:
    env = clean_env(lib if writer == "interposer" else None)
    for k in list(env):
        if k.startswith("RINGPOOL_PYTHON") or (k == "LD_PRELOAD" and writer != "interposer"):
            del env[k]
    if writer == "library":
        env["RINGPOOL_REPORT"] = path
    if writer == "interposer":
        env["RINGPOOL_PRELOAD_REPORT"] = path
    return env


def _argv(writer: str, path: str) -> list[str]:
    if writer == "library":
        return [sys.executable, "-c", LIBRARY]
    if writer == "pyhooks":
        return [sys.executable, "-c", PYHOOKS, path]
    # the shell prints its pid, waits, then becomes the program (same pid)
    return ["/bin/sh", "-c", 'echo $$; read x; exec "$0"', program("gt_leaks")]


def run_writer(writer: str, lib: str, path: str, umask: int,
               plant: Callable[[int], None] = lambda pid: None, timeout: float = 60) -> Outcome:
    proc = subprocess.Popen(_argv(writer, path), env=_env(writer, lib, path),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: os.umask(umask))
    assert proc.stdout is not None and proc.stdin is not None
    pid = int(proc.stdout.readline())
    plant(pid)
    try:
        _out, err_b = proc.communicate(b"go\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    err = err_b.decode(errors="replace")
    assert proc.returncode == 0, err
    refused = {"library": "could not write the report", "interposer": "cannot write report to",
               "pyhooks": "refused: "}[writer]
    return Outcome(written=refused not in err, stderr=err)


def report_format(body: bytes) -> str:
    return str(json.loads(body)["format"])


FORMATS = {"library": "ringpool-snapshot", "interposer": "ringpool-preload",
           "pyhooks": "ringpool-python"}


def no_temporaries(d: Path) -> None:
    left = [p.name for p in d.iterdir() if ".tmp" in p.name and not p.is_symlink()]
    assert not left, f"temporary files left: {left}"


# ------------------------------------------------------------- the cases
# Each case prepares tmp (a fresh directory), returns the report path, and
# checks what it must after the write; the expected outcome is the same for
# the three writers.

def _victim(d: Path) -> Path:
    v = d / "victim"
    v.write_text("keep me\n")
    return v


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
@pytest.mark.parametrize("writer", WRITERS)
def test_absent_and_regular_paths_are_written_with_the_umask_mode(
        lib: str, tmp_path: Path, writer: str, umask: int) -> None:
    fresh = tmp_path / "new.json"
    out = run_writer(writer, lib, str(fresh), umask)
    assert out.written, out.stderr
    assert report_format(fresh.read_bytes()) == FORMATS[writer]
    assert stat.S_IMODE(fresh.lstat().st_mode) == 0o666 & ~umask
    old = tmp_path / "old.json"
    old.write_text("old\n")
    old.chmod(0o600)
    out = run_writer(writer, lib, str(old), umask)
    assert out.written, out.stderr
    assert report_format(old.read_bytes()) == FORMATS[writer]
    assert stat.S_IMODE(old.lstat().st_mode) == 0o666 & ~umask
    no_temporaries(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
@pytest.mark.parametrize("writer", WRITERS)
def test_links_planted_at_the_temporary_names_are_not_followed(
        lib: str, tmp_path: Path, writer: str, umask: int) -> None:
    victim = _victim(tmp_path)
    path = tmp_path / "r.json"

    def plant(pid: int) -> None:
        for name in ("r.json.tmp", f"r.json.tmp.{pid}",
                     *(f"r.json.tmp.{pid}.{k}" for k in range(4)),
                     *(f".rp-{pid}-{k}.tmp" for k in range(4))):
            (tmp_path / name).symlink_to(victim)

    out = run_writer(writer, lib, str(path), umask, plant)
    assert out.written, out.stderr
    assert victim.read_text() == "keep me\n"
    assert path.is_file() and not path.is_symlink()
    assert report_format(path.read_bytes()) == FORMATS[writer]
    assert stat.S_IMODE(path.lstat().st_mode) == 0o666 & ~umask
    no_temporaries(tmp_path)


def _refused(out: Outcome, path: Path | str, why: str) -> None:
    assert not out.written
    assert str(path) in out.stderr and why in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
@pytest.mark.parametrize("writer", WRITERS)
def test_a_link_to_a_regular_file_is_refused(lib: str, tmp_path: Path, writer: str,
                                             umask: int) -> None:
    victim = _victim(tmp_path)
    link = tmp_path / "r.json"
    link.symlink_to(victim)
    out = run_writer(writer, lib, str(link), umask)
    _refused(out, link, "it is a symbolic link to a regular file (not followed")
    assert link.is_symlink() and victim.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "victim"]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_dangling_link_is_refused(lib: str, tmp_path: Path, writer: str) -> None:
    link = tmp_path / "r.json"
    link.symlink_to(tmp_path / "not-yet")
    out = run_writer(writer, lib, str(link), 0o022)
    _refused(out, link, "it is a symbolic link to nothing")
    assert link.is_symlink() and not (tmp_path / "not-yet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_directory_is_refused(lib: str, tmp_path: Path, writer: str) -> None:
    d = tmp_path / "r.json"
    d.mkdir()
    out = run_writer(writer, lib, str(d), 0o022)
    _refused(out, d, "it is a directory")
    assert d.is_dir() and not list(d.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_missing_directory_is_refused(lib: str, tmp_path: Path, writer: str) -> None:
    path = tmp_path / "nodir" / "r.json"
    out = run_writer(writer, lib, str(path), 0o022)
    _refused(out, path, "cannot create its temporary file: No such file or directory")
    assert not (tmp_path / "nodir").exists()


@pytest.mark.parametrize("writer", WRITERS)
def test_a_directory_nothing_can_be_created_in_is_refused(lib: str, tmp_path: Path,
                                                           writer: str) -> None:
    # /proc/self refuses new files even to root; a directory without write
    # permission does too for anyone else
    out = run_writer(writer, lib, "/proc/self/r.json", 0o022)
    _refused(out, "/proc/self/r.json", "cannot create its temporary file")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        out = run_writer(writer, lib, str(ro / "r.json"), 0o022)
        if os.geteuid() == 0:
            assert out.written, out.stderr      # root writes anywhere
        else:
            _refused(out, ro / "r.json", "cannot create its temporary file: Permission denied")
            assert not list(ro.iterdir())
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("writer", WRITERS)
def test_dev_null_is_written_straight_in(lib: str, tmp_path: Path, writer: str) -> None:
    out = run_writer(writer, lib, "/dev/null", 0o022)
    assert out.written, out.stderr
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    # and through a link to it, as /dev/stderr is one
    link = tmp_path / "null-link"
    link.symlink_to("/dev/null")
    out = run_writer(writer, lib, str(link), 0o022)
    assert out.written, out.stderr
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null-link"]


def _drain(fd: int, done: threading.Event, chunks: list[bytes]) -> None:
    """Reads the FIFO until the writer is done and the FIFO is empty."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            chunk = None
        if chunk:
            chunks.append(chunk)
        elif done.is_set():
            return
        else:
            time.sleep(0.005)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_fifo_with_a_reader_is_written_straight_in(lib: str, tmp_path: Path,
                                                     writer: str) -> None:
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    chunks: list[bytes] = []
    done = threading.Event()
    reader = threading.Thread(target=_drain, args=(fd, done, chunks))
    reader.start()
    try:
        out = run_writer(writer, lib, str(fifo), 0o022)
    finally:
        done.set()
        reader.join()
        os.close(fd)
    assert out.written, out.stderr
    assert report_format(b"".join(chunks)) == FORMATS[writer]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_fifo_without_a_reader_is_refused_at_once(lib: str, tmp_path: Path,
                                                    writer: str) -> None:
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    # a writer waiting for a reader fails by the timeout (about 0.1 s when it does not wait)
    out = run_writer(writer, lib, str(fifo), 0o022, timeout=30)
    _refused(out, fifo, "it is a FIFO with no reader (not waited for)")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("name", ["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"])
@pytest.mark.parametrize("writer", WRITERS)
def test_a_descriptor_name_is_that_descriptor(lib: str, writer: str, name: str) -> None:
    # stderr is a pipe here; the report goes into it, nothing is replaced
    out = run_writer(writer, lib, name, 0o022)
    assert out.written, out.stderr
    assert f'"format": "{FORMATS[writer]}"' in out.stderr.replace('"format":"', '"format": "')
