"""``--format folded``: ``outer;...;inner value`` lines (flamegraph.pl, speedscope, inferno).

From reports, every line is a whole stack (outermost frame first) with its
outstanding bytes; pool reports give ``pool;child;tag``. Tables that do not
come from reports (``diff``, ``bench``) keep their one line per row.
"""

from __future__ import annotations

from typing import Any

from audit.export.model import INUSE_SPACE
from audit.printable import printable


def frame_text(label: str) -> str:
    """A frame as folded text: written by audit.printable's rule (one line per stack), then
    ``;`` (the frame separator) as ``:`` and a space (before the count) as ``_``; an empty
    frame is ``_``."""
    return printable(label).replace(";", ":").replace(" ", "_") or "_"


class FoldedFormatter:
    def __init__(self, rows_formatter: Any = None) -> None:
        self._rows = rows_formatter

    def render(self, table: Any) -> str:
        from audit.export import profile_of, source

        src = getattr(table, "source", None)
        if self._rows is not None and not (isinstance(src, source.Source) and source.readable(src)):
            return str(self._rows.render(table))
        prof = profile_of(table)
        lines = []
        for sample in prof.samples:
            value = sample.values[INUSE_SPACE]
            if value <= 0:
                continue
            frames = ";".join(frame_text(f.label(prof.by)) for f in reversed(sample.stack))
            number = int(value) if float(value).is_integer() else round(value)
            lines.append(f"{frames} {number}")
        return "".join(line + "\n" for line in lines)
