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
tuples (``row.status``), booleans as ``bool`` on every backend. The connections live in
:mod:`aidp.state.connections`, the write transaction in :mod:`aidp.state.tx`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from aidp.core.states import AttemptKind, AttemptOutcome
from aidp.exceptions import LeaseLostError, NotFoundError
from aidp.state import db
from aidp.state.connections import Connections, records
from aidp.state.tx import FENCE_SQL, Fence, Tx

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["Store"]

#: Outcomes of attempts that ran no tool to the end: no part of a profile's statistics.
_NOT_RUN = ", ".join(f"'{outcome.value}'" for outcome in (
    AttemptOutcome.CANCELLED, AttemptOutcome.BUDGET_EXCEEDED, AttemptOutcome.CIRCUIT_OPEN))


# -- the store ---------------------------------------------------------------------------------


class Store:
    """Access to one aidp database. Thread-safe: each call takes its own connection."""

    def __init__(self, url: str, *, create: bool = True, upgrade: bool | None = None) -> None:
        """Open the database at ``url``; with ``create``, make or upgrade its schema.

        ``upgrade``: may an existing older schema be upgraded now? None: a SQLite file yes (it
        is one user's), a server database (PostgreSQL, shared by many services) no -- that is
        ``aidp db upgrade --yes``'s job. An empty database is always created.

        Raises:
            ConfigError: the schema is older and may not be upgraded, or newer than this aidp.
        """
        self.url = url
        self._connections = Connections(url)
        self._sqlite = self._connections.is_sqlite
        self._engine: Engine | None = self._connections.engine
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if self._sqlite else nullcontext()
        )
        self._deferred = threading.local()
        if create:
            self._migrate(self._sqlite if upgrade is None else upgrade)

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

    def _migrate(self, upgrade: bool) -> None:
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
        db.migrate(self.engine, upgrade=upgrade)

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
                        sql = FENCE_SQL if self._sqlite else FENCE_SQL + " FOR UPDATE"
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

    def data_version(self) -> int | None:
        """Changes whenever anyone commits to the database (None: not known cheaply on this
        backend). What was read at one version is still true while the version is the same."""
        return self._connections.version()

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
            return records(cursor)
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

    def runs_page(self, limit: int, *, before: tuple[float, str] | None = None,
                  statuses: tuple[str, ...] = (), since: float | None = None) -> list[Any]:
        """Up to ``limit`` runs, newest first (ties by id, descending), older than ``before``
        (``(created_at, id)`` of the last run of the previous page: keyset pagination, so a
        run started meanwhile neither shifts nor repeats a page), optionally of the recorded
        ``statuses`` and created at or after ``since``."""
        sql = "SELECT * FROM runs WHERE 1 = 1"
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            sql += (" AND (created_at < :b_at OR (created_at = :b_at AND id < :b_id))")
            params.update(b_at=before[0], b_id=before[1])
        if statuses:
            names = [f"s{i}" for i in range(len(statuses))]
            sql += " AND status IN (" + ", ".join(f":{n}" for n in names) + ")"
            params.update(zip(names, statuses, strict=True))
        if since is not None:
            sql += " AND created_at >= :since"
            params["since"] = since
        return self._all(sql + " ORDER BY created_at DESC, id DESC LIMIT :limit", params)

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
            "sum(cost_usd) AS cost_usd, sum(requests) AS requests, "
            "sum(cached_tokens) AS cached_tokens, sum(latency_ms) AS latency_ms FROM attempts "
            f"{where}GROUP BY run_id, ws_id, step_id, profile "
            "ORDER BY run_id, ws_id, step_id", params)

    def profile_stats(self) -> list[Any]:
        """The finished attempts of every run summed per (profile, capability, language), as
        :class:`aidp.tools.stats.ProfileStats` defines them: ``finished``, ``succeeded``,
        ``steps`` (distinct steps), ``fix_attempts`` (kinds fix and escalate), ``cost_usd``,
        ``latency_ms``, ``duration_s``, ``wins`` and ``losses`` (best-of-N verdicts).

        One aggregate query: a scan of the attempts table (every row counts, so no index
        would spare it), about 0.1-0.3 s per 100,000 attempts on SQLite on these machines;
        made only to route a step with ``select`` and for ``aidp tools stats``."""
        return self._all(
            "SELECT profile, capability, language, count(*) AS finished, "
            f"sum(CASE WHEN outcome = '{AttemptOutcome.SUCCEEDED.value}' THEN 1 ELSE 0 END) "
            "AS succeeded, "
            "count(DISTINCT run_id || '/' || ws_id || '/' || step_id) AS steps, "
            f"sum(CASE WHEN kind IN ('{AttemptKind.FIX.value}', '{AttemptKind.ESCALATE.value}') "
            "THEN 1 ELSE 0 END) AS fix_attempts, "
            "sum(cost_usd) AS cost_usd, sum(latency_ms) AS latency_ms, "
            "sum(CASE WHEN finished_at > started_at THEN finished_at - started_at ELSE 0 END) "
            "AS duration_s, "
            "sum(CASE WHEN verdict = 'won' THEN 1 ELSE 0 END) AS wins, "
            "sum(CASE WHEN verdict = 'lost' THEN 1 ELSE 0 END) AS losses "
            "FROM attempts WHERE profile IS NOT NULL AND outcome IS NOT NULL "
            "AND NOT interrupted "
            f"AND outcome NOT IN ({_NOT_RUN}) "
            f"AND kind != '{AttemptKind.JUDGE.value}' "  # a judge's verdict is not the task's
            "GROUP BY profile, capability, language ORDER BY profile, capability, language")
