"""``--format speedscope``: speedscope's JSON file format (one file, several profiles).

One sampled profile per recorded value: outstanding bytes (unit ``bytes``),
outstanding blocks, allocations (unit ``none``) and, when recorded, allocated
bytes. Frames are shared; each sample is a stack of frame indices from the
outermost frame to the innermost, weighted by the value. Samples of weight
zero are left out.
"""

from __future__ import annotations

import json
from typing import Any

from audit import __version__
from audit.export.model import SHOWN_ORDER, TITLES, Frame, exact

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
# speedscope's units: a count is "none".
UNITS = {"inuse_space": "bytes", "inuse_objects": "none", "alloc_objects": "none", "alloc_space": "bytes"}


class SpeedscopeFormatter:
    def render(self, table: Any) -> str:
        from audit.export import profile_of

        prof = profile_of(table)
        # A frame is as fine as --by: a line only for sites and stacks, a file down to functions.
        with_file = prof.by in ("site", "stack", "function", "file")
        with_line = prof.by in ("site", "stack")

        def entry(key: tuple[Any, ...]) -> dict[str, Any]:
            made: dict[str, Any] = {"name": key[0]}
            if key[1]:
                made["file"] = key[1]
            if key[2]:
                made["line"] = key[2]
            return made

        frames, numbered, indexes = prof.frame_table(
            lambda frame: (frame.label(prof.by), frame.file if with_file else None,
                           frame.line if with_line else None),
            entry)
        stacks = list(map(indexes, numbered))
        known = {name: i for i, name, _ in prof.value_types()}
        suffix = f" (estimated, sampled at {prof.sample_rate:g}/byte)" if prof.sample_rate else ""
        profiles = []
        for name in SHOWN_ORDER:
            if name not in known:
                continue
            title, unit = TITLES[name], UNITS[name]
            samples, weights = [], []
            for stack, sample in zip(stacks, prof.samples):
                weight = sample.values[known[name]]
                if weight > 0:
                    samples.append(stack)
                    weights.append(exact(weight))
            profiles.append({"type": "sampled", "name": f"{prof.name}: {title}{suffix}", "unit": unit,
                             "startValue": 0, "endValue": sum(weights),
                             "samples": samples, "weights": weights})
        doc = {"$schema": SCHEMA_URL, "shared": {"frames": frames}, "profiles": profiles,
               "name": prof.name, "activeProfileIndex": 0,
               "exporter": f"ringpool-audit {__version__}"}
        return json.dumps(doc, separators=(",", ":")) + "\n"
