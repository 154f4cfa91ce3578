"""Shared fixtures: real git repositories, real databases (SQLite and PostgreSQL), the real CLI.

PostgreSQL: ``AIDP_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
Each test gets its own schema, dropped afterwards. Without a reachable server the PostgreSQL
variants are skipped with the reason -- unless ``AIDP_REQUIRE_POSTGRES=1`` (set by ``.ci/run``),
which turns that into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_URL = os.environ.get("AIDP_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AIDP = str(Path(sys.executable).parent / "aidp")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "aidp tests", "GIT_AUTHOR_EMAIL": "tests@aidp.invalid",
    "GIT_COMMITTER_NAME": "aidp tests", "GIT_COMMITTER_EMAIL": "tests@aidp.invalid",
}

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


def init_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A real git repository at ``path`` on branch main with one commit holding ``files``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "aidp tests")
    git(path, "config", "user.email", "tests@aidp.invalid")
    for name, text in (files or {"README.md": "# test repository\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout (raises on failure)."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, **GIT_ENV}).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small real git repository with one commit on main."""
    return init_repo(tmp_path / "repo")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    """Runs the real ``aidp`` executable in a repository, against a chosen database."""

    cwd: Path
    db_url: str | None = None

    def env(self) -> dict[str, str]:
        env = {**os.environ, **GIT_ENV}
        env.pop("AIDP_DATABASE_URL", None)
        if self.db_url:
            env["AIDP_DATABASE_URL"] = self.db_url
        return env

    def __call__(self, *args: str, timeout: float = 90, check: bool = False) -> CliResult:
        proc = subprocess.run([AIDP, *args], cwd=self.cwd, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=self.env(), timeout=timeout)
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"aidp {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return result

    def popen_argv(self, *args: str) -> list[str]:
        return [AIDP, *args]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([AIDP, *args], cwd=self.cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                env=self.env(), start_new_session=True)


@pytest.fixture
def cli(repo: Path, db_url: str) -> Cli:
    """The real CLI in ``repo``, on SQLite and on PostgreSQL."""
    return Cli(repo, db_url)
