"""Database connections, engines and migrations.

SQLite (the default, in ``<repo>/.aidp/aidp.db``) runs in WAL mode with a busy timeout, and every
write transaction starts with ``BEGIN IMMEDIATE``: a deferred read-then-write transactions fails
at once under two writers despite the busy timeout. The store talks to a SQLite file through the
standard library's ``sqlite3`` (:func:`connect_sqlite`), creating a new database from the
pre-rendered :mod:`aidp.state.sqlite_schema`: a run on SQLite never imports SQLAlchemy, whose
import alone costs more than an empty run. Reads run in autocommit mode (one statement each), so
readers never wait for the write lock.

Any other SQLAlchemy URL (``postgresql+psycopg://...``) goes through a SQLAlchemy engine
(:func:`make_engine`), and so does every schema upgrade: the schema is created and upgraded with
Alembic. Importing Alembic costs ~100 ms, so it is imported only when the schema is not at
:data:`HEAD_REVISION` already.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.exceptions import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = [
    "HEAD_REVISION",
    "check_revision",
    "connect_sqlite",
    "create_sqlite_schema",
    "current_revision",
    "make_engine",
    "migrate",
    "migration_revisions",
    "pending_revisions",
    "read_engine",
    "sqlite_file",
    "sqlite_revision",
    "sqlite_url",
]

HEAD_REVISION = "0010"  # a test proves it equals the newest migration's revision
BUSY_TIMEOUT_MS = 30_000
_SQLITE_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return f"sqlite+pysqlite:///{path}"


def sqlite_file(url: str) -> str | None:
    """The file of a plain SQLite URL (``sqlite[+pysqlite]:///PATH``, no query), else None:
    such a database is opened with :func:`connect_sqlite`; any other URL (in-memory, URI
    options, another driver) through SQLAlchemy."""
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix):]
            if path and path != ":memory:" and "?" not in path:
                return path
    return None


def connect_sqlite(path: str | Path) -> sqlite3.Connection:
    """A ``sqlite3`` connection in autocommit mode (transactions are begun explicitly, so that
    writers can say ``BEGIN IMMEDIATE``), WAL, a busy timeout, foreign keys on; usable from any
    thread (one at a time). The one way aidp opens a SQLite file: the store's database and the
    spec index (:mod:`aidp.specs.index`) alike."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    _configure_sqlite_connection(conn)
    return conn


def _configure_sqlite_connection(dbapi_conn: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def sqlite_revision(conn: sqlite3.Connection) -> str | None:
    """The Alembic revision of the SQLite database behind ``conn``; None when it has no
    ``alembic_version`` table; ``""`` when it has tables but no version (not aidp's)."""
    names = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "alembic_version" not in names:
        return "" if names else None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else ""


def create_sqlite_schema(conn: sqlite3.Connection) -> bool:
    """Bring an **empty** SQLite database to :data:`HEAD_REVISION` from the pre-rendered DDL
    (the same tables as :func:`migrate` makes, stamped the way Alembic stamps). Returns False
    when the database was not empty (nothing is changed): use :func:`migrate` then."""
    from aidp.state.sqlite_schema import DDL

    conn.execute("BEGIN IMMEDIATE")
    try:
        if sqlite_revision(conn) is not None:  # someone else was faster, or not ours
            conn.execute("ROLLBACK")
            return False
        for statement in DDL:
            conn.execute(statement)
        conn.execute(_ALEMBIC_VERSION_DDL)
        conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD_REVISION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


_ALEMBIC_VERSION_DDL = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
)


def make_engine(url: str) -> Engine:
    """Create a SQLAlchemy engine for ``url``; SQLite gets WAL, a busy timeout and
    ``BEGIN IMMEDIATE``."""
    from sqlalchemy import create_engine

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
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (not pysqlite) issue BEGIN, so that we can choose IMMEDIATE.
        dbapi_conn.isolation_level = None
        _configure_sqlite_connection(dbapi_conn)

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
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine, *, replay: bool = False, upgrade: bool = True) -> None:
    """Bring the schema to :data:`HEAD_REVISION`.

    An empty database gets the tables of :mod:`aidp.state.tables` and is stamped at
    ``HEAD_REVISION`` (Alembic's documented way to start a new database; it skips importing
    Alembic, ~100 ms of every first start). A test keeps those tables identical to what the
    migrations build. ``replay=True`` runs every migration instead; an existing older database
    is upgraded by its migrations -- unless ``upgrade`` is False (a shared database is upgraded
    only by ``aidp db upgrade --yes``).

    Raises:
        ConfigError: the schema is older and ``upgrade`` is False, or newer than this aidp.
    """
    from sqlalchemy import text

    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    check_revision(revision, engine.url.render_as_string(hide_password=True), upgrade=upgrade)
    if engine.dialect.name == "postgresql":
        # Two aidp processes starting at once on a new database must not both create it: the
        # first takes this lock for its transaction, the second then finds the schema current.
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK})
            _migrate(conn, replay=replay)
        return
    _migrate_sqlite(engine, revision, replay=replay)


