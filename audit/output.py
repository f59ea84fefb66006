"""Where data and summaries go: data to stdout or ``--output FILE``, summaries to stderr."""

from __future__ import annotations

import argparse
import os
import sys

from audit.errors import AuditError
from audit.formatters import FORMAT_NAMES, Table, render


def add_output_options(parser: argparse.ArgumentParser, default: str = "table") -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--format", choices=FORMAT_NAMES, default=default,
                       help=f"data format (default: {default}); 'folded' gives "
                            "'frame;frame value' lines for flamegraph tools; 'pprof' (gzipped "
                            "profile.proto), 'speedscope' (JSON) and 'html' (a flame graph page) "
                            "are profiles other tools open")
    group.add_argument("--output", "-o", metavar="FILE",
                       help="write the data to FILE instead of stdout")
    group.add_argument("--force", action="store_true",
                       help="let --output replace an existing file")


def check_output(args: argparse.Namespace) -> None:
    """Fails early (before any work) when --output would overwrite without --force."""
    path = getattr(args, "output", None)
    if path is None:
        return
    if os.path.isdir(path):
        raise AuditError(f"{path}: --output names a directory")
    if os.path.exists(path) and not args.force:
        raise AuditError(f"{path}: already exists; pass --force to overwrite it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise AuditError(f"{path}: directory {parent} does not exist")


def emit_text(args: argparse.Namespace, text: str | bytes) -> None:
    path = getattr(args, "output", None)
    if path is None:
        if isinstance(text, bytes):
            if sys.stdout.isatty():
                raise AuditError(f"--format {args.format} is binary: pass --output FILE or redirect stdout")
            sys.stdout.flush()
            sys.stdout.buffer.write(text)
            sys.stdout.buffer.flush()
            return
        sys.stdout.write(_encodable(text, getattr(sys.stdout, "encoding", None) or "utf-8"))
        sys.stdout.flush()
        return
    check_output(args)
    try:
        if isinstance(text, bytes):
            with open(path, "wb") as fh:
                fh.write(text)
            return
        with open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
    except OSError as exc:
        raise AuditError(f"{path}: cannot write: {exc.strerror}") from exc


def to_stderr(data: str | bytes) -> None:
    """``data`` on stderr, after what either stream holds: for a run whose
    stdout is the program's (a file or a pipe it was writing)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if isinstance(data, bytes):
        sys.stderr.buffer.write(data)
        sys.stderr.buffer.flush()
    else:
        sys.stderr.write(data)
        sys.stderr.flush()


def _encodable(text: str, encoding: str) -> str:
    """``text``, with what ``encoding`` cannot represent written as escapes
    (a tag in Chinese on an ASCII terminal) instead of failing half-way."""
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        pass
    return text


def emit(args: argparse.Namespace, table: Table) -> None:
    emit_text(args, render(table, args.format))


def summary(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
