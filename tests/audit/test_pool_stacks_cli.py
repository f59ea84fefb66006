"""Reports of pools that record stacks (RP_POOL_STACKS): show --by and every export format
open each tag into the native stacks that reached it, from a real program's report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest

from _audit_testlib import c_compiler, static_library
from _export_testlib import FIXTURES, PROGRAMS, ROOT, decode_pprof, pprof_stacks, pprof_tool, pprof_top
from audit.cli import main

SCHEMA = json.loads((FIXTURES / "speedscope-file-format-schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/audit/programs/pool_stacks.c built -O0 -g against the static library, run once:
    its report (pool "app" with the child "strings")."""
    library = static_library()
    out = tmp_path_factory.mktemp("pool-stacks")
    binary = out / "pool_stacks"
    subprocess.run([c_compiler(), "-std=c11", "-O0", "-g", "-D_GNU_SOURCE", f"-I{ROOT / 'csrc' / 'include'}",
                    str(PROGRAMS / "pool_stacks.c"), str(library), "-lpthread", "-o", str(binary)], check=True)
    path = out / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGPOOL_")}
    subprocess.run([str(binary), str(path)], check=True, env=env)
    return str(path)


def show(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(["show", *argv]) == 0
    return capsys.readouterr().out


def rows(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    doc = json.loads(show(capsys, *argv, "--format", "json"))
    return list(doc["rows"]) if isinstance(doc, dict) else list(doc)


def test_the_report_carries_each_tags_stacks(report: str) -> None:
    doc = json.loads(Path(report).read_text(encoding="utf-8"))
    assert doc["stack_depth"] == 64
    node = next(t for t in doc["tags"] if t["tag"] == "node")
    assert sorted((s["blocks"], s["bytes"], s["allocs"]) for s in node["stacks"]) == [(1, 40, 1), (3, 300, 3)]
    assert all(f[0] >= 0 for f in doc["frames"])   # every frame lies in a module
    (child,) = doc["children"]
    assert child["pool"] == "strings" and child["stack_depth"] == 64
    assert child["tags"][0]["stacks"][0]["bytes"] == 7


def test_by_function_credits_the_caller_of_the_pool(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    got = {(r["pool"], r["tag"], r["key"]): (r["blocks"], r["bytes"])
           for r in rows(capsys, report, "--by", "function")}
    assert got == {("app", "node", "make_node"): (4, 340), ("app/strings", "name", "name_it"): (1, 7)}


def test_by_stack_opens_a_tag_into_its_paths(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    got = {r["key"].split(" < ")[1].split(" ")[0]: (r["tag"], r["blocks"], r["bytes"])
           for r in rows(capsys, report, "--by", "stack") if r["tag"] == "node"}
    assert got == {"load_tree": ("node", 3, 300), "parse_expr": ("node", 1, 40)}
    text = show(capsys, report, "--by", "stack")
    assert "make_node (" in text and "pool_stacks.c:" in text


def test_by_site_and_file_name_source_lines(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    sites = {r["key"] for r in rows(capsys, report, "--by", "site")}
    assert any(k.startswith("make_node (") and "pool_stacks.c:" in k for k in sites)
    files = {(r["tag"], r["key"].rsplit("/", 1)[-1]) for r in rows(capsys, report, "--by", "file")}
    assert files == {("node", "pool_stacks.c"), ("name", "pool_stacks.c")}


def test_a_wrapper_pattern_credits_the_frame_past_it(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    got = {r["key"]: r["bytes"] for r in rows(capsys, report, "--by", "function", "--wrapper", "make_node")
           if r["tag"] == "node"}
    assert got == {"load_tree": 300, "parse_expr": 40}


def test_pprof_puts_stacks_under_tag_and_pool(report: str, tmp_path: Path) -> None:
    out = tmp_path / "p.pb.gz"
    assert main(["show", report, "--format", "pprof", "--output", str(out)]) == 0
    prof = decode_pprof(out.read_bytes(), tmp_path)
    stacks = pprof_stacks(prof)
    tree = {k: v for k, v in stacks.items() if k[0] == "make_node"}
    assert len(tree) == 2
    for names, values in tree.items():
        assert names[-2:] == ("node", "app") and "main" in names
        assert values[:3] == ([3, 300, 3] if "load_tree" in names else [1, 40, 1])
    (name_stack,) = [k for k in stacks if k[0] == "name_it"]
    assert name_stack[-3:] == ("name", "strings", "app")
    strings = list(prof.string_table)
    assert any(strings[m.filename].endswith("pool_stacks") and strings[m.build_id] for m in prof.mapping)


def test_pprof_tool_lists_the_same_bytes(report: str, tmp_path: Path) -> None:
    tool = pprof_tool()
    out = tmp_path / "p.pb.gz"
    assert main(["show", report, "--format", "pprof", "--output", str(out)]) == 0
    flat = pprof_top(tool, str(out), "-sample_index=inuse_space")
    assert flat["make_node"] == 340 and flat["name_it"] == 7


def test_speedscope_is_valid_and_roots_at_the_pool(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(show(capsys, report, "--format", "speedscope"))
    jsonschema.validate(doc, SCHEMA)
    frames = [f["name"] for f in doc["shared"]["frames"]]
    prof = doc["profiles"][0]
    stacks = {tuple(frames[i] for i in s): w for s, w in zip(prof["samples"], prof["weights"])}
    node = {k: w for k, w in stacks.items() if k[:2] == ("app", "node")}
    assert sorted(node.values()) == [40, 300]
    assert all(k[-1].startswith("make_node") for k in node)
    assert sum(stacks.values()) == 347


def test_folded_and_html_show_the_frames(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = show(capsys, report, "--format", "folded").splitlines()
    assert any(line.startswith("app;node;") and "load_tree" in line and line.endswith(" 300") for line in lines)
    assert any(line.startswith("app;strings;name;") and line.endswith(" 7") for line in lines)
    html = show(capsys, report, "--format", "html")
    assert "make_node" in html and "load_tree" in html and "parse_expr" in html


def test_by_on_a_report_without_stacks_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _audit_testlib import report_doc
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(report_doc()), encoding="utf-8")
    assert main(["show", str(path), "--by", "function"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RP_POOL_STACKS" in err[0] and str(path) in err[0]


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["frames"].append([7, "0x10"]), "module index 7"),
    (lambda d: d["tags"][0]["stacks"].append({"stack": 99, "blocks": 1, "bytes": 1, "allocs": 1}),
     "field 'stack' is 99"),
    (lambda d: d["stacks"].append(["x"]), "frame index 'x'"),
    (lambda d: d["modules"][0].update(base="here"), "field 'base'"),
    (lambda d: d["tags"][0].update(stacks={"stack": 0}), "must be a list"),
])
def test_damaged_stack_tables_are_one_line_errors(report: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  damage: Any, message: str) -> None:
    doc = json.loads(Path(report).read_text(encoding="utf-8"))
    damage(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    for argv in (["--by", "function"], ["--format", "pprof", "--output", str(tmp_path / "o"), "--force"]):
        assert main(["show", str(path), *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and str(path) in err[0], err


def test_chromium_draws_the_stacks_under_tag_and_pool(report: str, tmp_path: Path) -> None:
    from test_export_html import page_of, rendered
    dom = rendered(page_of(tmp_path, report, "--by", "function"), "#search=make_node")
    values: dict[str, list[int]] = {}
    depth: dict[str, set[int]] = {}
    for f in dom.frames:
        values.setdefault(f["data-name"], []).append(int(f["data-value"]))
        depth.setdefault(f["data-name"], set()).add(int(f["data-depth"]))
    assert values["app"] == [347] and values["node"] == [340] and values["strings"] == [7]
    assert values["load_tree"] == [300] and values["parse_expr"] == [40]
    assert sorted(values["make_node"]) == [40, 300] and values["name_it"] == [7]
    # pool, then tag, then the stack from its outermost frame
    assert depth["app"] == {1} and depth["node"] == {2} and min(depth["main"]) > 2
    matched = [f for f in dom.frames if "match" in f["class"].split()]
    assert sorted(int(f["data-value"]) for f in matched) == [40, 300]
