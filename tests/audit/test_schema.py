"""audit.schema: the one reader of report files (limits, one-line errors, extras kept)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from _audit_testlib import chain_doc, report_doc, tag
from allocator import Snapshot
from audit import schema
from audit.schema import Limits, PoolReport, ReportFormatError, TagStat


def _one_line(exc: BaseException, source: str) -> str:
    text = str(exc)
    assert "\n" not in text
    assert text.startswith(source + ": "), text
    return text


def test_importable_without_the_c_extension() -> None:
    # A finder that refuses cffi and the compiled module: the schema must not need them.
    code = (
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('cffi', '_cffi_backend', 'allocator._ringpool'):\n"
        "            raise ImportError('refused ' + name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "from audit import schema\n"
        "import json\n"
        f"r = schema.parse_snapshot(json.loads({json.dumps(report_doc())!r}), 'x')\n"
        "assert r.tags[0].tag == 'tokens'\n"
        "assert 'allocator' not in sys.modules and 'cffi' not in sys.modules\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_records_are_typed_and_children_walked() -> None:
    doc = report_doc(children=[report_doc(pool="kid", children=[report_doc(pool="grandkid")])])
    for child in doc["children"]:
        del child["format"], child["version"]
    del doc["children"][0]["children"][0]["format"], doc["children"][0]["children"][0]["version"]
    r = schema.parse_snapshot(doc, "src")
    assert isinstance(r, PoolReport) and r.source == "src"
    assert r.tags[0] == TagStat("tokens", 2, 64, 4000, 12)
    assert r.totals.reserved_bytes is None and r.extra == {}
    assert [p for p, _ in r.walk()] == ["parser", "parser/kid", "parser/kid/grandkid"]


def test_unknown_optional_fields_pass_through_and_round_trip() -> None:
    doc = report_doc()
    doc["sampling"] = {"rate": 0.0001, "estimated": True}
    doc["stacks"] = [{"id": 1, "frames": [["libfoo.so", "0x1a2b"], ["main", "x.c:3"]]}]
    doc["totals"]["estimated_bytes"] = 960000
    doc["tags"][0]["stack"] = 1
    doc["blocks"] = [{"address": "0x10", "size": 32, "tag": "tokens", "stack": 1},
                     {"address": "0x20", "size": 32, "tag": "tokens"},
                     {"address": "0x30", "size": 32, "tag": "(untagged)"}]
    r = schema.parse_snapshot(copy.deepcopy(doc), "x")
    assert r.extra == {"sampling": doc["sampling"], "stacks": doc["stacks"]}
    assert r.totals.extra == {"estimated_bytes": 960000}
    assert r.tags[0].extra == {"stack": 1} and r.tags[1].extra is None
    assert r.blocks is not None and r.blocks[0].extra == {"stack": 1}
    assert schema.to_dict(r) == doc
    assert json.loads(schema.dumps(r)) == doc
    assert schema.parse_snapshot(json.loads(schema.dumps(r)), "y") == r


def test_c_layout_is_kept_without_extras() -> None:
    r = schema.parse_snapshot(report_doc(), "x")
    text = schema.dumps(r)
    assert text.startswith('{"format": "ringpool-snapshot", "version": 1,\n  "pool": "parser"')
    assert json.loads(text) == report_doc()


@pytest.mark.parametrize("mutate, field, needle", [
    (lambda d: d["tags"][0].__setitem__("bytes", 10**400), "tags[0].bytes", "401 digits"),
    (lambda d: d["tags"][0].__setitem__("blocks", 2**64), "tags[0].blocks",
     "largest count"),
    (lambda d: d["totals"].__setitem__("bytes", 2**64), "totals.bytes", "largest count"),
    (lambda d: d["tags"][0].__setitem__("tag", "\ud800x"), "tags[0].tag", "lone surrogate"),
    (lambda d: d.__setitem__("pool", "\udfff"), "pool", "lone surrogate"),
    (lambda d: d["tags"][0].__setitem__("allocs", 1.5), "tags[0].allocs", "an integer"),
    (lambda d: d.__setitem__("stacks", [float("inf")]), "stacks[0]", "finite"),
    (lambda d: d.__setitem__("stacks", 2**70), "stacks", "out of range"),
    (lambda d: d.__setitem__("note", "\ud83d"), "note", "lone surrogate"),
    (lambda d: d["tags"][1].__setitem__("site", {"x": "\udc80"}), "tags[1].site.x",
     "lone surrogate"),
])
def test_out_of_range_values_name_the_field(mutate: Any, field: str, needle: str) -> None:
    doc = report_doc()
    mutate(doc)
    with pytest.raises(ReportFormatError) as info:
        schema.parse_snapshot(doc, "r.json")
    text = _one_line(info.value, "r.json")
    assert info.value.field == field and needle in text


def test_long_strings_and_deep_extras_are_refused() -> None:
    limits = Limits(max_text=100, max_nesting=5)
    doc = report_doc(pool="p" * 101)
    with pytest.raises(ReportFormatError, match="'pool': a string of 101 characters"):
        schema.parse_snapshot(doc, "r.json", limits=limits)
    deep: Any = 1
    for _ in range(10):
        deep = [deep]
    with pytest.raises(ReportFormatError, match="nested deeper than 5"):
        schema.parse_snapshot(report_doc(stacks=deep), "r.json", limits=limits)


def test_children_deeper_than_the_limit_are_refused() -> None:
    schema.parse_snapshot(chain_doc(100), "ok.json")
    with pytest.raises(ReportFormatError, match="nested deeper than 100 levels"):
        schema.parse_snapshot(chain_doc(101), "deep.json")


def test_a_3000_level_children_chain_is_one_line(tmp_path: Path) -> None:
    text = "".join('{"pool": "p", "children": [' for _ in range(3000)) + "]}" * 3000
    path = tmp_path / "chain.json"
    path.write_text(text)
    with pytest.raises(ReportFormatError) as info:
        schema.load_snapshot(path)
    assert "nested too deeply" in _one_line(info.value, str(path))


@pytest.mark.parametrize("text, needle", [
    ('{"a": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
    ("[" * 100000 + "]" * 100000, "must be a JSON object, which starts with '{', and this "
                                  "starts with '['"),
    ('{"a": ' + "9" * 5000 + "}", "more digits than this reader accepts"),
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('{"a": -Infinity}', "-Infinity is not a JSON number"),
    ("", "empty file"),
    ("\n  \n", "empty file"),
])
def test_json_that_python_cannot_take_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ReportFormatError) as info:
        schema.read_json(path)
    assert needle in _one_line(info.value, str(path))


def test_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def attempt() -> None:
        try:
            schema.read_bytes(fifo)
        except BaseException as exc:  # noqa: BLE001 -- recorded for the assertion
            result.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO hangs")
    assert isinstance(result[0], ReportFormatError)
    assert "is a FIFO, not a regular file" in _one_line(result[0], str(fifo))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_devices_are_refused(device: str) -> None:
    with pytest.raises(ReportFormatError, match="is a character device, not a regular file"):
        schema.read_bytes(device)


def test_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(report_doc()))
    size = path.stat().st_size
    assert schema.read_bytes(path, limits=Limits(max_bytes=size)) == path.read_bytes()
    with pytest.raises(ReportFormatError) as info:
        schema.read_bytes(path, limits=Limits(max_bytes=size - 1))
    assert "larger than the" in _one_line(info.value, str(path))


def _endless_pipe(first: bytes) -> tuple[int, int]:
    """A pipe holding ``first`` (at most the 64 KiB a pipe holds) whose writer stays open: a reader that asks for more
    than ``first`` waits forever (until the write end is closed)."""
    r, w = os.pipe()
    os.write(w, first)
    return r, w


@pytest.mark.parametrize("first, shown", [(b"\0" * 4096, "byte 0x00"), (b" \n\t[1, 2]", "'['"),
                                          (b"\xef\xbb\xbf{}", "byte 0xef"), (b"x" * 60000, "'x'")],
                         ids=["zeros", "array", "bom", "letters"])
def test_stdin_that_is_no_object_is_refused_at_its_first_byte(first: bytes, shown: str) -> None:
    # `show - < /dev/zero` read up to the 1 GiB limit before refusing: a report is a JSON
    # object, so its first byte after whitespace is "{" or the input is refused there.
    r, w = _endless_pipe(first)
    result: list[BaseException] = []

    def attempt() -> None:
        with open(r, "rb") as stdin:
            try:
                schema.read_bytes("-", stdin=stdin)
            except BaseException as exc:  # noqa: BLE001 -- recorded for the assertion
                result.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(60)
    os.close(w)                    # unblocks a reader that went on reading
    worker.join()
    assert result and isinstance(result[0], ReportFormatError), result
    text = _one_line(result[0], "<stdin>")
    assert text.endswith("a report must be a JSON object, which starts with '{', and this "
                         f"starts with {shown}"), text


def test_a_file_that_is_no_object_is_refused_at_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "zeros.json"
    with open(path, "wb") as f:
        f.truncate(64 << 20)       # sparse: 64 MiB of zero bytes
    with pytest.raises(ReportFormatError) as info:
        schema.read_bytes(path)
    assert "not a report: a report must be a JSON object" in _one_line(info.value, str(path))
    # whitespace first, then an object: read whole
    path.write_bytes(b" \r\n\t" * 40000 + json.dumps(report_doc()).encode())
    assert schema.read_json(path) == report_doc()


def test_show_of_endless_stdin_stops_at_its_first_byte() -> None:
    r, w = _endless_pipe(b"\0" * 65536)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "audit", "show", "-"], stdin=r,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(r)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("show - read past the first bytes of a stream that is not a report")
    finally:
        os.close(w)
    assert proc.returncode == 1 and out == "", (proc.returncode, out, err)
    assert err.count("\n") == 1 and "<stdin>: not a report" in err, err


def test_stdin_is_read_with_the_cap(tmp_path: Path) -> None:
    import io
    data = json.dumps(report_doc()).encode()
    assert schema.read_json("-", stdin=io.BytesIO(data)) == report_doc()
    with pytest.raises(ReportFormatError, match="<stdin>: more than 10 bytes"):
        schema.read_bytes("-", stdin=io.BytesIO(data), limits=Limits(max_bytes=10))


def test_file_names_with_newlines_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a\nb.json"
    path.write_text("{")
    with pytest.raises(ReportFormatError) as info:
        schema.read_json(path)
    assert "\n" not in str(info.value) and "a\\nb.json" in str(info.value)


def test_messages_cut_long_values() -> None:
    doc = report_doc()
    doc["tags"][0]["tag"] = ["x" * 10000]
    with pytest.raises(ReportFormatError) as info:
        schema.parse_snapshot(doc, "r.json")
    assert len(str(info.value)) < 200


def test_big_report_fast_path_matches_slow_path() -> None:
    tags = [tag(f"t{i}", i % 3, i * 8) for i in range(2000)]
    tags[1500]["site"] = "x.c:1"
    doc = report_doc(tags=tags)
    r = schema.parse_snapshot(doc, "x")
    assert len(r.tags) == 2000 and r.tags[1500].extra == {"site": "x.c:1"}
    assert schema.to_dict(r) == doc
    doc["tags"][1999]["tag"] = "t3"
    with pytest.raises(ReportFormatError, match=r"'tags\[1999\].tag': tag 't3' is listed twice"):
        schema.parse_snapshot(doc, "x")


def _chain_text(depth: int, leaf_extra: str = "") -> str:
    """chain_doc(depth) as JSON text, written without json.dumps' recursion."""
    def body(pool: str) -> str:
        doc = report_doc(pool=pool)
        del doc["format"], doc["version"]
        return json.dumps(doc)[1:-1]
    head = '{"format": "ringpool-snapshot", "version": 1, ' + body("parser")
    inner = "".join(', "children": [{' + body(f"c{i}") for i in range(depth))
    return head + inner + leaf_extra + "}]" * depth + "}"


