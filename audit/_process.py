"""What `run` and `run --python` share about the program they run: the directory
of its reports, the report files it wrote, and its exit status as a shell reports it."""

from __future__ import annotations

import os
import signal

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