_MIGRATE_LOCK = 0x61696470  # "aidp"


def migration_revisions() -> list[tuple[str, str]]:
    """Every migration, oldest first: (revision, its one-line description). Read from the
    migration files' headers (no Alembic import)."""
    found = []
    for path in sorted((Path(__file__).parent / "migrations" / "versions").glob("[0-9]*.py")):
        title = path.read_text(encoding="utf-8").split('"""', 2)[1].strip().splitlines()[0]
        found.append((path.name.split("_", 1)[0], title))
    return found


def pending_revisions(revision: str | None) -> list[tuple[str, str]]:
    """The migrations a database at ``revision`` still needs (None: an empty database needs
    none of them -- it is created at the head)."""
    if revision is None:
        return []
    known = migration_revisions()
    names = [r for r, _ in known]
    return known[names.index(revision) + 1:] if revision in names else []


def check_revision(revision: str | None, where: str, *, upgrade: bool) -> None:
    """Refuse a schema this aidp cannot or may not bring to the head (see :func:`migrate`).

    Raises:
        ConfigError: naming the database, its revision and what to do."""
    if revision is None:
        return
    if revision not in {r for r, _ in migration_revisions()}:
        raise ConfigError(
            f"the database {where} is at schema revision {revision}, which this aidp does not "
            f"know (its newest is {HEAD_REVISION})",
            hint="a newer aidp upgraded it: run that version, or restore a backup")
    if not upgrade:
        pending = ", ".join(r for r, _ in pending_revisions(revision))
        raise ConfigError(
            f"the database {where} is at schema revision {revision}; this aidp needs "
            f"{HEAD_REVISION} (migrations {pending} pending), and a shared database is not "
            "upgraded implicitly",
            hint="back it up (pg_dump), then run `aidp db upgrade --yes`; or set "
                 "[database] auto_upgrade = true")


def _migrate(conn: Connection, *, replay: bool) -> None:
    """Create or upgrade the schema inside ``conn``'s transaction (PostgreSQL)."""
    from sqlalchemy import inspect, text

    if not conn.execute(text("SELECT to_regclass('alembic_version')")).scalar():
        revision = None
    else:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if revision == HEAD_REVISION:
        return
    if revision is None and not replay and not inspect(conn).get_table_names():
        from aidp.state.tables import metadata

        metadata.create_all(conn)
        conn.execute(text(_ALEMBIC_VERSION_DDL))
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
    from sqlalchemy import inspect, text

    if revision is None and not replay:
        with engine.connect() as conn:
            empty = not inspect(conn).get_table_names()
        if empty:
            from aidp.state.tables import metadata

            with engine.begin() as conn:
                metadata.create_all(conn)
                conn.execute(text(_ALEMBIC_VERSION_DDL))
                conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                             {"v": HEAD_REVISION})
            return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.connect() as conn:
        # A migration may rebuild a table (SQLite cannot alter constraints): drop the old one,
        # rename the copy. With foreign keys on, dropping a parent table deletes its children's
        # rows (ON DELETE CASCADE), so they go off for the upgrade. The pragma is a no-op inside
        # a transaction: it is set on the driver connection before the transaction begins, and
        # the keys are checked before the commit instead.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the schema upgrade broke foreign keys: {broken[:5]}")
        finally:
            driver.execute("PRAGMA foreign_keys = ON")


def _redact(url: str) -> str:
    """Hide a password in a database URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ValueError, TypeError, ArgumentError):  # show no part that could hold a secret
        return "<unparseable URL>"
