"""``run``: run a program with reports switched on, then show what was outstanding."""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
import tempfile

from audit import cycles, gate, output, pyrun, reports
from audit.commands._common import add_table_options, by_tag_table, totals_line
from audit._process import (describe_status, exit_status, ready_report_dir, run_program,
                            written_since)
from audit.errors import AuditError
from audit.formatters import FORMATTERS, render
from audit.printable import printable


class RunCommand:
    """Run a command with ringpool reports switched on and show what was outstanding.

    Sets RINGPOOL_REPORT=DIR/%n.%p.%u.json, so every pool of the program (and of
    its children and forks: the pid is in the name; pools of one name too: %u
    numbers the reports of a process) writes its report at destroy,
    and every pool still alive at exit writes one then; then shows the merged
    by-tag table of the reports written during the run. With --preload the
    program also runs under the malloc interposer (LD_PRELOAD) and its call-site
    report is shown instead (--by picks the grouping); the program's stdout is
    the program's: without --output the table goes to stderr. With --python
    the program is a Python script whose allocations are attributed to Python
    lines (CPython's allocator hooks); see docs/python-programs.md.

    Exit status: the program's own (128+N when killed by signal N), as valgrind
    and heaptrack keep it; 2 when the leak gate fails, which wins over the
    program's status (valgrind's --error-exitcode); 1 when the program exited 0
    but no report could be read.
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--report-dir", metavar="DIR",
                            help="keep the reports in DIR (created if missing); default: a "
                                 "temporary directory removed afterwards")
        parser.add_argument("--blocks", action="store_true",
                            help="list every outstanding block in the reports (RINGPOOL_REPORT_BLOCKS=1)")
        parser.add_argument("--preload", action="store_true",
                            help="audit an unmodified program: interpose malloc with libringpool-preload.so")
        parser.add_argument("--stack-depth", type=stack_depth, default=None, metavar="N",
                            help="with --preload (or --python --native): frames of call stack "
                                 "recorded per block, 1 to 256 (default 64; 1 records the caller "
                                 "of malloc only, the cheapest)")
        parser.add_argument("--sample-rate", type=sample_rate, default=None, metavar="RATE",
                            help="with --preload or --python: sample each allocated byte with "
                                 "probability RATE (0 < RATE <= 1, e.g. 1e-4) and track the sampled "
                                 "blocks only; the report gives estimates (docs/memprof.md)")
        parser.add_argument("--sample-seed", type=sample_seed, default=None, metavar="N",
                            help="with --sample-rate: fix the random stream (reproducible runs)")
        pyrun.add_python_options(parser)
        cycles.add_cycles_option(parser)
        add_table_options(parser)
        gate.add_gate_options(parser)
        output.add_output_options(parser)
        parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                            help="the program to run and its arguments")

    def run(self, args: argparse.Namespace) -> int:
        output.check_output(args)
        if args.stack_depth is not None and not (args.preload or getattr(args, "native", False)):
            raise AuditError("--stack-depth applies to --preload and --python --native runs only")
        if getattr(args, "native", False) and not args.python:
            raise AuditError("--native applies to --python runs (--preload records native "
                             "stacks of its own)")
        if args.sample_rate is not None and not (args.preload or args.python):
            raise AuditError("--sample-rate applies to --preload and --python runs only (pools: "
                             "allocator.memprof, rp_memprof_start)")
        if args.sample_seed is not None and args.sample_rate is None:
            raise AuditError("--sample-seed needs --sample-rate")
        if ((args.preload or args.python) and args.output is None
                and getattr(FORMATTERS.get(args.format), "binary", False)):
            raise AuditError(f"run {'--preload' if args.preload else '--python'} --format {args.format}: "
                             "the format is binary and the table would go to stderr (the program owns "
                             "stdout); pass --output FILE")
        _check_table_options(args)
        cmd = list(args.cmd)
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
        if not cmd:
            raise AuditError("run: no command given (usage: run [options] -- CMD ARGS...)")
        if args.cycles is not None:
            cycles.check(args, cmd)
        if args.python:
            return pyrun.run(args, cmd)
        pyrun.hint(cmd)
        env = dict(os.environ)
        link_dir = None
        if args.preload:
            _refuse_static(cmd[0], env)
            try:
                library = str(reports.preload_module().library_path())
            except FileNotFoundError as exc:
                raise AuditError(str(exc)) from exc
            if any(c in library for c in _LD_PRELOAD_SEPARATORS):
                link_dir, library = _preloadable(library)
            previous = env.get("LD_PRELOAD")
            env["LD_PRELOAD"] = library if not previous else f"{library}:{previous}"
        temporary = args.report_dir is None
        try:
            report_dir = tempfile.mkdtemp(prefix="ringpool-run-") if temporary else args.report_dir
            try:
                return self._run_in(args, cmd, env, report_dir)
            finally:
                if temporary:
                    shutil.rmtree(report_dir, ignore_errors=True)
        finally:
            if link_dir is not None:
                shutil.rmtree(link_dir, ignore_errors=True)

    def _run_in(self, args: argparse.Namespace, cmd: list[str], env: dict[str, str],
                report_dir: str) -> int:
        if args.cycles is not None:
            def launch(command: list[str], where: str) -> tuple[str, bool, list[str]]:
                status, written = self._launch(args, command, dict(env), where)
                return describe_status(status), status != 0, written
            return cycles.run(args, cmd, report_dir, launch)
        status, written = self._launch(args, cmd, env, report_dir)
        failed = status != 0
        status_text = describe_status(status)
        if not written:
            hint = ("the interposer wrote none: see its messages above"
                    if args.preload else "does it link libringpool and create a pool?")
            output.summary(f"{printable(cmd[0])} {status_text}; it wrote no report ({hint})")
            return exit_status(status) if failed else gate.EXIT_ERROR
        return self._show(args, cmd, report_dir, status, written)

    def _launch(self, args: argparse.Namespace, cmd: list[str], env: dict[str, str],
                report_dir: str) -> tuple[int, list[str]]:
        """Runs cmd once with the report variables pointing into report_dir:
        its exit status and the report files it wrote."""
        before, literal_dir = ready_report_dir(report_dir)
        # %u: one file per report, so that pools of one name (two "worker" pools, a
        # child "b" and a pool "b") do not replace each other's report
        env["RINGPOOL_REPORT"] = os.path.join(literal_dir, "%n.%p.%u.json")
        if args.preload:
            env["RINGPOOL_PRELOAD_STACK_DEPTH"] = str(args.stack_depth or DEFAULT_STACK_DEPTH)
            env.pop("RINGPOOL_PRELOAD_SAMPLE_RATE", None)
            env.pop("RINGPOOL_PRELOAD_SAMPLE_SEED", None)
            if args.sample_rate is not None:
                env["RINGPOOL_PRELOAD_SAMPLE_RATE"] = repr(args.sample_rate)
            if args.sample_seed is not None:
                env["RINGPOOL_PRELOAD_SAMPLE_SEED"] = str(args.sample_seed)
            env["RINGPOOL_PRELOAD_REPORT"] = os.path.join(literal_dir, "ringpool-preload.%p.json")
        if args.blocks:
            env["RINGPOOL_REPORT_BLOCKS"] = "1"
        else:
            env.pop("RINGPOOL_REPORT_BLOCKS", None)
        try:
            status = run_program(cmd, env)
        except FileNotFoundError:
            raise AuditError(f"{printable(cmd[0])}: command not found") from None
        except PermissionError:
            raise AuditError(f"{printable(cmd[0])}: permission denied") from None
        except OSError as exc:
            raise AuditError(f"{printable(cmd[0])}: cannot run: {exc.strerror}") from exc
        return status, written_since(report_dir, before)

    def _show(self, args: argparse.Namespace, cmd: list[str], report_dir: str, status: int,
              written: list[str]) -> int:
        failed = status != 0
        status_text = describe_status(status)
        loaded = reports.load_all(written)
        if args.preload:
            kept = [r for r in loaded if r.kind == "preload"]
            if not kept:
                raise AuditError(f"{printable(cmd[0])} wrote no interposer report into {printable(report_dir)}")
            loaded = kept
        else:
            loaded = [r for r in loaded if r.kind == "snapshot"]
        merged = reports.rows_for(loaded, args.by, args.suppressions, args.wrapper)
        table = by_tag_table(merged, loaded, args)
        if args.preload and args.output is None:
            output.to_stderr(render(table, args.format))
        else:
            output.emit(args, table)
        verdict = gate.evaluate(args, merged.rows)
        line = f"{printable(cmd[0])} {status_text}; " + totals_line(merged, loaded)
        if args.report_dir is not None:
            line += f" (in {printable(report_dir)})"
        output.summary(verdict.summarize(line))
        if args.preload:
            _say_missing_symbols(loaded)
        if verdict.failed:
            return gate.EXIT_LEAKS
        return exit_status(status) if failed else gate.EXIT_OK


def _say_missing_symbols(loaded: list[reports.Report]) -> None:
    preload = reports.preload_module()
    missing: set[str] = set()
    for report in loaded:
        missing.update(preload.modules_without_symbols(report.data))
    if missing:
        names = ", ".join(sorted(printable(os.path.basename(m)) for m in missing))
        output.summary(f"no symbols for {names}: sites there show as module+offset "
                       "(install the debug files, e.g. the -dbgsym package; they are "
                       "found by build id under /usr/lib/debug/.build-id)")


# ld.so splits LD_PRELOAD at spaces and colons, with no way to escape either.
_LD_PRELOAD_SEPARATORS = " :"


#: Where the link to such a library goes when the temporary directory's own path holds a
#: separator too ($TMPDIR under "My Files"): the first of these that can hold a private one.
_LINK_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def _preloadable(library: str) -> tuple[str, str]:
    """(a new private directory, a symbolic link in it to library) for a library whose
    path LD_PRELOAD cannot carry (a virtual environment under "My Projects/"): the
    loader would split it and load nothing. The directory is made by mkdtemp (mode 0700,
    a name of its own) in the temporary directory, or, when that path holds a separator
    too, in the first of _LINK_DIRS that can hold it; it lasts as long as the run."""
    # the link's own name: the library's may hold the separator itself ("lib ringpool.so")
    name = "libringpool-preload.so"
    tried: list[str] = []
    for candidate in (tempfile.gettempdir(), *_LINK_DIRS):
        try:
            # absolute (a tempfile.tempdir set to a relative path), so that the path
            # checked is the link's: mkdtemp adds a name of letters, digits and '_'
            where = os.path.abspath(candidate)
        except OSError:                 # relative, and the working directory is gone
            continue
        if where in tried:
            continue
        tried.append(where)
        if any(c in os.path.join(where, "ringpool-preload-XXXXXXXX", name) for c in _LD_PRELOAD_SEPARATORS):
            continue
        try:
            link_dir = tempfile.mkdtemp(prefix="ringpool-preload-", dir=where)
        except OSError:
            continue
        link = os.path.join(link_dir, name)
        try:
            os.symlink(library, link)
        except OSError as exc:
            shutil.rmtree(link_dir, ignore_errors=True)
            raise AuditError(f"{printable(link)}: cannot link the interposer there: {exc.strerror}") from exc
        return link_dir, link
    raise AuditError(f"{printable(library)}: LD_PRELOAD cannot name the interposer (its path holds "
                     "a space or a colon, where the loader splits the list) and no directory for a "
                     f"link to it could be made in {', '.join(printable(t) for t in tried)}; set "
                     "RINGPOOL_PRELOAD_LIB to a copy at a path without either")


def _refuse_static(program: str, env: dict[str, str]) -> None:
    """A program without an ELF interpreter (PT_INTERP) never loads LD_PRELOAD:
    refuse it before running rather than report nothing afterwards."""
    path = program if os.sep in program else shutil.which(program, path=env.get("PATH"))
    if not path:
        return                       # subprocess reports "command not found"
    if _elf_without_interpreter(path):
        raise AuditError(
            f"{printable(program)}: statically linked (no ELF interpreter), so the interposer cannot "
            "be loaded into it; link the program with libringpool (pkg-config ringpool) "
            "and set RINGPOOL_REPORT, or run it under valgrind --leak-check=full")


def _elf_without_interpreter(path: str) -> bool:
    """True for an ELF executable that has no PT_INTERP program header: a static
    executable (ET_EXEC), or a static-pie (ET_DYN flagged DF_1_PIE, or without a
    dynamic section). False for anything else: scripts, unreadable files,
    dynamic executables, the dynamic loader run as a program."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) \
                    or head[5] not in (1, 2):
                return False
            is64 = head[4] == 2
            end = "<" if head[5] == 1 else ">"
            word = "Q" if is64 else "I"
            e_type, = struct.unpack_from(end + "H", head, 16)
            phoff, = struct.unpack_from(end + word, head, 32 if is64 else 28)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54 if is64 else 42)
            if e_type not in (2, 3) or phnum == 0 or phentsize < (56 if is64 else 32):
                return False
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
            if len(table) < phentsize * phnum:
                return False
            dynamic: tuple[int, int] | None = None
            for i in range(phnum):
                at = i * phentsize
                p_type, = struct.unpack_from(end + "I", table, at)
                if p_type == 3:                       # PT_INTERP
                    return False
                if p_type == 2:                       # PT_DYNAMIC: offset, size
                    if is64:
                        off, = struct.unpack_from(end + "Q", table, at + 8)
                        size, = struct.unpack_from(end + "Q", table, at + 32)
                    else:
                        off, = struct.unpack_from(end + "I", table, at + 4)
                        size, = struct.unpack_from(end + "I", table, at + 16)
                    dynamic = (off, min(size, 1 << 20))
            if e_type == 2 or dynamic is None:        # ET_EXEC, or nothing to link
                return True
            fh.seek(dynamic[0])
            raw = fh.read(dynamic[1])
    except OSError:
        return False
    entry = 16 if is64 else 8
    DT_FLAGS_1, DF_1_PIE = 0x6FFFFFFB, 0x08000000
    for at in range(0, len(raw) - entry + 1, entry):
        tag, value = struct.unpack_from(end + word * 2, raw, at)
        if tag == 0:
            break
        if tag == DT_FLAGS_1:
            return bool(value & DF_1_PIE)
    return False





