"""A pool is known by its position, the tuple of names from its report's root pool down
(docs/report-format.md, "Pool paths"), never by its names joined with "/": a root pool
named "a/b" and a child "b" of a pool "a" are two pools in every output of the CLI, in
diff, the leak gate and the pytest plugin, and "a/b" is one frame of the profiles."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _audit_testlib import ROOT, c_compiler, report_doc, static_library, tag
from _export_testlib import decode_pprof, pprof_stacks, pprof_tool
from audit import schema
from audit.cli import main
from audit.formatters import csv_name
from audit.printable import printable, printable_escaped

pytest_plugins = ["pytester"]

WriteReport = Callable[..., str]

# Two pools, one root pool "a/b" (1 block of 11 bytes) and a child "b" of a pool "a"
# (2 blocks, 22 bytes), under one root "r" in r-old.json and r-new.json (where "a/b" has
# one more block), and as two reports of their own: ab.json and a.json.
POOL_PATHS_C = r"""
#include <stdio.h>
#include "ringpool.h"
static int report(rp_pool *p, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return rp_pool_write_report_ex(p, path, RP_REPORT_CHILDREN);
}
int main(int argc, char **argv)
{
    if (argc < 2)
        return 1;
    const char *d = argv[1];
    rp_pool *ab = rp_pool_create("a/b");
    rp_pool *a = rp_pool_create("a");
    rp_pool *b = rp_pool_create_child(a, "b");
    rp_alloc(ab, 11, "leak");
    rp_alloc(b, 11, "leak");
    rp_alloc(b, 11, "leak");
    rp_pool *r = rp_pool_create("r");
    rp_pool *r_ab = rp_pool_create_child(r, "a/b");
    rp_pool *r_a = rp_pool_create_child(r, "a");
    rp_pool *r_b = rp_pool_create_child(r_a, "b");
    rp_alloc(r_ab, 11, "leak");
    rp_alloc(r_b, 11, "leak");
    rp_alloc(r_b, 11, "leak");
    if (report(ab, d, "ab.json") || report(a, d, "a.json") || report(r, d, "r-old.json"))
        return 1;
    rp_alloc(r_ab, 11, "leak");
    return report(r, d, "r-new.json") ? 1 : 0;
}
"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pool-paths")
    (d / "pools.c").write_text(POOL_PATHS_C)
    subprocess.run([c_compiler(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", str(d / "pools.c"), str(static_library()),
                    "-lpthread", "-o", str(d / "pools")], check=True)
    subprocess.run([str(d / "pools"), str(d)], check=True)
    return d


def outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str,
            code: int = 0) -> dict[str, bytes]:
    found = {}
    for fmt in ("table", "github", "markdown", "csv", "json", "folded", "speedscope", "pprof", "html"):
        out = tmp_path / f"out.{fmt}"
        assert main([*argv, "--format", fmt, "--output", str(out), "--force"]) == code, fmt
        capsys.readouterr()
        found[fmt] = out.read_bytes()
    return found


def text_rows(text: str, pipe: bool) -> list[list[str]]:
    """The cells of a text table's rows (after its header and rule)."""
    lines = text.rstrip("\n").split("\n")
    body = lines[lines.index("") + 3:] if "" in lines else lines[2:]
    if pipe:
        return [[c.strip() for c in line.strip("|").split(" | ")] for line in body]
    return [line.split() for line in body]


def folded_stacks(text: str) -> dict[tuple[str, ...], int]:
    found: dict[tuple[str, ...], int] = {}
    for line in text.splitlines():
        stack, count = line.rsplit(" ", 1)
        key = tuple(stack.split(";"))
        assert key not in found, f"two lines of one stack: {line!r}"
        found[key] = int(count)
    return found


def speedscope_stacks(text: bytes) -> dict[tuple[str, ...], float]:
    doc = json.loads(text)
    names = [f["name"] for f in doc["shared"]["frames"]]
    first = doc["profiles"][0]
    found: dict[tuple[str, ...], float] = {}
    for sample, weight in zip(first["samples"], first["weights"]):
        key = tuple(names[i] for i in sample)
        found[key] = found.get(key, 0) + weight
    return found


def html_stacks(page: bytes) -> dict[tuple[str, ...], int]:
    data = json.loads(page.decode("utf-8").split('id="profile-data">', 1)[1].split("</script>", 1)[0])
    names = [f["n"] for f in data["frames"]]
    found: dict[tuple[str, ...], int] = {}
    for stack, values in zip(data["stacks"], data["values"]):
        key = tuple(names[i] for i in stack)
        found[key] = found.get(key, 0) + values[0]
    return found


