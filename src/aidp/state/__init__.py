"""Run state: SQLAlchemy Core tables, Alembic migrations, the store, run leases and the shared
circuit breakers."""

from __future__ import annotations

from aidp.state.breakers import (
    BreakerBook,
    BreakerRow,
    Permit,
    breaker_keys,
    endpoint_key,
    profile_key,
)
from aidp.state.lease import LEASE_TTL_S, acquire_lease, lease_is_live, release_lease, renew_lease
from aidp.state.store import Store
from aidp.state.tx import Fence, Tx

__all__ = [
    "LEASE_TTL_S",
    "BreakerBook",
    "BreakerRow",
    "Fence",
    "Permit",
    "Store",
    "Tx",
    "acquire_lease",
    "breaker_keys",
    "endpoint_key",
    "lease_is_live",
    "profile_key",
    "release_lease",
    "renew_lease",
]
