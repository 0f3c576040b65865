"""The service process: one replica of the transition service with all its loops.

`serve` runs, in one asyncio process: the request consumer (which also takes over the
stale requests of dead replicas), the reaper, the reconciler, the decision pruner, the
replica heartbeat and, unless `http` is False, the operator HTTP API. SIGTERM and SIGINT
stop it cleanly: each loop finishes its current pass, then the connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
import uvicorn

from queue_server.db.engine import Database
from queue_server.db.migrate import upgrade_database
from queue_server.events import EventPublisher
from queue_server.http_api import create_app
from queue_server.keys import Keys
from queue_server.loops.heartbeat import ReplicaHeartbeat
from queue_server.loops.pruner import DecisionPruner
from queue_server.loops.reaper import Reaper
from queue_server.loops.reconciler import Reconciler
from queue_server.post_commit import PostCommit
from queue_server.queues import TaskQueues
from queue_server.redis_conn import connect, mask_url
from queue_server.service import TransitionService
from queue_server.settings import Settings
from queue_server.transport.server import RequestConsumer, ensure_group

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _HttpServer(uvicorn.Server):
    """uvicorn's server without its own signal handlers: `serve` owns SIGTERM and SIGINT."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def new_replica_id() -> str:
    """Return a replica id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def serve(
    settings: Settings, *, http: bool = True, ready: asyncio.Event | None = None
) -> None:
    """Run one service replica until SIGTERM, SIGINT or the failure of one of its loops.

    `ready` is set once the consumer group exists and the HTTP API (if any) listens.
    """
    if not settings.redis_url:
        raise ValueError(
            "TASKGATE_REDIS_URL is not set; the service needs a Redis URL "
            "(use `taskgate dev` for an embedded Redis)"
        )
    replica_id = new_replica_id()
    database_url = settings.resolved_database_url()
    logger.info(
        "service replica %s starting: Redis %s, database %s",
        replica_id, mask_url(settings.redis_url), _mask_database_url(database_url),
    )
    await upgrade_database(database_url)
    database = Database(database_url)
    redis = connect(settings.redis_url)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    try:
        await _run_replica(settings, replica_id, database, redis, stop, http, ready)
    finally:
        _remove_signal_handlers()
        await redis.aclose()
        await database.dispose()
        logger.info("service replica %s stopped", replica_id)


async def _run_replica(
    settings: Settings,
    replica_id: str,
    database: Database,
    redis: aioredis.Redis,
    stop: asyncio.Event,
    http: bool,
    ready: asyncio.Event | None,
) -> None:
    keys = Keys(settings.key_prefix)
    service = TransitionService(database, settings, replica_id=replica_id)
    queues = TaskQueues(redis, keys)
    post_commit = PostCommit(queues, EventPublisher(redis, keys, settings.result_cache_ttl))
    await ensure_group(redis, keys)

    loops: dict[str, Coroutine[Any, Any, None]] = {
        "request consumer": RequestConsumer(
            redis, service, post_commit, settings, replica_id
        ).run(stop),
        "reaper": Reaper(redis, service, post_commit, settings).run(stop),
        "reconciler": Reconciler(redis, service, queues, settings).run(stop),
        "decision pruner": DecisionPruner(service).run(stop),
        "replica heartbeat": ReplicaHeartbeat(redis, settings, replica_id).run(stop),
    }
    tasks = {asyncio.create_task(loop, name=name): name for name, loop in loops.items()}

    http_server: _HttpServer | None = None
    if http:
        http_server = _HttpServer(
            uvicorn.Config(
                create_app(service, redis, post_commit, settings),
                host=settings.http_host,
                port=settings.http_port,
                log_config=None,
                lifespan="off",
            )
        )
        tasks[asyncio.create_task(http_server.serve(), name="http api")] = "http api"
        await _wait_http_started(http_server, tasks)
        logger.info(
            "operator HTTP API listening on http://%s:%d", settings.http_host, settings.http_port
        )

    if ready is not None:
        ready.set()
    logger.info("service replica %s ready", replica_id)
    await _supervise(tasks, stop, http_server)


async def _wait_http_started(server: _HttpServer, tasks: dict[asyncio.Task, str]) -> None:
    while not server.started:
        failed = [task for task in tasks if task.done()]
        if failed:
            await failed[0]
            raise RuntimeError(f"{tasks[failed[0]]} ended before the HTTP API started")
        await asyncio.sleep(0.05)


async def _supervise(
    tasks: dict[asyncio.Task, str], stop: asyncio.Event, http_server: _HttpServer | None
) -> None:
    stopper = asyncio.create_task(stop.wait(), name="stop signal")
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    failure: BaseException | None = None
    for task in done:
        if task is stopper or task.cancelled():
            continue
        error = task.exception()
        if error is not None:
            logger.error("%s failed; stopping the replica", tasks[task], exc_info=error)
            failure = error
        elif not stop.is_set():
            logger.error("%s ended unexpectedly; stopping the replica", tasks[task])
            failure = failure or RuntimeError(f"{tasks[task]} ended unexpectedly")

    stop.set()
    if http_server is not None:
        http_server.should_exit = True
    stopper.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception) and failure is None:
            logger.error("%s failed while stopping", tasks[task], exc_info=result)
    if failure is not None:
        raise failure


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, _on_signal, number, stop)


def _on_signal(number: int, stop: asyncio.Event) -> None:
    logger.info("received %s; stopping", signal.Signals(number).name)
    stop.set()


def _remove_signal_handlers() -> None:
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(number)


def _mask_database_url(url: str) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    return make_url(url).render_as_string(hide_password=True)
