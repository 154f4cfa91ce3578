"""What ``aidp serve`` keeps besides runs: health, and the answers of idempotent requests.

The API calls these (never the store): :func:`check_database` for readiness,
:func:`claim_idempotency_key` / :func:`finish_idempotency_key` for ``Idempotency-Key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aidp.app.context import AppContext

__all__ = [
    "StoredAnswer", "check_database", "claim_idempotency_key", "finish_idempotency_key",
    "schema_revision",
]


def schema_revision() -> str:
    """The database schema revision this aidp writes."""
    from aidp.state.db import HEAD_REVISION

    return HEAD_REVISION


def check_database(app: AppContext) -> str:
    """``ok``, or what failed (the exception's type: no message, it may carry a URL)."""
    try:
        app.store(create=True).read("SELECT 1 AS one")
    except Exception as exc:  # noqa: BLE001 -- reported, not raised: that is the point
        return f"failed: {type(exc).__name__}"
    return "ok"


@dataclass(frozen=True)
class StoredAnswer:
    """A key already used: the fingerprint of its request, and its answer (status None: the
    first request is still being answered)."""

    fingerprint: str
    status: int | None
    body: str | None


def claim_idempotency_key(app: AppContext, token_id: str, key: str,
                          fingerprint: str) -> StoredAnswer | None:
    """The stored answer for (token, key), or None: the key is now ours to answer."""
    from aidp.state import service

    with app.store(create=True).write() as tx:
        row = service.claim_idempotency_key(tx, token_id, key, fingerprint)
    if row is None:
        return None
    return StoredAnswer(str(row.request_sha256), row.status_code, row.response)


def finish_idempotency_key(app: AppContext, token_id: str, key: str, status: int | None,
                           body: str | None) -> None:
    """Store the answer to (token, key); ``status`` None forgets the key (a retry runs)."""
    from aidp.state import service

    with app.store().write() as tx:
        service.finish_idempotency_key(tx, token_id, key, status, body)
