"""Alembic environment: aidp runs migrations programmatically on a connection it passes in."""

from __future__ import annotations

from alembic import context

from aidp.state.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - `alembic` CLI use; aidp always passes a connection
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "set sqlalchemy.url"
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=metadata)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
