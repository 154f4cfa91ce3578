"""Hypothesis state machines over admit / record / release / the clock: the breaker's invariants
hold for every sequence of operations, policy and timing."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from aidp.resilience.breaker import (
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    admit,
    advance,
    record,
    release,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

policies = st.builds(
    BreakerPolicy,
    failure_threshold=st.integers(1, 5),
    window_s=st.floats(1.0, 200.0),
    cooldown_s=st.floats(0.0, 100.0),
    half_open_probes=st.integers(1, 3),
    probe_timeout_s=st.floats(1.0, 300.0),
)
steps = st.floats(0.0, 150.0)
retry_afters = st.none() | st.floats(0.0, 500.0)

MACHINE_SETTINGS = settings(max_examples=150, stateful_step_count=60, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


class BreakerMachine(RuleBasedStateMachine):
    """Any policy, any outcomes, any timing: the structural invariants and the opening rule."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = BreakerPolicy()
        self.snapshot = BreakerSnapshot()
        self.now = 1_000.0
        self.held: list[Admission] = []

    @initialize(policy=policies)
    def choose_policy(self, policy: BreakerPolicy) -> None:
        self.policy = policy

    @rule(dt=steps)
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule()
    def ask(self) -> None:
        before = advance(self.snapshot, self.policy, self.now)
        answer, self.snapshot = admit(self.snapshot, self.policy, self.now)
        if before.state is OPEN:
            assert before.reopen_at is not None and self.now < before.reopen_at
            assert not answer.allowed and answer.retry_at == before.reopen_at
        if before.state is HALF_OPEN:
            assert answer.allowed == (len(before.probes) < self.policy.half_open_probes)
            assert answer.probe == answer.allowed
        if before.state is CLOSED and not before.failures:
            assert answer.allowed  # a healthy breaker never throttles
        if answer.allowed:
            self.held.append(answer)
        else:
            assert answer.retry_at is not None and answer.retry_at >= self.now

    @precondition(lambda self: self.held)
    @rule(data=st.data(), outcome=st.sampled_from(["success", "transient", "permanent"]),
          retry_after=retry_afters)
    def report(self, data: st.DataObject, outcome: str, retry_after: float | None) -> None:
        call = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        before = advance(self.snapshot, self.policy, self.now)
        after = record(self.snapshot, self.policy, self.now, success=outcome == "success",
                       transient=outcome == "transient", retry_after=retry_after,
                       probe=call.probe, call_id=call.call_id)
        if outcome != "transient":
            # Permanent failures and successes never open a breaker (nor keep one from closing).
            assert after.state is not OPEN or before.state is OPEN
        if before.state is CLOSED and after.state is OPEN:
            window = [t for t in before.failures if t > self.now - self.policy.window_s]
            assert outcome == "transient"
            assert len(window) + 1 >= self.policy.failure_threshold
        if before.state is OPEN:
            assert after.state is OPEN
            assert before.reopen_at is not None and after.reopen_at is not None
            assert after.reopen_at >= before.reopen_at
        if after.state is OPEN and before.state is not OPEN:
            assert after.reopen_at is not None
            assert after.reopen_at >= self.now + self.policy.cooldown_s
            if retry_after is not None:
                assert after.reopen_at >= self.now + retry_after
        self.snapshot = after

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        call = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        before = advance(self.snapshot, self.policy, self.now)
        assert call.call_id is not None
        self.snapshot = release(self.snapshot, self.policy, self.now, call_id=call.call_id)
        assert self.snapshot.state is before.state

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        """The process running a call dies: nobody ever reports it."""
        self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))

    @invariant()
    def well_formed(self) -> None:
        s = advance(self.snapshot, self.policy, self.now)
        assert advance(s, self.policy, self.now) == s
        assert len(s.probes) <= self.policy.half_open_probes
        assert all(c.probe == (s.state is HALF_OPEN) for c in s.in_flight)
        assert all(self.now - c.admitted_at < self.policy.probe_timeout_s for c in s.in_flight)
        if s.state is CLOSED:
            assert len(s.failures) < self.policy.failure_threshold
            assert s.opened_at is None and s.reopen_at is None
            assert all(t > self.now - self.policy.window_s for t in s.failures)
        else:
            assert s.failures == () and s.opened_at is not None and s.reopen_at is not None
            assert s.reopen_at >= s.opened_at + self.policy.cooldown_s
        if s.state is OPEN:
            assert s.in_flight == () and self.now < s.reopen_at  # type: ignore[operator]
        assert BreakerSnapshot.from_dict(s.to_dict()) == s
        ids = [c.call_id for c in s.in_flight]
        assert len(set(ids)) == len(ids) and all(i < s.next_call_id for i in ids)


