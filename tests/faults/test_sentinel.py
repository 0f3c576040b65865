"""Redis Sentinel: the primary fails over mid-load and every run still completes.

A primary, a replica and one sentinel run on loopback ports. The service and the workers
connect through a ``redis+sentinel://`` URL. While runs are being executed, the test
asks the sentinel to fail over; the replica becomes the primary, and the old primary
turns into a replica that refuses writes. Replication is asynchronous, so the newest
writes may be lost: senders resend, and the reconciler sees the new server's run id
and restores missing queue entries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.sentinel import Sentinel

from tests.faults import tasks
from tests.faults.harness import ProcessGroup, Stack, executions, wait_until
from tests.servers import RedisServer, free_port, redis_server_binary

pytestmark = pytest.mark.faults

SERVICE_NAME = "tgprimary"
RUNS = 200


def start_sentinel(group: ProcessGroup, folder: Path, primary_port: int) -> int:
    """Start one sentinel watching the primary; return its port."""
    port = free_port()
    config = folder / "sentinel.conf"
    config.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {folder}",
                f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {primary_port} 1",
                f"sentinel down-after-milliseconds {SERVICE_NAME} 2000",
                f"sentinel failover-timeout {SERVICE_NAME} 10000",
                f"sentinel parallel-syncs {SERVICE_NAME} 1",
                "",
            ]
        )
    )
    group.start("sentinel", [redis_server_binary(), str(config), "--sentinel"], env={})
    client = redis.Redis(host="127.0.0.1", port=port)

    def replica_known() -> bool:
        try:
            replicas = client.sentinel_slaves(SERVICE_NAME)
        except redis.RedisError:
            return False
        return any("s_down" not in replica["flags"] for replica in replicas)

    wait_until(replica_known, 60, "the sentinel to discover the replica", interval=0.25)
    client.close()
    return port


def primary_port(sentinel_port: int) -> int:
    client = redis.Redis(host="127.0.0.1", port=sentinel_port)
    try:
        _, port = client.sentinel_get_master_addr_by_name(SERVICE_NAME)
        return int(port)
    finally:
        client.close()


def test_failover_mid_load(
    private_redis: RedisServer, processes: ProcessGroup, sqlite_url: str, tmp_path, execution_log
) -> None:
    replica = RedisServer(
        extra_args=["--replicaof", "127.0.0.1", str(private_redis.port)]
    ).start()
    try:
        sentinel_port = start_sentinel(processes, tmp_path, private_redis.port)
        stack = Stack(
            group=processes,
            redis_url=f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE_NAME}/0",
            database_url=sqlite_url,
            key_prefix="tgsentinel",
            connect_redis=lambda: Sentinel([("127.0.0.1", sentinel_port)]).master_for(
                SERVICE_NAME
            ),
        )
        stack.start_service()
        stack.start_worker(concurrency=4, name="worker-a")
        stack.start_worker(concurrency=4, name="worker-b")
        futures = tasks.echo.map(
            [str(execution_log)] * RUNS,
            [f"f{index}" for index in range(RUNS)],
            [{"index": index} for index in range(RUNS)],
            [0.02] * RUNS,
            client=stack.client(),
        )
        wait_until(lambda: sum(executions(execution_log).values()) >= 20, 300, "20 executions")

        assert primary_port(sentinel_port) == private_redis.port
        executed_before_failover = sum(executions(execution_log).values())
        sentinel = redis.Redis(host="127.0.0.1", port=sentinel_port)
        assert sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE_NAME)
        sentinel.close()
        wait_until(
            lambda: primary_port(sentinel_port) == replica.port, 120, "the failover to finish"
        )

        final = stack.wait_all_final(RUNS)
        assert executed_before_failover < RUNS
        assert set(final.values()) == {("COMPLETED", "Completed")}
        for future in futures:
            result = future.result(timeout=60)
            assert result["payload"] == {"index": int(result["label"][1:])}
        history = stack.state_history()
        completions = {
            run_id: [kind for kind, _ in states].count("COMPLETED")
            for run_id, states in history.items()
        }
        assert set(completions.values()) == {1}
        counts = executions(execution_log)
        assert len(counts) == RUNS
        assert set(counts.values()) == {1}
    finally:
        replica.stop()

