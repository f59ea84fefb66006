"""Names from the audited program, made safe to print.

Pool names, tags, function and file names, module paths come from the program
under audit and may hold any character: a newline would split a row (or a
folded stack) in two, an escape sequence would drive the terminal, a
bidirectional override would make a name display as another. Every text output
that is not a quoted format of its own (the table and Markdown formats,
folded lines, summary and error messages) writes names through
:func:`printable`, the one rule (docs/cli.md, "Names in text output"):

- a backslash becomes ``\\\\``, so an escape and the same text typed literally
  stay apart (``\\x1b`` the four characters is ``\\\\x1b``);
- control characters (C0, DEL, C1: U+0000-U+001F, U+007F-U+009F) become
  ``\\n``, ``\\r``, ``\\t`` or ``\\xNN``;
- every other character Python's ``str.isprintable`` calls non-printable
  (the categories Other and Separator but the space: format characters such
  as the bidirectional ones, the zero-width space U+200B and joiners, the
  byte order mark U+FEFF, the soft hyphen U+00AD, tag characters
  U+E0000-U+E007F; the no-break and other spaces U+00A0, U+3000; the line
  and paragraph separators U+2028, U+2029; private-use and unassigned code
  points; lone surrogates) becomes ``\\xNN``, ``\\uNNNN`` or
  ``\\UNNNNNNNN``, as ``repr`` writes it: a name that differs from another
  only by an invisible character, or by a space that is not U+0020, no
  longer displays as that other name.

Everything else (accents, CJK, emoji, the space) is written as it is. The rule
is one-to-one: names that differ stay different once escaped.
"""

from __future__ import annotations

import re

# Runs of characters that are not printable ASCII: in a run, each character that
# str.isprintable() calls non-printable is escaped (the backslash, printable, is
# doubled before, by str.replace).
_CANDIDATES = re.compile("[^ -~]+")


def _escaped_run(run: str) -> str:
    """The run with its non-printable characters escaped; halves a long run until its
    parts are printable (str.isprintable is one C loop), so a 1 MB name of CJK with one
    control character in it costs a few such loops, not a Python call per character."""
    if run.isprintable():
        return run
    if len(run) > 64:
        half = len(run) // 2
        return _escaped_run(run[:half]) + _escaped_run(run[half:])
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in run)


def _escaped(match: re.Match[str]) -> str:
    return _escaped_run(match.group())


def printable(text: str) -> str:
    """``text`` with the characters of the rule above escaped (linear in its length)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    elif text.isprintable():
        return text
    return printable_escaped(text)


def printable_escaped(text: str) -> str:
    """``text``, whose every backslash already starts an escape of its own (a pool path
    as :func:`audit.schema.path_text` writes it: ``\\\\`` and ``\\/``), with the other
    characters of the rule escaped: each backslash written once, never twice.  For a
    path text this is :func:`audit.schema.path_shown` of its names.

    Also for a message whose names are already :func:`printable`: what reaches the
    terminal is one line of safe characters even when a message names something raw.
    Not one-to-one for such text (a raw newline and the two characters ``\\n`` read
    alike): names go through :func:`printable` first."""
    if text.isprintable():
        return text
    return _CANDIDATES.sub(_escaped, text)


def is_printable(text: str) -> bool:
    """True when :func:`printable` leaves ``text`` as it is."""
    return text.isprintable() and "\\" not in text


def shortened(text: str, limit: int = 200) -> str:
    """``printable(text)``, cut to about ``limit`` characters with ``...`` (for messages)."""
    if len(text) > limit:
        return printable(text[:limit]) + "..."
    return printable(text)


def as_unicode(text: str) -> str:
    """``text`` with each lone surrogate (a path Python decoded with surrogateescape, whose
    bytes are not UTF-8) as U+FFFD, as the reports write such bytes: for the JSON formats,
    whose strings must be Unicode."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) is not None else text


_SURROGATE = re.compile("[\ud800-\udfff]")
