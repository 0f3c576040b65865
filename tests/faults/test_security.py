"""Security as a user sees it: a loopback HTTP API with a token, secrets kept out of logs, TLS.

The secret-in-logs test runs the service and a worker against a private redis-server
that requires a password, at DEBUG level, and searches every captured log for the
password and the API token. The TLS test makes its own certificate authority and
server certificate with openssl, so it needs nothing from the host but the binaries.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from tests.faults import tasks
from tests.faults.harness import ProcessGroup, Stack, wait_until
from tests.servers import free_port, redis_server_binary

pytestmark = pytest.mark.faults


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    connections = psutil.Process(pid).net_connections(kind="inet")
    return {
        (connection.laddr.ip, connection.laddr.port)
        for connection in connections
        if connection.status == psutil.CONN_LISTEN
    }


def test_http_api_loopback_with_token(stack: Stack, execution_log) -> None:
    token = f"token-{uuid.uuid4().hex}"
    port = free_port()
    service = stack.start_service(http_port=port, TASKGATE_API_TOKEN=token)
    wait_until(lambda: listening_addresses(service.pid), 60, "the HTTP API to listen")
    assert listening_addresses(service.pid) == {("127.0.0.1", port)}

    base = f"http://127.0.0.1:{port}"
    without = httpx.get(f"{base}/runs", timeout=30)
    assert without.status_code == 401
    assert without.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{base}/runs", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    forced = httpx.post(
        f"{base}/runs/{uuid.uuid4()}/state",
        json={"state": {"type": "COMPLETED"}},
        timeout=30,
    )
    assert forced.status_code == 401

    allowed = httpx.get(f"{base}/runs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert allowed.status_code == 200
    assert allowed.json() == []
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200


def start_redis(group: ProcessGroup, extra: list[str]) -> int:
    """Start a redis-server without persistence in the test's process group; return its port."""
    port = free_port()
    group.start(
        "redis",
        [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            *extra,
        ],
        env={},
    )
    return port


def answers_ping(**connect: object) -> bool:
    client = redis.Redis(**connect)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_no_secret_in_logs(
    processes: ProcessGroup, sqlite_url: str, execution_log, caplog
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    token = f"token-{uuid.uuid4().hex}"
    port = start_redis(processes, ["--requirepass", password])
    wait_until(
        lambda: answers_ping(host="127.0.0.1", port=port, password=password),
        60,
        "the password-protected Redis",
    )
    stack = Stack(
        group=processes,
        redis_url=f"redis://:{password}@127.0.0.1:{port}/0",
        database_url=sqlite_url,
        key_prefix="tgsecret",
    )
    stack.settings["TASKGATE_LOG_LEVEL"] = "DEBUG"
    caplog.set_level(logging.DEBUG)

    stack.start_service(http_port=free_port(), TASKGATE_API_TOKEN=token)
    stack.start_worker(concurrency=2)
    future = tasks.echo.apply_async(
        (str(execution_log), "secret", {"note": "plain"}), client=stack.client()
    )
    assert future.result(timeout=120)["label"] == "secret"

    # A worker given a wrong password must fail without printing it either.
    wrong_password = f"wrong-{uuid.uuid4().hex}"
    stranger = stack.start_worker(
        wait=False,
        name="worker-wrong-password",
        TASKGATE_REDIS_URL=f"redis://:{wrong_password}@127.0.0.1:{port}/0",
    )
    wait_until(lambda: not stranger.running(), 120, "the worker with a wrong password to exit")
    assert stranger.process.returncode == 2
    assert "cannot connect to Redis at redis://:***@127.0.0.1" in stranger.log_text()
    assert "Traceback" not in stranger.log_text()

    logs = processes.logs() + caplog.text
    assert "service replica" in logs
    assert "worker" in logs
    assert password not in logs
    assert wrong_password not in logs
    assert token not in logs
    assert "***" in logs


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """Make a CA and a server certificate for 127.0.0.1 with openssl; return ca, cert, key."""
    ca_key, ca_cert = folder / "ca.key", folder / "ca.crt"
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1\n")
    commands = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=taskgate test CA", "-keyout", ca_key, "-out", ca_cert],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", key, "-out", request],
        ["openssl", "x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", extensions, "-out", cert],
    ]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    return ca_cert, cert, key


def test_tls_redis_url(
    processes: ProcessGroup, sqlite_url: str, tmp_path: Path, execution_log
) -> None:
    ca_cert, cert, key = make_certificates(tmp_path)
    password = f"pw-{uuid.uuid4().hex}"
    port = free_port()
    processes.start(
        "redis-tls",
        [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca_cert),
            "--tls-auth-clients", "no",
            "--requirepass", password,
            "--save", "",
            "--appendonly", "no",
        ],
        env={},
    )
    tls = {"ssl": True, "ssl_ca_certs": str(ca_cert), "ssl_cert_reqs": "required"}
    wait_until(
        lambda: answers_ping(host="127.0.0.1", port=port, password=password, **tls),
        60,
        "the TLS Redis",
    )
    url = (
        f"rediss://:{password}@127.0.0.1:{port}/0"
        f"?ssl_ca_certs={ca_cert}&ssl_cert_reqs=required"
    )
    stack = Stack(
        group=processes,
        redis_url=url,
        database_url=sqlite_url,
        key_prefix="tgtls",
        connect_redis=lambda: redis.Redis(
            host="127.0.0.1", port=port, password=password, **tls
        ),
    )
    stack.start_service()
    stack.start_worker(concurrency=2)
    future = tasks.echo.apply_async(
        (str(execution_log), "tls", {"over": "tls"}), client=stack.client()
    )
    assert future.result(timeout=120) == {"label": "tls", "payload": {"over": "tls"}}
    assert password not in processes.logs()
