"""Store operations of the service (``aidp serve``): API tokens, idempotency keys and the runs
the service drives (tables ``api_tokens``, ``idempotency_keys``, ``service_runs``).

Rows are named tuples with the columns of those tables. Webhook rows live in
:mod:`aidp.state.webhooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aidp.state.store import Store
    from aidp.state.tx import Tx

__all__ = [
    "activate_service_run",
    "claim_idempotency_key",
    "claim_service_run",
    "finish_idempotency_key",
    "idempotency_key",
    "insert_service_run",
    "insert_token",
    "revoke_token",
    "service_runs",
    "token_by_id",
    "tokens",
    "touch_token",
    "update_service_run",
]


# -- tokens ------------------------------------------------------------------------------------

def tokens(store: Store) -> list[Any]:
    """Every token row (revoked ones included), oldest first."""
    return store.read("SELECT * FROM api_tokens ORDER BY created_at, id")


def token_by_id(store: Store, token_id: str) -> Any | None:
    rows = store.read("SELECT * FROM api_tokens WHERE id = :id", {"id": token_id})
    return rows[0] if rows else None


def insert_token(tx: Tx, token_id: str, name: str, scope: str, secret_sha256: str) -> None:
    tx.execute("INSERT INTO api_tokens (id, name, scope, secret_sha256, created_at) "
               "VALUES (:id, :name, :scope, :secret_sha256, :now)",
               {"id": token_id, "name": name, "scope": scope, "secret_sha256": secret_sha256,
                "now": tx.now})


def revoke_token(tx: Tx, token_id: str) -> None:
    tx.execute("UPDATE api_tokens SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL",
               {"id": token_id, "now": tx.now})


def touch_token(tx: Tx, token_id: str) -> None:
    tx.execute("UPDATE api_tokens SET last_used_at = :now WHERE id = :id",
               {"id": token_id, "now": tx.now})


# -- idempotency keys --------------------------------------------------------------------------

def idempotency_key(store: Store, token_id: str, key: str) -> Any | None:
    rows = store.read("SELECT * FROM idempotency_keys WHERE token_id = :token_id AND key = :key",
                      {"token_id": token_id, "key": key})
    return rows[0] if rows else None


def claim_idempotency_key(tx: Tx, token_id: str, key: str, request_sha256: str) -> Any | None:
    """Inside a write transaction: the existing row of (token, key), or None after inserting a
    new one (status still unknown: the request is being answered)."""
    sql = "SELECT * FROM idempotency_keys WHERE token_id = :token_id AND key = :key"
    if tx.dialect != "sqlite":
        sql += " FOR UPDATE"
    rows = tx.execute(sql, {"token_id": token_id, "key": key})
    if rows:
        return rows[0]
    tx.execute("INSERT INTO idempotency_keys (token_id, key, request_sha256, created_at) "
               "VALUES (:token_id, :key, :request_sha256, :now)",
               {"token_id": token_id, "key": key, "request_sha256": request_sha256,
                "now": tx.now})
    return None


def finish_idempotency_key(tx: Tx, token_id: str, key: str, status_code: int | None,
                           response: str | None) -> None:
    """Store the answer (``status_code`` None: forget the key -- the request failed before it
    changed anything, so a retry may run it)."""
    params = {"token_id": token_id, "key": key, "status_code": status_code,
              "response": response}
    if status_code is None:
        tx.execute("DELETE FROM idempotency_keys WHERE token_id = :token_id AND key = :key",
                   params)
    else:
        tx.execute("UPDATE idempotency_keys SET status_code = :status_code, "
                   "response = :response WHERE token_id = :token_id AND key = :key", params)


# -- runs the service drives -------------------------------------------------------------------

def service_runs(store: Store, state: str | None = "active") -> list[Any]:
    sql = "SELECT * FROM service_runs"
    if state is not None:
        sql += " WHERE state = :state"
    return store.read(sql + " ORDER BY created_at", {"state": state})


def insert_service_run(tx: Tx, run_id: str, started_by: str | None) -> None:
    tx.execute("INSERT INTO service_runs (run_id, state, started_by, restarts, created_at, "
               "updated_at) VALUES (:run_id, 'active', :started_by, 0, :now, :now)",
               {"run_id": run_id, "started_by": started_by, "now": tx.now})


def update_service_run(tx: Tx, run_id: str, *, state: str | None = None,
                       restarted: bool = False, unchanged_since: float | None = None) -> None:
    """Change the row (``unchanged_since``: only if nobody updated it after that time -- a
    run asked for again meanwhile stays active)."""
    sql = ("UPDATE service_runs SET state = COALESCE(:state, state), "
           "restarts = restarts + :inc, updated_at = :now WHERE run_id = :run_id")
    if unchanged_since is not None:
        sql += " AND updated_at <= :since"
    tx.execute(sql, {"run_id": run_id, "state": state, "inc": 1 if restarted else 0,
                     "now": tx.now, "since": unchanged_since})


def activate_service_run(tx: Tx, run_id: str, started_by: str | None) -> None:
    """The service drives ``run_id`` (again): a new row, or an ended one made active."""
    rows = tx.execute("SELECT run_id FROM service_runs WHERE run_id = :run_id",
                      {"run_id": run_id})
    if not rows:
        insert_service_run(tx, run_id, started_by)
        return
    tx.execute("UPDATE service_runs SET state = 'active', started_by = :started_by, "
               "updated_at = :now, owner = NULL, owner_until = NULL WHERE run_id = :run_id",
               {"run_id": run_id, "started_by": started_by, "now": tx.now})


def claim_service_run(tx: Tx, run_id: str, owner: str, ttl_s: float) -> bool:
    """Inside a write transaction: reserve the active run ``run_id`` for the service ``owner``
    for ``ttl_s`` seconds -- the time its worker has to take the run's lease -- unless another
    service holds an unexpired claim. True when the claim is ours.

    On PostgreSQL the row is locked with ``FOR UPDATE SKIP LOCKED``: a service that finds it
    locked by another's claim moves on at once instead of waiting for it (SQLite's
    ``BEGIN IMMEDIATE`` lets one writer in at a time anyway)."""
    sql = ("SELECT owner, owner_until FROM service_runs WHERE run_id = :run_id "
           "AND state = 'active'")
    if tx.dialect != "sqlite":
        sql += " FOR UPDATE SKIP LOCKED"
    rows = tx.execute(sql, {"run_id": run_id})
    if not rows:
        return False
    row = rows[0]
    if row.owner not in (None, owner) and (row.owner_until or 0.0) > tx.now:
        return False
    tx.execute("UPDATE service_runs SET owner = :owner, owner_until = :until "
               "WHERE run_id = :run_id", {"run_id": run_id, "owner": owner,
                                           "until": tx.now + ttl_s})
    return True
