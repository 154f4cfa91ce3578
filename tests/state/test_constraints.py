"""CHECK constraints on the state columns: the same on every way a database is made (tables,
migrations, pre-rendered SQLite DDL), and an upgrade from 0005 that keeps every row."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from aidp.state import db
from aidp.state.store import Store
from aidp.state.tables import ALLOWED, metadata

MIGRATIONS = Path(db.__file__).parent / "migrations"


def _expected() -> dict[tuple[str, str], set[str]]:
    """(table, constraint name) -> allowed values, from aidp.state.tables."""
    return {(table, f"ck_{table}_{column}"): set(values)
            for (table, column), values in ALLOWED.items()}


def _checks(engine: Engine) -> dict[tuple[str, str], set[str]]:
    """(table, constraint name) -> the quoted values of its condition, as the database has it."""
    found: dict[tuple[str, str], set[str]] = {}
    with engine.connect() as conn:
        inspector = inspect(conn)
        for table in inspector.get_table_names():
            for check in inspector.get_check_constraints(table):
                found[(table, str(check["name"]))] = set(
                    re.findall(r"'([^']*)'", str(check["sqltext"])))
    return found


def test_every_enum_column_of_the_tables_is_constrained() -> None:
    """tables.py itself: each ALLOWED entry is a named CheckConstraint on an existing column."""
    names = {(t.name, str(c.name)) for t in metadata.tables.values() for c in t.constraints
             if c.__class__.__name__ == "CheckConstraint"}
    assert names == set(_expected())
    for table, column in ALLOWED:
        assert column in metadata.tables[table].c


@pytest.mark.parametrize("replay", [False, True], ids=["create", "replay"])
def test_check_constraints_match_tables(db_url: str, replay: bool) -> None:
    """Constraint names and value sets: the migrations build the ones of tables.py."""
    engine = db.make_engine(db_url)
    try:
        db.migrate(engine, replay=replay)
        assert _checks(engine) == _expected()
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pre_rendered_sqlite_schema_has_the_check_constraints(db_url: str) -> None:
    store = Store(db_url)
    try:
        assert _checks(store.engine) == _expected()
    finally:
        store.close()


def _upgrade_to(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("runs", {"id": "R1", "status": "running", "repo": "/r", "plan_json": "{}", "sources": "[]",
              "created_at": 1.0, "updated_at": 1.0}),
    ("workstreams", {"run_id": "R1", "ws_id": "w", "position": 0, "status": "running",
                     "branch": "b", "base_ref": "main"}),
    ("steps", {"run_id": "R1", "ws_id": "w", "step_id": "s", "position": 0, "status": "failed",
               "outcome": "crashed", "failure_class": "transient"}),
    ("attempts", {"run_id": "R1", "ws_id": "w", "step_id": "s", "number": 1,
                  "outcome": "crashed", "started_at": 1.0, "kind": "retry"}),
    ("checkpoints", {"run_id": "R1", "ws_id": "w", "step_id": "s", "attempt": 1, "sha": "abc",
                     "created_at": 1.0}),
    ("findings", {"run_id": "R1", "ws_id": "w", "step_id": "s", "attempt": 1, "source": "tool",
                  "detector": "d", "message": "m", "severity": "error",
                  "failure_class": "permanent", "fingerprint": "f", "created_at": 1.0}),
    ("events", {"run_id": "R1", "ts": 1.0, "kind": "hello"}),
    ("compensations", {"run_id": "R1", "ws_id": "w", "step_id": "", "position": 0,
                       "kind": "k", "status": "failed", "created_at": 1.0}),
    ("breakers", {"key": "profile:p", "state": "open", "snapshot": "{}", "updated_at": 1.0}),
    ("proposals", {"change_id": "c", "state": "review", "created_at": 1.0,
                   "updated_at": 1.0}),
    ("proposal_transitions", {"change_id": "c", "from_state": None, "to_state": "draft",
                              "action": "create", "actor": "me", "ts": 1.0}),
]
# the service's tables (revision 0007): not there at 0005
_SERVICE_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("api_tokens", {"id": "t1", "name": "ci", "scope": "read", "secret_sha256": "0" * 64,
                    "created_at": 1.0}),
    ("webhook_deliveries", {"webhook_id": "h1", "event_id": 1, "status": "pending",
                            "next_attempt_at": 1.0, "created_at": 1.0}),
    ("service_runs", {"run_id": "R1", "state": "active", "created_at": 1.0,
                      "updated_at": 1.0}),
]


def _insert(conn: Any, table: str, row: dict[str, Any]) -> None:
    conn.execute(text(f"INSERT INTO {table} ({', '.join(row)}) "
                      f"VALUES ({', '.join(':' + c for c in row)})"), row)


def test_upgrade_from_0005_keeps_every_row(db_url: str) -> None:
    """A database at 0005 with rows in every table (foreign keys on, as aidp runs SQLite) is
    upgraded by the store without losing a row -- the SQLite table rebuilds must not cascade
    -- and then refuses a value outside the enums."""
    engine = db.make_engine(db_url)
    try:
        _upgrade_to(engine, "0005")
        with engine.begin() as conn:
            for table, row in _ROWS:
                _insert(conn, table, row)
            before = {t: [dict(r._mapping) for r in conn.execute(
                text(f"SELECT * FROM {t} ORDER BY 1"))] for t, _ in _ROWS}
        assert db.current_revision(engine) == "0005"
    finally:
        engine.dispose()

    store = Store(db_url, upgrade=True)  # upgrades (a shared database only when asked)
    try:
        assert db.current_revision(store.engine) == db.HEAD_REVISION
        assert _checks(store.engine) == _expected()
        with store.engine.connect() as conn:
            # the columns 0005 had, as they were (later migrations may add columns)
            after = {t: [{k: v for k, v in r._mapping.items() if k in before[t][0]}
                         for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                     for t, _ in _ROWS}
            if store.dialect == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert after == before
        assert all(after.values())
        assert [s.status for s in store.steps("R1")] == ["failed"]

        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            _insert(conn, "runs", {**_ROWS[0][1], "id": "R2", "status": "bogus"})
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(text("UPDATE steps SET outcome = 'bogus'"))
        # the foreign keys still cascade after the upgrade
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM runs WHERE id = 'R1'"))
            assert conn.execute(text("SELECT count(*) FROM attempts")).scalar() == 0
    finally:
        store.close()


@pytest.mark.parametrize(("table", "column"), sorted(ALLOWED))
def test_a_value_outside_the_enum_is_refused(db_url: str, table: str, column: str) -> None:
    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            for name, row in _ROWS:
                _insert(conn, name, row)
            for name, row in _SERVICE_ROWS:
                _insert(conn, name, row)
        key = next(c.name for c in metadata.tables[table].primary_key.columns)
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET {column} = 'bogus' WHERE {key} IS NOT NULL"))
    finally:
        store.close()
