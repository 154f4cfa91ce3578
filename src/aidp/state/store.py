"""The store: every read and write of run state goes through here.

Writes happen in :meth:`Store.write` transactions (``BEGIN IMMEDIATE`` on SQLite). An orchestrator
passes its :class:`Fence` (run id + lease token): the transaction first checks that the lease
still carries that token and raises :class:`~aidp.exceptions.LeaseLostError` otherwise, so a
deposed orchestrator can never write again. Several changes and their journal events go into one
transaction, which keeps a step's bookkeeping to two commits.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from aidp.exceptions import LeaseLostError, NotFoundError
from aidp.state import db
from aidp.state.tables import (
    attempts,
    checkpoints,
    compensations,
    events,
    findings,
    leases,
    runs,
    steps,
    workstreams,
)

__all__ = ["Fence", "Store", "Tx"]


@dataclass(frozen=True)
class Fence:
    """Proof that the holder drives ``run_id``: the lease's fencing token at acquisition."""

    run_id: str
    token: int


_STATEMENTS: dict[tuple[str, ...], Any] = {}


def _update(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    """``UPDATE table SET columns... WHERE keys...``, built once per shape and cached (building
    and cache-keying a fresh statement costs more than executing it)."""
    cache_key = ("update", table.name, *keys, "|", *columns)
    stmt = _STATEMENTS.get(cache_key)
    if stmt is None:
        stmt = (
            update(table)
            .where(*(table.c[k] == bindparam(f"k_{k}") for k in keys))
            .values({c: bindparam(f"v_{c}") for c in columns})
        )
        _STATEMENTS[cache_key] = stmt
    return stmt


def _values(keys: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    params = {f"k_{k}": v for k, v in keys.items()}
    params.update({f"v_{c}": v for c, v in values.items()})
    return params


_INSERT = {table.name: insert(table) for table in (runs, workstreams, steps, attempts,
                                                    checkpoints, events, findings,
                                                    compensations)}
_FENCE = select(leases.c.token, leases.c.released).where(leases.c.run_id == bindparam("run_id"))
_FENCE_FOR_UPDATE = _FENCE.with_for_update()


class Tx:
    """One write transaction; methods stage changes, the commit happens when the block ends."""

    def __init__(self, conn: Connection, now: float) -> None:
        self.conn = conn
        self.now = now

    def event(
        self,
        run_id: str,
        kind: str,
        ws_id: str | None = None,
        step_id: str | None = None,
        **data: Any,
    ) -> None:
        """Append one event to the journal."""
        self.conn.execute(_INSERT["events"], {
            "run_id": run_id, "ts": self.now, "kind": kind, "ws_id": ws_id,
            "step_id": step_id, "data": json.dumps(data, default=str, sort_keys=True),
        })

    def insert_run(self, **values: Any) -> None:
        self.conn.execute(_INSERT["runs"],
                          {"created_at": self.now, "updated_at": self.now, **values})

    def insert_workstreams(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(_INSERT["workstreams"], list(rows))

    def insert_steps(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(_INSERT["steps"], list(rows))

    def update_run(self, run_id: str, **values: Any) -> None:
        values["updated_at"] = self.now
        self.conn.execute(_update(runs, ("id",), tuple(values)),
                          _values({"id": run_id}, values))

    def update_ws(self, run_id: str, ws_id: str, **values: Any) -> None:
        self.conn.execute(_update(workstreams, ("run_id", "ws_id"), tuple(values)),
                          _values({"run_id": run_id, "ws_id": ws_id}, values))

    def update_step(self, run_id: str, ws_id: str, step_id: str, **values: Any) -> None:
        self.conn.execute(_update(steps, ("run_id", "ws_id", "step_id"), tuple(values)),
                          _values({"run_id": run_id, "ws_id": ws_id, "step_id": step_id}, values))

    def insert_attempt(self, **values: Any) -> int:
        result = self.conn.execute(_INSERT["attempts"], {"started_at": self.now, **values})
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def update_attempt(self, attempt_id: int, **values: Any) -> None:
        self.conn.execute(_update(attempts, ("id",), tuple(values)),
                          _values({"id": attempt_id}, values))

    def insert_checkpoint(self, **values: Any) -> None:
        self.conn.execute(_INSERT["checkpoints"], {"created_at": self.now, **values})

    def delete_checkpoints(self, run_id: str, ws_id: str, step_ids: Sequence[str]) -> None:
        if step_ids:
            self.conn.execute(
                delete(checkpoints).where(
                    checkpoints.c.run_id == run_id,
                    checkpoints.c.ws_id == ws_id,
                    checkpoints.c.step_id.in_(list(step_ids)),
                )
            )


    def insert_findings(self, rows: Sequence[dict[str, Any]]) -> None:
        """Findings of one attempt (``created_at`` is filled in)."""
        if rows:
            self.conn.execute(_INSERT["findings"],
                              [{"created_at": self.now, **row} for row in rows])

    def delete_compensation(self, run_id: str, ws_id: str, step_id: str, position: int) -> None:
        self.conn.execute(delete(compensations).where(
            compensations.c.run_id == run_id, compensations.c.ws_id == ws_id,
            compensations.c.step_id == step_id, compensations.c.position == position))

    def insert_compensation(self, **values: Any) -> None:
        self.conn.execute(_INSERT["compensations"], {"created_at": self.now, **values})


class Store:
    """Access to one aidp database. Thread-safe: each call takes its own connection."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine: Engine = db.make_engine(url)
        self.reader: Engine = db.read_engine(self.engine)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if self._sqlite else nullcontext()
        )
        if create:
            db.migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self, fence: Fence | None = None) -> Iterator[Tx]:
        """A write transaction; with ``fence``, only while our lease token is current."""
        # SQLite has one writer at a time: threads of this process queue here instead of in
        # SQLite's busy handler, which sleeps in steps of milliseconds.
        with self._write_lock, self.engine.begin() as conn:
            if fence is not None:
                query = _FENCE if self._sqlite else _FENCE_FOR_UPDATE
                row = conn.execute(query, {"run_id": fence.run_id}).first()
                if row is None or row.token != fence.token or row.released:
                    raise LeaseLostError(fence.run_id, fence.token)
            yield Tx(conn, time.time())

    # -- reads -------------------------------------------------------------------------------

    def _all(self, query: Any) -> list[Row[Any]]:
        with self.reader.connect() as conn:
            return list(conn.execute(query).all())

    def run(self, run_id: str) -> Row[Any]:
        """The run row; raises NotFoundError for an unknown id."""
        rows = self._all(select(runs).where(runs.c.id == run_id))
        if not rows:
            raise NotFoundError(f"no run {run_id!r}", hint="`aidp runs` lists the runs")
        return rows[0]

    def resolve_run(self, ref: str | None) -> str:
        """A run id from a full id, a unique prefix (case-insensitive), or None for the newest."""
        if ref is None:
            rows = self._all(select(runs.c.id).order_by(runs.c.created_at.desc()).limit(1))
            if not rows:
                raise NotFoundError("there are no runs yet", hint="start one with `aidp run FILE`")
            return str(rows[0].id)
        rows = self._all(select(runs.c.id).where(runs.c.id.startswith(ref.upper())).limit(2))
        if len(rows) == 1:
            return str(rows[0].id)
        if not rows:
            raise NotFoundError(f"no run {ref!r}", hint="`aidp runs` lists the runs")
        raise NotFoundError(f"run prefix {ref!r} is ambiguous", hint="give more characters")

    def runs(self, limit: int = 50) -> list[Row[Any]]:
        return self._all(select(runs).order_by(runs.c.created_at.desc()).limit(limit))

    def workstreams(self, run_id: str) -> list[Row[Any]]:
        return self._all(
            select(workstreams)
            .where(workstreams.c.run_id == run_id)
            .order_by(workstreams.c.position)
        )

    def steps(self, run_id: str) -> list[Row[Any]]:
        return self._all(
            select(steps)
            .join(
                workstreams,
                (workstreams.c.run_id == steps.c.run_id) & (workstreams.c.ws_id == steps.c.ws_id),
            )
            .where(steps.c.run_id == run_id)
            .order_by(workstreams.c.position, steps.c.position)
        )

    def attempts(
        self, run_id: str, ws_id: str | None = None, step_id: str | None = None
    ) -> list[Row[Any]]:
        query = select(attempts).where(attempts.c.run_id == run_id)
        if ws_id is not None:
            query = query.where(attempts.c.ws_id == ws_id)
        if step_id is not None:
            query = query.where(attempts.c.step_id == step_id)
        return self._all(query.order_by(attempts.c.id))

    def checkpoints(self, run_id: str) -> list[Row[Any]]:
        return self._all(
            select(checkpoints).where(checkpoints.c.run_id == run_id).order_by(
                checkpoints.c.created_at
            )
        )

    def events(self, run_id: str, after_id: int = 0, limit: int | None = None) -> list[Row[Any]]:
        query = (
            select(events)
            .where(events.c.run_id == run_id, events.c.id > after_id)
            .order_by(events.c.id)
        )
        if limit is not None:
            query = query.limit(limit)
        return self._all(query)

    def event_count(self, run_id: str) -> int:
        with self.reader.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(events).where(events.c.run_id == run_id)
            ).scalar()
        return int(count or 0)

    def lease(self, run_id: str) -> Row[Any] | None:
        rows = self._all(select(leases).where(leases.c.run_id == run_id))
        return rows[0] if rows else None

    def cancel_requested(self, run_id: str) -> bool:
        with self.reader.connect() as conn:
            return bool(
                conn.execute(select(runs.c.cancel_requested).where(runs.c.id == run_id)).scalar()
            )

    def findings(
        self, run_id: str, ws_id: str | None = None, step_id: str | None = None
    ) -> list[Row[Any]]:
        query = select(findings).where(findings.c.run_id == run_id)
        if ws_id is not None:
            query = query.where(findings.c.ws_id == ws_id)
        if step_id is not None:
            query = query.where(findings.c.step_id == step_id)
        return self._all(query.order_by(findings.c.id))

    def compensations(self, run_id: str) -> list[Row[Any]]:
        return self._all(
            select(compensations).where(compensations.c.run_id == run_id).order_by(
                compensations.c.ws_id, compensations.c.step_id, compensations.c.position
            )
        )

    def usage(self, run_id: str | None = None) -> list[Row[Any]]:
        """Tokens, cost and requests summed per (run, workstream, step, profile)."""
        query = select(
            attempts.c.run_id, attempts.c.ws_id, attempts.c.step_id, attempts.c.profile,
            func.count().label("attempts"),
            func.sum(attempts.c.input_tokens).label("input_tokens"),
            func.sum(attempts.c.output_tokens).label("output_tokens"),
            func.sum(attempts.c.cost_usd).label("cost_usd"),
            func.sum(attempts.c.requests).label("requests"),
        ).group_by(attempts.c.run_id, attempts.c.ws_id, attempts.c.step_id, attempts.c.profile)
        if run_id is not None:
            query = query.where(attempts.c.run_id == run_id)
        return self._all(query.order_by(attempts.c.run_id, attempts.c.ws_id,
                                        attempts.c.step_id))
