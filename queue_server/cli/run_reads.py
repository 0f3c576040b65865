"""Runs for operators: the recent runs, one run's timeline, and cancelling a run."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

from rich.console import Console
from rich.table import Table

from policy.states import StateType
from queue_server.cli.connections import resolve_redis_url
from queue_server.cli.errors import CliError
from queue_server.cli.sql_access import with_service
from queue_server.keys import Keys
from queue_server.settings import Settings

CANCEL_TIMEOUT_SECONDS = 30.0


def parse_run_id(value: str) -> UUID:
    """Return the run id as a UUID; raise CliError naming the value if it is not one."""
    try:
        return UUID(value)
    except ValueError:
        raise CliError(f"invalid run id {value!r}: expected a UUID such as the ids "
                       "`taskgate inspect runs` lists") from None


def parse_state_type(value: str | None) -> StateType | None:
    """Return the state type named by the value, in any case; raise CliError if unknown."""
    if value is None:
        return None
    try:
        return StateType(value.upper())
    except ValueError:
        known = ", ".join(member.value for member in StateType)
        raise CliError(f"invalid state type {value!r}: expected one of {known}") from None


def print_runs(
    console: Console, settings: Settings, *, task_key: str | None, state: str | None, limit: int
) -> None:
    """Print the most recent task runs matching the filters, newest first."""
    state_type = parse_state_type(state)
    runs = with_service(
        settings,
        lambda service: service.filter_runs(state_type=state_type, task_key=task_key, limit=limit),
    )
    table = Table(title="task runs (newest first)")
    for column in ("run id", "task key", "state", "run count", "created", "worker"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            str(run.id),
            run.task_key,
            _state_text(run.state),
            str(run.run_count),
            _time(run.created),
            run.worker_id or "-",
        )
    console.print(table)
    if not runs:
        console.print("no task runs match")


def print_run(console: Console, settings: Settings, run_id_text: str) -> None:
    """Print one run, its states and its decisions with their status, rule and reason."""
    run_id = parse_run_id(run_id_text)

    async def read_all(service: Any) -> tuple[Any, list[Any], list[Any]]:
        run = await service.read_run(run_id)
        return run, await service.read_states(run_id), await service.read_decisions(run_id)

    run, states, decisions = with_service(settings, read_all)
    console.print(
        f"task run {run.id}  task key {run.task_key}  state {_state_text(run.state)}  "
        f"run count {run.run_count}  tags {', '.join(run.tags) or '-'}"
    )
    states_by_id = {state.id: state for state in states}
    console.print(_decision_table(decisions, states_by_id))
    console.print(_state_table(states))


def _decision_table(decisions: list[Any], states_by_id: dict[Any, Any]) -> Table:
    table = Table(title="decisions (oldest first)")
    for column in ("time", "actor", "proposed", "status", "resulting state", "rule", "reason"):
        table.add_column(column, overflow="fold")
    for decision in decisions:
        proposed = decision.proposed_type.value if decision.proposed_type else "-"
        if decision.proposed_name:
            proposed = f"{proposed} ({decision.proposed_name})"
        resulting = states_by_id.get(decision.state_id)
        reason = decision.reason or "-"
        if decision.delay_seconds is not None:
            reason = f"{reason} [delay {decision.delay_seconds:.2f} s]"
        table.add_row(
            _time(decision.created),
            decision.actor,
            proposed,
            decision.status,
            _state_text(resulting) if resulting is not None else "-",
            decision.rule or "-",
            reason,
        )
    return table


def _state_table(states: list[Any]) -> Table:
    table = Table(title="states (oldest first)")
    for column in ("time", "type", "name", "scheduled for", "message"):
        table.add_column(column, overflow="fold")
    for state in states:
        details = state.state_details
        table.add_row(
            _time(state.timestamp),
            state.type.value,
            state.name,
            _time(details.scheduled_time) if details.scheduled_time else "-",
            state.message or "-",
        )
    return table


def _state_text(state: Any) -> str:
    if state is None:
        return "-"
    name = state.name or state.type.value.title()
    return f"{name} ({state.type.value})"


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def cancel_run(settings: Settings, run_id_text: str) -> None:
    """Ask the running service to cancel the run, and print its decision."""
    run_id = parse_run_id(run_id_text)
    url = resolve_redis_url(settings)
    result = asyncio.run(_cancel(settings, url, run_id))
    state = result.get("state") or {}
    print(
        f"cancel {run_id}: {result['status']}, state {state.get('name') or '-'}"
        f"{', reason: ' + result['reason'] if result.get('reason') else ''}"
    )


async def _cancel(settings: Settings, url: str, run_id: UUID) -> dict[str, Any]:
    from queue_server.redis_conn import connect  # noqa: PLC0415
    from queue_server.transport_client import (  # noqa: PLC0415
        RequestTimeoutError,
        ServiceClient,
        ServiceError,
    )

    keys = Keys(settings.key_prefix)
    redis = connect(url)
    client = ServiceClient(redis, keys, request_timeout=settings.request_timeout)
    try:
        if not [key async for key in redis.scan_iter(match=keys.service("*"), count=100)]:
            raise CliError(
                "no taskgate service is running on this Redis; start `taskgate server` "
                "(cancelling goes through the service)"
            )
        return await client.request(
            "cancel_run", {"run_id": str(run_id)}, timeout=CANCEL_TIMEOUT_SECONDS
        )
    except ServiceError as error:
        raise CliError(f"cancel {run_id} failed: {error}") from None
    except RequestTimeoutError:
        raise CliError(
            f"no reply from the service within {CANCEL_TIMEOUT_SECONDS:.0f} s; "
            "check that `taskgate server` is running and healthy"
        ) from None
    finally:
        await client.close()
        await redis.aclose()
