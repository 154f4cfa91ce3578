"""step outcome: how a failed step ended is an outcome, not a failure class

``steps.outcome`` holds the outcome that ended a step (its last attempt's, or ``circuit_open``
when every breaker refused it). Rows written before this revision kept ``crashed``,
``circuit_open`` and ``budget`` in ``failure_class``: they move to ``outcome``, and
``failure_class`` keeps only the classes (transient / permanent / unknown).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CLASSES = "('transient', 'permanent', 'unknown')"


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("outcome", sa.String(24)))
    op.execute("UPDATE steps SET outcome = CASE failure_class WHEN 'budget' THEN "
               "'budget_exceeded' ELSE failure_class END "
               "WHERE failure_class IN ('crashed', 'circuit_open', 'budget')")
    for table in ("steps", "attempts"):
        op.execute(f"UPDATE {table} SET failure_class = NULL "
                   f"WHERE failure_class NOT IN {_CLASSES}")


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("outcome")
