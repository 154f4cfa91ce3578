"""The circuit breaker: pure transitions of one breaker's snapshot, clock passed in.

A breaker guards one key (a tool profile or a provider endpoint, see :mod:`aidp.state.breakers`,
which keeps the snapshots in the database so that every run and process shares them)::

    CLOSED --(threshold transient failures inside the window)--> OPEN
    OPEN --(cooldown over, or the provider's retry-after)--> HALF_OPEN
    HALF_OPEN --(a probe's transient failure, or a probe timed out)--> OPEN (fresh cooldown)
    HALF_OPEN --(a probe succeeded, or failed for a non-transient reason)--> CLOSED
    OPEN --(reset by an operator)--> CLOSED

Every admitted call is *in flight* until its result is recorded (:func:`record`), it is released
unused (:func:`release`: cancelled before it ran) or ``probe_timeout_s`` passes: then its
process died, and the silence counts as a transient failure. In flight calls do two jobs:

* HALF_OPEN admits at most ``half_open_probes`` probes at once; a probe that never reports frees
  its slot by timing out, and the breaker reopens: a probe can never wedge HALF_OPEN.
* CLOSED admits freely while no transient failure is in the window; once there is one, it admits
  only while ``failures + in flight < failure_threshold``. So calls racing a dying provider
  cannot overshoot the threshold, yet a healthy provider's parallelism is never capped. (The
  first burst, before any failure is known, can overshoot by the calls already running.)

Only the current regime counts: a result that arrives for a call admitted before the last state
change (a call admitted while CLOSED finishing after the breaker opened) updates the counters but
not the state. Results of calls whose class is not transient never open a breaker.

Times are UNIX epoch seconds (``float``); durations are seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from aidp.exceptions import IllegalTransition

if TYPE_CHECKING:
    from aidp.config import BreakerSettings, ToolProfile

__all__ = [
    "BREAKER_TRANSITIONS",
    "DEFAULT_PROBE_TIMEOUT_S",
    "Admission",
    "BreakerCounters",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "InFlight",
    "admit",
    "advance",
    "check_transition",
    "record",
    "release",
    "reset",
]

DEFAULT_PROBE_TIMEOUT_S = 3600.0
# The longest wait a refusal names is a cooldown, but never less than this.
MIN_POLL_S = 1.0
# Added to a profile's own timeout: the tool is killed at its timeout, then its result is written.
PROBE_TIMEOUT_MARGIN_S = 60.0


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

BREAKER_TRANSITIONS: dict[BreakerState, frozenset[BreakerState]] = {
    CLOSED: frozenset({OPEN}),
    OPEN: frozenset({HALF_OPEN, CLOSED}),  # CLOSED: reset by an operator
    HALF_OPEN: frozenset({CLOSED, OPEN}),
}


def check_transition(current: BreakerState, new: BreakerState) -> BreakerState:
    """Return ``new`` if the table allows ``current -> new`` (staying put is allowed)."""
    if current is not new and new not in BREAKER_TRANSITIONS[current]:
        raise IllegalTransition(f"BreakerState: {current.value} -> {new.value}")
    return new


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers.

    ``failure_threshold`` transient failures within ``window_s`` seconds open it; after
    ``cooldown_s`` seconds (or longer, when the provider asked for it) it admits up to
    ``half_open_probes`` probes at once. An admitted call that reports nothing within
    ``probe_timeout_s`` seconds counts as a transient failure and no longer holds its slot (a
    silent probe reopens the breaker); set it above the tool's own timeout.
    """

    failure_threshold: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0
    half_open_probes: int = 1
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_probes < 1:
            raise ValueError("failure_threshold and half_open_probes must be at least 1")
        if self.window_s <= 0 or self.cooldown_s < 0 or self.probe_timeout_s <= 0:
            raise ValueError("window_s and probe_timeout_s must be > 0, cooldown_s >= 0")

    @classmethod
    def from_settings(
        cls, settings: BreakerSettings, *, probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    ) -> BreakerPolicy:
        """The policy of a ``[tools.NAME.breaker]`` section."""
        return cls(
            failure_threshold=settings.failure_threshold,
            window_s=float(settings.window),
            cooldown_s=float(settings.cooldown),
            half_open_probes=settings.half_open_probes,
            probe_timeout_s=probe_timeout_s,
        )

    @classmethod
    def from_profile(cls, profile: ToolProfile) -> BreakerPolicy:
        """The policy of a tool profile; a probe times out a minute after the tool's timeout."""
        timeout = profile.timeout
        probe_timeout = (DEFAULT_PROBE_TIMEOUT_S if timeout is None
                         else float(timeout) + PROBE_TIMEOUT_MARGIN_S)
        return cls.from_settings(profile.breaker, probe_timeout_s=probe_timeout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failure_threshold": self.failure_threshold, "window_s": self.window_s,
            "cooldown_s": self.cooldown_s, "half_open_probes": self.half_open_probes,
            "probe_timeout_s": self.probe_timeout_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerPolicy:
        return cls(
            failure_threshold=int(data["failure_threshold"]), window_s=float(data["window_s"]),
            cooldown_s=float(data["cooldown_s"]), half_open_probes=int(data["half_open_probes"]),
            probe_timeout_s=float(data["probe_timeout_s"]),
        )


@dataclass(frozen=True)
class InFlight:
    """An admitted call without a result yet: its id, when it was admitted, whether a probe."""

    call_id: int
    admitted_at: float
    probe: bool


_COUNTERS = ("admitted", "rejected", "successes", "transient_failures", "permanent_failures",
             "opened", "expired", "released")


@dataclass(frozen=True)
class BreakerCounters:
    """Lifetime totals of one breaker (they survive a reset)."""

    admitted: int = 0
    rejected: int = 0
    successes: int = 0
    transient_failures: int = 0
    permanent_failures: int = 0
    opened: int = 0  # times it went to OPEN
    expired: int = 0  # admitted calls that never reported within probe_timeout_s
    released: int = 0  # admitted calls given back unused

    def add(self, **deltas: int) -> BreakerCounters:
        return replace(self, **{name: getattr(self, name) + n for name, n in deltas.items()})

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNTERS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerCounters:
        return cls(**{name: int(data.get(name, 0)) for name in _COUNTERS})


@dataclass(frozen=True)
class BreakerSnapshot:
    """Everything one breaker knows. ``failures`` are the times of the transient failures in
    the current window (CLOSED only); ``opened_at``/``reopen_at`` are set while OPEN and
    HALF_OPEN; ``in_flight`` lists the admitted calls of the current state (the probes, in
    HALF_OPEN); ``changed_at`` is when the state last changed."""

    state: BreakerState = BreakerState.CLOSED
    failures: tuple[float, ...] = ()
    opened_at: float | None = None
    reopen_at: float | None = None
    in_flight: tuple[InFlight, ...] = ()
    changed_at: float | None = None
    next_call_id: int = 1
    counters: BreakerCounters = field(default_factory=BreakerCounters)

    @property
    def probes(self) -> tuple[InFlight, ...]:
        """The probes in flight (HALF_OPEN only)."""
        return tuple(c for c in self.in_flight if c.probe)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_dict` gives the same snapshot back."""
        return {
            "state": self.state.value,
            "failures": list(self.failures),
            "opened_at": self.opened_at,
            "reopen_at": self.reopen_at,
            "in_flight": [[c.call_id, c.admitted_at, c.probe] for c in self.in_flight],
            "changed_at": self.changed_at,
            "next_call_id": self.next_call_id,
            "counters": self.counters.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerSnapshot:
        return cls(
            state=BreakerState(data["state"]),
            failures=tuple(float(t) for t in data.get("failures", ())),
            opened_at=_opt_float(data.get("opened_at")),
            reopen_at=_opt_float(data.get("reopen_at")),
            in_flight=tuple(InFlight(int(i), float(t), bool(p))
                            for i, t, p in data.get("in_flight", ())),
            changed_at=_opt_float(data.get("changed_at")),
            next_call_id=int(data.get("next_call_id", 1)),
            counters=BreakerCounters.from_dict(data.get("counters", {})),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Admission:
    """The answer of :func:`admit`. ``allowed``: the call may run now; ``probe``: it is one of
    HALF_OPEN's probes; ``state``: the breaker's state after the decision; ``retry_at``: for a
    refusal, when to ask again -- ``reopen_at`` when OPEN; when waiting for calls in flight
    (HALF_OPEN's probes, or CLOSED's budget after a failure) at most a cooldown from now, as they
    may report any moment; ``call_id``: pass it back to :func:`record` or :func:`release`."""

    allowed: bool
    probe: bool
    state: BreakerState
    retry_at: float | None
    call_id: int | None = None
    admitted_at: float | None = None


def _move(snapshot: BreakerSnapshot, new: BreakerState, now: float,
          **changes: Any) -> BreakerSnapshot:
    check_transition(snapshot.state, new)
    return replace(snapshot, state=new, changed_at=now, in_flight=(), **changes)


def _open(snapshot: BreakerSnapshot, policy: BreakerPolicy, now: float,
          retry_after: float | None, counters: BreakerCounters) -> BreakerSnapshot:
    wait = max(policy.cooldown_s, retry_after or 0.0)
    return _move(snapshot, OPEN, now, failures=(), opened_at=now, reopen_at=now + wait,
                 counters=counters.add(opened=1))


def _close(snapshot: BreakerSnapshot, now: float, counters: BreakerCounters) -> BreakerSnapshot:
    return _move(snapshot, CLOSED, now, failures=(), opened_at=None, reopen_at=None,
                 counters=counters)


def advance(snapshot: BreakerSnapshot, policy: BreakerPolicy, now: float) -> BreakerSnapshot:
    """Apply what the passing of time does by ``now``: failures leave the window, OPEN becomes
    HALF_OPEN at ``reopen_at``, calls silent for ``probe_timeout_s`` expire as transient
    failures (a silent probe reopens the breaker). :func:`admit` and :func:`record` start
    with it; views call it too. Idempotent: ``advance(advance(s, p, t), p, t) == advance(s, p, t)``.
    """
    # With a zero cooldown, a breaker that expiry reopens is due again at once: repeat to the
    # fixed point (at most OPEN -> HALF_OPEN -> OPEN -> HALF_OPEN, as reopening clears probes).
    for _ in range(4):
        moved = _advance_once(snapshot, policy, now)
        if moved is snapshot:
            return moved
        snapshot = moved
    return snapshot


def _advance_once(snapshot: BreakerSnapshot, policy: BreakerPolicy,
                  now: float) -> BreakerSnapshot:
    if snapshot.state is OPEN:
        if snapshot.reopen_at is not None and now < snapshot.reopen_at:
            return snapshot
        changed = snapshot.reopen_at if snapshot.reopen_at is not None else now
        snapshot = _move(snapshot, HALF_OPEN, changed)
    live = tuple(c for c in snapshot.in_flight if now - c.admitted_at < policy.probe_timeout_s)
    expired = len(snapshot.in_flight) - len(live)
    if snapshot.state is HALF_OPEN:
        if expired:
            return _open(snapshot, policy, now, None, snapshot.counters.add(expired=expired))
        return snapshot
    # A call silent for so long had its process die under it: it counts as a transient failure
    # at the moment it expired, so that lost calls cannot dodge the threshold.
    died = [c.admitted_at + policy.probe_timeout_s for c in snapshot.in_flight if c not in live]
    failures = tuple(sorted(t for t in (*snapshot.failures, *died) if t > now - policy.window_s))
    if not expired and failures == snapshot.failures:
        return snapshot
    counters = snapshot.counters.add(expired=expired)
    if len(failures) >= policy.failure_threshold:
        return _open(snapshot, policy, now, None, counters)
    return replace(snapshot, failures=failures, in_flight=live, counters=counters)


def admit(
    snapshot: BreakerSnapshot, policy: BreakerPolicy, now: float
) -> tuple[Admission, BreakerSnapshot]:
    """May a call run at ``now``? Returns the answer and the new snapshot (which holds an
    allowed call in flight until :func:`record` or :func:`release`)."""
    s = advance(snapshot, policy, now)
    if s.state is OPEN:
        retry_at = s.reopen_at
    else:
        if s.state is HALF_OPEN:
            if len(s.in_flight) < policy.half_open_probes:
                return _allow(s, now, probe=True)
            # A slot frees when a probe reports or times out.
            chance = min(c.admitted_at for c in s.in_flight) + policy.probe_timeout_s
        else:
            if not s.failures or len(s.failures) + len(s.in_flight) < policy.failure_threshold:
                return _allow(s, now, probe=False)
            # The budget frees when a call reports, a failure leaves the window or a silent
            # call expires.
            chance = min(
                min(s.failures) + policy.window_s,
                min((c.admitted_at + policy.probe_timeout_s for c in s.in_flight),
                    default=float("inf")),
            )
        # A call in flight may report any moment: ask again after a cooldown at the latest
        # rather than after a long probe timeout.
        retry_at = min(chance, now + max(policy.cooldown_s, MIN_POLL_S))
    refused = replace(s, counters=s.counters.add(rejected=1))
    return Admission(False, False, s.state, retry_at), refused


def _allow(s: BreakerSnapshot, now: float, *, probe: bool) -> tuple[Admission, BreakerSnapshot]:
    call = InFlight(s.next_call_id, now, probe)
    new = replace(s, in_flight=(*s.in_flight, call), next_call_id=s.next_call_id + 1,
                  counters=s.counters.add(admitted=1))
    return Admission(True, probe, s.state, None, call.call_id, now), new


def _find(s: BreakerSnapshot, call_id: int | None, probe: bool) -> tuple[bool, InFlight | None]:
    """Whether a result belongs to the current state, and the in-flight call it ends."""
    if call_id is not None:
        for call in s.in_flight:
            if call.call_id == call_id:
                return True, call
        return False, None
    if s.state is HALF_OPEN:
        probes = s.probes
        return (True, probes[0]) if probe and probes else (False, None)
    # An unidentified result in CLOSED counts, unless it claims to be a probe (of a
    # HALF_OPEN that has ended since).
    return (s.state is CLOSED and not probe), None


def record(
    snapshot: BreakerSnapshot,
    policy: BreakerPolicy,
    now: float,
    *,
    success: bool,
    transient: bool,
    retry_after: float | None = None,
    probe: bool = False,
    call_id: int | None = None,
) -> BreakerSnapshot:
    """The result of a call at ``now``.

    ``success``: the call worked; otherwise ``transient`` says whether the failure was of a
    transient class (only those count), and ``retry_after`` (seconds from ``now``) is the
    provider's own wait, which pushes ``reopen_at`` out when the breaker opens or is open.
    ``call_id`` is the admission's (without it, the oldest probe when ``probe``, else an
    untracked call in CLOSED).
    """
    s = advance(snapshot, policy, now)
    failed = not success and transient
    counters = s.counters.add(successes=int(success), transient_failures=int(failed),
                              permanent_failures=int(not success and not transient))
    current, call = _find(s, call_id, probe)
    if s.state is OPEN:
        if failed and retry_after is not None and s.reopen_at is not None:
            return replace(s, counters=counters, reopen_at=max(s.reopen_at, now + retry_after))
        return replace(s, counters=counters)
    if not current:
        return replace(s, counters=counters)
    if s.state is HALF_OPEN:
        # The probe reached the provider: a transient failure means it is still down, anything
        # else (success, or a failure of the work itself) means it answers again.
        return _open(s, policy, now, retry_after, counters) if failed else _close(s, now, counters)
    in_flight = tuple(c for c in s.in_flight if c is not call)
    if success:
        return replace(s, failures=(), in_flight=in_flight, counters=counters)
    if not failed:
        return replace(s, in_flight=in_flight, counters=counters)
    failures = (*s.failures, now)
    if len(failures) >= policy.failure_threshold:
        return _open(s, policy, now, retry_after, counters)
    return replace(s, failures=failures, in_flight=in_flight, counters=counters)


def release(
    snapshot: BreakerSnapshot, policy: BreakerPolicy, now: float, *, call_id: int
) -> BreakerSnapshot:
    """Give back an admitted call that never ran (cancelled, or another breaker refused it):
    its slot -- a probe's, too -- is free again, and nothing is learned about the provider."""
    s = advance(snapshot, policy, now)
    in_flight = tuple(c for c in s.in_flight if c.call_id != call_id)
    if len(in_flight) == len(s.in_flight):
        return s
    return replace(s, in_flight=in_flight, counters=s.counters.add(released=1))


def reset(snapshot: BreakerSnapshot, now: float) -> BreakerSnapshot:
    """An operator's reset: CLOSED with an empty window, keeping the lifetime counters."""
    if snapshot.state is CLOSED:
        return replace(snapshot, failures=(), in_flight=(), changed_at=now)
    return _close(snapshot, now, snapshot.counters)
