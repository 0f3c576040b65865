"""The operator HTTP API (FastAPI; the OpenAPI page is at ``/docs``).

It reads runs, their state history and decisions, queue depths and live workers, manages
tag concurrency limits, and lets an operator cancel a run or force a state. When
``TASKGATE_API_TOKEN`` is set, every route except ``/health``, ``/docs`` and
``/openapi.json`` requires ``Authorization: Bearer <token>`` and returns 401 without it.
The server binds to 127.0.0.1 unless ``TASKGATE_HTTP_HOST`` says otherwise.

Forced changes and cancels commit through the transition service, and their effects
(enqueues, events) go to Redis only after that commit, as for every other transition.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from policy import states as named_states
from policy.states import StateType
from queue_server.errors import RequestError, invalid
from queue_server.keys import Keys
from queue_server.post_commit import PostCommit
from queue_server.protocol import StateCreate
from queue_server.queues import TaskQueues
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

# Maximum length of a state name, as the database column stores it.
MAX_STATE_NAME_LENGTH = 200
# Each named state's type, taken from the policy's own constructors: a forced state
# that borrows a name of another type (Running named AwaitingRetry) is rejected.
NAMED_STATE_TYPES: dict[str, StateType] = {
    state.name: state.type
    for state in (
        factory()
        for factory in (
            named_states.Scheduled, named_states.Pending, named_states.Running,
            named_states.Completed, named_states.Failed,
            named_states.Late, named_states.AwaitingRetry, named_states.AwaitingConcurrencySlot,
            named_states.Resuming, named_states.Retrying, named_states.Rerunning,
            named_states.Cached, named_states.TimedOut, named_states.Suspended,
            named_states.NotReady, named_states.Paused, named_states.Crashed,
            named_states.Cancelling, named_states.Cancelled,
        )
    )
}

ERROR_STATUS = {
    "invalid_request": 422,
    "not_found": 404,
    "queue_full": 429,
    "conflict": 409,
    "forbidden": 403,
    "internal": 500,
}


class ForcedState(BaseModel):
    """An operator's state change; `force` skips the policy's guards (the default here)."""

    state: StateCreate
    force: bool = True


class LimitCreate(BaseModel):
    """A tag concurrency limit to create or update."""

    tag: str = Field(min_length=1, max_length=500)
    limit: int = Field(ge=0)


class QueueInfo(BaseModel):
    """One task key's queue: runs waiting in Redis, the earliest due time, and SQL's count."""

    task_key: str
    depth: int
    oldest_due: datetime | None
    scheduled_in_sql: int | None = None


def create_app(
    service: Any,
    redis: aioredis.Redis,
    post_commit: PostCommit,
    settings: Settings,
) -> FastAPI:
    """Build the operator API over a TransitionService and the service's Redis client."""
    app = FastAPI(
        title="taskgate operator API",
        description="Runs, decisions, queues, workers, concurrency limits and operator actions.",
        version="1",
    )
    keys = Keys(settings.key_prefix)
    queues = TaskQueues(redis, keys)
    bearer = HTTPBearer(auto_error=False)

    async def require_token(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        if settings.api_token is None:
            return
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), settings.api_token.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token; send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        location = [str(part) for part in first["loc"]]
        if location and location[0] in ("body", "query", "path"):
            location = location[1:]
        field = ".".join(location)
        return JSONResponse(
            status_code=422,
            content={
                "field": field,
                "message": f"invalid {field or 'request'}: {first['msg']}",
                "detail": json.loads(json.dumps(problems, default=str)),
            },
        )

    @app.exception_handler(RequestError)
    async def request_failed(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(
            status_code=ERROR_STATUS.get(error.code, 400),
            content={"code": error.code, "field": error.field, "message": error.message},
        )

    guarded = [Depends(require_token)]

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Report whether Redis responds to PING; any response at all means the process is up."""
        try:
            redis_ok = bool(await redis.ping())
        except (RedisError, OSError) as error:
            logger.warning("health check: Redis unavailable: %s", error)
            redis_ok = False
        return {"status": "ok" if redis_ok else "degraded", "redis": redis_ok}

    @app.get("/runs", tags=["runs"], dependencies=guarded)
    async def list_runs(
        state: StateType | None = Query(default=None, description="State type, e.g. SCHEDULED."),
        state_name: str | None = Query(default=None, description="State name, e.g. AwaitingRetry."),
        task_key: str | None = None,
        tag: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
        offset: int = Query(default=0, ge=0),
    ) -> list[dict[str, Any]]:
        """List task runs matching every given filter, newest first."""
        runs = await service.filter_runs(
            state_type=state,
            state_name=state_name,
            task_key=task_key,
            tag=tag,
            limit=limit,
            offset=offset,
        )
        return [_dump(run) for run in runs]

    @app.get("/runs/{run_id}", tags=["runs"], dependencies=guarded)
    async def read_run(run_id: UUID) -> dict[str, Any]:
        """Read one task run with its current state."""
        return _dump(await service.read_run(run_id))

    @app.get("/runs/{run_id}/states", tags=["runs"], dependencies=guarded)
    async def read_states(run_id: UUID) -> list[dict[str, Any]]:
        """Read a run's state history, oldest first."""
        return [_dump(state) for state in await service.read_states(run_id)]

    @app.get("/runs/{run_id}/decisions", tags=["runs"], dependencies=guarded)
    async def read_decisions(run_id: UUID) -> list[dict[str, Any]]:
        """Read the orchestration decisions kept for a run, so a person can see why it waits."""
        return [_dump(decision) for decision in await service.read_decisions(run_id)]

    @app.post("/runs/{run_id}/state", tags=["operator actions"], dependencies=guarded)
    async def set_state(run_id: UUID, body: ForcedState) -> dict[str, Any]:
        """Propose a state as the operator; forced by default, which clears the claim token."""
        _check_state_name(body.state)
        logger.info(
            "operator sets run %s to %s (force=%s)", run_id, body.state.type.value, body.force
        )
        result, effects = await service.propose_state(
            run_id, body.state, force=body.force, actor="operator"
        )
        await post_commit.carry_out(effects)
        if result.state is not None and result.state.is_scheduled() and not effects.jobs:
            # NOTE: a forced change runs the minimal policy, which records no enqueue
            # intent, so a forced Scheduled state reaches its queue on the reconciler's
            # next pass (within TASKGATE_RECONCILE_INTERVAL), not at once.
            logger.info(
                "run %s forced to Scheduled; the reconciler will enqueue it", run_id
            )
        return _dump(result)

    @app.post("/runs/{run_id}/cancel", tags=["operator actions"], dependencies=guarded)
    async def cancel_run(run_id: UUID) -> dict[str, Any]:
        """Cancel a run: a queued one ends Cancelled, a running one goes to Cancelling."""
        logger.info("operator cancels run %s", run_id)
        result, effects = await service.cancel_run(run_id)
        await post_commit.carry_out(effects)
        return _dump(result)

    @app.get("/queues", tags=["queues"], dependencies=guarded)
    async def list_queues() -> list[QueueInfo]:
        """List every task key's queue depth and earliest due time, with SQL's Scheduled count."""
        depths = {item.task_key: item for item in await queues.depths()}
        counts: dict[str, int] = await service.queue_counts()
        infos = []
        for task_key in sorted(set(depths) | set(counts)):
            depth = depths.get(task_key)
            infos.append(
                QueueInfo(
                    task_key=task_key,
                    depth=depth.depth if depth else 0,
                    oldest_due=depth.oldest_due if depth else None,
                    scheduled_in_sql=counts.get(task_key, 0),
                )
            )
        return infos

    @app.get("/workers", tags=["workers"], dependencies=guarded)
    async def list_workers() -> list[dict[str, Any]]:
        """List live workers from their heartbeat keys, with the seconds each key has left."""
        return await _read_heartbeats(redis, keys)

    @app.get("/concurrency-limits", tags=["concurrency limits"], dependencies=guarded)
    async def list_limits() -> list[dict[str, Any]]:
        """List every tag concurrency limit with the runs holding its slots."""
        return [_dump(limit) for limit in await service.list_limits()]

    @app.post("/concurrency-limits", tags=["concurrency limits"], dependencies=guarded)
    async def create_limit(body: LimitCreate) -> dict[str, Any]:
        """Create a tag concurrency limit, or change the limit of an existing tag."""
        logger.info("operator sets the concurrency limit of tag %s to %d", body.tag, body.limit)
        return _dump(await service.create_limit(body.tag, body.limit))

    @app.get("/concurrency-limits/{tag}", tags=["concurrency limits"], dependencies=guarded)
    async def read_limit(tag: str) -> dict[str, Any]:
        """Read one tag's concurrency limit."""
        return _dump(await service.read_limit(tag))

    @app.delete("/concurrency-limits/{tag}", tags=["concurrency limits"], dependencies=guarded)
    async def delete_limit(tag: str) -> dict[str, Any]:
        """Delete a tag's concurrency limit and release its slots."""
        logger.info("operator deletes the concurrency limit of tag %s", tag)
        await service.delete_limit(tag)
        return {"deleted": tag}

    @app.post(
        "/concurrency-limits/{tag}/reset", tags=["concurrency limits"], dependencies=guarded
    )
    async def reset_limit(tag: str) -> dict[str, Any]:
        """Release every slot of a tag's limit, keeping the limit itself."""
        logger.info("operator resets the concurrency limit of tag %s", tag)
        return _dump(await service.reset_limit(tag))

    return app


def _check_state_name(state: StateCreate) -> None:
    if state.name is None:
        return
    if len(state.name) > MAX_STATE_NAME_LENGTH:
        raise invalid(
            "state.name",
            f"state.name is {len(state.name)} characters long; the limit is "
            f"{MAX_STATE_NAME_LENGTH}",
        )
    expected = NAMED_STATE_TYPES.get(state.name)
    if expected is not None and expected is not state.type:
        raise invalid(
            "state.name",
            f"state.name {state.name!r} names a {expected.value} state, but state.type is "
            f"{state.type.value}",
        )


async def _read_heartbeats(redis: aioredis.Redis, keys: Keys) -> list[dict[str, Any]]:
    names = sorted([name async for name in redis.scan_iter(match=keys.worker_pattern)])
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
            pipe.pttl(name)
        answers = await pipe.execute()
    workers = []
    for index, name in enumerate(names):
        raw, ttl_ms = answers[2 * index], answers[2 * index + 1]
        if raw is None:
            continue
        try:
            beat = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            logger.warning("unreadable heartbeat at %r: %s", name, error)
            continue
        if isinstance(beat, dict):
            beat["expires_in"] = max(ttl_ms, 0) / 1000
            workers.append(beat)
    return workers


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {key: _dump(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(item) for item in value]
    return value
