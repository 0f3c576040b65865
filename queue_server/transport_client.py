"""The client side of the request transport: send a request, wait for its reply, resend.

A request is one entry on the ``<prefix>:requests`` stream; its reply is pushed onto the
sender's own list ``<prefix>:reply:<client_id>``. One background task per
`ServiceClient` blocks on that list and hands each reply to the waiting caller by its
request id. A request with no reply after ``request_timeout`` seconds is sent again
unchanged, with the same request id and the same run and transition ids. The service
treats the copy as the same request, so a lost reply, a dead replica or a restarted
Redis costs a resend and never a duplicate.

`ClientThread` runs a private event loop on a daemon thread, so synchronous code such as
``.delay()`` can use the asyncio client without an event loop of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queue_server.keys import CONSUMER_GROUP, Keys
from queue_server.protocol import PROTOCOL_VERSION, ErrorInfo, Reply

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds the reply reader blocks in one BLPOP before it checks whether it should stop.
REPLY_BLOCK_SECONDS = 2
# Seconds between attempts while Redis itself cannot be reached.
RECONNECT_DELAY_SECONDS = 0.5
REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class ServiceError(Exception):
    """An ``ok: false`` reply from the service; `code` and `field` tell why."""

    code = "internal"

    def __init__(self, message: str, *, field: str | None = None, op: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.op = op


class InvalidRequestError(ServiceError):
    code = "invalid_request"


class NotFoundError(ServiceError):
    code = "not_found"


class QueueFullServiceError(ServiceError):
    code = "queue_full"


class ConflictError(ServiceError):
    code = "conflict"


class ForbiddenError(ServiceError):
    code = "forbidden"


class InternalServiceError(ServiceError):
    code = "internal"


class RequestTimeoutError(TimeoutError):
    """No reply arrived within the caller's overall timeout, resends included."""


ERRORS_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        NotFoundError,
        QueueFullServiceError,
        ConflictError,
        ForbiddenError,
        InternalServiceError,
    )
}


