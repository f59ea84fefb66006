"""The ``json`` format's text: audit.formatters.indented_json is json.dumps(indent=2)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.formatters import indented_json

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
_docs = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=4), inner, max_size=4)), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_docs)
def test_the_same_text_as_the_json_module(doc: Any) -> None:
    assert indented_json(doc) == json.dumps(doc, indent=2)


def test_shared_containers_and_other_types() -> None:
    class Count(int):
        pass

    frame = {"function": "f\u00e9\n", "file": "a.c", "line": 3}
    doc = {"rows": [{"frames": [frame, frame]}, {"frames": [frame], "x": [frame, [frame]]}],
           "n": Count(3), "keys": {1: 2, None: 3, 1.5: 4}}
    assert indented_json(doc) == json.dumps(doc, indent=2)
    assert indented_json(doc["rows"]) == json.dumps(doc["rows"], indent=2)
    loop: list[Any] = []
    loop.append(loop)
    try:
        indented_json(loop)
    except ValueError as exc:
        assert "Circular reference" in str(exc)
    else:
        raise AssertionError("a circular list was written")
