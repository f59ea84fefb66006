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
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from tabulate import tabulate  # type: ignore[import-untyped, unused-ignore]

Row = dict[str, Any]


@dataclass
class Column:
    key: str
    header: str
    fmt: str | None = None  # a format spec for numbers in text tables, e.g. ".1f"


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


def _cell(value: Any, fmt: str | None) -> Any:
    if value is None:
        return ""
    if fmt is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return value


class _Tabulated:
    def __init__(self, tablefmt: str, heading: Callable[[str], str]) -> None:
        self._tablefmt = tablefmt
        self._heading = heading

    def render(self, table: Table) -> str:
        headers = [c.header for c in table.columns]
        body = [[_cell(row.get(c.key), c.fmt) for c in table.columns] for row in table.rows]
        text = str(tabulate(body, headers=headers, tablefmt=self._tablefmt, disable_numparse=True))
        heading = self._heading(table.title) if table.title else ""
        return heading + text + "\n"


class _Json:
    def render(self, table: Table) -> str:
        doc: dict[str, Any] = dict(table.meta)
        if table.title:
            doc["title"] = table.title
        columns = [c.key for c in table.columns]
        doc["rows"] = [{**{k: row.get(k) for k in columns},
                        **{k: row[k] for k in table.json_extra if k in row}}
                       for row in table.rows]
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"


class _Csv:
    def render(self, table: Table) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.key for c in table.columns])
        for row in table.rows:
            writer.writerow(["" if row.get(c.key) is None else row.get(c.key) for c in table.columns])
        return out.getvalue()


class _Folded:
    """``frame;frame;... value`` lines, the input of flamegraph.pl and speedscope."""

    def render(self, table: Table) -> str:
        lines = []
        for row in table.rows:
            value = row.get(table.value_key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            frames = [f.replace(";", ":").replace(" ", "_") or "_" for f in table.frames(row)]
            number = int(value) if float(value).is_integer() else value
            lines.append(f"{';'.join(frames)} {number}")
        return "".join(line + "\n" for line in lines)


FORMATTERS: dict[str, Formatter] = {
    "table": _Tabulated("simple", lambda t: f"{t}\n\n"),
    "github": _Tabulated("github", lambda t: f"### {t}\n\n"),
    "markdown": _Tabulated("pipe", lambda t: f"**{t}**\n\n"),
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
