"""Connect to Redis from one URL, for the service (redis-py asyncio) and for workers (arq).

Accepted URLs:

- ``redis://[[user]:password@]host[:port][/db]``
- ``rediss://...`` for TLS, with the query options ``ssl_ca_certs``, ``ssl_certfile``,
  ``ssl_keyfile``, ``ssl_cert_reqs`` (``none``, ``optional`` or ``required``) and
  ``ssl_check_hostname``
- ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``, and
  ``rediss+sentinel://`` for TLS to the sentinels and the primary. The password
  authenticates to the primary. The query option ``sentinel_password`` authenticates
  to the sentinels.

Any URL may also carry ``socket_timeout`` and ``socket_connect_timeout`` in seconds. A URL
is only ever logged through `mask_url`, which hides its password.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
PLAIN_SCHEMES = frozenset({"redis", "rediss", "unix"})
SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
TIMEOUT_OPTIONS = ("socket_timeout", "socket_connect_timeout")
KNOWN_OPTIONS = frozenset({*TLS_OPTIONS, *TIMEOUT_OPTIONS, "db", "sentinel_password"})
CERT_REQS = frozenset({"none", "optional", "required"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
# A command that fails on a dropped connection (after a Redis restart, say) is sent
# again on a new one, up to this many times, backing off from 50 ms to at most 1 s.
COMMAND_RETRIES = 3


def mask_url(url: str) -> str:
    """Return the URL with its password replaced by ``***``, safe to log."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return _mask_query(url, parts)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    netloc = f"{user}:***@{hosts}" if has_password else f"{userinfo}@{hosts}"
    return _mask_query(urlunsplit(parts._replace(netloc=netloc)), parts)


def _mask_query(url: str, parts: Any) -> str:
    if "sentinel_password=" not in parts.query:
        return url
    options = [
        "sentinel_password=***" if item.startswith("sentinel_password=") else item
        for item in parts.query.split("&")
    ]
    return urlunsplit(urlsplit(url)._replace(query="&".join(options)))


@dataclass(frozen=True)
class RedisTarget:
    """Connection target and options, parsed from a Redis URL."""

    scheme: str
    hosts: tuple[tuple[str, int], ...] = ()
    unix_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    ssl_options: dict[str, Any] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)
    service_name: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    masked: str = ""

    @property
    def is_sentinel(self) -> bool:
        return self.service_name is not None


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a Redis URL; raise ValueError naming the part that is invalid."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in PLAIN_SCHEMES | SENTINEL_SCHEMES:
        allowed = ", ".join(sorted(f"{name}://" for name in PLAIN_SCHEMES | SENTINEL_SCHEMES))
        raise ValueError(f"invalid Redis URL scheme {parts.scheme!r}: expected one of {allowed}")

    options = _parse_options(parts.query)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = _parse_userinfo(userinfo)
    ssl = scheme.startswith("rediss")
    common: dict[str, Any] = {
        "scheme": scheme,
        "username": username,
        "password": password,
        "ssl": ssl,
        "ssl_options": _ssl_options(options, ssl),
        "timeouts": {name: float(options[name]) for name in TIMEOUT_OPTIONS if name in options},
        "masked": mask_url(url),
    }

    if scheme == "unix":
        if not parts.path:
            raise ValueError("invalid Redis URL: unix:// needs a socket path")
        return RedisTarget(unix_path=unquote(parts.path), db=_db(options.get("db", "0")), **common)

    if scheme in SENTINEL_SCHEMES:
        return _sentinel_target(parts.path, hostlist, options, common)

    path_db = parts.path.strip("/")
    db = _db(options.get("db") or path_db or "0")
    return RedisTarget(hosts=(_parse_host(hostlist or "localhost", DEFAULT_PORT),), db=db, **common)


def _sentinel_target(
    path: str, hostlist: str, options: dict[str, str], common: dict[str, Any]
) -> RedisTarget:
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        raise ValueError(
            "invalid Redis Sentinel URL: the path must name the service, as in "
            "redis+sentinel://host:26379/mymaster/0"
        )
    if len(segments) > 2:
        raise ValueError(f"invalid Redis Sentinel URL path {path!r}: expected /service_name[/db]")
    if not hostlist:
        raise ValueError("invalid Redis Sentinel URL: no sentinel host given")
    hosts = tuple(_parse_host(item, DEFAULT_SENTINEL_PORT) for item in hostlist.split(","))
    db = _db(options.get("db") or (segments[1] if len(segments) == 2 else "0"))
    return RedisTarget(
        hosts=hosts,
        db=db,
        service_name=unquote(segments[0]),
        sentinel_password=options.get("sentinel_password"),
        **common,
    )


