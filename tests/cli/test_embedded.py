"""The embedded Redis: a private server that other commands can find, gone after stop."""

from __future__ import annotations

import psutil
import pytest
import redis

from queue_server.embedded import EmbeddedRedis, read_running_url

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("use_unix_socket", [True, False])
def test_embedded_redis_starts_and_stops(tmp_path, use_unix_socket):
    server = EmbeddedRedis(home=tmp_path, use_unix_socket=use_unix_socket).start()
    try:
        pid = server.process.pid
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("save")["save"] == ""
        client.close()
        assert read_running_url(tmp_path) == server.url
        if use_unix_socket:
            assert server.url.startswith("unix://")
        else:
            assert server.url.startswith("redis://127.0.0.1:")
    finally:
        server.stop()

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert read_running_url(tmp_path) is None
    assert not server.socket_path.exists()


def test_embedded_redis_persists_when_asked(tmp_path):
    with EmbeddedRedis(home=tmp_path, persist=True) as server:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.close()


def test_long_home_falls_back_to_tcp(tmp_path):
    home = tmp_path / ("deep" * 30)

    with EmbeddedRedis(home=home) as server:
        client = redis.Redis.from_url(server.url)
        assert server.url.startswith("redis://127.0.0.1:")
        assert client.ping()
        client.close()
