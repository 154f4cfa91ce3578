"""Store operations of webhooks: subscriptions (``webhooks``) and deliveries
(``webhook_deliveries``).

The journal is the outbox: every event is written in the transaction of the change it reports,
so a subscription's ``cursor`` (the last journal id turned into deliveries) and its delivery
rows are all the sender needs to lose nothing. Rows are named tuples with the tables' columns;
a delivery row read through :func:`due` or :func:`deliveries` also carries the journal event
(``kind``, ``run_id``, ``ts``, ``ws_id``, ``step_id``, ``data``) and the subscription's ``url``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aidp.state.store import Store
    from aidp.state.tx import Tx

__all__ = [
    "claim",
    "delete_webhook",
    "deliveries",
    "delivery_by_id",
    "due",
    "events_after",
    "insert_deliveries",
    "insert_webhook",
    "journal_head",
    "lock_webhook",
    "mark_dead",
    "mark_delivered",
    "mark_retry",
    "move_cursor",
    "redeliver",
    "update_secret",
    "webhook_by_id",
    "webhooks",
]

_DELIVERY = ("SELECT d.*, w.url, e.kind, e.run_id, e.ts, e.ws_id, e.step_id, e.data "
             "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
             "JOIN events e ON e.id = d.event_id")


# -- subscriptions -----------------------------------------------------------------------------

def webhooks(store: Store) -> list[Any]:
    return store.read("SELECT * FROM webhooks ORDER BY created_at, id")


def webhook_by_id(store: Store, webhook_id: str) -> Any | None:
    rows = store.read("SELECT * FROM webhooks WHERE id = :id", {"id": webhook_id})
    return rows[0] if rows else None


def journal_head(tx: Tx) -> int:
    """The highest journal id now (a new subscription starts after it: no history replayed)."""
    rows = tx.execute("SELECT MAX(id) AS head FROM events", {})
    return int(rows[0].head or 0)


def insert_webhook(tx: Tx, **values: Any) -> None:
    values = {"created_at": tx.now, "cursor": journal_head(tx), **values}
    tx.execute(f"INSERT INTO webhooks ({', '.join(values)}) "
               f"VALUES ({', '.join(':' + k for k in values)})", values)


def delete_webhook(tx: Tx, webhook_id: str) -> None:
    tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = :id", {"id": webhook_id})
    tx.execute("DELETE FROM webhooks WHERE id = :id", {"id": webhook_id})


def update_secret(tx: Tx, webhook_id: str, secret_env: str, previous_env: str | None,
                  previous_until: float | None) -> None:
    tx.execute("UPDATE webhooks SET secret_env = :secret_env, previous_secret_env = :prev, "
               "previous_until = :until WHERE id = :id",
               {"id": webhook_id, "secret_env": secret_env, "prev": previous_env,
                "until": previous_until})


# -- the outbox --------------------------------------------------------------------------------

def events_after(tx: Tx, cursor: int, limit: int) -> list[Any]:
    """Journal rows after ``cursor``, oldest first (inside the transaction that moves it)."""
    return tx.execute("SELECT id, run_id, ts, kind, ws_id, step_id, data FROM events "
                      "WHERE id > :cursor ORDER BY id LIMIT :limit",
                      {"cursor": cursor, "limit": limit})


def insert_deliveries(tx: Tx, webhook_id: str, event_ids: Sequence[int]) -> None:
    """One pending delivery per event (an event already queued is left as it is)."""
    tx.execute("INSERT INTO webhook_deliveries (webhook_id, event_id, status, attempts, "
               "next_attempt_at, created_at) VALUES (:webhook_id, :event_id, 'pending', 0, "
               ":now, :now) ON CONFLICT (webhook_id, event_id) DO NOTHING",
               [{"webhook_id": webhook_id, "event_id": e, "now": tx.now} for e in event_ids])


def lock_webhook(tx: Tx, webhook_id: str) -> Any | None:
    """The subscription's row, locked until the commit (PostgreSQL; SQLite's write transaction
    is exclusive already): two senders never turn the same events into deliveries twice."""
    sql = "SELECT * FROM webhooks WHERE id = :id"
    if tx.dialect != "sqlite":
        sql += " FOR UPDATE"
    rows = tx.execute(sql, {"id": webhook_id})
    return rows[0] if rows else None


def move_cursor(tx: Tx, webhook_id: str, new: int) -> None:
    tx.execute("UPDATE webhooks SET cursor = :new WHERE id = :id AND cursor < :new",
               {"id": webhook_id, "new": new})


# -- deliveries --------------------------------------------------------------------------------

def due(store: Store, now: float, limit: int) -> list[Any]:
    """Pending deliveries whose time has come, oldest event first."""
    return store.read(_DELIVERY + " WHERE d.status = 'pending' AND d.next_attempt_at <= :now "
                      "AND w.enabled ORDER BY d.next_attempt_at, d.event_id LIMIT :limit",
                      {"now": now, "limit": limit})


def claim(tx: Tx, delivery_id: int, seen_next: float, until: float) -> bool:
    """Take a due delivery for one attempt: push its time to ``until`` unless another sender
    did first (a sender that dies mid-attempt leaves it to be retried then)."""
    tx.execute("UPDATE webhook_deliveries SET next_attempt_at = :until WHERE id = :id "
               "AND status = 'pending' AND next_attempt_at = :seen",
               {"id": delivery_id, "until": until, "seen": seen_next})
    rows = tx.execute("SELECT next_attempt_at FROM webhook_deliveries WHERE id = :id",
                      {"id": delivery_id})
    return bool(rows) and float(rows[0].next_attempt_at) == until


def mark_delivered(tx: Tx, delivery_id: int, status: int) -> None:
    tx.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, "
               "last_status = :status, last_error = NULL, delivered_at = :now WHERE id = :id",
               {"id": delivery_id, "status": status, "now": tx.now})


def mark_retry(tx: Tx, delivery_id: int, status: int | None, error: str | None,
               next_attempt_at: float) -> None:
    tx.execute("UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = :status, "
               "last_error = :error, next_attempt_at = :next WHERE id = :id",
               {"id": delivery_id, "status": status, "error": error, "next": next_attempt_at})


def mark_dead(tx: Tx, delivery_id: int, status: int | None, error: str | None) -> None:
    tx.execute("UPDATE webhook_deliveries SET status = 'dead', attempts = attempts + 1, "
               "last_status = :status, last_error = :error WHERE id = :id",
               {"id": delivery_id, "status": status, "error": error})


def redeliver(tx: Tx, delivery_id: int) -> None:
    """Back to pending, due now, with a fresh count of attempts."""
    tx.execute("UPDATE webhook_deliveries SET status = 'pending', attempts = 0, "
               "next_attempt_at = :now, delivered_at = NULL WHERE id = :id",
               {"id": delivery_id, "now": tx.now})


def delivery_by_id(store: Store, delivery_id: int) -> Any | None:
    rows = store.read(_DELIVERY + " WHERE d.id = :id", {"id": delivery_id})
    return rows[0] if rows else None


def deliveries(store: Store, webhook_id: str | None, status: str | None,
               limit: int) -> list[Any]:
    """Deliveries, newest first, of one subscription and/or one status."""
    sql, params = _DELIVERY + " WHERE 1 = 1", dict[str, Any](limit=limit)
    if webhook_id is not None:
        sql += " AND d.webhook_id = :webhook_id"
        params["webhook_id"] = webhook_id
    if status is not None:
        sql += " AND d.status = :status"
        params["status"] = status
    return store.read(sql + " ORDER BY d.id DESC LIMIT :limit", params)
