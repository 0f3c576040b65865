"""Database bytes per run, and the service's memory with many runs stored.

Submitting 100,000 runs one by one would take longer than the whole benchmark, so
the runs are written in bulk instead, but in exactly the shape the service writes
them. Two template runs first go through `TransitionService.apply_batch` in this
process: one created and left queued (Scheduled), one created, claimed, started and
completed. Their rows in every table the service wrote are read back and inserted
again many times, each copy with fresh ids. The insert goes through the service's
`Database` and its SQLAlchemy tables, so indexes and constraints apply as usual.

A service process is then started on the filled database and measured once its
reconciler has put every queued run back on its Redis queue.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis
from sqlalchemy import Table, insert, select

from bench.databases import BenchDatabase
from bench.harness import BenchmarkError, Deadline, ProcessGroup, wait_until
from bench.stack import KEY_PREFIX, StackConfig, start_stack

TASK_KEY = "bench.tasks.noop"
INSERT_CHUNK = 1000
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class StorageRun:
    queued_runs: int
    finished_runs: int
    bytes_per_queued_run: float
    bytes_per_finished_run: float
    service_rss: int
    service_peak_rss: int
    redis_bytes_per_queued_run: float


def request(op: str, args: dict[str, Any]) -> Any:
    from queue_server.protocol import Request  # noqa: PLC0415

    return Request(request_id=uuid.uuid4(), client_id="bench-storage", op=op, args=args)


async def apply_one(service: Any, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Apply one request as a batch of one; return its result or raise with its error."""
    outcome = await service.apply_batch([request(op, args)])
    ((_, reply),) = outcome.replies
    if not reply.ok:
        raise BenchmarkError(f"{op} failed while writing a template run: {reply.error}")
    return reply.result


async def write_template_runs(service: Any) -> tuple[UUID, UUID]:
    """Write one queued and one finished run through the service; return their ids."""
    from queue_server.protocol import Envelope, TaskRunCreate  # noqa: PLC0415

    run_ids = []
    for _ in range(2):
        run = TaskRunCreate(id=uuid.uuid4(), task_key=TASK_KEY, parameters=Envelope(value={}))
        created = await apply_one(
            service,
            "create_task_run",
            {"run": run.model_dump(mode="json"), "transition_id": str(uuid.uuid4())},
        )
        run_ids.append((run.id, created["orchestration"]["state"]["id"]))
    (queued_id, _), (finished_id, scheduled_state_id) = run_ids

    started = await apply_one(
        service,
        "claim_and_start",
        {
            "run_id": str(finished_id),
            "claimed_state_id": scheduled_state_id,
            "worker_id": "bench-storage-worker",
            "claim_transition_id": str(uuid.uuid4()),
            "start_transition_id": str(uuid.uuid4()),
        },
    )
    if started["start"] is None or started["start"]["status"] != "ACCEPT":
        raise BenchmarkError(f"the template run was not started: {started}")
    token = started["start"]["state"]["state_details"]["claim_token"]
    completed = await apply_one(
        service,
        "propose_state",
        {
            "run_id": str(finished_id),
            "transition_id": str(uuid.uuid4()),
            "worker_id": "bench-storage-worker",
            "state": {
                "type": "COMPLETED",
                "data": {"type": "result", "serializer": "json", "value": None},
                "state_details": {"claim_token": token},
            },
        },
    )
    if completed["status"] != "ACCEPT":
        raise BenchmarkError(f"the template run was not completed: {completed}")
    return queued_id, finished_id


def run_tables() -> list[tuple[Table, str]]:
    """Return the tables a background run writes, in insert order, with their run id column."""
    from queue_server.db.models import (  # noqa: PLC0415
        DecisionRow,
        ResultRow,
        TaskRunRow,
        TaskRunStateRow,
    )

    return [
        (TaskRunRow.__table__, "id"),
        (ResultRow.__table__, "task_run_id"),
        (TaskRunStateRow.__table__, "task_run_id"),
        (DecisionRow.__table__, "run_id"),
    ]


async def read_template(session: Any, run_id: UUID) -> list[tuple[Table, list[dict[str, Any]]]]:
    rows = []
    for table, column in run_tables():
        result = await session.execute(select(table).where(table.c[column] == run_id))
        found = [dict(row._mapping) for row in result]
        if table.name == "decisions":
            for row in found:
                row.pop("id")  # an autoincrement key, minted again on insert
        rows.append((table, found))
    return rows


