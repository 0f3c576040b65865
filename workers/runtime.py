"""One worker process: serve the tasks of some modules from their arq queues until stopped.

`run_worker` builds these on one event loop: a `TaskKeyConsumer` per task key, all
sharing one concurrency limit, and the `QueueWatcher` that wakes them. It adds one
pub/sub connection for the wake and events channels, the `RunExecutor` that claims and
runs each job, and the heartbeat thread.

SIGTERM and SIGINT stop it gracefully: no new job is taken, runs in flight get
``shutdown_grace`` seconds to finish, and the service is asked to release what is left,
which it moves as it would for an expired heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import redis.asyncio as aioredis
from arq.connections import ArqRedis, create_pool

from queue_server.jobs import deserialize_job, serialize_job
from queue_server.keys import Keys
from queue_server.redis_conn import arq_redis_settings, connect, mask_url
from queue_server.settings import Settings
from queue_server.transport_client import ServiceClient
from workers.channels import ChannelListener
from workers.client import resolve_redis_url
from workers.consumer import TaskKeyConsumer
from workers.execution import RunExecutor
from workers.heartbeat import Heartbeat
from workers.registry import REGISTRY, TaskRegistry, load_modules
from workers.watcher import QueueWatcher, RedisClock

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds the worker waits for the reply to its release request at shutdown.
RELEASE_TIMEOUT_SECONDS = 30.0


def new_worker_id() -> str:
    """Return a worker id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def run_worker(
    modules: list[str],
    *,
    concurrency: int,
    task_keys: list[str] | None,
    settings: Settings,
) -> None:
    """Import the modules and serve their tasks (or the `task_keys` among them) until stopped.

    Blocks. Raise ImportError for a module that cannot be imported and ValueError when a
    requested task key is not defined in the modules or no task is found at all.
    """
    served = select_task_keys(modules, task_keys, REGISTRY)
    runtime = WorkerRuntime(served, concurrency=concurrency, settings=settings, registry=REGISTRY)
    asyncio.run(runtime.run())


def select_task_keys(
    modules: list[str], task_keys: list[str] | None, registry: TaskRegistry
) -> list[str]:
    """Return the task keys to serve: all tasks of the modules, or the requested subset."""
    found = load_modules(modules, registry)
    if task_keys:
        unknown = sorted(set(task_keys) - set(registry.keys()))
        if unknown:
            raise ValueError(
                f"task key {unknown[0]!r} is not defined in {', '.join(modules)}; "
                f"defined: {', '.join(found) or 'none'}"
            )
        return sorted(set(task_keys))
    if not found:
        raise ValueError(f"no @task found in {', '.join(modules)}")
    return found


