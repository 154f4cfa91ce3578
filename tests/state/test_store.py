"""The store on SQLite and PostgreSQL: migrations, schema, leases and fencing, the journal."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select, update

from aidp.exceptions import LeaseHeldError, LeaseLostError
from aidp.state import db
from aidp.state.lease import acquire_lease, lease_is_live, release_lease, renew_lease
from aidp.state.store import Store
from aidp.state.tables import events, leases, metadata
from aidp.state.tx import Fence

VERSIONS = Path(db.__file__).parent / "migrations" / "versions"
TABLES = {"runs", "workstreams", "steps", "attempts", "checkpoints", "events", "leases"}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def lease_row(store: Store, run_id: str) -> Any:
    row = store.lease(run_id)
    assert row is not None
    return row


def _revisions() -> dict[str, str | None]:
    """revision -> down_revision of every migration file, read without importing them."""
    found: dict[str, str | None] = {}
    for path in VERSIONS.glob("*.py"):
        values: dict[str, str | None] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    assert node.value is not None
                    values[target.id] = ast.literal_eval(node.value)
        if "revision" in values:
            found[str(values["revision"])] = values.get("down_revision")
    return found


@pytest.mark.parametrize("replay", [False, True], ids=["create", "replay"])
def test_migrations_create_every_table(db_url: str, replay: bool) -> None:
    """Opening an empty database creates every table at HEAD_REVISION (directly, or by
    replaying every migration)."""
    engine = db.make_engine(db_url)
    try:
        assert db.current_revision(engine) is None
        db.migrate(engine, replay=replay)
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
        assert db.current_revision(engine) == db.HEAD_REVISION
    finally:
        engine.dispose()


def test_migrations_are_idempotent(db_url: str) -> None:
    """Migrating twice, or opening the store again, changes nothing and keeps the data."""
    first = Store(db_url)
    with first.write() as tx:
        tx.event("R1", "hello")
    first.close()
    second = Store(db_url)
    db.migrate(second.engine)
    assert [e.kind for e in second.events("R1")] == ["hello"]
    assert db.current_revision(second.engine) == db.HEAD_REVISION
    second.close()


def test_head_revision_is_the_newest_migration() -> None:
    """HEAD_REVISION names the one migration no other migration builds on."""
    revisions = _revisions()
    assert revisions, "no migration found"
    parents = set(revisions.values())
    heads = [r for r in revisions if r not in parents]
    assert heads == [db.HEAD_REVISION]


def test_migrated_schema_matches_tables(db_url: str) -> None:
    """The schema the migrations build equals aidp.state.tables.metadata (no autogenerate diff),
    so a new database made from the tables is the same as one made by the migrations."""
    engine = db.make_engine(db_url)
    try:
        db.migrate(engine, replay=True)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_fenced_write_fails_after_takeover_of_an_expired_lease(store: Store) -> None:
    """Once another acquire_lease took over an expired lease, the old fence cannot write."""
    old = acquire_lease(store, "R1")
    with store.write(old) as tx:
        tx.event("R1", "mine")
    with store.write() as tx:
        tx.conn.execute(update(leases).where(leases.c.run_id == "R1")
                        .values(expires_at=tx.now - 1))
    new = acquire_lease(store, "R1")
    assert new.token == old.token + 1
    with pytest.raises(LeaseLostError) as info, store.write(old) as tx:
        tx.event("R1", "stale")
    assert info.value.token == old.token and info.value.exit_code == 4
    with pytest.raises(LeaseLostError):
        renew_lease(store, old)
    with store.write(new) as tx:
        tx.event("R1", "theirs")
    assert [e.kind for e in store.events("R1") if e.kind != "lease.acquired"] == ["mine",
                                                                                 "theirs"]


def test_fenced_write_fails_after_takeover_of_a_released_lease(store: Store) -> None:
    """A released lease may be taken over at once; the old fence then fails."""
    old = acquire_lease(store, "R1")
    release_lease(store, old)
    assert not lease_is_live(store.lease("R1"))
    with pytest.raises(LeaseLostError), store.write(old):
        pass
    new = acquire_lease(store, "R1")
    with store.write(new):
        pass
    release_lease(store, old)  # a no-op: the lease is someone else's now
    assert lease_is_live(store.lease("R1"))


def test_fenced_write_without_lease_fails(store: Store) -> None:
    """A fence for a run that has no lease row is refused."""
    with pytest.raises(LeaseLostError), store.write(Fence("NOPE", 1)):
        pass


def test_acquire_while_live_names_the_holder(store: Store) -> None:
    """acquire_lease on a live lease raises LeaseHeldError naming the holder."""
    fence = acquire_lease(store, "R1")
    with pytest.raises(LeaseHeldError) as info:
        acquire_lease(store, "R1")
    holder = lease_row(store, "R1").holder
    assert holder == f"pid {__import__('os').getpid()} on {socket.gethostname()}"
    assert info.value.holder == holder and holder in info.value.message
    assert info.value.exit_code == 4
    with store.write(fence):  # the holder is unaffected
        pass


def test_lease_of_dead_pid_on_this_host_is_taken_over(store: Store) -> None:
    """A lease whose holder process is gone on this host is taken over before it expires."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(proc.stdout)
    with store.write() as tx:
        tx.conn.execute(insert(leases).values(
            run_id="R1", holder=f"pid {dead_pid} on {socket.gethostname()}",
            host=socket.gethostname(), pid=dead_pid, pid_start=None, token=7,
            acquired_at=tx.now, renewed_at=tx.now, expires_at=tx.now + 3600, released=False))
    fence = acquire_lease(store, "R1")
    assert fence.token == 8
    lease = lease_row(store, "R1")
    assert lease.pid != dead_pid and not lease.released


