"""service: several services on one database claim a run before starting its worker

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("service_runs", sa.Column("owner", sa.String(160), nullable=True))
    op.add_column("service_runs", sa.Column("owner_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("service_runs") as batch:
        batch.drop_column("owner_until")
        batch.drop_column("owner")
