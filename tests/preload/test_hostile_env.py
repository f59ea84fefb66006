"""The interposer inside a hostile process environment: a file size limit
below the report, no descriptor left, standard streams that are pipes
without a reader, a program's signal mask. The report may fail (one line),
but the program's exit status, signals, mask and errno stay its own."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import time
from pathlib import Path

from preload_helpers import clean_env, program


def run(lib: str | None, args: list[str], report: str, *, stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE, fsize: int | None = None,
        **env: str) -> subprocess.CompletedProcess[bytes]:
    full = clean_env(lib, RINGPOOL_PRELOAD_REPORT=report, **env)
    if lib is None:
        full.pop("LD_PRELOAD", None)

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return subprocess.run([program("hostile"), *args], env=full, stdout=stdout, stderr=stderr,
                          timeout=60, preexec_fn=limit)


def lines(err: bytes) -> list[bytes]:
    return err.splitlines()


def test_file_size_limit_set_by_the_program_fails_the_report_only(lib: str,
                                                                   tmp_path: Path) -> None:
    old = tmp_path / "r.json"
    old.write_text("old report\n")
    proc = run(lib, ["fsize", "300"], str(old))
    assert proc.returncode == 3, proc          # not killed by SIGXFSZ
    assert lines(proc.stderr) == [
        f"ringpool-preload: cannot write report to {old}: write failed: File too large".encode()]
    assert old.read_text() == "old report\n"   # never a truncated report in its place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_file_size_limit_set_before_exec(lib: str, tmp_path: Path) -> None:
    proc = run(lib, [], str(tmp_path / "r.json"), fsize=300)
    assert proc.returncode == 3, proc
    assert b"File too large" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_line_to_a_stderr_file_past_the_limit(lib: str, tmp_path: Path) -> None:
    # the report fails (no such directory); its one line would go to a file
    # already past RLIMIT_FSIZE: that write fails too, and nothing kills the program
    err = tmp_path / "err"
    err.write_bytes(b"x" * 4096)
    with open(err, "ab") as f:
        proc = run(lib, ["fsize", "1000"], str(tmp_path / "no" / "r.json"), stderr=f.fileno())
    assert proc.returncode == 3, proc
    assert err.stat().st_size == 4096


def closed_pipe() -> int:
    r, w = os.pipe()
    os.close(r)
    return w


def test_report_to_stdout_a_pipe_without_reader(lib: str) -> None:
    w = closed_pipe()
    try:
        alone = run(None, ["sigpipe-dfl"], "/dev/stdout", stdout=w)
        proc = run(lib, ["sigpipe-dfl"], "/dev/stdout", stdout=w)
    finally:
        os.close(w)
    assert alone.returncode == 3
    assert proc.returncode == 3, proc          # not killed by SIGPIPE
    assert lines(proc.stderr) == [
        b"ringpool-preload: cannot write report to /dev/stdout: write failed: Broken pipe"]


def test_line_to_stderr_a_pipe_without_reader(lib: str, tmp_path: Path) -> None:
    w = closed_pipe()
    try:
        proc = run(lib, ["sigpipe-dfl"], str(tmp_path / "no" / "r.json"), stderr=w)
    finally:
        os.close(w)
    assert proc.returncode == 3, proc


def test_no_descriptor_left(lib: str, tmp_path: Path) -> None:
    proc = run(lib, ["nofile"], str(tmp_path / "r.json"))
    assert proc.returncode == 3, proc
    assert lines(proc.stderr) == [
        f"ringpool-preload: cannot write report to {tmp_path / 'r.json'}: cannot create its "
        "temporary file: Too many open files".encode()]
    proc = run(lib, ["nofile"], "/dev/stdout")
    assert proc.returncode == 3 and len(lines(proc.stderr)) == 1, proc


def test_closed_stderr_is_not_the_report(lib: str, tmp_path: Path) -> None:
    # the program closed descriptor 2, and writes to it while the report is
    # written: its line must not land in the report (the report's file would
    # have taken number 2)
    report = tmp_path / "r.json"
    proc = run(lib, ["close2", "intrude"], str(report))
    assert proc.returncode == 3, proc
    text = report.read_text()
    assert "own line" not in text
    assert json.loads(text)["format"] == "ringpool-preload"


def test_umask_kept_with_one_descriptor_left(lib: str, tmp_path: Path) -> None:
    # the umask was read at the end, when the report's file had taken the
    # last descriptor: the read failed and the report became 0644, not 0600
    report = tmp_path / "r.json"
    proc = run(lib, ["umask077", "one-fd-left"], str(report))
    assert proc.returncode == 3, proc
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def test_report_to_a_full_non_blocking_stdout(lib: str) -> None:
    # the program made its stdout pipe non-blocking and filled it: the
    # report waits for the reader instead of stopping at EAGAIN
    env = clean_env(lib, RINGPOOL_PRELOAD_REPORT="/dev/stdout")
    proc = subprocess.Popen([program("hostile"), "fill-stdout"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None and proc.stdout is not None
    assert proc.stderr.readline() == b"full\n"     # the pipe is full now
    # a moment for the report's first write to find it full (the fixed
    # code's outcome does not depend on it; the old code failed only when
    # the write came before the reading)
    time.sleep(0.3)
    out = proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 3, err
    assert err == b""
    doc = json.loads(out.lstrip(b"\0"))
    assert doc["format"] == "ringpool-preload"


def test_everything_blocked(lib: str, tmp_path: Path) -> None:
    proc = run(lib, ["blockall", "fsize", "300"], str(tmp_path / "r.json"))
    assert proc.returncode == 3, proc
    assert list(tmp_path.iterdir()) == []


def test_report_on_demand_keeps_mask_pending_and_errno(lib: str, tmp_path: Path) -> None:
    usr2 = str(int(signal.SIGUSR2))
    report = tmp_path / "r.%r.json"
    proc = run(lib, ["raise", usr2], str(report), RINGPOOL_PRELOAD_SIGNAL="USR2")
    assert proc.returncode == 3, proc
    assert proc.stdout == b"errno 1234 mask same pending none\n"
    assert len(list(tmp_path.glob("*.json"))) == 2     # the signal's and the exit's
    for p in tmp_path.iterdir():
        p.unlink()
    # the same with the report past the file size limit: it fails, and the
    # SIGXFSZ its write raised is neither delivered nor left pending
    proc = run(lib, ["fsize", "300", "raise", usr2], str(report), RINGPOOL_PRELOAD_SIGNAL="USR2")
    assert proc.returncode == 3, proc
    assert proc.stdout == b"errno 1234 mask same pending none\n"
    assert proc.stderr.count(b"File too large") == 2
    assert list(tmp_path.iterdir()) == []


# A name that would split a line, drive the terminal, display reversed, and is not UTF-8;
# and how the CLI names it (docs/cli.md, "Names in text output").
HOSTILE_PART = "no\n\x1b[2J\u202e" + os.fsdecode(b"\xff") + "\\"
SHOWN_PART = "no\\n\\x1b[2J\\u202e\\udcff\\\\"


def test_lines_name_paths_and_values_as_the_cli_does(lib: str, tmp_path: Path) -> None:
    # the interposer's lines wrote a report path and a variable's value raw: a newline
    # split the line, an escape sequence reached the terminal
    report = tmp_path / HOSTILE_PART / "r.json"
    proc = run(lib, [], str(report), RINGPOOL_PRELOAD_SAMPLE_RATE=HOSTILE_PART,
               RINGPOOL_PRELOAD_SIGNAL=HOSTILE_PART)
    err = proc.stderr.decode("utf-8")           # strictly: the bytes that were not are escaped
    assert len(lines(proc.stderr)) == 3, err
    assert f"RINGPOOL_PRELOAD_SAMPLE_RATE='{SHOWN_PART}': " in err, err
    assert f"RINGPOOL_PRELOAD_SIGNAL={SHOWN_PART}: " in err, err
    assert f"cannot write report to {tmp_path}/{SHOWN_PART}/r.json: " in err, err
    long = run(lib, [], str(report), RINGPOOL_PRELOAD_SIGNAL="\x1b" * 300)
    line = next(x for x in lines(long.stderr) if b"RINGPOOL_PRELOAD_SIGNAL" in x).decode()
    assert "=" + "\\x1b" * 50 + "...: " in line, line      # cut at a whole escape


def test_library_lines_name_the_pool_and_path_as_the_cli_does(tmp_path: Path) -> None:
    # the library's line for a report it could not write named the pool (the program's
    # name: any bytes) and the path raw
    import sys
    code = "import sys; from allocator import Pool; p = Pool(sys.argv[1]); p.alloc(8, tag='t'); p.destroy()"
    env = clean_env(None, RINGPOOL_REPORT=str(tmp_path / HOSTILE_PART / "%n.json"))
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", code, "pool\r\n\x1b[31m\u202e"], env=env, capture_output=True,
                          timeout=60, check=False)
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 0 and len(lines(proc.stderr)) == 1, err
    assert (f"ringpool: could not write the report of pool 'pool\\r\\n\\x1b[31m\\u202e' to "
            f"'{tmp_path}/{SHOWN_PART}/pool____31m___.json': ") in err, err


def test_library_line_for_an_unknown_escape_of_a_control_character(tmp_path: Path) -> None:
    # the pattern is named escaped; the why named the escape's character raw ('%<NL>')
    import sys
    code = "from allocator import Pool; p = Pool('p'); p.alloc(8, tag='t'); p.destroy()"
    env = clean_env(None, RINGPOOL_REPORT=str(tmp_path / "r%\n\x1b.json"))
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=False)
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 0 and len(lines(proc.stderr)) == 1, err
    assert f"RINGPOOL_REPORT='{tmp_path}/r%\\n\\x1b.json': unknown %-escape: '%' before byte 0x0a" in err, err


def test_python_program_reports_into_a_directory_whose_name_is_not_utf8(tmp_path: Path) -> None:
    # $RINGPOOL_REPORT is read by the library as bytes: a directory named in Latin-1 (set
    # from Python with surrogateescape) takes the report
    import sys
    d = tmp_path / HOSTILE_PART
    d.mkdir()
    code = "from allocator import Pool; p = Pool('p'); p.alloc(8, tag='t'); p.destroy()"
    env = clean_env(None, RINGPOOL_REPORT=str(d / "%n.json"))
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert json.loads((d / "p.json").read_bytes())["totals"]["bytes"] == 8


def test_the_library_names_pools_as_the_cli_does(tmp_path: Path) -> None:
    # rpi_outfile_printable is the CLI's rule (audit.printable.printable) written in C: the
    # same text for every name, one pool at a time through the library's line
    import sys
    from audit.printable import printable
    names = ["two\nlines", "carriage\rreturn", "red\x1b[31mtext", "lit\\x1bx", "back\\slash", "tab\tx",
             "bidi\u202egnp.exe", "isolate\u2066x\u2069", "c1\x85next\x9b31m", "del\x7fx", "line\u2028sep\u2029x",
             "alm\u061cx\u200e\u200f", "\u6f22\u5b57 \U0001f600", "plain name", "\u00e9\u00ff\u0100",
             "zero\u200bwidth\u2060\ufeff", "soft\xadhyphen", "nbsp\xa0x\u3000y\u202fz", "tag\U000e0041x",
             "private\ue000x\U00100000", "unassigned\U000effffx", "hiero\U0001343fx"]
    code = ("import json, sys; from allocator import Pool\n"
            "for name in json.loads(sys.argv[1]):\n"
            "    p = Pool(name); p.alloc(8, tag='t'); p.destroy()\n")
    env = clean_env(None, RINGPOOL_REPORT=str(tmp_path / "missing" / "%u.json"))
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(names)], env=env, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    shown = [line.decode("utf-8").split("of pool '", 1)[1].split("' to '", 1)[0] for line in lines(proc.stderr)]
    assert shown == [printable(n) for n in names]