def test_children_deeper_than_the_recursion_limit_with_a_raised_limit() -> None:
    # the reader recursed a frame per level of child pools: with a raised max_depth a
    # report of 5,000 levels raised RecursionError; it reads any depth memory allows now
    depth = 5000
    assert depth > sys.getrecursionlimit()
    report = schema.parse_snapshot(chain_doc(depth), "deep.json", limits=Limits(max_depth=depth))
    paths = [path for path, _ in report.walk_paths()]
    assert len(paths) == depth + 1 and paths[-1][-1] == f"c{depth - 1}"
    assert report == schema.parse_snapshot(chain_doc(depth), "deep.json",
                                           limits=Limits(max_depth=depth))
    assert repr(report).count("PoolReport(") == depth + 1
    assert schema.dumps(report).count('"pool": "c') == depth
    with pytest.raises(ReportFormatError) as info:
        schema.parse_snapshot(chain_doc(depth), "deep.json", limits=Limits(max_depth=depth - 1))
    assert info.value.field == "children[0]." * (depth - 1) + "children"
    assert "nested deeper than 4999 levels" in _one_line(info.value, "deep.json")


def test_a_deep_pools_bad_field_is_named_by_its_place() -> None:
    doc = chain_doc(3000)
    node = doc
    while "children" in node:
        node = node["children"][0]
    node["sampling"] = {"rate": [1, 2**70]}
    with pytest.raises(ReportFormatError) as info:
        schema.parse_snapshot(doc, "deep.json", limits=Limits(max_depth=3000))
    assert info.value.field == "children[0]." * 3000 + "sampling.rate[1]"


