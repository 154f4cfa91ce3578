"""Database engines and migrations.

SQLite (the default, in ``<repo>/.aidp/aidp.db``) runs in WAL mode with a busy timeout, and every
write transaction starts with ``BEGIN IMMEDIATE``: a deferred read-then-write transaction fails at
once under two writers despite the busy timeout. Read-only work uses :func:`read_engine`, whose
transactions start with a plain ``BEGIN`` so readers never wait for the write lock.

Any SQLAlchemy URL works (``postgresql+psycopg://...``); the schema is created and upgraded with
Alembic. Importing Alembic costs ~100 ms, so it is imported only when the schema is not at
:data:`HEAD_REVISION` already.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text

from aidp.exceptions import ConfigError

__all__ = ["HEAD_REVISION", "make_engine", "migrate", "read_engine", "sqlite_url"]

HEAD_REVISION = "0003"  # a test proves it equals the newest migration's revision
BUSY_TIMEOUT_MS = 30_000


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return f"sqlite+pysqlite:///{path}"


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE``."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url)
            _configure_sqlite(engine)
            return engine
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except Exception as exc:  # bad URLs and missing drivers surface as many exception types
        raise ConfigError(
            f"cannot use database URL {_redact(url)}: {exc}",
            hint="set AIDP_DATABASE_URL or [database] url in aidp.toml; PostgreSQL needs the "
            "'postgres' extra (psycopg)",
        ) from exc


def read_engine(engine: Engine) -> Engine:
    """The same engine, but its transactions never take SQLite's write lock."""
    return engine.execution_options(aidp_readonly=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (not pysqlite) issue BEGIN, so that we can choose IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: this runs for every transaction.
        driver = conn.connection.driver_connection
        if conn.get_execution_options().get("aidp_readonly"):
            driver.execute("BEGIN")
        else:
            driver.execute("BEGIN IMMEDIATE")


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine, *, replay: bool = False) -> None:
    """Bring the schema to :data:`HEAD_REVISION`.

    An empty database gets the tables of :mod:`aidp.state.tables` and is stamped at
    ``HEAD_REVISION`` (Alembic's documented way to start a new database; it skips importing
    Alembic, ~100 ms of every first start). A test keeps those tables identical to what the
    migrations build. ``replay=True`` runs every migration instead; an existing older database
    is always upgraded by its migrations.
    """
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    if engine.dialect.name == "postgresql":
        # Two aidp processes starting at once on a new database must not both create it: the
        # first takes this lock for its transaction, the second then finds the schema current.
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK})
            _migrate(conn, replay=replay)
        return
    _migrate_sqlite(engine, revision, replay=replay)


_MIGRATE_LOCK = 0x61696470  # "aidp"


def _migrate(conn: Connection, *, replay: bool) -> None:
    """Create or upgrade the schema inside ``conn``'s transaction (PostgreSQL)."""
    if not conn.execute(text("SELECT to_regclass('alembic_version')")).scalar():
        revision = None
    else:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if revision == HEAD_REVISION:
        return
    if revision is None and not replay and not inspect(conn).get_table_names():
        from aidp.state.tables import metadata

        metadata.create_all(conn)
        conn.execute(text(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        ))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                     {"v": HEAD_REVISION})
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _migrate_sqlite(engine: Engine, revision: str | None, *, replay: bool) -> None:
    if revision is None and not replay:
        with engine.connect() as conn:
            empty = not inspect(conn).get_table_names()
        if empty:
            from aidp.state.tables import metadata

            with engine.begin() as conn:
                metadata.create_all(conn)
                conn.execute(text(
                    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
                ))
                conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                             {"v": HEAD_REVISION})
            return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _redact(url: str) -> str:
    """Hide a password in a database URL."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL: show no part of it that could hold a secret
        return "<unparseable URL>"
