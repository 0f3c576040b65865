"""Conversions between table rows and the policy's run and state models."""

from __future__ import annotations

from typing import Any

from policy.runs import FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy
from policy.states import State, StateDetails, StateType
from queue_server.db.models import (
    FlowRunRow,
    FlowRunStateRow,
    ResultRow,
    RunSnapshotColumns,
    TaskRunRow,
    TaskRunStateRow,
)

# Snapshot fields that the policy may change and the service writes back.
SNAPSHOT_FIELDS = (
    "name",
    "state_id",
    "state_name",
    "state_timestamp",
    "run_count",
    "start_time",
    "end_time",
    "total_run_time",
    "expected_start_time",
    "next_scheduled_start_time",
)


def state_from_row(row: TaskRunStateRow | FlowRunStateRow, result: ResultRow | None) -> State:
    """Build a State from its row; a persisted result's data comes from its own row."""
    data = result.data if result is not None else row.data
    return State(
        id=row.id,
        type=StateType(row.type),
        name=row.name,
        timestamp=row.timestamp,
        message=row.message,
        data=data,
        state_details=StateDetails.model_validate(row.state_details or {}),
    )


def is_persisted_result(data: Any) -> bool:
    """Tell whether state data is a result value that belongs in the results table."""
    return isinstance(data, dict) and data.get("type") == "result"


def details_document(state: State) -> dict[str, Any]:
    return state.state_details.model_dump(mode="json", exclude_defaults=True)


def _snapshot_values(row: RunSnapshotColumns) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in SNAPSHOT_FIELDS}
    values["id"] = row.id
    values["tags"] = list(row.tags or [])
    values["state_type"] = StateType(row.state_type) if row.state_type else None
    return values


def task_run_from_row(row: TaskRunRow, state: State | None) -> TaskRun:
    """Build the policy's view of a task run from its row and its current state."""
    return TaskRun(
        **_snapshot_values(row),
        state=state,
        task_key=row.task_key,
        dynamic_key=row.dynamic_key,
        flow_run_id=row.flow_run_id,
        is_background=row.is_background,
        empirical_policy=TaskRunPolicy.model_validate(row.empirical_policy or {}),
        flow_run_run_count=row.flow_run_run_count,
        claim_token=row.claim_token,
        worker_id=row.worker_id,
    )


def flow_run_from_row(row: FlowRunRow, state: State | None) -> FlowRun:
    """Build the policy's view of a flow run from its row and its current state."""
    return FlowRun(
        **_snapshot_values(row),
        state=state,
        flow_name=row.flow_name,
        deployment_id=row.deployment_id,
        parent_task_run_id=row.parent_task_run_id,
        infrastructure_pid=row.infrastructure_pid,
        empirical_policy=FlowRunPolicy.model_validate(row.empirical_policy or {}),
    )


def _write_snapshot(row: RunSnapshotColumns, run: TaskRun | FlowRun) -> None:
    for name in SNAPSHOT_FIELDS:
        setattr(row, name, getattr(run, name))
    row.tags = list(run.tags)
    row.state_type = run.state_type.value if run.state_type else None


def task_run_column_values(run: TaskRun) -> dict[str, Any]:
    """Return the column values `write_task_run` would copy from `run`, by column name."""
    values = {name: getattr(run, name) for name in SNAPSHOT_FIELDS}
    values["tags"] = list(run.tags)
    values["state_type"] = run.state_type.value if run.state_type else None
    values["empirical_policy"] = run.empirical_policy.model_dump(mode="json")
    values["flow_run_run_count"] = run.flow_run_run_count
    values["claim_token"] = run.claim_token
    values["worker_id"] = run.worker_id
    return values


def write_task_run(row: TaskRunRow, run: TaskRun) -> None:
    """Copy the fields the policy may have changed from `run` onto its row."""
    _write_snapshot(row, run)
    row.empirical_policy = run.empirical_policy.model_dump(mode="json")
    row.flow_run_run_count = run.flow_run_run_count
    row.claim_token = run.claim_token
    row.worker_id = run.worker_id


def write_flow_run(row: FlowRunRow, run: FlowRun) -> None:
    """Copy the fields the policy may have changed from `run` onto its row."""
    _write_snapshot(row, run)
    row.empirical_policy = run.empirical_policy.model_dump(mode="json")
    row.infrastructure_pid = run.infrastructure_pid
