"""``--format folded``: ``outer;...;inner value`` lines (flamegraph.pl, speedscope, inferno).

From reports, every line is a whole stack (outermost frame first) with its
outstanding bytes; pool reports give ``pool;child;tag``. Tables that do not
come from reports (``diff``, ``bench``) keep their one line per row.
"""

from __future__ import annotations

import re
from typing import Any

from audit.export.model import INUSE_SPACE
from audit.printable import printable


# A space (or another whitespace character) that a flame graph tool could read as the
# separator before the count: at either end of a frame (a tool may trim the line), or
# before a digit (flamegraph.pl reads "a;f 12 40" as a differential line: stack "a;f",
# counts 12 and 40).
_LOOSE_SPACE = re.compile(r"\A\s|\s(?=[0-9])|\s\Z")


def _hex_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def frame_text(label: str) -> str:
    """A frame as folded text, one-to-one (docs/cli.md, "Names in text output"): written by
    audit.printable's rule (one line per stack; a backslash is ``\\\\``, so no name writes
    the escapes below), then ``;`` (the frame separator) as ``\\x3b``, and a whitespace
    character at either end of the frame or before a digit as ``\\xNN``/``\\uNNNN`` (other
    spaces stay: the tools split the count off at the line's last space). A frame with
    no name is ``_``, so a name that is ``_`` alone is ``\\x5f``."""
    text = printable(label)
    if ";" in text:
        text = text.replace(";", "\\x3b")
    text = _LOOSE_SPACE.sub(_hex_escape, text)
    if text == "_":
        return "\\x5f"
    return text or "_"


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
        distinct, stacks = prof.numbered()
        texts: list[str | None] = [None] * len(distinct)   # each frame's text once, when used

        def text_of(n: int) -> str:
            text = texts[n]
            if text is None:
                text = texts[n] = frame_text(distinct[n].label(prof.by))
            return text

        for sample, numbers in zip(prof.samples, stacks):
            value = sample.values[INUSE_SPACE]
            if value <= 0:
                continue
            try:
                frames = ";".join(map(texts.__getitem__, reversed(numbers)))  # type: ignore[arg-type]
            except TypeError:       # a frame not written before
                frames = ";".join(map(text_of, reversed(numbers)))
            number = value if isinstance(value, int) else round(value)
            lines.append(f"{frames} {number}")
        return "".join(line + "\n" for line in lines)
