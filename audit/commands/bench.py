"""``bench``: bulk destroy against per-block free, measured side by side in C."""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from audit import output
from audit.commands._common import positive_int
from audit.errors import AuditError
from audit.formatters import Column, Table

MAX_BLOCKS = 10_000_000
SIZE_CHOICES = ("mixed", "16", "64", "256", "4096")
ORDERS = {"random": 0, "lifo": 1, "fifo": 2}
BACKINGS = {"malloc": 0, "arena": 4}
UNSYNC = 1
DEFAULT_SEED = 20261126


@dataclass(frozen=True)
class Strategy:
    name: str        # shown in the table and the plot legend
    family: str      # per-block and bulk rows of one family are compared
    kind: str        # "per-block" or "bulk"
    code: int        # RPB_* in the kernel
    flags: int = 0   # ringpool pool flags


@dataclass
class Result:
    blocks: int
    strategy: Strategy
    fill_ns: list[int] = field(default_factory=list)
    free_ns: list[int] = field(default_factory=list)

    @property
    def fill_per_block(self) -> float:
        return statistics.median(self.fill_ns) / self.blocks

    @property
    def free_per_block(self) -> float:
        return statistics.median(self.free_ns) / self.blocks

    @property
    def total_per_block(self) -> float:
        return statistics.median(f + r for f, r in zip(self.fill_ns, self.free_ns)) / self.blocks


def kernel() -> Any:
    try:
        from audit import _bench  # type: ignore[attr-defined]
    except ImportError as exc:
        raise AuditError("the bench kernel (audit._bench) is not built: run `make setup-py` "
                         f"(pip install --no-build-isolation -e .): {exc}") from exc
    return _bench


def strategies(k: Any, backings: list[str], unsync: bool, peers: bool,
               note: Callable[[str], None]) -> list[Strategy]:
    lib = k.lib
    extra = UNSYNC if unsync else 0
    out: list[Strategy] = []
    for backing in backings:
        family = f"ringpool/{backing}"
        flags = BACKINGS[backing] | extra
        out.append(Strategy(f"{family} per-block free", family, "per-block", lib.RPB_RP_FREE, flags))
        out.append(Strategy(f"{family} bulk destroy", family, "bulk", lib.RPB_RP_DESTROY, flags))
    out.append(Strategy("glibc malloc+free", "glibc", "per-block", lib.RPB_GLIBC_FREE))
    if peers:
        candidates = [
            Strategy("talloc per-block free", "talloc", "per-block", lib.RPB_TALLOC_FREE),
            Strategy("talloc free(parent)", "talloc", "bulk", lib.RPB_TALLOC_DESTROY),
            Strategy("APR apr_pool_destroy", "apr", "bulk", lib.RPB_APR_DESTROY),
            Strategy("mimalloc mi_free", "mimalloc", "per-block", lib.RPB_MI_FREE),
            Strategy("mimalloc mi_heap_destroy", "mimalloc", "bulk", lib.RPB_MI_DESTROY),
        ]
        missing: set[str] = set()
        for s in candidates:
            if lib.rpb_available(s.code):
                out.append(s)
            elif s.family not in missing:
                missing.add(s.family)
                reason = k.ffi.string(lib.rpb_unavailable_reason(s.code)).decode()
                note(f"bench: {s.family} skipped ({reason}); `make bench-peers` installs it")
    return out


def parse_blocks(text: str) -> list[int]:
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a block count (e.g. 1e5 or 100000)") from None
        if not value.is_integer() or not 1 <= value <= MAX_BLOCKS:
            raise argparse.ArgumentTypeError(
                f"{part!r}: a block count is a whole number from 1 to {MAX_BLOCKS}")
        counts.append(int(value))
    if len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"{text!r} lists a block count twice")
    return sorted(counts)


