"""The service side of the request transport: read the request stream, reply, acknowledge.

One `RequestConsumer` runs per service replica, as consumer ``<replica_id>`` of the
consumer group on ``<prefix>:requests``. Each pass of its loop:

1. takes over entries that another consumer left pending for longer than
   ``claim_idle`` seconds (``XAUTOCLAIM``), and trims the stream to about
   ``stream_maxlen`` entries, both at most every half ``claim_idle``;
2. reads up to ``batch_size`` new entries (``XREADGROUP``);
3. validates each entry; an invalid one is answered with an error naming the field
   (or only logged, when it names no client) and acknowledged;
4. applies the valid requests in one transaction (`TransitionService.apply_batch`);
5. after the commit, pushes the replies, carries out the effects, then ``XACK``s.

A storage fault sends no reply and leaves the entries pending: their senders resend,
and the pending copies are taken over later and answered from the stored decisions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queue_server.errors import StorageFault
from queue_server.keys import CONSUMER_GROUP, REPLY_LIST_TTL_SECONDS, Keys
from queue_server.post_commit import PostCommit
from queue_server.protocol import ErrorInfo, Reply, Request
from queue_server.settings import Settings
from queue_server.transport.parsing import RejectedEntry, parse_entry

logger = logging.getLogger(__name__)

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
MAX_READ_BLOCK_MS = 1000
RETRY_DELAY_SECONDS = 0.5
# Deliveries of one stream entry (first read plus takeovers) before it is dropped.
MAX_DELIVERIES = 20


class BatchApplier(Protocol):
    """The part of TransitionService the transport calls."""

    async def apply_batch(self, requests: list[Request]) -> Any: ...


@dataclass(frozen=True)
class Entry:
    """One stream entry, parsed."""

    entry_id: bytes
    parsed: Request | RejectedEntry


async def ensure_group(redis: aioredis.Redis, keys: Keys) -> None:
    """Create the stream and its consumer group unless they exist."""
    try:
        await redis.xgroup_create(keys.requests, CONSUMER_GROUP, id="0", mkstream=True)
        logger.info("created consumer group %s on %s", CONSUMER_GROUP, keys.requests)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


async def add_request(
    redis: aioredis.Redis, keys: Keys, request: Request | bytes, maxlen: int
) -> bytes:
    """Append a request to the stream, trimming it to about `maxlen` entries."""
    body = request if isinstance(request, bytes) else request.model_dump_json().encode()
    return await redis.xadd(keys.requests, {"body": body}, maxlen=maxlen, approximate=True)


async def push_replies(
    redis: aioredis.Redis, keys: Keys, replies: Sequence[tuple[str, Reply]]
) -> None:
    """Push each reply onto its client's list, which expires some minutes after the last."""
    if not replies:
        return
    async with redis.pipeline(transaction=False) as pipe:
        add_replies(pipe, keys, replies)
        await pipe.execute()


def add_replies(pipe: Pipeline, keys: Keys, replies: Sequence[tuple[str, Reply]]) -> None:
    """Queue `push_replies`'s commands on `pipe`: one LPUSH and one EXPIRE per client.

    LPUSH with several values pushes them one after another, so the list ends as it
    would after one LPUSH per reply.
    """
    by_client: dict[str, list[str]] = {}
    for client_id, reply in replies:
        by_client.setdefault(client_id, []).append(reply.model_dump_json())
    for client_id, bodies in by_client.items():
        name = keys.reply(client_id)
        pipe.lpush(name, *bodies)
        pipe.expire(name, REPLY_LIST_TTL_SECONDS)


