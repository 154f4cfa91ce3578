"""The profiles' rate limits as token buckets in the database, so that every process on one
store (several ``aidp`` runs, the workers of ``aidp serve``, with PostgreSQL several machines)
shares one bucket per profile; and the providers' ``Retry-After`` holds (:class:`StoreHolds`),
shared the same way.

A bucket is full at first (one minute's allowance) and refills continuously. Each operation is
one atomic read-modify-write of the profile's rows, as the breakers do it (see
:mod:`aidp.state.breakers`): ``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on
PostgreSQL after an ``INSERT ... ON CONFLICT DO NOTHING`` of a missing row. Keys hold no
credentials: ``profile:<name>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aidp.state.store import Store
from aidp.state.tx import Tx

__all__ = ["RateBook", "StoreHolds", "StoreLimiter"]

_CREATE = ('INSERT INTO rate_buckets ("key", kind, level, updated_at) '
           'VALUES (:key, :kind, :level, :now) ON CONFLICT ("key", kind) DO NOTHING')


class RateBook:
    """Rate-limit buckets in ``store``; thread- and process-safe."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def take(self, key: str, per_minute: Mapping[str, int | None],
             amounts: Mapping[str, int]) -> float:
        """Take ``amounts`` (``{"requests": 1, "tokens": N}``) from the buckets of ``key``
        whose ``per_minute`` limit is set, if all are available now, and return 0.0; else
        take nothing and return the seconds to wait before asking again."""
        limits = {kind: limit for kind, limit in per_minute.items() if limit}
        if not limits:
            return 0.0
        now = self.clock()
        with self.store.write() as tx:
            levels = {kind: _refilled(tx, key, kind, limit, now)
                      for kind, limit in sorted(limits.items())}
            waits = [(amounts.get(kind, 0) - levels[kind]) * 60.0 / limit
                     for kind, limit in limits.items()]
            wait = max(0.0, *waits)
            if wait > 0:
                return wait
            for kind in limits:
                _store(tx, key, kind, levels[kind] - amounts.get(kind, 0), now)
        return 0.0

    def settle(self, key: str, per_minute: Mapping[str, int | None], kind: str,
               extra: int) -> None:
        """Correct bucket ``kind`` once the real amount is known (``extra`` may be negative:
        given back, up to the bucket's capacity)."""
        limit = per_minute.get(kind)
        if not limit or not extra:
            return
        now = self.clock()
        with self.store.write() as tx:
            level = _refilled(tx, key, kind, limit, now)
            _store(tx, key, kind, min(float(limit), level - extra), now)


def _refilled(tx: Tx, key: str, kind: str, limit: int, now: float) -> float:
    """The bucket's level now (its row locked until the transaction ends; created full)."""
    sql = 'SELECT level, updated_at FROM rate_buckets WHERE "key" = :key AND kind = :kind'
    if tx.dialect != "sqlite":
        sql += " FOR UPDATE"
    rows = tx.execute(sql, {"key": key, "kind": kind})
    if not rows:
        tx.execute(_CREATE, {"key": key, "kind": kind, "level": float(limit), "now": now})
        rows = tx.execute(sql, {"key": key, "kind": kind})
    level, updated = float(rows[0].level), float(rows[0].updated_at)
    return min(float(limit), level + max(0.0, now - updated) * limit / 60.0)


def _store(tx: Tx, key: str, kind: str, level: float, now: float) -> None:
    tx.execute('UPDATE rate_buckets SET level = :level, updated_at = :now '
               'WHERE "key" = :key AND kind = :kind',
               {"level": level, "now": now, "key": key, "kind": kind})


class StoreLimiter:
    """One profile's limits on a :class:`RateBook`, with the interface of
    :class:`aidp.tools.ratelimit.RateLimiter` (``try_acquire``, ``settle``): what the model
    gateway asks before each request."""

    def __init__(self, book: RateBook, profile: str, requests_per_minute: int | None,
                 tokens_per_minute: int | None) -> None:
        self.book = book
        self.key = f"profile:{profile}"
        self.limits = {"requests": requests_per_minute, "tokens": tokens_per_minute}

    def try_acquire(self, tokens: int = 0) -> float:
        return self.book.take(self.key, self.limits, {"requests": 1, "tokens": tokens})

    def settle(self, extra_tokens: int) -> None:
        self.book.settle(self.key, self.limits, "tokens", extra_tokens)


class StoreHolds:
    """A provider's ``Retry-After`` kept in the store, so that every process on it waits: the
    model gateway writes one after a 429 and reads it before each request. Keyed by the
    endpoint's breaker key (no credentials); the time is the wall clock's."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    @staticmethod
    def _key(upstream: str) -> str:
        from aidp.state.breakers import endpoint_key

        return endpoint_key(upstream)

    def hold(self, upstream: str, seconds: float) -> None:
        """No request to ``upstream`` before ``seconds`` from now (a later hold wins)."""
        key, now = self._key(upstream), self.clock()
        with self.store.write() as tx:
            level = _level(tx, key, "hold", now)
            _store(tx, key, "hold", max(level, now + seconds), now)

    def wait_s(self, upstream: str) -> float:
        """Seconds until ``upstream`` may be asked again (0.0: now)."""
        rows = self.store.read('SELECT level FROM rate_buckets WHERE "key" = :key AND '
                               "kind = 'hold'", {"key": self._key(upstream)})
        return max(0.0, float(rows[0].level) - self.clock()) if rows else 0.0


def _level(tx: Tx, key: str, kind: str, now: float) -> float:
    """The stored level of ``key``/``kind``, its row locked (created at 0 when missing)."""
    sql = 'SELECT level FROM rate_buckets WHERE "key" = :key AND kind = :kind'
    if tx.dialect != "sqlite":
        sql += " FOR UPDATE"
    rows = tx.execute(sql, {"key": key, "kind": kind})
    if not rows:
        tx.execute(_CREATE, {"key": key, "kind": kind, "level": 0.0, "now": now})
        rows = tx.execute(sql, {"key": key, "kind": kind})
    return float(rows[0].level)
