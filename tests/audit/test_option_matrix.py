"""The cross product of the CLI's options over every kind of report.

One small real report of each kind is made once by its own producer (a pool
report from a program linking libringpool, interposer reports whole-stack,
one-frame and sampled from an unmodified program, a pool report with stacks,
Python-hooks reports with and without --native), then ``show`` and ``diff``
run in-process with every --format x --by x gate x destination (stdout or
--output FILE). Each outcome must be: exit 0, exit 2 (gate failed) or exit 1
with one clear line on stderr; never a traceback; no file left behind by an
error; output that parses in its format, with the same outstanding blocks and
bytes as the json format of the same report and grouping; and the same gate
verdict whatever the format. ``run`` (pool, interposer, Python, cycles) is
checked against ``show`` of the reports it kept; ``bench`` and ``demo`` in
each of their formats; and --suppressions, --wrapper, --top, --sort,
--min-bytes, ``-`` and several reports per show across the formats.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest

from _audit_testlib import c_compiler, static_library
from _export_testlib import FIXTURES, PROGRAMS, ROOT, build_plain_leaks, decode_pprof
from audit.cli import main
from audit.formatters import FORMAT_NAMES
from audit.reports import BY_CHOICES

SPEEDSCOPE_SCHEMA = json.loads((FIXTURES / "speedscope-file-format-schema.json").read_text(encoding="utf-8"))
KINDS = ("pool", "pool_stacks", "preload", "preload_one_frame", "preload_sampled", "python", "python_native")
BYS: tuple[str | None, ...] = (None, *BY_CHOICES)
GATES: tuple[tuple[str, ...], ...] = (
    (),
    ("--fail-on-leak",),
    ("--max-leak-bytes", "0"),
    ("--fail-on-leak", "--allow-tag", "*"),
    ("--max-leak-bytes", "100", "--allow-tag", "make_*", "--allow-tag", "cache"),
)
DESTS = ("stdout", "file")


def combinations() -> list[tuple[str, tuple[str, ...], str]]:
    """(format, gate, destination): the whole product (the gate changes the exit status, never
    the data, which every combination checks)."""
    return [(fmt, gate, dest) for fmt in FORMAT_NAMES for gate in GATES for dest in DESTS]


# ------------------------------------------------------------------ the reports
def _only_json(directory: Path) -> list[str]:
    files = sorted(str(p) for p in directory.glob("*.json"))
    assert files, f"no report in {directory}"
    return files


def _produce(argv: list[str]) -> None:
    with _captured() as cap:
        code = main(argv)
    assert code == 0, cap.err()


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The producers: tests/audit/programs built, and a three-line Python script."""
    d = tmp_path_factory.mktemp("programs")
    cc, inc, lib = c_compiler(), f"-I{ROOT / 'csrc' / 'include'}", str(static_library())
    built = {name: d / name for name in ("leaky", "pool_stacks", "cycles")}
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", inc, str(PROGRAMS / "leaky.c"), lib,
                    "-lpthread", "-o", str(built["leaky"])], check=True)
    built["plain_leaks"] = Path(build_plain_leaks(tmp_path_factory))
    for name in ("pool_stacks", "cycles"):
        subprocess.run([cc, "-std=c11", "-O0", "-g", "-fno-omit-frame-pointer", "-D_GNU_SOURCE", inc,
                        str(PROGRAMS / f"{name}.c"), lib, "-lpthread", "-o", str(built[name])],
                       check=True)
    built["supp"] = d / "leaks.supp"
    built["supp"].write_text("leak:main\n", encoding="utf-8")
    script = built["script"] = d / "three.py"
    script.write_text("HOLD = []\nfor i in range(50):\n    HOLD.append(bytearray(100))\n", encoding="utf-8")
    return built


