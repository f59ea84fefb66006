"""Reports built to break a reader: each ends in exit 1 and one line naming the file."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest

from _audit_testlib import chain_doc, report_doc, tag
from audit.cli import main
from audit.formatters import FORMAT_NAMES

WriteReport = Callable[..., str]
TEXT_FORMATS = [f for f in FORMAT_NAMES if f != "pprof"]   # pprof is gzipped protobuf


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ringpool-audit: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("command", ["show", "diff"])
@pytest.mark.parametrize("name, text, needle", [
    ("deep-arrays", '{"a": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
    ("deep-objects", '{"a": ' * 100000 + "1" + "}" * 100000, "nested too deeply"),
    ("digits", '{"format": "ringpool-snapshot", "version": 1, "pid": ' + "7" * 5000 + "}",
     "more digits than this reader accepts"),
    ("nan", '{"format": "ringpool-snapshot", "version": NaN}', "NaN is not a JSON number"),
])
def test_json_python_cannot_take(command: str, name: str, text: str, needle: str,
                                 write_report: WriteReport,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_report(f"{name}.json", text)
    argv = ["show", bad] if command == "show" else ["diff", write_report("good.json"), bad]
    _one_line_error(argv, capsys, bad, needle)


def test_children_chain_of_3000_levels(write_report: WriteReport,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    inner = json.dumps(report_doc(pool="leaf"))
    text = '{"pool": "p", "children": [' * 3000 + inner + "]}" * 3000
    bad = write_report("chain.json", text)
    _one_line_error(["show", bad], capsys, bad, "nested too deeply")


def test_children_nested_beyond_the_limit(write_report: WriteReport,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_report("chain.json", chain_doc(150))
    _one_line_error(["show", bad], capsys, bad, "'children", "nested deeper than 100 levels")
    ok = write_report("ok.json", chain_doc(100))
    assert main(["show", ok, "--format", "csv"]) == 0
    assert "c99" in capsys.readouterr().out


@pytest.mark.parametrize("field", ["blocks", "bytes", "peak_bytes", "allocs"])
def test_counts_of_10_to_the_400(field: str, write_report: WriteReport,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    big = tag("huge", 1, 8)
    big[field] = 10**400
    doc = report_doc(tags=[big, tag("small", 1, 8)])
    doc["totals"] = {"blocks": 2, "bytes": 16, "peak_bytes": 8, "allocs": 2}
    bad = write_report("huge.json", json.dumps(doc))
    _one_line_error(["show", bad], capsys, bad, f"'tags[0].{field}'", "401 digits",
                    "largest count")


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("command", ["show", "diff"])
def test_lone_surrogate_tag_in_every_format(fmt: str, command: str, write_report: WriteReport,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(report_doc(tags=[tag("\ud800", 1, 8), tag("fine", 1, 8)]))
    assert "\\ud800" in text
    bad = write_report("surrogate.json", text)
    argv = ([command, bad] if command == "show" else [command, write_report("good.json"), bad])
    _one_line_error(argv + ["--format", fmt], capsys, bad, "'tags[0].tag'", "lone surrogate")


def test_escaped_surrogate_pairs_are_fine(write_report: WriteReport,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("pair.json", json.dumps(report_doc(tags=[tag("\U0001f600 emoji", 1, 8)])))
    for fmt in TEXT_FORMATS:
        assert main(["show", path, "--format", fmt]) == 0
        out = capsys.readouterr().out
        if fmt == "html":       # the data sits escaped inside the page's script
            continue
        if fmt in ("json", "speedscope"):
            out = json.dumps(json.loads(out), ensure_ascii=False)
        assert "\U0001f600" in out


def test_fifo_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(main(["show", str(fifo)])),
                              daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        with open(fifo, "wb"):
            pass
        pytest.fail("show hangs on a FIFO")
    assert codes == [1]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(fifo) in err and "FIFO, not a regular file" in err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/stdin"])
def test_devices_are_refused(device: str, capsys: pytest.CaptureFixture[str]) -> None:
    if not os.path.exists(device):
        pytest.skip(f"{device} is missing")
    if device == "/dev/stdin" and os.path.isfile(device):
        pytest.skip("stdin is a regular file here")
    assert main(["show", device]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and device in err and "not a regular file" in err


def test_stdin_is_read_with_dash(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = json.dumps(report_doc()).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["show", "-", "--format", "csv"]) == 0
    assert "tokens" in capsys.readouterr().out


def test_stdin_only_once(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(["diff", "-", "-"], capsys, "standard input")


def test_size_cap_is_named(write_report: WriteReport, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("a.json")
    size = os.path.getsize(path)
    _one_line_error(["show", path, "--max-report-bytes", str(size - 1)], capsys, path,
                    "larger than the", "--max-report-bytes")
    assert main(["show", path, "--max-report-bytes", str(size)]) == 0


def test_file_name_with_a_newline_stays_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "two\nlines.json"
    path.write_text("{")
    err = _one_line_error(["show", str(path)], capsys, "two\\nlines.json")
    assert "truncated JSON" in err


def test_huge_values_in_error_messages_are_cut(write_report: WriteReport,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    doc = report_doc()
    doc["pool"] = ["x" * 100000]
    path = write_report("long.json", doc)
    err = _one_line_error(["show", path], capsys, "'pool'")
    assert len(err) < 300


def test_table_output_that_the_terminal_cannot_encode(write_report: WriteReport,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report("cjk.json", report_doc(tags=[tag("\u6f22\u5b57", 1, 8)]))
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["show", path]) == 0
    stdout.flush()
    assert b"\\u6f22\\u5b57" in raw.getvalue()


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_a_site_whose_stack_starts_elsewhere(fmt: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # the interposer writes a site's module+offset as its stack's first frame; a report
    # where they differ is still read (the symbolizer looked the site's own frame up and
    # raised KeyError)
    frames = [[-1, "0x7f0000001000"], [-1, "0x7f0000002000"]]
    doc = {"format": "ringpool-preload", "version": 1, "pid": 99, "exe": "/bin/true",
           "taken_at": "2026-11-26T04:20:00Z", "reason": "exit",
           "totals": {"blocks": 1, "bytes": 100, "allocs": 1}, "modules": [],
           "stack_depth": 2, "frames": frames, "stacks": [[0, 1]],
           "sites": [{"module": "?", "offset": "0x0", "stack": 0, "blocks": 1, "bytes": 100,
                      "allocs": 1}]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["show", str(path), "--by", "stack", "--format", fmt, "--output", str(out)]) == 0
    assert "100 bytes outstanding" in capsys.readouterr().err
    assert out.stat().st_size > 0


def test_an_interposer_report_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    # audit.preload.load (documented in docs/preload.md) decoded with the json module
    # and let its RecursionError out as a traceback
    from audit import preload
    path = tmp_path / "deep.json"
    path.write_text('{"format": "ringpool-preload", "version": 1, "sites": ' + "[" * 100000
                    + "]" * 100000 + "}")
    with pytest.raises(ValueError) as info:
        preload.load(str(path))
    assert str(info.value) == f"{path}: invalid report: JSON nested too deeply for this reader"


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("stacked", [False, True])
def test_a_module_with_an_empty_path(fmt: str, stacked: bool, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # a module named "" (a site's module, or a frame's module index): the profile formats
    # looked its frames' symbols up under "?" (no module) and raised KeyError
    site: dict[str, object] = {"module": "", "offset": "0x1167", "blocks": 3, "bytes": 300,
                               "allocs": 3}
    doc: dict[str, object] = {"format": "ringpool-preload", "version": 1, "pid": 99,
                              "exe": "/bin/true", "taken_at": "2026-11-26T04:20:00Z",
                              "reason": "exit", "totals": {"blocks": 3, "bytes": 300, "allocs": 3},
                              "modules": [{"path": "", "base": "0x400000"}], "sites": [site]}
    if stacked:
        doc.update(stack_depth=2, frames=[[0, "0x1167"], [-1, "0x7f0000002000"]], stacks=[[0, 1]])
        site["stack"] = 0
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["show", str(path), "--format", fmt, "--output", str(out)]) == 0
    assert "300 bytes outstanding" in capsys.readouterr().err
    assert out.stat().st_size > 0


@pytest.mark.parametrize("fmt", ["folded", "pprof"])
def test_a_rule_on_a_site_without_a_module_decides_alike(fmt: str, tmp_path: Path) -> None:
    # a site with no module ("?"): the table and the leak gate matched the rules against
    # the text "?", the profile exports against nothing, so `leak:^?$` hid the site from
    # the table but not from the profiles. Neither matches a module that is not there.
    from audit import preload
    doc = {"format": "ringpool-preload", "version": 1, "pid": 99, "exe": "/bin/true",
           "taken_at": "2026-11-26T04:20:00Z", "reason": "exit",
           "totals": {"blocks": 1, "bytes": 100, "allocs": 1}, "modules": [],
           "sites": [{"module": "?", "offset": "0x1000", "blocks": 1, "bytes": 100,
                      "allocs": 1}]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    rules = tmp_path / "rules.supp"
    rules.write_text("leak:^?$\n")
    table = preload.rows(preload.load(str(path)), suppressions=str(rules))
    assert [(r["bytes"], r["suppressed"]) for r in table] == [(100, False)]
    out = tmp_path / "out"
    assert main(["show", str(path), "--suppressions", str(rules), "--format", fmt,
                 "--output", str(out)]) == 0
    assert out.stat().st_size > 0
    if fmt == "folded":
        assert out.read_text().split()[-1] == "100"
