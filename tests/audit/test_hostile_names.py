"""Names from untrusted programs (pool names, tags, functions, files, module paths) through
every output of the CLI: each format keeps one row per row, one line per stack, and
names that differ stay apart (docs/cli.md, "Names in text output")."""

from __future__ import annotations

import csv
import html.parser
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest

from _audit_testlib import c_compiler, report_doc, tag
from _export_testlib import FIXTURES, decode_pprof, pprof_tool
from audit.cli import main
from audit.formatters import csv_name
from audit.printable import as_unicode

pytest_plugins = ["pytester"]

WriteReport = Callable[..., str]

# Names a program may give: every kind of character a reader or a terminal misreads.
HOSTILE = [
    "two\nlines",
    "carriage\rreturn",
    "red\x1b[31mtext",
    "esc\x1bx",
    "lit\\x1bx",            # the four characters \x1b typed literally: not the escape above
    "back\\slash",
    "pipe|cell",
    "semi;colon and space",
    "bidi\u202egnp.exe",
    "isolate\u2066x\u2069",
    "c1\x85next\x9b31m",
    "del\x7fx",
    "tab\tx",
    "nul\x00x",
    "line\u2028sep\u2029x",
    "</script><img src=x onerror=alert(1)>",
    "<!-- comment",
    "\u6f22\u5b57 \U0001f600",
    # what a spreadsheet program runs as a formula when a CSV cell starts with it
    "=HYPERLINK(\"http://x\",\"y\")",
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\tlead-tab",
    "\rlead-cr",
    "'quote",
    "''two",
    # invisible: each displayed as the name without it (zero-width space, word joiner,
    # byte order mark, soft hyphen, a tag character), or as a plain space (no-break space)
    "zero\u200bwidth",
    "joiner\u2060x",
    "\ufeffbom",
    "soft\xadhyphen",
    "tag\U000e0041x",
    "nbsp\xa0x",
    "private\ue000x",
]

# What must never reach a terminal raw: C0 (but the line ends the test splits on), DEL,
# C1, the bidirectional formatting characters and the line/paragraph separators.
_RAW = re.compile("[^\n -~]")


class _Raw:
    """What must never reach a terminal raw: a character str.isprintable() calls
    non-printable (C0 but the line end the tests split on, DEL, C1, format characters
    such as the bidirectional ones and U+200B, separators but the space, ...)."""

    @staticmethod
    def search(text: str) -> object:
        for m in _RAW.finditer(text):
            if not m.group().isprintable():
                return m
        return None


RAW = _Raw()
# flamegraph.pl's reading of a line (speedscope's splits at the last space too): the stack
# is what precedes the last run of spaces before the count; a stack ending in a space and
# digits would be read as a differential line (two counts).
FOLDED_LINE = re.compile(r"(?P<stack>.*) (?P<count>[0-9]+)")
DIFFERENTIAL = re.compile(r"(.*)\s+?([0-9]+(?:\.[0-9]*)?)")
FOLDED_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[\\nrt])")


def unfolded(frame: str) -> str:
    """A name as a folded frame writes it (docs/cli.md, "Names in text output"), read back."""
    assert frame == frame.strip(), frame
    assert ";" not in frame and FOLDED_ESCAPE.sub("", frame).count("\\") == 0, frame
    if frame == "_":
        return ""
    return FOLDED_ESCAPE.sub(lambda m: {"\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t"}.get(m.group())
                             or chr(int(m.group()[2:], 16)), frame)


def hostile_report(pool: str = "pool\n;x y\x1b[0m", scale: int = 1) -> dict[str, object]:
    tags = [tag(name, 1, scale * (10 + i)) for i, name in enumerate(HOSTILE)]
    return report_doc(pool=pool, tags=tags)


def lines_of(text: str) -> list[str]:
    """The lines of text, which ends in a newline; splitlines() (which also splits on
    U+2028, U+0085, ...) must agree with a split on newlines."""
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert text.splitlines() == lines
    return lines