def test_lease_of_another_host_is_respected_until_expiry(store: Store) -> None:
    """A lease held on another host is live until expires_at, whatever its pid."""
    with store.write() as tx:
        tx.conn.execute(insert(leases).values(
            run_id="R1", holder="pid 1 on elsewhere", host="elsewhere.invalid", pid=1,
            pid_start=None, token=1, acquired_at=tx.now, renewed_at=tx.now,
            expires_at=tx.now + 3600, released=False))
    with pytest.raises(LeaseHeldError, match="elsewhere"):
        acquire_lease(store, "R1")
    with store.write() as tx:
        tx.conn.execute(update(leases).values(expires_at=tx.now - 0.001))
    assert acquire_lease(store, "R1").token == 2


def test_fencing_token_increments(store: Store) -> None:
    """Every acquisition gets the previous token plus one; runs have separate tokens."""
    tokens = []
    for _ in range(4):
        fence = acquire_lease(store, "R1")
        tokens.append(fence.token)
        release_lease(store, fence)
    assert tokens == [1, 2, 3, 4]
    assert acquire_lease(store, "R2").token == 1


def test_renew_extends_expiry(store: Store) -> None:
    """renew_lease moves expires_at forward for the holder."""
    fence = acquire_lease(store, "R1", ttl_s=5)
    before = lease_row(store, "R1").expires_at
    renew_lease(store, fence, ttl_s=100)
    assert lease_row(store, "R1").expires_at > before + 90