@pytest.fixture(scope="module")
def kinds(programs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Kind of report -> its files, each made by the real producer."""
    d = tmp_path_factory.mktemp("matrix")
    leaky, plain, stacks, script = (programs[n] for n in ("leaky", "plain_leaks", "pool_stacks", "script"))
    quiet = ["--output", os.devnull, "--force"]
    _produce(["run", "--report-dir", str(d / "pool"), *quiet, "--", str(leaky)])
    _produce(["run", "--preload", "--report-dir", str(d / "preload"), *quiet, "--", str(plain)])
    _produce(["run", "--preload", "--stack-depth", "1", "--report-dir", str(d / "one"), *quiet, "--", str(plain)])
    _produce(["run", "--preload", "--sample-rate", "0.05", "--sample-seed", "7", "--report-dir", str(d / "sampled"),
              *quiet, "--", str(plain)])
    _produce(["run", "--python", "--report-dir", str(d / "python"), *quiet, "--", str(script)])
    _produce(["run", "--python", "--native", "--report-dir", str(d / "native"), *quiet, "--", str(script)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGPOOL_")}
    subprocess.run([str(stacks), str(d / "pool_stacks.json")], check=True, env=env)
    return {
        "pool": _only_json(d / "pool"),
        "pool_stacks": [str(d / "pool_stacks.json")],
        "preload": _only_json(d / "preload"),
        "preload_one_frame": _only_json(d / "one"),
        "preload_sampled": _only_json(d / "sampled"),
        "python": _only_json(d / "python"),
        "python_native": _only_json(d / "native"),
    }


# ------------------------------------------------------------------ running the CLI in-process
@pytest.fixture(autouse=True, scope="module")
def one_parser() -> Iterator[None]:
    """Builds the argument parser once for the module: building it is most of the cost of a
    call, and parsing leaves it as it was."""
    import audit.cli
    build = audit.cli.build_parser
    parser = build()
    audit.cli.build_parser = lambda: parser
    try:
        yield
    finally:
        audit.cli.build_parser = build


class _Stream(io.TextIOWrapper):
    def __init__(self, tty: bool) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", write_through=True)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def data(self) -> bytes:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue()


@dataclass
class _Capture:
    out: _Stream
    error: _Stream

    def err(self) -> str:
        return self.error.data().decode("utf-8", "replace")


@contextlib.contextmanager
def _captured(tty: bool = False) -> Iterator[_Capture]:
    cap = _Capture(_Stream(tty), _Stream(False))
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = cap.out, cap.error
    try:
        yield cap
    finally:
        sys.stdout, sys.stderr = saved


@dataclass
class Outcome:
    argv: list[str]
    code: int
    data: bytes
    err: str


def run_cli(argv: list[str], out_file: Path | None, tty: bool = False) -> Outcome:
    """Runs argv (adding --output out_file when given); the data is what went to stdout or the file."""
    full = list(argv)
    if out_file is not None:   # before a command's "--"
        at = full.index("--") if "--" in full else len(full)
        full[at:at] = ["--output", str(out_file)]
    with _captured(tty) as cap:
        try:
            code = main(full)
        except BaseException as exc:  # noqa: BLE001 - any escape is the failure under test
            raise AssertionError(f"{full}: main raised {exc!r}") from exc
    err = cap.err()
    stdout = cap.out.data()
    assert "Traceback" not in err, f"{full}: traceback\n{err}"
    assert code in (0, 1, 2), f"{full}: exit {code}\n{err}"
    if out_file is not None:
        assert not stdout, f"{full}: data on stdout with --output"
        if code == 1:
            assert not out_file.exists(), f"{full}: {out_file} left behind by an error"
            data = b""
        else:
            assert out_file.exists(), f"{full}: exit {code} but {out_file} was not written"
            data = out_file.read_bytes()
            out_file.unlink()
    else:
        data = stdout
    if code == 1:
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{full}: the error is not one line:\n{err}"
        assert lines[0].startswith("ringpool-audit"), f"{full}: {err}"
        assert not data, f"{full}: partial output after an error"
    return Outcome(full, code, data, err)


# ------------------------------------------------------------------ reading each format
@dataclass
class Totals:
    blocks: float | None
    bytes: float


def _num(text: Any) -> float:
    return float(str(text).strip().replace(",", ""))


def _rows_totals(rows: list[dict[str, Any]], blocks: str, nbytes: str) -> Totals:
    kept = [r for r in rows if str(r.get("suppressed", "")).strip() not in ("True", "true", "yes")]
    return Totals(sum(_num(r[blocks]) for r in kept), sum(_num(r[nbytes]) for r in kept))


def _header(headers: list[str], name: str) -> str:
    """The column headed name, or ~name for estimates."""
    for h in headers:
        if h.strip() in (name, "~" + name):
            return h
    raise AssertionError(f"no column {name!r} in {headers}")


def _simple_table(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    rule_at = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[rule_at])]
    header = lines[rule_at - 1]
    names = [header[a:b].strip() for a, b in spans]
    # a column's text may run up to the next column's start (left-aligned text)
    cuts = [(a, spans[i + 1][0] if i + 1 < len(spans) else None) for i, (a, _) in enumerate(spans)]
    rows = []
    for line in lines[rule_at + 1:]:
        if not line.strip():
            break               # the end of the first table (run --python prints two)
        rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, cuts)})
    return rows


def _pipe_table(text: str) -> list[dict[str, str]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break               # the end of the first table (run --python prints two)

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]

    names = cells(lines[0])
    return [dict(zip(names, cells(line))) for line in lines[2:]]


def parse_totals(fmt: str, data: bytes, tmp_path: Path, diff: bool = False) -> Totals:
    """Outstanding blocks and bytes as the output of format fmt states them (blocks None where
    the format carries bytes only); with diff, the change in blocks and bytes."""
    blocks_key, bytes_key = ("blocks_diff", "bytes_diff") if diff else ("blocks", "bytes")
    blocks_col, bytes_col = ("blocks +/-", "bytes +/-") if diff else ("blocks", "bytes")
    if fmt == "pprof":
        prof = decode_pprof(data, tmp_path)
        strings = list(prof.string_table)
        types = [strings[t.type] for t in prof.sample_type]
        si = types.index("inuse_space")
        blocks = (sum(s.value[types.index("inuse_objects")] for s in prof.sample)
                  if "inuse_objects" in types else None)
        return Totals(blocks, sum(s.value[si] for s in prof.sample))
    text = data.decode("utf-8")
    if fmt == "json":
        doc = json.loads(text)
        return _rows_totals(doc["rows"], blocks_key, bytes_key)
    if fmt == "csv":
        import csv
        return _rows_totals(list(csv.DictReader(io.StringIO(text))), blocks_key, bytes_key)
    if fmt == "table":
        rows = _simple_table(text)
        names = list(rows[0]) if rows else []
        if not rows:
            return Totals(0, 0)
        return _rows_totals(rows, _header(names, blocks_col), _header(names, bytes_col))
    if fmt in ("github", "markdown"):
        rows = _pipe_table(text)
        if not rows:
            return Totals(0, 0)
        names = list(rows[0])
        return _rows_totals(rows, _header(names, blocks_col), _header(names, bytes_col))
    if fmt == "folded":
        total = 0.0
        for line in text.splitlines():
            m = re.fullmatch(r"(.*) (\d+(?:\.\d+)?)", line)
            assert m is not None, f"not a folded line: {line!r}"
            total += float(m[2])
        return Totals(None, total)
    if fmt == "speedscope":
        doc = json.loads(text)
        jsonschema.validate(doc, SPEEDSCOPE_SCHEMA)
        by_title = {m[1]: p for p in doc["profiles"]
                    if (m := re.search(r": (outstanding bytes|outstanding blocks)(?: \(|$)", p["name"]))}
        for p in doc["profiles"]:
            assert p["endValue"] == sum(p["weights"])
            assert all(0 <= i < len(doc["shared"]["frames"]) for s in p["samples"] for i in s)
        blocks_p = by_title.get("outstanding blocks")
        return Totals(None if blocks_p is None else sum(blocks_p["weights"]),
                      sum(by_title["outstanding bytes"]["weights"]))
    if fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
        m = re.search(r'<script type="application/json" id="profile-data">(.*?)</script>', text, re.S)
        assert m is not None
        page = json.loads(html.unescape(m[1]) if "&quot;" in m[1] else m[1])
        names = [mt["name"] for mt in page["metrics"]]
        si = names.index("outstanding bytes")
        blocks = (sum(v[names.index("outstanding blocks")] for v in page["values"])
                  if "outstanding blocks" in names else None)
        return Totals(blocks, sum(v[si] for v in page["values"]))
    raise AssertionError(f"no reader for --format {fmt}")


def agree(a: Totals, b: Totals, rows: int) -> bool:
    """Equal, up to the rounding of estimates (one unit per row)."""
    slack = max(rows, 1)
    ok = abs(a.bytes - b.bytes) <= slack
    if a.blocks is not None and b.blocks is not None:
        ok = ok and abs(a.blocks - b.blocks) <= slack
    return ok


# ------------------------------------------------------------------ show
def _show_argv(files: list[str], fmt: str, by: str | None, gate: tuple[str, ...]) -> list[str]:
    return ["show", *files, "--format", fmt, *(["--by", by] if by else []), *gate]


@pytest.mark.parametrize("by", BYS, ids=lambda b: b or "default")
@pytest.mark.parametrize("kind", KINDS)
def test_show_matrix(kind: str, by: str | None, kinds: dict[str, list[str]], tmp_path: Path) -> None:
    files = kinds[kind]
    out_file = tmp_path / "out"
    ref = run_cli(_show_argv(files, "json", by, ()), None)
    if ref.code == 1:
        # the grouping does not apply to this kind: every combination says so, in one line
        for fmt, gate, dest in combinations():
            o = run_cli(_show_argv(files, fmt, by, gate), out_file if dest == "file" else None)
            assert o.code == 1 and o.err == ref.err and ("--by" in o.err or "grouping" in o.err), (o, ref)
        return
    assert ref.code == 0, ref.err
    ref_rows = len(json.loads(ref.data)["rows"])
    expected = parse_totals("json", ref.data, tmp_path)
    verdicts: dict[tuple[str, ...], dict[str, int]] = {}
    for fmt, gate, dest in combinations():
        o = run_cli(_show_argv(files, fmt, by, gate), out_file if dest == "file" else None)
        assert o.code in (0, 2), o
        verdicts.setdefault(gate, {})[f"{fmt}/{dest}"] = o.code
        got = parse_totals(fmt, o.data, tmp_path)
        assert agree(got, expected, ref_rows), (o.argv, got, expected)
    for gate, codes in verdicts.items():
        assert len(set(codes.values())) == 1, (gate, codes)


@pytest.mark.parametrize("command", ["show", "diff", "bench"])
def test_binary_format_to_a_terminal_is_refused(command: str, kinds: dict[str, list[str]]) -> None:
    """Refused before any work (bench measures for minutes at its default sizes)."""
    argv = {"show": ["show", *kinds["preload"]], "diff": ["diff", kinds["preload_sampled"][0], kinds["preload"][0]],
            "bench": ["bench", "--blocks", "100", "--repeat", "1", "--no-peers", "--backing", "malloc"]}[command]
    for fmt in FORMAT_NAMES:
        o = run_cli([*argv, "--format", fmt], None, tty=True)
        if fmt == "pprof":
            assert o.code == 1 and "binary" in o.err and "--output" in o.err, o
        else:
            assert o.code == 0 and o.data, o


# ------------------------------------------------------------------ diff
# (OLD, NEW) as (kind, index of the file): pool reports of two pools, a pool report against one
# with stacks, a sampled interposer report against an exact one (both ways), the two Python reports.
DIFF_PAIRS: dict[str, tuple[tuple[str, int], tuple[str, int]]] = {
    "pool": (("pool", -1), ("pool", 0)),
    "pool_vs_stacks": (("pool", 0), ("pool_stacks", 0)),
    "preload_grown": (("preload_sampled", 0), ("preload", 0)),
    "preload_shrunk": (("preload", 0), ("preload_sampled", 0)),
    "preload_one_frame": (("preload_one_frame", 0), ("preload", 0)),
    "python": (("python", 0), ("python_native", 0)),
}
# Profiles cannot draw a shrinking row: folded, speedscope and html show the growth (rows whose
# bytes grew), pprof the signed change as pprof's own diffs do, the tables every row.
GROWTH_FORMATS = ("folded", "speedscope", "html")


def _diff_argv(old: str, new: str, fmt: str, by: str | None, gate: tuple[str, ...]) -> list[str]:
    return ["diff", old, new, "--format", fmt, *(["--by", by] if by else []), *gate]


@pytest.mark.parametrize("by", BYS, ids=lambda b: b or "default")
@pytest.mark.parametrize("pair", list(DIFF_PAIRS))
def test_diff_matrix(pair: str, by: str | None, kinds: dict[str, list[str]], tmp_path: Path) -> None:
    _diff_matrix(pair, by, kinds, tmp_path, ())


@pytest.mark.parametrize("by", BYS, ids=lambda b: b or "default")
@pytest.mark.parametrize("pair", [p for p in DIFF_PAIRS if p.startswith("preload")])
def test_diff_matrix_with_suppressions(pair: str, by: str | None, kinds: dict[str, list[str]],
                                       tmp_path: Path) -> None:
    """Suppressed rows of an interposer diff: listed (suppressed column) in the tables, left out
    of the profiles and of the gate, as show does."""
    supp = tmp_path / "leaks.supp"
    supp.write_text("leak:make_table\n", encoding="utf-8")
    _diff_matrix(pair, by, kinds, tmp_path, ("--suppressions", str(supp)))


def _diff_matrix(pair: str, by: str | None, kinds: dict[str, list[str]], tmp_path: Path,
                 extra: tuple[str, ...]) -> None:
    (ok, oi), (nk, ni) = DIFF_PAIRS[pair]
    old, new = kinds[ok][oi], kinds[nk][ni]
    out_file = tmp_path / "out"
    ref = run_cli(_diff_argv(old, new, "json", by, extra), None)
    if ref.code == 1:
        if ok == "pool":        # the option given is the one named, and where it applies
            assert f"diff {'--suppressions' if extra else '--by'}: pool reports are compared tag by tag" in ref.err
        for fmt, gate, dest in combinations():
            o = run_cli(_diff_argv(old, new, fmt, by, (*extra, *gate)), out_file if dest == "file" else None)
            assert o.code == 1 and o.err == ref.err, (o, ref)
        return
    if extra:
        assert any(r["suppressed"] for r in json.loads(ref.data)["rows"]), ref
    assert ref.code == 0, ref.err
    rows = json.loads(ref.data)["rows"]
    net = parse_totals("json", ref.data, tmp_path, diff=True)
    growth = Totals(None, sum(r["bytes_diff"] for r in rows if r["bytes_diff"] > 0 and not r.get("suppressed")))
    verdicts: dict[tuple[str, ...], dict[str, int]] = {}
    for fmt, gate, dest in combinations():
        o = run_cli(_diff_argv(old, new, fmt, by, (*extra, *gate)), out_file if dest == "file" else None)
        assert o.code in (0, 2), o
        verdicts.setdefault(gate, {})[f"{fmt}/{dest}"] = o.code
        got = parse_totals(fmt, o.data, tmp_path, diff=True)
        want = growth if fmt in GROWTH_FORMATS else net
        assert agree(got, want, 0), (o.argv, got, want)
    for gate, codes in verdicts.items():
        assert len(set(codes.values())) == 1, (gate, codes)


def test_diff_of_different_kinds_is_refused_in_every_format(kinds: dict[str, list[str]], tmp_path: Path) -> None:
    for fmt in FORMAT_NAMES:
        for dest in DESTS:
            o = run_cli(["diff", kinds["pool"][0], kinds["preload"][0], "--format", fmt],
                        tmp_path / "out" if dest == "file" else None)
            assert o.code == 1 and "cannot compare" in o.err, o


# ------------------------------------------------------------------ the gate and --by
BY_FREE_GATES: tuple[tuple[str, ...], ...] = (("--fail-on-leak",), ("--max-leak-bytes", "0"),
                                              ("--max-leak-bytes", "100"), ("--max-leak-bytes", "400"))


@pytest.mark.parametrize("kind", KINDS)
def test_gate_verdict_does_not_depend_on_by(kind: str, kinds: dict[str, list[str]]) -> None:
    """--by regroups the same blocks: a gate that names no key judges them the same way."""
    for gate in BY_FREE_GATES:
        codes = {}
        for by in BYS:
            o = run_cli(_show_argv(kinds[kind], "json", by, gate), None)
            if o.code != 1:
                codes[by] = o.code
        assert codes and len(set(codes.values())) == 1, (kind, gate, codes)


@pytest.mark.parametrize("by", BYS, ids=lambda b: b or "default")
def test_pool_stacks_gate_allows_tags_whatever_the_grouping(by: str | None, kinds: dict[str, list[str]]) -> None:
    """A pool report with stacks grouped --by function: --allow-tag still names the pool's tags
    (the report's are "node" in app and "name" in app/strings), not the functions."""
    if by == "line":
        pytest.skip("pool stacks are not grouped by line")
    files = kinds["pool_stacks"]
    only_node = run_cli(_show_argv(files, "json", by, ("--fail-on-leak", "--allow-tag", "node")), None)
    assert only_node.code == 2 and "name" in only_node.err.split("not allowed:", 1)[1], only_node
    both = run_cli(_show_argv(files, "json", by, ("--fail-on-leak", "--allow-tag", "node", "--allow-tag", "name")),
                   None)
    assert both.code == 0 and "leak gate: passed" in both.err, both
    functions = run_cli(_show_argv(files, "json", by, ("--fail-on-leak", "--allow-tag", "make_node",
                                                       "--allow-tag", "name_it")), None)
    assert functions.code == 2, functions


# ------------------------------------------------------------------ run
RUN_MODES: dict[str, tuple[list[str], list[str]]] = {
    # mode: (options, the command with the names of programs() in braces)
    "pool": ([], ["{leaky}"]),
    "preload": (["--preload"], ["{plain_leaks}"]),
    "preload_one_frame": (["--preload", "--stack-depth", "1"], ["{plain_leaks}"]),
    "preload_sampled": (["--preload", "--sample-rate", "0.05", "--sample-seed", "7"], ["{plain_leaks}"]),
    "python": (["--python"], ["{script}"]),
    "python_native": (["--python", "--native"], ["{script}"]),
    "preload_grouped": (["--preload", "--by", "function", "--wrapper", "make_*", "--suppressions", "{supp}"],
                        ["{plain_leaks}"]),
    "python_stacks": (["--python", "--python-depth", "3", "--by", "stack"], ["{script}"]),
    "python_sampled": (["--python", "--sample-rate", "0.01", "--sample-seed", "3", "--by", "function"],
                       ["{script}"]),
    "cycles": (["--cycles", "1,3"], ["{cycles}", "{{cycles}}", "pool"]),
    "cycles_preload": (["--preload", "--cycles", "1,3", "--by", "function"], ["{cycles}", "{{cycles}}"]),
}
PROFILE_FORMATS = ("folded", "pprof", "speedscope", "html")
RUN_STDOUT_FORMATS = ("json", "pprof", "html")


@pytest.mark.parametrize("mode", list(RUN_MODES))
def test_run_matrix(mode: str, programs: dict[str, Path], tmp_path: Path) -> None:
    """Every format to a file (and three to the terminal's streams), under one gate each by
    turns; with --report-dir, so that show of the reports the run kept is the reference: the
    run's data has the same totals, and its verdict is show's."""
    names = {k: str(v) for k, v in programs.items()}
    options = [part.format(**names) for part in RUN_MODES[mode][0]]
    cmd = [part.format(**names) for part in RUN_MODES[mode][1]]
    # the table options show must be given to read the kept reports as the run did
    table_options = [x for i, opt in enumerate(options) if opt in ("--by", "--wrapper", "--suppressions")
                     for x in options[i:i + 2]]
    cycles = "--cycles" in options
    plan = [(fmt, "file") for fmt in FORMAT_NAMES] + [(fmt, "stdout") for fmt in RUN_STDOUT_FORMATS]
    for i, (fmt, dest) in enumerate(plan):
        gate = GATES[i % len(GATES)]
        kept = tmp_path / f"reports{i}"
        argv = ["run", *options, "--report-dir", str(kept), "--format", fmt, *gate, "--", *cmd]
        o = run_cli(argv, tmp_path / "out" if dest == "file" else None)
        binary_to_stderr = fmt == "pprof" and dest == "stdout" and ("--preload" in options or "--python" in options)
        if binary_to_stderr:
            assert o.code == 1 and "pass --output FILE" in o.err, o
            continue
        if cycles and fmt in PROFILE_FORMATS:
            assert o.code == 1 and "a residue per cycle is a table" in o.err, o
            continue
        assert o.code in (0, 2), o
        if cycles:
            if fmt == "json" and dest == "file":
                assert json.loads(o.data)["rows"]
            continue
        if dest == "stdout" and not o.data:
            continue            # the data went to stderr with the summary: the program owns stdout
        files = sorted(str(p) for p in kept.glob("*.json"))
        ref = run_cli(["show", *files, "--format", "json", *table_options, *gate], None)
        assert ref.code == o.code, (o, ref)
        want = parse_totals("json", ref.data, tmp_path)
        got = parse_totals(fmt, o.data, tmp_path)
        assert agree(got, want, len(json.loads(ref.data)["rows"])), (o.argv, got, want)


# ------------------------------------------------------------------ --suppressions and --wrapper
@pytest.mark.parametrize("extra", ["suppressions", "wrapper", "both"])
@pytest.mark.parametrize("by", BYS, ids=lambda b: b or "default")
@pytest.mark.parametrize("kind", KINDS)
def test_suppressions_and_wrapper_matrix(kind: str, by: str | None, extra: str, kinds: dict[str, list[str]],
                                         tmp_path: Path) -> None:
    """Where --suppressions or --wrapper applies, every format agrees with json (suppressed
    rows left out of the totals, as the gate and the profiles leave them out); where it does
    not, the one-line error names that option, not --by when --by alone is accepted."""
    supp = tmp_path / "leaks.supp"
    supp.write_text("leak:make_name\n", encoding="utf-8")
    options = {"suppressions": ["--suppressions", str(supp)], "wrapper": ["--wrapper", "make_*"],
               "both": ["--suppressions", str(supp), "--wrapper", "make_*"]}[extra]
    plain = run_cli(_show_argv(kinds[kind], "json", by, ()), None)
    ref = run_cli([*_show_argv(kinds[kind], "json", by, ()), *options], None)
    if plain.code == 1:
        assert ref.code == 1, ref
        return
    if ref.code == 1:
        named = [o for o in options if o.startswith("--")]
        assert any(o in ref.err for o in named) and "--by applies" not in ref.err, ref
        if kind == "pool_stacks" and extra == "wrapper":
            assert "with --by" in ref.err, ref      # --wrapper applies there once grouped
        return
    rows = len(json.loads(ref.data)["rows"])
    expected = parse_totals("json", ref.data, tmp_path)
    for fmt in FORMAT_NAMES:
        o = run_cli([*_show_argv(kinds[kind], fmt, by, ("--fail-on-leak",)), *options], tmp_path / "out")
        assert o.code in (0, 2), o
        assert agree(parse_totals(fmt, o.data, tmp_path), expected, rows), (o.argv, expected)


# ------------------------------------------------------------------ - (standard input)
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "pool"] + ["pool"])
def test_stdin_gives_the_totals_of_the_file_in_every_format(kind: str, kinds: dict[str, list[str]],
                                                            tmp_path: Path) -> None:
    """show - reads the report once from standard input: every format, whole stacks and
    sampling estimates included, states what show FILE states."""
    path = kinds[kind][0]
    by = {"pool_stacks": "function"}.get(kind)
    for fmt in FORMAT_NAMES:
        from_file = run_cli(_show_argv([path], fmt, by, ()), tmp_path / "a")
        saved = sys.stdin
        sys.stdin = io.TextIOWrapper(io.BytesIO(Path(path).read_bytes()), encoding="utf-8")
        try:
            from_stdin = run_cli(_show_argv(["-"], fmt, by, ()), tmp_path / "b")
        finally:
            sys.stdin = saved
        assert from_file.code == from_stdin.code == 0, (from_file, from_stdin)
        assert parse_totals(fmt, from_stdin.data, tmp_path) == parse_totals(fmt, from_file.data, tmp_path), fmt
        if fmt != "pprof":      # a sampled report's profile says it holds estimates
            assert (b"estimate" in from_stdin.data) == (b"estimate" in from_file.data), fmt


