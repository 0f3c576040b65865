"""Every Redis key taskgate writes, named once.

Types and lifetimes (see docs/architecture.md for the full table):

- ``<prefix>:requests``            stream; requests to the service, trimmed to a max length
- ``<prefix>:reply:<client_id>``   list; replies to one process, expires 300 s after the last push
- ``<prefix>:queue:<task_key>``    sorted set; arq's queue of one task key, scored by due time (ms)
- ``<prefix>:wake``                pub/sub channel; a task key each time a run of it is enqueued
- ``<prefix>:events``              pub/sub channel; committed state changes
- ``<prefix>:result:<run_id>``     string; cached final run view, expires after the result cache TTL
- ``<prefix>:workers:<worker_id>`` string; worker heartbeat, expires after the heartbeat TTL
- ``<prefix>:service:<replica_id>`` string; service replica heartbeat, same TTL

arq names its own keys (``arq:job:<id>``, ``arq:in-progress:<id>``, ``arq:retry:<id>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

CONSUMER_GROUP = "taskgate-service"
REPLY_LIST_TTL_SECONDS = 300
JOB_FUNCTION_NAME = "taskgate.run"
ARQ_JOB_PREFIX = "arq:job:"
ARQ_IN_PROGRESS_PREFIX = "arq:in-progress:"
ARQ_RETRY_PREFIX = "arq:retry:"
ARQ_RESULT_PREFIX = "arq:result:"


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "taskgate"

    @property
    def requests(self) -> str:
        return f"{self.prefix}:requests"

    def reply(self, client_id: str) -> str:
        return f"{self.prefix}:reply:{client_id}"

    def queue(self, task_key: str) -> str:
        return f"{self.prefix}:queue:{task_key}"

    @property
    def queue_pattern(self) -> str:
        return f"{self.prefix}:queue:*"

    @property
    def wake(self) -> str:
        return f"{self.prefix}:wake"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    def result(self, run_id: UUID | str) -> str:
        return f"{self.prefix}:result:{run_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:workers:{worker_id}"

    @property
    def worker_pattern(self) -> str:
        return f"{self.prefix}:workers:*"

    def service(self, replica_id: str) -> str:
        return f"{self.prefix}:service:{replica_id}"


def job_id(run_id: UUID | str, state_id: UUID | str) -> str:
    """Return the arq job id of one enqueue: the run id and the Scheduled state's id."""
    return f"{run_id}:{state_id}"


def parse_job_id(value: str) -> tuple[str, str]:
    """Split an arq job id into the run id and the Scheduled state id."""
    run_id, _, state_id = value.partition(":")
    if not state_id:
        raise ValueError(f"job id {value!r} is not of the form <run_id>:<state_id>")
    return run_id, state_id
