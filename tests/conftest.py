"""Shared fixtures: real git repositories, real databases (SQLite and PostgreSQL), the real CLI.

The helpers behind them (``git``, ``init_repo``, ``commit_files``, ``Cli``) live in
``tests/helpers.py`` and are re-exported here.

PostgreSQL: ``AIDP_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
Each test gets its own schema, dropped afterwards. Without a reachable server the PostgreSQL
variants are skipped with the reason -- unless ``AIDP_REQUIRE_POSTGRES=1`` (set by ``.ci/run``),
which turns that into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (  # noqa: F401 -- re-exported: tests import them from here too
    AIDP,
    GIT_ENV,
    Cli,
    CliResult,
    commit_files,
    git,
    init_repo,
    write,
)

PG_URL = os.environ.get("AIDP_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_pg_error: str | None = None
_pg_checked = False


def _postgres_unavailable() -> str | None:
    """None if PostgreSQL answers at PG_URL, else why not (checked once per session)."""
    global _pg_checked, _pg_error
    if not _pg_checked:
        _pg_checked = True
        try:
            from sqlalchemy import create_engine, text

            engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:  # any failure means: no usable server here
            _pg_error = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
    return _pg_error


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in tmp_path, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite+pysqlite:///{tmp_path / 'aidp.db'}"
        return
    reason = _postgres_unavailable()
    if reason is not None:
        if os.environ.get("AIDP_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (AIDP_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small real git repository with one commit on main."""
    return init_repo(tmp_path / "repo")


@pytest.fixture
def cli(repo: Path, db_url: str) -> Cli:
    """The real CLI in ``repo``, on SQLite and on PostgreSQL."""
    return Cli(repo, db_url)


@pytest.fixture
def cli_inproc(repo: Path) -> Cli:
    """The CLI in ``repo`` run in this process (click's CliRunner), on aidp's default database."""
    return Cli(repo, in_process=True)


#: Modules whose tests prove what does not depend on the database -- the real Aider / Codex
#: against the fake provider, the terminal output of the CLI -- so their PostgreSQL variants
#: run in the slow tier only (about 60 s of the default run; the SQLite variants stay).
_DATABASE_NEUTRAL = ("tests/engine/test_real_agents.py", "tests/cli/test_cli_outcomes.py",
                     "tests/cli/test_live_view.py", "tests/engine/test_git_processes.py",
                     "tests/engine/test_gateway_agents.py")


@pytest.hookimpl(tryfirst=True)  # before ``-m 'not slow'`` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(item, "callspec", None)
        if (params is not None and params.params.get("db_url") == "postgres"
                and item.nodeid.startswith(_DATABASE_NEUTRAL)):
            item.add_marker(pytest.mark.slow)
