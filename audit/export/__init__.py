"""Profiles other tools read: pprof, speedscope, a self-contained HTML flame graph,
and whole-stack folded text.

Each format is one module with a formatter behind the interface of
:mod:`audit.formatters`; :func:`register` adds them to its table. A formatter
turns the table into a :class:`~audit.export.model.Profile` with
:func:`profile_of`: from the reports the table was built from when it carries
them (``Table.source``, set by ``show`` and ``run``) and knows their kind, else
from its rows.
"""

from __future__ import annotations

from typing import Any

from audit.errors import AuditError
from audit.export import source
from audit.export.model import Profile, from_rows
from audit.printable import printable


def profile_of(table: Any) -> Profile:
    src = getattr(table, "source", None)
    if isinstance(src, source.Source) and source.readable(src):
        try:
            return source.profile(src)
        except ValueError as exc:
            raise AuditError(str(exc)) from exc
        except OSError as exc:
            raise AuditError(f"{printable(str(exc.filename))}: cannot read: {exc.strerror}") from exc
    return from_rows(table.rows, table.frames, table.value_key, name=table.title or "ringpool")


def register(formatters: dict[str, Any]) -> None:
    """Adds pprof, speedscope and html, and makes ``folded`` whole-stack."""
    from audit.export.folded import FoldedFormatter
    from audit.export.html import HtmlFormatter
    from audit.export.pprof import PprofFormatter
    from audit.export.speedscope import SpeedscopeFormatter

    formatters["folded"] = FoldedFormatter(formatters.get("folded"))
    formatters["pprof"] = PprofFormatter()
    formatters["speedscope"] = SpeedscopeFormatter()
    formatters["html"] = HtmlFormatter()
