"""gateway: cached input tokens and provider latency per attempt; rate-limit buckets

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
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", "kind", name="pk_rate_buckets"),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("latency_ms")
        batch.drop_column("cached_tokens")
