"""The arq job that carries one enqueued background run, and its JSON encoding.

The service writes jobs itself (see queue_server/enqueue.lua) and workers read them
through arq, so both sides use the JSON serializer below instead of arq's pickle.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from queue_server.keys import JOB_FUNCTION_NAME, job_id
from queue_server.protocol import Envelope


class JobSpec(BaseModel):
    """What a worker needs to claim and execute one Scheduled background run."""

    run_id: UUID
    state_id: UUID  # the Scheduled state this job was enqueued for
    state_name: str = "Scheduled"
    task_key: str
    due: datetime
    parameters: Envelope
    cache_key: str | None = None
    cache_expiration: datetime | None = None
    refresh_cache: bool = False
    persist_result: bool = True
    timeout_seconds: float | None = None

    @property
    def job_id(self) -> str:
        return job_id(self.run_id, self.state_id)

    @property
    def due_ms(self) -> int:
        return int(self.due.timestamp() * 1000)

    def arq_payload(self, enqueue_time_ms: int) -> bytes:
        """Encode the job as arq stores it: try count, function, args, kwargs, enqueue time."""
        return serialize_job(
            {
                "t": 1,
                "f": JOB_FUNCTION_NAME,
                "a": [],
                "k": self.model_dump(mode="json"),
                "et": enqueue_time_ms,
            }
        )


def serialize_job(payload: dict[str, Any]) -> bytes:
    """arq `job_serializer`: JSON instead of pickle, so redis-cli shows readable jobs."""
    return json.dumps(payload, separators=(",", ":")).encode()


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """arq `job_deserializer`, the inverse of `serialize_job`."""
    return json.loads(raw)