def test_a_file_nested_deeper_than_the_json_module_goes_is_read_with_a_raised_limit(
        tmp_path: Path) -> None:
    # the json module recurses a level per level of JSON: a report of 5,000 levels of
    # child pools could not be read whatever the limits; past max_depth it is refused
    # with the pools' message, past the JSON such a report can have with "nested too deeply"
    path = tmp_path / "deep.json"
    path.write_text(_chain_text(5000))
    report = schema.load_snapshot(path, limits=Limits(max_depth=5000))
    assert report == schema.parse_snapshot(chain_doc(5000), str(path),
                                           limits=Limits(max_depth=5000))
    with pytest.raises(ReportFormatError, match="nested deeper than 4990 levels"):
        schema.load_snapshot(path, limits=Limits(max_depth=4990))
    with pytest.raises(ReportFormatError, match=r"JSON nested too deeply for this reader "
                                                r"\(more than 8068 levels\)"):
        schema.load_snapshot(path, limits=Limits(max_depth=4000))
    with pytest.raises(ReportFormatError) as info:
        schema.load_snapshot(path)
    assert "JSON nested too deeply" in _one_line(info.value, str(path))
    # a value the reader does not know, nested past what a report may have
    path.write_text(_chain_text(3000, ', "x": ' + "[" * 200 + "]" * 200))
    with pytest.raises(ReportFormatError) as info:
        schema.load_snapshot(path, limits=Limits(max_depth=3000, max_nesting=100))
    assert "JSON nested too deeply for this reader (more than 6104 levels)" in \
        _one_line(info.value, str(path))


