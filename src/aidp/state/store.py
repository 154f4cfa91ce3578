"""The store: every read and write of run state goes through here.

Writes happen in :meth:`Store.write` transactions (``BEGIN IMMEDIATE`` on SQLite). An orchestrator
passes its :class:`Fence` (run id + lease token): the transaction first checks that the lease
still carries that token and raises :class:`~aidp.exceptions.LeaseLostError` otherwise, so a
deposed orchestrator can never write again. Several changes and their journal events go into one
transaction, which keeps a step's bookkeeping to two commits.

The statements are plain SQL over the tables of :mod:`aidp.state.tables`, written once with
``:name`` parameters and executed on the database driver's own connection: ``sqlite3`` for a
SQLite file (no SQLAlchemy import at all), a pooled driver connection of a SQLAlchemy engine
for anything else (PostgreSQL through psycopg, whose ``%(name)s`` style the same text is
translated to once). Building and executing SQLAlchemy Core statements cost ~0.1 ms each, ten
times the driver's own cost, on the path every step takes several times. Rows come back as named
tuples (``row.status``), booleans as ``bool`` on every backend.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidp.exceptions import LeaseLostError, NotFoundError
from aidp.state import db
from aidp.state.sqlite_schema import BOOLEAN_COLUMNS

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["Fence", "Store", "Tx"]


@dataclass(frozen=True)
class Fence:
    """Proof that the holder drives ``run_id``: the lease's fencing token at acquisition."""

    run_id: str
    token: int


# -- SQL text and rows -----------------------------------------------------------------------

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_RECORD_TYPES: dict[tuple[str, ...], Any] = {}
_SQL_CACHE: dict[tuple[Any, ...], str] = {}


def _pyformat(sql: str) -> str:
    """``:name`` parameters to ``%(name)s`` (and a literal ``%`` to ``%%``)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def _insert_sql(table: str, columns: Sequence[str], returning: str | None = None) -> str:
    key = ("insert", table, *columns, "|", returning)
    sql = _SQL_CACHE.get(key)
    if sql is None:
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
               f"VALUES ({', '.join(':' + c for c in columns)})")
        if returning:
            sql += f" RETURNING {returning}"
        _SQL_CACHE[key] = sql
    return sql


def _update_sql(table: str, keys: Sequence[str], columns: Sequence[str]) -> str:
    """``UPDATE table SET c = :c, ... WHERE k = :k_k AND ...`` (keys carry a ``k_`` prefix)."""
    key = ("update", table, *keys, "|", *columns)
    sql = _SQL_CACHE.get(key)
    if sql is None:
        sql = (f"UPDATE {table} SET {', '.join(f'{c} = :{c}' for c in columns)} "
               f"WHERE {' AND '.join(f'{k} = :k_{k}' for k in keys)}")
        _SQL_CACHE[key] = sql
    return sql


def _record_type(names: tuple[str, ...]) -> Any:
    record = _RECORD_TYPES.get(names)
    if record is None:
        record = _RECORD_TYPES[names] = namedtuple("Record", names, rename=True)
    return record


def _records(cursor: Any) -> list[Any]:
    """The rest of ``cursor``'s rows as named tuples; 0/1 of boolean columns as bool."""
    if cursor.description is None:
        return []
    names = tuple(d[0] for d in cursor.description)
    cls = _record_type(names)
    rows = cursor.fetchall()
    flags = [i for i, name in enumerate(names) if name in BOOLEAN_COLUMNS]
    if flags:
        out = []
        for row in rows:
            values = list(row)
            for i in flags:
                if values[i] is not None:
                    values[i] = bool(values[i])
            out.append(cls._make(values))
        return out
    return [cls._make(row) for row in rows]


# -- connections -------------------------------------------------------------------------------


