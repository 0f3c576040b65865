"""Malformed, oversized and fuzzed stream entries: an error reply or a logged drop, and the
service keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transport.stack import acked, running_stack, stack_settings
from tests.transport.wire import replies, request_body, send

pytestmark = pytest.mark.integration


async def test_malformed_requests_get_errors_naming_fields(clean_redis, sqlite_url, key_prefix):
    config = stack_settings(clean_redis, sqlite_url, key_prefix, max_request_bytes=20_000)
    cases = {
        "args.state.type": request_body(
            "propose_state",
            {"run_id": str(uuid4()), "state": {"type": "SLEEPING"}, "transition_id": str(uuid4())},
            "client-m",
        ),
        "op": request_body("explode", {}, "client-m"),
        "args.run_id": request_body("read_run", {"run_id": "nope"}, "client-m"),
        "body": request_body("ping", {"padding": "x" * 30_000}, "client-m"),
    }
    async with running_stack(config) as stack:
        for body in cases.values():
            await send(stack.redis, stack.keys, body)
        await send(stack.redis, stack.keys, b"not json and no client")
        await send(stack.redis, stack.keys, request_body("ping", {}, "client-m"))
        answers = await replies(stack.redis, stack.keys, "client-m", len(cases) + 1)
        pending = await acked(stack)

    by_request = {str(answer.request_id): answer for answer in answers}
    for field, body in cases.items():
        answer = by_request[body["request_id"]]
        assert not answer.ok
        assert answer.error.code == "invalid_request"
        assert answer.error.field == field
    assert sum(1 for answer in answers if answer.ok) == 1
    assert pending["pending"] == 0


async def test_unknown_run_is_not_found(clean_redis, sqlite_url, key_prefix):
    config = stack_settings(clean_redis, sqlite_url, key_prefix)
    async with running_stack(config) as stack:
        await send(stack.redis, stack.keys, request_body(
            "read_run", {"run_id": str(uuid4())}, "client-n"
        ))
        [answer] = await replies(stack.redis, stack.keys, "client-n", 1)

    assert not answer.ok
    assert answer.error.code == "not_found"
    assert answer.error.field == "args.run_id"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
fuzzed_entry = st.one_of(
    st.binary(max_size=300),
    st.fixed_dictionaries(
        {"client_id": st.just("client-z"), "request_id": st.uuids().map(str)},
        optional={
            "v": st.integers(-1, 3),
            "op": st.sampled_from(["ping", "propose_state", "claim_and_start", "read_run", "x"]),
            "args": json_values,
            "extra": json_values,
        },
    ).map(lambda document: json.dumps(document).encode()),
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(entries=st.lists(fuzzed_entry, min_size=1, max_size=15))
def test_fuzzed_entries_keep_service_serving(clean_redis, tmp_path, entries, caplog):
    caplog.set_level(logging.WARNING, logger="queue_server")
    prefix = f"tgfuzz{uuid4().hex[:8]}"
    database = f"sqlite+aiosqlite:///{tmp_path / (prefix + '.db')}"
    config = stack_settings(clean_redis, database, prefix)

    async def scenario() -> list:
        async with running_stack(config) as stack:
            for raw in entries:
                await send(stack.redis, stack.keys, raw)
            await send(stack.redis, stack.keys, request_body("ping", {}, "client-alive"))
            alive = await replies(stack.redis, stack.keys, "client-alive", 1)
            # The ping was read after every fuzzed entry, so all are handled once it is acked.
            pending = await acked(stack)
            answered = await stack.redis.llen(stack.keys.reply("client-z"))
            return [alive, pending, answered]

    alive, pending, answered = asyncio.run(scenario())

    assert alive[0].ok
    assert pending["pending"] == 0
    assert answered <= len(entries)
