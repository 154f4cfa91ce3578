"""Run state: SQLAlchemy Core tables, Alembic migrations, the store and run leases."""

from __future__ import annotations

from aidp.state.lease import LEASE_TTL_S, acquire_lease, lease_is_live, release_lease, renew_lease
from aidp.state.store import Fence, Store, Tx

__all__ = [
    "LEASE_TTL_S",
    "Fence",
    "Store",
    "Tx",
    "acquire_lease",
    "lease_is_live",
    "release_lease",
    "renew_lease",
]
