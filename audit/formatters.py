"""Output formats behind one small interface.

A command builds a :class:`Table` (column keys and headers, rows as dicts, and
the column a ``folded`` line carries as its value) and hands it to the formatter
chosen by ``--format``. Every formatter returns the full text, ending in a
newline, so the caller decides where it goes (stdout or ``--output FILE``).
"""

from __future__ import annotations

import csv
import io
import json
import json.encoder
import math
import re
import unicodedata
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable, Protocol

from audit.export.folded import frame_text
from audit.printable import is_printable, printable, printable_escaped

Row = dict[str, Any]

_json_string = json.encoder.encode_basestring_ascii   # what json.dumps writes a string as


@dataclass
class Column:
    key: str
    header: str
    fmt: str | None = None  # a format spec for numbers in text tables, e.g. ".1f"
    # The cells are pool paths (audit.schema.path_text): their backslashes are escapes
    # already, and text tables write them by audit.printable's rule without doubling them.
    path: bool = False


@dataclass
class Table:
    """What every formatter renders."""

    columns: list[Column]
    rows: list[Row]
    title: str = ""
    # ``folded``: the frames of a row (outermost first) and the value column.
    frames: Callable[[Row], list[str]] = field(default=lambda row: [str(row.get("tag", ""))])
    value_key: str = "bytes"
    # Extra top-level fields for ``json`` (e.g. the reports that were read).
    meta: dict[str, Any] = field(default_factory=dict)
    # ``json`` row fields beyond the columns (keys absent from a row are skipped).
    json_extra: list[str] = field(default_factory=list)
    # The reports the rows came from (an audit.export.source.Source), for the profile formats.
    source: Any = None


class Formatter(Protocol):
    def render(self, table: Table) -> str | bytes: ...  # bytes: a binary format (pprof)


def _cell(value: Any, fmt: str | None) -> str:
    if value is None:
        return ""
    if fmt is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return str(value)


# What Markdown (CommonMark, GitHub's tables) reads as markup inside a table cell: code
# spans, emphasis (``_`` only where it can open or close one, not inside a word), links,
# HTML tags and entities, strikethrough, the cell separator, and a backslash before
# punctuation (audit.printable's escapes are a backslash before a letter, which
# Markdown shows as it is, or a doubled backslash, which it would show single).
_MARKDOWN = re.compile(r"[`*\[\]<&~|]|\\(?=[!-/:-@\[-`{-~])|(?<![^\W_])_|_(?![^\W_])")


def _escape(text: str, pipe: bool, path: bool = False) -> str:
    """One line per row: names written by audit.printable's rule (a pool path's
    backslashes, escapes already, written once); in Markdown tables, markup characters
    backslash-escaped as well, so the rendered cell reads as the table format's text
    (``<module>`` stays text, ``__init__`` is not bold)."""
    text = printable_escaped(text) if path else printable(text)
    return _MARKDOWN.sub(r"\\\g<0>", text) if pipe else text


def _header(text: str, pipe: bool) -> str:
    """A column header (the command's own words, or a report's label)."""
    text = printable(text)
    return text.replace("|", "\\|") if pipe and "|" in text else text


