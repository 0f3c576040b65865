"""Connecting from Redis URLs: passwords, TLS, unix sockets and Sentinel, on private servers."""

from __future__ import annotations

import logging

import pytest
from arq.connections import create_pool

from queue_server.redis_conn import arq_redis_settings, connect, mask_url, parse_redis_url
from tests.servers import RedisServer
from tests.transport.private_redis import PasswordRedisServer, SentinelGroup, TlsRedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def password_server():
    server = PasswordRedisServer().start()
    yield server
    server.stop()


def test_mask_url_hides_passwords():
    assert mask_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask_url("redis://user:pw@h/0") == "redis://user:***@h/0"
    assert mask_url("redis://user@h/0") == "redis://user@h/0"
    masked = mask_url("redis+sentinel://:a@h1:1,h2:2/m/0?sentinel_password=b")
    assert masked == "redis+sentinel://:***@h1:1,h2:2/m/0?sentinel_password=***"


def test_parse_sentinel_url():
    target = parse_redis_url("redis+sentinel://:pw@127.0.0.1:26379,[::1]:26380/mymaster/2")
    assert target.hosts == (("127.0.0.1", 26379), ("::1", 26380))
    assert target.service_name == "mymaster"
    assert target.db == 2
    assert target.password == "pw"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1/0", "scheme"),
        ("redis://127.0.0.1/x", "database number"),
        ("redis://127.0.0.1:port/0", "port"),
        ("redis://127.0.0.1/0?ssl_ca_certs=/ca.pem", "needs TLS"),
        ("redis://127.0.0.1/0?colour=blue", "option 'colour'"),
        ("redis+sentinel://127.0.0.1:26379", "name the service"),
        ("rediss://127.0.0.1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
    ],
)
def test_parse_invalid_url_names_part(url, named):
    with pytest.raises(ValueError, match=named):
        parse_redis_url(url)


async def test_password_url_works_and_is_never_logged(password_server, caplog):
    caplog.set_level(logging.DEBUG)
    client = connect(password_server.url)
    try:
        assert await client.ping()
        await client.set("taskgate-test", "1")
        assert await client.get("taskgate-test") == b"1"
    finally:
        await client.aclose()

    settings = arq_redis_settings(password_server.url)
    logging.getLogger("tests").info("arq settings: %r", settings)
    pool = await create_pool(settings)
    try:
        assert await pool.ping()
    finally:
        await pool.aclose()

    assert "***" in caplog.text
    assert password_server.password not in caplog.text


async def test_wrong_password_fails(password_server):
    client = connect(f"redis://:wrong@127.0.0.1:{password_server.port}/0")
    try:
        with pytest.raises(Exception, match="(?i)auth|password"):
            await client.ping()
    finally:
        await client.aclose()


async def test_tls_url_works():
    server = TlsRedisServer().start()
    try:
        client = connect(server.url)
        try:
            assert await client.ping()
            await client.set("over-tls", "yes")
            assert await client.get("over-tls") == b"yes"
        finally:
            await client.aclose()

        pool = await create_pool(arq_redis_settings(server.url))
        try:
            assert await pool.ping()
        finally:
            await pool.aclose()
    finally:
        server.stop()


async def test_unix_socket_url_works(tmp_path):
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(extra_args=["--unixsocket", str(socket_path)]).start()
    try:
        client = connect(f"unix://{socket_path}?db=1")
        try:
            assert await client.ping()
            assert (await client.client_info())["db"] == 1
        finally:
            await client.aclose()
    finally:
        server.stop()


async def test_sentinel_url_reaches_primary():
    group = SentinelGroup().start()
    try:
        client = connect(group.url)
        try:
            await client.set("through-sentinel", "ok")
            assert await client.get("through-sentinel") == b"ok"
            info = await client.info("server")
            assert info["tcp_port"] == group.primary.port
        finally:
            await client.aclose()

        pool = await create_pool(arq_redis_settings(group.url))
        try:
            assert await pool.get("through-sentinel") == b"ok"
        finally:
            await pool.aclose()
    finally:
        group.stop()


async def test_tls_client_certificate_works():
    server = TlsRedisServer(require_client_certificate=True).start()
    certificates = server.certificates
    try:
        with_certificate = connect(
            f"{server.url}&ssl_certfile={certificates['server']}"
            f"&ssl_keyfile={certificates['server-key']}"
        )
        without_certificate = connect(server.url)
        try:
            assert await with_certificate.ping()
            with pytest.raises(Exception):  # noqa: B017 - the TLS handshake error type varies
                await without_certificate.ping()
        finally:
            await with_certificate.aclose()
            await without_certificate.aclose()
    finally:
        server.stop()
