"""--format html: one self-contained page, opened in headless Chromium to check what it draws."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from _audit_testlib import report_doc, tag
from _export_testlib import build_plain_leaks, stack_report, write_json
from audit.cli import main



@pytest.fixture(scope="module")
def plain_leaks(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_plain_leaks(tmp_path_factory)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is absent (make setup-export installs it)")
    raise AssertionError  # not reached


class _Frames(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str]] = []
        self.summary = ""
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "g" and "frame" in a.get("class", "").split():
            self.frames.append(a)
        self._in_summary = tag == "p" and a.get("id") == "summary"

    def handle_data(self, data: str) -> None:
        if self._in_summary:
            self.summary += data


def rendered(page: Path, fragment: str = "") -> _Frames:
    """The DOM after the page's script ran, as headless Chromium dumps it."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--dump-dom", page.resolve().as_uri() + fragment],
            capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'data-rendered="yes"' in proc.stdout, "the page's script did not finish"
    parser = _Frames()
    parser.feed(proc.stdout)
    return parser


def page_of(tmp_path: Path, *argv: str) -> Path:
    out = tmp_path / "flame.html"
    assert main(["show", *argv, "--format", "html", "--output", str(out), "--force"]) == 0
    return out


def by_name(frames: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {f["data-name"]: f for f in frames}


def test_the_page_needs_no_network(plain_leaks: str, tmp_path: Path) -> None:
    text = page_of(tmp_path, write_json(tmp_path / "r.json", stack_report(plain_leaks))).read_text(encoding="utf-8")
    assert "default-src 'none'" in text
    assert not re.search(r"\b(src|href)\s*=", text) and "url(" not in text and "@import" not in text
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}


def test_chromium_draws_the_pool_frames(write_report: Any, tmp_path: Path) -> None:
    child = report_doc("lexer", [tag("buf", 1, 10)])
    del child["format"], child["version"]
    page = page_of(tmp_path, write_report("a.json", report_doc(children=[child])))
    dom = rendered(page)
    frames = by_name(dom.frames)
    assert {k: int(v["data-value"]) for k, v in frames.items()} == {
        "all": 106, "parser": 106, "tokens": 64, "(untagged)": 32, "lexer": 10, "buf": 10}
    assert frames["parser"]["data-depth"] == "1" and frames["buf"]["data-depth"] == "3"
    assert "106 bytes in total (exact counts)" in dom.summary


def test_chromium_draws_whole_stacks_with_search_and_zoom(plain_leaks: str, tmp_path: Path) -> None:
    page = page_of(tmp_path, write_json(tmp_path / "r.json", stack_report(plain_leaks)), "--by", "function")
    dom = rendered(page, "#search=MAKE_")
    frames = by_name(dom.frames)
    assert {k: int(v["data-value"]) for k, v in frames.items()} == {
        "all": 420, "main": 420, "make_table": 400, "make_name": 20}
    assert [f["data-name"] for f in dom.frames].count("main") == 1  # two call sites, one function
    matched = sorted(f["data-name"] for f in dom.frames if "match" in f["class"].split())
    assert matched == ["make_name", "make_table"]
    assert "matching \u201cmake_\u201d: 420 bytes, 100.0%" in dom.summary
    zoomed = rendered(page, "#zoom=main;make_name")
    frames = by_name(zoomed.frames)
    assert set(frames) == {"all", "main", "make_name"}
    assert "ancestor" in frames["main"]["class"] and "zoomed into main > make_name: 4.8%" in zoomed.summary
    allocs = by_name(rendered(page, "#value=2").frames)
    assert int(allocs["scratch"]["data-value"]) == 10 and int(allocs["all"]["data-value"]) == 16


def test_by_site_keeps_call_sites_apart(plain_leaks: str, tmp_path: Path) -> None:
    page = page_of(tmp_path, write_json(tmp_path / "r.json", stack_report(plain_leaks)))
    mains = sorted(int(f["data-value"]) for f in rendered(page).frames if f["data-name"].startswith("main ("))
    assert mains == [20, 400]