def new_client_id() -> str:
    """Return a client id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def error_from_info(info: ErrorInfo | None, op: str | None = None) -> ServiceError:
    """Build the typed error for one ``ok: false`` reply."""
    if info is None:
        return InternalServiceError("the service replied ok=false without an error", op=op)
    cls = ERRORS_BY_CODE.get(info.code, InternalServiceError)
    return cls(info.message, field=info.field, op=op)


class ServiceClient:
    """Sends requests to the service over Redis and returns their results.

    Use it on one event loop: `start()` launches the reply reader there, `close()` stops it.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        request_timeout: float,
        client_id: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.request_timeout = request_timeout
        self.client_id = client_id or new_client_id()
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the reply reader; calling it again does nothing."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(
                self._read_replies(), name=f"taskgate-replies-{self.client_id}"
            )

    async def close(self) -> None:
        """Stop the reply reader and fail the requests still waiting."""
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
            self._reader = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the service client was closed"))
        self._pending.clear()

    async def request(
        self, op: str, args: dict[str, Any], *, timeout: float | None = None  # noqa: ASYNC109
    ) -> Any:
        """Send one request and return its result; raise ServiceError for an error reply.

        Without `timeout` the request is resent until a reply arrives; with it,
        RequestTimeoutError is raised once that many seconds have passed.
        """
        results = await self.request_many(op, [args], timeout=timeout)
        result = results[0]
        if isinstance(result, ServiceError):
            raise result
        return result

    async def request_many(
        self, op: str, many_args: Sequence[dict[str, Any]], *, timeout: float | None = None  # noqa: ASYNC109
    ) -> list[Any]:
        """Send many requests of one op in one pipeline; return each result or ServiceError.

        The results are in the order of `many_args`. An error reply becomes the
        ServiceError in its place instead of being raised, so one bad item does not hide
        the others.
        """
        await self.start()
        loop = asyncio.get_running_loop()
        bodies: list[tuple[str, bytes]] = []
        for args in many_args:
            request_id = str(uuid.uuid4())
            body = _encode_request(request_id, self.client_id, op, args)
            self._pending[request_id] = loop.create_future()
            bodies.append((request_id, body))
        try:
            entry_ids = await self._send([body for _, body in bodies])
            waits = [
                self._await_reply(request_id, body, timeout, entry_id)
                for (request_id, body), entry_id in zip(bodies, entry_ids, strict=True)
            ]
            replies = await asyncio.gather(*waits)
        finally:
            for request_id, _ in bodies:
                self._pending.pop(request_id, None)
        return [_result_of(reply, op) for reply in replies]

    async def _await_reply(
        self,
        request_id: str,
        body: bytes,
        timeout: float | None,  # noqa: ASYNC109
        entry_id: bytes | None,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        future = self._pending[request_id]
        deadline = None if timeout is None else loop.time() + timeout
        wait = self.request_timeout
        while True:
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    raise RequestTimeoutError(
                        f"no reply from the taskgate service to request {request_id} within "
                        f"{timeout} s; is `taskgate server` running on this Redis?"
                    )
            try:
                return await asyncio.wait_for(asyncio.shield(future), wait)
            except TimeoutError:
                pass
            if entry_id is not None and await self._still_in_service(entry_id):
                logger.debug(
                    "request %s is still queued or held by a replica; waiting again", request_id
                )
                wait = self.request_timeout
                continue
            logger.warning(
                "no reply to request %s after %.1f s and no replica has it pending; "
                "sending it again",
                request_id, wait,
            )
            entry_id = (await self._send([body]))[0]
            wait = self.request_timeout if entry_id is not None else RECONNECT_DELAY_SECONDS

    async def _still_in_service(self, entry_id: bytes) -> bool:
        """Tell whether the service can still reply to the stream entry without a resend.

        An entry that the consumer group has not read yet and that is still in the
        stream is waiting its turn. An entry in the group's pending list belongs to a
        replica, which replies to it, or is taken over from a dead replica after
        ``claim_idle``. A resend in those cases would only add work to a busy service.
        Any other entry (acknowledged without a reply reaching us, trimmed, or lost with
        a restarted Redis) is sent again.
        """
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xinfo_groups(self.keys.requests)
                pipe.xrange(self.keys.requests, min=entry_id, max=entry_id, count=1)
                pipe.xpending_range(
                    self.keys.requests, CONSUMER_GROUP, min=entry_id, max=entry_id, count=1
                )
                groups, present, pending = await pipe.execute(raise_on_error=False)
        except REDIS_DOWN_ERRORS:
            return False
        if isinstance(groups, Exception) or isinstance(pending, Exception):
            return False
        if isinstance(present, Exception) or not present:
            return False
        if pending:
            return True
        delivered = _last_delivered(groups)
        return delivered is not None and _stream_id(entry_id) > _stream_id(delivered)

    async def _send(self, bodies: Sequence[bytes]) -> list[bytes | None]:
        """Append the bodies to the request stream; return their entry ids.

        The ids are None when Redis is unreachable; the caller then sends again.
        """
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for body in bodies:
                    pipe.xadd(self.keys.requests, {"body": body})
                entry_ids = await pipe.execute()
        except REDIS_DOWN_ERRORS as error:
            logger.warning(
                "cannot send %d request(s) to Redis: %s; will resend", len(bodies), error
            )
            return [None] * len(bodies)
        return [_as_bytes(entry_id) for entry_id in entry_ids]

    async def _read_replies(self) -> None:
        reply_key = self.keys.reply(self.client_id)
        failures = 0
        while True:
            try:
                item = await self.redis.blpop([reply_key], timeout=REPLY_BLOCK_SECONDS)
            except REDIS_DOWN_ERRORS as error:
                # Log the first failure of an outage; the retries every half second go to debug.
                level = logging.WARNING if failures == 0 else logging.DEBUG
                logger.log(level, "reading replies from Redis failed: %s; retrying", error)
                failures += 1
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                continue
            if failures:
                logger.info("reading replies from Redis again after %d failed attempts", failures)
                failures = 0
            if item is None:
                continue
            self._route(item[1])

    def _route(self, raw: bytes) -> None:
        try:
            reply = Reply.model_validate_json(raw)
        except ValueError as error:
            logger.warning("dropping an unreadable reply on %s: %s", self.client_id, error)
            return
        if reply.request_id is None:
            message = reply.error.message if reply.error else "no error given"
            logger.warning("the service rejected a request it could not identify: %s", message)
            return
        future = self._pending.get(str(reply.request_id))
        if future is None or future.done():
            logger.debug("reply to request %s arrived after its caller left", reply.request_id)
            return
        future.set_result(reply)


def _encode_request(request_id: str, client_id: str, op: str, args: dict[str, Any]) -> bytes:
    document = {
        "v": PROTOCOL_VERSION,
        "request_id": request_id,
        "client_id": client_id,
        "op": op,
        "args": args,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _result_of(reply: Reply, op: str) -> Any:
    if reply.ok:
        return reply.result
    return error_from_info(reply.error, op)


class ClientThread:
    """A private event loop on a daemon thread, for calling asyncio code from sync code.

    The loop belongs to the process that created it: after a fork, `current()` builds a
    new one, because the thread does not exist in the child.
    """

    _lock = threading.Lock()
    _instance: ClientThread | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="taskgate-client", daemon=True)
        self._thread.start()

    @classmethod
    def current(cls) -> ClientThread:
        """Return this process's client thread, starting it on first use."""
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = ClientThread()
            return cls._instance

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coroutine: Awaitable[T]) -> ThreadFuture[T]:
        """Schedule the coroutine on the private loop; return a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run the coroutine that `factory` makes on the private loop and return its result.

        Calling it from the private loop's own thread would deadlock, so that raises.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("ClientThread.run was called from its own loop; await instead")
        return self.submit(factory()).result(timeout)

    async def run_async(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Await the coroutine that `factory` makes on the private loop from any other loop."""
        return await asyncio.wrap_future(self.submit(factory()))


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _stream_id(value: bytes | str) -> tuple[int, int]:
    """Split a stream entry id ``<ms>-<seq>`` into a tuple that orders like the stream."""
    milliseconds, _, sequence = _as_bytes(value).partition(b"-")
    return int(milliseconds), int(sequence or 0)


def _last_delivered(groups: list[dict[Any, Any]]) -> bytes | str | None:
    for group in groups:
        name = group.get("name")
        if name in (CONSUMER_GROUP, CONSUMER_GROUP.encode()):
            return group.get("last-delivered-id")
    return None