def collect_ids(value: Any, found: set[str]) -> None:
    """Gather every UUID in the value, as text, so each copy can replace them all."""
    if isinstance(value, UUID):
        found.add(str(value))
    elif isinstance(value, str):
        found.update(UUID_TEXT.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            collect_ids(item, found)
    elif isinstance(value, list):
        for item in value:
            collect_ids(item, found)


def with_new_ids(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, UUID):
        return UUID(mapping[str(value)])
    if isinstance(value, str):
        return UUID_TEXT.sub(lambda match: mapping.get(match.group(0), match.group(0)), value)
    if isinstance(value, dict):
        return {key: with_new_ids(item, mapping) for key, item in value.items()}
    if isinstance(value, list):
        return [with_new_ids(item, mapping) for item in value]
    return value


async def insert_copies(database: Any, template: list, copies: int) -> None:
    """Insert `copies` copies of the template run's rows, each with fresh ids."""
    ids: set[str] = set()
    for _, rows in template:
        for row in rows:
            collect_ids(row, ids)

    for start in range(0, copies, INSERT_CHUNK):
        batch: dict[str, list[dict[str, Any]]] = {table.name: [] for table, _ in template}
        for _ in range(min(INSERT_CHUNK, copies - start)):
            mapping = {old: str(uuid.uuid4()) for old in ids}
            for table, rows in template:
                batch[table.name].extend(with_new_ids(row, mapping) for row in rows)
        async with database.write_session() as session:
            for table, _ in template:
                if batch[table.name]:
                    await session.execute(insert(table), batch[table.name])
            await session.commit()


async def fill(url: str, settings: Any, queued: int, finished: int, size) -> tuple[float, float]:
    """Write the template runs and their copies; return bytes per queued and finished run."""
    from queue_server.db.engine import Database  # noqa: PLC0415
    from queue_server.db.migrate import upgrade_database  # noqa: PLC0415
    from queue_server.service import TransitionService  # noqa: PLC0415

    await upgrade_database(url)
    database = Database(url)
    try:
        service = TransitionService(database, settings)
        queued_id, finished_id = await write_template_runs(service)
        async with database.read_session() as session:
            queued_template = await read_template(session, queued_id)
            finished_template = await read_template(session, finished_id)

        empty = await asyncio.to_thread(size)
        await insert_copies(database, queued_template, queued)
        with_queued = await asyncio.to_thread(size)
        await insert_copies(database, finished_template, finished)
        with_finished = await asyncio.to_thread(size)
    finally:
        await database.dispose()
    return (with_queued - empty) / max(queued, 1), (with_finished - with_queued) / max(finished, 1)


def measure_storage(redis_url: str, database: BenchDatabase, runs: int) -> StorageRun:
    """Store `runs` runs, half queued and half finished; measure bytes and service memory."""
    from queue_server.settings import Settings  # noqa: PLC0415

    queued, finished = runs // 2, runs - runs // 2
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    database.create()
    try:
        settings = Settings(redis_url=redis_url, database_url=database.url, key_prefix=KEY_PREFIX)
        per_queued, per_finished = asyncio.run(
            fill(database.url, settings, queued, finished, database.size_bytes)
        )
        redis_before = client.info("memory")["used_memory"]

        config = StackConfig(
            redis_url=redis_url,
            database=database,
            workers=0,
            settings={"TASKGATE_RECONCILE_INTERVAL": "2"},
        )
        with ProcessGroup() as group:
            stack = start_stack(group, config)
            queue = f"{KEY_PREFIX}:queue:{TASK_KEY}"

            def all_queued() -> bool:
                group.check_running()
                return client.zcard(queue) >= queued + 1  # the copies and the template

            wait_until(all_queued, Deadline(300, "the reconciler restoring queued runs"), 0.5)
            redis_after = client.info("memory")["used_memory"]
            return StorageRun(
                queued_runs=queued,
                finished_runs=finished,
                bytes_per_queued_run=per_queued,
                bytes_per_finished_run=per_finished,
                service_rss=stack.service.rss_bytes(),
                service_peak_rss=stack.service.peak_rss_bytes(),
                redis_bytes_per_queued_run=(redis_after - redis_before) / (queued + 1),
            )
    finally:
        client.close()
        database.drop()