def test_events_are_appended_in_order(store: Store) -> None:
    """The journal returns events in insertion order with growing ids; reads page by id."""
    for i in range(30):
        with store.write() as tx:
            tx.event("R1", f"k{i}", "ws", None, i=i)
            tx.event("R2", "other")
    rows = store.events("R1")
    assert [r.kind for r in rows] == [f"k{i}" for i in range(30)]
    ids = [r.id for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 30
    assert [r.ts for r in rows] == sorted(r.ts for r in rows)
    assert rows[3].data == '{"i": 3}' and rows[3].ws_id == "ws"
    assert [r.kind for r in store.events("R1", after_id=ids[9], limit=3)] == ["k10", "k11", "k12"]
    assert store.event_count("R1") == 30


def test_events_are_never_rewritten(store: Store) -> None:
    """Later writes (leases, other events) leave earlier journal rows untouched."""
    with store.write() as tx:
        tx.event("R1", "first", x=1)
    before = [tuple(r) for r in store.events("R1")]
    fence = acquire_lease(store, "R1")
    renew_lease(store, fence)
    release_lease(store, fence)
    after = [tuple(r) for r in store.events("R1")]
    assert after[: len(before)] == before
    with store.engine.connect() as conn:
        assert conn.execute(select(events.c.kind).where(events.c.run_id == "R1")
                            .order_by(events.c.id)).scalars().all()[0] == "first"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_threads_write_concurrently_on_sqlite(db_url: str) -> None:
    """Two threads doing 200 fenced read-then-write transactions each never hit 'locked'."""
    setup = Store(db_url)
    fence = acquire_lease(setup, "R1")
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        store = Store(db_url)
        try:
            barrier.wait()
            for i in range(200):
                with store.write(fence) as tx:
                    count = tx.conn.execute(select(events.c.id).where(
                        events.c.run_id == "R1")).all()
                    tx.event("R1", "tick", name, None, i=i, seen=len(count))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ticks = [e for e in setup.events("R1") if e.kind == "tick"]
    assert len(ticks) == 400
    setup.close()


def test_reader_does_not_block_on_a_writer(store: Store) -> None:
    """Reads go through while a write transaction is open."""
    with store.write() as tx:
        tx.event("R1", "pending")
        assert store.events("R2") == []
    assert len(store.events("R1")) == 1


def test_sqlite_schema_is_rendered_from_tables() -> None:
    """The pre-rendered SQLite DDL is what SQLAlchemy renders from aidp.state.tables
    (regenerate with `python -m aidp.state.sqlite_schema`)."""
    from aidp.state import sqlite_schema

    assert sqlite_schema.render() == (sqlite_schema.DDL, sqlite_schema.BOOLEAN_COLUMNS)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_store_creates_a_sqlite_database_equal_to_the_migrations(db_url: str) -> None:
    """A new SQLite database made by the store (pre-rendered DDL, no SQLAlchemy) is stamped
    at HEAD_REVISION and has no autogenerate diff against the tables."""
    store = Store(db_url)
    try:
        assert db.current_revision(store.engine) == db.HEAD_REVISION
        with store.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        store.close()


def test_rows_have_names_and_booleans(store: Store) -> None:
    """Rows read back carry column names as attributes and booleans as bool on every backend;
    tx.execute runs SQL text with :name parameters inside the transaction."""
    fence = acquire_lease(store, "R1")
    release_lease(store, fence)
    row = lease_row(store, "R1")
    assert row.released is True and row.token == fence.token
    with store.write() as tx:
        rows = tx.execute("SELECT run_id, released FROM leases WHERE run_id = :r", {"r": "R1"})
        assert [(r.run_id, r.released) for r in rows] == [("R1", True)]
        assert tx.conn.execute(select(leases.c.released)).scalar() in (True, 1)


def test_deferred_change_joins_the_next_write_with_the_same_fence(store: Store) -> None:
    """Store.defer runs a change at the start of this thread's next write with the same fence,
    in that transaction; a write with another (or no) fence leaves it pending."""
    fence = acquire_lease(store, "R1")
    store.defer(fence, lambda tx: tx.event("R1", "deferred"))
    with store.write() as tx:  # unfenced: not this one
        tx.event("R1", "unfenced")
    assert [e.kind for e in store.events("R1")][-1] == "unfenced"
    with store.write(fence) as tx:
        tx.event("R1", "mine")
    assert [e.kind for e in store.events("R1")][-3:] == ["unfenced", "deferred", "mine"]
    with store.write(fence) as tx:
        tx.event("R1", "next")
    assert [e.kind for e in store.events("R1")][-2:] == ["mine", "next"]