class RequestConsumer:
    """Reads the request stream as one replica of the consumer group and replies to each request."""

    def __init__(
        self,
        redis: aioredis.Redis,
        service: BatchApplier,
        post_commit: PostCommit,
        settings: Settings,
        replica_id: str,
    ) -> None:
        self.redis = redis
        self.service = service
        self.post_commit = post_commit
        self.settings = settings
        self.replica_id = replica_id
        self.keys = Keys(settings.key_prefix)
        self.block_ms = max(1, min(MAX_READ_BLOCK_MS, int(settings.claim_idle * 500)))
        self._next_claim = 0.0
        self._group_ready = False

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; Redis errors are logged and retried."""
        logger.info(
            "request consumer %s started on %s (batch size %d)",
            self.replica_id, self.keys.requests, self.settings.batch_size,
        )
        while not stop.is_set():
            try:
                await self.serve_once()
            except REDIS_ERRORS as error:
                self._group_ready = False
                logger.warning(
                    "Redis unavailable to consumer %s: %s; retrying", self.replica_id, error
                )
                await _sleep_or_stop(stop, RETRY_DELAY_SECONDS)
            except ResponseError as error:
                self._group_ready = False
                if "NOGROUP" in str(error):
                    logger.warning("consumer group missing (Redis restarted?); creating it again")
                    continue
                # READONLY during a Sentinel failover, OOM under maxmemory: Redis refuses
                # for a while, and the unacknowledged entries wait for the next pass.
                logger.warning(
                    "Redis rejected a command of consumer %s: %s; retrying", self.replica_id, error
                )
                await _sleep_or_stop(stop, RETRY_DELAY_SECONDS)
        logger.info("request consumer %s stopped", self.replica_id)

    async def serve_once(self) -> int:
        """Run one pass: take over stale entries, read new ones, reply to both; return the count."""
        if not self._group_ready:
            await ensure_group(self.redis, self.keys)
            self._group_ready = True
        handled = 0
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.settings.claim_idle / 2
            handled += await self.claim_stale()
            await self.redis.xtrim(
                self.keys.requests, maxlen=self.settings.stream_maxlen, approximate=True
            )
        entries = await self._read_new()
        if entries:
            await self.handle(entries)
        return handled + len(entries)

    async def claim_stale(self) -> int:
        """Take over entries idle longer than ``claim_idle`` (a dead replica's), then reply."""
        start: bytes | str = "0-0"
        total = 0
        while True:
            answer = await self.redis.xautoclaim(
                self.keys.requests,
                CONSUMER_GROUP,
                self.replica_id,
                min_idle_time=int(self.settings.claim_idle * 1000),
                start_id=start,
                count=self.settings.batch_size,
            )
            start, raw = answer[0], answer[1]
            worn_out = await self._worn_out([entry_id for entry_id, fields in raw if fields])
            entries = [
                self._parse(entry_id, fields)
                for entry_id, fields in raw
                if fields and entry_id not in worn_out
            ]
            trimmed = [entry_id for entry_id, fields in raw if not fields]
            if len(answer) > 2:
                trimmed.extend(answer[2])
            if trimmed or worn_out:
                await self.redis.xack(
                    self.keys.requests, CONSUMER_GROUP, *trimmed, *sorted(worn_out)
                )
            if entries:
                logger.info(
                    "consumer %s took over %d pending requests", self.replica_id, len(entries)
                )
                await self.handle(entries)
                total += len(entries)
            if start in (b"0-0", "0-0"):
                return total

    async def _worn_out(self, entry_ids: list[bytes]) -> set[bytes]:
        """Return the entries delivered more than MAX_DELIVERIES times; log each one.

        Dropping such a copy loses nothing, because its sender resends an unanswered
        request as a new entry. It stops a request that crashes every replica that
        reads it from being taken over forever, and bounds the pending list while the
        database is down.
        """
        if not entry_ids:
            return set()
        details = await self.redis.xpending_range(
            self.keys.requests,
            CONSUMER_GROUP,
            min=min(entry_ids),
            max=max(entry_ids),
            count=len(entry_ids) + self.settings.batch_size,
            consumername=self.replica_id,
        )
        wanted = set(entry_ids)
        worn_out = {
            detail["message_id"]
            for detail in details
            if detail["message_id"] in wanted and detail["times_delivered"] > MAX_DELIVERIES
        }
        for entry_id in sorted(worn_out):
            logger.warning(
                "dropped request entry %s after more than %d deliveries; "
                "its sender resends it if it is still unanswered",
                entry_id.decode(), MAX_DELIVERIES,
            )
        return worn_out

    async def _read_new(self) -> list[Entry]:
        answer = await self.redis.xreadgroup(
            CONSUMER_GROUP,
            self.replica_id,
            {self.keys.requests: ">"},
            count=self.settings.batch_size,
            block=self.block_ms,
        )
        if not answer:
            return []
        _, raw = answer[0]
        return [self._parse(entry_id, fields) for entry_id, fields in raw]

    def _parse(self, entry_id: bytes, fields: dict[Any, Any]) -> Entry:
        return Entry(entry_id, parse_entry(fields, self.settings.max_request_bytes))

    async def handle(self, entries: Sequence[Entry]) -> None:
        """Answer and acknowledge the entries; leave them pending on a storage fault."""
        rejected = [entry for entry in entries if isinstance(entry.parsed, RejectedEntry)]
        valid = [entry for entry in entries if isinstance(entry.parsed, Request)]
        if rejected:
            await self._reject(rejected)
        if valid:
            await self._apply(valid)

    async def _reject(self, entries: Sequence[Entry]) -> None:
        replies: list[tuple[str, Reply]] = []
        for entry in entries:
            rejected = entry.parsed
            assert isinstance(rejected, RejectedEntry)
            if rejected.client_id is None:
                logger.warning(
                    "dropped stream entry %s naming no client: %s",
                    entry.entry_id.decode(), rejected.error.message[:500],
                )
                continue
            logger.info(
                "rejected request %s from %s: field %s",
                rejected.request_id, rejected.client_id, rejected.error.field,
            )
            replies.append((rejected.client_id, rejected.reply()))
        await push_replies(self.redis, self.keys, replies)
        await self._ack(entries)

    async def _apply(self, entries: Sequence[Entry]) -> None:
        requests = [entry.parsed for entry in entries]
        try:
            outcome = await self.service.apply_batch(requests)  # type: ignore[arg-type]
        except StorageFault as error:
            logger.warning(
                "storage fault on a batch of %d requests (first %s); no reply sent, "
                "the requests stay pending: %s",
                len(requests), requests[0].request_id, error,
            )
            return
        except Exception:
            if len(entries) == 1:
                await self._answer_internal_error(entries[0])
                return
            logger.exception(
                "batch of %d requests failed; applying them one at a time", len(entries)
            )
            for entry in entries:
                await self._apply([entry])
            return

        # Jobs first, so a worker starts while the rest is sent. The replies, the
        # events and the acknowledgement then go in one round trip, in that order.
        await self.post_commit.enqueue(outcome.effects)
        async with self.redis.pipeline(transaction=False) as pipe:
            add_replies(pipe, self.keys, outcome.replies)
            self.post_commit.add_publish(pipe, outcome.effects)
            pipe.xack(self.keys.requests, CONSUMER_GROUP, *[entry.entry_id for entry in entries])
            await pipe.execute()

    async def _answer_internal_error(self, entry: Entry) -> None:
        # Only a bug gets here, because the service turns rule errors into ABORT and
        # request errors into error replies. Answering stops a poison request from
        # being taken over and failing again forever.
        request = entry.parsed
        assert isinstance(request, Request)
        logger.exception(
            "request %s (op %s) from %s failed inside the service",
            request.request_id, request.op, request.client_id,
        )
        reply = Reply(
            request_id=request.request_id,
            ok=False,
            error=ErrorInfo(
                code="internal",
                message="internal error in the transition service; see the service log",
            ),
        )
        await push_replies(self.redis, self.keys, [(request.client_id, reply)])
        await self._ack([entry])

    async def _ack(self, entries: Sequence[Entry]) -> None:
        if entries:
            await self.redis.xack(
                self.keys.requests, CONSUMER_GROUP, *[entry.entry_id for entry in entries]
            )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
