"""Private redis-servers with a password, with TLS, and a Sentinel group, on loopback ports."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.servers import RedisServer, free_port, redis_server_binary

READY_TIMEOUT_SECONDS = 20.0


def wait_until_ready(client: redis.Redis, what: str) -> None:
    """Ping until the server responds, or raise after a generous timeout."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)
        finally:
            client.close()


@dataclass
class PasswordRedisServer(RedisServer):
    """A private redis-server that requires a password."""

    password: str = "s3cret-Pa55word"

    def __post_init__(self) -> None:
        self.extra_args = [*self.extra_args, "--requirepass", self.password]

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        wait_until_ready(client, f"redis-server with a password on port {self.port}")


def make_certificates(folder: Path) -> dict[str, Path]:
    """Make a CA and a server certificate for 127.0.0.1 with the openssl command."""
    paths = {name: folder / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key")}
    csr = folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]),
            "-subj", "/CN=taskgate test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(paths["server-key"]),
            "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]),
            "-CAkey", str(paths["ca-key"]), "-CAcreateserial", "-days", "2",
            "-out", str(paths["server"]), "-extfile", str(extensions))
    return paths


@dataclass
class TlsRedisServer(RedisServer):
    """A private redis-server that accepts only TLS, with certificates made for the test."""

    certificates: dict[str, Path] = field(default_factory=dict)
    require_client_certificate: bool = False

    def __post_init__(self) -> None:
        self.certificates = make_certificates(self.workdir)
        auth_clients = "yes" if self.require_client_certificate else "no"
        self.extra_args = [
            *self.extra_args,
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.certificates["server"]),
            "--tls-key-file", str(self.certificates["server-key"]),
            "--tls-ca-cert-file", str(self.certificates["ca"]),
            "--tls-auth-clients", auth_clients,
        ]

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.certificates['ca']}"

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        # The server certificate is signed by the test CA, so it serves as a client one too.
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.certificates["ca"]),
            ssl_certfile=str(self.certificates["server"]),
            ssl_keyfile=str(self.certificates["server-key"]),
        )
        wait_until_ready(client, f"TLS redis-server on port {self.port}")


@dataclass
class SentinelGroup:
    """A primary, one replica and one sentinel watching them, each on a loopback port."""

    service_name: str = "mymaster"
    primary: RedisServer | None = None
    replica: RedisServer | None = None
    sentinel_port: int = field(default_factory=free_port)
    sentinel_process: subprocess.Popen | None = None

    def start(self) -> SentinelGroup:
        self.primary = RedisServer().start()
        self.replica = RedisServer(
            extra_args=["--replicaof", "127.0.0.1", str(self.primary.port)]
        ).start()
        config = self.primary.workdir / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.primary.workdir}\n"
            f"sentinel monitor {self.service_name} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.service_name} 2000\n"
            f"sentinel failover-timeout {self.service_name} 10000\n"
        )
        self.sentinel_process = subprocess.Popen(
            [redis_server_binary(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_for_sentinel()
        return self

    def _wait_for_sentinel(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        client = redis.Redis(host="127.0.0.1", port=self.sentinel_port)
        while True:
            try:
                address = client.execute_command(
                    "SENTINEL", "get-master-addr-by-name", self.service_name
                )
                if address:
                    client.close()
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinel on port {self.sentinel_port} did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service_name}/0"

    def stop(self) -> None:
        if self.sentinel_process is not None and self.sentinel_process.poll() is None:
            self.sentinel_process.terminate()
            self.sentinel_process.wait(timeout=10)
        for server in (self.replica, self.primary):
            if server is not None:
                server.stop()
