"""Settings of the service and the workers, read from TASKGATE_* environment variables.

Each field documents its unit and default; docs/settings.md repeats the table.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """taskgate settings; every field can be set as TASKGATE_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="TASKGATE_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://, rediss://, unix:// or redis+sentinel://). "
        "Unset: the embedded commands start a private redis-server.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (sqlite+aiosqlite:// or postgresql+asyncpg://). "
        "Unset: SQLite at <home>/taskgate.db.",
    )
    home: Path = Field(default=Path("~/.taskgate"), description="Data folder.")
    key_prefix: str = Field(default="taskgate", description="Prefix of every Redis key.")

    request_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a sender waits for a reply before it checks whether to resend.",
    )
    batch_size: int = Field(default=100, ge=1, description="Requests applied per transaction.")
    claim_idle: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request stays unacknowledged before another replica takes it over.",
    )
    stream_maxlen: int = Field(
        default=100_000, ge=1000, description="Approximate length cap of the request stream."
    )

    heartbeat_ttl: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a heartbeat key lives; workers beat every third of it.",
    )
    reaper_interval: float = Field(default=5.0, gt=0, description="Seconds between reaper passes.")
    reconcile_interval: float = Field(
        default=30.0, gt=0, description="Seconds between reconciler passes."
    )
    result_cache_ttl: int = Field(
        default=3600, ge=1, description="Seconds a result stays cached in Redis."
    )
    decisions_kept: int = Field(default=100, ge=1, description="Decisions kept per run.")
    transition_retention: float = Field(
        default=86_400.0, gt=0, description="Seconds a decided transition id is remembered."
    )

    tag_concurrency_slot_wait_seconds: float = Field(
        default=10.0, ge=0, description="Mean seconds a run waits before retrying a full tag limit."
    )
    max_queued_per_task_key: int = Field(
        default=100_000,
        ge=1,
        description="Queued (Scheduled) background runs allowed per task key.",
    )
    max_argument_bytes: int = Field(
        default=1_000_000,
        ge=1,
        description="Largest serialized parameters accepted at .delay(), in bytes.",
    )
    max_request_bytes: int = Field(
        default=4_000_000, ge=1, description="Largest request body the service accepts, in bytes."
    )
    max_cache_key_length: int = Field(
        default=2000, ge=1, description="Longest cache key, in characters."
    )
    policy_variant: Literal["taskgate", "reference"] = Field(
        default="taskgate",
        description="taskgate: the service's policies (claim check, slots, cache isolation); "
        "reference: the reference rule lists exactly.",
    )

    http_host: str = Field(default="127.0.0.1", description="Operator HTTP API bind address.")
    http_port: int = Field(default=8765, description="Operator HTTP API port.")
    api_token: str | None = Field(default=None, description="Bearer token the HTTP API requires.")

    worker_concurrency: int = Field(
        default=10, ge=1, description="Runs one worker process executes at once."
    )
    worker_poll_delay: float = Field(
        default=0.5,
        gt=0,
        description="Seconds between fallback queue polls; enqueues wake workers at once.",
    )
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="Seconds a stopping worker lets in-flight runs finish."
    )
    future_poll_interval: float = Field(
        default=1.0, gt=0, description="Seconds between state polls while a future waits."
    )

    log_level: str = Field(default="INFO", description="Logging level.")

    @property
    def home_path(self) -> Path:
        return self.home.expanduser()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.home_path / 'taskgate.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
