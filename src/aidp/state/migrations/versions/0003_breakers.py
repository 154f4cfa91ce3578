"""circuit breakers: one row per key, shared by every run and process

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "breakers",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reopen_at", sa.Float()),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text()),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_breakers"),
    )


def downgrade() -> None:
    op.drop_table("breakers")