def parse_backings(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    for n in names:
        if n not in BACKINGS:
            raise argparse.ArgumentTypeError(f"{n!r} is not a backing (malloc, arena)")
    if not names:
        raise argparse.ArgumentTypeError("no backing given")
    return names


def measure(counts: list[int], size: int, order: str, repeat: int, strats: list[Strategy],
            seed: int, progress: Callable[[str], None]) -> list[Result]:
    """Runs every strategy `repeat` times per count, interleaved round by round."""
    k = kernel()
    lib, ffi = k.lib, k.ffi
    results: list[Result] = []
    saved = {v: os.environ.pop(v) for v in ("RINGPOOL_REPORT", "RINGPOOL_REPORT_BLOCKS") if v in os.environ}
    try:
        for n in counts:
            work = lib.rpb_work_new(n, size, ORDERS[order], seed)
            if work == ffi.NULL:
                raise AuditError(f"bench: cannot set up {n} blocks (out of memory?)")
            try:
                row = [Result(n, s) for s in strats]
                for r in range(-1, repeat):  # round -1 warms caches and allocators up, unrecorded
                    progress(f"bench: {n} blocks, " + (f"round {r + 1}/{repeat}" if r >= 0 else "warm-up"))
                    for res in row:
                        if lib.rpb_fill(work, res.strategy.code, res.strategy.flags) != 0:
                            why = ffi.string(lib.rpb_last_error(work)).decode()
                            raise AuditError(f"bench: {res.strategy.name}, {n} blocks: {why}")
                        held = lib.rpb_outstanding(work)
                        lib.rpb_release(work)
                        if held != n:
                            raise AuditError(f"bench: {res.strategy.name} held {held} blocks "
                                             f"after allocating {n}")
                        if r >= 0:
                            res.fill_ns.append(int(lib.rpb_fill_ns(work)))
                            res.free_ns.append(int(lib.rpb_release_ns(work)))
                results.extend(row)
            finally:
                lib.rpb_work_delete(work)
    finally:
        os.environ.update(saved)
    return results


def result_rows(results: list[Result]) -> list[dict[str, Any]]:
    by_count: dict[int, list[Result]] = {}
    for r in results:
        by_count.setdefault(r.blocks, []).append(r)
    rows: list[dict[str, Any]] = []
    for n, group in sorted(by_count.items()):
        glibc = next((r for r in group if r.strategy.family == "glibc"), None)
        for r in group:
            per_block = next((p for p in group if p.strategy.family == r.strategy.family
                              and p.strategy.kind == "per-block"), None)
            speedup = None
            if r.strategy.kind == "bulk" and per_block is not None:
                speedup = round(per_block.free_per_block / max(r.free_per_block, 1e-9), 2)
            rows.append({
                "blocks": n,
                "strategy": r.strategy.name,
                "family": r.strategy.family,
                "kind": r.strategy.kind,
                "fill_ns_per_block": round(r.fill_per_block, 2),
                "free_ns_per_block": round(r.free_per_block, 2),
                # the profile formats' value: a whole number, as speedscope reads
                # only whole counts in folded lines (0.03 ns is 30 ps, not 0)
                "free_ps_per_block": round(r.free_per_block * 1000),
                "bulk_speedup": speedup,
                "free_vs_glibc": round(r.free_per_block / glibc.free_per_block, 4) if glibc else None,
                "total_vs_glibc": round(r.total_per_block / glibc.total_per_block, 4) if glibc else None,
                "rounds": len(r.free_ns),
            })
    return rows


def results_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> Table:
    columns = [
        Column("blocks", "blocks"), Column("strategy", "strategy"),
        Column("fill_ns_per_block", "fill ns/block", ".1f"),
        Column("free_ns_per_block", "free ns/block", ".2f"),
        Column("bulk_speedup", "bulk speed-up", ".1f"),
        Column("free_vs_glibc", "free vs glibc", ".3g"),
        Column("total_vs_glibc", "fill+free vs glibc", ".3g"),
    ]
    return Table(columns=columns, rows=rows, title="free cost per block (median of rounds)",
                 frames=lambda r: [str(r["strategy"]), str(r["blocks"])],
                 value_key="free_ps_per_block", meta=meta,
                 json_extra=["family", "kind", "rounds"])


def require_matplotlib() -> None:
    """Fails before any measuring when --plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise AuditError("--plot needs matplotlib, which is not installed: "
                         "pip install 'ringpool[plot]' (or pip install matplotlib)") from exc


def plot(rows: list[dict[str, Any]], path: str, title: str, force: bool = False) -> None:
    require_matplotlib()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2), sharex=True)
    palette = {"ringpool/malloc": "tab:blue", "ringpool/arena": "tab:red", "glibc": "black",
               "talloc": "tab:brown", "apr": "tab:gray", "mimalloc": "tab:green"}
    names = list(dict.fromkeys(str(r["strategy"]) for r in rows))
    for name in names:
        mine = [r for r in rows if r["strategy"] == name]
        xs = [r["blocks"] for r in mine]
        bulk = mine[0]["kind"] == "bulk"
        # One colour per allocator family: per-block free dashed with squares, bulk solid with dots.
        style: dict[str, Any] = dict(color=palette.get(str(mine[0]["family"]), "tab:purple"),
                                     marker="o" if bulk else "s", linestyle="-" if bulk else "--",
                                     linewidth=2.0 if bulk else 1.4)
        axes[0].plot(xs, [max(r["free_ns_per_block"], 1e-3) for r in mine], label=name, **style)
        axes[1].plot(xs, [r["fill_ns_per_block"] + r["free_ns_per_block"] for r in mine], **style)
    axes[0].set_title("free phase: ns per block (lower is better)")
    axes[1].set_title("fill + free: ns per block (lower is better)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("blocks in the pool")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ns per block (median)")
    fig.legend(loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    # drawn in memory, then written as --output writes (never through a link)
    image = io.BytesIO()
    try:
        fig.savefig(image, dpi=110, format=os.path.splitext(path)[1][1:].lower())
    finally:
        plt.close(fig)
    output.write_file(path, image.getvalue(), force, "--plot")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


class _Progress:
    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.dirty = False

    def __call__(self, message: str) -> None:
        if self.tty:
            sys.stderr.write("\r" + message.ljust(70))
            self.dirty = True
        else:
            sys.stderr.write(message + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.dirty:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


def seed_arg(text: str) -> int:
    """A seed the C kernel takes (a uint64_t): a whole number from 0 to 2**64-1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (a whole number)") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"{text!r}: the seed must be from 0 to 2**64-1")
    return value


def size_arg(text: str) -> int:
    if text == "mixed":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: mixed or bytes (16, 64, 256, 4096)") from None
    if not 1 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"{text!r}: a block size is from 1 to {1 << 20} bytes")
    return value


