"""`python -m queue_server` as a real process: HTTP API on loopback, clean stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.servers import free_port
from tests.transport.private_redis import PasswordRedisServer

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TOKEN = "process-token-456"


def wait_healthy(base_url: str, process: subprocess.Popen) -> None:
    for _ in range(1200):
        if process.poll() is not None:
            raise AssertionError(f"service exited early with code {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("service HTTP API never became healthy")


def test_service_process_serves_and_stops(sqlite_url, key_prefix, tmp_path):
    redis_server = PasswordRedisServer().start()
    port = free_port()
    env = {
        **os.environ,
        "TASKGATE_REDIS_URL": redis_server.url,
        "TASKGATE_DATABASE_URL": sqlite_url,
        "TASKGATE_KEY_PREFIX": key_prefix,
        "TASKGATE_HTTP_PORT": str(port),
        "TASKGATE_API_TOKEN": TOKEN,
        "TASKGATE_LOG_LEVEL": "DEBUG",
    }
    log_path = tmp_path / "service.log"
    base_url = f"http://127.0.0.1:{port}"
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "queue_server"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_healthy(base_url, process)
                without_token = httpx.get(f"{base_url}/runs", timeout=10)
                with_token = httpx.get(
                    f"{base_url}/runs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
                )
                docs = httpx.get(f"{base_url}/docs", timeout=10)
                process.send_signal(signal.SIGTERM)
                exit_code = process.wait(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    finally:
        redis_server.stop()
    output = log_path.read_text(errors="replace")

    assert without_token.status_code == 401
    assert with_token.status_code == 200
    assert with_token.json() == []
    assert docs.status_code == 200
    assert exit_code == 0
    assert "received SIGTERM; stopping" in output
    assert output.index("received SIGTERM") < output.rindex(" stopped\n")
    assert re.search(r"service replica \S+ stopped", output)
    assert redis_server.password not in output
    assert TOKEN not in output
