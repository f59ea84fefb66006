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
- the characters that display as nothing or as a plain space (Unicode 15's
  format characters, category Cf: the bidirectional ones above, the soft hyphen
  U+00AD, the zero-width space U+200B and joiners U+200C, U+200D, U+2060, the
  byte order mark U+FEFF, tag characters U+E0000-U+E007F, ...; the spaces but
  U+0020, category Zs: U+00A0, U+3000, ...; private-use code points, category
  Co) become ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, as ``repr`` writes
  them: a name that differs from another only by such a character no longer
  displays as that other name. The set is fixed here (not Python's own Unicode
  database, which changes with its version) and csrc/outfile.c writes the same.

Everything else (accents, CJK, emoji, the space) is written as it is. The rule
is one-to-one: names that differ stay different once escaped.
"""

from __future__ import annotations

import re

# Every character the rule escapes but the backslash (csrc/outfile.c, escaped_cp).
_CLASS = ("\x00-\x1f\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
          "\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000"
          "\ud800-\udfff\ue000-\uf8ff\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
          "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
          "\U000e0020-\U000e007f\U000f0000-\U000ffffd\U00100000-\U0010fffd")
_UNSAFE = re.compile(f"[\\\\{_CLASS}]")
_UNSAFE_BUT_BACKSLASH = re.compile(f"[{_CLASS}]")


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def printable(text: str) -> str:
    """``text`` with the characters of the rule above escaped (linear in its length)."""
    if is_printable(text):
        return text
    return _UNSAFE.sub(_escaped, text)


def printable_escaped(text: str) -> str:
    """``text``, whose every backslash already starts an escape of its own (a pool path
    as :func:`audit.schema.path_text` writes it: ``\\\\`` and ``\\/``), with the other
    characters of the rule escaped: each backslash written once, never twice.  For a
    path text this is :func:`audit.schema.path_shown` of its names.

    Also for a message whose names are already :func:`printable`: what reaches the
    terminal is one line of safe characters even when a message names something raw.
    Not one-to-one for such text (a raw newline and the two characters ``\\n`` read
    alike): names go through :func:`printable` first."""
    if text.isascii() and text.isprintable() or _UNSAFE_BUT_BACKSLASH.search(text) is None:
        return text
    return _UNSAFE_BUT_BACKSLASH.sub(_escaped, text)


def is_printable(text: str) -> bool:
    """True when :func:`printable` leaves ``text`` as it is."""
    if text.isascii():
        # The rule's ASCII characters are the backslash and the control characters,
        # which are what str.isprintable refuses in ASCII text: a scan in C, ten
        # times the speed of the regular expression (a table's column of 100,000
        # stacks is 70 MB of text).
        return text.isprintable() and "\\" not in text
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