class BenchCommand:
    """Measure bulk destroy against per-block free, side by side, in one process.

    For each block count the C kernel allocates N blocks (--sizes: a fixed-seed
    mix of small, medium and large blocks, or one size), then frees them either
    one by one (in --order) or with one bulk call, timing each phase with
    CLOCK_MONOTONIC inside C; the same blocks go through glibc malloc/free, and
    through talloc, APR pools and mimalloc heaps when their shared libraries are
    installed (`make bench-peers`). Prints the median ns per block of --repeat
    rounds, the speed-up of bulk over per-block free, and the ratio to glibc.
    Progress goes to stderr; --plot FILE.png draws a log-log chart.
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--blocks", type=parse_blocks, default=parse_blocks("1e3,1e4,1e5,1e6"),
                            metavar="N,N,...", help="block counts (default: 1e3,1e4,1e5,1e6)")
        parser.add_argument("--sizes", type=size_arg, default=0, metavar="mixed|16|64|256|4096",
                            help="block sizes: the fixed-seed mix (default) or one size in bytes")
        parser.add_argument("--order", choices=list(ORDERS), default="random",
                            help="per-block free order (default: random, fixed seed)")
        parser.add_argument("--repeat", type=positive_int, default=3, metavar="N",
                            help="rounds per strategy; the median is shown (default: 3)")
        parser.add_argument("--backing", type=parse_backings, default=["malloc", "arena"],
                            metavar="malloc,arena", help="ringpool backings to measure (default: both)")
        parser.add_argument("--unsync", action="store_true",
                            help="ringpool pools without a lock (RP_POOL_UNSYNC)")
        parser.add_argument("--no-peers", action="store_true",
                            help="skip talloc, APR and mimalloc even when installed")
        parser.add_argument("--seed", type=seed_arg, default=DEFAULT_SEED, help="seed of sizes and free order (0 to 2**64-1)")
        parser.add_argument("--plot", metavar="FILE.png", help="write a log-log chart to FILE.png")
        output.add_output_options(parser)

    def run(self, args: argparse.Namespace) -> int:
        output.check_output(args)
        if args.plot is not None:
            if not args.plot.lower().endswith((".png", ".svg", ".pdf")):
                raise AuditError(f"{args.plot}: --plot writes .png (or .svg, .pdf) files")
            output.check_path(args.plot, args.force, "--plot")
            require_matplotlib()
        k = kernel()
        strats = strategies(k, args.backing, args.unsync, not args.no_peers, output.summary)
        progress = _Progress()
        try:
            results = measure(args.blocks, args.sizes, args.order, args.repeat, strats, args.seed, progress)
        finally:
            progress.done()
        rows = result_rows(results)
        sizes = "mixed" if args.sizes == 0 else f"{args.sizes} bytes"
        meta = {"sizes": sizes, "order": args.order, "repeat": args.repeat, "seed": args.seed,
                "unsync": args.unsync, "machine": machine()}
        output.emit(args, results_table(rows, meta))
        if args.plot is not None:
            plot(rows, args.plot, f"ringpool bench: {sizes} sizes, {args.order} free order, "
                                  f"median of {args.repeat}", args.force)
        output.summary(summary_line(rows, args.plot))
        return 0


def summary_line(rows: list[dict[str, Any]], plot_path: str | None) -> str:
    bulk = [r for r in rows if r["bulk_speedup"] is not None and r["family"].startswith("ringpool")]
    text = f"bench: {len(rows)} measurements"
    if bulk:
        largest = max(r["blocks"] for r in bulk)
        parts = [f"{r['family']} {r['bulk_speedup']:.1f}x" for r in bulk if r["blocks"] == largest]
        text += f"; bulk destroy over per-block free at {largest} blocks: " + ", ".join(parts)
    if plot_path:
        text += f"; plot in {plot_path}"
    return text