def test_demo_ends_with_a_flame_graph_of_its_leaks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "out" / "leaks.html"
    assert main(["demo", "--requests", "50", "--no-bench", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("type in the search box to highlight frames.")
    assert f"file://{page}" in out
    frames = by_name(rendered(page).frames)
    # session leaks in the child pool "requests" of "server" (its own report names its
    # parent), cache-entry in "server": each tag under its pool's whole path
    assert frames["requests"]["data-depth"] == "2"
    assert frames["session"]["data-depth"] == "3" and frames["cache-entry"]["data-depth"] == "2"
    assert int(frames["session"]["data-value"]) > 0 and int(frames["cache-entry"]["data-value"]) > 0


def test_frame_names_are_text_not_markup(write_report: Any, tmp_path: Path) -> None:
    evil = "</script><img src=x onerror=alert(1)>&amp;"
    page = page_of(tmp_path, write_report("a.json", report_doc(tags=[tag(evil, 1, 8)])))
    assert "</script><img" not in page.read_text(encoding="utf-8")
    names = [f["data-name"] for f in rendered(page).frames]
    assert evil in names


def test_names_that_look_like_the_page_template_stay_names(write_report: Any, tmp_path: Path) -> None:
    # the page is filled from a template: a name spelling one of its slots is text, not a slot
    names = ["@SCRIPT@", "@DATA@", "@STYLE@ @TITLE@"]
    page = page_of(tmp_path, write_report("a.json", report_doc(tags=[tag(n, 1, 8) for n in names])))
    assert page.read_text(encoding="utf-8").count("use strict") == 1
    assert set(names) <= set(by_name(rendered(page).frames))


def test_zoom_reaches_frames_whose_names_hold_the_separators(write_report: Any, tmp_path: Path) -> None:
    # the fragment's zoom path is split at ";": a ";" or "&" inside a name is percent-encoded
    child = report_doc("kid;x&y", [tag("t;1", 1, 10), tag("t", 1, 20)])
    del child["format"], child["version"]
    page = page_of(tmp_path, write_report("a.json", report_doc("a;b", children=[child])))
    zoomed = by_name(rendered(page, "#zoom=a%3Bb;kid%3Bx%26y;t%3B1").frames)
    assert "zoomed" in zoomed["t;1"]["class"].split() and "t" not in zoomed
    assert "ancestor" in zoomed["kid;x&y"]["class"].split()


def test_a_malformed_address_fragment_is_ignored(write_report: Any, tmp_path: Path) -> None:
    page = page_of(tmp_path, write_report("a.json"))
    frames = by_name(rendered(page, "#search=%E0%A4%A&value=1").frames)
    assert int(frames["tokens"]["data-value"]) == 2        # the value the fragment chose; the search is dropped


def deep_report(depth: int) -> dict[str, Any]:
    """An interposer report with one stack of depth frames (in no module) and a short one."""
    frames = [[-1, hex(0x7F0000000000 + 16 * i)] for i in range(depth)]
    return {"format": "ringpool-preload", "version": 1, "pid": 99, "exe": "/bin/true",
            "taken_at": "2026-11-26T04:20:00Z", "reason": "exit",
            "totals": {"blocks": 2, "bytes": 150, "allocs": 2},
            "modules": [], "stack_depth": depth, "frames": frames,
            "stacks": [list(range(depth)), [0, 1]],
            "sites": [{"module": "?", "offset": frames[0][1], "stack": 0, "blocks": 1, "bytes": 100,
                       "allocs": 1},
                      {"module": "?", "offset": frames[0][1], "stack": 1, "blocks": 1, "bytes": 50,
                       "allocs": 1}]}


def test_a_stack_deeper_than_the_script_call_stack_is_drawn(tmp_path: Path) -> None:
    # the tree is walked by loops: recursion over 6000 levels overflowed the
    # script's call stack (RangeError) and left the page blank
    page = page_of(tmp_path, write_json(tmp_path / "deep.json", deep_report(6000)), "--by", "stack")
    dom = rendered(page, "#search=0x7f")
    assert len(dom.frames) == 1 + 6000 + 2      # "all", the deep stack, the short one
    assert max(int(f["data-depth"]) for f in dom.frames) == 6000
    assert "matching" in dom.summary


def test_a_diff_draws_what_grew(write_report: Any, tmp_path: Path) -> None:
    old = write_report("old.json", report_doc(tags=[tag("grows", 1, 10), tag("shrinks", 5, 500)]))
    new = write_report("new.json", report_doc(tags=[tag("grows", 4, 90), tag("shrinks", 1, 100)]))
    page = tmp_path / "diff.html"
    assert main(["diff", old, new, "--format", "html", "--output", str(page)]) == 0
    frames = by_name(rendered(page).frames)
    assert int(frames["grows"]["data-value"]) == 80 and "shrinks" not in frames


def test_a_sampled_report_is_drawn_as_estimates(plain_leaks: str, tmp_path: Path) -> None:
    est = {"make_table": {"est_blocks": 4.0, "est_bytes": 1000.0, "est_allocs": 4.0},
           "make_name": {"est_blocks": 0.0, "est_bytes": 0.0, "est_allocs": 2.0},
           "scratch": {"est_blocks": 0.0, "est_bytes": 0.0, "est_allocs": 10.0}}
    page = page_of(tmp_path, write_json(tmp_path / "s.json", stack_report(plain_leaks, sample_rate=1e-3,
                                                                          site_extra=est)), "--by", "function")
    dom = rendered(page)
    assert "(estimates from sampling at 0.001 per byte)" in dom.summary
    assert {k: int(v["data-value"]) for k, v in by_name(dom.frames).items()} == {
        "all": 1000, "main": 1000, "make_table": 1000}


def test_totals_past_the_largest_double_are_drawn(tmp_path: Path) -> None:
    # two stacks estimated at 1.7e308 bytes each: the script's sum was Infinity, every
    # box NaN wide; the page's values are cut to 1e308 in total, and it says so
    from test_export_values import sampled_report

    page = page_of(tmp_path, write_json(tmp_path / "r.json", sampled_report(0.5, 1.7e308, False)))
    dom = rendered(page)
    values = [float(f["data-value"]) for f in dom.frames]
    assert values and all(0 < v <= 1e308 for v in values), values
    assert "values cut to 1e+308 in total" in dom.summary
