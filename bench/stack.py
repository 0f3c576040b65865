"""A taskgate service process and worker processes on a private Redis and database.

The processes read their settings from TASKGATE_* environment variables, so a
stack is fully described by the environment it is started with. Readiness is judged
the way an operator would: the service's and each worker's heartbeat key in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from bench.databases import BenchDatabase
from bench.harness import Deadline, ManagedProcess, ProcessGroup, wait_until

KEY_PREFIX = "taskgate"
WORKER_MODULE = "bench.tasks"


@dataclass
class StackConfig:
    """The database, worker count and setting overrides of one benchmark stack."""

    redis_url: str
    database: BenchDatabase
    workers: int = 1
    worker_concurrency: int = 100
    # Task keys each worker serves; empty serves every task of the worker module.
    task_keys: list[str] = field(default_factory=lambda: ["bench.tasks.noop"])
    settings: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        return {
            "TASKGATE_REDIS_URL": self.redis_url,
            "TASKGATE_DATABASE_URL": self.database.url,
            "TASKGATE_KEY_PREFIX": KEY_PREFIX,
            "TASKGATE_WORKER_CONCURRENCY": str(self.worker_concurrency),
            "TASKGATE_LOG_LEVEL": "WARNING",
            **self.settings,
        }


@dataclass
class Stack:
    """The started processes of one stack."""

    service: ManagedProcess
    workers: list[ManagedProcess]


def heartbeat_count(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


def start_stack(
    group: ProcessGroup, config: StackConfig, service_argv: list[str] | None = None
) -> Stack:
    """Start the service, then the workers, waiting for each one's heartbeat.

    `service_argv` replaces ``python -m queue_server``, for example to run the service
    under a profiler.
    """
    environment = config.environment()
    client = redis.Redis.from_url(config.redis_url)
    if service_argv is None:
        service = ManagedProcess.python_module(
            "service", "queue_server", "--no-http", env=environment
        )
    else:
        service = ManagedProcess("service", service_argv, env=environment)
    group.start(service)

    def service_ready() -> bool:
        group.check_running()
        return heartbeat_count(client, f"{KEY_PREFIX}:service:*") >= 1

    wait_until(service_ready, Deadline(120, "the taskgate service starting"), interval=0.1)

    workers = []
    for index in range(config.workers):
        key_args = [argument for key in config.task_keys for argument in ("--task-key", key)]
        worker = ManagedProcess.python_module(
            f"worker-{index}", "workers", WORKER_MODULE, *key_args, env=environment
        )
        workers.append(group.start(worker))

    def workers_ready() -> bool:
        group.check_running()
        return heartbeat_count(client, f"{KEY_PREFIX}:workers:*") >= config.workers

    wait_until(workers_ready, Deadline(120, "the taskgate workers starting"), interval=0.1)
    client.close()
    return Stack(service=service, workers=workers)
