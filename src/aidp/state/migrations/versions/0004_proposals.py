"""proposals: a change proposal's review state and its transition history

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "proposals",
        sa.Column("change_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("title", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("change_id", name="pk_proposals"),
    )
    op.create_table(
        "proposal_transitions",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("change_id", sa.String(128), nullable=False),
        sa.Column("from_state", sa.String(24)),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("comment", sa.Text()),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_proposal_transitions"),
    )
    op.create_index("ix_proposal_transitions_change_id_id", "proposal_transitions",
                    ["change_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_proposal_transitions_change_id_id", table_name="proposal_transitions")
    op.drop_table("proposal_transitions")
    op.drop_table("proposals")
