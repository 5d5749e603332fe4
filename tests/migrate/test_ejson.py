"""The fast Extended JSON reader agrees with ``bson.json_util`` wherever it answers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from bson import json_util
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.embedded.legacy_data import generate
from strangler.migrate.ejson import exact_loads, fast_loads
from tests.migrate.corpus import build

MODES = {
    "relaxed": json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, uuid_representation=4),
    "canonical": json_util.JSONOptions(
        json_mode=json_util.JSONMode.CANONICAL, uuid_representation=4
    ),
}


def same(a: Any, b: Any, path: str = "$") -> None:
    """Equal values of the very same types (``bytes`` is not ``Binary``, ``int`` not
    ``Int64``); datetimes compare as instants, because both readers give UTC."""
    if isinstance(a, dt.datetime):
        assert isinstance(b, dt.datetime) and a == b, path
        return
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _documents() -> list[dict[str, Any]]:
    sessions, messages = build()
    docs = [c.doc for c in sessions + messages]
    for session, msgs in generate(30, 10, seed=3):
        docs.append(session)
        docs.extend(msgs)
    return docs


@pytest.mark.parametrize("mode", sorted(MODES))
def test_fast_reader_matches_json_util_on_corpus_and_generated_data(mode: str) -> None:
    answered = 0
    for doc in _documents():
        text = json_util.dumps(doc, json_options=MODES[mode]).encode()
        fast = fast_loads(text)
        if fast is not None:
            answered += 1
            same(fast, exact_loads(text))
    # The point is speed on ordinary documents: most of them must take the fast path.
    assert answered > 0.9 * len(_documents()) if mode == "relaxed" else answered > 0


@pytest.mark.parametrize(
    "text",
    [
        b'{"n": 123456789012345678901234567890}',  # past 64 bits: orjson would round it
        b'{"x": {"$numberDecimal": "1.5"}}',
        b'{"x": {"$date": {"$numberLong": "253402300800000"}}}',  # past year 9999
        b'{"x": {"$date": "2024-01-01T10:00:00+02:00"}}',
        b'{"x": {"$binary": {"base64": "AAEC", "subType": "80"}}}',
        b'{"x": {"$oid": "65920af93b6aa1e68d682728", "y": 1}}',
        b'{"$where": 1}',
        b'{"s": "\\ud800"}',  # a lone surrogate orjson refuses
        b"[1, 2]",
        b'{"f": NaN}',
    ],
)
def test_fast_reader_declines_what_only_json_util_reads_exactly(text: bytes) -> None:
    assert fast_loads(text) is None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_fast_reader_matches_json_util_on_arbitrary_json(doc: dict[str, Any]) -> None:
    text = json.dumps(doc).encode()
    fast = fast_loads(text)
    if fast is not None:
        same(fast, exact_loads(text))
