"""Circuit breakers kept in the database, so that every run and process shares them and they
survive restarts.

Each operation is one atomic read-modify-write of the breaker rows it touches: a ``BEGIN
IMMEDIATE`` transaction on SQLite (see :meth:`aidp.state.store.Store.write`), ``SELECT ... FOR
UPDATE`` on PostgreSQL, where a missing row is first inserted with ``ON CONFLICT DO NOTHING`` so
that two processes racing to create it both end up locking the same row. The transitions
themselves are the pure functions of :mod:`aidp.resilience.breaker`.

A step is guarded by several keys (its profile's, and its provider endpoint's):
:meth:`BreakerBook.admit_all` admits on all of them or on none, in one transaction, locking rows
in key order so that concurrent callers cannot deadlock.

Keys never hold credentials: :func:`endpoint_key` drops user info, query and fragment.

Every change of a breaker's state is journaled (``breaker.opened``, ``breaker.half_open``,
``breaker.closed``; ``breaker.reset`` by hand) in the transaction that writes it: under the run
whose attempt caused it (the book's ``run_id``), else under no run (``""``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aidp.exceptions import InputError, NotFoundError
from aidp.resilience.breaker import (
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    admit,
    advance,
    record,
    release,
    reset,
)
from aidp.state.store import Store
from aidp.state.tx import NO_RUN, Tx

__all__ = ["BreakerBook", "BreakerRow", "Permit", "breaker_keys", "endpoint_key", "profile_key"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def profile_key(name: str) -> str:
    """The breaker key of tool profile ``name``: ``profile:<name>``."""
    return f"profile:{name}"


def endpoint_key(base_url: str) -> str:
    """The breaker key of a provider endpoint: ``endpoint:<scheme>://<host>[:port]<path>``.

    Scheme and host are lower-cased, a default port and trailing slashes dropped; user info,
    query and fragment (where credentials hide) never reach the key. Raises InputError for a
    URL without scheme or host.
    """
    try:
        parts = urlsplit(base_url.strip())
        port = parts.port
    except ValueError as exc:
        raise InputError(f"not a usable endpoint URL: {exc}") from exc
    host = parts.hostname
    scheme = parts.scheme.lower()
    if not scheme or not host:
        raise InputError("an endpoint URL needs a scheme and a host (https://host/v1)")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return f"endpoint:{scheme}://{netloc}{parts.path.rstrip('/')}"


def breaker_keys(profile: str, base_url: str | None = None) -> list[str]:
    """The keys guarding a call of tool profile ``profile``: its own, plus its provider
    endpoint's when it has a ``base_url`` (pass them to :meth:`BreakerBook.admit_all`)."""
    keys = [profile_key(profile)]
    if base_url:
        keys.append(endpoint_key(base_url))
    return keys


@dataclass(frozen=True)
class BreakerRow:
    """One stored breaker: its key, snapshot, the policy it was last used with, and when it was
    last written."""

    key: str
    snapshot: BreakerSnapshot
    policy: BreakerPolicy | None
    updated_at: float

    def view(self, now: float | None = None) -> BreakerSnapshot:
        """The snapshot as of ``now``: with the passing of time applied (OPEN due to probe is
        HALF_OPEN, old failures left the window)."""
        if self.policy is None:
            return self.snapshot
        return advance(self.snapshot, self.policy, time.time() if now is None else now)


@dataclass(frozen=True)
class Permit:
    """The answer of :meth:`BreakerBook.admit_all`: one admission per key, all allowed or none
    held. ``retry_at`` (when refused) is the latest of the refusing keys' ``retry_at``."""

    admissions: Mapping[str, Admission]

    @property
    def allowed(self) -> bool:
        return all(a.allowed for a in self.admissions.values())

    @property
    def probe(self) -> bool:
        """True if any key admitted this call as one of its HALF_OPEN probes."""
        return any(a.probe for a in self.admissions.values())

    @property
    def refused_by(self) -> list[str]:
        """The keys that refused, in key order."""
        return sorted(k for k, a in self.admissions.items() if not a.allowed)

    @property
    def retry_at(self) -> float | None:
        times = [a.retry_at for a in self.admissions.values()
                 if not a.allowed and a.retry_at is not None]
        return max(times) if times else None


