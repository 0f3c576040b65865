"""The states a worker proposes for a run it holds, each carrying the run's claim token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from policy.states import StateDetails, StateType
from queue_server.jobs import JobSpec
from queue_server.protocol import StateCreate


def running(job: JobSpec) -> StateCreate:
    """Running for the job's run; the service stamps the claim token of the claim made with it."""
    details = StateDetails(cache_key=job.cache_key, refresh_cache=job.refresh_cache or None)
    return StateCreate(type=StateType.RUNNING, state_details=details)


def completed(job: JobSpec, token: UUID, data: dict[str, Any]) -> StateCreate:
    details = StateDetails(
        claim_token=token, cache_key=job.cache_key, cache_expiration=job.cache_expiration
    )
    return StateCreate(type=StateType.COMPLETED, data=data, state_details=details)


def failed(
    token: UUID,
    message: str,
    data: dict[str, Any] | None = None,
    *,
    retriable: bool | None = None,
    name: str | None = None,
) -> StateCreate:
    """Failed with the error envelope; `retriable=False` stops the retry rule from retrying."""
    details = StateDetails(claim_token=token, retriable=retriable)
    return StateCreate(
        type=StateType.FAILED, name=name, message=message, data=data, state_details=details
    )


def timed_out(token: UUID, message: str, data: dict[str, Any]) -> StateCreate:
    """Failed named TimedOut; it stays retriable, so the retry rule may schedule another attempt."""
    return failed(token, message, data, name="TimedOut")


def awaiting_concurrency_slot(token: UUID, delay_seconds: float) -> StateCreate:
    """Scheduled named AwaitingConcurrencySlot, due after the delay, which puts the run back."""
    due = datetime.now(UTC) + timedelta(seconds=max(0.0, delay_seconds))
    details = StateDetails(claim_token=token, scheduled_time=due)
    return StateCreate(
        type=StateType.SCHEDULED, name="AwaitingConcurrencySlot", state_details=details
    )


def cancelled(message: str) -> StateCreate:
    """Cancelled, with no claim token: moving a run to Cancelling clears the run's token."""
    return StateCreate(type=StateType.CANCELLED, message=message)
