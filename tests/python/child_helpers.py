"""A script run in a fresh interpreter, for the tests whose failure may be a
crash (SIGSEGV, a sanitizer's abort under `make test-py-asan`, a hang): the
crash fails the test that ran it, not the whole run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from typing import Mapping


def run_script(script: str, *args: str, dev: bool = False, quiet: bool = False,
               timeout: float = 120,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` (dedented) with ``args`` as its sys.argv[1:] in
    sys.executable (``-X dev`` with dev, ``-W ignore`` with quiet, ``env``
    instead of this process's environment when given); any exit but 0 fails
    the test, naming the exit status (or signal) with the tails of its stdout
    and stderr."""
    argv = [sys.executable, *(["-X", "dev"] if dev else []), *(["-W", "ignore"] if quiet else []),
            "-c", textwrap.dedent(script), *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         env=None if env is None else dict(env), check=False)
    if out.returncode != 0:
        status = f"exit {out.returncode}"
        if out.returncode < 0:
            try:
                status += f" ({signal.Signals(-out.returncode).name})"
            except ValueError:
                pass
        raise AssertionError(f"child {status} (argv[1:] {list(args)})\n"
                             f"stdout:\n{out.stdout[-2000:]}\nstderr:\n{out.stderr[-3000:]}")
    return out


def script_output(script: str, *args: str, dev: bool = False, quiet: bool = False,
                  timeout: float = 120, env: Mapping[str, str] | None = None) -> str:
    """run_script's stdout, stripped."""
    return run_script(script, *args, dev=dev, quiet=quiet, timeout=timeout, env=env).stdout.strip()
