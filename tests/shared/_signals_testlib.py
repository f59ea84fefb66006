"""A program run in a session of its own and signalled as a terminal's Ctrl-C or `kill
PID` signals it, and the programs that wait for the signal: the tests of how `run`
(tests/audit) and `run --python` (tests/pyhooks) wait for the program they run."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

#: Catches Ctrl-C, cleans up for a second, prints each step and exits 0.
CTRL_C = textwrap.dedent("""
    import time
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("caught", flush=True)
        time.sleep(1)
        print("cleaned up", flush=True)
""")

#: Says "terminated" on SIGTERM and exits 5.
TERM = textwrap.dedent("""
    import signal, sys, time
    def bye(signum, frame):
        print("terminated", flush=True)
        sys.exit(5)
    signal.signal(signal.SIGTERM, bye)
    print("ready", flush=True)
    time.sleep(60)
""")

#: Waits, catching nothing: Ctrl-C ends it by SIGINT.
WAIT = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"


def interrupted(argv: list[str], cwd: Path, sig: int, group: bool,
                env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Runs argv (with env added to this process's environment) in a session of its own,
    sends sig once the program printed its first line, "ready" (to the whole process
    group, as a terminal's Ctrl-C does, or to the first process alone, as `kill PID`
    does); status, stdout and stderr. The group is killed after."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        first = proc.stdout.readline() if proc.stdout else b""
        assert first == b"ready\n", first
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, first + out, err
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