def _parse_options(query: str) -> dict[str, str]:
    options = {name: values[-1] for name, values in parse_qs(query).items()}
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ValueError(
            f"invalid Redis URL option {unknown[0]!r}: known options are "
            + ", ".join(sorted(KNOWN_OPTIONS))
        )
    return options


def _parse_userinfo(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, _, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) or None)


def _parse_host(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"invalid Redis URL host {item!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"invalid Redis URL port {port_text!r} for host {host!r}") from None
    return host, port


def _db(text: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise ValueError(f"invalid Redis database number {text!r}: expected an integer") from None
    if db < 0:
        raise ValueError(f"invalid Redis database number {db}: expected 0 or more")
    return db


def _ssl_options(options: dict[str, str], ssl: bool) -> dict[str, Any]:
    given = {name: options[name] for name in TLS_OPTIONS if name in options}
    if given and not ssl:
        raise ValueError(
            f"Redis URL option {next(iter(given))!r} needs TLS: use rediss:// or rediss+sentinel://"
        )
    result: dict[str, Any] = {}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in given:
            result[name] = given[name]
    if "ssl_cert_reqs" in given:
        reqs = given["ssl_cert_reqs"].lower()
        if reqs not in CERT_REQS:
            raise ValueError(f"invalid ssl_cert_reqs {reqs!r}: expected none, optional or required")
        result["ssl_cert_reqs"] = reqs
    if "ssl_check_hostname" in given:
        result["ssl_check_hostname"] = given["ssl_check_hostname"].lower() in TRUE_WORDS
    return result


def connect(url: str, **client_options: Any) -> aioredis.Redis:
    """Return an asyncio Redis client for the URL; for Sentinel, one that follows the primary.

    `client_options` go to every connection (``decode_responses``, say). The client
    connects lazily, on its first command, and retries a command whose connection
    dropped, so a command may reach Redis twice: every write the service sends is
    idempotent or harmless to repeat.
    """
    target = parse_redis_url(url)
    logger.info("connecting to Redis at %s", target.masked)
    options: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), COMMAND_RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        **target.timeouts,
        **client_options,
    }
    if target.ssl:
        options["ssl"] = True
        options.update(target.ssl_options)

    if target.is_sentinel:
        return _sentinel_primary(target, options)
    if target.unix_path is not None:
        options.pop("ssl", None)
        return aioredis.Redis(unix_socket_path=target.unix_path, **options)
    host, port = target.hosts[0]
    return aioredis.Redis(host=host, port=port, **options)


def _sentinel_primary(target: RedisTarget, options: dict[str, Any]) -> aioredis.Redis:
    sentinel_options: dict[str, Any] = {
        name: value
        for name, value in options.items()
        if name.startswith(("socket_", "ssl")) or name == "decode_responses"
    }
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_options, **options)
    assert target.service_name is not None
    return sentinel.master_for(target.service_name)


class MaskedRedisSettings(RedisSettings):
    """arq's RedisSettings whose repr hides the password, since arq's own repr prints it."""

    def __repr__(self) -> str:
        shown = {
            name: ("***" if name == "password" and value else value)
            for name, value in self.__dict__.items()
        }
        return "RedisSettings({})".format(", ".join(f"{k}={v!r}" for k, v in shown.items()))


def arq_redis_settings(url: str) -> RedisSettings:
    """Return the arq RedisSettings that connect a worker to the URL.

    NOTE: arq hands the primary's password to its Sentinel client but offers no
    separate sentinel password, so a ``sentinel_password`` option is rejected here.
    """
    target = parse_redis_url(url)
    if target.sentinel_password is not None:
        raise ValueError(
            "invalid Redis URL for workers: arq cannot authenticate to password-protected "
            "sentinels; remove sentinel_password or disable sentinel authentication"
        )
    settings: dict[str, Any] = {
        "database": target.db,
        "username": target.username,
        "password": target.password,
        "ssl": target.ssl,
        "conn_timeout": int(target.timeouts.get("socket_connect_timeout", 1)) or 1,
    }
    for name, value in target.ssl_options.items():
        settings[name] = value
    if target.is_sentinel:
        settings.update(sentinel=True, sentinel_master=target.service_name, host=list(target.hosts))
    elif target.unix_path is not None:
        settings.update(unix_socket_path=target.unix_path, ssl=False)
    else:
        settings.update(host=target.hosts[0][0], port=target.hosts[0][1])
    return MaskedRedisSettings(**settings)
