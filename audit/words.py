"""Counts in words, for every message the package prints."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """`1 block`, `2 blocks`, `0 blocks`."""
    return f"{n} {word}" + ("" if n == 1 else "s")