class _Connections:
    """Driver connections of one database: a small pool of ``sqlite3`` connections to a file,
    or the pooled driver connections of a SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite_path = db.sqlite_file(url)
        self.engine: Engine | None = None
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        if self.sqlite_path is None:
            self.engine = db.make_engine(url)
            self.dialect = self.engine.dialect.name
        else:
            self.dialect = "sqlite"
        self.is_sqlite = self.dialect == "sqlite"
        # sqlite3 takes ``:name`` as it is; the other drivers' DB-API style is pyformat.
        self.translate = self.engine is not None and self.engine.dialect.paramstyle in (
            "pyformat", "format")
        self._translated: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """``text`` in this driver's parameter style."""
        if not self.translate:
            return text
        out = self._translated.get(text)
        if out is None:
            out = self._translated[text] = _pyformat(text)
        return out

    def get(self) -> Any:
        if self.engine is not None:
            return self.engine.raw_connection()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        assert self.sqlite_path is not None
        return db.connect_sqlite(self.sqlite_path)

    def put(self, conn: Any) -> None:
        if self.engine is not None:
            conn.close()  # back to the engine's pool (which rolls back what is left open)
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self.engine is not None:
            self.engine.dispose()


class _Result:
    """What :meth:`_CompatConnection.execute` returns: the used parts of SQLAlchemy's Result."""

    def __init__(self, cursor: Any, sqlite: bool) -> None:
        self._rows = _records(cursor)
        self.rowcount = cursor.rowcount
        self._lastrowid = cursor.lastrowid if sqlite else None

    def all(self) -> list[Any]:
        return self._rows

    fetchall = all

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> _Result:
        self._rows = [row[0] for row in self._rows]
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    @property
    def inserted_primary_key(self) -> tuple[Any, ...]:
        if self._lastrowid is None:
            raise NotImplementedError("use an INSERT ... RETURNING statement here")
        return (self._lastrowid,)


@dataclass(frozen=True)
class _DialectName:
    name: str