@pytest.mark.parametrize("text", [
    "[" * 3000 + "1, " + "]" * 3000,
    '{"a": ' * 3000 + "tru" + "}" * 3000,
    '{"a": ' * 3000 + "1" + "}" * 2999,
    "[" * 3000 + "]" * 3000 + "x",
    '{"a": ' * 3000 + '"\x01"' + "}" * 3000,
], ids=["comma-before-close", "not-a-literal", "unclosed", "extra-data", "control-character"])
def test_deep_json_that_is_not_json_is_one_line(text: str) -> None:
    with pytest.raises(ReportFormatError) as info:
        schema.decode_json(text.encode(), "bad.json", max_nesting=10**4)
    assert "invalid JSON: " in _one_line(info.value, "bad.json")


def test_deep_json_decodes_as_the_json_module_would() -> None:
    value = schema.decode_json(b'{"a": [' + b"[" * 3000 + b'{"b": -1.5e3, "b": "\\u00e9"}, '
                               + b"1" + b"]" * 3000 + b', null, true, false, 12]}', "x.json",
                               max_nesting=3003)
    inner = value["a"][0]
    for _ in range(2999):
        (inner,) = inner[:1] if len(inner) == 1 else (inner[0],)
    assert inner == [{"b": "é"}, 1] and value["a"][1:] == [None, True, False, 12]
    with pytest.raises(ReportFormatError, match=r"nested too deeply for this reader \(more "
                                                r"than 3002 levels\)"):
        schema.decode_json(b"[" * 3003 + b"]" * 3003, "x.json", max_nesting=3002)
    with pytest.raises(ReportFormatError, match="NaN is not a JSON number"):
        schema.decode_json(b"[" * 3000 + b"NaN" + b"]" * 3000, "x.json", max_nesting=10**4)


