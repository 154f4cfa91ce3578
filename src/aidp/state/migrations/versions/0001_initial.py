"""initial schema: runs, workstreams, steps, attempts, checkpoints, events, leases

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("plan_json", sa.Text(), nullable=False),
        sa.Column("options_json", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float()),
        sa.Column("finished_at", sa.Float()),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "workstreams",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("ws_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("base_ref", sa.String(255), nullable=False),
        sa.Column("base_sha", sa.String(64)),
        sa.Column("worktree", sa.Text()),
        sa.Column("head_sha", sa.String(64)),
        sa.Column("merged_sha", sa.String(64)),
        sa.Column("reason", sa.Text()),
        sa.Column("started_at", sa.Float()),
        sa.Column("finished_at", sa.Float()),
        sa.PrimaryKeyConstraint("run_id", "ws_id", name="pk_workstreams"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_workstreams_run_id", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("ws_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reason", sa.Text()),
        sa.Column("next_attempt_at", sa.Float()),
        sa.Column("checkpoint_sha", sa.String(64)),
        sa.Column("started_at", sa.Float()),
        sa.Column("finished_at", sa.Float()),
        sa.PrimaryKeyConstraint("run_id", "ws_id", "step_id", name="pk_steps"),
        sa.ForeignKeyConstraint(
            ["run_id", "ws_id"],
            ["workstreams.run_id", "workstreams.ws_id"],
            name="fk_steps_run_id",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "attempts",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("ws_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(24)),
        sa.Column("interrupted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.Column("token", sa.String(64)),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("signal", sa.Integer()),
        sa.Column("log_path", sa.Text()),
        sa.Column("output_bytes", sa.BigInteger()),
        sa.Column("changed_files", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float()),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.UniqueConstraint("run_id", "ws_id", "step_id", "number", name="uq_attempts_run_id"),
        sa.ForeignKeyConstraint(
            ["run_id", "ws_id", "step_id"],
            ["steps.run_id", "steps.ws_id", "steps.step_id"],
            name="fk_attempts_run_id",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("ws_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("adopted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "ws_id", "step_id", name="pk_checkpoints"),
        sa.ForeignKeyConstraint(
            ["run_id", "ws_id", "step_id"],
            ["steps.run_id", "steps.ws_id", "steps.step_id"],
            name="fk_checkpoints_run_id",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("ws_id", sa.String(64)),
        sa.Column("step_id", sa.String(64)),
        sa.Column("data", sa.Text(), nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_run_id_id", "events", ["run_id", "id"])
    op.create_table(
        "leases",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_start", sa.BigInteger()),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.Column("renewed_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("run_id", name="pk_leases"),
    )


def downgrade() -> None:
    for table in ("leases", "events", "checkpoints", "attempts", "steps", "workstreams", "runs"):
        op.drop_table(table)