# ------------------------------------------------------------------ --output over an existing file, --top
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_existing_output_is_kept_without_force_and_replaced_with_it(fmt: str, kinds: dict[str, list[str]],
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    for kind in KINDS:
        out.write_bytes(b"keep")
        with _captured() as cap:
            code = main(_show_argv(kinds[kind], fmt, None, ("--fail-on-leak",)) + ["--output", str(out)])
        assert code == 1 and out.read_bytes() == b"keep", cap.err()
        assert cap.err().strip().count("\n") == 0 and "--force" in cap.err()
        with _captured() as cap:
            code = main(_show_argv(kinds[kind], fmt, None, ("--fail-on-leak",)) + ["--output", str(out), "--force"])
        assert code == 2 and out.read_bytes() != b"keep", cap.err()


@pytest.mark.parametrize("kind", KINDS)
def test_top_shapes_the_tables_and_not_the_profiles(kind: str, kinds: dict[str, list[str]], tmp_path: Path) -> None:
    """--top 1: one row in every table format; the profiles carry the whole report (docs/cli.md)."""
    files = kinds[kind]
    full = parse_totals("json", run_cli(_show_argv(files, "json", None, ()), None).data, tmp_path)
    top = run_cli([*_show_argv(files, "json", None, ()), "--top", "1"], None)
    (row,) = json.loads(top.data)["rows"]
    for fmt in FORMAT_NAMES:
        o = run_cli([*_show_argv(files, fmt, None, ()), "--top", "1"], tmp_path / "out")
        assert o.code == 0, o
        got = parse_totals(fmt, o.data, tmp_path)
        if fmt in PROFILE_FORMATS:
            assert agree(got, full, 100), (fmt, got, full)
        else:
            assert agree(got, Totals(row["blocks"], row["bytes"]), 1), (fmt, got, row)


# ------------------------------------------------------------------ several reports in one show
MERGES = {
    "exact_and_sampled": ("preload", "preload_sampled"),
    "whole_and_one_frame": ("preload", "preload_one_frame"),
    "python_and_native": ("python", "python_native"),
    "pool_and_pool_stacks": ("pool", "pool_stacks"),
}


@pytest.mark.parametrize("by", [None, "function"], ids=lambda b: b or "default")
@pytest.mark.parametrize("merge", list(MERGES))
def test_merged_reports_do_not_depend_on_their_order(merge: str, by: str | None, kinds: dict[str, list[str]],
                                                     tmp_path: Path) -> None:
    """Two reports of one kind in one show: each format accepts them in either order or refuses
    them in either order, with the same totals; a refusal names the reason in one line."""
    a, b = (kinds[k][0] for k in MERGES[merge])
    for fmt in FORMAT_NAMES:
        one = run_cli(_show_argv([a, b], fmt, by, ("--fail-on-leak",)), tmp_path / "out")
        other = run_cli(_show_argv([b, a], fmt, by, ("--fail-on-leak",)), tmp_path / "out")
        assert one.code == other.code, (one, other)
        if one.code == 1:
            if merge == "exact_and_sampled":    # the table merges them; a profile cannot
                assert fmt in PROFILE_FORMATS and "cannot join" in one.err, one
            continue
        assert parse_totals(fmt, one.data, tmp_path) == parse_totals(fmt, other.data, tmp_path), fmt


# ------------------------------------------------------------------ bench
def test_bench_in_every_format_and_destination(tmp_path: Path) -> None:
    """bench's table (timings: not compared, only read) in every format, to stdout and to a file:
    one row, folded line or profile sample per measurement."""
    argv = ["bench", "--blocks", "100", "--repeat", "1", "--no-peers", "--backing", "malloc"]
    for dest in DESTS:
        counts = {}
        for fmt in FORMAT_NAMES:
            o = run_cli([*argv, "--format", fmt], tmp_path / "out" if dest == "file" else None)
            assert o.code == 0 and o.data, o
            text = o.data.decode("utf-8") if fmt != "pprof" else ""
            if fmt == "json":
                counts[fmt] = len(json.loads(text)["rows"])
            elif fmt == "csv":
                counts[fmt] = len(text.splitlines()) - 1
            elif fmt == "folded":
                assert all(re.fullmatch(r".* \d+(\.\d+)?", line) for line in text.splitlines()), text
                counts[fmt] = len(text.splitlines())
            elif fmt == "pprof":
                counts[fmt] = len(decode_pprof(o.data, tmp_path).sample)
            elif fmt == "speedscope":
                doc = json.loads(text)
                jsonschema.validate(doc, SPEEDSCOPE_SCHEMA)
                counts[fmt] = len(doc["profiles"][0]["samples"])
            elif fmt == "html":
                assert text.startswith("<!DOCTYPE html>") and 'id="profile-data"' in text
            elif fmt == "table":
                counts[fmt] = len(_simple_table(text))
            else:
                counts[fmt] = len(_pipe_table(text))
        assert len(set(counts.values())) == 1 and counts["json"] >= 3, (dest, counts)


# ------------------------------------------------------------------ --sort and --min-bytes
@pytest.mark.parametrize("kind", KINDS)
def test_sort_and_min_bytes_in_every_format(kind: str, kinds: dict[str, list[str]], tmp_path: Path) -> None:
    """--sort orders the json rows as asked; --min-bytes N keeps the rows of N bytes or more in
    every table format; neither changes a profile (docs/cli.md: they shape the table only)."""
    files = kinds[kind]
    by = "function" if kind == "pool_stacks" else None
    full = parse_totals("json", run_cli(_show_argv(files, "json", by, ()), None).data, tmp_path)
    for sort in ("bytes", "blocks", "peak", "tag"):
        for min_bytes in ("0", "100"):
            extra = ["--sort", sort, "--min-bytes", min_bytes]
            ref = run_cli([*_show_argv(files, "json", by, ()), *extra], None)
            assert ref.code == 0, ref
            rows = json.loads(ref.data)["rows"]
            assert all(r["bytes"] >= int(min_bytes) for r in rows)
            if sort in ("bytes", "blocks"):
                values = [r[sort] for r in rows]
                assert values == sorted(values, reverse=True), (sort, values)
            kept = parse_totals("json", ref.data, tmp_path)
            for fmt in FORMAT_NAMES:
                o = run_cli([*_show_argv(files, fmt, by, ()), *extra], tmp_path / "out")
                assert o.code == 0, o
                got = parse_totals(fmt, o.data, tmp_path)
                assert agree(got, full if fmt in PROFILE_FORMATS else kept, len(rows)), (o.argv, got)


@pytest.mark.parametrize("mode", ["cycles", "cycles_preload"])
def test_cycles_gate_verdict_is_the_same_in_every_table_format(mode: str, programs: dict[str, Path],
                                                                tmp_path: Path) -> None:
    names = {k: str(v) for k, v in programs.items()}
    options = [part.format(**names) for part in RUN_MODES[mode][0]]
    cmd = [part.format(**names) for part in RUN_MODES[mode][1]]
    for gate in (("--fail-on-leak",), ("--max-leak-bytes", "1000000000")):
        codes = {}
        for fmt in FORMAT_NAMES:
            if fmt in PROFILE_FORMATS:
                continue
            o = run_cli(["run", *options, "--format", fmt, *gate, "--", *cmd], tmp_path / "out")
            codes[fmt] = o.code
        assert len(set(codes.values())) == 1 and set(codes.values()) <= {0, 2}, (gate, codes)


# ------------------------------------------------------------------ demo
@pytest.mark.parametrize("fmt", ["table", "github", "markdown"])
def test_demo_in_every_table_format_with_and_without_its_flame_graph(fmt: str, tmp_path: Path) -> None:
    for html_page in (None, tmp_path / "page" / "leaks.html"):
        argv = ["demo", "--no-bench", "--requests", "10", "--format", fmt]
        if html_page is not None:
            argv += ["--html", str(html_page)]
        o = run_cli(argv, None)
        assert o.code == 0, o
        text = o.data.decode("utf-8")
        tables = _pipe_table(text) if fmt != "table" else _simple_table(text)
        assert tables and "cache-entry" in text
        if html_page is not None:
            assert parse_totals("html", html_page.read_bytes(), tmp_path).bytes > 0


# ------------------------------------------------------------------ run: refused before the program runs
@pytest.mark.parametrize(("options", "message"), [
    (["--preload", "--by", "line"], "--by line: interposer reports group by"),
    (["--preload", "--suppressions", "{missing}"], "suppressions file not found"),
    (["--preload", "--suppressions", "{bad}"], "expected 'leak:PATTERN'"),
    (["--suppressions", "{good}"], "--suppressions applies to interposer reports (run --preload)"),
    (["--python", "--suppressions", "{good}"], "not to --python"),
    (["--python", "--wrapper", "make_*"], "not to --python"),
    (["--python", "--by", "module"], "Python reports group by"),
    (["--preload", "--format", "pprof"], "pass --output FILE"),
    (["--python", "--format", "pprof"], "pass --output FILE"),
], ids=lambda v: "_".join(v).replace("{", "").replace("}", "") if isinstance(v, list) else "")
def test_run_refuses_options_that_cannot_apply_before_running(options: list[str], message: str,
                                                              tmp_path: Path) -> None:
    """The error comes before the program runs (it may run for hours), in one line."""
    marker = tmp_path / "ran"
    (tmp_path / "good.supp").write_text("leak:main\n", encoding="utf-8")
    (tmp_path / "bad.supp").write_text("fun:main\n", encoding="utf-8")
    names = {"missing": str(tmp_path / "missing.supp"), "good": str(tmp_path / "good.supp"),
             "bad": str(tmp_path / "bad.supp")}
    script = tmp_path / "touch.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    cmd = [str(script)] if "--python" in options else ["sh", "-c", f"touch '{marker}'"]
    o = run_cli(["run", *[x.format(**names) for x in options], "--", *cmd], None)
    assert o.code == 1 and message in o.err, o
    assert not marker.exists(), "the program ran before the error"
