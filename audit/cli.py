"""``ringpool-audit`` / ``python -m audit``: the entry point.

Exit codes (part of the interface):
  0  clean;
  1  error: bad arguments, unreadable or malformed report, failed command;
  2  outstanding blocks over the threshold set by the leak gate options.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import NoReturn, Protocol

from audit import __version__
from audit.errors import AuditError, UsageError
from audit.gate import EXIT_ERROR
from audit.printable import printable_escaped


class Command(Protocol):
    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on bad usage; 2 means leaks here, so raise instead."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _commands() -> dict[str, Command]:
    from audit.commands.bench import BenchCommand
    from audit.commands.config import ConfigCommand
    from audit.commands.demo import DemoCommand
    from audit.commands.diff import DiffCommand
    from audit.commands.run import RunCommand
    from audit.commands.show import ShowCommand

    return {
        "show": ShowCommand(),
        "diff": DiffCommand(),
        "run": RunCommand(),
        "bench": BenchCommand(),
        "demo": DemoCommand(),
        "config": ConfigCommand(),
    }


def _summary_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ringpool-audit",
        description="Audit ringpool pools: snapshots by origin tag, diffs, leak gates, "
                    "and bulk destroy measured against per-block free.",
        epilog="exit codes: 0 clean, 1 error, 2 outstanding blocks over the leak-gate threshold",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, command in _commands().items():
        doc = type(command).__doc__
        p = sub.add_parser(name, help=_summary_line(doc), description=inspect.cleandoc(doc or ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.prepare_parser(p)
        p.set_defaults(handler=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help(sys.stderr)
            print("ringpool-audit: error: a command is required", file=sys.stderr)
            return EXIT_ERROR
        handler: Command = args.handler
        return handler.run(args)
    except UsageError as exc:
        print(printable_escaped(str(exc)), file=sys.stderr)
        return EXIT_ERROR
    except AuditError as exc:
        print(f"ringpool-audit: error: {printable_escaped(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ringpool-audit: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except RecursionError:
        print("ringpool-audit: error: input nested too deeply to process", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("ringpool-audit: error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as exc:  # --help and --version
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    except BrokenPipeError:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