class BreakerBook:
    """The circuit breakers of one aidp database. Thread- and process-safe; every method is
    one transaction.

    ``clock`` (UNIX seconds; injected by tests) is read *after* the rows are locked, so that the
    times one breaker sees are ordered like its transactions even across processes. A method's
    ``now`` argument overrides it. ``run_id``: the run whose attempts this book admits, under
    which the breakers' transitions are journaled (none: ``""``).
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, *,
                 run_id: str = NO_RUN) -> None:
        self.store = store
        self.clock = clock
        self.run_id = run_id

    # -- writes ------------------------------------------------------------------------------

    def admit(self, key: str, policy: BreakerPolicy, now: float | None = None) -> Admission:
        """May a call guarded by ``key`` run now? An allowed admission holds a slot until
        :meth:`record` or :meth:`release` (or ``policy.probe_timeout_s``)."""
        return self.admit_all([key], policy, now).admissions[key]

    def admit_all(
        self, keys: Iterable[str], policy: BreakerPolicy, now: float | None = None
    ) -> Permit:
        """Admit one call on every key, or on none: when any key refuses, the others keep no
        slot (only the refusals are written)."""
        ordered = sorted(set(keys))
        if not ordered:
            raise ValueError("admit_all needs at least one key")
        with self.store.write() as tx:
            rows = {key: _lock(tx, key, tx.now) for key in ordered}
            at = self.clock() if now is None else now
            results = {key: admit(rows[key], policy, at) for key in ordered}
            allowed = all(a.allowed for a, _ in results.values())
            for key, (answer, snapshot) in results.items():
                if allowed or not answer.allowed:
                    _save(tx, key, snapshot, policy, at)
                    _journal(tx, self.run_id, key, rows[key].state, snapshot.state)
        return Permit({key: answer for key, (answer, _) in results.items()})

    def record(
        self,
        key: str,
        policy: BreakerPolicy,
        admission: Admission,
        *,
        success: bool,
        transient: bool,
        retry_after: float | None = None,
        now: float | None = None,
    ) -> BreakerSnapshot:
        """The result of a call admitted on ``key``; returns the breaker afterwards (compare its
        state with ``admission.state`` to see a transition). ``transient`` is the failure's
        class; ``retry_after`` (seconds) the provider's own wait, if it named one."""
        permit = Permit({key: admission})
        return self.record_all(permit, policy, success=success, transient=transient,
                               retry_after=retry_after, now=now)[key]

    def record_all(
        self,
        permit: Permit,
        policy: BreakerPolicy,
        *,
        success: bool,
        transient: bool,
        retry_after: float | None = None,
        now: float | None = None,
    ) -> dict[str, BreakerSnapshot]:
        """The result of a call admitted by :meth:`admit_all`, on each of its keys."""
        _check_allowed(permit)
        after: dict[str, BreakerSnapshot] = {}
        with self.store.write() as tx:
            rows = {key: _lock(tx, key, tx.now) for key in sorted(permit.admissions)}
            at = self.clock() if now is None else now
            for key, locked in rows.items():
                admission = permit.admissions[key]
                snapshot = record(locked, policy, at, success=success,
                                  transient=transient, retry_after=retry_after,
                                  probe=admission.probe, call_id=admission.call_id)
                _save(tx, key, snapshot, policy, at)
                _journal(tx, self.run_id, key, locked.state, snapshot.state)
                after[key] = snapshot
        return after

    def release(self, key: str, policy: BreakerPolicy, admission: Admission,
                now: float | None = None) -> BreakerSnapshot:
        """Give back a call admitted on ``key`` that never ran (cancelled, skipped): its slot --
        a probe's, too -- is free again."""
        return self.release_all(Permit({key: admission}), policy, now)[key]

    def release_all(self, permit: Permit, policy: BreakerPolicy,
                    now: float | None = None) -> dict[str, BreakerSnapshot]:
        """Give back every slot of a permit from :meth:`admit_all` whose call never ran."""
        _check_allowed(permit)
        after: dict[str, BreakerSnapshot] = {}
        with self.store.write() as tx:
            rows = {key: _lock(tx, key, tx.now) for key in sorted(permit.admissions)}
            at = self.clock() if now is None else now
            for key, locked in rows.items():
                call_id = permit.admissions[key].call_id
                assert call_id is not None  # every allowed admission carries one
                snapshot = release(locked, policy, at, call_id=call_id)
                _save(tx, key, snapshot, policy, at)
                _journal(tx, self.run_id, key, locked.state, snapshot.state)
                after[key] = snapshot
        return after

    def reset(self, key: str, now: float | None = None, *, by: str | None = None
              ) -> BreakerSnapshot:
        """Close breaker ``key`` by hand (its lifetime counters stay; ``by`` is journaled);
        NotFoundError if no breaker has that key."""
        with self.store.write() as tx:
            row = _select_for_update(tx, key)
            if row is None:
                raise NotFoundError(f"no breaker {key!r}",
                                    hint="`aidp breakers list` shows the known keys")
            at = self.clock() if now is None else now
            before = _snapshot(row)
            snapshot = reset(before, at)
            tx.execute(
                'UPDATE breakers SET state = :state, reopen_at = :reopen_at, '
                'snapshot = :snapshot, updated_at = :updated_at WHERE "key" = :key',
                {"state": snapshot.state.value, "reopen_at": snapshot.reopen_at,
                 "snapshot": _dump(snapshot.to_dict()), "updated_at": at, "key": key})
            tx.event(self.run_id, "breaker.reset", key=key, by=by,
                     **{"from": before.state.value, "to": snapshot.state.value})
        return snapshot

    # -- reads -------------------------------------------------------------------------------

    def row(self, key: str) -> BreakerRow | None:
        """The stored breaker ``key``, or None if no call was ever admitted on it."""
        rows = self.store.read('SELECT * FROM breakers WHERE "key" = :key', {"key": key})
        return _row(rows[0]) if rows else None

    def snapshot(self, key: str, now: float | None = None) -> BreakerSnapshot | None:
        """Breaker ``key`` as of ``now`` (see :meth:`BreakerRow.view`), or None if unknown."""
        row = self.row(key)
        return None if row is None else row.view(now)

    def list(self) -> list[BreakerRow]:
        """Every stored breaker, in key order."""
        return [_row(r) for r in self.store.read('SELECT * FROM breakers ORDER BY "key"')]