class WorkerRuntime:
    """Everything one worker process runs, wired together on one event loop."""

    def __init__(
        self,
        task_keys: list[str],
        *,
        concurrency: int,
        settings: Settings,
        registry: TaskRegistry,
    ) -> None:
        self.task_keys = task_keys
        self.concurrency = concurrency
        self.settings = settings
        self.registry = registry
        self.keys = Keys(settings.key_prefix)
        self.worker_id = new_worker_id()
        self.redis_url = resolve_redis_url(settings)
        self.consumers: dict[str, TaskKeyConsumer] = {}
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        # arq logs every job with its arguments at INFO; arguments may hold secrets.
        logging.getLogger("arq.worker").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        logger.info(
            "worker %s starting: task keys %s, concurrency %d, Redis %s",
            self.worker_id,
            ", ".join(self.task_keys),
            self.concurrency,
            mask_url(self.redis_url),
        )

        redis = connect(self.redis_url)
        pool = await self._arq_pool()
        service = ServiceClient(redis, self.keys, request_timeout=self.settings.request_timeout)
        await service.start()
        thread_pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="taskgate-run")
        executor = RunExecutor(
            registry=self.registry,
            service=service,
            keys=self.keys,
            worker_id=self.worker_id,
            thread_pool=thread_pool,
            result_cache_ttl=self.settings.result_cache_ttl,
        )
        heartbeat = Heartbeat(
            redis_url=self.redis_url,
            keys=self.keys,
            worker_id=self.worker_id,
            task_keys=self.task_keys,
            held_runs=executor.held.snapshot,
            ttl=self.settings.heartbeat_ttl,
        )
        heartbeat.start()

        try:
            await self._serve(pool, executor, service)
        finally:
            heartbeat.stop(delete=not executor.held.snapshot())
            thread_pool.shutdown(wait=False, cancel_futures=True)
            await service.close()
            await pool.aclose(close_connection_pool=True)
            await redis.aclose()
            logger.info("worker %s stopped", self.worker_id)

    async def _serve(self, pool: ArqRedis, executor: RunExecutor, service: ServiceClient) -> None:
        """Run the consumers, the watcher and the subscription until a stop signal."""
        subscriber = connect(self.redis_url)
        background = self._start_consumers(pool, subscriber, executor)
        try:
            await self._stop.wait()
            await self._shut_down(executor, service)
        finally:
            for job in background:
                job.cancel()
            for job in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            await subscriber.aclose()

    def _start_consumers(
        self, pool: ArqRedis, subscriber: aioredis.Redis, executor: RunExecutor
    ) -> list[asyncio.Task[None]]:
        clock = RedisClock()
        slots = asyncio.BoundedSemaphore(self.concurrency)
        for task_key in self.task_keys:
            self.consumers[task_key] = TaskKeyConsumer(
                task_key=task_key,
                handler=executor.run_job,
                keys=self.keys,
                pool=pool,
                slots=slots,
                concurrency=self.concurrency,
                clock=clock,
                on_slot_freed=self._wake_starved,
            )
        watcher = QueueWatcher(
            pool, self.keys, self.consumers, self.settings.worker_poll_delay, clock
        )
        listener = ChannelListener(
            subscriber,
            {
                self.keys.wake: watcher.on_wake_message,
                self.keys.events: lambda data: _on_event(executor, data),
            },
            on_resubscribe=watcher.wake_all,
        )
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(consumer.main()) for consumer in self.consumers.values()]
        tasks.append(loop.create_task(watcher.run()))
        tasks.append(loop.create_task(listener.run()))
        return tasks

    def _wake_starved(self) -> None:
        for consumer in self.consumers.values():
            if consumer.starved:
                consumer.starved = False
                consumer.wake.set()

    def _on_signal(self, signum: int) -> None:
        if self._stop.is_set():
            logger.warning("worker %s: second stop signal; ending the grace period", self.worker_id)
            self._hurry.set()
            return
        logger.info(
            "worker %s: %s received; taking no new jobs",
            self.worker_id,
            signal.Signals(signum).name,
        )
        self._stop.set()

    async def _shut_down(self, executor: RunExecutor, service: ServiceClient) -> None:
        executor.stopping = True
        for consumer in self.consumers.values():
            consumer.allow_pick_jobs = False
        in_flight = [
            job
            for consumer in self.consumers.values()
            for job in consumer.tasks.values()
            if not job.done()
        ]
        if in_flight:
            logger.info(
                "worker %s: waiting up to %.1f s for %d run(s) in flight",
                self.worker_id,
                self.settings.shutdown_grace,
                len(in_flight),
            )
            await self._wait_for_runs(in_flight)
        left = executor.held.snapshot()
        for job in in_flight:
            job.cancel()
        if in_flight:
            await asyncio.wait(in_flight)
        if left:
            await self._release(service, left)
            for run_id in left:
                executor.held.discard(run_id)

    async def _wait_for_runs(self, in_flight: list[asyncio.Task[None]]) -> None:
        """Wait until the runs end, the grace period passes, or a second signal arrives."""
        all_done = asyncio.ensure_future(asyncio.wait(in_flight))
        hurry = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait(
            [all_done, hurry],
            timeout=self.settings.shutdown_grace,
            return_when=asyncio.FIRST_COMPLETED,
        )
        # Cancelling these waiters leaves the runs themselves untouched.
        all_done.cancel()
        hurry.cancel()

    async def _release(self, service: ServiceClient, run_ids: list[UUID]) -> None:
        logger.info(
            "worker %s: releasing %d unfinished run(s): %s",
            self.worker_id,
            len(run_ids),
            ", ".join(map(str, run_ids)),
        )
        try:
            answer = await service.request(
                "release_worker",
                {"worker_id": self.worker_id, "run_ids": [str(run_id) for run_id in run_ids]},
                timeout=RELEASE_TIMEOUT_SECONDS,
            )
        except TimeoutError:
            logger.error(
                "worker %s: the release request got no reply; the reaper will move "
                "the runs once the heartbeat expires",
                self.worker_id,
            )
            return
        logger.info("worker %s: the service released %s", self.worker_id, answer.get("released"))

    async def _arq_pool(self) -> ArqRedis:
        return await create_pool(
            arq_redis_settings(self.redis_url),
            job_serializer=serialize_job,
            job_deserializer=deserialize_job,
        )


def _on_event(executor: RunExecutor, data: bytes) -> None:
    """Interrupt a held run that moved to Cancelling."""
    if b"CANCELLING" not in data:
        return
    try:
        event = json.loads(data)
        run_id = UUID(event["run_id"])
    except (ValueError, KeyError, TypeError):
        return
    if event.get("state_type") == "CANCELLING" and run_id in executor.held:
        executor.request_cancel(run_id)
