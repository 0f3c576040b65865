"""Wait until a started service and its workers announce themselves in Redis."""

from __future__ import annotations

import asyncio
import time

from queue_server.cli.errors import CliError
from queue_server.cli.stack import LocalStack
from queue_server.keys import Keys

READY_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.1


def wait_until_ready(
    stack: LocalStack, workers: int, stop_requested: list[int] | None = None
) -> None:
    """Block until one service heartbeat and `workers` worker heartbeats exist.

    Returns early once `stop_requested` is non-empty (a signal arrived). Raises
    CliError if a child exits first or the heartbeats do not appear in time.
    """
    asyncio.run(_wait(stack, workers, stop_requested if stop_requested is not None else []))


async def _wait(stack: LocalStack, workers: int, stop_requested: list[int]) -> None:
    from queue_server.redis_conn import connect  # noqa: PLC0415

    keys = Keys(stack.settings.key_prefix)
    client = connect(stack.redis_url)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    try:
        while not stop_requested:
            exited = stack.exited_child()
            if exited is not None:
                raise CliError(
                    f"{exited.name} (pid {exited.pid}) exited with code "
                    f"{exited.process.returncode} while starting; see its output above or in "
                    f"{stack.log_folder / (exited.name + '.log')}"
                )
            services = await _count(client, keys.service("*"))
            worker_count = await _count(client, keys.worker_pattern)
            if services >= 1 and worker_count >= workers:
                return
            if time.monotonic() > deadline:
                raise CliError(
                    f"the service and {workers} worker(s) did not report a heartbeat within "
                    f"{READY_TIMEOUT_SECONDS:.0f} s (seen: {services} service, {worker_count} "
                    f"workers); see the logs in {stack.log_folder}"
                )
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await client.aclose()


async def _count(client, pattern: str) -> int:  # type: ignore[no-untyped-def]
    count = 0
    async for _ in client.scan_iter(match=pattern, count=500):
        count += 1
    return count
