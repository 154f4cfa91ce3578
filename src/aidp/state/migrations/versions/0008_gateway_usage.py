"""gateway usage: cached input tokens and provider latency per attempt

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("cached_tokens", sa.Integer(), nullable=False,
                                        server_default="0"))
    op.add_column("attempts", sa.Column("latency_ms", sa.Integer(), nullable=False,
                                        server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("latency_ms")
        batch.drop_column("cached_tokens")
