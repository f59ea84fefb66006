"""``show``: the by-tag table of one or more reports."""

from __future__ import annotations

import argparse

from audit import gate, output, reports
from audit.commands._common import (ReportsCommand, add_input_options, add_table_options, by_tag_table,
                                    input_limits, require_files, totals_line)


class ShowCommand(ReportsCommand):
    """Show the by-tag table of one or more reports.

    Reads JSON reports (written by the library through $RINGPOOL_REPORT, by
    rp_pool_write_report, or by allocator.Snapshot.dump) and prints, per tag:
    outstanding blocks and bytes, peak bytes, allocations ever, and the share of
    outstanding bytes. Child pools appear with their path (parent/child). Several
    reports (one per process or pool) are merged, with one bytes column per report.
    Interposer reports ("format": "ringpool-preload") are grouped with --by.
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("reports", nargs="+", metavar="REPORT",
                            help="report files (JSON); - reads one from standard input")
        add_input_options(parser)
        add_table_options(parser)
        gate.add_gate_options(parser)
        output.add_output_options(parser)

    def _run(self, args: argparse.Namespace) -> int:
        output.check_output(args)
        require_files(args.reports)
        loaded = reports.load_all(args.reports, input_limits(args))
        merged = reports.rows_for(loaded, args.by, args.suppressions, args.wrapper)
        table = by_tag_table(merged, loaded, args)
        output.emit(args, table)
        verdict = gate.evaluate(args, merged.rows)
        line = totals_line(merged, loaded)
        output.summary(verdict.summarize(line))
        return verdict.exit_code
