"""The process-wide connection that `.delay()` and futures use to reach the service.

Everything asynchronous runs on the private loop of `ClientThread`, so the same client
serves synchronous callers (``.delay()``, ``.result()``) and asynchronous ones
(``await .aresult()``) from any event loop. A worker process keeps its own
`ServiceClient` on its own loop instead; this one is for user code.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis

from queue_server.embedded import read_running_url
from queue_server.keys import Keys
from queue_server.redis_conn import connect
from queue_server.settings import Settings, get_settings
from queue_server.transport_client import ClientThread, ServiceClient
from workers.waiter import RunWaiter

T = TypeVar("T")


def resolve_redis_url(settings: Settings) -> str:
    """Return the Redis URL to use: the configured one, else the embedded Redis running now."""
    if settings.redis_url:
        return settings.redis_url
    url = read_running_url(settings.home_path)
    if url:
        return url
    raise RuntimeError(
        "no Redis to connect to: set TASKGATE_REDIS_URL, or start `taskgate server` "
        f"with its embedded Redis under {settings.home_path}"
    )


class TaskgateClient:
    """A service client, a Redis connection and a run waiter, living on one private loop."""

    def __init__(self, settings: Settings, *, listen_events: bool = True) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.listen_events = listen_events
        self.thread = ClientThread.current()
        self._redis: aioredis.Redis | None = None
        self._service: ServiceClient | None = None
        self._waiter: RunWaiter | None = None
        self._connect_lock = threading.Lock()

    def _connect(self) -> None:
        """Build the connections the first time they are needed; they bind to a loop on use."""
        with self._connect_lock:
            if self._service is None:
                self._build()

    def _build(self) -> None:
        self._redis = connect(resolve_redis_url(self.settings))
        self._service = ServiceClient(
            self._redis, self.keys, request_timeout=self.settings.request_timeout
        )
        self._waiter = RunWaiter(
            self._redis,
            self.keys,
            self._service,
            poll_interval=self.settings.future_poll_interval,
            listen_events=self.listen_events,
        )

    @property
    def service(self) -> ServiceClient:
        self._connect()
        assert self._service is not None
        return self._service

    @property
    def waiter(self) -> RunWaiter:
        self._connect()
        assert self._waiter is not None
        return self._waiter

    @property
    def redis(self) -> aioredis.Redis:
        self._connect()
        assert self._redis is not None
        return self._redis

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run a coroutine on the client's loop from synchronous code and return its result."""
        return self.thread.run(factory, timeout)

    async def run_async(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Await a coroutine on the client's loop from any event loop."""
        return await self.thread.run_async(factory)

    def close(self) -> None:
        """Stop the reply reader and the event listener, and close the Redis connections."""
        if self._service is None:
            return
        service, waiter, redis = self._service, self._waiter, self._redis
        self._service = self._waiter = self._redis = None

        async def close_all() -> None:
            if waiter is not None:
                await waiter.close()
            await service.close()
            if redis is not None:
                await redis.aclose()

        self.run(close_all, timeout=10)

    def request(self, op: str, args: dict[str, Any]) -> Any:
        return self.run(lambda: self.service.request(op, args))

    def request_many(self, op: str, many_args: Sequence[dict[str, Any]]) -> list[Any]:
        return self.run(lambda: self.service.request_many(op, many_args))


_lock = threading.Lock()
_client: TaskgateClient | None = None


def get_client() -> TaskgateClient:
    """Return this process's client, built from the TASKGATE_* settings on first use."""
    global _client
    with _lock:
        if _client is None or _client.thread is not ClientThread.current():
            _client = TaskgateClient(get_settings())
        return _client


def configure(settings: Settings, *, listen_events: bool = True) -> TaskgateClient:
    """Replace this process's client with one built from `settings`, and return it."""
    global _client
    with _lock:
        previous, _client = _client, TaskgateClient(settings, listen_events=listen_events)
    if previous is not None and previous.thread is _client.thread:
        previous.close()
    return _client
