"""check constraints: every state column holds only the values of its enum

A CHECK constraint ``ck_<table>_<column>`` (``column IN (...)``; NULL passes) on every column
that holds an enum value. The value lists are written out here, not taken from the enums: a
migration is frozen history, and a later migration changes a list if an enum changes.

PostgreSQL adds the constraints in place. SQLite cannot add a constraint to a table: each table
is rebuilt (copied into a new table with the constraint, the old one dropped, the copy renamed).
That is safe only with foreign keys off -- dropping a parent table with them on deletes the
children's rows (ON DELETE CASCADE) -- which :func:`aidp.state.db.migrate` ensures for every
SQLite upgrade (and checks the foreign keys before it commits).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_RUN = ("pending", "running", "completed", "failed", "cancelled")
_WORKSTREAM = ("pending", "running", "completed", "failed", "skipped", "cancelled")
_STEP = ("pending", "running", "validating", "retrying", "awaiting_approval", "circuit_open",
         "completed", "failed", "timeout", "skipped", "cancelled")
_OUTCOME = ("succeeded", "failed_transient", "failed_permanent", "timed_out", "crashed",
            "cancelled", "no_change", "budget_exceeded", "circuit_open")
_CLASS = ("transient", "permanent", "unknown")
_KIND = ("first", "retry", "fix", "escalate", "approval")
_SEVERITY = ("error", "warning", "info")
_COMPENSATION = ("succeeded", "failed")
_BREAKER = ("closed", "open", "half_open")
_PROPOSAL = ("draft", "review", "changes_requested", "approved", "rejected", "in_progress",
             "applied", "archived")

# table -> [(column, values)], parents before children
CHECKS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "runs": [("status", _RUN)],
    "workstreams": [("status", _WORKSTREAM)],
    "steps": [("status", _STEP), ("outcome", _OUTCOME), ("failure_class", _CLASS)],
    "attempts": [("outcome", _OUTCOME), ("failure_class", _CLASS), ("kind", _KIND)],
    "findings": [("severity", _SEVERITY), ("failure_class", _CLASS)],
    "compensations": [("status", _COMPENSATION)],
    "breakers": [("state", _BREAKER)],
    "proposals": [("state", _PROPOSAL)],
    "proposal_transitions": [("from_state", _PROPOSAL), ("to_state", _PROPOSAL)],
}


def _condition(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, checks in CHECKS.items():
            with op.batch_alter_table(table, recreate="always") as batch:
                for column, values in checks:
                    batch.create_check_constraint(op.f(f"ck_{table}_{column}"),
                                                  _condition(column, values))
        return
    for table, checks in CHECKS.items():
        for column, values in checks:
            op.create_check_constraint(op.f(f"ck_{table}_{column}"), table,
                                       _condition(column, values))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, checks in CHECKS.items():
            with op.batch_alter_table(table, recreate="always") as batch:
                for column, _values in checks:
                    batch.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
        return
    for table, checks in CHECKS.items():
        for column, _values in checks:
            op.drop_constraint(op.f(f"ck_{table}_{column}"), table, type_="check")
