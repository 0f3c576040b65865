"""The no-op tasks the end-to-end benchmarks submit; workers serve them with
``python -m workers bench.tasks``.

`noop` is the single task key of the throughput and latency runs. `KEYED_NOOPS` are
100 more tasks with keys ``bench.noop.0`` to ``bench.noop.99``, for measuring how a
worker copes with many task keys.
"""

from __future__ import annotations

from workers import Task, task

KEYED_TASK_COUNT = 100


@task
async def noop() -> None:
    """Do nothing, so the benchmark measures taskgate and not the task.

    It is a coroutine function, as the raw arq job it is compared with is; a plain
    function would run in a worker thread instead.
    """


async def _keyed_noop() -> None:
    """Do nothing, under one of many task keys."""


KEYED_NOOPS: list[Task] = [
    task(name=f"noop-{index}", task_key=f"bench.noop.{index}")(_keyed_noop)
    for index in range(KEYED_TASK_COUNT)
]
