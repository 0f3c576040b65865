"""Raw arq: no-op jobs through plain arq worker processes, the floor taskgate is built on.

Jobs are written the way `ArqRedis.enqueue_job` writes them (the job key with its
expiry, then the queue entry), but pipelined, so the enqueue side is not the
bottleneck. Throughput runs from the first enqueue to the finish time stored in
the last job's result. Latency uses the start and finish times that arq records in
each result.
"""

from __future__ import annotations

import pickle
import time
import uuid
from dataclasses import dataclass

import redis
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job

from bench.arq_worker import READY_KEY_PREFIX
from bench.harness import (
    BenchmarkError,
    Deadline,
    ManagedProcess,
    ProcessGroup,
    percentile,
    wait_until,
)

ENQUEUE_CHUNK = 500
JOB_EXPIRY_MS = 86_400_000


@dataclass(frozen=True)
class ArqConfig:
    """Worker settings of one raw arq run."""

    label: str
    max_jobs: int
    poll_delay: float
    processes: int = 1


STOCK = ArqConfig("stock", max_jobs=10, poll_delay=0.5)
TUNED = ArqConfig("tuned", max_jobs=100, poll_delay=0.01)


@dataclass(frozen=True)
class ThroughputRun:
    jobs: int
    seconds: float
    redis_commands: int = 0  # commands of the workers and the enqueue, the driver's polls left out

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds


@dataclass(frozen=True)
class LatencyRun:
    to_start_ms: list[float]
    to_finish_ms: list[float]

    def p(self, series: str, fraction: float) -> float:
        return percentile(getattr(self, series), fraction)


def start_workers(group: ProcessGroup, redis_url: str, config: ArqConfig) -> None:
    """Start the worker processes and wait until each has connected to Redis."""
    client = redis.Redis.from_url(redis_url)
    pids = []
    for index in range(config.processes):
        process = ManagedProcess.python_module(
            f"arq-worker-{config.label}-{index}",
            "bench.arq_worker",
            "--redis-url",
            redis_url,
            "--max-jobs",
            str(config.max_jobs),
            "--poll-delay",
            str(config.poll_delay),
        )
        pids.append(group.start(process).pid)

    def all_ready() -> bool:
        group.check_running()
        return client.exists(*[f"{READY_KEY_PREFIX}{pid}" for pid in pids]) == len(pids)

    wait_until(all_ready, Deadline(30, "arq workers starting"))
    client.close()


def enqueue_pipelined(client: redis.Redis, job_ids: list[str]) -> None:
    """Write the jobs as `enqueue_job` would, in pipelines of `ENQUEUE_CHUNK` jobs."""
    for start in range(0, len(job_ids), ENQUEUE_CHUNK):
        pipeline = client.pipeline(transaction=False)
        for job_id in job_ids[start : start + ENQUEUE_CHUNK]:
            enqueue_ms = int(time.time() * 1000)
            payload = serialize_job("noop", (), {}, None, enqueue_ms)
            pipeline.psetex(job_key_prefix + job_id, JOB_EXPIRY_MS, payload)
            pipeline.zadd(default_queue_name, {job_id: enqueue_ms})
        pipeline.execute()


def read_results(client: redis.Redis, job_ids: list[str]) -> list[dict]:
    """Return arq's stored result records; raise if any job has none or failed."""
    raw = client.mget([result_key_prefix + job_id for job_id in job_ids])
    missing = sum(1 for value in raw if value is None)
    if missing:
        raise BenchmarkError(f"{missing} of {len(job_ids)} arq jobs have no result")
    records = [pickle.loads(value) for value in raw]
    failed = [record for record in records if not record["s"]]
    if failed:
        raise BenchmarkError(f"{len(failed)} arq jobs failed, first: {failed[0]['r']!r}")
    return records


def wait_for_results(
    client: redis.Redis, group: ProcessGroup, job_ids: list[str], deadline: Deadline
) -> int:
    """Poll until every job has a result; return the Redis commands the polling sent."""
    keys = [result_key_prefix + job_id for job_id in job_ids]
    commands = 0

    def all_done() -> bool:
        nonlocal commands
        group.check_running()
        commands += 1
        if client.zcard(default_queue_name):
            return False
        commands += 1
        return client.exists(*keys) == len(keys)

    wait_until(all_done, deadline, interval=0.01)
    return commands


def measure_throughput(redis_url: str, config: ArqConfig, jobs: int) -> ThroughputRun:
    """Enqueue `jobs` no-op jobs at once and time them until the last one finishes."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with ProcessGroup() as group:
        start_workers(group, redis_url, config)
        job_ids = [uuid.uuid4().hex for _ in range(jobs)]
        client.config_resetstat()
        started = time.time()
        enqueue_pipelined(client, job_ids)
        polls = wait_for_results(client, group, job_ids, Deadline(300, f"raw arq {config.label}"))
        stats = client.info("commandstats")
    records = read_results(client, job_ids)
    client.close()
    last_finish = max(record["ft"] for record in records) / 1000
    commands = sum(values["calls"] for name, values in stats.items() if name != "cmdstat_config")
    return ThroughputRun(jobs=jobs, seconds=last_finish - started, redis_commands=commands - polls)


def measure_latency(redis_url: str, config: ArqConfig, runs: int) -> LatencyRun:
    """Enqueue one job at a time and wait for its result before the next."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    to_start, to_finish = [], []
    with ProcessGroup() as group:
        start_workers(group, redis_url, config)
        for _ in range(runs):
            job_id = uuid.uuid4().hex
            enqueued_ms = time.time() * 1000
            enqueue_pipelined(client, [job_id])
            wait_for_results(client, group, [job_id], Deadline(30, "raw arq latency"))
            (record,) = read_results(client, [job_id])
            to_start.append(record["st"] - enqueued_ms)
            to_finish.append(record["ft"] - enqueued_ms)
    client.close()
    return LatencyRun(to_start_ms=to_start, to_finish_ms=to_finish)
