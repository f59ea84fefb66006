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
- the line and paragraph separators U+2028 and U+2029, the bidirectional
  formatting characters (U+061C, U+200E, U+200F, U+202A-U+202E,
  U+2066-U+2069) and lone surrogates become ``\\uNNNN``.

Everything else (accents, CJK, emoji, spaces) is written as it is. The rule is
one-to-one: names that differ stay different once escaped.
"""

from __future__ import annotations

import re

# The characters printable() escapes; each is escaped as Python's repr() writes it.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def printable(text: str) -> str:
    """``text`` with the characters of the rule above escaped (linear in its length)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escaped, text)


# The same characters but the backslash: for text whose backslashes are escapes already.
_UNSAFE_BUT_BACKSLASH = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def printable_escaped(text: str) -> str:
    """``text``, whose every backslash already starts an escape of its own (a pool path
    as :func:`audit.schema.path_text` writes it: ``\\\\`` and ``\\/``), with the other
    characters of the rule escaped: each backslash written once, never twice.  For a
    path text this is :func:`audit.schema.path_shown` of its names.

    Also for a message whose names are already :func:`printable`: what reaches the
    terminal is one line of safe characters even when a message names something raw.
    Not one-to-one for such text (a raw newline and the two characters ``\\n`` read
    alike): names go through :func:`printable` first."""
    if _UNSAFE_BUT_BACKSLASH.search(text) is None:
        return text
    return _UNSAFE_BUT_BACKSLASH.sub(_escaped, text)


def is_printable(text: str) -> bool:
    """True when :func:`printable` leaves ``text`` as it is."""
    return _UNSAFE.search(text) is None


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
