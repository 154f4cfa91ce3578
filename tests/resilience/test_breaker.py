"""The pure circuit breaker: its transition table, and each rule with an injected clock."""

from __future__ import annotations

import itertools

import pytest

from aidp.config import BreakerSettings, ToolProfile
from aidp.exceptions import IllegalTransition
from aidp.resilience.breaker import (
    BREAKER_TRANSITIONS,
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    admit,
    advance,
    check_transition,
    record,
    release,
    reset,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
POLICY = BreakerPolicy(failure_threshold=3, window_s=60.0, cooldown_s=30.0, half_open_probes=2,
                       probe_timeout_s=300.0)


def fail(s: BreakerSnapshot, now: float, n: int = 1, *, transient: bool = True,
         policy: BreakerPolicy = POLICY) -> BreakerSnapshot:
    """Admit and fail ``n`` calls at ``now``, one after the other."""
    for _ in range(n):
        a, s = admit(s, policy, now)
        assert a.allowed
        s = record(s, policy, now, success=False, transient=transient, probe=a.probe,
                   call_id=a.call_id)
    return s


def opened(now: float = 0.0) -> BreakerSnapshot:
    s = fail(BreakerSnapshot(), now, POLICY.failure_threshold)
    assert s.state is OPEN
    return s


@pytest.mark.parametrize(("current", "new"), list(itertools.product(BreakerState, BreakerState)),
                         ids=lambda s: s.value)
def test_check_transition_allows_exactly_the_table(current: BreakerState,
                                                   new: BreakerState) -> None:
    """check_transition allows a pair iff the table lists it (or it stays put)."""
    if current is new or new in BREAKER_TRANSITIONS[current]:
        assert check_transition(current, new) is new
    else:
        with pytest.raises(IllegalTransition, match=f"{current.value} -> {new.value}"):
            check_transition(current, new)


def test_table_has_a_row_per_state_and_no_self_loops() -> None:
    """The table has a row for every state, and no state lists itself."""
    assert set(BREAKER_TRANSITIONS) == set(BreakerState)
    for state, targets in BREAKER_TRANSITIONS.items():
        assert state not in targets


def test_closed_never_goes_straight_to_half_open() -> None:
    """CLOSED -> HALF_OPEN is the one forbidden move: a breaker must open first."""
    assert BREAKER_TRANSITIONS[CLOSED] == frozenset({OPEN})


def test_opens_at_the_threshold_of_transient_failures() -> None:
    """threshold - 1 transient failures keep it CLOSED; the threshold-th opens it."""
    s = fail(BreakerSnapshot(), 10.0, 2)
    assert s.state is CLOSED and len(s.failures) == 2
    s = fail(s, 11.0)
    assert s.state is OPEN
    assert (s.opened_at, s.reopen_at) == (11.0, 41.0)
    assert s.failures == () and s.counters.opened == 1


def test_failures_outside_the_window_do_not_count() -> None:
    """Failures older than window_s fall out: three spread over more than the window don't open."""
    s = fail(BreakerSnapshot(), 0.0, 2)
    s = fail(s, 60.0)
    assert s.state is CLOSED
    assert s.failures == (60.0,)


def test_permanent_failures_never_open() -> None:
    """Any number of permanent (non-transient) failures leaves the breaker CLOSED."""
    s = fail(BreakerSnapshot(), 0.0, 50, transient=False)
    assert s.state is CLOSED and s.failures == ()
    assert s.counters.permanent_failures == 50


def test_success_clears_the_window() -> None:
    """A success in CLOSED empties the window: failures must start again from zero."""
    s = fail(BreakerSnapshot(), 0.0, 2)
    a, s = admit(s, POLICY, 1.0)
    s = record(s, POLICY, 1.0, success=True, transient=False, call_id=a.call_id)
    assert s.failures == ()
    s = fail(s, 2.0, 2)
    assert s.state is CLOSED


def test_open_refuses_until_reopen_at() -> None:
    """OPEN refuses every call before reopen_at, naming reopen_at as retry_at."""
    s = opened(0.0)
    for now in (0.0, 10.0, 29.999):
        a, s = admit(s, POLICY, now)
        assert a == Admission(False, False, OPEN, 30.0)
    assert s.counters.rejected == 3


def test_half_open_after_cooldown_admits_exactly_k_probes() -> None:
    """At reopen_at the breaker is HALF_OPEN and admits half_open_probes probes, no more."""
    s = opened(0.0)
    first, s = admit(s, POLICY, 30.0)
    second, s = admit(s, POLICY, 31.0)
    third, s = admit(s, POLICY, 32.0)
    assert first.allowed and first.probe and second.allowed and second.probe
    assert not third.allowed and third.state is HALF_OPEN
    assert third.retry_at == 32.0 + POLICY.cooldown_s  # a probe may report any moment
    assert [p.call_id for p in s.probes] == [first.call_id, second.call_id]


def test_probe_success_closes() -> None:
    """A probe's success closes the breaker, and the other probes' results no longer count."""
    s = opened(0.0)
    a, s = admit(s, POLICY, 30.0)
    b, s = admit(s, POLICY, 30.0)
    s = record(s, POLICY, 31.0, success=True, transient=False, probe=True, call_id=a.call_id)
    assert s.state is CLOSED and s.opened_at is None and s.reopen_at is None
    s = record(s, POLICY, 32.0, success=False, transient=True, probe=True, call_id=b.call_id)
    assert s.state is CLOSED and s.failures == ()


def test_probe_transient_failure_reopens_with_a_fresh_cooldown() -> None:
    """A probe's transient failure reopens the breaker for a whole new cooldown."""
    s = opened(0.0)
    a, s = admit(s, POLICY, 40.0)
    s = record(s, POLICY, 45.0, success=False, transient=True, probe=True, call_id=a.call_id)
    assert s.state is OPEN and (s.opened_at, s.reopen_at) == (45.0, 75.0)
    assert s.counters.opened == 2


def test_probe_permanent_failure_closes() -> None:
    """A probe that failed for a non-transient reason reached the provider: CLOSED."""
    s = opened(0.0)
    a, s = admit(s, POLICY, 30.0)
    s = record(s, POLICY, 31.0, success=False, transient=False, probe=True, call_id=a.call_id)
    assert s.state is CLOSED


def test_retry_after_extends_reopen_at_when_opening() -> None:
    """The provider's retry_after, when longer than the cooldown, sets reopen_at."""
    s = fail(BreakerSnapshot(), 0.0, 2)
    a, s = admit(s, POLICY, 1.0)
    s = record(s, POLICY, 1.0, success=False, transient=True, retry_after=600.0,
               call_id=a.call_id)
    assert s.state is OPEN and s.reopen_at == 601.0
    shorter = fail(BreakerSnapshot(), 0.0, 2)
    a, shorter = admit(shorter, POLICY, 1.0)
    shorter = record(shorter, POLICY, 1.0, success=False, transient=True, retry_after=5.0,
                     call_id=a.call_id)
    assert shorter.reopen_at == 31.0


def test_retry_after_extends_reopen_at_while_open() -> None:
    """A late transient failure with retry_after pushes an OPEN breaker's reopen_at out
    (never in)."""
    s = opened(0.0)
    s = record(s, POLICY, 5.0, success=False, transient=True, retry_after=100.0)
    assert s.reopen_at == 105.0
    s = record(s, POLICY, 6.0, success=False, transient=True, retry_after=1.0)
    assert s.reopen_at == 105.0


def test_probe_retry_after_extends_the_fresh_cooldown() -> None:
    """A probe failing with retry_after reopens until now + retry_after."""
    s = opened(0.0)
    a, s = admit(s, POLICY, 30.0)
    s = record(s, POLICY, 30.0, success=False, transient=True, retry_after=120.0, probe=True,
               call_id=a.call_id)
    assert s.reopen_at == 150.0


def test_silent_probe_times_out_and_reopens() -> None:
    """A probe that never reports (its process died) reopens the breaker after probe_timeout_s:
    HALF_OPEN is never wedged."""
    policy = BreakerPolicy(failure_threshold=1, cooldown_s=30.0, half_open_probes=1,
                           probe_timeout_s=100.0)
    s = fail(BreakerSnapshot(), 0.0, policy=policy)
    a, s = admit(s, policy, 30.0)
    assert a.probe
    refused, s = admit(s, policy, 129.0)
    assert not refused.allowed and s.state is HALF_OPEN
    s = advance(s, policy, 130.0)
    assert s.state is OPEN and s.reopen_at == 160.0 and s.counters.expired == 1
    again, s = admit(s, policy, 160.0)
    assert again.allowed and again.probe


def test_released_probe_gives_its_slot_back() -> None:
    """A probe released unused (cancelled) frees its slot without changing the state."""
    policy = BreakerPolicy(failure_threshold=1, half_open_probes=1)
    s = fail(BreakerSnapshot(), 0.0, policy=policy)
    a, s = admit(s, policy, 30.0)
    refused, s = admit(s, policy, 31.0)
    assert not refused.allowed
    assert a.call_id is not None
    s = release(s, policy, 32.0, call_id=a.call_id)
    assert s.state is HALF_OPEN and s.probes == () and s.counters.released == 1
    b, s = admit(s, policy, 33.0)
    assert b.allowed and b.probe


def test_release_of_an_unknown_call_changes_nothing() -> None:
    """Releasing a call that is not in flight (already reported, or stale) is a no-op."""
    s = fail(BreakerSnapshot(), 0.0)
    assert release(s, POLICY, 0.0, call_id=999) == s


def test_stale_results_do_not_change_the_state() -> None:
    """Results of calls admitted before the last state change update counters only: a CLOSED-era
    success cannot close a HALF_OPEN breaker, nor a CLOSED-era failure reopen it."""
    s = BreakerSnapshot()
    old, s = admit(s, POLICY, 0.0)
    racing = []
    for _ in range(POLICY.failure_threshold):  # all admitted before any failure is known
        a, s = admit(s, POLICY, 0.0)
        racing.append(a)
    for a in racing:
        s = record(s, POLICY, 0.5, success=False, transient=True, call_id=a.call_id)
    assert s.state is OPEN
    s = record(s, POLICY, 1.0, success=True, transient=False, call_id=old.call_id)
    assert s.state is OPEN
    probe, s = admit(s, POLICY, 30.5)
    assert probe.probe
    s = record(s, POLICY, 31.0, success=True, transient=False, call_id=old.call_id)
    assert s.state is HALF_OPEN
    s = record(s, POLICY, 31.0, success=False, transient=True, call_id=old.call_id)
    assert s.state is HALF_OPEN and [p.call_id for p in s.probes] == [probe.call_id]
    assert s.counters.successes == 2


def test_closed_budget_after_a_failure_caps_calls_in_flight() -> None:
    """Once a transient failure is in the window, CLOSED admits only while failures + calls in
    flight stay below the threshold, so racing calls cannot overshoot it."""
    s = fail(BreakerSnapshot(), 0.0)
    a, s = admit(s, POLICY, 1.0)
    b, s = admit(s, POLICY, 1.0)
    c, s = admit(s, POLICY, 1.0)
    assert a.allowed and b.allowed and not c.allowed
    assert c.state is CLOSED and c.retry_at == 1.0 + POLICY.cooldown_s
    s = record(s, POLICY, 2.0, success=False, transient=False, call_id=a.call_id)
    d, s = admit(s, POLICY, 2.0)
    assert d.allowed  # a permanent failure gave its slot back without counting


def test_healthy_parallelism_is_not_capped() -> None:
    """Without failures in the window, CLOSED admits any number of concurrent calls."""
    s = BreakerSnapshot()
    for _ in range(50):
        a, s = admit(s, POLICY, 0.0)
        assert a.allowed and not a.probe
    assert len(s.in_flight) == 50


def test_silent_closed_calls_count_as_transient_failures() -> None:
    """A CLOSED call silent for probe_timeout_s leaves the in-flight set and counts as a
    transient failure at its expiry, so lost calls cannot dodge the threshold."""
    policy = BreakerPolicy(failure_threshold=3, window_s=1000.0, probe_timeout_s=300.0)
    s = fail(BreakerSnapshot(), 0.0, policy=policy)
    _, s = admit(s, policy, 1.0)
    _, s = admit(s, policy, 200.0)
    s = advance(s, policy, 301.5)
    assert s.state is CLOSED and s.failures == (0.0, 301.0)
    assert len(s.in_flight) == 1 and s.counters.expired == 1
    s = advance(s, policy, 500.0)
    assert s.state is OPEN and s.opened_at == 500.0 and s.counters.expired == 2


def test_a_healthy_silent_call_alone_does_not_open() -> None:
    """One lost call on a healthy breaker is one failure, below the threshold."""
    _, s = admit(BreakerSnapshot(), POLICY, 0.0)
    s = advance(s, POLICY, 1000.0)
    assert s.state is CLOSED and s.in_flight == ()


def test_reset_closes_and_keeps_counters() -> None:
    """reset() makes any breaker CLOSED with an empty window, keeping the lifetime counters."""
    s = opened(0.0)
    s = reset(s, 5.0)
    assert s.state is CLOSED and s.failures == () and s.reopen_at is None
    assert s.counters.opened == 1 and s.changed_at == 5.0
    a, _ = admit(s, POLICY, 5.0)
    assert a.allowed


def test_snapshot_round_trips_through_a_dict() -> None:
    """to_dict/from_dict give back the same snapshot (that is what the database stores)."""
    s = opened(0.0)
    _, s = admit(s, POLICY, 30.0)
    assert BreakerSnapshot.from_dict(s.to_dict()) == s
    assert BreakerPolicy.from_dict(POLICY.to_dict()) == POLICY


def test_policy_from_settings_and_profile() -> None:
    """The policy takes the [tools.X.breaker] settings; a profile's timeout sets probe_timeout_s."""
    settings = BreakerSettings(failure_threshold=2, window=10, cooldown=5, half_open_probes=3)
    policy = BreakerPolicy.from_settings(settings)
    assert (policy.failure_threshold, policy.window_s, policy.cooldown_s,
            policy.half_open_probes) == (2, 10.0, 5.0, 3)
    profile = ToolProfile(adapter="shell", timeout=120, breaker=settings)
    assert BreakerPolicy.from_profile(profile).probe_timeout_s == 180.0


@pytest.mark.parametrize("bad", [dict(failure_threshold=0), dict(half_open_probes=0),
                                 dict(window_s=0.0), dict(cooldown_s=-1.0),
                                 dict(probe_timeout_s=0.0)], ids=lambda d: next(iter(d)))
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    """A policy with a zero threshold, no probes, an empty window or a negative cooldown is
    refused."""
    with pytest.raises(ValueError):
        BreakerPolicy(**bad)  # type: ignore[arg-type]


def test_refusal_while_waiting_for_calls_names_the_earliest_chance() -> None:
    """A CLOSED budget refusal names the earliest of: the oldest failure leaving the window, a
    silent call expiring, or a cooldown from now."""
    s = fail(BreakerSnapshot(), 0.0)
    _, s = admit(s, POLICY, 50.0)
    _, s = admit(s, POLICY, 50.0)
    refused, s = admit(s, POLICY, 50.0)
    assert not refused.allowed and refused.retry_at == 60.0
    expiring = BreakerPolicy(failure_threshold=3, window_s=1000.0, cooldown_s=500.0,
                             probe_timeout_s=100.0)
    s = fail(BreakerSnapshot(), 0.0, policy=expiring)
    _, s = admit(s, expiring, 10.0)
    _, s = admit(s, expiring, 20.0)
    refused, s = admit(s, expiring, 30.0)
    assert refused.retry_at == 110.0
