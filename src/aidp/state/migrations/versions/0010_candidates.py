"""best-of-N and routing: what each attempt was asked for, and its verdict as a candidate

Attempts of kind ``judge`` (a best-of round's judge profile) become possible.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("capability", sa.String(64)),
    ("language", sa.String(64)),
    ("round", sa.Integer()),
    ("candidate", sa.Integer()),
    ("verdict", sa.String(16)),
    ("verdict_reason", sa.Text()),
    ("candidate_sha", sa.String(64)),
    ("diff_files", sa.Integer()),
    ("diff_lines", sa.Integer()),
)


_VERDICT = "verdict IN ('won', 'lost', 'failed')"
_KIND_BEFORE = "kind IN ('first', 'retry', 'fix', 'escalate', 'approval')"
_KIND = "kind IN ('first', 'retry', 'fix', 'escalate', 'approval', 'judge')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("attempts", recreate="always") as batch:
            for name, type_ in _COLUMNS:
                batch.add_column(sa.Column(name, type_, nullable=True))
            batch.create_check_constraint(op.f("ck_attempts_verdict"), _VERDICT)
            batch.drop_constraint(op.f("ck_attempts_kind"), type_="check")
            batch.create_check_constraint(op.f("ck_attempts_kind"), _KIND)
        return
    for name, type_ in _COLUMNS:
        op.add_column("attempts", sa.Column(name, type_, nullable=True))
    op.create_check_constraint(op.f("ck_attempts_verdict"), "attempts", _VERDICT)
    op.drop_constraint(op.f("ck_attempts_kind"), "attempts", type_="check")
    op.create_check_constraint(op.f("ck_attempts_kind"), "attempts", _KIND)


def downgrade() -> None:
    op.execute("DELETE FROM attempts WHERE kind = 'judge'")
    with op.batch_alter_table("attempts", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_attempts_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_attempts_kind"), _KIND_BEFORE)
        batch.drop_constraint(op.f("ck_attempts_verdict"), type_="check")
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
