"""Helpers of the export tests: report fixtures with whole stacks, and the independent readers."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from _audit_testlib import c_compiler

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]
BASE = 0x555555554000
PROGRAMS = Path(__file__).resolve().parent / "programs"


def build_plain_leaks(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/audit/programs/plain_leaks.c built with -g and frame pointers, for symbolizing."""
    out = tmp_path_factory.mktemp("export") / "plain_leaks"
    subprocess.run([c_compiler(), "-std=c11", "-O0", "-g", "-fno-omit-frame-pointer", str(PROGRAMS / "plain_leaks.c"),
                    "-o", str(out)], check=True)
    return str(out)


def function_offsets(binary: str) -> dict[str, int]:
    """Function name -> address in the module (nm), for building stacks that symbolize."""
    out = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            found[parts[2]] = int(parts[0], 16)
    return found


def build_id(binary: str) -> str:
    """The GNU build id of binary (readelf), which the symbolizer checks against the report's."""
    out = subprocess.run(["readelf", "-n", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:", 1)[1].strip()
    raise AssertionError(f"{binary} has no build id")


def return_address(binary: str, caller: str, callee: str) -> int:
    """The address after caller's call of callee (objdump), as an unwinder would record it."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary], capture_output=True, text=True,
                         check=True).stdout
    body = out.split(f"<{caller}>:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    for i, line in enumerate(body):
        if "call" in line and f"<{callee}>" in line:
            return int(body[i + 1].split(":", 1)[0].strip(), 16)
    raise AssertionError(f"{caller} does not call {callee} in {binary}")


def stack_report(binary: str, sample_rate: float | None = None,
                 site_extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """An interposer report in the stack-table shape (docs/preload.md) whose frames lie in
    binary (tests/audit/programs/plain_leaks.c built with -g), so addr2line names them:

    make_table <- main   4 blocks, 400 bytes, 4 allocs
    make_name  <- main   2 blocks,  20 bytes, 2 allocs (called from another line of main)
    scratch    <- main   (freed: 0 blocks, 0 bytes, 10 allocs)
    and one stack whose outer frame is in no module (an absolute address).
    """
    fn = function_offsets(binary)
    frames = [[0, hex(fn["make_table"] + 8)], [0, hex(fn["make_name"] + 8)], [0, hex(fn["scratch"] + 8)],
              [0, hex(return_address(binary, "main", "make_table"))], [-1, "0x7f0000001234"],
              [0, hex(return_address(binary, "main", "make_name"))]]
    stacks = [[0, 3], [1, 5], [2, 3, 4]]
    sites: list[dict[str, Any]] = [
        {"module": binary, "offset": frames[0][1], "stack": 0, "blocks": 4, "bytes": 400, "allocs": 4},
        {"module": binary, "offset": frames[1][1], "stack": 1, "blocks": 2, "bytes": 20, "allocs": 2},
        {"module": binary, "offset": frames[2][1], "stack": 2, "blocks": 0, "bytes": 0, "allocs": 10},
    ]
    for site in sites:
        name = {0: "make_table", 1: "make_name", 2: "scratch"}[int(site["stack"])]
        site.update((site_extra or {}).get(name, {}))
    doc: dict[str, Any] = {
        "format": "ringpool-preload", "version": 1, "pid": 99, "exe": binary,
        "taken_at": "2026-11-26T04:20:00Z", "reason": "exit",
        "totals": {"blocks": 6, "bytes": 420, "allocs": 16},
        "modules": [{"path": binary, "base": hex(BASE), "build_id": build_id(binary)}],
        "stack_depth": 64, "frames": frames, "stacks": stacks, "sites": sites,
    }
    if sample_rate is not None:
        doc["sample_rate"] = sample_rate
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ pprof
_PROFILE_CLASS: Any = None


def pprof_message_class(tmp_dir: Path) -> Any:
    """The Profile message class, from tests/audit/fixtures/pprof_profile.proto compiled by protoc."""
    global _PROFILE_CLASS
    if _PROFILE_CLASS is not None:
        return _PROFILE_CLASS
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.skip("protoc is absent (make setup-export installs protobuf-compiler)")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]

    out = tmp_dir / "profile.desc"
    subprocess.run([protoc, f"-I{FIXTURES}", f"--descriptor_set_out={out}", "pprof_profile.proto"], check=True)
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    _PROFILE_CLASS = message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))
    return _PROFILE_CLASS


def decode_pprof(data: bytes, tmp_dir: Path) -> Any:
    message = pprof_message_class(tmp_dir)()
    message.ParseFromString(gzip.decompress(data))
    return message


def pprof_stacks(prof: Any) -> dict[tuple[str, ...], list[int]]:
    """Stack (function names, leaf first) -> values, read through the decoded tables."""
    strings = list(prof.string_table)
    functions = {f.id: strings[f.name] for f in prof.function}
    locations = {loc.id: loc for loc in prof.location}
    out = {}
    for sample in prof.sample:
        names = tuple(functions[locations[i].line[0].function_id] for i in sample.location_id)
        out[names] = list(sample.value)
    return out


def pprof_tool() -> str:
    """The pprof binary built by `make pprof-tool` (or $RINGPOOL_PPROF); skips when go is absent."""
    env = os.environ.get("RINGPOOL_PPROF")
    candidates = [env] if env else []
    candidates += [str(ROOT / "build" / "tools" / "pprof"), shutil.which("pprof") or ""]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    if shutil.which("go") is None:
        pytest.skip("go is absent: `pprof -top` cannot be built (make setup-export installs golang-go "
                    "and golang-github-google-pprof-dev)")
    pytest.fail("go is installed but the pprof tool is not built: run `make pprof-tool`")
    raise AssertionError  # not reached


def pprof_top(tool: str, path: str, *extra: str) -> dict[str, int]:
    """Function -> flat value from `pprof -top`, in bytes (or counts) as printed with -unit=byte."""
    proc = subprocess.run([tool, "-top", "-symbolize=none", "-unit=B", "-nodecount=1000", *extra, path],
                          capture_output=True, text=True, check=True, timeout=120,
                          env={**os.environ, "PPROF_TMPDIR": str(Path(path).parent), "HOME": str(Path(path).parent)})
    flat: dict[str, int] = {}
    rows = False
    for line in proc.stdout.splitlines():
        if line.strip().startswith("flat"):
            rows = True
            continue
        if rows and line.strip():
            parts = line.split(None, 5)
            value = parts[0].rstrip("B")
            flat[parts[5]] = int(float(value)) if value != "0" else 0
    return flat
