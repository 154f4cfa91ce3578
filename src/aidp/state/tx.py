"""Write transactions: :class:`Tx` stages the changes of one :meth:`Store.write
<aidp.state.store.Store.write>` block, :class:`Fence` proves that the writer still holds the
run's lease."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aidp.state.connections import CompatConnection, Connections, records

__all__ = ["FENCE_SQL", "NO_RUN", "Fence", "Tx"]

#: The run id of journal events that belong to no run (a breaker reset by hand, a proposal's
#: review): they are journaled all the same, so the live stream and the webhooks see them.
NO_RUN = ""


@dataclass(frozen=True)
class Fence:
    """Proof that the holder drives ``run_id``: the lease's fencing token at acquisition."""

    run_id: str
    token: int


# -- SQL text ----------------------------------------------------------------------------------

_SQL_CACHE: dict[tuple[Any, ...], str] = {}


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


# -- transactions ------------------------------------------------------------------------------

FENCE_SQL = "SELECT token, released FROM leases WHERE run_id = :run_id"


class Tx:
    """One write transaction; methods stage changes, the commit happens when the block ends."""

    def __init__(self, connections: Connections, cursor: Any, now: float) -> None:
        self._connections = connections
        self._cursor = cursor
        self.now = now
        self._conn: CompatConnection | None = None

    @property
    def conn(self) -> CompatConnection:
        """Run other statements in this transaction (see :class:`CompatConnection`)."""
        if self._conn is None:
            self._conn = CompatConnection(self._connections, self._cursor)
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
            return records(self._cursor)
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
