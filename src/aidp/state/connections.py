"""Driver connections of one database and the compatibility shims around them.

:class:`Connections` hands out the database driver's own connections: a small pool of ``sqlite3``
connections to a SQLite file (:func:`aidp.state.db.connect_sqlite`; no SQLAlchemy import at all),
or the pooled driver connections of a SQLAlchemy engine for anything else. SQL text is written
once with ``:name`` parameters and translated to the driver's style (psycopg's ``%(name)s``).
Rows come back as named tuples (:func:`records`), booleans as ``bool`` on every backend.
:class:`CompatConnection` (``tx.conn``) runs the occasional SQLAlchemy Core statement.
"""

from __future__ import annotations

import re
import threading
from collections import namedtuple
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidp.state import db
from aidp.state.sqlite_schema import BOOLEAN_COLUMNS

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["CompatConnection", "Connections", "Result", "records"]


# -- SQL text and rows -----------------------------------------------------------------------

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_RECORD_TYPES: dict[tuple[str, ...], Any] = {}


def _pyformat(sql: str) -> str:
    """``:name`` parameters to ``%(name)s`` (and a literal ``%`` to ``%%``)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def _record_type(names: tuple[str, ...]) -> Any:
    record = _RECORD_TYPES.get(names)
    if record is None:
        record = _RECORD_TYPES[names] = namedtuple("Record", names, rename=True)
    return record


def records(cursor: Any) -> list[Any]:
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


class Connections:
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
        self._watcher: Any = None  # SQLite: a connection that only asks for data_version

    def version(self) -> int | None:
        """A number that changes whenever any connection, of any process, commits to the
        database; None where no such number is cheap (not SQLite), so nothing may be cached.

        SQLite's ``PRAGMA data_version`` of a connection that never writes (its own commits
        would not count): a few microseconds, and exact.
        """
        if self.sqlite_path is None:
            return None
        with self._lock:
            if self._closed:
                return None
            if self._watcher is None:
                self._watcher = db.connect_sqlite(self.sqlite_path)
            return int(self._watcher.execute("PRAGMA data_version").fetchone()[0])

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
            if self._watcher is not None:
                idle.append(self._watcher)
                self._watcher = None
        for conn in idle:
            conn.close()
        if self.engine is not None:
            self.engine.dispose()


class Result:
    """What :meth:`CompatConnection.execute` returns: the used parts of SQLAlchemy's Result."""

    def __init__(self, cursor: Any, sqlite: bool) -> None:
        self._rows = records(cursor)
        self.rowcount = cursor.rowcount
        self._lastrowid = cursor.lastrowid if sqlite else None

    def all(self) -> list[Any]:
        return self._rows

    fetchall = all

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> Result:
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


class CompatConnection:
    """``tx.conn``: executes SQL text (``:name`` parameters) or a SQLAlchemy Core statement
    (compiled for this database; SQLAlchemy is imported on first use) inside the transaction.
    Prefer the :class:`~aidp.state.tx.Tx` methods; this serves the occasional statement they
    do not cover."""

    def __init__(self, connections: Connections, cursor: Any) -> None:
        self._connections = connections
        self._cursor = cursor
        self.dialect = _DialectName(connections.dialect)

    def execute(self, statement: Any, parameters: Mapping[str, Any] | None = None) -> Result:
        connections = self._connections
        if isinstance(statement, str):
            sql, params = connections.sql(statement), dict(parameters or {})
        else:
            compiled = statement.compile(dialect=_sa_dialect(connections))
            sql, params = compiled.string, compiled.construct_params(parameters)
        cursor = self._cursor
        cursor.execute(sql, params)
        return Result(cursor, connections.is_sqlite)


def _sa_dialect(connections: Connections) -> Any:
    if connections.engine is not None and not connections.is_sqlite:
        return connections.engine.dialect
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect(paramstyle="named")
