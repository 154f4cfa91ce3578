"""Reads of the event journal across runs (the live stream and the webhooks follow it by id).

Ids only grow, but on PostgreSQL they come from a sequence: a transaction that took id 10 may
commit after one that took id 11. :func:`event_ids` lets a reader see such a gap (see
:func:`aidp.app.events.events_after`, which waits for it to fill before reading past it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aidp.state.store import Store

__all__ = ["event_ids", "events_after", "latest_event_id"]


def events_after(store: Store, after_id: int, run_id: str | None = None,
                 limit: int | None = None) -> list[Any]:
    """Journal rows with an id above ``after_id`` (of run ``run_id`` only, if given), by id."""
    sql = "SELECT * FROM events WHERE id > :after_id"
    params: dict[str, Any] = {"after_id": after_id}
    if run_id is not None:
        sql += " AND run_id = :run_id"
        params["run_id"] = run_id
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return store.read(sql, params)


def event_ids(store: Store, after_id: int, upto_id: int) -> list[Any]:
    """``(id, ts)`` of every committed event with ``after_id < id <= upto_id``, by id."""
    return store.read("SELECT id, ts FROM events WHERE id > :after_id AND id <= :upto_id "
                      "ORDER BY id", {"after_id": after_id, "upto_id": upto_id})


def latest_event_id(store: Store) -> int:
    """The highest committed event id, 0 for an empty journal."""
    rows = store.read("SELECT max(id) AS id FROM events")
    return int(rows[0].id or 0)
