"""recovery and tools: attempt kinds, profiles, usage, diagnostics; step history; findings;
compensations

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="first"))
        batch.add_column(sa.Column("profile", sa.String(64)))
        batch.add_column(sa.Column("adapter", sa.String(32)))
        batch.add_column(sa.Column("failure_class", sa.String(16)))
        batch.add_column(sa.Column("choice_reason", sa.Text()))
        batch.add_column(sa.Column("tool_version", sa.String(128)))
        batch.add_column(sa.Column("input_tokens", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("output_tokens", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("requests", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("diagnostics_path", sa.Text()))
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("history_json", sa.Text()))
        batch.add_column(sa.Column("failure_class", sa.String(16)))
        batch.add_column(sa.Column("profile", sa.String(64)))
    op.create_table(
        "findings",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("ws_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("file", sa.Text()),
        sa.Column("line", sa.Integer()),
        sa.Column("col", sa.Integer()),
        sa.Column("code", sa.String(128)),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("failure_class", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("retry_after", sa.Float()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_findings"),
    )
    op.create_index("ix_findings_run_id_ws_id", "findings", ["run_id", "ws_id", "step_id"])
    op.create_table(
        "compensations",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("ws_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "ws_id", "step_id", "position",
                                name="pk_compensations"),
    )


def downgrade() -> None:
    op.drop_table("compensations")
    op.drop_index("ix_findings_run_id_ws_id", table_name="findings")
    op.drop_table("findings")
    with op.batch_alter_table("steps") as batch:
        for column in ("profile", "failure_class", "history_json"):
            batch.drop_column(column)
    with op.batch_alter_table("attempts") as batch:
        for column in ("diagnostics_path", "requests", "cost_usd", "output_tokens",
                       "input_tokens", "tool_version", "choice_reason", "failure_class",
                       "adapter", "profile", "kind"):
            batch.drop_column(column)
