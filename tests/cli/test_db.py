"""``aidp db status|upgrade``: a shared (PostgreSQL) database is never upgraded implicitly -- an
older schema stops aidp with a clear error and nothing changed, until ``aidp db upgrade --yes``
-- while a SQLite file is upgraded when opened; a schema newer than this aidp is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from aidp.state import db
from tests.conftest import Cli

MIGRATIONS = Path(db.__file__).parent / "migrations"


def _at(url: str, revision: str) -> None:
    """Build the schema of ``revision`` with the migrations and put one run in it."""
    engine = db.make_engine(url)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.execute(text(
                "INSERT INTO runs (id, status, repo, plan_json, sources, created_at, updated_at) "
                "VALUES ('R0000000000000000000000001', 'completed', '/r', '{}', '[]', 1, 1)"))
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = db.make_engine(url)
    try:
        return db.current_revision(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_an_older_shared_schema_is_upgraded_only_with_yes(cli: Cli, db_url: str) -> None:
    """On PostgreSQL at 0008, aidp refuses to work (naming the revisions and the command), `db
    status` lists the pending migrations, `db upgrade` without --yes changes nothing; with
    --yes the schema reaches the head and the old rows are there."""
    head = db.HEAD_REVISION
    pending = [r for r, _ in db.migration_revisions() if r > "0008"]
    assert pending[0] == "0009" and pending[-1] == head
    _at(db_url, "0008")
    refused = cli("runs")
    assert refused.returncode == 2, refused
    assert "schema revision 0008" in refused.stderr and f"needs {head}" in refused.stderr
    assert "aidp db upgrade --yes" in refused.stderr and "Traceback" not in refused.stderr
    assert _revision(db_url) == "0008"

    status = cli("db", "status", "--json")
    assert status.returncode == 1
    found = json.loads(status.stdout)
    assert (found["revision"], found["head"], found["current"]) == ("0008", head, False)
    assert [p["revision"] for p in found["pending"]] == pending

    dry = cli("db", "upgrade")
    assert dry.returncode == 2 and "--yes" in dry.stderr
    assert all(f"would apply {r}" in dry.stderr for r in pending)
    assert _revision(db_url) == "0008"

    done = cli("db", "upgrade", "--yes", check=True)
    assert f"0008 -> {head}" in done.stdout
    assert _revision(db_url) == db.HEAD_REVISION
    runs = json.loads(cli("runs", "--json", check=True).stdout)
    assert [r["run_id"] for r in runs] == ["R0000000000000000000000001"]
    assert "nothing to do" in cli("db", "upgrade", "--yes", check=True).stdout
    assert cli("db", "status").returncode == 0


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_auto_upgrade_setting_lets_aidp_upgrade_a_shared_schema(cli: Cli, db_url: str) -> None:
    """`[database] auto_upgrade = true` (here through the environment overlay of aidp.toml)
    upgrades a PostgreSQL schema when aidp opens it."""
    _at(db_url, "0008")
    opted = Cli(cli.cwd, db_url)
    result = _with_env(opted, {"AIDP_DATABASE__AUTO_UPGRADE": "true"}, "runs", "--json")
    assert result.returncode == 0, result.stderr
    assert _revision(db_url) == db.HEAD_REVISION


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_sqlite_file_is_upgraded_when_opened(cli: Cli, db_url: str) -> None:
    """A SQLite file at 0008 (one user's database) is upgraded by the first command."""
    _at(db_url, "0008")
    runs = json.loads(cli("runs", "--json", check=True).stdout)
    assert [r["run_id"] for r in runs] == ["R0000000000000000000000001"]
    assert _revision(db_url) == db.HEAD_REVISION


def test_a_schema_newer_than_this_aidp_is_refused_clearly(cli: Cli, db_url: str) -> None:
    """A database stamped by a newer aidp: one line naming the revision, exit 2, no
    traceback, and `db upgrade --yes` refuses too."""
    _at(db_url, "0008")
    engine = db.make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0042'"))
    engine.dispose()
    for args in (("runs",), ("db", "upgrade", "--yes")):
        result = cli(*args)
        assert result.returncode == 2, result
        assert "revision 0042" in result.stderr and "Traceback" not in result.stderr
    assert _revision(db_url) == "0042"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_status_hides_the_password(cli: Cli, db_url: str) -> None:
    """`aidp db status` shows where the database is, never its password."""
    url = db_url.replace("postgres@", "postgres:s3cret-canary@", 1)
    result = Cli(cli.cwd, url)("db", "status")
    assert "s3cret-canary" not in result.stdout + result.stderr


def _with_env(cli: Cli, extra: dict[str, str], *args: str) -> object:
    import subprocess

    from tests.helpers import AIDP

    return subprocess.run([AIDP, *args], cwd=cli.cwd, capture_output=True, text=True,
                          env={**cli.env(), **extra}, timeout=90)
