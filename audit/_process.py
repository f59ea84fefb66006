"""What `run` and `run --python` share about the program they run: how it is run and
waited for, the directory of its reports, the report files it wrote, and its exit
status as a shell reports it."""

from __future__ import annotations

import os
import signal
import subprocess

from audit.errors import AuditError
from audit.printable import printable


def ready_report_dir(report_dir: str) -> tuple[dict[str, tuple[int, int]], str]:
    """Creates report_dir if missing. Returns the .json files already in it
    (:func:`json_files`, for :func:`written_since`) and the directory as the
    report patterns take it: absolute, each '%' written '%%' (the library, the
    interposer and the Python hooks all read '%%' as a literal '%')."""
    try:
        os.makedirs(report_dir, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"{printable(report_dir)}: cannot create the report directory: {exc.strerror}") from exc
    return json_files(report_dir), os.path.abspath(report_dir).replace("%", "%%")


def written_since(report_dir: str, before: dict[str, tuple[int, int]]) -> list[str]:
    """The .json files of report_dir that are new or rewritten since ``before``."""
    return sorted(p for p, stamp in json_files(report_dir).items() if before.get(p) != stamp)


def json_files(directory: str) -> dict[str, tuple[int, int]]:
    """The .json files in directory, each with (mtime_ns, size), to tell new
    or rewritten reports from those that were there before the run."""
    found: dict[str, tuple[int, int]] = {}
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise AuditError(f"{printable(directory)}: cannot list the report directory: "
                         f"{exc.strerror}") from exc
    for name in names:
        if name.endswith(".json"):
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            found[path] = (st.st_mtime_ns, st.st_size)
    return found


def exit_status(status: int) -> int:
    """The program's status as a shell reports it: 128+N for death by signal N."""
    return 128 - status if status < 0 else status


def describe_status(status: int) -> str:
    if status == 0:
        return "exited with status 0"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"FAILED: killed by {name}"
    return f"FAILED: exited with status {status}"


#: Signals a terminal sends to the whole foreground process group (Ctrl-C, Ctrl-\\, hangup):
#: the program gets them itself, and the CLI waits for it as a shell does.
_GROUP_SIGNALS = ("SIGINT", "SIGQUIT", "SIGHUP")
#: Signals usually sent to one process (kill PID): passed on to the program.
_FORWARDED_SIGNALS = ("SIGTERM",)


def run_program(argv: list[str], env: dict[str, str]) -> int:
    """Runs the program and waits for it; its status (negative: killed by that signal).

    The program handles the signals it gets, as when run by a shell: while it runs,
    Ctrl-C (and Ctrl-\\, a hangup) no longer interrupt the CLI, which used to end the wait
    with KeyboardInterrupt and kill the program 0.25 s later (subprocess.run), in the middle
    of its own KeyboardInterrupt handling; SIGTERM sent to the CLI is passed on to the
    program, which it used to leave running alone.  A signal the CLI was started with
    ignored stays ignored, so the program inherits it so (as `python` would).  The
    handlers are Python functions, which exec resets: the program starts with the defaults."""
    proc = subprocess.Popen(argv, env=env)
    previous: dict[int, object] = {}

    def forward(signum: int, _frame: object) -> None:
        if proc.returncode is None:
            try:
                proc.send_signal(signum)
            except OSError:
                pass

    def wait_on(_signum: int, _frame: object) -> None:
        pass

    try:
        for names, handler in ((_GROUP_SIGNALS, wait_on), (_FORWARDED_SIGNALS, forward)):
            for name in names:
                signum = getattr(signal, name, None)
                if signum is None:
                    continue
                try:
                    if signal.getsignal(signum) == signal.SIG_IGN:
                        continue
                    previous[signum] = signal.signal(signum, handler)
                except ValueError:      # not the main thread: leave the signals as they are
                    break
        return proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        for signum, old in previous.items():
            signal.signal(signum, old)  # type: ignore[arg-type]