def pprof_traces(path: Path) -> dict[tuple[str, ...], int]:
    """Stack (outermost first) -> inuse bytes, as Google's pprof reads the file (-traces)."""
    proc = subprocess.run([pprof_tool(), "-traces", "-symbolize=none", "-sample_index=inuse_space", str(path)],
                          capture_output=True, text=True, check=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(path.parent), "PPROF_TMPDIR": str(path.parent)})
    found: dict[tuple[str, ...], int] = {}
    for block in proc.stdout.split("-----------+-------------------------------------------------------")[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        first = lines[0].split()
        value = first[0]
        frames = [first[1]] + [line.strip() for line in lines[1:]]
        number = float(value.rstrip("B").rstrip("kMG")) if value != "0" else 0
        found[tuple(reversed(frames))] = int(number)
    return found


# ---------------------------------------------------------------- schema
names = st.text(st.characters(codec="utf-8"), max_size=6) | st.sampled_from(
    ["", ".", "..", "/", "\\", "a/b", "a\\/b", "\\\\", "a\\", "\\n"])


@given(st.lists(names, min_size=1, max_size=5))
def test_path_text_is_one_to_one(path: list[str]) -> None:
    text = schema.path_text(path)
    assert schema.path_names(text) == tuple(path)
    # what text outputs write: the rule of audit.printable per name, a backslash once
    assert schema.path_shown(path) == printable_escaped(text)
    assert schema.path_shown(path) == "/".join(printable(n).replace("/", "\\/") for n in path)


@given(st.lists(names, min_size=1, max_size=4), st.lists(names, min_size=1, max_size=4))
def test_different_paths_never_read_alike(a: list[str], b: list[str]) -> None:
    if a != b:
        assert schema.path_text(a) != schema.path_text(b)
        assert schema.path_shown(a) != schema.path_shown(b)


def test_path_names_refuses_what_no_path_gives() -> None:
    for bad in ("a\\b", "a\\", "\\x1b"):
        with pytest.raises(ValueError, match="backslash"):
            schema.path_names(bad)


def _child(name: str, tags: list[dict[str, Any]], children: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc = report_doc(pool=name, tags=tags)
    del doc["format"], doc["version"]
    if children:
        doc["children"] = children
    return doc


def test_walk_keeps_ordinary_paths_and_tells_odd_names_apart() -> None:
    doc = report_doc(pool="parser", tags=[])
    doc["children"] = [_child("child", [], [_child("leaf", [])]), _child("a/b", []),
                       _child("a", [], [_child("b", [])]), _child("back\\slash", [])]
    report = schema.parse_snapshot(doc)
    assert [p for p, _ in report.walk_paths()] == [
        ("parser",), ("parser", "child"), ("parser", "child", "leaf"), ("parser", "a/b"),
        ("parser", "a"), ("parser", "a", "b"), ("parser", "back\\slash")]
    assert [p for p, _ in report.walk()] == [
        "parser", "parser/child", "parser/child/leaf", "parser/a\\/b", "parser/a", "parser/a/b",
        "parser/back\\\\slash"]
    assert [p for p, _ in report.walk("up")][:2] == ["up/parser", "up/parser/child"]


# ------------------------------------------------------------------ show
def test_show_of_one_report_keeps_the_two_pools_apart_in_every_format(
        reports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = outputs(tmp_path, capsys, "show", str(reports / "r-old.json"))
    check_two_pools(out, tmp_path, ("r", "a/b"), ("r", "a", "b"), 11, 22)


def test_show_of_two_reports_does_not_merge_the_two_pools(
        reports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the rows were merged by the joined path: one row "a/b" of 3 blocks and 33 bytes
    out = outputs(tmp_path, capsys, "show", str(reports / "ab.json"), str(reports / "a.json"))
    check_two_pools(out, tmp_path, ("a/b",), ("a", "b"), 11, 22)
    rows = {tuple(r["pool_path"]): r for r in json.loads(out["json"])["rows"] if r["key"] == "leak"}
    assert rows[("a/b",)]["report:ab"] == 11 and rows[("a/b",)]["report:a"] == 0
    assert rows[("a", "b")]["report:ab"] == 0 and rows[("a", "b")]["report:a"] == 22


def check_two_pools(out: dict[str, bytes], tmp_path: Path, root_ab: tuple[str, ...],
                    child_b: tuple[str, ...], ab_bytes: int, b_bytes: int) -> None:
    ab_text, b_text = schema.path_text(root_ab), schema.path_text(child_b)
    assert ab_text != b_text and "\\/" in ab_text
    # json: the path text and the names
    rows = json.loads(out["json"])["rows"]
    leaks = {r["pool"]: r for r in rows if r["key"] == "leak"}
    assert set(leaks) == {ab_text, b_text}
    assert leaks[ab_text]["pool_path"] == list(root_ab) and leaks[ab_text]["bytes"] == ab_bytes
    assert leaks[b_text]["pool_path"] == list(child_b) and leaks[b_text]["bytes"] == b_bytes
    for r in rows:
        assert schema.path_names(r["pool"]) == tuple(r["pool_path"])
    # csv: the same text, read back by the csv module (a formula's guard removed)
    table = list(csv.DictReader(io.StringIO(out["csv"].decode("utf-8"), newline="")))
    assert {csv_name(r["pool"]): int(r["bytes"]) for r in table
            if csv_name(r["key"]) == "leak"} == {ab_text: ab_bytes, b_text: b_bytes}
    # text tables: one row each, the path written once escaped (a\/b), never twice (a\\/b)
    cells = {r[0]: r for r in text_rows(out["table"].decode("utf-8"), pipe=False) if r[1] == "leak"}
    assert set(cells) == {ab_text, b_text}
    assert cells[ab_text][3] == str(ab_bytes) and cells[b_text][3] == str(b_bytes)
    for fmt in ("github", "markdown"):
        md = {r[0]: r for r in text_rows(out[fmt].decode("utf-8"), pipe=True) if r[1] == "leak"}
        # Markdown escapes the backslash before "/": the cell renders as the table's text
        assert set(md) == {ab_text.replace("\\/", "\\\\/"), b_text}, fmt
    # folded: "a/b" is one frame under its parent
    want = {(*root_ab, "leak"): ab_bytes, (*child_b, "leak"): b_bytes}
    folded = folded_stacks(out["folded"].decode("utf-8"))
    assert {k: v for k, v in folded.items() if k[-1] == "leak"} == want
    speed = speedscope_stacks(out["speedscope"])
    assert {k: v for k, v in speed.items() if k[-1] == "leak"} == want
    page = html_stacks(out["html"])
    assert {k: v for k, v in page.items() if k[-1] == "leak"} == want
    prof = decode_pprof(out["pprof"], tmp_path)
    space = [prof.string_table[t.type] for t in prof.sample_type].index("inuse_space")
    stacks = {tuple(reversed(k)): v[space] for k, v in pprof_stacks(prof).items()}
    assert {k: v for k, v in stacks.items() if k[-1] == "leak"} == want
    path = tmp_path / "out.pprof"
    traces = pprof_traces(path)
    assert {k: v for k, v in traces.items() if k[-1] == "leak"} == want


def test_names_that_read_like_paths_or_escapes_stay_apart(write_report: WriteReport, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    odd = ["", ".", "..", "/", "\\", "a/b", "a\\/b", "a\\", "\\\\", "a\\nb", "a\nb"]
    doc = report_doc(pool="r", tags=[])
    doc["children"] = [_child(name, [tag("t", 1, 10 + i)]) for i, name in enumerate(odd)]
    doc["children"].append(_child("a", [], [_child("b", [tag("t", 1, 100)])]))
    doc["children"].append(_child("a\\", [], [_child("b", [tag("t", 1, 101)])]))
    out = outputs(tmp_path, capsys, "show", write_report("r.json", doc))
    rows = json.loads(out["json"])["rows"]
    assert len(rows) == len(odd) + 2
    assert len({r["pool"] for r in rows}) == len(rows)
    assert {tuple(r["pool_path"]) for r in rows} == {("r", n) for n in odd} | {("r", "a", "b"), ("r", "a\\", "b")}
    table = [r[0] for r in text_rows(out["table"].decode("utf-8"), pipe=False)]
    assert len(set(table)) == len(rows)
    assert "r/a\\\\/b" in table and "r/a\\\\\\/b" in table and "r/a\\nb" in table and "r/a\\\\nb" in table
    folded = folded_stacks(out["folded"].decode("utf-8"))
    assert ("r", "a/b", "t") in folded and ("r", "a", "b", "t") in folded and ("r", "a\\\\", "b", "t") in folded
    speed = speedscope_stacks(out["speedscope"])
    assert len(speed) == len(rows)
    assert speed[("r", "a/b", "t")] == 10 + odd.index("a/b") and speed[("r", "a", "b", "t")] == 100


# ------------------------------------------------------------- diff, gate
def test_diff_pairs_pools_by_their_position(reports: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # both pools were "r/a/b": one of them was dropped, and the growth of "a/b" went unseen
    argv = ["diff", str(reports / "r-old.json"), str(reports / "r-new.json")]
    assert main([*argv, "--fail-on-leak", "--format", "json"]) == 2
    out, err = capsys.readouterr()
    rows = {(r["pool"], r["key"]): r for r in json.loads(out)["rows"]}
    assert rows[("r/a\\/b", "leak")]["bytes_diff"] == 11 and rows[("r/a\\/b", "leak")]["bytes"] == 22
    assert rows[("r/a/b", "leak")]["bytes_diff"] == 0 and rows[("r/a/b", "leak")]["bytes"] == 22
    assert "1 block / 11 bytes" in err
    out_formats = outputs(tmp_path, capsys, *argv)
    assert folded_stacks(out_formats["folded"].decode("utf-8"))[("r", "a/b", "leak")] == 11
    assert speedscope_stacks(out_formats["speedscope"])[("r", "a/b", "leak")] == 11
    assert html_stacks(out_formats["html"])[("r", "a/b", "leak")] == 11
    table = {r[0]: r for r in text_rows(out_formats["table"].decode("utf-8"), pipe=False) if r[1] == "leak"}
    assert table["r/a\\/b"][3] == "+1" and table["r/a/b"][3] == "+0"


def test_diff_matches_children_below_roots_of_other_names(write_report: WriteReport,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    old = report_doc(pool="x", tags=[])
    old["children"] = [_child("a/b", [tag("t", 1, 5)]), _child("a", [], [_child("b", [tag("t", 1, 7)])])]
    new = report_doc(pool="y", tags=[])
    new["children"] = [_child("a", [], [_child("b", [tag("t", 1, 7)])]), _child("a/b", [tag("t", 2, 9)])]
    assert main(["diff", write_report("old.json", old), write_report("new.json", new), "--format", "json"]) == 0
    rows = {tuple(r["pool_path"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("y", "a/b")]["bytes_diff"] == 4 and rows[("y", "a/b")]["status"] == ""
    assert rows[("y", "a", "b")]["bytes_diff"] == 0


# ---------------------------------------------------------- pytest plugin
def test_plugin_names_each_pool_by_its_path(pytester: pytest.Pytester) -> None:
    # a child was named by its own name alone: the child "b" of "a" read as a root "b",
    # and the root "a/b" as that child
    pytester.makepyfile("""
        import pytest
        from allocator import Pool

        KEEP = []

        @pytest.mark.ringpool_no_leaks
        def test_leaks():
            root = Pool("a/b")
            a = Pool("a")
            b = a.child("b")
            KEEP.extend([root, a, b, root.alloc(11, tag="leak"), b.alloc(11, tag="leak"),
                         b.alloc(11, tag="leak")])
    """)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "pool 'a\\/b': leak (1 block, 11 bytes)" in out
    assert "pool 'a/b': leak (2 blocks, 22 bytes)" in out


# ------------------------------------------------------------ run --cycles
CYCLES_C = r"""
#include <stdlib.h>
#include "ringpool.h"
int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    rp_pool *ab = rp_pool_create("a/b");
    rp_pool *other = rp_pool_create("x\\y");
    for (int i = 0; i < n; i++) {
        rp_alloc(ab, 10, "leak");
        rp_alloc(other, 20, "leak");
    }
    return 0;
}
"""


def test_run_cycles_writes_the_pool_column_escaped_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the residue table wrote the path text by the rule for names: a\/b became a\\/b
    (tmp_path / "c.c").write_text(CYCLES_C)
    subprocess.run([c_compiler(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", str(tmp_path / "c.c"), str(static_library()),
                    "-lpthread", "-o", str(tmp_path / "c")], check=True)
    out = tmp_path / "t.txt"
    assert main(["run", "--cycles", "1,3", "--output", str(out), "--", str(tmp_path / "c"), "{cycles}"]) == 0
    capsys.readouterr()
    rows = {r[0]: r for r in text_rows(out.read_text(encoding="utf-8"), pipe=False)}
    assert set(rows) == {"a\\/b", "x\\\\y"}
    assert rows["a\\/b"][3] == "10.0" and rows["x\\\\y"][3] == "20.0"
    assert main(["run", "--cycles", "1,3", "--format", "json", "--output", str(out), "--force", "--",
                 str(tmp_path / "c"), "{cycles}"]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert {r["pool"]: r["pool_path"] for r in doc["rows"]} == {"a\\/b": ["a/b"], "x\\\\y": ["x\\y"]}


# --------------------------------------------------------- sibling pools
def test_sibling_pools_of_one_name_are_summed_never_dropped(write_report: WriteReport,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # diff kept one pool per path: the second worker replaced the first, its growth unseen
    def doc(first: int, second: int) -> dict[str, Any]:
        d = report_doc(pool="server", tags=[])
        d["children"] = [_child("worker", [tag("req", first, 10 * first)]),
                         _child("worker", [tag("req", second, 10 * second)])]
        return d
    old, new = write_report("old.json", doc(1, 1)), write_report("new.json", doc(1, 3))
    assert main(["diff", old, new, "--format", "json", "--fail-on-leak"]) == 2
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 1 and rows[0]["key"] == "req"       # one pool: no pool column
    assert rows[0]["blocks"] == 4 and rows[0]["blocks_diff"] == 2
    assert main(["show", new, "--format", "json"]) == 0
    rows = {(r["pool"], r["key"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("server/worker", "req")]["blocks"] == 4 and len(rows) == 1


def test_sibling_pools_of_one_name_with_stacks_are_counted_once(write_report: WriteReport, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # each sibling took the stacks of both (they share a path): the profiles counted them twice
    def worker() -> dict[str, Any]:
        t = tag("req", 2, 20)
        t["stacks"] = [{"stack": 0, "blocks": 2, "bytes": 20, "allocs": 2}]
        return _child("worker", [t]) | {"stack_depth": 8, "modules": [], "frames": [[-1, "0x1234"]],
                                        "stacks": [[0]]}
    doc = report_doc(pool="server", tags=[])
    doc["children"] = [worker(), worker()]
    path = write_report("r.json", doc)
    out = outputs(tmp_path, capsys, "show", path)
    for stacks in (speedscope_stacks(out["speedscope"]), html_stacks(out["html"]),
                   folded_stacks(out["folded"].decode("utf-8"))):
        assert sum(stacks.values()) == 40 and len(stacks) == 1, stacks
    assert main(["show", path, "--by", "stack", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert sum(r["bytes"] for r in rows) == 40 and all(r["key"] != "(no stack)" for r in rows), rows


def test_a_child_pools_own_report_keeps_its_parents_and_stacks_in_every_profile(
        write_report: WriteReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the table and json named the pool app/worker (its parents), the profile formats
    # worker alone, and looked its stacks up under that shorter path: the tag's stack
    # was lost there (a stackless "req" of 20 bytes instead of 0x1234 <- req)
    t = tag("req", 2, 20)
    t["stacks"] = [{"stack": 0, "blocks": 2, "bytes": 20, "allocs": 2}]
    doc = report_doc(pool="worker", tags=[t], parents=["app"]) | {
        "stack_depth": 8, "modules": [], "frames": [[-1, "0x1234"]], "stacks": [[0]]}
    out = outputs(tmp_path, capsys, "show", write_report("r.json", doc))
    for stacks in (speedscope_stacks(out["speedscope"]), html_stacks(out["html"]),
                   folded_stacks(out["folded"].decode("utf-8"))):
        assert len(stacks) == 1 and sum(stacks.values()) == 20, stacks
        (stack,) = stacks
        assert stack[:3] == ("app", "worker", "req") and len(stack) == 4, stack
    assert json.loads(out["json"])["rows"][0]["pool_path"] == ["app", "worker"]


# ------------------------------------------------- reports of child pools
RUN_C = r"""
#include "ringpool.h"
int main(int argc, char **argv)
{
    rp_pool *ab = rp_pool_create("a/b");
    rp_pool *a = rp_pool_create("a");
    rp_pool *b = rp_pool_create_child(a, "b");
    rp_pool *lone_b = rp_pool_create("b");
    rp_pool *deep = rp_pool_create_child(rp_pool_create_child(b, "c/d"), "e");
    rp_alloc(ab, 11, "leak");
    rp_alloc(b, 22, "leak");
    rp_alloc(lone_b, 33, "leak");
    rp_alloc(deep, 44, "leak");
    rp_alloc(rp_pool_create_child(a, "w"), 5, "leak");     /* two pools "w" of one parent */
    rp_alloc(rp_pool_create_child(a, "w"), 6, "leak");
    if (argc > 2) {                /* on request: the child "b" and the pool "b" */
        if (rp_pool_write_report_ex(b, argv[1], 0) || rp_pool_write_report_ex(lone_b, argv[2], 0))
            return 1;
    }
    rp_pool_destroy(lone_b);       /* under %n.%p.json the child "b" would replace its file */
    rp_pool_destroy(b);            /* its report (and its children's) at destroy */
    return 0;                      /* the others' at exit */
}
"""


def test_run_tells_a_child_pools_report_from_a_pool_of_its_name(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # each pool writes its own report under RINGPOOL_REPORT, and a child's said only its
    # name: the child "b" of "a" and the pool "b" were one row "b"; and pools of one name
    # wrote one file (%n.%p.json), the later report replacing the earlier
    (tmp_path / "c.c").write_text(RUN_C)
    subprocess.run([c_compiler(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                    f"-I{ROOT / 'csrc' / 'include'}", str(tmp_path / "c.c"), str(static_library()),
                    "-lpthread", "-o", str(tmp_path / "c")], check=True)
    out = tmp_path / "t.json"
    assert main(["run", "--report-dir", str(tmp_path / "r"), "--format", "json", "--output", str(out), "--",
                 str(tmp_path / "c")]) == 0
    capsys.readouterr()
    rows = {r["pool"]: r for r in json.loads(out.read_text(encoding="utf-8"))["rows"] if r["key"] == "leak"}
    assert {k: r["bytes"] for k, r in rows.items()} == {"a\\/b": 11, "a/b": 22, "b": 33, "a/b/c\\/d/e": 44,
                                                         "a/w": 11}
    assert len(list((tmp_path / "r").glob("w.*.json"))) == 2
    assert rows["a/b/c\\/d/e"]["pool_path"] == ["a", "b", "c/d", "e"]
    deep = next((tmp_path / "r").glob("e.*.json"))
    doc = json.loads(deep.read_text(encoding="utf-8"))
    assert doc["parents"] == ["a", "b", "c/d"] and doc["reason"] == "destroy"
    # the reader keeps the field; the writer puts it back, in the library's layout
    report = schema.load_snapshot(deep)
    assert report.parents == ("a", "b", "c/d") and "parents" not in report.extra
    assert schema.dumps(report) == deep.read_text(encoding="utf-8")
    assert schema.to_dict(report)["parents"] == ["a", "b", "c/d"]
    # written on request: the child "b" of "a" and a pool "b" are two rows
    child, lone = tmp_path / "child.json", tmp_path / "lone.json"
    subprocess.run([str(tmp_path / "c"), str(child), str(lone)], check=True)
    assert main(["show", str(child), str(lone), "--format", "json"]) == 0
    rows = {r["pool"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert {k: r["bytes"] for k, r in rows.items()} == {"a/b": 22, "b": 33}


@pytest.mark.parametrize("parents, field", [("a", "parents"), ([1], "parents[0]"), (["\ud800"], "parents[0]"),
                                            ([None], "parents[0]")])
def test_parents_must_be_a_list_of_names(parents: Any, field: str) -> None:
    with pytest.raises(schema.ReportFormatError, match=re.escape(f"field {field!r}")):
        schema.parse_snapshot(report_doc(parents=parents))


def test_diff_of_child_pools_reports_pairs_them_below_their_roots(write_report: WriteReport,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    old = report_doc(pool="b", tags=[tag("t", 1, 10)], parents=["a"])
    new = report_doc(pool="b", tags=[tag("t", 2, 20)], parents=["a"])
    new["children"] = [_child("x/y", [tag("u", 1, 5)])]
    assert main(["diff", write_report("old.json", old), write_report("new.json", new), "--format", "json"]) == 0
    rows = {(r["pool"], r["key"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("a/b", "t")]["bytes_diff"] == 10
    assert rows[("a/b/x\\/y", "u")]["status"] == "new" and rows[("a/b/x\\/y", "u")]["pool_path"] == ["a", "b", "x/y"]


def test_python_snapshot_of_a_child_pool_names_its_parents() -> None:
    from allocator import Pool

    with Pool("a/b") as root:
        kid = root.child("c")
        block = kid.alloc(8, tag="t")
        snap = kid.snapshot()
        assert snap.parents == ("a/b",)
        assert [p for p, _ in snap.walk_paths()] == [("a/b", "c")]
        assert [p for p, _ in snap.walk()] == ["a\\/b/c"]
        assert root.snapshot().parents == ()
        kid.free(block)
