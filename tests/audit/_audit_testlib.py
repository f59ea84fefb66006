"""Report builders shared by the audit tests, and what they build C programs with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def c_compiler() -> str:
    """The compiler the tests build their C programs with: $CC (default cc), else gcc."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    assert cc is not None, "a C compiler is needed (make setup-sys installs gcc)"
    return cc


def static_library() -> Path:
    """The static libringpool the tests link against ($RINGPOOL_LIB_A, else make lib's)."""
    library = Path(os.environ.get("RINGPOOL_LIB_A", ROOT / "build" / "libringpool.a"))
    assert library.exists(), f"{library} is missing: run `make lib` first"
    return library


def report_doc(pool: str = "parser", tags: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid report (docs/report-format.md); totals follow the tags."""
    if tags is None:
        tags = [
            {"tag": "tokens", "blocks": 2, "bytes": 64, "peak_bytes": 4000, "allocs": 12},
            {"tag": "(untagged)", "blocks": 1, "bytes": 32, "peak_bytes": 32, "allocs": 5},
        ]
    doc: dict[str, Any] = {
        "format": "ringpool-snapshot",
        "version": 1,
        "pool": pool,
        "pid": 4242,
        "taken_at": "2026-11-26T04:20:00Z",
        "reason": "destroy",
        "backing": "malloc",
        "totals": {
            "blocks": sum(t["blocks"] for t in tags),
            "bytes": sum(t["bytes"] for t in tags),
            "peak_bytes": max([t["peak_bytes"] for t in tags] or [0]),
            "allocs": sum(t["allocs"] for t in tags),
        },
        "tags": tags,
    }
    doc.update(fields)
    return doc


def tag(name: str, blocks: int, nbytes: int, peak: int | None = None, allocs: int | None = None) -> dict[str, Any]:
    return {"tag": name, "blocks": blocks, "bytes": nbytes,
            "peak_bytes": nbytes if peak is None else peak,
            "allocs": blocks if allocs is None else allocs}


def chain_doc(depth: int) -> dict[str, Any]:
    """A snapshot whose children nest depth levels deep, one child per level."""
    doc = report_doc()
    node = doc
    for i in range(depth):
        child = report_doc(pool=f"c{i}")
        del child["format"], child["version"]
        node["children"] = [child]
        node = child
    return doc