class AlwaysDownMachine(RuleBasedStateMachine):
    """A provider that always fails transiently, any timing, calls cancelled or lost at random,
    at most ``failure_threshold`` calls running at once: the provider sees at most
    ``threshold + probes`` per cooldown since the breaker first opened."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = BreakerPolicy()
        self.snapshot = BreakerSnapshot()
        self.now = 0.0
        self.held: list[Admission] = []
        self.invocations = 0
        self.first_open: float | None = None
        self.lost: set[int] = set()

    @initialize(threshold=st.integers(1, 5), cooldown=st.floats(1.0, 100.0),
                probes=st.integers(1, 3), probe_timeout=st.floats(1.0, 300.0))
    def choose_policy(self, threshold: int, cooldown: float, probes: int,
                      probe_timeout: float) -> None:
        # A window longer than any test keeps failures from aging out: the bound is about one
        # outage, not about a provider that fails slower than the window.
        self.policy = BreakerPolicy(failure_threshold=threshold, window_s=1e9,
                                    cooldown_s=cooldown, half_open_probes=probes,
                                    probe_timeout_s=probe_timeout)

    def _observe(self) -> None:
        if self.first_open is None and self.snapshot.state is not CLOSED:
            self.first_open = self.snapshot.opened_at

    @rule(dt=steps)
    def wait(self, dt: float) -> None:
        self.now += dt
        self.snapshot = advance(self.snapshot, self.policy, self.now)
        self._observe()

    def running(self) -> int:
        """Calls running now: those held, and lost ones the breaker has not given up on."""
        live = advance(self.snapshot, self.policy, self.now).in_flight
        return len(self.held) + sum(1 for c in live if c.call_id in self.lost)

    @precondition(lambda self: self.running() < self.policy.failure_threshold)
    @rule()
    def ask(self) -> None:
        answer, self.snapshot = admit(self.snapshot, self.policy, self.now)
        self._observe()
        if answer.allowed:
            self.held.append(answer)
            self.invocations += 1

    @precondition(lambda self: self.held)
    @rule(data=st.data(), retry_after=retry_afters)
    def fail(self, data: st.DataObject, retry_after: float | None) -> None:
        call = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.snapshot = record(self.snapshot, self.policy, self.now, success=False,
                               transient=True, retry_after=retry_after, probe=call.probe,
                               call_id=call.call_id)
        self._observe()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """A call released before it ran never reached the provider."""
        call = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        assert call.call_id is not None
        before = self.snapshot
        self.snapshot = release(self.snapshot, self.policy, self.now, call_id=call.call_id)
        self._observe()
        if any(c.call_id == call.call_id for c in advance(before, self.policy, self.now).in_flight):
            self.invocations -= 1

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        call = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        assert call.call_id is not None
        self.lost.add(call.call_id)

    @invariant()
    def bounded(self) -> None:
        assert self.snapshot.state is not CLOSED or self.first_open is None  # never recloses
        if self.first_open is None:
            assert self.invocations <= self.policy.failure_threshold
            return
        periods = math.floor((self.now - self.first_open) / self.policy.cooldown_s)
        limit = self.policy.failure_threshold + self.policy.half_open_probes * periods
        assert self.invocations <= limit


def test_breaker_invariants_hold_for_any_history() -> None:
    """Any policy, outcomes and timing: <= k probes, OPEN refuses before reopen_at, only
    threshold transient failures in the window open it, permanent failures never do."""
    run_state_machine_as_test(BreakerMachine, settings=MACHINE_SETTINGS)


def test_always_down_provider_sees_at_most_threshold_plus_probes_per_cooldown() -> None:
    """A provider that always fails gets <= threshold + k x (cooldowns since the first opening)
    calls, with calls cancelled, lost and racing at random."""
    run_state_machine_as_test(AlwaysDownMachine, settings=MACHINE_SETTINGS)