def show(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    assert main(list(argv)) == code
    out, err = capsys.readouterr()
    assert RAW.search(err) is None and err.count("\n") <= 1, err
    return out


# ------------------------------------------------------------------ folded
def check_folded(out: str, depth: int, counts: list[int]) -> list[list[str]]:
    """Each line one stack of depth frames ending in its count; returns the stacks."""
    stacks = []
    found = []
    for line in lines_of(out):
        assert RAW.search(line) is None, line
        m = FOLDED_LINE.fullmatch(line)
        assert m is not None, f"not a folded line: {line!r}"
        assert DIFFERENTIAL.fullmatch(m["stack"]) is None, line
        frames = m["stack"].split(";")
        assert len(frames) == depth, line
        stacks.append(frames)
        found.append(int(m["count"]))
    assert sorted(found) == sorted(counts)
    assert len({tuple(s) for s in stacks}) == len(stacks), "two stacks folded into one line"
    return stacks


def test_folded_pool_report_one_line_per_tag(write_report: WriteReport,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", hostile_report())
    out = show(capsys, "show", path, "--format", "folded")
    stacks = check_folded(out, 1 + 1, [10 + i for i in range(len(HOSTILE))])
    assert {s[0] for s in stacks} == {"pool\\n\\x3bx y\\x1b[0m"}
    by_count = {int(line.rsplit(" ", 1)[1]): line.split(";")[1].rsplit(" ", 1)[0]
                for line in lines_of(out)}
    assert by_count[12] == "red\\x1b[31mtext"
    assert by_count[13] == "esc\\x1bx" and by_count[14] == "lit\\\\x1bx"


def test_folded_child_pools_keep_their_depth(write_report: WriteReport,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    doc = hostile_report("outer\r")
    child = hostile_report("inner\n\u2028")
    del child["format"], child["version"]
    doc["children"] = [child]
    path = write_report("r.json", doc)
    out = show(capsys, "show", path, "--format", "folded")
    lines = lines_of(out)
    assert len(lines) == 2 * len(HOSTILE)
    assert sum(line.startswith("outer\\r;inner\\n\\u2028;") for line in lines) == len(HOSTILE)
    for line in lines:
        assert FOLDED_LINE.fullmatch(line) and RAW.search(line) is None, line


def test_folded_diff_one_line_per_tag(write_report: WriteReport,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    old = write_report("old.json", hostile_report(scale=1))
    new = write_report("new.json", hostile_report(scale=3))
    out = show(capsys, "diff", old, new, "--format", "folded")
    check_folded(out, 1, [2 * (10 + i) for i in range(len(HOSTILE))])


# Names that folded wrote alike before it was one-to-one (";" as ":", a space as "_", an
# empty frame as "_"), and names whose spaces a flame graph tool could take for the one
# before the count (at an end, before digits: flamegraph.pl's differential lines).
ALIKE = ["a b", "a_b", "a;b", "a:b", "", "_", " ", "\\x3b", "\\x20", "f 12", "f 1.5", " lead",
         "trail ", "x\u3000", "x\xa0", "\u3000y", "operator new(unsigned long)"]


def test_folded_is_one_to_one(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    tags = [tag(name, 1, 10 + i) for i, name in enumerate(ALIKE)]
    doc = report_doc(pool="a b", tags=tags)
    doc["children"] = [report_doc(pool=name, tags=[tag("t", 1, 100 + i)]) for i, name in enumerate(ALIKE)]
    for child in doc["children"]:
        del child["format"], child["version"]
    path = write_report("r.json", doc)
    out = show(capsys, "show", path, "--format", "folded")
    read: dict[tuple[str, ...], int] = {}
    for line in lines_of(out):
        m = FOLDED_LINE.fullmatch(line)
        assert m is not None and DIFFERENTIAL.fullmatch(m["stack"]) is None, line
        read[tuple(unfolded(f) for f in m["stack"].split(";"))] = int(m["count"])
    want: dict[tuple[str, ...], int] = {("a b", name): 10 + i for i, name in enumerate(ALIKE)}
    want.update({("a b", name, "t"): 100 + i for i, name in enumerate(ALIKE)})
    assert read == want
    assert "a b;operator new(unsigned long) 26\n" in out      # spaces inside a name stay


# -------------------------------------------------------- table, markdown
@pytest.mark.parametrize("fmt", ["table", "github", "markdown"])
def test_text_tables_one_line_per_row(fmt: str, write_report: WriteReport,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", hostile_report())
    out = show(capsys, "show", path, "--format", fmt)
    assert RAW.search(out) is None, out
    lines = lines_of(out)
    rows = lines[-len(HOSTILE):]
    assert len(lines) == 2 + 2 + len(HOSTILE)        # title, blank, header, rule, rows
    if fmt != "table":
        cells = {len(re.split(r"(?<!\\)\|", line)) for line in lines[2:]}
        assert cells == {8}, cells                  # | six cells |
    keys = [re.split(r"  |(?<!\\)\|", row.strip("| "))[0].strip() for row in rows]
    assert len(set(keys)) == len(HOSTILE)
    # Markdown shows a backslash before a backslash as one: "\\\x1b" renders as the table's "\\x1b"
    assert "esc\\x1bx" in keys and ("lit\\\\x1bx" if fmt == "table" else "lit\\\\\\x1bx") in keys


def test_diff_title_names_files_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old\n\x1b[2J.json"
    new = tmp_path / "new\u202e.json"
    old.write_text(json.dumps(hostile_report()))
    new.write_text(json.dumps(hostile_report(scale=2)))
    for fmt, shown in (("table", "old\\n\\x1b[2J"), ("markdown", "old\\n\\x1b\\[2J")):
        out = show(capsys, "diff", str(old), str(new), "--format", fmt)
        assert RAW.search(out) is None, out
        assert lines_of(out)[0].count(shown) == 1


def test_gate_summary_is_one_line(write_report: WriteReport,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", report_doc(tags=[tag("a\nb\x1b[31m", 1, 8), tag("x" * 100000, 1, 4)]))
    assert main(["show", path, "--fail-on-leak", "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and RAW.search(err) is None, err
    assert "a\\nb\\x1b[31m" in err and len(err) < 1000


# --------------------------------------------------------------------- csv
def test_csv_reads_back_the_same_cells(write_report: WriteReport,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("r.json", hostile_report())
    out = show(capsys, "show", path, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert rows[0][0] == "key" and len(rows) == 1 + len(HOSTILE)
    assert {csv_name(r[0]) for r in rows[1:]} == set(HOSTILE)
    assert {len(r) for r in rows} == {len(rows[0])}
    by_name = {csv_name(r[0]): r for r in rows[1:]}
    assert by_name["carriage\rreturn"][2] == "11"


# What a spreadsheet program (Excel, LibreOffice Calc, Google Sheets) runs as a formula.
FORMULA = re.compile("[=+\\-@\t\r]")


def check_csv_cells(text: str, doc: dict[str, Any]) -> None:
    """Every cell of a csv output against the json output's row: no text cell starts as a
    formula (a name that would is written with a ' in front, as is one starting with '),
    numbers are numbers, and csv_name gives back each name."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = rows[0]
    assert len(rows) == 1 + len(doc["rows"])
    for cells, row in zip(rows[1:], doc["rows"]):
        for key, cell in zip(header, cells, strict=True):
            value = row[key]
            assert not FORMULA.match(cell[:1]) or isinstance(value, (int, float)), (key, cell)
            if isinstance(value, str):
                assert csv_name(cell) == value, (key, cell, value)
                assert cell.startswith("'") == bool(re.match("[=+\\-@\t\r']", value)), (key, cell)
            elif value is None:
                assert cell == "", (key, cell)
            elif isinstance(value, bool):
                assert cell == str(value), (key, cell)
            else:
                assert not cell.startswith("'") and float(cell) == value, (key, cell, value)


def test_csv_cells_a_spreadsheet_would_run_are_guarded(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # a tag, a pool name or a function named "=..." was a formula in the CSV: opened in a
    # spreadsheet program it ran. Text cells that start as one are written with a ' in
    # front (docs/cli.md); numbers are not, and a diff's negative change stays a number.
    names = ["=1+2", "+cmd", "-rm", "@at", "\tt", "\rr", "'q", "plain"]
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(report_doc(pool="=pool", tags=[tag(n, 2, 100) for n in names])))
    new.write_text(json.dumps(report_doc(pool="+pool", tags=[tag(n, 1, 40) for n in names])))
    texts = []
    for argv in (["show", str(old)], ["show", str(old), str(new)], ["diff", str(old), str(new)]):
        assert main([*argv, "--format", "json"]) in (0, 2)
        doc = json.loads(capsys.readouterr().out)
        assert main([*argv, "--format", "csv"]) in (0, 2)
        text = capsys.readouterr().out
        texts.append(text)
        check_csv_cells(text, doc)
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert {csv_name(r["key"]) for r in rows} == set(names)
    pools = [r["pool"] for r in csv.DictReader(io.StringIO(texts[1], newline=""))]
    assert set(pools) == {"'=pool", "'+pool"} and len(pools) == 2 * len(names)
    lines = text.splitlines()
    assert lines[0] == "key,blocks,blocks_diff,bytes,bytes_diff,status"
    assert "'=1+2,1,-1,40,-60," in lines and "plain,1,-1,40,-60," in lines


# ------------------------------------------------------- every format at once
FORMATS = ["table", "github", "markdown", "csv", "json", "folded", "speedscope", "pprof", "html"]
SPEEDSCOPE_SCHEMA = json.loads((FIXTURES / "speedscope-file-format-schema.json").read_text(encoding="utf-8"))


def every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """Runs argv (a show or diff) in every format and checks what each promises; returns
    the json document."""
    outputs: dict[str, bytes] = {}
    for fmt in FORMATS:
        out = tmp_path / f"out.{fmt}"
        assert main([*argv, "--format", fmt, "--output", str(out), "--force"]) in (0, 2)
        err = capsys.readouterr().err
        assert RAW.search(err) is None and err.count("\n") == 1, err
        outputs[fmt] = out.read_bytes()
    doc: dict[str, Any] = json.loads(outputs["json"])
    keys = [str(r["key"]) for r in doc["rows"]]
    for fmt in ("table", "github", "markdown"):
        text = outputs[fmt].decode("utf-8")
        assert RAW.search(text) is None, fmt
        assert len(lines_of(text)) == 4 + len(keys), fmt
    csv.field_size_limit(1 << 30)             # Python's reader takes cells of 128 KiB by default
    rows = list(csv.reader(io.StringIO(outputs["csv"].decode("utf-8"), newline="")))
    assert [csv_name(r[rows[0].index("key")]) for r in rows[1:]] == keys
    check_csv_cells(outputs["csv"].decode("utf-8"), doc)
    # folded: the stacks of speedscope's first profile (outstanding bytes), line by line
    speed = json.loads(outputs["speedscope"])
    jsonschema.validate(speed, SPEEDSCOPE_SCHEMA)
    first = speed["profiles"][0]
    folded = outputs["folded"].decode("utf-8")
    lines = lines_of(folded) if folded else []
    assert len(lines) == len(first["samples"])
    names = [f["name"] for f in speed["shared"]["frames"]]
    for line, stack, weight in zip(lines, first["samples"], first["weights"]):
        assert RAW.search(line) is None, line
        m = FOLDED_LINE.fullmatch(line)
        assert m is not None and int(m["count"]) == weight, line
        assert DIFFERENTIAL.fullmatch(m["stack"]) is None, line
        # each frame reads back as the name speedscope gives it (the mapping is one-to-one)
        assert [as_unicode(unfolded(f)) for f in m["stack"].split(";")] == [names[i] for i in stack], line
    prof = decode_pprof(outputs["pprof"], tmp_path)      # strict proto3: strings must be UTF-8
    space = [prof.string_table[t.type] for t in prof.sample_type].index("inuse_space")
    assert sum(max(s.value[space], 0) for s in prof.sample) == sum(first["weights"])
    page = outputs["html"].decode("utf-8")
    data = page.split('<script type="application/json" id="profile-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and "\u2028" not in data and "\u2029" not in data
    assert json.loads(data)["frames"] is not None
    return doc


# ------------------------------------------------------------- interposer
HOSTILE_LIB_C = r"""
#include <stdlib.h>
#define WEIRD(n, name) \
    __attribute__((visibility("hidden"))) void *weird##n(size_t k) __asm__("\"" name "\""); \
    void *weird##n(size_t k) { return malloc(k); }
WEIRD(1, "evil name;x y<>")
WEIRD(2, "bidi\xe2\x80\xae" "gnp")
WEIRD(3, "inv\xff\xfe" "utf")
WEIRD(4, "inv\xff\xfd" "utf")
WEIRD(5, "esc\x1b[31m")
WEIRD(6, "c1\xc2\x85" "x\xe2\x80\xa8" "y")
void *leak_all(void);
void *leak_all(void)
{
    void **p = malloc(7 * sizeof *p);
    p[0] = weird1(11); p[1] = weird2(12); p[2] = weird3(13); p[3] = weird4(14);
    p[4] = weird5(15); p[5] = weird6(16); p[6] = NULL;
    return p;
}
"""

HOSTILE_MAIN_CXX = r"""
#include <dlfcn.h>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
template <typename T, int N> struct Box {
    static void *make(std::size_t n) { return std::malloc(n * N); }
};
void *keep[4];
int main(int argc, char **argv)
{
    keep[0] = Box<std::pair<int, char>, 3>::make(7);
    keep[1] = Box<std::map<std::string, int>, 2>::make(9);
    if (argc < 2)
        return 1;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (h == nullptr) { std::fprintf(stderr, "%s\n", dlerror()); return 1; }
    keep[2] = reinterpret_cast<void *(*)()>(dlsym(h, "leak_all"))();
    return 0;
}
"""


@pytest.fixture(scope="module")
def hostile_program(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A C++ program (templates) dlopening a library whose file name holds a newline, a
    space, ';' and a quote, built from a source file whose name holds ESC, with functions
    named with spaces, ESC, bidi overrides, C1 controls and bytes that are not UTF-8."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("a C++ compiler is needed (make setup-sys installs g++)")
    d = tmp_path_factory.mktemp("hostile")
    src = d / "src\x1b[1m;x y.c"
    src.write_text(HOSTILE_LIB_C)
    lib = d / 'lib\nevil;x y"q.so'
    subprocess.run([c_compiler(), "-g", "-O0", "-fno-omit-frame-pointer", "-shared", "-fPIC", str(src),
                    "-o", str(lib)], check=True)
    main_src = d / "main.cc"
    main_src.write_text(HOSTILE_MAIN_CXX)
    prog = d / "prog\n\x1b[2Jx"
    subprocess.run([cxx, "-g", "-O0", "-fno-omit-frame-pointer", str(main_src), "-o", str(prog), "-ldl"],
                   check=True)
    return str(prog), str(lib)


@pytest.fixture(scope="module")
def hostile_run(hostile_program: tuple[str, str],
                tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """run --preload of the hostile program: its report, and what run wrote on stderr."""
    import contextlib

    prog, lib = hostile_program
    out = tmp_path_factory.mktemp("hostile-report")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["run", "--preload", "--report-dir", str(out / "in\ndir"), "--output", str(out / "t.csv"),
                     "--format", "csv", "--", prog, lib]) == 0
    (report,) = (out / "in\ndir").glob("ringpool-preload.*.json")
    return str(report), err.getvalue()


def test_run_names_the_program_on_one_line(hostile_run: tuple[str, str]) -> None:
    _, err = hostile_run
    assert RAW.search(err) is None and err.count("\n") == 1, err
    assert "/prog\\n\\x1b[2Jx exited with status 0; " in err and "in\\ndir" in err


@pytest.mark.parametrize("by", ["stack", "function", "module"])
def test_interposer_report_of_hostile_functions_and_paths(by: str, hostile_run: tuple[str, str],
                                                          tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    doc = every_format(tmp_path, capsys, "show", hostile_run[0], "--by", by)
    keys = [str(r["key"]) for r in doc["rows"] if not r["suppressed"]]
    text = "\n".join(keys)
    if by == "module":
        assert any(k.endswith('/lib\nevil;x y"q.so') for k in keys), keys
        return
    for name in ("evil name;x y<>", "bidi\u202egnp", "esc\x1b[31m", "c1\x85x\u2028y",
                 "Box<std::pair<int, char>, 3>::make"):
        assert name in text, name
    assert "inv\ufffd\ufffdutf" in text      # bytes that are not UTF-8: U+FFFD, as in the reports
    if by == "stack":
        assert "src\x1b[1m;x y.c" in text
        assert sum(int(r["bytes"]) for r in doc["rows"] if not r["suppressed"]) == 21 + 18 + 56 + 81
        # Go's reader takes it (and prints the names raw: its listing is not parsed here)
        top = subprocess.run([pprof_tool(), "-top", "-symbolize=none", str(tmp_path / "out.pprof")],
                             capture_output=True, check=False, timeout=120,
                             env={**os.environ, "HOME": str(tmp_path), "PPROF_TMPDIR": str(tmp_path)})
        assert top.returncode == 0 and b"leak_all" in top.stdout, top.stderr


# A debug-info file name and a function name holding newlines, each made to look like more
# of addr2line's output ("name", then "file:line"): the symbolizer read two lines an address,
# so the module lost file:line for all its frames.
NEWLINE_NAMES_C = r"""
#include <stdlib.h>
#include "ringpool.h"
void *keep[8];
__attribute__((noinline)) void *before(rp_pool *p, size_t n)
{
    return p != NULL ? rp_alloc(p, n, "before") : malloc(n);
}
#line 1 "two\nlines.c:9\n\x1b[2Jthree"
__attribute__((noinline)) void *hostile(rp_pool *p, size_t n)
{
    return p != NULL ? rp_alloc(p, n, "hostile") : malloc(n);
}
#line 1 "after.c"
__attribute__((noinline)) void *FNMARK(rp_pool *p, size_t n)
{
    return p != NULL ? rp_alloc(p, n, "renamed") : malloc(n);
}
#line 1 "main.c"
int main(int argc, char **argv)
{
    rp_pool_options o = {.flags = RP_POOL_STACKS};
    rp_pool *p = argc > 1 ? rp_pool_create_ex("p", &o) : NULL;
    keep[0] = before(p, 10);
    keep[1] = hostile(p, 20);
    keep[2] = FNMARK(p, 30);
    return p != NULL && rp_pool_write_report(p, argv[1]) != 0;
}
"""
FNMARK = b"fnmark_nl0"
FNMARK_RENAMED = b"f\nb.c:7\nx?"       # as long as the marker: written over it in the binary


@pytest.fixture(scope="module")
def newline_names_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _audit_testlib import ROOT, static_library

    d = tmp_path_factory.mktemp("newline-names")
    src = d / "prog.c"
    src.write_text(NEWLINE_NAMES_C.replace("FNMARK", FNMARK.decode()))
    prog = d / "prog"
    subprocess.run([c_compiler(), "-std=c11", "-g", "-O0", "-fno-omit-frame-pointer", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", src.name, str(static_library()), "-lpthread",
                    "-o", str(prog)], check=True, cwd=d)         # DWARF's directory: d
    # the function's name in the symbol table and in DWARF, with newlines
    data = prog.read_bytes()
    assert data.count(FNMARK) >= 2 and len(FNMARK_RENAMED) == len(FNMARK)
    prog.write_bytes(data.replace(FNMARK, FNMARK_RENAMED))
    return prog


def newline_names_expected(d: Path) -> list[str]:
    where = {"before": f"{d}/prog.c:7", "hostile": f"{d}/two\nlines.c:9\n\x1b[2Jthree:3",
             FNMARK_RENAMED.decode(): f"{d}/after.c:3"}
    calls = {"before": 5, "hostile": 6, FNMARK_RENAMED.decode(): 7}
    return [f"{fn} ({where[fn]}) < main ({d}/main.c:{calls[fn]})" for fn in where]


@pytest.mark.parametrize("by", ["stack", "file"])
def test_interposer_names_files_and_functions_holding_newlines(by: str, newline_names_program: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    d = newline_names_program.parent
    assert main(["run", "--preload", "--report-dir", str(tmp_path / "r"), "--output", str(tmp_path / "t"),
                 "--", str(newline_names_program)]) == 0
    capsys.readouterr()
    (report,) = (tmp_path / "r").glob("ringpool-preload.*.json")
    doc = every_format(tmp_path, capsys, "show", str(report), "--by", by)
    keys = [str(r["key"]) for r in doc["rows"]]
    if by == "file":
        assert sorted(keys) == sorted([f"{d}/prog.c", f"{d}/two\nlines.c:9\n\x1b[2Jthree", f"{d}/after.c"])
    else:
        for want in newline_names_expected(d):
            assert sum(k.startswith(want + " < ") for k in keys) == 1, "\n".join([want, *keys])
    table = (tmp_path / "out.table").read_text(encoding="utf-8")
    assert "two\\nlines.c:9\\n\\x1b[2Jthree" in table


def test_pool_stacks_through_files_and_functions_holding_newlines(newline_names_program: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    d = newline_names_program.parent
    subprocess.run([str(newline_names_program), str(tmp_path / "pool.json")], check=True)
    doc = every_format(tmp_path, capsys, "show", str(tmp_path / "pool.json"), "--by", "stack")
    keys = [str(r["key"]) for r in doc["rows"]]
    for want in newline_names_expected(d):
        assert sum(k.startswith(want) for k in keys) == 1, (want, keys)


# A function whose name starts and ends with spaces (renamed in the binary, symbol table
# and DWARF): addr2line's answer was stripped, so it read as the function "spaced" beside it.
SPACED_NAMES_C = r"""
#include <stdlib.h>
#include "ringpool.h"
void *keep[4];
__attribute__((noinline)) void *spaced(rp_pool *p, size_t n) { return rp_alloc(p, n, "plain"); }
#line 1 "other.c"
__attribute__((noinline)) void *SPMARK(rp_pool *p, size_t n)
{
    return rp_alloc(p, n, "renamed");
}
#line 1 "main.c"
int main(int argc, char **argv)
{
    rp_pool_options o = {.flags = RP_POOL_STACKS};
    rp_pool *p = rp_pool_create_ex("p", &o);
    keep[0] = spaced(p, 10);
    keep[1] = SPMARK(p, 30);
    return argc < 2 || rp_pool_write_report(p, argv[1]) != 0;
}
"""
SPMARK = b"spmark_01"
SPMARK_RENAMED = b" spaced  "        # as long as the marker: written over it in the binary


def test_pool_stacks_keep_the_spaces_around_a_function_name(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from _audit_testlib import ROOT, static_library

    (tmp_path / "prog.c").write_text(SPACED_NAMES_C.replace("SPMARK", SPMARK.decode()))
    prog = tmp_path / "prog"
    subprocess.run([c_compiler(), "-std=c11", "-g", "-O0", "-fno-omit-frame-pointer", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", "prog.c", str(static_library()), "-lpthread",
                    "-o", str(prog)], check=True, cwd=tmp_path)
    data = prog.read_bytes()
    assert data.count(SPMARK) >= 2 and len(SPMARK_RENAMED) == len(SPMARK)
    prog.write_bytes(data.replace(SPMARK, SPMARK_RENAMED))
    subprocess.run([str(prog), str(tmp_path / "pool.json")], check=True)
    doc = every_format(tmp_path, capsys, "show", str(tmp_path / "pool.json"), "--by", "stack")
    keys = [str(r["key"]) for r in doc["rows"]]
    d = tmp_path
    for want in (f"spaced ({d}/prog.c:5) < main ({d}/main.c:5)",
                 f" spaced   ({d}/other.c:3) < main ({d}/main.c:6)"):
        assert sum(k.startswith(want + " < ") for k in keys) == 1, "\n".join([want, *keys])


def test_a_location_keeps_its_spaces() -> None:
    from audit.elfsym import parse_location

    assert parse_location(" a.c :12") == (" a.c ", 12)
    assert parse_location(" a.c:7 (discriminator 3)") == (" a.c", 7)
    assert parse_location("??:0") == (None, None)


# --------------------------------------------------------------- long names
def test_a_1mb_tag_does_not_pad_every_row(write_report: WriteReport, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # the text tables padded every row to the widest cell: 2,000 tags and one tag of
    # 1 MB made a 2 GB table
    long = "x\n" * 500_000
    tags = [tag(f"t{i}", 1, 10) for i in range(2000)] + [tag(long, 1, 5)]
    path = write_report("long.json", report_doc(tags=tags))
    doc = every_format(tmp_path, capsys, "show", path)
    assert len(doc["rows"]) == 2001
    for fmt in ("table", "markdown"):
        size = (tmp_path / f"out.{fmt}").stat().st_size
        assert size < 2_000_000 + 2001 * 80, (fmt, size)


# ------------------------------------------------------ pool reports from C
HOSTILE_POOLS_C = r"""
#include <stdlib.h>
#include <string.h>
#include "ringpool.h"
/* allocates through functions named with a space, ';', ESC, U+202E and bytes that are not UTF-8 */
#define WEIRD(n, name) \
    __attribute__((noinline)) static void *weird##n(rp_pool *p, size_t k, const char *tag) \
        __asm__("\"" name "\""); \
    static void *weird##n(rp_pool *p, size_t k, const char *tag) \
    { void *b = rp_alloc(p, k, tag); memset(b, 0, k); __asm__ volatile("" ::: "memory"); return b; }
WEIRD(1, "evil name;x y<>")
WEIRD(2, "bidi\xe2\x80\xae" "gnp")
WEIRD(3, "inv\xff\xfe" "utf")
WEIRD(4, "esc\x1b[31m")
WEIRD(5, "=cmd|' /C calc'!A0")
int main(int argc, char **argv)
{
    if (argc < 2)
        return 1;
    rp_pool_options o = {.flags = RP_POOL_STACKS};
    rp_pool *p = rp_pool_create_ex("po\xffol\n;x y\x1b[0m", &o);
    rp_pool *c = rp_pool_create_child(p, "ch/ild\xe2\x80\xae");
    weird1(p, 10, "a\xff" "b");        /* two tags that differ only in */
    weird2(p, 20, "a\xfe" "b");        /* bytes that are not UTF-8 */
    weird3(p, 30, "a\xef\xbf\xbd" "b"); /* and one holding U+FFFD itself */
    weird4(p, 40, "esc\x1b[31m\r\n\x7f\xc2\x85");
    weird1(c, 50, "</script><!--\xe2\x80\xa8");
    char *long_tag = malloc(1000001);
    memset(long_tag, 'L', 1000000);
    long_tag[1000000] = '\0';
    weird2(c, 60, long_tag);
    free(long_tag);
    rp_pool *f = rp_pool_create_child(p, "=1+2");
    weird5(f, 70, "@SUM(A1)");
    return rp_pool_write_report_ex(p, argv[1], RP_REPORT_CHILDREN) == 0 ? 0 : 1;
}
"""


@pytest.fixture(scope="module")
def hostile_pool_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    from _audit_testlib import ROOT, static_library

    d = tmp_path_factory.mktemp("hostile-pools")
    (d / "pools.c").write_text(HOSTILE_POOLS_C)
    subprocess.run([c_compiler(), "-std=c11", "-O0", "-fno-omit-frame-pointer", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", str(d / "pools.c"), str(static_library()), "-lpthread", "-o", str(d / "pools")],
                   check=True)
    report = d / "report.json"
    subprocess.run([str(d / "pools"), str(report)], check=True)
    return str(report)


def test_pool_report_from_c_with_hostile_names(hostile_pool_report: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # tags that differ only in bytes that are not UTF-8 are written alike (U+FFFD): the
    # reader refused the report ("listed twice"); it now reads them as one tag
    doc = every_format(tmp_path, capsys, "show", hostile_pool_report)
    rows = {(r["pool"], r["key"]): r for r in doc["rows"]}
    pool = "po\ufffdol\n;x y\x1b[0m"
    assert rows[(pool, "a\ufffdb")]["bytes"] == 60 and rows[(pool, "a\ufffdb")]["blocks"] == 3
    assert rows[(pool, "esc\x1b[31m\r\n\x7f\x85")]["bytes"] == 40
    # the child's name holds a "/": the pool path writes it \/ (docs/report-format.md, "Pool paths")
    assert rows[(f"{pool}/ch\\/ild\u202e", "</script><!--\u2028")]["bytes"] == 50
    assert rows[(f"{pool}/ch\\/ild\u202e", "L" * 1000000)]["bytes"] == 60
    folded = (tmp_path / "out.folded").read_text(encoding="utf-8")
    assert "po\ufffdol\\n\\x3bx y\\x1b[0m;ch/ild\\u202e;</script><!--\\u2028;" in folded


@pytest.mark.parametrize("by", ["stack", "function"])
def test_pool_report_with_stacks_through_hostile_functions(by: str, hostile_pool_report: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    doc = every_format(tmp_path, capsys, "show", hostile_pool_report, "--by", by)
    keys = "\n".join(str(r["key"]) for r in doc["rows"])
    for name in ("evil name;x y<>", "bidi\u202egnp", "inv\ufffd\ufffdutf", "esc\x1b[31m",
                 "=cmd|' /C calc'!A0"):
        assert name in keys, name
    assert sum(int(r["bytes"]) for r in doc["rows"]) == 280


# ---------------------------------------------------------- Python hooks
HOSTILE_SCRIPT = r'''
keep = []
NAMES = NAMES_HERE
for i, name in enumerate(NAMES):
    src = "def f(k):\n    return bytearray(k)\nkeep.append(f(%d))\n" % (100000 * (i + 1))
    exec(compile(src, name, "exec"), {"keep": keep})


def g(k):
    return bytearray(k)


for i, name in enumerate(NAMES):
    code = g.__code__.replace(co_name=name, co_qualname=name)
    keep.append(type(g)(code, globals())(10000 * (i + 1)))
'''

PY_NAMES = ["evil\nname;x y\x1b[31m", "lit\\x1bx", "esc\x1bx", "bidi\u202egnp", "ls\u2028x",
            "</script><img src=x onerror=alert(1)>", "c1\x85", "pipe|x", "=1+2", "@SUM(A1)"]


@pytest.fixture(scope="module")
def hostile_python_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("hostile-python")
    script = d / "evil.py"
    script.write_text(HOSTILE_SCRIPT.replace("NAMES_HERE", repr(PY_NAMES)), encoding="utf-8")
    err = io.StringIO()
    import contextlib
    with contextlib.redirect_stderr(err):
        assert main(["run", "--python", "--report-dir", str(d / "r"), "--output", str(d / "t.csv"),
                     "--format", "csv", "--", str(script)]) == 0
    assert RAW.search(err.getvalue()) is None and err.getvalue().count("\n") == 1, err.getvalue()
    (report,) = (d / "r").glob("python.*.json")
    return str(report)


@pytest.mark.parametrize("by", ["line", "stack"])
def test_python_report_of_hostile_files_and_functions(by: str, hostile_python_report: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    doc = every_format(tmp_path, capsys, "show", hostile_python_report, "--by", by)
    keys = "\n".join(str(r["key"]) for r in doc["rows"])
    for i, name in enumerate(PY_NAMES):
        assert f"{name}:2 (f)" in keys, name            # the file name of compiled code
        assert f" ({name})" in keys, name               # a function renamed by __code__.replace


NUL_SCRIPT = r"""
keep = []
def g(k):
    return bytearray(k)
for i, name in enumerate(["nul\x00a", "nul\x00b", "nul\x00\u00e9", "nul\x00\ud800"]):
    code = g.__code__.replace(co_name="g", co_qualname=name, co_filename=name)
    keep.append(type(g)(code, globals())(10000 * (i + 1)))
"""


def test_python_names_holding_nul_stay_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the hooks keep NUL-terminated strings: "nul\0a" was written "nul", and the four
    # names below were one row; a NUL is now written U+FFFD, as a lone surrogate is
    script = tmp_path / "nul.py"
    script.write_text(NUL_SCRIPT, encoding="utf-8")
    assert main(["run", "--python", "--report-dir", str(tmp_path / "r"), "--output", str(tmp_path / "t.csv"),
                 "--format", "csv", "--", str(script)]) == 0
    capsys.readouterr()
    (report,) = (tmp_path / "r").glob("python.*.json")
    doc = every_format(tmp_path, capsys, "show", str(report), "--by", "line")
    rows = {str(r["key"]): int(r["bytes"]) for r in doc["rows"]}
    for i, name in enumerate(["nul\ufffda", "nul\ufffdb", "nul\ufffd\u00e9", "nul\ufffd\ufffd"]):
        assert 10000 * (i + 1) <= rows[f"{name}:4 ({name})"] < 10000 * (i + 1) + 1000, (name, rows)


def test_run_python_with_another_interpreter_from_a_directory_holding_a_colon(tmp_path: Path) -> None:
    # the other interpreter found the package through $PYTHONPATH, which splits at ':'
    # (no escape): "cannot load the hooks", no report
    from _audit_testlib import ROOT

    pkg = tmp_path / "pk:g"
    pkg.mkdir()
    for name in ("audit", "allocator"):
        (pkg / name).symlink_to(ROOT / name, target_is_directory=True)
    other = tmp_path / "bin" / "python3"
    other.parent.mkdir()
    other.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -S \"$@\"\n", encoding="utf-8")
    other.chmod(0o755)                      # -S: not the site-packages that hold the package
    script = tmp_path / "leak.py"
    script.write_text("HOLD = bytearray(50000)\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "audit", "run", "--python", "--format", "csv",
                           "--report-dir", str(tmp_path / "r"), "--", str(other), str(script)],
                          cwd=pkg, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{script}:1 (<module>)" in done.stderr, done.stderr
    (report,) = (tmp_path / "r").glob("python.*.json")
    assert json.loads(report.read_text(encoding="utf-8"))["program"] == str(script)


def test_boot_script_names_the_script_by_the_rule(tmp_path: Path) -> None:
    # run by hand, the boot script wrote the script's name raw (ESC, a newline) in its error
    from _audit_testlib import ROOT

    missing = str(tmp_path / "no\nsuch\x1b[2J.py")
    env = {**os.environ, "RINGPOOL_PYTHON_REPORT": str(tmp_path / "r.%p.json")}
    done = subprocess.run([sys.executable, str(ROOT / "audit" / "_pystart.py"), missing],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 1
    assert done.stderr == f"ringpool python hooks: {tmp_path}/no\\nsuch\\x1b[2J.py: no such file\n"
    env["RINGPOOL_PYTHON_DEPTH"] = "1\x1b[2J"
    done = subprocess.run([sys.executable, str(ROOT / "audit" / "_pystart.py"), missing],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and RAW.search(done.stderr) is None, done.stderr


# ------------------------------------------------------------------- html
class _Elements(html.parser.HTMLParser):
    """Every element of a DOM dump, and the frames the flame graph drew."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[str] = []
        self.frames: list[str] = []

    def handle_starttag(self, name: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(name)
        a = {k: v or "" for k, v in attrs}
        if name == "g" and "frame" in a.get("class", "").split():
            self.frames.append(a["data-name"])


def test_html_page_draws_hostile_names_as_text(write_report: WriteReport, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from test_export_html import chromium

    child = report_doc(pool="<!--child\u2029", tags=[tag("<img src=x onerror=alert(1)>", 1, 7)])
    del child["format"], child["version"]
    doc = hostile_report("</script><script>alert(1)</script>\u2028")
    doc["children"] = [child]
    page = tmp_path / "flame.html"
    assert main(["show", write_report("r.json", doc), "--format", "html", "--output", str(page)]) == 0
    capsys.readouterr()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--dump-dom", page.resolve().as_uri()],
            capture_output=True, timeout=120, check=False)      # bytes: a \r stays a \r
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.decode("utf-8")
    assert 'data-rendered="yes"' in out, "the page's script did not run to its end"
    dom = _Elements()
    dom.feed(out)
    expected = set(HOSTILE) | {"all", "</script><script>alert(1)</script>\u2028", "<!--child\u2029",
                               "<img src=x onerror=alert(1)>"}
    assert set(dom.frames) == expected and len(dom.frames) == len(expected)
    assert "img" not in dom.elements and dom.elements.count("script") == 2, dom.elements


# ------------------------------------------------------------------- diff
def emptied(report: str, tmp_path: Path) -> str:
    """report with no site left: the earlier report of a diff in which every site grew."""
    doc = json.loads(Path(report).read_text(encoding="utf-8"))
    doc["sites"] = []
    doc["stacks"] = []
    doc["frames"] = []
    for key in list(doc["totals"]):
        doc["totals"][key] = 0
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("by", ["stack", "function"])
def test_diff_of_interposer_reports_with_hostile_names(by: str, hostile_run: tuple[str, str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    report = hostile_run[0]
    doc = every_format(tmp_path, capsys, "diff", emptied(report, tmp_path), report, "--by", by)
    assert any("esc\x1b[31m" in str(r["key"]) for r in doc["rows"])


# --------------------------------------------------------------- markdown
@pytest.mark.parametrize("name, cell", [
    ("__init__", "\\_\\_init\\_\\_"),            # not bold
    ("make_table", "make_table"),                # "_" inside a word is text already
    ("<module>", "\\<module>"),                  # not an HTML tag (GitHub drops those)
    ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert(1)>"),
    ("&amp;", "\\&amp;"),
    ("~A() < ~B()", "\\~A() \\< \\~B()"),         # not struck through
    ("[x](y) `z` *w*", "\\[x\\](y) \\`z\\` \\*w\\*"),
    ("lit\\x1bx", "lit\\\\\\x1bx"),              # renders as the table's lit\\x1bx
    ("esc\x1bx", "esc\\x1bx"),                   # renders as the table's esc\x1bx
    ("a|b\nc", "a\\|b\\nc"),
])
def test_markdown_cells_render_as_the_table_text(name: str, cell: str, write_report: WriteReport,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # GitHub's renderer (cmark-gfm) turned "<module>" into nothing, "__init__" into a bold
    # "init" and "<img onerror>" into an element; a cell is now Markdown text that renders
    # as the table format writes the name
    path = write_report("r.json", report_doc(tags=[tag(name, 1, 8)]))
    for fmt in ("markdown", "github"):
        out = show(capsys, "show", path, "--format", fmt)
        assert lines_of(out)[-1].startswith(f"| {cell} "), lines_of(out)[-1]


def test_suppression_of_a_function_named_with_line_separators(hostile_run: tuple[str, str], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # the suppressions file was split with str.splitlines, which also ends a line at U+0085
    # and U+2028: this pattern became three lines, and the file an error
    rules = tmp_path / "rules.supp"
    rules.write_text("# names as the program gave them\nleak:c1\x85x\u2028y\n", encoding="utf-8")
    out = show(capsys, "show", hostile_run[0], "--by", "function", "--suppressions", str(rules),
               "--format", "json")
    rows = {r["key"].strip('"'): r for r in json.loads(out)["rows"]}    # DWARF quotes these names
    assert rows["c1\x85x\u2028y"]["suppressed"] is True
    assert rows["esc\x1b[31m"]["suppressed"] is False


def test_python_script_whose_path_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Python decodes such a path with surrogateescape; the hooks had no UTF-8 for it and
    # wrote "<unknown>" for the file (and for a function named with a surrogate): every such
    # file was one, and a file named "<unknown>" another of them
    d = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9\xff"))
    d.mkdir()
    script = d / "s.py"
    script.write_text("def f\udcff():\n    return bytearray(123456)\nkeep = f\udcff()\n".replace("\udcff", "")
                      + "g = (lambda: bytearray(65432))\ng.__code__ = g.__code__.replace(co_qualname='q\\udcfe')\n"
                      "keep2 = g()\n", encoding="utf-8")
    out = tmp_path / "t.json"
    assert main(["run", "--python", "--report-dir", str(tmp_path / "r"), "--output", str(out), "--format", "json",
                 "--", str(script)]) == 0
    err = capsys.readouterr().err
    assert RAW.search(err) is None and err.count("\n") == 1, err
    keys = [str(r["key"]) for r in json.loads(out.read_text(encoding="utf-8"))["rows"]]
    shown = str(tmp_path) + "/caf\ufffd\ufffd/s.py"
    assert f"{shown}:2 (f)" in keys and f"{shown}:4 (q\ufffd)" in keys, keys
    assert not any(k.startswith("<unknown>") for k in keys), keys


def test_run_python_into_a_report_dir_whose_name_is_not_utf8(tmp_path: Path,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    # the hooks took the report's path as UTF-8 text: the program's atexit callback failed
    # with UnicodeEncodeError (a traceback), and run said the program wrote no report
    d = Path(os.fsdecode(bytes(tmp_path) + b"/r\xff\xfe\n\x1b[2J%p"))
    script = tmp_path / "s.py"
    script.write_text("keep = bytearray(123456)\n", encoding="utf-8")
    out = Path(os.fsdecode(bytes(tmp_path) + b"/t\xe9.json"))
    assert main(["run", "--python", "--report-dir", str(d), "--output", str(out), "--format", "json",
                 "--", str(script)]) == 0
    err = capfd.readouterr().err
    assert RAW.search(err) is None and err.count("\n") == 1, err
    assert "(in " + str(tmp_path) + "/r\\udcff\\udcfe\\n\\x1b[2J%p)" in err, err
    (report,) = d.glob("python.*.json")
    keys = [str(r["key"]) for r in json.loads(out.read_text(encoding="utf-8"))["rows"]]
    assert any(k.startswith(f"{script}:1 ") for k in keys), keys


@pytest.mark.parametrize("mode", ["pool", "preload"])
def test_run_into_a_report_dir_whose_name_is_not_utf8(mode: str, leaky: str, newline_names_program: Path,
                                                      tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    d = Path(os.fsdecode(bytes(tmp_path) + b"/r\xff\n%n"))
    out = Path(os.fsdecode(bytes(tmp_path) + b"/t\xe9.json"))
    how, program = (["--preload"], str(newline_names_program)) if mode == "preload" else ([], leaky)
    assert main(["run", "--report-dir", str(d), "--output", str(out), "--format", "json", *how,
                 "--", program]) in (0, 2)
    err = capfd.readouterr().err
    assert RAW.search(err) is None and err.count("\n") == 1, err
    assert len(list(d.glob("*.json"))) >= 1
    assert json.loads(out.read_text(encoding="utf-8"))["rows"]


# ------------------------------------------------------------- pytest plugin
def test_a_leaking_tag_is_named_on_one_line(pytester: pytest.Pytester) -> None:
    # the tag went into the failure message raw: a newline split it, ESC drove the terminal
    pytester.makepyfile("""
        import pytest
        from allocator import Pool

        KEEP = []

        @pytest.mark.ringpool_no_leaks
        def test_leaks():
            pool = Pool("parser")
            KEEP.append(pool)
            KEEP.append(pool.alloc(24, tag="to\\nkens\\x1b[2J"))
    """)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "\x1b" not in out and "kens" not in out.replace("to\\nkens", "")
    result.stdout.fnmatch_lines(["*pool 'parser': to\\nkens\\x1b[[]2J (1 block, 24 bytes)*"])


# ---------------------------------------------------------- report file names
def test_a_report_whose_file_name_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the file name (its label names the profile, a column when there are several reports,
    # and the json's "reports") went into the JSON formats as a lone surrogate, "\udce9",
    # which is not Unicode: strict readers refuse it (as this package's own reader does)
    path = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.json"))
    path.write_text(json.dumps(hostile_report()), encoding="utf-8")
    other = tmp_path / "other.json"
    other.write_text(json.dumps(hostile_report(scale=2)), encoding="utf-8")
    every_format(tmp_path, capsys, "show", str(path), str(other))
    for fmt in ("json", "speedscope", "html"):
        text = (tmp_path / f"out.{fmt}").read_text(encoding="utf-8")
        if fmt == "html":
            text = text.split('id="profile-data">', 1)[1].split("</script>", 1)[0]
        found = json.dumps(json.loads(text), ensure_ascii=False)
        found.encode("utf-8")           # no lone surrogate in it
        assert "caf\ufffd" in found, fmt


def _run_preload_from(lib: Path, program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capfd: pytest.CaptureFixture[str]) -> None:
    """run --preload with a copy of the interposer at lib (a path LD_PRELOAD cannot
    name): the program's report is read, and the link's temporary directory is gone."""
    import tempfile
    from audit import reports
    shutil.copy(reports.preload_module().library_path(), lib)
    monkeypatch.setenv("RINGPOOL_PRELOAD_LIB", str(lib))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "t.json"
    assert main(["run", "--preload", "--output", str(out), "--format", "json", "--", str(program)]) == 0
    err = capfd.readouterr().err
    assert "cannot be preloaded" not in err and err.count("\n") == 1, err
    assert sum(int(r["bytes"]) for r in json.loads(out.read_text(encoding="utf-8"))["rows"]) == 60
    assert list((tmp_path / "tmp").iterdir()) == []          # the link's directory is gone


def test_run_preload_with_the_interposer_under_a_path_ld_preload_splits(
        newline_names_program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    # ld.so splits LD_PRELOAD at spaces and colons: an interposer under "my lib:x/" (a
    # virtual environment in "My Projects") was not loaded ("cannot be preloaded: ignored")
    # and run said the program wrote no report
    import tempfile
    where = tmp_path / "my lib:x"
    where.mkdir()
    _run_preload_from(where / "libringpool-preload.so", newline_names_program, tmp_path, monkeypatch, capfd)
    # $TMPDIR under a path LD_PRELOAD splits too ("/home/me/My Files/tmp"): run said to
    # set RINGPOOL_PRELOAD_LIB to a copy; the link now goes into a private directory in
    # the first of /tmp, /var/tmp, /dev/shm that can hold one
    from audit.commands import run as run_command
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    monkeypatch.setattr(run_command, "_LINK_DIRS", (str(tmp_path / "none"), str(fallback)))
    out = tmp_path / "t2.json"
    assert main(["run", "--preload", "--output", str(out), "--format", "json", "--",
                 str(newline_names_program)]) == 0
    err = capfd.readouterr().err
    assert "cannot be preloaded" not in err and err.count("\n") == 1, err
    assert sum(int(r["bytes"]) for r in json.loads(out.read_text(encoding="utf-8"))["rows"]) == 60
    assert list(fallback.iterdir()) == [] and [p.name for p in where.iterdir()] == ["libringpool-preload.so"]
    # when no directory for the link can be named in LD_PRELOAD either: one line saying so
    monkeypatch.setattr(run_command, "_LINK_DIRS", (str(where), str(tmp_path / "none")))
    assert main(["run", "--preload", "--", str(newline_names_program)]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "set RINGPOOL_PRELOAD_LIB to a copy" in err, err


def test_run_preload_names_its_link_absolutely_under_a_relative_temporary_directory(
        newline_names_program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    # tempfile.tempdir set to a relative path ("tmp") in a working directory whose path
    # LD_PRELOAD splits ("My Files"): the link to an interposer under such a path was
    # named relative to it ("tmp/ringpool-preload-.../libringpool-preload.so"), which a
    # child exec'd after a change of directory could not load ("cannot be preloaded:
    # ignored", and no report). A candidate directory is checked by its absolute path,
    # the path mkdtemp names the link's directory by from Python 3.12 on.
    from audit import reports
    from audit.commands import run as run_command
    lib = tmp_path / "my lib:x" / "libringpool-preload.so"
    lib.parent.mkdir()
    shutil.copy(reports.preload_module().library_path(), lib)
    monkeypatch.setenv("RINGPOOL_PRELOAD_LIB", str(lib))
    cwd = tmp_path / "My Files"
    (cwd / "tmp").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", "tmp")
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    monkeypatch.setattr(run_command, "_LINK_DIRS", (str(fallback),))
    reports_dir = tmp_path / "reports"
    reports_dir.mkdir()
    out = tmp_path / "t.json"
    assert main(["run", "--preload", "--report-dir", str(reports_dir), "--output", str(out),
                 "--format", "json", "--", "/bin/sh", "-c",
                 f"cd / && exec {shlex.quote(str(newline_names_program))}"]) == 0
    err = capfd.readouterr().err
    assert "cannot be preloaded" not in err and err.count("\n") == 1, err
    assert sum(int(r["bytes"]) for r in json.loads(out.read_text(encoding="utf-8"))["rows"]) == 60
    assert list(fallback.iterdir()) == [] and list((cwd / "tmp").iterdir()) == []


def test_a_program_under_a_path_that_is_not_utf8_is_symbolized(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # A program in a directory named in Latin-1 (b"lat\xe9n"): the report names it with
    # U+FFFD for the byte (reports are UTF-8), so the symbolizer could not open it, every
    # site read as module+offset and run said "no symbols for le\ufffdaky" for a program
    # built with -g. The file is now found by the build id among the paths that name
    # stands for.
    where = Path(os.fsdecode(bytes(tmp_path) + b"/lat\xe9n dir"))
    where.mkdir()
    src = tmp_path / "leak.c"
    src.write_text("#include <stdlib.h>\nvoid *keep;\n"
                   "__attribute__((noinline)) static void leak_here(void) { keep = malloc(77); }\n"
                   "int main(void) { leak_here(); return 0; }\n")
    prog = Path(os.fsdecode(bytes(where) + b"/le\xffaky"))
    subprocess.run([c_compiler(), "-std=c11", "-O0", "-g", "-Wl,--build-id", str(src), "-o", str(prog)],
                   check=True)
    out = tmp_path / "r.json"
    assert main(["run", "--preload", "--by", "function", "--format", "json", "--output", str(out),
                 "--", str(prog)]) == 0
    err = capfd.readouterr().err
    assert "no symbols for" not in err, err
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert any(r["key"].split(" (")[0] == "leak_here" and r["bytes"] == 77 for r in rows), rows
    # a name that matches no file, or a file of another build id, stays unknown
    from audit import elfsym
    assert elfsym._lost_bytes_path(str(where).replace("\udce9", "\ufffd") + "/none\ufffd") == []
    info = elfsym.load_module(f"{tmp_path}/lat\ufffdn dir/le\ufffdaky", "00" * 20)
    assert not info.found


def test_a_report_naming_a_fifo_or_a_device_as_a_module(hostile_run: tuple[str, str], tmp_path: Path) -> None:
    # the symbolizer opened each module a report names and read it whole: a FIFO there
    # blocked show forever (the open waits for a writer), /dev/zero filled the memory, and
    # a build id holding '/' named a debug file anywhere. Now only a regular file is read
    # (its ELF header first), and a build id is hex or unused.
    doc = json.loads(Path(hostile_run[0]).read_text(encoding="utf-8"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    instead = {"prog\n\x1b[2Jx": str(fifo), 'lib\nevil;x y"q.so': "/dev/zero", "ld-linux-x86-64.so.2": "/dev/tty"}
    for m in doc["modules"]:
        m["path"] = instead.get(os.path.basename(m["path"]), m["path"])
        m["build_id"] = "/../../../../" + str(tmp_path / "x")
    report = tmp_path / "r.json"
    report.write_text(json.dumps(doc), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "audit", "show", str(report), "--by", "module", "--format", "json"],
                          capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
                          start_new_session=True)                           # no controlling terminal
    assert proc.returncode == 0, proc.stderr
    keys = {r["key"] for r in json.loads(proc.stdout)["rows"]}
    assert set(instead.values()) <= keys, keys


def test_run_preload_with_an_interposer_whose_file_name_ld_preload_splits(
        newline_names_program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    # the file's own name holds the space and the colon: the link must not keep it
    _run_preload_from(tmp_path / "ringpool preload:1.so", newline_names_program, tmp_path, monkeypatch, capfd)


# ------------------------------------------------------ paths in messages
def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert RAW.search(err) is None and err.count("\n") == 1, err
    return err


def test_error_messages_name_hostile_paths_on_one_line(hostile_run: tuple[str, str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # --output's messages, a reader's (which named the file twice, once raw) and a
    # suppressions file's wrote the path raw: a newline split the message and an escape
    # sequence reached the terminal
    bad = "h\n\x1b[31mx\u202e"
    shown = "h\\n\\x1b[31mx\\u202e"
    report = hostile_run[0]
    (tmp_path / bad).write_text("{}", encoding="utf-8")
    err = one_error_line(capsys, ["show", report, "--output", str(tmp_path / bad)])
    assert f"{tmp_path}/{shown}: already exists" in err, err
    err = one_error_line(capsys, ["show", report, "--output", str(tmp_path / (bad + "d") / "x")])
    assert f"{tmp_path}/{shown}d/x: directory {tmp_path}/{shown}d does not exist" in err, err
    wrong = tmp_path / (bad + ".json")
    wrong.write_text(json.dumps({"format": "ringpool-preload", "version": 99}), encoding="utf-8")
    err = one_error_line(capsys, ["show", str(wrong)])
    assert err.count(shown) == 1 and "unsupported version 99" in err, err
    supp = tmp_path / (bad + ".supp")
    supp.write_text("nonsense\n", encoding="utf-8")
    err = one_error_line(capsys, ["show", report, "--suppressions", str(supp)])
    assert err.count(f"{shown}.supp:1: expected 'leak:PATTERN'") == 1, err
    err = one_error_line(capsys, ["diff", report, report, str(wrong)])
    assert "unrecognized arguments" in err and "\\n\\x1b[31m" in err, err


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\xad", "\U000e0041",
                                       "\xa0", "\u3000", "\u180e", "\ue000", "\U00100000", "\U0001343f"])
def test_names_differing_by_an_invisible_character_print_apart(invisible: str, write_report: WriteReport,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # "main" and "ma<U+200B>in" printed alike: a zero-width character (or a space that is not
    # U+0020) is written escaped, as repr writes it, in every text format and the summary
    name = f"ma{invisible}in"
    path = write_report("r.json", report_doc(tags=[tag("main", 1, 8), tag(name, 1, 16)]))
    escaped = repr(invisible)[1:-1]
    for fmt in ("table", "github", "markdown", "folded"):
        out = show(capsys, "show", path, "--format", fmt)
        assert RAW.search(out) is None and invisible not in out, (fmt, out)
        assert f"ma{escaped}in" in out.replace("\\\\", "\\"), (fmt, out)
    assert sorted(show(capsys, "show", path, "--format", "folded").splitlines()) == [
        f"parser;ma{escaped}in 16", "parser;main 8"]