def _check_allowed(permit: Permit) -> None:
    if not permit.allowed:
        raise ValueError(f"the call was refused by {', '.join(permit.refused_by)}: "
                         "there is no result to record or slot to release")


def _dump(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _snapshot(row: Any) -> BreakerSnapshot:
    return BreakerSnapshot.from_dict(json.loads(row.snapshot))


def _row(row: Any) -> BreakerRow:
    policy = None if row.policy is None else BreakerPolicy.from_dict(json.loads(row.policy))
    return BreakerRow(row.key, _snapshot(row), policy, float(row.updated_at))


def _select_for_update(tx: Tx, key: str) -> Any | None:
    """The row of ``key`` (None if missing), locked until the transaction ends. SQLite: the
    BEGIN IMMEDIATE transaction already excludes every other writer."""
    sql = 'SELECT * FROM breakers WHERE "key" = :key'
    rows = tx.execute(sql if tx.dialect == "sqlite" else sql + " FOR UPDATE", {"key": key})
    return rows[0] if rows else None


_CREATE = (
    'INSERT INTO breakers ("key", state, reopen_at, snapshot, policy, updated_at) '
    'VALUES (:key, :state, :reopen_at, :snapshot, :policy, :updated_at) '
    'ON CONFLICT ("key") DO NOTHING'
)


def _lock(tx: Tx, key: str, now: float) -> BreakerSnapshot:
    """The snapshot of ``key``, its row locked until the transaction ends (created if new)."""
    row = _select_for_update(tx, key)
    if row is None:
        fresh = BreakerSnapshot()
        # PostgreSQL: two transactions may both find no row: the second INSERT waits for the
        # first to commit, then does nothing, and both lock the one row below.
        tx.execute(_CREATE, dict(key=key, state=fresh.state.value, reopen_at=None,
                                 snapshot=_dump(fresh.to_dict()), policy=None, updated_at=now))
        row = _select_for_update(tx, key)
        assert row is not None
    return _snapshot(row)


_TRANSITION_KINDS = {BreakerState.OPEN: "breaker.opened", BreakerState.HALF_OPEN:
                     "breaker.half_open", BreakerState.CLOSED: "breaker.closed"}


def _journal(tx: Tx, run_id: str, key: str, before: BreakerState, after: BreakerState) -> None:
    """Journal a change of ``key``'s state (nothing when it stays: the common case)."""
    if after is not before:
        tx.event(run_id, _TRANSITION_KINDS[after], key=key,
                 **{"from": before.value, "to": after.value})


def _save(tx: Tx, key: str, snapshot: BreakerSnapshot, policy: BreakerPolicy,
          now: float) -> None:
    tx.execute(
        'UPDATE breakers SET state = :state, reopen_at = :reopen_at, snapshot = :snapshot, '
        'policy = :policy, updated_at = :updated_at WHERE "key" = :key',
        {"state": snapshot.state.value, "reopen_at": snapshot.reopen_at,
         "snapshot": _dump(snapshot.to_dict()), "policy": _dump(policy.to_dict()),
         "updated_at": now, "key": key})