# Every error of the JSON decoding, on both of its paths: the json module's (a shallow
# document) and the reader's own decoder without recursion (a document nested deeper than
# the json module goes, read with a raised limit). Each is the same one-line message on
# both; a document cut short was "truncated JSON" on the first path only.
_HEAD = '{"format": "ringpool-snapshot", "version": 1, "x": '
_DEEP = Limits(max_nesting=10_000)


def _document(inner: str, levels: int, closed: bool = True) -> str:
    return _HEAD + "[" * levels + inner + ("]" * levels + "}" if closed else "")


@pytest.mark.parametrize("levels", [1, 3000], ids=["json-module", "deep"])
@pytest.mark.parametrize("inner, closed, problem", [
    ("1, ", False, "truncated JSON (the object never closes): Expecting value (line 1, column {end})"),
    ("tru", True, "invalid JSON: Expecting value (line 1, column {at})"),
    ("1 2", True, "invalid JSON: Expecting ',' delimiter (line 1, column {two})"),
    ("NaN", True, "invalid JSON: NaN is not a JSON number"),
    ("-Infinity", True, "invalid JSON: -Infinity is not a JSON number"),
    ("9" * 5000, True, "invalid JSON: an integer has more digits than this reader accepts "
                       f"({sys.get_int_max_str_digits()})"),
], ids=["truncated", "not-a-literal", "no-delimiter", "nan", "minus-infinity", "digits"])
def test_each_json_error_is_the_same_message_on_both_paths(
        tmp_path: Path, levels: int, inner: str, closed: bool, problem: str) -> None:
    text = _document(inner, levels, closed)
    at = len(_HEAD) + levels
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ReportFormatError) as info:
        Snapshot.load(path, limits=_DEEP)
    assert str(info.value) == f"{path}: " + problem.format(end=len(text) + 1, at=at + 1,
                                                          two=at + 3)


@pytest.mark.parametrize("levels", [1, 3000], ids=["json-module", "deep"])
def test_out_of_memory_decoding_is_the_same_message_on_both_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, levels: int) -> None:
    def no_memory(*args: object, **kwargs: object) -> Any:
        raise MemoryError
    if levels == 1:
        monkeypatch.setattr(json, "loads", no_memory)
    else:               # the json module refuses the depth; the reader's own decoder runs
        monkeypatch.setattr(schema, "_scanstring", no_memory)
    text = _document("1", levels)
    path = tmp_path / "big.json"
    path.write_text(text)
    with pytest.raises(ReportFormatError) as info:
        Snapshot.load(path, limits=_DEEP)
    assert str(info.value) == f"{path}: out of memory decoding {len(text)} bytes of JSON"


def test_too_deep_is_not_taken_for_a_decoding_error(tmp_path: Path) -> None:
    # ReportFormatError is a ValueError: raised inside the decoding, it must pass through
    # the handler of the decoders' ValueErrors unchanged
    path = tmp_path / "deep.json"
    path.write_text(_document("1", 3000))
    with pytest.raises(ReportFormatError) as info:
        Snapshot.load(path)
    assert str(info.value) == f"{path}: invalid report: JSON nested too deeply for this reader"
    limits = Limits(max_nesting=2000)
    with pytest.raises(ReportFormatError) as info:
        Snapshot.load(path, limits=limits)
    assert str(info.value) == (f"{path}: invalid report: JSON nested too deeply for this "
                               f"reader (more than {schema.json_nesting(limits)} levels)")
