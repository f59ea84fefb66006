"""The leak gate shared by show, diff and run (exit code 2).

- ``--fail-on-leak``: any outstanding block of a tag that is not allowed fails;
- ``--max-leak-bytes N``: fails when the outstanding bytes of tags that are not
  allowed exceed N (N = 0 is the same as --fail-on-leak, counted in bytes);
- ``--allow-tag PATTERN`` (repeatable, shell-style ``fnmatch``, case-sensitive):
  tags (interposer rows: keys) that may legitimately remain.
Interposer rows marked suppressed never fail the gate. Without --fail-on-leak or
--max-leak-bytes the gate is off and leaks alone never change the exit code.
"""

from __future__ import annotations

import argparse
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from audit.printable import shortened
from audit.words import plural

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_LEAKS = 2


def non_negative_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("leak gate (exit code 2)")
    group.add_argument("--fail-on-leak", action="store_true",
                       help="exit 2 if any block of a tag that is not allowed is outstanding")
    group.add_argument("--max-leak-bytes", type=non_negative_int, metavar="N",
                       help="exit 2 if more than N bytes of tags that are not allowed are outstanding")
    group.add_argument("--allow-tag", action="append", default=[], metavar="PATTERN",
                       help="tags (fnmatch pattern) that may legitimately remain; repeatable")


@dataclass
class Verdict:
    active: bool
    failed: bool
    blocks: int = 0
    bytes: int = 0
    offenders: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.active:
            return ""
        if not self.failed:
            return "leak gate: passed"
        names = ", ".join(map(shortened, self.offenders[:10])) + (" ..." if len(self.offenders) > 10 else "")
        return (f"leak gate: FAILED, {plural(self.blocks, 'block')} / {plural(self.bytes, 'byte')} outstanding "
                f"in tags not allowed: {names}")

    def summarize(self, line: str, label: str = "") -> str:
        """line, then (when the gate is active) "; " + label + the verdict: every
        command's summary line ends this way."""
        return f"{line}; {label}{self.describe()}" if self.active else line

    @property
    def exit_code(self) -> int:
        return EXIT_LEAKS if self.failed else EXIT_OK


def allowed(key: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def evaluate(args: argparse.Namespace, rows: list[dict[str, Any]],
             blocks_key: str = "blocks", bytes_key: str = "bytes") -> Verdict:
    """rows carry 'key' (the tag or interposer key), counts and 'suppressed'; a row that
    also carries 'tag' is judged by it (a pool report with stacks grouped --by: the
    tag its frame is under, so that the verdict does not depend on the grouping).

    Linear in the rows (plus one sort of the offending ones): a report with a
    million tags is judged in about a second."""
    active = bool(args.fail_on_leak) or args.max_leak_bytes is not None
    verdict = Verdict(active=active, failed=False)
    if not active:
        return verdict              # nothing is judged (and nothing reported)
    patterns = list(args.allow_tag)
    offending: list[tuple[int, int, str]] = []
    for row in rows:
        blocks = int(row.get(blocks_key) or 0)
        nbytes = int(row.get(bytes_key) or 0)
        if blocks <= 0 and nbytes <= 0 or row.get("suppressed"):
            continue
        tag = row.get("tag")
        key = str(row["key"] if tag is None else tag)
        if patterns and allowed(key, patterns):
            continue
        verdict.blocks += max(blocks, 0)
        verdict.bytes += max(nbytes, 0)
        offending.append((nbytes, len(offending), key))
    # Offenders by outstanding bytes, largest first (ties in row order), each key once.
    offending.sort(key=lambda o: (-o[0], o[1]))
    verdict.offenders = list(dict.fromkeys(key for _, _, key in offending))
    if active:
        if args.fail_on_leak and verdict.blocks > 0:
            verdict.failed = True
        if args.max_leak_bytes is not None and verdict.bytes > args.max_leak_bytes:
            verdict.failed = True
    return verdict