# Frames per block when --stack-depth is not given: deep enough for the
# stacks of real programs (cc1, python3), and a capture costs by the frames
# it finds, not by this cap (docs/preload.md, "Overhead").
DEFAULT_STACK_DEPTH = 64
MAX_STACK_DEPTH = 256


def sample_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: the sample rate must be in (0, 1]")
    return value


def sample_seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (a whole number)") from None
    if not 0 < value < 2 ** 64:
        raise argparse.ArgumentTypeError(f"{text!r}: the seed must be from 1 to 2**64-1")
    return value


def stack_depth(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of frames") from None
    if not 1 <= value <= MAX_STACK_DEPTH:
        raise argparse.ArgumentTypeError(f"{text!r}: the stack depth must be from 1 to {MAX_STACK_DEPTH}")
    return value


def _check_table_options(args: argparse.Namespace) -> None:
    """--by, --suppressions and --wrapper that cannot apply to the run's reports are refused
    before the program runs, not once it has run."""
    if args.python:
        for flag, value in (("--suppressions", args.suppressions), ("--wrapper", args.wrapper)):
            if value:
                raise AuditError(f"{flag} applies to interposer reports (run --preload), not to --python")
        return
    if not args.preload:
        if args.suppressions is not None:
            raise AuditError("--suppressions applies to interposer reports (run --preload); pool "
                             "reports have origin tags")
        return
    preload = reports.preload_module()
    if args.by is not None and args.by not in preload.BY_CHOICES:
        raise AuditError(f"--by {args.by}: interposer reports group by one of "
                         f"{', '.join(preload.BY_CHOICES)}")
    if args.suppressions is not None:
        try:
            preload.read_suppressions(args.suppressions)
        except ValueError as exc:
            raise AuditError(reports._name_file(args.suppressions, exc)) from exc
