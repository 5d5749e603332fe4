"""The backfill worker's fast path gives exactly the rows of the general transform."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, ObjectId, json_util
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.embedded.legacy_data import generate
from strangler.migrate.ejson import exact_loads, fast_loads
from strangler.migrate.fastpath import fast_message_row, fast_session_row, fast_text_message_row
from strangler.migrate.prepare import message_row, session_row
from strangler.migrate.transform import transform_message, transform_session
from tests.migrate.corpus import build

RELAXED = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, uuid_representation=4)
CANONICAL = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL, uuid_representation=4)


def _variants(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document as a live source gives it (tz-aware BSON values) and as a file gives it
    (read back by the fast Extended JSON reader)."""
    out = [copy.deepcopy(doc)]
    for key, value in doc.items():
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            out[0][key] = value.replace(tzinfo=dt.UTC)
    read = fast_loads(json_util.dumps(doc, json_options=RELAXED).encode())
    if read is not None:
        out.append(read)
    return out


def _documents() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sessions, messages = build()
    s_docs = [c.doc for c in sessions]
    m_docs = [c.doc for c in messages]
    for session, msgs in generate(40, 12, seed=21):
        s_docs.append(session)
        m_docs.extend(msgs)
    base = m_docs[-1]
    m_docs += [  # near misses: each must leave the fast path or give the same row
        {**base, "sender": "User"},
        {**base, "content": {"text": "nul\x00"}},
        {**base, "content": {"n": Int64(7), "d": Decimal128("1.5"), "o": ObjectId()}},
        {**base, "content": {"f": float("nan")}},
        {**base, "content": {"bin": Binary(b"\x01\x02", 0), "list": [1, "a", None]}},
        {**base, "session_id": str(base["session_id"]).upper()},
        {**base, "session_id": ObjectId(str(base["session_id"]))},
        {**base, "audio": Binary(b"\x00\x01", 0)},
        {**base, "extra": 1},
        {k: v for k, v in base.items() if k != "content"},
        {**base, "timestamp": "2024-01-01T00:00:00Z"},
    ]
    return s_docs, m_docs


@pytest.mark.parametrize("collection", ["chat_sessions", "messages"])
def test_fast_rows_equal_the_general_transform(collection: str) -> None:
    s_docs, m_docs = _documents()
    docs = s_docs if collection == "chat_sessions" else m_docs
    fast = fast_session_row if collection == "chat_sessions" else fast_message_row
    transform = transform_session if collection == "chat_sessions" else transform_message
    to_row = session_row if collection == "chat_sessions" else message_row
    taken = total = 0
    for doc in docs:
        for variant in _variants(doc):
            total += 1
            row = fast(variant)
            if row is None:
                continue
            taken += 1
            outcome = transform(copy.deepcopy(variant))
            assert outcome.reasons == [], (variant, outcome.reasons)
            assert row == to_row(outcome), variant
    assert taken > 0.8 * total - 60  # the generated documents are ordinary: most go fast


def _check_text_row(text: bytes) -> bool:
    """The text fast path's row for ``text`` (if it takes it) equals the general one."""
    row = fast_text_message_row(text)
    if row is None:
        return False
    outcome = transform_message(exact_loads(text))
    assert outcome.reasons == [], (text, outcome.reasons)
    assert row == message_row(outcome), text
    return True


@pytest.mark.parametrize("options", [RELAXED, CANONICAL], ids=["relaxed", "canonical"])
def test_the_line_fast_path_equals_the_general_transform(options: Any) -> None:
    _, m_docs = _documents()
    texts = [json_util.dumps(d, json_options=options).encode() for d in m_docs]
    texts += [  # near misses in text only
        texts[-1].replace(b'"user"', b'"User"'),
        texts[-1][:-1] + b', "extra": {"$numberDecimal": "1"}}',
        b'{"_id": {"$oid": "65E1C3405F1137D8F8F58FEA"}' + texts[-1][texts[-1].index(b",") :],
    ]
    taken = sum(_check_text_row(t) for t in texts)
    if options is RELAXED:
        assert taken > 0.8 * len(texts) - 60  # ordinary lines go fast


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(content=json_values, sender=st.sampled_from(["user", "assistant", "User", "bot"]))
def test_the_line_fast_path_on_arbitrary_content(content: Any, sender: str) -> None:
    line = {
        "_id": {"$oid": "65e1c3405f1137d8f8f58fea"},
        "session_id": "65e1c3405f1137d8f8f58feb",
        "sender": sender,
        "content": content,
        "timestamp": {"$date": "2024-03-01T12:00:00.123Z"},
    }
    _check_text_row(json.dumps(line).encode())
