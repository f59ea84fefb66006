"""``demo``: the bundled showcase."""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import tempfile

from audit import output
from audit.commands import bench
from audit.commands._common import positive_int
from audit.errors import AuditError
from audit.gate import EXIT_LEAKS, EXIT_OK
from audit.printable import printable

LEAKING_TAGS = ("cache-entry", "session")


#: the most --requests takes (the workload counts them in a C long)
MAX_REQUESTS = 10 ** 9


def request_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_REQUESTS:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of requests is from 1 to "
                                         f"{MAX_REQUESTS}")
    return value


class DemoCommand:
    """Run the bundled workload and walk through what the audit tool shows.

    A toy request server written in C (pool "server", child pool "requests")
    allocates under six tags and leaks from two: sessions that are never closed
    and cache entries that are never evicted. The demo prints the by-tag
    snapshot after 1000 requests, the diff between request 200 and request 1000,
    the leak report written by the library when the pool is destroyed (with the
    leak gate, which exits 2), a short bulk-destroy vs per-block-free table, and
    (with --html FILE) an HTML flame graph of the leaks.
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--requests", type=request_count, default=1000, metavar="N",
                            help=f"requests the workload handles, 1 to {MAX_REQUESTS} "
                                 "(default: 1000)")
        parser.add_argument("--bench-blocks", type=bench.parse_blocks,
                            default=bench.parse_blocks("1e3,1e4,1e5"), metavar="N,N,...",
                            help="block counts of the bench table (default: 1e3,1e4,1e5)")
        parser.add_argument("--repeat", type=positive_int, default=3, metavar="N",
                            help="bench rounds (default: 3)")
        parser.add_argument("--no-bench", action="store_true", help="skip the bench table")
        parser.add_argument("--keep", metavar="DIR",
                            help="write the demo's reports into DIR (created if missing) and keep them")
        parser.add_argument("--format", choices=["table", "github", "markdown"], default="table",
                            help="table style of every section (default: table)")
        parser.add_argument("--html", metavar="FILE",
                            help="end with a flame graph of what the pools held at destroy, written to "
                                 "FILE, replacing a regular file there (one page any browser opens offline; "
                                 "`make demo` writes build/demo/leaks.html)")

    def run(self, args: argparse.Namespace) -> int:
        if args.html is not None and os.path.isdir(os.path.dirname(os.path.abspath(args.html))):
            # what --html names is refused before any work, as --output's is (a missing
            # directory is made at the end)
            output.check_path(args.html, True, "--html")
        if args.keep is not None:
            try:
                os.makedirs(args.keep, exist_ok=True)
            except OSError as exc:
                raise AuditError(f"{printable(args.keep)}: cannot create: {exc.strerror}") from exc
            workdir = args.keep
        else:
            workdir = tempfile.mkdtemp(prefix="ringpool-demo-")
        try:
            return self._run(args, workdir)
        finally:
            if args.keep is None:
                shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, args: argparse.Namespace, workdir: str) -> int:
        from audit.cli import main

        k = bench.kernel()
        lib, ffi = k.lib, k.ffi
        early = max(1, args.requests // 5)
        first = os.path.join(workdir, f"moment-{early}.json")
        second = os.path.join(workdir, f"moment-{args.requests}.json")
        leaks_dir = os.path.join(workdir, "at-destroy")
        _own_directory(leaks_dir)
        for name in os.listdir(leaks_dir):
            if name.endswith(".json"):
                os.unlink(os.path.join(leaks_dir, name))

        server = lib.rpd_start()
        if server == ffi.NULL:
            raise AuditError("demo: the workload could not start (out of memory)")
        saved = {v: os.environ.get(v) for v in ("RINGPOOL_REPORT", "RINGPOOL_REPORT_BLOCKS")}
        try:
            os.environ.pop("RINGPOOL_REPORT", None)
            os.environ.pop("RINGPOOL_REPORT_BLOCKS", None)
            for target, path in ((early, first), (args.requests, second)):
                if lib.rpd_serve(server, target - _handled(lib, server)) < 0:
                    raise AuditError("demo: the workload ran out of memory")
                if lib.rpd_snapshot(server, os.fsencode(path)) != 0:
                    raise AuditError(f"{printable(path)}: the library could not write the report")
            # The library writes one report per pool as it destroys them.
            os.environ["RINGPOOL_REPORT"] = os.path.join(leaks_dir, "%n.%p.json")
        finally:
            lib.rpd_shutdown(server)
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
        at_destroy = sorted(os.path.join(leaks_dir, n) for n in os.listdir(leaks_dir) if n.endswith(".json"))
        if not at_destroy:
            raise AuditError("demo: the library wrote no report at destroy ($RINGPOOL_REPORT)")

        fmt = ["--format", args.format]
        _heading(f"1. Outstanding by tag after {args.requests} requests "
                 f"(ringpool-audit show {_short(second)})")
        if main(["show", second, *fmt]) != EXIT_OK:
            return 1
        _heading(f"2. What changed between request {early} and request {args.requests} "
                 f"(ringpool-audit diff)")
        if main(["diff", first, second, "--changed-only", *fmt]) != EXIT_OK:
            return 1
        allow = ["--allow-tag", "config", "--allow-tag", "routes"]
        _heading("3. Leak report written by the library at destroy, with the CI gate\n"
                 "   (ringpool-audit show --min-bytes 1 --fail-on-leak --allow-tag config --allow-tag routes "
                 + " ".join(_short(p) for p in at_destroy) + ")")
        code = main(["show", *at_destroy, "--min-bytes", "1", "--fail-on-leak", *allow, *fmt])
        print(f"exit code {code}: the tags {' and '.join(LEAKING_TAGS)} still held blocks "
              "when their pools were destroyed (the bulk free released them).", flush=True)
        if code != EXIT_LEAKS:
            print(f"demo: expected exit code {EXIT_LEAKS} from the leak gate, got {code}", file=sys.stderr)
            return 1
        if not args.no_bench:
            _heading("4. Bulk destroy vs per-block free (ringpool-audit bench --blocks "
                     + ",".join(str(n) for n in args.bench_blocks) + f" --repeat {args.repeat})")
            argv = ["bench", "--blocks", ",".join(str(n) for n in args.bench_blocks),
                    "--repeat", str(args.repeat), *fmt]
            if main(argv) != EXIT_OK:
                return 1
        page = args.html
        if page is not None:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(page)), exist_ok=True)
            except OSError as exc:
                raise AuditError(f"{printable(page)}: cannot create its directory: {exc.strerror}") from exc
            _heading("5. Flame graph of what the pools held at destroy, by pool and tag\n"
                     f"   (ringpool-audit show --format html --output {page} "
                     + " ".join(_short(p) for p in at_destroy) + ")")
            if main(["show", *at_destroy, "--format", "html", "--output", page, "--force"]) != EXIT_OK:
                return 1
            print(f"open file://{os.path.abspath(page)} in a browser: click a box to zoom, "
                  "type in the search box to highlight frames.", flush=True)
        output.summary(f"demo: done; reports in {workdir}" if args.keep else "demo: done")
        return 0


def _own_directory(path: str) -> None:
    """Makes the directory path, or checks that the one there is a directory and not a
    symbolic link: the demo empties it of .json files before each run, and never does
    so through a link (--keep DIR whose at-destroy/ points elsewhere)."""
    try:
        os.mkdir(path)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        raise AuditError(f"{printable(path)}: cannot create: {exc.strerror}") from exc
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise AuditError(f"{printable(path)}: a symbolic link, which the demo never writes through "
                         "nor empties; remove it or keep the reports in another directory")
    if not stat.S_ISDIR(st.st_mode):
        raise AuditError(f"{printable(path)}: not a directory; remove it or keep the reports in "
                         "another directory")


def _handled(lib: object, server: object) -> int:
    value = lib.rpd_serve(server, 0)  # type: ignore[attr-defined]
    return int(value)


def _short(path: str) -> str:
    parent = os.path.basename(os.path.dirname(path))
    name = os.path.basename(path)
    return os.path.join(parent, name) if parent == "at-destroy" else name


def _heading(text: str) -> None:
    print(f"\n== {text}\n", flush=True)
