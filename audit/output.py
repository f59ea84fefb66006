"""Where data and summaries go: data to stdout or ``--output FILE``, summaries to stderr."""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys

from audit.errors import AuditError
from audit.formatters import FORMAT_NAMES, FORMATTERS, Table, render
from audit.printable import printable


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
    """Fails early (before any work) when --output would overwrite without --force, or when
    a binary format would go to a terminal."""
    path = getattr(args, "output", None)
    if path is None:
        fmt = getattr(args, "format", None)
        if getattr(FORMATTERS.get(str(fmt)), "binary", False) and sys.stdout.isatty():
            raise AuditError(f"--format {fmt} is binary: pass --output FILE or redirect stdout")
        return
    check_path(path, bool(getattr(args, "force", False)), "--output")


def check_path(path: str, force: bool, option: str) -> os.stat_result | None:
    """Fails unless ``path`` is free, or (with ``force``) a regular file, a
    character device or a FIFO: a symbolic link (even to nothing), a
    directory, a socket or a block device at the path is refused, never
    written through nor replaced. Returns what was found there (its lstat),
    None when nothing was."""
    shown = printable(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if path.endswith(os.sep):
            # a name ending in a slash is a directory's, which is never written
            raise AuditError(f"{shown}: {option} names a directory (it ends in "
                             f"{os.sep!r}), which does not exist") from None
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise AuditError(f"{shown}: directory {printable(parent)} does not exist") from None
        return None
    except OSError as exc:
        raise AuditError(f"{shown}: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise AuditError(f"{shown}: {option} names a symbolic link, which is never written "
                         "through; name the file itself")
    if stat.S_ISDIR(st.st_mode):
        raise AuditError(f"{shown}: {option} names a directory")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise AuditError(f"{shown}: {option} names a socket or block device; only regular files, "
                         "character devices and FIFOs are written")
    if not force:
        raise AuditError(f"{shown}: already exists; pass --force to overwrite it")
    return st


def write_file(path: str, data: bytes, force: bool, option: str = "--output") -> None:
    """Writes ``data`` to ``path``, never through a file this did not create:

    - nothing there: a new file, created exclusively (removed again if the write fails);
    - with ``force``, a regular file: replaced, not written into (a new file
      ``.rp-PID-N.tmp`` in its directory, created exclusively, renamed over it once
      complete), so a hard link to another file is cut, not written through, and a
      failed write keeps the old file;
    - with ``force``, a character device or FIFO: written straight in (a FIFO
      without a reader is an error, not a hang).

    A symbolic link, a directory, a socket or a block device is refused
    (:func:`check_path`); the path is opened without following a link. What
    is done follows the one look :func:`check_path` took: a second look could
    see a FIFO or device put there meanwhile, and write into it without
    ``force``."""
    st = check_path(path, force, option)
    shown = printable(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        _write_into(path, data, shown, option, stat.S_ISFIFO(st.st_mode))
    elif force:
        _replace(path, data, shown, option)
    else:
        _create(path, data, shown, option)


_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def _create(path: str, data: bytes, shown: str, option: str) -> None:
    try:
        fd = os.open(path, _NEW, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EEXIST):
            check_path(path, False, option)     # it changed meanwhile: say what it is now
        raise AuditError(f"{shown}: cannot write: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb", closefd=True) as fh:
            fh.write(data)
    except OSError as exc:
        _remove(path)
        raise AuditError(f"{shown}: cannot write: {exc.strerror}") from exc


def _replace(path: str, data: bytes, shown: str, option: str) -> None:
    for n in range(100):
        # a short name of its own: PATH plus a suffix can pass the file name limit
        tmp = os.path.join(os.path.dirname(path), f".rp-{os.getpid()}-{n}.tmp")
        try:
            fd = os.open(tmp, _NEW, 0o600)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise AuditError(f"{shown}: cannot write beside it ({printable(tmp)}): {exc.strerror}") from exc
    else:
        raise AuditError(f"{shown}: cannot write: no free temporary name beside it")
    try:
        with os.fdopen(fd, "wb", closefd=True) as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                check_path(path, True, option)   # it changed meanwhile: say what it is now
                raise AuditError(f"{shown}: {option} names something else than a regular file "
                                 "now (it changed meanwhile)")
        os.rename(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise AuditError(f"{shown}: cannot write: {exc.strerror}") from exc
    except BaseException:
        _remove(tmp)
        raise


def _write_into(path: str, data: bytes, shown: str, option: str, fifo: bool) -> None:
    """A character device or FIFO (``fifo``): written straight in (opened without
    O_CREAT: never a file made here or meanwhile)."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        # ENXIO: a FIFO without a reader; a device without its device (/dev/tty
        # in a process without a controlling terminal) says so by its strerror
        if exc.errno == errno.ENXIO and fifo:
            raise AuditError(f"{shown}: {option} names a FIFO without a reader") from exc
        if exc.errno in (errno.ELOOP, errno.ENOENT):
            check_path(path, True, option)      # it changed meanwhile: say what it is now
        raise AuditError(f"{shown}: cannot write: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise AuditError(f"{shown}: {option} names something else than a character device or "
                             "FIFO now (it changed meanwhile)")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb", closefd=True) as fh:
            fd = -1
            fh.write(data)
    except OSError as exc:
        raise AuditError(f"{shown}: cannot write: {exc.strerror}") from exc
    finally:
        if fd >= 0:
            os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _umask() -> int:
    """The process's umask, read without changing it (umask(2) is process-wide: a thread
    creating a file meanwhile would get 022): /proc/self/status's Umask line, as the
    library's reports read it, else the set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
    data = text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace")
    write_file(path, data, bool(getattr(args, "force", False)))


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
