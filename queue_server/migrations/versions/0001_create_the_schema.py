"""Create the schema: task runs, flow runs, their states, decisions, results, the task
run state cache, tag concurrency limits and their holders, and deployments.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from queue_server.db.types import JSONDocument, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def run_snapshot_columns() -> list[sa.Column]:
    """Columns that task runs and flow runs share."""
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("tags", JSONDocument, nullable=False),
        sa.Column("state_id", sa.Uuid()),
        sa.Column("state_type", sa.String(20)),
        sa.Column("state_name", sa.String(200)),
        sa.Column("state_timestamp", UTCDateTime()),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("start_time", UTCDateTime()),
        sa.Column("end_time", UTCDateTime()),
        sa.Column("total_run_time", sa.Float(), nullable=False),
        sa.Column("expected_start_time", UTCDateTime()),
        sa.Column("next_scheduled_start_time", UTCDateTime()),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("updated", UTCDateTime(), nullable=False),
    ]


def state_columns() -> list[sa.Column]:
    """Columns that task run states and flow run states share."""
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("data", JSONDocument),
        sa.Column("state_details", JSONDocument, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "task_runs",
        *run_snapshot_columns(),
        sa.Column("task_key", sa.String(500), nullable=False),
        sa.Column("dynamic_key", sa.String(500), nullable=False),
        sa.Column("flow_run_id", sa.Uuid()),
        sa.Column("is_background", sa.Boolean(), nullable=False),
        sa.Column("empirical_policy", JSONDocument, nullable=False),
        sa.Column("flow_run_run_count", sa.Integer(), nullable=False),
        sa.Column("parameters", JSONDocument, nullable=False),
        sa.Column("claim_token", sa.Uuid()),
        sa.Column("worker_id", sa.String(200)),
        sa.Column("cache_key", sa.Text()),
        sa.Column("submitted_cache_key", sa.Text()),
        sa.Column("submitted_cache_expiration", UTCDateTime()),
        sa.Column("refresh_cache", sa.Boolean(), nullable=False),
        sa.Column("persist_result", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Float()),
        sa.Column("create_digest", sa.String(64)),
    )
    op.create_index("ix_task_runs_flow_run_id", "task_runs", ["flow_run_id"])
    op.create_index("ix_task_runs_worker_id", "task_runs", ["worker_id"])
    op.create_index("ix_task_runs_queue", "task_runs", ["task_key", "is_background", "state_type"])
    op.create_index("ix_task_runs_state", "task_runs", ["state_type", "state_name"])
    op.create_index(
        "ix_task_runs_cache_key", "task_runs", ["cache_key"], postgresql_using="hash"
    )

    op.create_table(
        "results",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("task_run_id", sa.Uuid()),
        sa.Column("flow_run_id", sa.Uuid()),
        sa.Column("state_id", sa.Uuid(), nullable=False),
        sa.Column("data", JSONDocument, nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_results_task_run_id", "results", ["task_run_id"])
    op.create_index("ix_results_flow_run_id", "results", ["flow_run_id"])
    op.create_index("ix_results_state_id", "results", ["state_id"])

    op.create_table(
        "task_run_states",
        *state_columns(),
        sa.Column(
            "task_run_id",
            sa.Uuid(),
            sa.ForeignKey(
                "task_runs.id",
                ondelete="CASCADE",
                name="fk_task_run_states_task_run_id_task_runs",
            ),
            nullable=False,
        ),
        sa.Column(
            "result_id",
            sa.Uuid(),
            sa.ForeignKey(
                "results.id", ondelete="SET NULL", name="fk_task_run_states_result_id_results"
            ),
        ),
        sa.UniqueConstraint("task_run_id", "seq", name="uq_task_run_states_task_run_id_seq"),
    )

    op.create_table(
        "decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("run_kind", sa.String(20), nullable=False),
        sa.Column("transition_id", sa.Uuid(), unique=True),
        sa.Column("actor", sa.String(20), nullable=False),
        sa.Column("proposed_type", sa.String(20)),
        sa.Column("proposed_name", sa.String(200)),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("rule", sa.String(200)),
        sa.Column("reason", sa.Text()),
        sa.Column("state_id", sa.Uuid()),
        sa.Column("delay_seconds", sa.Float()),
        sa.Column("answer", JSONDocument, nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_decisions_run", "decisions", ["run_id", "id"])
    op.create_index("ix_decisions_created", "decisions", ["created"])

    op.create_table(
        "task_run_state_cache",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("cache_key", sa.Text(), nullable=False),
        sa.Column("cache_expiration", UTCDateTime()),
        sa.Column("task_run_state_id", sa.Uuid(), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_task_run_state_cache_key", "task_run_state_cache", ["cache_key", "created"]
    )

    op.create_table(
        "concurrency_limits",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tag", sa.String(500), nullable=False, unique=True),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("updated", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "concurrency_slot_holders",
        sa.Column("tag", sa.String(500), primary_key=True),
        sa.Column("task_run_id", sa.Uuid(), primary_key=True),
        sa.Column("created", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_concurrency_slot_holders_task_run_id", "concurrency_slot_holders", ["task_run_id"]
    )

    op.create_table(
        "flow_runs",
        *run_snapshot_columns(),
        sa.Column("flow_name", sa.String(500), nullable=False),
        sa.Column("deployment_id", sa.Uuid()),
        sa.Column("parent_task_run_id", sa.Uuid()),
        sa.Column("infrastructure_pid", sa.String(500)),
        sa.Column("empirical_policy", JSONDocument, nullable=False),
        sa.Column("create_digest", sa.String(64)),
    )
    op.create_table(
        "flow_run_states",
        *state_columns(),
        sa.Column(
            "flow_run_id",
            sa.Uuid(),
            sa.ForeignKey(
                "flow_runs.id",
                ondelete="CASCADE",
                name="fk_flow_run_states_flow_run_id_flow_runs",
            ),
            nullable=False,
        ),
        sa.UniqueConstraint("flow_run_id", "seq", name="uq_flow_run_states_flow_run_id_seq"),
    )

    op.create_table(
        "deployments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("flow_name", sa.String(500), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("flow_name", "name", name="uq_deployments_flow_name_name"),
    )


def downgrade() -> None:
    for table in (
        "deployments",
        "flow_run_states",
        "flow_runs",
        "concurrency_slot_holders",
        "concurrency_limits",
        "task_run_state_cache",
        "decisions",
        "task_run_states",
        "results",
        "task_runs",
    ):
        op.drop_table(table)