def _width(text: str) -> int:
    """Terminal columns of text: East Asian wide characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


_NUMBER_TYPES = {int, float}


def _text_cells(values: list[Any], fmt: str | None, pipe: bool, path: bool = False) -> list[str]:
    cells = values if set(map(type, values)) == {str} else [_cell(v, fmt) for v in values]
    joined = "".join(cells)
    if not is_printable(joined) or (pipe and _MARKDOWN.search(joined) is not None):
        cells = [_escape(c, pipe, path) for c in cells]
    return cells


def _pad_width(widths: list[int]) -> int:
    """The width a text column is padded to: its widest cell, unless that is wider than
    8 times the column's mean cell width plus 1024 columns (one 1 MB tag among short
    ones would pad every row to 1 MB): then the widest cell within that bound, wider
    cells sticking out of their rows. The padding is at most 8 times the column's text
    plus 1024 columns a row."""
    if not widths:
        return 0
    widest = max(widths)
    bound = (8 * sum(widths)) // len(widths) + 1024
    if widest <= bound:
        return widest
    return max((w for w in widths if w <= bound), default=0)


class _Aligned:
    """A text table: numbers right-aligned, text left-aligned, one line per row.

    ``style`` is "simple" (columns two spaces apart, a dashed rule under the
    header), "github" or "pipe" (Markdown tables whose rule carries the
    alignment). Linear in the number of cells, with the loops in C: each row
    is one ``str.format`` call, so a million rows take a few seconds. A text
    column is padded to its widest cell, unless one long name would pad every
    other row to its length (see _pad_width): the table stays linear in the
    size of its cells."""

    def __init__(self, style: str, heading: Callable[[str], str]) -> None:
        self._style = style
        self._heading = heading

    def render(self, table: Table) -> str:
        pipe = self._style != "simple"
        rows = table.rows
        specs: list[str] = []          # one str.format field per column
        args: list[list[Any]] = []     # the values each field formats
        headers: list[str] = []
        right: list[bool] = []
        widths: list[int] = []
        for col in table.columns:
            try:
                values = list(map(itemgetter(col.key), rows))
            except KeyError:
                values = [row.get(col.key) for row in rows]
            kinds = set(map(type, values))
            numeric = bool(kinds - {type(None)}) and kinds <= _NUMBER_TYPES | {type(None)}
            header = _header(col.header, pipe)
            least = max(_width(header), 3 if pipe else 0)
            if numeric and type(None) not in kinds:
                # Formatted length grows with magnitude: the extremes give the width.
                spec = col.fmt or ""
                width = max(least, len(format(min(values), spec)), len(format(max(values), spec)))
                sign = spec[:1] if spec[:1] in ("+", "-", " ") else ""
                field = f"{{:>{sign}{width}{spec[len(sign):]}}}"
            elif numeric:
                values = [_cell(v, col.fmt) for v in values]
                width = max(least, max(map(len, values)))
                field = f"{{:>{width}}}"
            else:
                values = _text_cells(values, col.fmt, pipe, col.path)
                if "".join(values).isascii():
                    width = max(least, _pad_width(list(map(len, values))))
                    field = f"{{:<{width}}}"
                else:                  # wide characters: pad by display width
                    width = max(least, _pad_width(list(map(_width, values))))
                    values = [v + " " * max(width - _width(v), 0) for v in values]
                    field = "{}"
            specs.append(field)
            args.append(values)
            headers.append(header.rjust(width) if numeric
                           else header + " " * (width - _width(header)))
            right.append(numeric)
            widths.append(width)
        if self._style == "simple":
            line = "  ".join(specs)
            lines = ["  ".join(headers), "  ".join("-" * w for w in widths)]
            lines += map(line.format, *args) if args else []
            if right and not right[-1]:                  # no trailing blanks
                lines = list(map(str.rstrip, lines))
        else:
            def rule(width: int, numeric: bool) -> str:
                if numeric:
                    return "-" * (width + 1) + ":"
                return (":" if self._style == "pipe" else "-") + "-" * (width + 1)
            line = "| " + " | ".join(specs) + " |"
            lines = ["| " + " | ".join(headers) + " |",
                     "|" + "|".join(rule(w, r) for w, r in zip(widths, right)) + "|"]
            lines += map(line.format, *args) if args else []
        heading = self._heading(_escape(table.title, pipe)) if table.title else ""
        return heading + "\n".join(lines) + "\n"


class _Json:
    def render(self, table: Table) -> str:
        doc: dict[str, Any] = dict(table.meta)
        if table.title:
            doc["title"] = table.title
        columns = [c.key for c in table.columns]
        doc["rows"] = [{**{k: row.get(k) for k in columns},
                        **{k: row[k] for k in table.json_extra if k in row}}
                       for row in table.rows]
        return indented_json(doc) + "\n"


class _Unsupported(Exception):
    """A value indented_json leaves to the json module."""


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value == math.inf:
        return "Infinity"
    if value == -math.inf:
        return "-Infinity"
    return float.__repr__(value)


class _Indenter:
    """json.dumps(value, indent=2)'s text for dicts with text keys, lists, tuples, text,
    ints, floats, booleans and None (exactly those types), with the loops in fewer steps
    than the json module's Python encoder takes (which indent uses): a container met again
    at the same depth (a frame shared by many rows) is written once."""

    def __init__(self) -> None:
        self.memo: dict[tuple[int, int], str] = {}

    def value(self, v: Any, level: int) -> str:
        t = type(v)
        if t is str:
            return _json_string(v)
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if t is int:
            return int.__repr__(v)
        if t is float:
            return _float_text(v)
        if t is dict or t is list or t is tuple:
            key = (id(v), level)
            text = self.memo.get(key)
            if text is None:
                text = self.memo[key] = self.dict(v, level) if t is dict else self.list(v, level)
            return text
        raise _Unsupported

    # Each container's text is joined once from its items' (brackets and separators
    # around them, not added with +, which copied the items' text each time: a table of
    # 100,000 stacks is 250 MB of json).
    def list(self, v: Any, level: int) -> str:
        if not v:
            return "[]"
        inner = "\n" + "  " * (level + 1)
        value = self.value
        items = [value(x, level + 1) for x in v]
        items[0] = "".join(("[", inner, items[0]))
        items[-1] = "".join((items[-1], "\n", "  " * level, "]"))
        return ("," + inner).join(items)

    def dict(self, v: dict[Any, Any], level: int) -> str:
        if not v:
            return "{}"
        between = ",\n" + "  " * (level + 1)
        value = self.value
        parts: list[str] = []
        for k, x in v.items():
            if type(k) is not str:
                raise _Unsupported
            parts += (between, _json_string(k), ": ", value(x, level + 1))
        parts[0] = "{" + between[1:]       # no comma before the first item
        parts += ("\n", "  " * level, "}")
        return "".join(parts)


def indented_json(doc: Any) -> str:
    """``json.dumps(doc, indent=2)``, the same text, faster on big tables."""
    try:
        return _Indenter().value(doc, 0)
    except (_Unsupported, RecursionError):
        return json.dumps(doc, indent=2, sort_keys=False)


#: How a text cell starts that a spreadsheet program runs as a formula (OWASP "CSV
#: injection"): =, +, -, @, a tab or a carriage return. Such a cell is written with a
#: single quote in front, which the program shows as text; so is a cell that starts with
#: a quote already, so that a reader gets the name back by removing one leading quote
#: from every text cell that has one. Numbers are written as they are (a diff's -15 stays
#: a number).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_text(cell: str) -> str:
    """A text cell of the ``csv`` format: ``cell``, or ``'`` + ``cell`` when a spreadsheet
    would run it as a formula (or it starts with ``'``)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def csv_name(cell: str) -> str:
    """The name a text cell of the ``csv`` format was written from (:func:`csv_text`
    undone)."""
    return cell[1:] if cell.startswith("'") else cell


class _Csv:
    """RFC 4180 cells, lines ending in ``\\n``. Python's writer quotes a cell holding the
    delimiter, a quote or ``\\n``, not one holding a lone ``\\r``, which a reader takes for
    a line end: a row with such a cell has its text cells quoted. Text cells a
    spreadsheet would run as formulas are guarded (:func:`csv_text`)."""

    def render(self, table: Table) -> str:
        text = self._write(table, careful=False)
        return self._write(table, careful=True) if "\r" in text else text

    @staticmethod
    def _write(table: Table, careful: bool) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow([c.key for c in table.columns])
        for row in table.rows:
            cells = [_csv_cell(row.get(c.key)) for c in table.columns]
            if careful and any(isinstance(v, str) and "\r" in v for v in cells):
                quoted.writerow([v if isinstance(v, (int, float)) and not isinstance(v, bool)
                                 else str(v) for v in cells])
            else:
                writer.writerow(cells)
        return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return csv_text(value)
    return value


class _Folded:
    """``frame;frame;... value`` lines, the input of flamegraph.pl and speedscope; rows whose
    value is negative (diff's shrinking rows) and suppressed rows are left out."""

    def render(self, table: Table) -> str:
        lines = []
        for row in table.rows:
            value = row.get(table.value_key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if value < 0:       # a count is not negative: flamegraph.pl, inferno and speedscope
                continue        # reject "-600" lines, as the flame graph leaves such rows out
            if row.get("suppressed") is True:
                continue        # as the flame graph and the leak gate leave them out
            frames = [frame_text(f) for f in table.frames(row)]
            number = int(value) if float(value).is_integer() else value
            lines.append(f"{';'.join(frames)} {number}")
        return "".join(line + "\n" for line in lines)


FORMATTERS: dict[str, Formatter] = {
    "table": _Aligned("simple", lambda t: f"{t}\n\n"),
    "github": _Aligned("github", lambda t: f"### {t}\n\n"),
    "markdown": _Aligned("pipe", lambda t: f"**{t}**\n\n"),
    "json": _Json(),
    "csv": _Csv(),
    "folded": _Folded(),
}
# pprof, speedscope, html, and whole-stack folded: audit/export.
from audit.export import register as _register_profile_formats  # noqa: E402

_register_profile_formats(FORMATTERS)
FORMAT_NAMES = list(FORMATTERS)


def render(table: Table, fmt: str) -> str | bytes:
    try:
        formatter = FORMATTERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMAT_NAMES)})") from None
    return formatter.render(table)
