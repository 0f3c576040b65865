"""Two service replicas as real processes on one Redis and one PostgreSQL: the survivor
replies to the requests that a SIGKILLed replica had read."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from queue_server.keys import CONSUMER_GROUP, Keys
from queue_server.redis_conn import connect
from tests.transport.private_redis import PasswordRedisServer
from tests.transport.wire import create_task_run_args, replies, request_body, send

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.e2e]

WAIT_STEPS = 1200  # polls 0.05 s apart before a wait fails


class Replica:
    """One `python -m queue_server --no-http` process with its log in a file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "queue_server", "--no-http"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def wait_for(condition, what: str) -> None:
    for _ in range(WAIT_STEPS):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_survivor_answers_killed_replicas_requests(postgres_url, key_prefix, tmp_path):
    redis_server = PasswordRedisServer().start()
    keys = Keys(key_prefix)
    env = {
        **os.environ,
        "TASKGATE_REDIS_URL": redis_server.url,
        "TASKGATE_DATABASE_URL": postgres_url,
        "TASKGATE_KEY_PREFIX": key_prefix,
        "TASKGATE_CLAIM_IDLE": "2",
        "TASKGATE_HEARTBEAT_TTL": "3",
        "TASKGATE_LOG_LEVEL": "DEBUG",
    }
    pg_dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(
        hide_password=False
    )
    redis = connect(redis_server.url)
    replicas: list[Replica] = []
    try:
        first = Replica("first", env, tmp_path)
        replicas.append(first)

        async def replicas_alive(count: int) -> bool:
            found = [key async for key in redis.scan_iter(match=f"{key_prefix}:service:*")]
            return len(found) >= count

        await wait_for(lambda: replicas_alive(1), "the first replica")
        run_ids = [uuid4() for _ in range(4)]
        for run_id in run_ids:
            await send(redis, keys, request_body(
                "create_task_run", create_task_run_args(id=run_id), "client-r"
            ))
        created = await replies(redis, keys, "client-r", 4)
        scheduled = {
            UUID(reply.result["run"]["id"]): UUID(reply.result["orchestration"]["state"]["id"])
            for reply in created
        }

        # Lock the rows so the first replica reads the claims but cannot reply to them.
        blocker = await asyncpg.connect(pg_dsn)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "SELECT id FROM task_runs WHERE id = ANY($1::uuid[]) FOR UPDATE", run_ids
        )
        claims = {}
        # One MULTI, so the first replica reads all four claims in one batch.
        async with redis.pipeline(transaction=True) as pipe:
            for run_id in run_ids:
                body = request_body("claim_and_start", {
                    "run_id": str(run_id),
                    "claimed_state_id": str(scheduled[run_id]),
                    "worker_id": "worker-r",
                    "claim_transition_id": str(uuid4()),
                    "start_transition_id": str(uuid4()),
                }, "client-r")
                claims[body["request_id"]] = run_id
                pipe.xadd(keys.requests, {"body": json.dumps(body)})
            await pipe.execute()

        async def first_holds_claims() -> bool:
            consumers = await redis.xinfo_consumers(keys.requests, CONSUMER_GROUP)
            return any(
                str(first.pid) in consumer["name"].decode() and consumer["pending"] == 4
                for consumer in consumers
            )

        await wait_for(first_holds_claims, "the first replica to read the claims")
        second = Replica("second", env, tmp_path)
        replicas.append(second)
        await wait_for(lambda: replicas_alive(2), "the second replica")

        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
        unanswered = await redis.llen(keys.reply("client-r"))
        await transaction.rollback()
        await blocker.close()

        answers = await replies(redis, keys, "client-r", 4, wait_seconds=120)

        async def nothing_pending() -> bool:
            summary = await redis.xpending(keys.requests, CONSUMER_GROUP)
            return summary["pending"] == 0

        await wait_for(nothing_pending, "the stream to be fully acknowledged")
        checker = await asyncpg.connect(pg_dsn)
        try:
            histories = {
                run_id: [
                    row["type"]
                    for row in await checker.fetch(
                        "SELECT type FROM task_run_states WHERE task_run_id = $1 ORDER BY seq",
                        run_id,
                    )
                ]
                for run_id in run_ids
            }
        finally:
            await checker.close()
        second.end()
        second_exit = second.process.returncode
        logs = first.log() + second.log()
    finally:
        for replica in replicas:
            replica.end()
        await redis.aclose()
        redis_server.stop()

    assert unanswered == 0
    assert first.process.returncode == -signal.SIGKILL
    assert {str(answer.request_id) for answer in answers} == set(claims)
    for answer in answers:
        assert answer.ok, answer.error
        assert answer.result["claim"]["status"] == "ACCEPT"
        assert answer.result["start"]["status"] == "ACCEPT"
    assert "took over 4 pending requests" in logs
    assert all(history == ["SCHEDULED", "PENDING", "RUNNING"] for history in histories.values())
    assert second_exit == 0
    assert redis_server.password not in logs