class _CompatConnection:
    """``tx.conn``: executes SQL text (``:name`` parameters) or a SQLAlchemy Core statement
    (compiled for this database; SQLAlchemy is imported on first use) inside the transaction.
    Prefer the :class:`Tx` methods; this serves the occasional statement they do not cover."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self.dialect = _DialectName(tx._connections.dialect)

    def execute(self, statement: Any, parameters: Mapping[str, Any] | None = None) -> _Result:
        connections = self._tx._connections
        if isinstance(statement, str):
            sql, params = connections.sql(statement), dict(parameters or {})
        else:
            compiled = statement.compile(dialect=_sa_dialect(connections))
            sql, params = compiled.string, compiled.construct_params(parameters)
        cursor = self._tx._cursor
        cursor.execute(sql, params)
        return _Result(cursor, connections.is_sqlite)


def _sa_dialect(connections: _Connections) -> Any:
    if connections.engine is not None and not connections.is_sqlite:
        return connections.engine.dialect
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect(paramstyle="named")


# -- transactions ------------------------------------------------------------------------------

_FENCE = "SELECT token, released FROM leases WHERE run_id = :run_id"


class Tx:
    """One write transaction; methods stage changes, the commit happens when the block ends."""

    def __init__(self, connections: _Connections, cursor: Any, now: float) -> None:
        self._connections = connections
        self._cursor = cursor
        self.now = now
        self._conn: _CompatConnection | None = None

    @property
    def conn(self) -> _CompatConnection:
        """Run other statements in this transaction (see :class:`_CompatConnection`)."""
        if self._conn is None:
            self._conn = _CompatConnection(self)
        return self._conn

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ...: the database's SQLAlchemy dialect name."""
        return self._connections.dialect

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
                = ()) -> list[Any]:
        """Run SQL text with ``:name`` parameters in this transaction; return its rows (named
        tuples). A sequence of parameter mappings runs the statement once for each."""
        text = self._connections.sql(sql)
        if isinstance(params, Mapping):
            self._cursor.execute(text, params)
            return _records(self._cursor)
        if params:
            self._cursor.executemany(text, params)
        return []

    def _insert(self, table: str, values: Mapping[str, Any]) -> None:
        self._cursor.execute(self._connections.sql(_insert_sql(table, tuple(values))), values)

    def _insert_many(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            sql = self._connections.sql(_insert_sql(table, tuple(rows[0])))
            self._cursor.executemany(sql, rows)

    def _update(self, table: str, keys: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        sql = self._connections.sql(_update_sql(table, tuple(keys), tuple(values)))
        params = dict(values)
        for k, v in keys.items():
            params[f"k_{k}"] = v
        self._cursor.execute(sql, params)

    def event(
        self,
        run_id: str,
        kind: str,
        ws_id: str | None = None,
        step_id: str | None = None,
        **data: Any,
    ) -> None:
        """Append one event to the journal."""
        self._insert("events", {
            "run_id": run_id, "ts": self.now, "kind": kind, "ws_id": ws_id,
            "step_id": step_id, "data": json.dumps(data, default=str, sort_keys=True),
        })

    def insert_run(self, **values: Any) -> None:
        self._insert("runs", {"created_at": self.now, "updated_at": self.now, **values})

    def insert_workstreams(self, rows: Sequence[dict[str, Any]]) -> None:
        self._insert_many("workstreams", rows)

    def insert_steps(self, rows: Sequence[dict[str, Any]]) -> None:
        self._insert_many("steps", rows)

    def update_run(self, run_id: str, **values: Any) -> None:
        values["updated_at"] = self.now
        self._update("runs", {"id": run_id}, values)

    def update_ws(self, run_id: str, ws_id: str, **values: Any) -> None:
        self._update("workstreams", {"run_id": run_id, "ws_id": ws_id}, values)

    def update_step(self, run_id: str, ws_id: str, step_id: str, **values: Any) -> None:
        self._update("steps", {"run_id": run_id, "ws_id": ws_id, "step_id": step_id}, values)

    def insert_attempt(self, **values: Any) -> int:
        values = {"started_at": self.now, **values}
        cursor = self._cursor
        cursor.execute(self._connections.sql(_insert_sql("attempts", tuple(values), "id")),
                       values)
        row = cursor.fetchone()
        assert row is not None
        return int(row[0])

    def update_attempt(self, attempt_id: int, **values: Any) -> None:
        self._update("attempts", {"id": attempt_id}, values)

    def insert_checkpoint(self, **values: Any) -> None:
        self._insert("checkpoints", {"created_at": self.now, **values})

    def delete_checkpoints(self, run_id: str, ws_id: str, step_ids: Sequence[str]) -> None:
        if step_ids:
            names = [f"s{i}" for i in range(len(step_ids))]
            params: dict[str, Any] = dict(zip(names, step_ids, strict=True))
            params.update(run_id=run_id, ws_id=ws_id)
            self.execute(
                "DELETE FROM checkpoints WHERE run_id = :run_id AND ws_id = :ws_id "
                f"AND step_id IN ({', '.join(':' + n for n in names)})", params)

    def insert_findings(self, rows: Sequence[dict[str, Any]]) -> None:
        """Findings of one attempt (``created_at`` is filled in)."""
        self._insert_many("findings", [{"created_at": self.now, **row} for row in rows])

    def delete_compensation(self, run_id: str, ws_id: str, step_id: str, position: int) -> None:
        self.execute(
            "DELETE FROM compensations WHERE run_id = :run_id AND ws_id = :ws_id "
            "AND step_id = :step_id AND position = :position",
            {"run_id": run_id, "ws_id": ws_id, "step_id": step_id, "position": position})

    def insert_compensation(self, **values: Any) -> None:
        self._insert("compensations", {"created_at": self.now, **values})

    # -- leases (aidp.state.lease) -------------------------------------------------------------

    def lease_row(self, run_id: str) -> Any | None:
        """The lease row of ``run_id`` (locked until the commit on PostgreSQL), or None."""
        sql = "SELECT * FROM leases WHERE run_id = :run_id"
        if not self._connections.is_sqlite:
            sql += " FOR UPDATE"
        rows = self.execute(sql, {"run_id": run_id})
        return rows[0] if rows else None

    def insert_lease(self, **values: Any) -> None:
        self._insert("leases", values)

    def update_lease(self, run_id: str, *, only_token: int | None = None, **values: Any) -> int:
        """Update the lease of ``run_id`` (only while it carries ``only_token``, if given);
        return the number of rows changed."""
        keys: dict[str, Any] = {"run_id": run_id}
        if only_token is not None:
            keys["token"] = only_token
        self._update("leases", keys, values)
        return int(self._cursor.rowcount)


# -- the store ---------------------------------------------------------------------------------


class Store:
    """Access to one aidp database. Thread-safe: each call takes its own connection."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self._connections = _Connections(url)
        self._sqlite = self._connections.is_sqlite
        self._engine: Engine | None = self._connections.engine
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if self._sqlite else nullcontext()
        )
        self._deferred = threading.local()
        if create:
            self._migrate()

    @property
    def dialect(self) -> str:
        """The database's SQLAlchemy dialect name (``sqlite``, ``postgresql``)."""
        return self._connections.dialect

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the same database (made on first use for a SQLite file):
        for migrations, and for tools that want SQLAlchemy; the store itself does not use it."""
        if self._engine is None:
            self._engine = db.make_engine(self.url)
        return self._engine

    @property
    def reader(self) -> Engine:
        """:attr:`engine` whose transactions never take SQLite's write lock."""
        return db.read_engine(self.engine)

    def _migrate(self) -> None:
        if self._sqlite:
            conn = self._connections.get()
            try:
                revision = db.sqlite_revision(conn)
                if revision == db.HEAD_REVISION:
                    return
                if revision is None and db.create_sqlite_schema(conn):
                    return
            finally:
                self._connections.put(conn)
        db.migrate(self.engine)

    def close(self) -> None:
        self._connections.close()
        if self._engine is not None and self._engine is not self._connections.engine:
            self._engine.dispose()

    def defer(self, fence: Fence | None, change: Callable[[Tx], None]) -> None:
        """Run ``change`` at the start of this thread's next :meth:`write` with the same
        ``fence`` (in that transaction, after its fence check), instead of in a transaction of
        its own: for bookkeeping that is always followed by another write before anything acts
        on it (a worktree prepared just before its attempt starts). Lost with that transaction
        if it fails, as with a crash before it."""
        pending = getattr(self._deferred, "changes", None)
        if pending is None:
            pending = self._deferred.changes = []
        pending.append((fence, change))

    def drop_deferred(self) -> None:
        """Forget this thread's deferred changes (what they recorded did not happen after all)."""
        self._deferred.changes = []

    @contextmanager
    def write(self, fence: Fence | None = None) -> Iterator[Tx]:
        """A write transaction; with ``fence``, only while our lease token is current."""
        # SQLite has one writer at a time: threads of this process queue here instead of in
        # SQLite's busy handler, which sleeps in steps of milliseconds.
        connections = self._connections
        with self._write_lock:
            conn = connections.get()
            try:
                cursor = conn.cursor()
                if self._sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    if fence is not None:
                        sql = _FENCE if self._sqlite else _FENCE + " FOR UPDATE"
                        cursor.execute(connections.sql(sql), {"run_id": fence.run_id})
                        row = cursor.fetchone()
                        if row is None or row[0] != fence.token or row[1]:
                            raise LeaseLostError(fence.run_id, fence.token)
                    tx = Tx(connections, cursor, time.time())
                    pending = getattr(self._deferred, "changes", None)
                    if pending:
                        mine = [change for owner, change in pending if owner == fence]
                        if mine:
                            self._deferred.changes = [(o, c) for o, c in pending if o != fence]
                            for change in mine:
                                change(tx)
                    yield tx
                except BaseException:
                    if self._sqlite:
                        cursor.execute("ROLLBACK")
                    else:
                        conn.rollback()
                    raise
                if self._sqlite:
                    cursor.execute("COMMIT")
                else:
                    conn.commit()
            finally:
                connections.put(conn)

    # -- reads -------------------------------------------------------------------------------

    def read(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Rows (named tuples) of one read-only SQL statement with ``:name`` parameters, outside
        any write transaction (it never waits for the write lock)."""
        return self._all(sql, params)

    def _all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        connections = self._connections
        conn = connections.get()
        try:
            cursor = conn.cursor()
            cursor.execute(connections.sql(sql), params or {})
            return _records(cursor)
        finally:
            connections.put(conn)

    def run(self, run_id: str) -> Any:
        """The run row; raises NotFoundError for an unknown id."""
        rows = self._all("SELECT * FROM runs WHERE id = :id", {"id": run_id})
        if not rows:
            raise NotFoundError(f"no run {run_id!r}", hint="`aidp runs` lists the runs")
        return rows[0]

    def resolve_run(self, ref: str | None) -> str:
        """A run id from a full id, a unique prefix (case-insensitive), or None for the newest."""
        if ref is None:
            rows = self._all("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1")
            if not rows:
                raise NotFoundError("there are no runs yet", hint="start one with `aidp run FILE`")
            return str(rows[0].id)
        prefix = ref.upper().replace("/", "//").replace("%", "/%").replace("_", "/_")
        rows = self._all("SELECT id FROM runs WHERE id LIKE :prefix ESCAPE '/' LIMIT 2",
                         {"prefix": prefix + "%"})
        if len(rows) == 1:
            return str(rows[0].id)
        if not rows:
            raise NotFoundError(f"no run {ref!r}", hint="`aidp runs` lists the runs")
        raise NotFoundError(f"run prefix {ref!r} is ambiguous", hint="give more characters")

    def runs(self, limit: int = 50) -> list[Any]:
        return self._all("SELECT * FROM runs ORDER BY created_at DESC LIMIT :limit",
                         {"limit": limit})

    def workstreams(self, run_id: str) -> list[Any]:
        return self._all("SELECT * FROM workstreams WHERE run_id = :run_id ORDER BY position",
                         {"run_id": run_id})

    def steps(self, run_id: str) -> list[Any]:
        return self._all(
            "SELECT steps.* FROM steps JOIN workstreams ON workstreams.run_id = steps.run_id "
            "AND workstreams.ws_id = steps.ws_id WHERE steps.run_id = :run_id "
            "ORDER BY workstreams.position, steps.position", {"run_id": run_id})

    def _of_run(self, table: str, run_id: str, ws_id: str | None, step_id: str | None
                ) -> list[Any]:
        """Rows of ``table`` (attempts, findings) of a run, optionally of one step, by id."""
        sql = f"SELECT * FROM {table} WHERE run_id = :run_id"
        params: dict[str, Any] = {"run_id": run_id}
        if ws_id is not None:
            sql += " AND ws_id = :ws_id"
            params["ws_id"] = ws_id
        if step_id is not None:
            sql += " AND step_id = :step_id"
            params["step_id"] = step_id
        return self._all(sql + " ORDER BY id", params)

    def attempts(
        self, run_id: str, ws_id: str | None = None, step_id: str | None = None
    ) -> list[Any]:
        return self._of_run("attempts", run_id, ws_id, step_id)

    def checkpoints(self, run_id: str) -> list[Any]:
        return self._all("SELECT * FROM checkpoints WHERE run_id = :run_id ORDER BY created_at",
                         {"run_id": run_id})

    def events(self, run_id: str, after_id: int = 0, limit: int | None = None) -> list[Any]:
        sql = "SELECT * FROM events WHERE run_id = :run_id AND id > :after_id ORDER BY id"
        params: dict[str, Any] = {"run_id": run_id, "after_id": after_id}
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = limit
        return self._all(sql, params)

    def event_count(self, run_id: str) -> int:
        rows = self._all("SELECT count(*) AS n FROM events WHERE run_id = :run_id",
                         {"run_id": run_id})
        return int(rows[0].n or 0)

    def lease(self, run_id: str) -> Any | None:
        rows = self._all("SELECT * FROM leases WHERE run_id = :run_id", {"run_id": run_id})
        return rows[0] if rows else None

    def cancel_requested(self, run_id: str) -> bool:
        rows = self._all("SELECT cancel_requested FROM runs WHERE id = :id", {"id": run_id})
        return bool(rows and rows[0].cancel_requested)

    def findings(
        self, run_id: str, ws_id: str | None = None, step_id: str | None = None
    ) -> list[Any]:
        return self._of_run("findings", run_id, ws_id, step_id)

    def compensations(self, run_id: str) -> list[Any]:
        return self._all("SELECT * FROM compensations WHERE run_id = :run_id "
                         "ORDER BY ws_id, step_id, position", {"run_id": run_id})

    def usage(self, run_id: str | None = None) -> list[Any]:
        """Tokens, cost and requests summed per (run, workstream, step, profile)."""
        where, params = ("WHERE run_id = :run_id ", {"run_id": run_id}) if run_id else ("", {})
        return self._all(
            "SELECT run_id, ws_id, step_id, profile, count(*) AS attempts, "
            "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
            "sum(cost_usd) AS cost_usd, sum(requests) AS requests FROM attempts "
            f"{where}GROUP BY run_id, ws_id, step_id, profile "
            "ORDER BY run_id, ws_id, step_id", params)
