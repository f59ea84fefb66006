"""How much work the exports of an interposer report do, counted, not timed, and what
the fast paths of the reader and of the text check keep: the same verdicts and the same
messages as the checks item by item (a report of 100,000 stacks is checked in a few passes
over its stacks and sites, not one step per value)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any, Callable

import pytest

from audit import preload, schema
from audit.cli import main
from audit.export import model
from audit.printable import is_printable, printable, printable_escaped

WriteReport = Callable[..., str]

SMALL = {"format": "ringpool-preload", "version": 1, "pid": 7, "exe": "/bin/x",
         "taken_at": "2026-11-26T04:20:00Z", "reason": "exit", "totals": {"blocks": 2, "bytes": 16, "allocs": 2},
         "modules": [], "stack_depth": 2, "frames": [[-1, "0x10"], [-1, "0x20"]], "stacks": [[0, 1], [1, 0]],
         "sites": [{"module": "?", "offset": "0x10", "stack": 0, "blocks": 1, "bytes": 8, "allocs": 1},
                   {"module": "?", "offset": "0x20", "stack": 1, "blocks": 1, "bytes": 8, "allocs": 1}]}

# (what is changed, the message): each value of a stack, frame or site that the fast paths
# pass on to the checks item by item, named as those name it
BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("int_in_stack", lambda d: d["stacks"][1].__setitem__(1, 2**64),
     "field 'stacks[1][1]': 18446744073709551616 is out of range "
     "[-9223372036854775808, 18446744073709551615]"),
    ("bool_in_stack", lambda d: d["stacks"][0].__setitem__(0, True),
     "stacks[0]: frame index True is not in frames (0..1)"),
    ("index_past_frames", lambda d: d["stacks"][1].__setitem__(0, 2),
     "stacks[1]: frame index 2 is not in frames (0..1)"),
    ("empty_stack", lambda d: d["stacks"].__setitem__(0, []),
     "stacks[0]: must be a non-empty list of frame indexes"),
    ("negative_blocks", lambda d: d["sites"][1].__setitem__("blocks", -1),
     "sites[1]: field 'blocks' is negative (-1)"),
    ("stack_past_table", lambda d: d["sites"][0].__setitem__("stack", 2),
     "sites[0]: field 'stack' is 2, but the report has 2 stacks"),
    ("null_stack", lambda d: d["sites"][1].__setitem__("stack", None),
     "sites[1]: field 'stack' must be int, found NoneType"),
    ("bad_offset", lambda d: d["frames"][1].__setitem__(1, "0xzz"),
     "frames[1]: offset must be a hex string like \"0x1a2b\", found '0xzz'"),
    ("float_count", lambda d: d["sites"][0].__setitem__("bytes", 8.5),
     "sites[0]: field 'bytes' must be int, found float"),
    ("surrogate_key", lambda d: d["sites"][1].__setitem__("\ud800", 1),
     "field 'sites[1]': a key contains a lone surrogate (\\ud800): not valid Unicode"),
    ("long_symbol", lambda d: d["sites"][0].__setitem__("symbol", "x" * (1 << 20 | 1)),
     "field 'sites[0].symbol': a string of 1048577 characters (at most 1048576)"),
]


@pytest.mark.parametrize("change, message", [(c, m) for _, c, m in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_the_reader_names_what_is_wrong_in_stacks_and_sites(change: Callable[[dict[str, Any]], None], message: str,
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    doc = copy.deepcopy(SMALL)
    change(doc)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert main(["show", str(path), "--by", "stack"]) == 1
    assert capsys.readouterr().err == f"ringpool-audit: error: {path}: {message}\n"


def test_the_reader_takes_a_report_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(SMALL), encoding="utf-8")
    assert main(["show", str(path), "--by", "stack", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "?? (?+0x10) < ?? (?+0x20),1,8,1,50.0,False", "?? (?+0x20) < ?? (?+0x10),1,8,1,50.0,False"]


@pytest.mark.parametrize("text", [chr(c) for c in range(128)] + ["plain text", "a\\b", "tab\there", "é\x7f"])
def test_printable_rule_for_ascii_text(text: str) -> None:
    # ASCII text is checked by str.isprintable and a search for the backslash, not by the
    # rule's regular expression: the same verdicts, character by character.
    controls = any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0xa0 for c in text)
    unsafe = controls or "\\" in text
    assert is_printable(text) is not unsafe
    assert is_printable("padding " + text + " padding") is not unsafe
    assert (printable(text) == text) is not unsafe
    assert (printable_escaped(text) == text) is not controls


def test_a_site_of_modules_told_apart_is_named_by_its_stack(tmp_path: Path) -> None:
    # Two builds of one library loaded from one path are two modules, each named with
    # its build id; a site naming the path is the module its stack's first frame is in.
    # The reader's fast path for sites kept the path as the site's module.
    doc = copy.deepcopy(SMALL)
    doc["modules"] = [{"path": "/lib/p.so", "base": "0x7f0000000000", "build_id": "aa"},
                      {"path": "/lib/p.so", "base": "0x7f0000100000", "build_id": "bb", "unloaded": True}]
    doc["frames"] = [[0, "0x10"], [1, "0x10"]]
    doc["stacks"] = [[0], [1]]
    doc["sites"] = [{"module": "/lib/p.so", "offset": "0x10", "stack": k, "blocks": 1, "bytes": 8, "allocs": 1}
                    for k in (0, 1)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert [s.module for s in preload.load(str(path)).sites] == ["/lib/p.so (build id aa)",
                                                                 "/lib/p.so (build id bb)"]


PROFILE_FORMATS = ("pprof", "speedscope", "html", "folded")
DISTINCT_FRAMES = 16


def many_stacks(count: int = 400) -> dict[str, Any]:
    """count distinct stacks of 8 frames drawn from DISTINCT_FRAMES frames in no module."""
    frames = [[-1, f"0x{0x7f0000001000 + 16 * i:x}"] for i in range(DISTINCT_FRAMES)]
    rng = random.Random(7)
    stacks: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    while len(stacks) < count:
        stack = tuple(rng.randrange(DISTINCT_FRAMES) for _ in range(8))
        if stack not in seen:
            seen.add(stack)
            stacks.append(list(stack))
    sites = [{"module": "?", "offset": frames[s[0]][1], "stack": i, "blocks": 1, "bytes": 8 + i,
              "allocs": 2, "alloc_bytes": 16 + i} for i, s in enumerate(stacks)]
    return {"format": "ringpool-preload", "version": 1, "pid": 7, "exe": "/bin/x",
            "taken_at": "2026-11-26T04:20:00Z", "reason": "exit",
            "totals": {"blocks": count, "bytes": sum(s["bytes"] for s in sites), "allocs": 2 * count},
            "modules": [], "stack_depth": 8, "frames": frames, "stacks": stacks, "sites": sites}


@pytest.mark.parametrize("fmt", PROFILE_FORMATS)
def test_a_profile_export_reads_the_report_once(fmt: str, write_report: WriteReport, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The profile takes alloc_bytes from the parsed report: it read the file a second time.
    path = write_report("r.json", many_stacks())
    reads: list[str] = []
    read_bytes = schema.read_bytes

    def counted(name: str, *args: Any, **kwargs: Any) -> bytes:
        reads.append(name)
        return read_bytes(name, *args, **kwargs)

    monkeypatch.setattr(schema, "read_bytes", counted)
    out = tmp_path / f"out.{fmt}"
    assert main(["show", path, "--by", "stack", "--format", fmt, "-o", str(out)]) == 0
    assert reads == [path]


@pytest.mark.parametrize("fmt", PROFILE_FORMATS)
def test_a_profile_export_looks_each_frame_up_a_few_times(fmt: str, write_report: WriteReport, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # 400 stacks of 8 frames name 16 distinct frames 3,200 times: the exports looked a
    # frame up by value (its hash) at every place, several times over.
    path = write_report("r.json", many_stacks())
    hashed: list[model.Frame] = []
    frame_hash = model.Frame.__hash__

    def counted(self: model.Frame) -> int:
        hashed.append(self)
        return frame_hash(self)

    monkeypatch.setattr(model.Frame, "__hash__", counted)
    out = tmp_path / f"out.{fmt}"
    assert main(["show", path, "--by", "stack", "--format", fmt, "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert 0 < len(hashed) <= 8 * DISTINCT_FRAMES, len(hashed)
