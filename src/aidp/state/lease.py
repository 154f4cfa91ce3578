"""Run leases: only one orchestrator drives a run at a time.

A lease names its holder (host, pid and the pid's start time) and carries a fencing token that
grows by one at every acquisition. The holder renews it well before ``expires_at``. Another
orchestrator may take the lease over when it expired, was released, or -- on the same host --
when the holder process is gone (``kill -9`` leaves a valid-looking lease; waiting for it to
expire would be pointless). Every write of the holder checks its token (see
:meth:`aidp.state.store.Store.write`), so a deposed holder cannot corrupt the run.
:func:`keep_lease` is the holder's heartbeat (run on its own thread).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from aidp.exceptions import LeaseHeldError, LeaseLostError
from aidp.process.procfs import is_alive, self_identity
from aidp.state.store import Store
from aidp.state.tx import Fence

__all__ = [
    "LEASE_TTL_S", "acquire_lease", "keep_lease", "lease_is_live", "release_lease", "renew_lease",
]

LEASE_TTL_S = 30.0


def lease_is_live(row: Any | None, now: float | None = None) -> bool:
    """True while the lease in ``row`` protects its holder."""
    if row is None or row.released:
        return False
    if (now if now is not None else time.time()) >= row.expires_at:
        return False
    if row.host == socket.gethostname():
        return is_alive(row.pid, row.pid_start)
    return True


def acquire_lease(store: Store, run_id: str, *, ttl_s: float = LEASE_TTL_S) -> Fence:
    """Take the lease on ``run_id``; raises LeaseHeldError naming a live holder."""
    pid, pid_start = self_identity()
    host = socket.gethostname()
    holder = f"pid {pid} on {host}"
    with store.write() as tx:
        row = tx.lease_row(run_id)
        if row is not None and lease_is_live(row, tx.now):
            raise LeaseHeldError(run_id, row.holder, row.expires_at - tx.now)
        token = 1 if row is None else int(row.token) + 1
        values: dict[str, Any] = dict(
            holder=holder,
            host=host,
            pid=pid,
            pid_start=pid_start,
            token=token,
            acquired_at=tx.now,
            renewed_at=tx.now,
            expires_at=tx.now + ttl_s,
            released=False,
        )
        if row is None:
            tx.insert_lease(run_id=run_id, **values)
        else:
            tx.update_lease(run_id, **values)
        tx.event(run_id, "lease.acquired", holder=holder, token=token,
                 previous=None if row is None else row.holder)
    return Fence(run_id, token)


def renew_lease(store: Store, fence: Fence, *, ttl_s: float = LEASE_TTL_S) -> None:
    """Extend our lease; raises LeaseLostError if it was taken over."""
    with store.write(fence) as tx:
        tx.update_lease(fence.run_id, renewed_at=tx.now, expires_at=tx.now + ttl_s)


def release_lease(store: Store, fence: Fence) -> None:
    """Give the lease up (a no-op if it was already taken over)."""
    with store.write() as tx:
        tx.update_lease(fence.run_id, only_token=fence.token, released=True, expires_at=tx.now)


def keep_lease(store: Store, fence: Fence, stop: threading.Event,
               on_lost: Callable[[LeaseLostError], None], *,
               ttl_s: float = LEASE_TTL_S) -> None:
    """Renew the lease every third of its lifetime until ``stop`` is set (a thread's target).

    When the lease was taken over, calls ``on_lost`` with the error and returns; any other
    failure (a database hiccup) is tried again at the next beat, before the lease expires."""
    while not stop.wait(ttl_s / 3):
        try:
            renew_lease(store, fence, ttl_s=ttl_s)
        except LeaseLostError as exc:
            on_lost(exc)
            return
        except Exception:  # noqa: BLE001 -- a database hiccup: try again at the next beat, before expiry
            continue
