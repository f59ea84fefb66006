"""A small program with the leaks Python programs have: a cache that only grows,
a list kept in a global, and a closure that keeps its data alive.

    ringpool-audit run --python -- examples/python/word_index.py
"""

import functools
import json
import re

WORD = re.compile(r"[a-z]+")
HISTORY = []                       # every query ever made, kept forever


@functools.lru_cache(maxsize=None)  # unbounded: one entry per distinct text
def index(text):
    words = WORD.findall(text.lower())
    return {w: words.count(w) for w in set(words)}


def make_reporter(docs):
    snapshot = [json.dumps(d) for d in docs]   # the closure keeps these alive

    def report():
        return len(snapshot)
    return report


def main():
    docs = []
    for i in range(2000):
        text = f"the quick brown fox {i} jumps over the lazy dog number {i % 97}"
        docs.append(index(text))
        HISTORY.append(text.upper())
    global REPORT
    REPORT = make_reporter(docs[:500])
    print(f"indexed {len(docs)} documents, {REPORT()} in the report")


main()
