"""Parsing stream entries: valid requests pass, every invalid one names its field."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queue_server.protocol import Request
from queue_server.transport.parsing import RejectedEntry, parse_entry

MAX_BYTES = 10_000


def body(**overrides) -> dict:
    document = {
        "v": 1,
        "request_id": str(uuid4()),
        "client_id": "host-1-abc",
        "op": "propose_state",
        "args": {
            "run_id": str(uuid4()),
            "state": {"type": "RUNNING"},
            "transition_id": str(uuid4()),
        },
    }
    document.update(overrides)
    return document


def parse(document) -> Request | RejectedEntry:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_entry({b"body": raw}, MAX_BYTES)


def test_valid_request_parses():
    parsed = parse(body())

    assert isinstance(parsed, Request)
    assert parsed.op == "propose_state"


def test_ping_without_args_parses():
    assert isinstance(parse(body(op="ping", args={})), Request)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"op": "explode"}, "op"),
        ({"request_id": "not-a-uuid"}, "request_id"),
        ({"v": 2}, "v"),
        ({"extra": 1}, "extra"),
        ({"op": "ping", "args": {"x": 1}}, "args.x"),
        ({"args": {"run_id": "x", "state": {"type": "RUNNING"}, "transition_id": str(uuid4())}},
         "args.run_id"),
        ({"args": {"run_id": str(uuid4()), "state": {"type": "SLEEPING"},
                   "transition_id": str(uuid4())}}, "args.state.type"),
        ({"args": {"run_id": str(uuid4()), "state": {"type": "RUNNING"}}}, "args.transition_id"),
    ],
)
def test_invalid_request_names_field(change, field):
    document = body(**change)

    parsed = parse(document)

    assert isinstance(parsed, RejectedEntry)
    assert parsed.error.code == "invalid_request"
    assert parsed.error.field == field
    assert parsed.client_id == "host-1-abc"
    assert str(parsed.request_id) == document["request_id"] or field == "request_id"


def test_oversized_body_rejected_with_client():
    document = body(args={"padding": "x" * MAX_BYTES})

    parsed = parse(document)

    assert isinstance(parsed, RejectedEntry)
    assert parsed.error.field == "body"
    assert "limit" in parsed.error.message
    assert parsed.client_id == "host-1-abc"
    assert str(parsed.request_id) == document["request_id"]


def test_broken_json_still_finds_client():
    raw = b'{"client_id": "host-2-def", "request_id": "' + str(uuid4()).encode() + b'", "op": '

    parsed = parse(raw)

    assert isinstance(parsed, RejectedEntry)
    assert parsed.error.field == "body"
    assert parsed.client_id == "host-2-def"


@pytest.mark.parametrize("raw", [b"[]", b"42", b'"text"', b"\xff\xfe", b""])
def test_body_without_client_cannot_be_answered(raw):
    parsed = parse(raw)

    assert isinstance(parsed, RejectedEntry)
    assert parsed.client_id is None


def test_entry_without_body_field():
    parsed = parse_entry({b"other": b"1"}, MAX_BYTES)

    assert isinstance(parsed, RejectedEntry)
    assert parsed.error.field == "body"


def test_invalid_client_id_cannot_be_answered():
    parsed = parse(body(client_id=""))

    assert isinstance(parsed, RejectedEntry)
    assert parsed.error.field == "client_id"
    assert parsed.client_id is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzzed_bytes_never_raise(raw):
    parsed = parse_entry({b"body": raw}, MAX_BYTES)

    assert isinstance(parsed, Request | RejectedEntry)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "request_id", "client_id", "op", "args", "x"]), json_values
    )
)
def test_fuzzed_documents_never_raise(document):
    parsed = parse(document)

    assert isinstance(parsed, Request | RejectedEntry)
    if isinstance(parsed, RejectedEntry):
        assert parsed.error.field
